"""Checksum lists in the formats of ``sha256sum``, ``b3sum`` and BSD ``--tag``.

custodes writes lines those tools can check, and checks lists they wrote:

- GNU/b3sum: ``<hex>  <path>`` (``<hex> *<path>`` in binary mode). A path with
  a backslash, newline or carriage return is escaped and the line starts with
  a backslash.
- BSD tag: ``SHA256 (<path>) = <hex>``; the tag names the algorithm.

Paths are bytes on disk; they are handled as bytes here and decoded with
:func:`os.fsdecode` (surrogate escapes keep non-UTF-8 names exact).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from custodes import _core
from custodes.errors import CustodesError, DigestListError
from custodes.hashing import HashProgress, HashResult, hash_files

__all__ = [
    "CheckStatus",
    "ChecksumCheck",
    "ChecksumEntry",
    "EntryCheck",
    "check_checksum_list",
    "format_check_line",
    "format_line",
    "format_tag_line",
    "parse_checksum_list",
    "read_checksum_list",
]

_DIGEST_LEN = {
    name: len(digest)
    for name, digest in zip(_core.algorithms(), _core.hash_bytes(_core.algorithms(), b""), strict=True)
}
_TAGS = {"SHA256": "sha256", "BLAKE3": "blake3", "SM3": "sm3", "MD5": "md5"}
_TAG_OF = {v: k for k, v in _TAGS.items()}

_GNU_LINE = re.compile(rb"^(?P<hex>[0-9a-fA-F]+) [ *](?P<path>.+)$", re.DOTALL)
_TAG_LINE = re.compile(rb"^(?P<tag>[A-Z0-9-]+) \((?P<path>.+)\) = (?P<hex>[0-9a-fA-F]+)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ChecksumEntry:
    """One line of a checksum list: which file should have which digest."""

    path: str
    algorithm: str
    digest: str
    line_no: int


#: The tools whose lines leave a carriage return in a name as it is: b3sum escapes only a backslash and a newline
#: (and `b3sum -c` refuses ``\r``), where sha256sum and md5sum (coreutils 9) escape a carriage return too.
RAW_CARRIAGE_RETURN = frozenset({"blake3"})


def _escape(path: str, carriage_return: bool = True) -> tuple[bool, bytes]:
    raw = os.fsencode(path)
    cr = carriage_return and b"\r" in raw
    if b"\\" not in raw and b"\n" not in raw and not cr:  # a few scans in C; a generator cost more
        return False, raw
    raw = raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    return True, raw.replace(b"\r", b"\\r") if cr else raw


def _unescape(raw: bytes) -> bytes | None:
    out = bytearray()
    it = iter(raw)
    for c in it:
        if c != 0x5C:
            out.append(c)
            continue
        nxt = next(it, None)
        if nxt == 0x5C:
            out.append(0x5C)
        elif nxt == ord("n"):
            out.append(0x0A)
        elif nxt == ord("r"):
            out.append(0x0D)
        else:
            return None
    return bytes(out)


def format_line(digest: str, path: str, algorithm: str = "sha256") -> bytes:
    """``<hex>  <path>\\n`` exactly as ``sha256sum``/``b3sum`` (for ``algorithm``) write it."""
    escaped, raw = _escape(path, algorithm not in RAW_CARRIAGE_RETURN)
    return (b"\\" if escaped else b"") + digest.encode() + b"  " + raw + b"\n"


def format_lines(lines: list[tuple[str, str]], algorithm: str = "sha256") -> bytes:
    """:func:`format_line` of each ``(digest, path)``, the same bytes, encoded at once: `custodes hash` writes
    20,000 small files' lines in a few milliseconds instead of one encode and five joins per file."""
    out: list[bytes] = []
    plain: list[str] = []
    cr = "\r" if algorithm not in RAW_CARRIAGE_RETURN else "\n"  # a character escaped for this tool
    for digest, path in lines:
        if "\\" in path or "\n" in path or cr in path:  # escaped, by the one rule in format_line
            out.append("".join(plain).encode(_FS_ENCODING, _FS_ERRORS))
            out.append(format_line(digest, path, algorithm))
            plain = []
        else:
            plain.append(f"{digest}  {path}\n")
    out.append("".join(plain).encode(_FS_ENCODING, _FS_ERRORS))
    return b"".join(out)


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's


def format_check_line(path: str, verdict: bytes) -> bytes:
    """``<path>: OK`` as ``sha256sum -c`` prints it: a name holding a newline is escaped (backslash, newline
    and carriage return) behind a leading backslash, so one file is always one line; other names are raw."""
    raw = os.fsencode(path)
    if b"\n" in raw:
        raw = b"\\" + raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return raw + b": " + verdict + b"\n"


def format_tag_line(algorithm: str, digest: str, path: str) -> bytes:
    """``SHA256 (<path>) = <hex>\\n``, the BSD form, for several algorithms per file."""
    escaped, raw = _escape(path)
    return (b"\\" if escaped else b"") + _TAG_OF[algorithm].encode() + b" (" + raw + b") = " + digest.encode() + b"\n"


