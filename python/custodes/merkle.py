"""RFC 9162 Merkle tree verification for agency tools (hashing in the Rust core).

All hashes are raw 32-byte SHA-256 values. Leaves are hashed as
``SHA-256(0x00 || entry)`` (:func:`leaf_hash`), inner nodes as
``SHA-256(0x01 || left || right)``.

>>> from custodes import merkle
>>> merkle.verify_inclusion(leaf, index, tree_size, proof, root)   # -> bool
>>> merkle.verify_consistency(size1, size2, proof, root1, root2)   # -> bool
"""

from __future__ import annotations

from collections.abc import Sequence

from custodes import _core

__all__ = [
    "Accumulator",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

Accumulator = _core.MerkleAccumulator


def leaf_hash(entry: bytes) -> bytes:
    """The leaf hash of one log entry."""
    return _core.merkle_leaf_hash(entry)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (the empty tree's root is SHA-256 of nothing)."""
    return _core.merkle_root(b"".join(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of the leaf at ``index`` in the tree of ``leaf_hashes`` (RFC 9162 2.1.3)."""
    return _core.merkle_inclusion_proof(b"".join(leaf_hashes), index)


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """The proof that the tree of ``leaf_hashes`` extends its first ``size1`` leaves (RFC 9162 2.1.4)."""
    return _core.merkle_consistency_proof(b"".join(leaf_hashes), size1)


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows the leaf at ``index`` is in the tree of ``tree_size`` with ``root``.

    Malformed input (a hash that is not 32 bytes, a negative index) is False, not an exception."""
    try:
        return _core.merkle_verify_inclusion(leaf_hash, index, tree_size, list(proof), root)
    except (ValueError, OverflowError, TypeError):
        return False


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """True when the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``."""
    try:
        return _core.merkle_verify_consistency(size1, size2, list(proof), root1, root2)
    except (ValueError, OverflowError, TypeError):
        return False
