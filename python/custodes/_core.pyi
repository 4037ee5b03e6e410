"""Type stubs for the Rust extension ``custodes._core`` (rust/custodes-py)."""

import os
from typing import Any, final

import numpy as np
import numpy.typing as npt


__all__ = [
    "__version__",
    "HashJob",
    "algorithms",
    "analyse",
    "clock_future",
    "clock_reset_epochs",
    "clock_unset",
    "correct_times",
    "coverage",
    "hash_bytes",
    "probe_files",
    "time_mismatch",
]
__version__: str

def algorithms() -> list[str]:
    """Names of the algorithms the core computes, the evidence default (sha256) first."""

def hash_bytes(algorithms: list[str], data: bytes) -> list[bytes]:
    """Digests of ``data``, one per algorithm, in the order given."""

@final
class HashJob:
    """A batch of files hashed on background threads; the GIL is free meanwhile."""

    def __new__(
        cls,
        paths: list[str | os.PathLike[str]],
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
    def result(self) -> tuple[list[int], list[bytes], list[tuple[int, Exception]]]:
        """``(sizes, digests, errors)``: per algorithm, the n digests back to back."""

def probe_files(
    paths: list[str | os.PathLike[str]], gap_factor: float = 3.0, samples: bool = False
) -> list[dict[str, Any] | Exception]:
    """Container facts of each file (read in parallel), or the exception saying why it could not be opened."""

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
def time_mismatch(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], tolerance: int) -> npt.NDArray[np.bool_]: ...
def correct_times(
    times: npt.NDArray[np.int64], device_readings: npt.NDArray[np.int64], trusted_readings: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Device-clock times corrected linearly between docking clock readings."""
