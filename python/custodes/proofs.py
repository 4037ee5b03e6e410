"""Inclusion and consistency proofs of ledger entries, as self-contained JSON, and their offline check.

:func:`ledger_proof` makes the JSON ``custodes ledger proof`` prints; :func:`verify` checks it, with nothing but
the trusted verifier key (no archive):

    from custodes import proofs
    proven = proofs.verify(open("proof.json").read(), trusted_key="custodes.local/a1+89ab...+AQ...")
    print(proven.index, proven.entry["type"], proven.tree_size, proven.root.hex())
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from custodes import merkle
from custodes.archive import Archive
from custodes.keys import archive_chain, fingerprint
from custodes.ledger import LedgerError, VerifierKey, parse_checkpoint

__all__ = [
    "ConsistencyJSON",
    "InclusionJSON",
    "LedgerProofJSON",
    "ProofError",
    "VerifiedProof",
    "ledger_proof",
    "verify",
]


class InclusionJSON(TypedDict):
    """That one entry is in the checkpoint's tree: the entry (parsed, and its exact bytes in base64), its leaf
    hash, index and audit path (hashes hex)."""

    index: int
    entry: dict[str, Any]
    entry_base64: str
    leaf_hash: str
    proof: list[str]


class ConsistencyJSON(TypedDict):
    """That the checkpoint's tree extends the tree of ``size1`` entries with root ``root1`` (hashes hex)."""

    size1: int
    root1: str
    proof: list[str]


class _ProofHeader(TypedDict):
    checkpoint: str
    verifier_key: str
    trust: dict[str, Any]
    tree_size: int
    root: str


class LedgerProofJSON(_ProofHeader, total=False):
    """A proof as ``custodes ledger proof`` prints it and the HTTP API returns it: the signed checkpoint note,
    the key that signed it and the chain of trust to it, the tree's size and root (hex), and the parts asked
    for."""

    inclusion: InclusionJSON
    consistency: ConsistencyJSON


def ledger_proof(
    archive: Archive, *, entry: int | None = None, segment: int | None = None, from_size: int | None = None
) -> LedgerProofJSON:
    """Proof material against the latest signed checkpoint.

    ``inclusion``: the entry, its leaf hash, index, tree size, audit path and
    root; ``consistency``: the proof that the checkpoint's tree extends the tree
    of ``from_size``. Hashes are hex; the signed note and the verifier key are
    included so the whole proof can be checked offline."""
    latest = archive.root / "ledger" / "checkpoint"
    try:
        note = latest.read_text(encoding="utf-8")
    except FileNotFoundError:  # a proof needs a signed tree to be proven against
        raise LedgerError(
            f"{latest}: no signed checkpoint to prove against; run `custodes verify` to see why it is "
            "missing, then `custodes ledger checkpoint` to sign the ledger as it is"
        ) from None
    except UnicodeDecodeError:
        raise LedgerError(f"{latest}: not a signed checkpoint (not UTF-8 text); run `custodes verify`") from None
    chain = archive_chain(archive)
    cp = chain.parse(note)
    leaves = archive.leaves(cp.size)
    if merkle.root(leaves) != cp.root:
        raise LedgerError("the ledger no longer matches its latest checkpoint; run `custodes verify`")
    out: LedgerProofJSON = {
        "checkpoint": note,
        "verifier_key": str(chain.key_for(cp.size)),  # the key that signed the checkpoint (after any rotation)
        "trust": chain.to_json(),
        "tree_size": cp.size,
        "root": cp.root.hex(),
    }
    if segment is not None:
        entry = archive.catalog.segments.ledger_index(segment)
        if entry is None:
            raise LedgerError(f"no segment {segment}")
    if entry is not None:
        if type(entry) is not int or entry < 0:  # (a hostile review: -1 ended in an AssertionError)
            raise LedgerError(f"entry {entry!r}: an entry is its index in the ledger, 0 or more")
        if entry >= cp.size:
            raise LedgerError(f"entry {entry} is not covered by the latest checkpoint (size {cp.size})")
        data = archive.catalog.ledger.entry(entry)
        assert data is not None  # entry < cp.size, and the ledger matches the checkpoint
        out["inclusion"] = {
            "index": entry,
            "entry": json.loads(data),
            "entry_base64": base64.b64encode(data).decode(),
            "leaf_hash": leaves[entry].hex(),
            "proof": [h.hex() for h in merkle.inclusion_proof(leaves, entry)],
        }
    if from_size is not None:
        if not 0 < from_size <= cp.size:
            raise LedgerError(f"--from-size must be between 1 and {cp.size}")
        out["consistency"] = {
            "size1": from_size,
            "root1": merkle.root(leaves[:from_size]).hex(),
            "proof": [h.hex() for h in merkle.consistency_proof(leaves, from_size)],
        }
    return out


class ProofError(LedgerError):
    """A proof that does not verify, or is not a proof: the message says which part failed."""

    kind = "proof"


@dataclass(frozen=True)
class VerifiedProof:
    """What :func:`verify` proved: the checkpoint of ``tree_size`` entries with ``root`` (32 bytes) is signed by
    the trusted key (``key_fingerprint``, as ``custodes init`` printed it); when the proof has an inclusion part,
    the entry at ``index`` (its exact ``entry_bytes``, and ``entry`` parsed) is in that tree; when it has a
    consistency part, that tree extends the tree of ``extends_size`` entries with root ``extends_root``."""

    origin: str
    tree_size: int
    root: bytes
    key_fingerprint: str
    index: int | None = None
    entry: dict[str, Any] | None = None
    entry_bytes: bytes | None = None
    extends_size: int | None = None
    extends_root: bytes | None = None


