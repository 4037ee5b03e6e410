"""custodes.merkle against the RFC 9162 definitions, written out here in plain Python."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from custodes import merkle


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, literally: MTH over entries (not leaf hashes)."""
    n = len(d)
    if n == 0:
        return H(b"")
    if n == 1:
        return H(b"\x00" + d[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return H(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """§2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""

    def sub(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return sub(m, d[:k], b) + [mth(d[k:])]
        return sub(m - k, d[k:], False) + [mth(d[:k])]

    return sub(m, d, True)


ENTRIES = [bytes(random.Random(i).randbytes(i % 37)) for i in range(70)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 70])
def test_roots_proofs_and_verification_match_the_rfc(n: int) -> None:
    d = ENTRIES[:n]
    leaves = [merkle.leaf_hash(e) for e in d]
    assert leaves == [H(b"\x00" + e) for e in d]
    root = merkle.root(leaves)
    assert root == mth(d)
    acc = merkle.Accumulator()
    acc.extend(b"".join(leaves))
    assert (acc.size, acc.root()) == (n, root)
    for m in range(n):
        p = merkle.inclusion_proof(leaves, m)
        assert p == path(m, d)
        assert merkle.verify_inclusion(leaves[m], m, n, p, root)
    for m in range(1, n + 1):
        p = merkle.consistency_proof(leaves, m)
        assert p == proof(m, d)
        assert merkle.verify_consistency(m, n, p, mth(d[:m]), root)


def test_negative_proofs() -> None:
    d = ENTRIES[:21]
    leaves = [merkle.leaf_hash(e) for e in d]
    root = merkle.root(leaves)
    p = merkle.inclusion_proof(leaves, 6)
    assert merkle.verify_inclusion(leaves[6], 6, 21, p, root)
    assert not merkle.verify_inclusion(
        leaves[6], 6, 22, p, merkle.root(leaves + [merkle.leaf_hash(b"x")])
    )  # wrong size
    assert not merkle.verify_inclusion(leaves[6], 6, 20, p, merkle.root(leaves[:20]))
    assert not merkle.verify_inclusion(leaves[6], 6, 21, p[:-1], root)  # truncated proof
    assert not merkle.verify_inclusion(leaves[6], 6, 21, p + [p[0]], root)  # padded proof
    bad = [bytes([p[0][0] ^ 1]) + p[0][1:]] + p[1:]
    assert not merkle.verify_inclusion(leaves[6], 6, 21, bad, root)  # flipped bit
    assert not merkle.verify_inclusion(leaves[7], 6, 21, p, root)  # another leaf
    assert not merkle.verify_inclusion(leaves[6], 6, 21, p, bytes(32))
    assert not merkle.verify_inclusion(b"short", 6, 21, p, root)  # malformed input is False, not a crash
    assert not merkle.verify_inclusion(leaves[6], 21, 21, p, root)
    c = merkle.consistency_proof(leaves, 13)
    r13 = merkle.root(leaves[:13])
    assert merkle.verify_consistency(13, 21, c, r13, root)
    assert not merkle.verify_consistency(13, 22, c, r13, merkle.root(leaves + [merkle.leaf_hash(b"x")]))  # wrong size
    assert not merkle.verify_consistency(12, 21, c, merkle.root(leaves[:12]), root)
    assert not merkle.verify_consistency(13, 21, c[:-1], r13, root)
    assert not merkle.verify_consistency(13, 21, [bytes([c[0][0] ^ 0x80]) + c[0][1:]] + c[1:], r13, root)
    assert not merkle.verify_consistency(13, 21, c, merkle.root(leaves[1:14]), root)
    assert not merkle.verify_consistency(21, 13, c, root, r13)
    assert merkle.verify_consistency(21, 21, [], root, root)
    assert not merkle.verify_consistency(21, 21, [], root, r13)


def test_ct_reference_vector_through_the_public_api() -> None:
    data = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        bytes(range(0x60, 0x70)),
    ]
    leaves = [merkle.leaf_hash(x) for x in data]
    assert merkle.root(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_an_entry_s_one_byte_form_and_no_float_anywhere_in_it() -> None:
    # Mutation run (issue 11): a float deep in an entry's dicts, and the refusal's wording, were never checked.
    from custodes.ledger import LedgerError, canonical_json

    assert (
        canonical_json({"b": 1, "a": ["é", {"z": None, "y": True}]}) == '{"a":["é",{"y":true,"z":null}],"b":1}'.encode()
    )
    for entry in ({"a": 0.5}, {"a": {"b": {"c": 1.0}}}, {"a": [1, [2, 2.5]]}, {"a": [{"b": float("nan")}]}):
        with pytest.raises(
            LedgerError, match=r"^ledger entries carry no floats \(got .*\); use integers \(ns, bytes\)$"
        ):
            canonical_json(entry)


def test_the_ledger_s_small_rules_that_mutants_survived(tmp_path: Path) -> None:
    # Mutation run (issue 11): each of these could be changed without any test noticing.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from custodes.ledger import LedgerError, entry_type, load_private_key, make_checkpoint, new_private_key

    # an entry is filed under its type only when the type is text
    assert [entry_type(e) for e in ({"type": "ingest"}, {"type": 5}, {"type": None}, {})] == [
        "ingest",
        None,
        None,
        None,
    ]
    # the signing key is made with its folders, 0700, and a second key beside it in the same folder
    made = new_private_key(tmp_path / "new" / "private" / "checkpoint.key")
    assert (tmp_path / "new" / "private").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "private" / "checkpoint.key").stat().st_mode & 0o777 == 0o600  # its owner's alone
    new_private_key(tmp_path / "new" / "private" / "other.key")
    assert (
        load_private_key(tmp_path / "new" / "private" / "checkpoint.key").private_bytes_raw()
        == made.private_bytes_raw()
    )
    # a checkpoint names the origin it was made for
    assert make_checkpoint(made, "custodes.local/x", 3, bytes(32)).origin == "custodes.local/x"
    # a PEM key of another kind is refused, naming the file
    other = tmp_path / "ec.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(LedgerError, match=f"^{other} is not an Ed25519 private key$"):
        load_private_key(other)


def test_a_verifier_key_with_characters_base64_does_not_have_is_refused() -> None:
    # Mutation run (issue 11): without strict base64, "!" or a space inside the key was dropped and the key taken.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custodes.ledger import LedgerError, VerifierKey

    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    good = str(VerifierKey("custodes.local/test", public))
    name, key_id, blob = good.split("+", 2)
    assert VerifierKey.parse(good).name == name
    for bad in (f"{name}+{key_id}+{blob[:10]}!{blob[10:]}", f"{name}+{key_id}+{blob[:10]} {blob[10:]}"):
        with pytest.raises(LedgerError, match="^not a verifier key: "):
            VerifierKey.parse(bad)
