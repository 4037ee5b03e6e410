"""Type stubs for the Rust extension ``custodes._core`` (rust/custodes-py)."""

import os
from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

from custodes.errors import EvidenceReadError

__all__ = [
    "__version__",
    "HashJob",
    "algorithms",
    "analyse",
    "clock_checks",
    "clock_future",
    "clock_reset_epochs",
    "clock_unset",
    "correct_times",
    "coverage",
    "copy_and_hash",
    "CopyCancel",
    "DigestTreeWalk",
    "hash_bytes",
    "MerkleAccumulator",
    "merkle_consistency_proof",
    "merkle_inclusion_proof",
    "merkle_leaf_hash",
    "merkle_root",
    "merkle_verify_consistency",
    "merkle_verify_inclusion",
    "probe_files",
    "StreamHasher",
    "time_mismatch",
]
__version__: str

def algorithms() -> list[str]:
    """Names of the algorithms the core computes, the evidence default (sha256) first."""

def hash_bytes(algorithms: list[str], data: bytes) -> list[bytes]:
    """Digests of ``data``, one per algorithm, in the order given."""

@final
class DigestTreeWalk:
    """Every entry under ``folder`` (a tree of ``ab/cd/<digest>``) that is not a folder, in the tree's order, one
    first-level folder's entries per iteration, read ahead on a thread of the core's (each folder's across the
    cores), each ``(name, kind, detail)``: ``(digest, "object" | "link" | "special", what it is: an object
    file's mode and owner, ``"0400 1000"``)`` at an object's own place with ``low <= digest < high``, ``(path
    below folder, "elsewhere", "")`` for anything else, ``(path below folder, "unreadable", why)`` for a folder
    that could not be read, and ``(path below folder, "folder", "0777 1000")`` for a folder whose mode or owner
    differs from ``folder``'s own, before what it holds. Folders the range rules out are not read; links are never
    followed."""

    def __new__(cls, folder: str | os.PathLike[str], low: str = ..., high: str | None = None) -> DigestTreeWalk: ...
    def __iter__(self) -> DigestTreeWalk: ...
    def __next__(self) -> list[tuple[str, str, str]]: ...

@final
class StreamHasher:
    """Digests of a stream fed chunk by chunk (every algorithm in one pass, the GIL let go for large chunks)."""

    def __new__(cls, algorithms: list[str]) -> StreamHasher: ...
    def update(self, chunk: bytes) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def algorithms(self) -> list[str]: ...
    def finish(self) -> tuple[int, list[bytes]]:
        """``(size, [digest per algorithm])``; ValueError on any later call."""

@final
class HashJob:
    """A batch of files hashed on background threads; the GIL is free meanwhile."""

    def __new__(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        algorithms: list[str],
        threads: int | None = None,
        chunk_size: int = ...,
    ) -> HashJob:
        """``chunk_size`` defaults to 1 MiB."""
    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (forever when None); True once finished."""
    def cancel(self) -> None:
        """Stop the batch; unfinished files end with HashingCancelledError."""
    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int:
        """Bytes the batch will read, known once every file has been looked at (0 before)."""
    @property
    def files_done(self) -> int: ...
    @property
    def algorithms(self) -> list[str]: ...
    def result(self) -> tuple[list[int], list[bytes], list[tuple[int, EvidenceReadError]]]:
        """``(sizes, digests, errors)``: per algorithm, the n digests back to back."""

def probe_files(
    paths: Sequence[str | os.PathLike[str]], gap_factor: float = 3.0, samples: bool = False
) -> list[dict[str, Any] | EvidenceReadError]:
    """Container facts of each file (read in parallel), or the exception saying why it could not be opened or read.

    The exceptions are :class:`custodes.errors.EvidenceReadError` subclasses naming the path.
    """

def analyse(
    device: npt.NDArray[np.int64],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    sequence: npt.NDArray[np.int64],
    gap_tolerance: int,
) -> dict[str, dict[str, npt.NDArray[Any]]]:
    """Gaps, overlaps and sequence breaks per device code, as columns."""

def coverage(
    device: npt.NDArray[np.int64],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    task_device: npt.NDArray[np.int64],
    task_start: npt.NDArray[np.int64],
    task_end: npt.NDArray[np.int64],
) -> dict[str, npt.NDArray[Any]]:
    """Covered ns per task window and the uncovered sub-intervals."""

def clock_unset(times: npt.NDArray[np.int64], floor: int) -> npt.NDArray[np.uint8]:
    """0 plausible, 1 before ``floor``, 2 + k just after reset epoch k of :func:`clock_reset_epochs`."""

def clock_reset_epochs() -> list[tuple[int, str]]: ...
def clock_future(times: npt.NDArray[np.int64], reference: int, tolerance: int) -> npt.NDArray[np.bool_]: ...
def clock_checks(times: list[int], floor: int, reference: int, tolerance: int) -> tuple[bytes, list[bool]]: ...
def time_mismatch(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], tolerance: int) -> npt.NDArray[np.bool_]: ...
def correct_times(
    times: npt.NDArray[np.int64], device_readings: npt.NDArray[np.int64], trusted_readings: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Device-clock times corrected linearly between docking clock readings."""

@final
class CopyCancel:
    """Stops the copies given it: each ends at its next buffer with HashingCancelledError once cancelled."""

    def __new__(cls) -> CopyCancel: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

def copy_and_hash(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], algorithms: list[str], cancel: CopyCancel | None = None
) -> tuple[int, list[bytes]]:
    """Copy ``src`` to the new file ``dst`` while hashing it: (size, digests). Not fsynced.

    Raises the :class:`custodes.errors.EvidenceReadError` subclass saying why ``src`` could not be read
    (HashingCancelledError once ``cancel`` is cancelled).
    """

# The merkle_* functions and MerkleAccumulator.extend raise custodes.errors.MerkleInputError
# (a ValueError) for a hash that is not 32 bytes, packed leaves not a multiple of 32 bytes,
# a leaf index past the tree's end, or a consistency proof from a size the log does not have.
def merkle_leaf_hash(entry: bytes) -> bytes: ...
def merkle_root(packed_leaves: bytes) -> bytes: ...
def merkle_inclusion_proof(packed_leaves: bytes, index: int) -> list[bytes]: ...
def merkle_consistency_proof(packed_leaves: bytes, size1: int) -> list[bytes]: ...
def merkle_verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: list[bytes], root: bytes) -> bool: ...
def merkle_verify_consistency(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes) -> bool: ...

@final
class MerkleAccumulator:
    """The root of a growing RFC 9162 log in O(log n) memory."""

    def __new__(cls) -> MerkleAccumulator: ...
    def extend(self, packed_leaves: bytes) -> None: ...
    @property
    def size(self) -> int: ...
    def root(self) -> bytes: ...
    def frontier(self) -> list[bytes]: ...
    @staticmethod
    def resume(size: int, frontier: list[bytes]) -> MerkleAccumulator: ...
