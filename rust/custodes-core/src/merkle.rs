//! RFC 9162 (Certificate Transparency 2.0) Merkle trees over 32-byte SHA-256
//! hashes: the ledger's tamper evidence.
//!
//! Leaf hash `SHA-256(0x00 || entry)`, node hash `SHA-256(0x01 || left || right)`,
//! the tree split at the largest power of two below its size (RFC 9162
//! §2.1.1). Proof generation follows §2.1.3.1 / §2.1.4.1 and verification
//! the algorithms of §2.1.3.2 / §2.1.4.2, step by step.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Why a Merkle operation was refused: input that describes no tree or no proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A hash (leaf, node or root) that is not 32 bytes long.
    #[error("a Merkle hash is 32 bytes, not {0}")]
    HashLength(usize),
    /// Leaf hashes packed back to back whose total length is not a multiple of 32.
    #[error("packed leaf hashes must be a multiple of 32 bytes, not {0}")]
    PackedLength(usize),
    /// An inclusion proof asked for a leaf the tree does not have.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutOfRange { index: usize, size: usize },
    /// A consistency proof asked for from an empty tree or from a tree larger than the log.
    #[error("no consistency proof from size {from} to {to}: the older size must be between 1 and {to}")]
    ConsistencyRange { from: usize, to: usize },
    /// A frontier whose number of hashes is not the number of perfect subtrees of its size.
    #[error("a tree of {size} leaves has a frontier of {want} hashes, not {got}")]
    FrontierLength { size: u64, want: usize, got: usize },
}

/// One 32-byte hash from a byte string of any length.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    bytes.try_into().map_err(|_| MerkleError::HashLength(bytes.len()))
}

