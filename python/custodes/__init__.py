"""custodes: keep law-enforcement audio/video footage unaltered and provably complete.

The public API, for agency tools and driver vendors, is:

- the names in this package's ``__all__`` (hashing, probing, checksum lists,
  findings and the errors, re-exported for short imports);
- each module named in :data:`PUBLIC_MODULES`, through the names in its own
  ``__all__``.

Everything else is internal and may change in any release: every other
module (``custodes.catalog``, ``custodes.cli``, ``custodes.ledger``, the
``_``-prefixed ones, ...) and every name outside a public module's ``__all__``.
``docs/reference.md`` documents the public API, generated from these
docstrings by ``scripts/apidoc``; tests/test_public_api.py keeps this rule, the
README and that page in agreement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from custodes._core import __version__
from custodes.errors import (
    ChangedWhileReadingError,
    CustodesError,
    DigestListError,
    EvidenceNotFoundError,
    EvidencePermissionError,
    EvidenceReadError,
    HashingCancelledError,
    MerkleInputError,
    NotRegularFileError,
    SymlinkLoopError,
    TimelineInputError,
    UnknownAlgorithmError,
)
from custodes.findings import Finding
from custodes.hashing import ALGORITHMS, DEFAULT_ALGORITHM, HashProgress, HashResult, hash_files, walk

if TYPE_CHECKING:  # their real types for a type checker; at run time loaded on first use (_LAZY below)
    from custodes.checksums import ChecksumEntry, parse_checksum_list
    from custodes.media import CreationTime, MediaInfo, TrackInfo, probe, probe_many

#: The public modules, each used through its ``__all__``: the library an agency tool calls (archive, ingest,
#: verify, proofs, merkle, policy, query, records, reports, timeline; errors, findings, hashing, checksums, media)
#: and the contract a vendor's plugin is written against (drivers, plugins, hookspecs, storage).
PUBLIC_MODULES = (
    "custodes.archive",
    "custodes.checksums",
    "custodes.devices",
    "custodes.drivers",
    "custodes.errors",
    "custodes.findings",
    "custodes.hashing",
    "custodes.hookspecs",
    "custodes.ingest",
    "custodes.media",
    "custodes.merkle",
    "custodes.plugins",
    "custodes.policy",
    "custodes.proofs",
    "custodes.query",
    "custodes.records",
    "custodes.reports",
    "custodes.storage",
    "custodes.testing.conformance",
    "custodes.timeline",
    "custodes.verify",
)

# Loaded on first use (PEP 562), so that each command pays only for what it runs: probing for hashing, and
# checksum lists (regular expressions, a dozen dataclasses) for `custodes probe`.
_LAZY = {
    **{name: "custodes.media" for name in ("CreationTime", "MediaInfo", "TrackInfo", "probe", "probe_many")},
    **{name: "custodes.checksums" for name in ("ChecksumEntry", "parse_checksum_list")},
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'custodes' has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "ChangedWhileReadingError",
    "ChecksumEntry",
    "CustodesError",
    "DigestListError",
    "EvidenceNotFoundError",
    "EvidencePermissionError",
    "EvidenceReadError",
    "CreationTime",
    "Finding",
    "MediaInfo",
    "TrackInfo",
    "HashProgress",
    "HashResult",
    "HashingCancelledError",
    "MerkleInputError",
    "NotRegularFileError",
    "PUBLIC_MODULES",
    "SymlinkLoopError",
    "TimelineInputError",
    "UnknownAlgorithmError",
    "__version__",
    "hash_files",
    "parse_checksum_list",
    "probe",
    "probe_many",
    "walk",
]
