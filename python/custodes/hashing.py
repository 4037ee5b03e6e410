"""Hashing footage: the public API over the Rust engine.

:func:`hash_files` hashes a batch of files in parallel, each read once for all
requested algorithms, and returns one :class:`HashResult` per path, in order.
A file that cannot be read is a result with an ``error``, never an exception
that loses the rest of the batch. :func:`walk` turns files and folders into
the sorted list of files a run will hash.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from custodes import _core
from custodes.errors import CustodesError, EvidenceReadError, NotRegularFileError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "HashProgress",
    "HashResult",
    "clamp_workers",
    "hash_files",
    "max_workers",
    "walk",
]

#: Every algorithm the engine computes; ``md5`` is legacy, for stations that record it.
ALGORITHMS: tuple[str, ...] = tuple(_core.algorithms())
#: The evidence default.
DEFAULT_ALGORITHM = "sha256"

StrPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class HashResult:
    """The digests of one file, or why it has none.

    ``path`` is the path as given (non-UTF-8 bytes kept as surrogate escapes,
    so ``os.fsencode(path)`` gives the original bytes back). ``digests`` maps
    algorithm name to lowercase hex; it is empty when ``error`` is set.
    """

    path: str
    size: int | None
    digests: dict[str, str] = field(default_factory=dict)
    error: CustodesError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "digests": self.digests,
            "error": None if self.error is None else {"kind": self.error.kind, "message": str(self.error)},
        }


@dataclass(frozen=True, slots=True)
class HashProgress:
    """A snapshot of a running batch, handed to the ``progress`` callback."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int


#: Readers per core worth running at once: hashing is bound by the disk and the cores, and more threads
#: than this only wait on each other (``--workers 10000`` once took 97 s on three small files).
WORKERS_PER_CORE = 4


def max_workers() -> int:
    """The most files read at once that any command will run on this machine."""
    return WORKERS_PER_CORE * (os.cpu_count() or 1)


def clamp_workers(requested: int | None, files: int) -> int | None:
    """The one clamp for every command's ``--workers`` (hash, verify, and whatever reads through
    :func:`hash_files`): at least 1, at most :func:`max_workers`, never more than the files there are.
    ``None`` keeps the engine's default (one per core)."""
    if requested is None:
        return None
    return max(1, min(requested, max_workers(), files))


def hash_files(
    paths: Iterable[StrPath],
    algorithms: Sequence[str] = (DEFAULT_ALGORITHM,),
    *,
    threads: int | None = None,
    progress: Callable[[HashProgress], None] | None = None,
    progress_interval: float = 0.2,
) -> list[HashResult]:
    """Hash ``paths`` with every algorithm in ``algorithms``.

    ``threads`` bounds the files read at once (default: one per core; on a
    rotational disk only one reader runs whatever this says), clamped by
    :func:`clamp_workers`; a batch of fewer files than threads hashes each
    large file on several of them in BLAKE3 mode. ``progress`` is
    called about every ``progress_interval`` seconds while the batch runs, and
    once at the end. Ctrl-C cancels the batch and re-raises KeyboardInterrupt.

    Raises :class:`~custodes.errors.UnknownAlgorithmError` for an unknown
    algorithm name; per-file problems are reported in the results.
    """
    fs_paths = [os.fspath(p) for p in paths]
    batch = hash_batch(fs_paths, algorithms, threads=threads, progress=progress, progress_interval=progress_interval)
    results = []
    for i, path in enumerate(fs_paths):
        error = batch.failed.get(i)
        if error is not None:
            results.append(HashResult(path, None, {}, error))
        else:
            results.append(
                HashResult(
                    path, batch.sizes[i], {name: batch.digest(i, c) for c, (name, _, _) in enumerate(batch.columns)}
                )
            )
    return results