/// Leaf hashes packed back to back (32 bytes each), as the ledger stores them.
pub fn unpack_leaves(packed: &[u8]) -> Result<Vec<Hash>, MerkleError> {
    if !packed.len().is_multiple_of(32) {
        return Err(MerkleError::PackedLength(packed.len()));
    }
    Ok(packed.chunks_exact(32).map(|c| c.try_into().expect("chunks of 32 bytes")).collect())
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// SHA-256 of nothing: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: usize) -> usize {
    debug_assert!(n > 1);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the inclusion proof of leaf `index` (§2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>, MerkleError> {
    if index >= leaves.len() {
        return Err(MerkleError::LeafOutOfRange { index, size: leaves.len() });
    }
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        let n = d.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, &d[..k], out);
            out.push(root(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root(&d[..k]));
        }
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Ok(out)
}

/// PROOF(m, D[n]): the consistency proof between sizes `m` and `n = leaves.len()` (§2.1.4.1).
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Result<Vec<Hash>, MerkleError> {
    if m == 0 || m > leaves.len() {
        return Err(MerkleError::ConsistencyRange { from: m, to: leaves.len() });
    }
    fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
        let n = d.len();
        if m == n {
            if !b {
                out.push(root(d));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, &d[..k], b, out);
            out.push(root(&d[k..]));
        } else {
            subproof(m - k, &d[k..], false, out);
            out.push(root(&d[..k]));
        }
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    Ok(out)
}

/// Verify an inclusion proof (§2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, tree_size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Verify a consistency proof (§2.1.4.2).
pub fn verify_consistency(size1: u64, size2: u64, proof: &[Hash], root1: &Hash, root2: &Hash) -> bool {
    if size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 {
        // Every tree extends the empty one, whose root is fixed: a claimed root of size 0 must be it.
        return proof.is_empty() && *root1 == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if size1.is_power_of_two() {
        path.insert(0, *root1);
    }
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *root1 && sr == *root2 && s_n == 0
}

/// The root of a growing log in O(log n) memory: the perfect subtrees of the
/// leaves appended so far (a "compact range"), so a verifier can stream a
/// ledger of any size and ask for the root at any size it reaches.
#[derive(Debug, Default, Clone)]
pub struct Accumulator {
    /// (height, hash) of perfect subtrees, left to right; heights strictly decrease.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The roots of the perfect subtrees, left to right: with the size, all a later
    /// accumulator needs to go on from here ([`Accumulator::resume`]) without
    /// reading the leaves again.
    pub fn frontier(&self) -> Vec<Hash> {
        self.stack.iter().map(|&(_, h)| h).collect()
    }

    /// Go on from a frontier saved at `size`. The subtrees' heights are the set
    /// bits of `size`, highest first, so their number must be its popcount.
    pub fn resume(size: u64, frontier: &[Hash]) -> Result<Self, MerkleError> {
        let want = size.count_ones() as usize;
        if frontier.len() != want {
            return Err(MerkleError::FrontierLength { size, want, got: frontier.len() });
        }
        let heights = (0..64u32).rev().filter(|b| size >> b & 1 == 1);
        Ok(Self { stack: heights.zip(frontier.iter().copied()).collect(), size })
    }

    /// MTH of everything pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_accumulator_goes_on_as_the_original() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for cut in [0usize, 1, 2, 3, 7, 8, 33, 64, 69] {
            let mut first = Accumulator::new();
            leaves[..cut].iter().for_each(|&l| first.push(l));
            let mut resumed = Accumulator::resume(cut as u64, &first.frontier()).unwrap();
            assert_eq!(resumed.root(), root(&leaves[..cut]), "at {cut}");
            leaves[cut..].iter().for_each(|&l| resumed.push(l));
            assert_eq!((resumed.size(), resumed.root()), (70, root(&leaves)), "from {cut}");
        }
        let three = Accumulator::resume(3, &[leaf_hash(b"a"), leaf_hash(b"b")]).unwrap();
        assert_eq!(three.frontier().len(), 2);
        assert!(matches!(
            Accumulator::resume(3, &[leaf_hash(b"a")]),
            Err(MerkleError::FrontierLength { size: 3, want: 2, got: 1 })
        ));
        assert!(Accumulator::resume(0, &[leaf_hash(b"a")]).is_err());
    }

    #[test]
    fn the_empty_tree_has_one_root() {
        let leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
        let r = root(&leaves);
        assert!(verify_consistency(0, 3, &[], &empty_root(), &r));
        assert!(!verify_consistency(0, 3, &[], &[0u8; 32], &r), "a made-up root of the empty tree");
        assert!(!verify_consistency(0, 3, &[r], &empty_root(), &r), "no proof is needed from the empty tree");
    }

    /// The leaves of the Certificate Transparency reference tests (RFC 6962 test data).
    fn ct_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ct_reference_roots() {
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        assert_eq!(hex(&root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut acc = Accumulator::new();
        for (n, expected) in roots.iter().enumerate() {
            assert_eq!(hex(&root(&leaves[..n + 1])), *expected, "size {}", n + 1);
            acc.push(leaves[n]);
            assert_eq!(hex(&acc.root()), *expected, "accumulator size {}", n + 1);
        }
    }

    #[test]
    fn every_proof_of_small_trees_verifies_and_tampering_fails() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let d = &leaves[..n];
            let r = root(d);
            for m in 0..n {
                let p = inclusion_proof(d, m).unwrap();
                assert!(verify_inclusion(&d[m], m as u64, n as u64, &p, &r), "inclusion {m} of {n}");
                if n < leaves.len() {
                    // The proof for size n does not prove inclusion in the tree of size n + 1.
                    assert!(!verify_inclusion(&d[m], m as u64, n as u64 + 1, &p, &root(&leaves[..n + 1])));
                }
                assert!(!verify_inclusion(&d[m], m as u64 + 1, n as u64, &p, &r) || n == 1);
                if !p.is_empty() {
                    assert!(!verify_inclusion(&d[m], m as u64, n as u64, &p[..p.len() - 1], &r));
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&d[m], m as u64, n as u64, &bad, &r));
                }
            }
            for m in 1..=n {
                let p = consistency_proof(d, m).unwrap();
                let r1 = root(&d[..m]);
                assert!(verify_consistency(m as u64, n as u64, &p, &r1, &r), "consistency {m} -> {n}");
                if m < n {
                    let mut bad = p.clone();
                    bad[0][31] ^= 0x80;
                    assert!(!verify_consistency(m as u64, n as u64, &bad, &r1, &r));
                    if n < leaves.len() {
                        assert!(!verify_consistency(m as u64, n as u64 + 1, &p, &r1, &root(&leaves[..n + 1])));
                    }
                    assert!(!verify_consistency(m as u64, n as u64, &p[..p.len() - 1], &r1, &r));
                }
            }
        }
    }

    #[test]
    fn refusals_say_what_was_wrong() {
        let leaves: Vec<Hash> = (0..3u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let e = inclusion_proof(&leaves, 3).unwrap_err();
        assert_eq!(e, MerkleError::LeafOutOfRange { index: 3, size: 3 });
        assert_eq!(e.to_string(), "leaf 3 is not in a tree of 3 leaves");
        assert_eq!(inclusion_proof(&[], 0), Err(MerkleError::LeafOutOfRange { index: 0, size: 0 }));
        assert_eq!(hash_from_slice(&[0u8; 31]), Err(MerkleError::HashLength(31)));
        assert_eq!(hash_from_slice(&leaves[1]), Ok(leaves[1]));
        assert_eq!(unpack_leaves(&[0u8; 33]), Err(MerkleError::PackedLength(33)));
        assert_eq!(unpack_leaves(&leaves.concat()), Ok(leaves.clone()));
        assert_eq!(unpack_leaves(&[]), Ok(Vec::new()));
    }

    // Found by cargo-mutants (scripts/mutants --rust): each edge below survived a mutant.
    #[test]
    fn edges_that_mutants_survived() {
        let leaves: Vec<Hash> = (0..5u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let (r4, r5) = (root(&leaves[..4]), root(&leaves));
        // No consistency proof from the empty tree or from a tree larger than the log.
        assert_eq!(consistency_proof(&leaves, 0), Err(MerkleError::ConsistencyRange { from: 0, to: 5 }));
        assert_eq!(consistency_proof(&leaves, 6), Err(MerkleError::ConsistencyRange { from: 6, to: 5 }));
        // Equal sizes: only an empty proof between equal roots.
        assert!(verify_consistency(5, 5, &[], &r5, &r5));
        assert!(!verify_consistency(5, 5, &[], &r4, &r5));
        assert!(!verify_consistency(5, 5, &[r4], &r5, &r5));
        // The accumulator counts its leaves.
        let mut acc = Accumulator::new();
        assert_eq!(acc.size(), 0);
        for (i, leaf) in leaves.iter().enumerate() {
            acc.push(*leaf);
            assert_eq!(acc.size(), i as u64 + 1);
        }
        assert_eq!(acc.root(), r5);
    }
}
