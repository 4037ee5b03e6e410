"""Type stubs for the Rust extension ``custodes._core`` (rust/custodes-py)."""

import os


__version__: str

def algorithms() -> list[str]:
    """Names of the algorithms the core computes, the evidence default (sha256) first."""

def hash_bytes(algorithms: list[str], data: bytes) -> list[bytes]:
    """Digests of ``data``, one per algorithm, in the order given."""

class HashJob:
    """A batch of files hashed on background threads; the GIL is free meanwhile."""

    def __init__(
        self,
        paths: list[str | os.PathLike[str]],
        algorithms: list[str],
        threads: int | None = None,
        chunk_size: int = 1048576,
    ) -> None: ...
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
