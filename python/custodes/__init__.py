"""custodes: keep law-enforcement audio/video footage unaltered and provably complete.

The public API. Everything here is stable for agency tools; modules not
re-exported here are internal.
"""

from __future__ import annotations

from custodes._core import __version__
from custodes.checksums import ChecksumEntry, parse_checksum_list
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

# Probing needs numpy; load it on first use so hashing starts fast (PEP 562).
_LAZY = {name: "custodes.media" for name in ("CreationTime", "MediaInfo", "TrackInfo", "probe", "probe_many")}


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
