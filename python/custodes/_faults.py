"""Crash points and storage faults for the test suite. Both are planned from the
environment, so they work in the real CLI subprocess; unset (always, outside
tests) each check is one test of a module constant.

``CUSTODES_CRASHPOINT=phase:n`` kills the process with SIGKILL the n-th time
it reaches ``phase`` (1-based).

``CUSTODES_FAULT=op:n:what`` makes the n-th storage operation of kind ``op``
fail (1-based, counted over the whole process, every thread): ``what`` is an
errno name (``EIO``, ``ENOSPC``, ...) raised as the :class:`OSError` that
operation raises, or ``crash``: SIGKILL just before it, so a ``fsync:n:crash``
is a power cut before that fsync completes, or (for ``read``) ``corrupt``: the
read succeeds but the storage hands back other bytes than it was given (one
bit flipped in the middle of the file first: bit rot, a bad controller).
``op:n:what:NAME`` counts only the operations on a path that ends
with ``NAME``: ingest copies files on several threads, so the n-th write of
the whole process is not the same file from one run to the next, while the
n-th write of one recording's copy is. ``CUSTODES_FAULT_LOG=FILE``
appends one line per operation (``op<TAB>n<TAB>path``, plus ``<TAB>fault``
where one was injected): a clean run with only the log set counts the
operations a test then walks through.

The storage operations, each counted where the Python side performs it or
hands it to Rust:

- ``write``: bytes written to an archive or export file (the Rust copy of a
  recording into ``tmp/``, a checkpoint, a bag file), or a name created or
  removed (``link`` into the store, ``replace``, ``unlink`` of a purged object);
- ``read``: an archive file read back (ingest's read-back and head digest,
  export reading an object and re-hashing its copy);
- ``fsync``: a file or directory fsynced.

A failing ``write`` of a whole file (:func:`write_cut_short`) first lets the
write run, then truncates the file to half and raises: a disk that fills
mid-copy leaves a short file behind, and the code must clean it up.
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_PLAN = os.environ.get("CUSTODES_CRASHPOINT", "")
_PHASE, _, _N = _PLAN.partition(":")
_COUNTS: dict[str, int] = {}

OPS = ("write", "read", "fsync")
_FAULT = os.environ.get("CUSTODES_FAULT", "")
_LOG = os.environ.get("CUSTODES_FAULT_LOG", "")
ACTIVE = bool(_FAULT or _LOG)


def crashpoint(phase: str) -> None:
    if not _PLAN or phase != _PHASE:
        return
    _COUNTS[phase] = _COUNTS.get(phase, 0) + 1
    if _COUNTS[phase] == int(_N or 1):
        os.kill(os.getpid(), signal.SIGKILL)


#: The planned "errno" of a ``read:n:corrupt`` fault: no error, other bytes.
CORRUPT = -1


def _parse(plan: str) -> tuple[str, int, int | None, str]:
    """(op, n, errno, name) from ``op:n:what[:name]``; errno None means crash,
    CORRUPT a corrupting read; name "" counts every path. A bad plan is a
    broken test, so it fails loudly at import."""
    op, n, what, *name = plan.split(":", 3)
    if op not in OPS or int(n) < 1 or (what == "corrupt" and op != "read") or name == [""]:
        raise ValueError(
            f"CUSTODES_FAULT={plan!r}: want op:n:what[:name] with op in {OPS} and n >= 1 (corrupt: read only)"
        )
    code = CORRUPT if what == "corrupt" else None if what == "crash" else int(getattr(_errno, what))
    return op, int(n), code, "".join(name)


_TARGET = _parse(_FAULT) if _FAULT else None
_OP_COUNTS = dict.fromkeys(OPS, 0)
_TARGET_COUNT = 0  # the operations the plan counts: its kind, on its name when it names one
_LOCK = threading.Lock()


def _hit(op: str, path: str | os.PathLike[str]) -> int | None:
    """Count one ``op``; the errno to fail it with, when it is the planned one (a crash never returns)."""
    global _TARGET_COUNT
    with _LOCK:
        _OP_COUNTS[op] += 1
        n = _OP_COUNTS[op]
        fire = False
        if _TARGET is not None and _TARGET[0] == op and os.fsdecode(path).rstrip("/").endswith(_TARGET[3]):
            _TARGET_COUNT += 1
            fire = _TARGET_COUNT == _TARGET[1]
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(f"{op}\t{n}\t{os.fsdecode(path)!r}" + ("\tfault\n" if fire else "\n"))
    if not fire:
        return None
    assert _TARGET is not None
    if _TARGET[2] is None:
        os.kill(os.getpid(), signal.SIGKILL)
    return _TARGET[2]


def storage_op(op: str, path: str | os.PathLike[str]) -> None:
    """Call just before a storage operation on ``path``: raises the planned
    :class:`OSError` (or crashes) when this is the planned one."""
    if not ACTIVE:
        return
    code = _hit(op, path)
    if code == CORRUPT:
        _flip_a_bit(path)
    elif code is not None:
        raise OSError(code, os.strerror(code), os.fspath(path))


def _flip_a_bit(path: str | os.PathLike[str]) -> None:
    """What a read finds on a storage that lost a bit: the file changed under the reader."""
    mode = os.stat(path).st_mode
    os.chmod(path, mode | 0o200)
    try:
        with open(path, "r+b") as f:
            middle = os.fstat(f.fileno()).st_size // 2
            f.seek(middle)
            byte = f.read(1)
            f.seek(middle)
            f.write(bytes([byte[0] ^ 0x01]) if byte else b"\x01")
    finally:
        os.chmod(path, mode)


def write_cut_short(
    path: str | os.PathLike[str], write: Callable[[], T], error: Callable[[OSError], Exception] | None = None
) -> T:
    """Run ``write`` (which creates and fills ``path``) as one storage write.

    When it is the planned failure, the write runs, then ``path`` is cut to
    half its length and the error is raised, shaped by ``error`` into what the
    real writer raises (the Rust copy raises EvidenceReadError, not OSError)."""
    if not ACTIVE:
        return write()
    code = _hit("write", path)
    result = write()
    if code is None:
        return result
    try:
        os.truncate(path, os.stat(path).st_size // 2)
    except OSError:
        pass
    e = OSError(code, os.strerror(code), os.fspath(path))
    raise (error(e) if error else e)