@dataclass(frozen=True, slots=True)
class HashBatch:
    """What the engine found for a list of paths, before it is made into one :class:`HashResult` per file
    (which `custodes hash` skips: it writes each line straight from these columns)."""

    sizes: list[int]  # by index in the paths; meaningless where failed
    #: (algorithm, the lowercase hex of every file's digest one after another, hex digits per digest)
    columns: list[tuple[str, str, int]]
    failed: dict[int, CustodesError]  # by index in the paths

    def digest(self, i: int, column: int = 0) -> str:
        _, h, n = self.columns[column]
        return h[i * n : (i + 1) * n]


def hash_batch(
    fs_paths: list[str],
    algorithms: Sequence[str] = (DEFAULT_ALGORITHM,),
    *,
    threads: int | None = None,
    progress: Callable[[HashProgress], None] | None = None,
    progress_interval: float = 0.2,
) -> HashBatch:
    """:func:`hash_files` without the per-file results: the engine's run and its columns."""
    # Fewer files than cores: the engine hashes a large file on the idle cores (BLAKE3), so `-j4` on one
    # file keeps the cores it names rather than being cut to one thread per file.
    job = _core.HashJob(fs_paths, list(algorithms), clamp_workers(threads, max(len(fs_paths), os.cpu_count() or 1)))
    names = job.algorithms

    def report() -> None:
        if progress is not None:
            progress(HashProgress(job.bytes_done, job.bytes_total, job.files_done, len(fs_paths)))

    try:
        while not job.wait(progress_interval if progress is not None else None):
            report()
    except BaseException:
        job.cancel()
        job.wait()
        raise
    report()
    sizes, packed, errors = job.result()
    # One hex() per algorithm for the whole batch, then slices of it: per-file work stays a few steps.
    columns = [
        (name, p.hex(), 2 * len(p) // len(fs_paths) if fs_paths else 0) for name, p in zip(names, packed, strict=True)
    ]
    return HashBatch(sizes, columns, dict(errors))


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    # Byte order, as `LC_ALL=C sort` and the archive's manifests use (os.fsencode, without its per-call lookups).
    return entry.name.encode(_FS_ENCODING, _FS_ERRORS)


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def walk(paths: Iterable[StrPath]) -> Iterator[tuple[str, CustodesError | None]]:
    """Yield ``(path, error)`` for every file under ``paths``, in sorted order.

    A path named directly is taken as it is (a symlink to a folder is followed,
    like ``find -H``). Inside folders, entries are visited in byte order,
    depth first; symlinks to files are hashed through; a symlink to a folder is
    reported and not followed, so a loop or a link out of the volume cannot
    widen the run; a folder that cannot be listed is reported. Special files
    (FIFOs, sockets, devices) are yielded so that hashing reports them.
    """
    for top in paths:
        top = os.fspath(top)
        try:
            is_dir = stat.S_ISDIR(os.stat(top).st_mode)
        except OSError:
            is_dir = False  # let hashing say exactly what is wrong with it
        if is_dir:
            yield from _walk_dir(top)
        else:
            yield top, None


def _walk_dir(top: str) -> Iterator[tuple[str, CustodesError | None]]:
    # Depth first with a stack of its own, not by recursion: a tree of a thousand nested folders ran out of
    # Python's stack (a hostile review), and a volume may nest as deep as its paths may be long.
    listed = _sorted_listing(top)
    if isinstance(listed, CustodesError):
        yield top, listed
        return
    stack = [iter(listed)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = entry.path  # os.path.join(folder, entry.name), already made by scandir
        try:
            if entry.is_dir(follow_symlinks=False):
                below = _sorted_listing(path)
                if isinstance(below, CustodesError):
                    yield path, below
                else:
                    stack.append(iter(below))
                continue
            if entry.is_symlink() and entry.is_dir(follow_symlinks=True):
                yield path, NotRegularFileError(None, "symlink to a folder, not followed", path)
                continue
        except OSError:
            pass  # hashing the path reports the problem precisely
        yield path, None


def _sorted_listing(folder: str) -> list[os.DirEntry[str]] | CustodesError:
    """A folder's entries in byte order, or why it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=_sort_key)
    except OSError as e:
        return EvidenceReadError(e.errno, f"cannot list folder: {e.strerror}", folder)