def parse_checksum_list(data: bytes, algorithm: str) -> tuple[list[ChecksumEntry], list[int]]:
    """Parse a checksum list; return its entries and the numbers of malformed lines.

    ``algorithm`` applies to untagged lines, whose digest must have that
    algorithm's length (sha256, blake3 and sm3 are all 64 hex digits, so a
    list does not say which it is). Blank lines and ``#`` comments are ignored.
    """
    if algorithm not in _DIGEST_LEN:
        raise DigestListError(f"unknown algorithm {algorithm!r}")
    entries: list[ChecksumEntry] = []
    malformed: list[int] = []
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if not line.strip() or line.startswith(b"#"):
            continue
        escaped = line.startswith(b"\\")
        body = line[1:] if escaped else line
        entry = None
        if m := _TAG_LINE.match(body):
            algo = _TAGS.get(m["tag"].decode())
            entry = (algo, m["hex"], m["path"]) if algo else None
        elif m := _GNU_LINE.match(body):
            entry = (algorithm, m["hex"], m["path"])
        if entry is not None:
            algo, hexd, raw_path = entry
            path = _unescape(raw_path) if escaped else raw_path
            if path and len(hexd) == 2 * _DIGEST_LEN[algo]:
                entries.append(ChecksumEntry(os.fsdecode(path), algo, hexd.decode().lower(), line_no))
                continue
        malformed.append(line_no)
    return entries, malformed


#: What checking one line of a list found: the digest matched, did not match, or the file could not be read
#: (``missing``: it does not exist; ``unreadable``: any other error reading it).
CheckStatus = Literal["ok", "failed", "missing", "unreadable"]


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """One line of a checksum list, checked: the entry, the digest computed (None when the file could not be
    read), the verdict, and the error that kept the file from being read."""

    entry: ChecksumEntry
    actual: str | None
    status: CheckStatus
    error: CustodesError | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.entry.path,
            "algorithm": self.entry.algorithm,
            "expected": self.entry.digest,
            "actual": self.actual,
            "status": self.status,
            "error": None if self.error is None else {"kind": self.error.kind, "message": str(self.error)},
        }


@dataclass(frozen=True, slots=True)
class ChecksumCheck:
    """A whole list checked: one :class:`EntryCheck` per well-formed line, in list order, and the numbers of
    the lines that were not checksum lines. ``ok`` only when every file matched and no line was malformed."""

    source: str
    entries: tuple[EntryCheck, ...]
    malformed: tuple[int, ...]

    def count(self, status: CheckStatus) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries) and not self.malformed

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": len(self.entries),
            "matched": self.count("ok"),
            "failed": self.count("failed"),
            "missing": self.count("missing"),
            "unreadable": self.count("unreadable"),
            "malformed_lines": list(self.malformed),
            "files": [e.to_json() for e in self.entries],
        }


def read_checksum_list(source: str | os.PathLike[str]) -> bytes:
    """The bytes of a checksum list: a regular file, or standard input for ``-``.

    Raises :class:`DigestListError` naming the list when it cannot be read or is not a regular file (a FIFO
    with no writer is refused at once rather than waited on)."""
    name = os.fsdecode(source)
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DigestListError(
                    f"cannot read checksum list {name}: not a regular file (give a file, or - to read standard input)"
                )
            return f.read()
    except OSError as e:
        raise DigestListError(f"cannot read checksum list {name}: {e.strerror}") from e


def check_checksum_list(
    source: str | os.PathLike[str],
    algorithm: str,
    *,
    data: bytes | None = None,
    workers: int | None = None,
    progress: Callable[[HashProgress], None] | None = None,
) -> ChecksumCheck:
    """Check the files a checksum list names (``sha256sum -c``, ``b3sum -c``): read the list (``-`` is
    standard input; ``data`` gives its bytes instead), hash each named file once per algorithm its lines use,
    and compare. Paths in the list are taken as written, relative to the current directory.

    ``algorithm`` applies to untagged lines (see :func:`parse_checksum_list`). Raises
    :class:`DigestListError` when the list cannot be read or holds no well-formed line for ``algorithm``;
    a file that cannot be read is a ``missing`` or ``unreadable`` result, never an exception."""
    name = os.fsdecode(source)
    entries, malformed = parse_checksum_list(read_checksum_list(source) if data is None else data, algorithm)
    if not entries:
        raise DigestListError(
            f"{name}: no properly formatted {algorithm} checksum lines"
            + (" (is --algo right? sha256, blake3 and sm3 lists look alike)" if malformed else "")
        )
    by_algorithm: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_algorithm.setdefault(e.algorithm, []).append(i)
    hashed: list[HashResult | None] = [None] * len(entries)
    for algo, idx in by_algorithm.items():
        results = hash_files([entries[i].path for i in idx], (algo,), threads=workers, progress=progress)
        for i, one in zip(idx, results, strict=True):
            hashed[i] = one
    checks = []
    for e, r in zip(entries, hashed, strict=True):
        assert r is not None
        status: CheckStatus
        if r.error is not None:
            status = "missing" if isinstance(r.error, FileNotFoundError) else "unreadable"
        else:
            status = "ok" if r.digests[e.algorithm] == e.digest else "failed"
        checks.append(EntryCheck(e, r.digests.get(e.algorithm), status, r.error))
    return ChecksumCheck(name, tuple(checks), tuple(malformed))