def _hashes(value: Any, what: str) -> list[bytes]:
    """A list of hex hashes (as the proof JSON holds them) as the bytes custodes.merkle takes."""
    if not isinstance(value, list):
        raise ProofError(f"{what} is not a list of hex hashes")
    return [_hash(h, f"{what} element {n}") for n, h in enumerate(value)]


def _hash(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ProofError(f"{what} is not a 32-byte hash in hex")
    return raw


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ProofError(f"{what} is not a whole number")
    return value


def _inclusion(part: Any, size: int, root: bytes) -> tuple[int, dict[str, Any], bytes]:
    """(index, entry, its bytes) of an inclusion part that shows the entry is in the signed tree."""
    if not isinstance(part, dict):
        raise ProofError("inclusion is not an object")
    index = _count(part.get("index"), "inclusion index")
    if index >= size:
        raise ProofError(f"inclusion index {index} is not in the signed tree of {size} entries")
    try:
        data = base64.b64decode(str(part.get("entry_base64")), validate=True)
    except (ValueError, binascii.Error):
        raise ProofError("inclusion entry_base64 is not base64") from None
    try:
        entry = json.loads(data)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or part.get("entry") != entry:
        raise ProofError("the entry shown (inclusion entry) is not the entry proven (inclusion entry_base64)")
    leaf = merkle.leaf_hash(data)
    if "leaf_hash" in part and _hash(part["leaf_hash"], "inclusion leaf_hash") != leaf:
        raise ProofError("the entry does not hash to the proof's leaf hash: the entry or the leaf hash was altered")
    path = _hashes(part.get("proof"), "inclusion proof")
    if not merkle.verify_inclusion(leaf, index, size, path, root):
        proven = _index_proven(leaf, size, path, root)
        if proven is not None:
            raise ProofError(
                f"the audit path proves the entry at index {proven}, not at index {index}: the index was altered"
            )
        raise ProofError(
            f"the audit path does not lead from the entry at index {index} to the signed root: an element of the path "
            "was altered, or the path is of another tree"
        )
    return index, entry, data


#: The largest tree whose every index :func:`_index_proven` tries (a few tenths of a second at this size).
SEARCHED_SIZE = 1 << 16


def _index_proven(leaf: bytes, size: int, path: list[bytes], root: bytes) -> int | None:
    """The index at which ``path`` does prove ``leaf`` under ``root``, when one does (a proof whose index alone was
    altered); None when none does, or the tree is too large to try every index of (the message then says the
    path failed, as it does)."""
    if size > SEARCHED_SIZE:
        return None
    return next((i for i in range(size) if merkle.verify_inclusion(leaf, i, size, path, root)), None)


def verify(proof: dict[str, Any] | str | bytes, *, trusted_key: VerifierKey | str) -> VerifiedProof:
    """Check a proof as ``custodes ledger proof --json`` prints it (the dict, or its JSON text): the checkpoint's
    signature by ``trusted_key`` (a :class:`~custodes.ledger.VerifierKey` or its text, as ``custodes init``
    printed it; after a key rotation, the key that signed the checkpoint, the proof's ``verifier_key``), then
    the inclusion of the entry (its bytes hashed to the leaf, the audit path to the signed root) and the
    consistency proof, each where the proof has one. The root and size checked against are the signed note's,
    never the JSON's own ``root`` and ``tree_size`` (which must agree with it).

    Returns what was proven; raises :class:`ProofError` naming what failed."""
    if isinstance(proof, (str, bytes)):
        try:
            proof = json.loads(proof)
        except ValueError as e:
            raise ProofError(f"the proof is not JSON: {e}") from None
    if not isinstance(proof, dict) or not isinstance(proof.get("checkpoint"), str):
        raise ProofError("not a proof from `custodes ledger proof`: no signed checkpoint in it")
    try:
        key = trusted_key if isinstance(trusted_key, VerifierKey) else VerifierKey.parse(trusted_key)
        cp = parse_checkpoint(proof["checkpoint"], key)
    except LedgerError as e:
        raise ProofError(f"checkpoint: {e}") from None
    if proof.get("tree_size") != cp.size or proof.get("root") != cp.root.hex():
        raise ProofError("the proof's tree_size or root is not the signed checkpoint's")
    out = VerifiedProof(cp.origin, cp.size, cp.root, fingerprint(key))
    if "inclusion" in proof:
        index, entry, data = _inclusion(proof["inclusion"], cp.size, cp.root)
        out = replace(out, index=index, entry=entry, entry_bytes=data)
    if "consistency" in proof:
        part = proof["consistency"]
        if not isinstance(part, dict):
            raise ProofError("consistency is not an object")
        size1 = _count(part.get("size1"), "consistency size1")
        root1 = _hash(part.get("root1"), "consistency root1")
        path = _hashes(part.get("proof"), "consistency proof")
        if not 0 < size1 <= cp.size or not merkle.verify_consistency(size1, cp.size, path, root1, cp.root):
            raise ProofError(
                f"the consistency proof does not show the signed tree of {cp.size} entries extends the tree of "
                f"{size1} entries with root1"
            )
        out = replace(out, extends_size=size1, extends_root=root1)
    return out
