"""The custodes exception hierarchy, rooted in :class:`CustodesError`.

Each class has a ``kind``: the snake_case name used for it in JSON output.
Errors about one piece of evidence (a file that cannot be read) are also
:class:`OSError` subclasses with ``errno``/``filename`` set where they apply,
so ``except FileNotFoundError`` works as a Python user expects. The Rust
binding maps each variant of its error enums to exactly one class here.
"""

from __future__ import annotations

import os

__all__ = [
    "ChangedWhileReadingError",
    "CustodesError",
    "DigestListError",
    "EvidenceNotFoundError",
    "EvidencePermissionError",
    "EvidenceReadError",
    "HashingCancelledError",
    "MerkleInputError",
    "NotRegularFileError",
    "SymlinkLoopError",
    "TimelineInputError",
    "UnknownAlgorithmError",
    "UnknownRecordError",
]


class CustodesError(Exception):
    """Base of every error custodes raises or reports."""

    kind = "error"
    #: What the act had done, and stands, when this error stopped it (an ingest recorded whole whose checkpoint was
    #: not signed: its :class:`custodes.ingest.IngestResult`, which ``--json`` still writes); None: nothing.
    done: object | None = None


class UnknownRecordError(CustodesError, LookupError):
    """A record the archive does not hold: an access request, a hold, a segment named by id. A LookupError,
    so a caller (the HTTP API: 404) tells "not there" from "there, but refused" or "not now"."""

    kind = "unknown_record"


class UnknownAlgorithmError(CustodesError, ValueError):
    """A hash algorithm name custodes does not know."""

    kind = "unknown_algorithm"


class DigestListError(CustodesError, ValueError):
    """A checksum list (``--check``) that cannot be used at all."""

    kind = "digest_list"


class EvidenceReadError(CustodesError, OSError):
    """One file could not be read to the end; the rest of a batch goes on."""

    kind = "unreadable"

    def __init__(self, errno: int | None, message: str, filename: str | os.PathLike[str]) -> None:
        super().__init__(errno, message, os.fspath(filename))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    def __reduce__(self):  # keeps pickling (multiprocessing, Dask) working
        return (type(self), (self.errno, self.strerror, self.filename))


class EvidenceNotFoundError(EvidenceReadError, FileNotFoundError):
    """The path does not exist: never did, vanished, or is a dangling symlink."""

    kind = "not_found"


class EvidencePermissionError(EvidenceReadError, PermissionError):
    """The operating system refused to open or read the file."""

    kind = "permission_denied"


class NotRegularFileError(EvidenceReadError):
    """A directory, FIFO, socket or device where a regular file was expected."""

    kind = "not_regular_file"


class SymlinkLoopError(EvidenceReadError):
    """Symbolic links that point at each other."""

    kind = "symlink_loop"


class ChangedWhileReadingError(EvidenceReadError):
    """The file grew, shrank or was written to while it was read: its digest would not describe it."""

    kind = "changed_while_reading"


class HashingCancelledError(EvidenceReadError):
    """The batch was cancelled (Ctrl-C) before this file was finished."""

    kind = "cancelled"


class TimelineInputError(CustodesError, ValueError):
    """Timeline columns that cannot be analysed (lengths differ, a segment ends before it starts)."""

    kind = "timeline_input"


class MerkleInputError(CustodesError, ValueError):
    """Merkle input that describes no tree or proof (a hash not 32 bytes, a leaf index past the tree's end)."""

    kind = "merkle_input"
