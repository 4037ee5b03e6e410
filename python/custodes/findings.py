"""Findings: one typed result of a check, the unit every report is built from.

A finding has a ``kind`` (the vocabulary of DESIGN.md: ``gap``, ``overlap``,
``sequence_break``, ``internal_gap``, ``clock_unset``, ``clock_future``,
``name_time_mismatch``, ``truncated``, ...), the subject it concerns (device,
file), the time span where one applies, a severity, the regulation article it
serves, and the numbers behind it.

A finding is a fact about evidence, counted once: each ingest records what it found (the ledger keeps every
run), and the archive's findings are one per identity (kind, device, and the recording or file it concerns, or
the span of device time for a finding about no file), the first ingest's: see
custodes.catalog.devices.FINDING_IDENTITY. A gap a later fact explains keeps its one finding and shows
``resolved_by`` in the report (custodes.reports, custodes.tasks.Explanations).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

__all__ = ["ARTICLES", "Finding", "ns_from_rfc3339", "rfc3339", "shell_word", "shown_name"]

#: The article of the regulation each kind of finding serves.
ARTICLES: dict[str, int] = {
    "gap": 14,
    "internal_gap": 14,
    "overlap": 10,
    "sequence_break": 23,
    "clock_unset": 10,
    "clock_future": 10,
    "name_time_mismatch": 10,
    "truncated": 23,
    "no_moov": 23,
    "malformed": 23,
    "unreadable": 23,
    "late_ingest": 16,
    "gap_unexplained": 14,
    "unapproved_access": 22,
    "modified": 23,
    "unprotected": 23,
    "missing": 23,
    "unexpected": 23,
    "unrecorded": 23,
    "ledger_mismatch": 23,
    "checkpoint_mismatch": 23,
    "purge_incomplete": 19,
    "untrusted_key": 23,
    "witness_mismatch": 23,
    "policy_mismatch": 23,
    "orphan_sidecar": 23,
    "ingest_failed": 16,
    "clock_drift": 10,
    "time_reread": 10,
    "no_preuse_check": 10,
    "clock_not_set_before_use": 10,
    "task_not_recorded": 7,
    "no_enforcement_context": 5,
    # the device registry and assignments (custodes.devices)
    "unregistered_device": 6,
    "retired_device": 6,
    "lost_device": 25,
    "unassigned_device": 9,
    "device_lent": 25,
}

_SEVERITY = {
    "truncated": "error",
    "no_moov": "error",
    "sequence_break": "error",
    "overlap": "error",
    "unreadable": "error",
    "no_enforcement_context": "info",  # low: the task it belongs to may be imported later (custodes.preuse)
}


def _escaped(name: str, *, controls: bool) -> str:
    """``name`` with each byte that is not UTF-8 (as os.fsdecode holds it) as ``\\xNN`` and each backslash
    as ``\\\\``; with ``controls``, newline, CR, tab as ``\\n``, ``\\r``, ``\\t`` and other control
    characters as ``\\xNN``."""
    out = []
    for ch in name:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode holds it
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif controls and ch in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[ch])
        elif controls and (o < 0x20 or o == 0x7F):
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shell_word(word: str) -> str:
    """``word`` (a path or an option's text, surrogate-escaped where its bytes are not UTF-8) as one word a shell
    reads back byte for byte: quoted as :func:`shlex.quote` does when it is UTF-8 without control characters,
    else in ANSI-C quotes (``$'...'``, bash, zsh, ksh and POSIX 2024 sh) with every other byte as ``\\xNN``. A
    command a message gives to be run again is pasted as it is (a hostile review: a volume named with bytes
    that are not UTF-8 was given as its escaped display name, which names another folder)."""
    import shlex

    raw = os.fsencode(word)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return shlex.quote(text)
    out = []
    for b in raw:
        if b in b"\\'":
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "$'" + "".join(out) + "'"


def shown_name(name: str) -> str:
    """A file name (or path) on one line, the one way every finding message and every line of output
    shows one (issue 10): backslash as ``\\\\``, newline, CR, tab as ``\\n``, ``\\r``, ``\\t``, other
    control characters and bytes that are not UTF-8 as ``\\xNN``. So the UTF-8 name ``x\\xff.mp4``
    (a backslash) shows as ``x\\\\xff.mp4`` and the name with the byte 0xff as ``x\\xff.mp4``. It lives
    here, beside :class:`Finding`, so that every module building a finding message can use it
    (:mod:`custodes.drivers` keeps the rest of the name rule and re-exports it)."""
    return _escaped(name, controls=True)


@overload
def rfc3339(ns: int) -> str: ...
@overload
def rfc3339(ns: None) -> None: ...
@overload
def rfc3339(ns: int | None) -> str | None: ...
def rfc3339(ns: int | None) -> str | None:
    """Int64 ns since the epoch as RFC 3339 UTC ending in ``Z`` (None stays None)."""
    if ns is None:
        return None
    seconds, rest = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rest:09d}".rstrip("0").rstrip(".") + "Z"


def ns_from_rfc3339(text: str) -> int:
    """The int64 ns that :func:`rfc3339` wrote as ``text`` (exact to the nanosecond, as datetime is not);
    ValueError for any other text."""
    if not isinstance(text, str) or not text.endswith("Z") or len(text) < 20 or text[19:20] not in ("Z", "."):
        raise ValueError(f"not a time custodes wrote: {text!r}")
    base = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = text[20:-1]
    if len(fraction) > 9 or not fraction.isdigit() and fraction:
        raise ValueError(f"not a time custodes wrote: {text!r}")
    return (int(base.timestamp()) * 1_000_000_000) + int(fraction.ljust(9, "0") or 0)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found wrong or worth a look about the evidence: its ``kind`` (see ARTICLES), a message, and
    the device, file and time range (ns UTC) it is about, with the facts that show it in ``evidence``."""

    kind: str
    message: str
    device: str | None = None
    path: str | None = None
    start: int | None = None  # ns since the epoch, UTC
    end: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds between start and end, where both are known."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start) / 1e9

    @property
    def severity(self) -> str:
        return _SEVERITY.get(self.kind, "warning")

    @property
    def article(self) -> int | None:
        return ARTICLES.get(self.kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "article": self.article,
            "message": self.message,
            "device": self.device,
            "path": self.path,
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "duration": self.duration,
            "evidence": self.evidence,
        }
