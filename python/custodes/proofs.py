"""Inclusion and consistency proofs of ledger entries, as self-contained JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

from custodes import merkle
from custodes.archive import Archive
from custodes.keys import archive_chain
from custodes.ledger import LedgerError

__all__ = ["ledger_proof"]


def ledger_proof(
    archive: Archive, *, entry: int | None = None, segment: int | None = None, from_size: int | None = None
) -> dict[str, Any]:
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
    out: dict[str, Any] = {
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
