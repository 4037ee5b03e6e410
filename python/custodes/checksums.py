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
from dataclasses import dataclass

from custodes import _core
from custodes.errors import DigestListError

__all__ = ["ChecksumEntry", "format_check_line", "format_line", "format_tag_line", "parse_checksum_list"]

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


def _escape(path: str) -> tuple[bool, bytes]:
    raw = os.fsencode(path)
    if not any(c in raw for c in (b"\\", b"\n", b"\r")):
        return False, raw
    return True, raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


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


def format_line(digest: str, path: str) -> bytes:
    """``<hex>  <path>\\n`` exactly as ``sha256sum``/``b3sum`` write it."""
    escaped, raw = _escape(path)
    return (b"\\" if escaped else b"") + digest.encode() + b"  " + raw + b"\n"


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
