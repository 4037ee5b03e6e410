"""Timelines: gaps, overlaps, sequence breaks, task coverage and clock checks.

The heavy lifting is the Rust engine (one sort, one scan, over int64 ns
columns handed over without a copy); this module maps device names to codes,
turns the engine's columns into :class:`~custodes.findings.Finding`s, and
builds segments from footage files for ``custodes timeline``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any

from custodes import _core
from custodes.findings import Finding, rfc3339, shown_name

__all__ = [
    "DEFAULT_CLOCK_FLOOR",
    "DEFAULT_GAP_TOLERANCE",
    "NO_SEQUENCE",
    "Coverage",
    "Segment",
    "analyse",
    "clock_ahead",
    "clock_findings",
    "clock_state",
    "correct_times",
    "coverage",
    "name_time",
    "name_time_findings",
    "segment_findings",
    "sequence_number",
    "zone_info",
]

from custodes.defaults import DEFAULT_CLOCK_FLOOR, DEFAULT_GAP_TOLERANCE, INT64_MIN, NS

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where the engine's columns are built, not at the top: `custodes probe` and
# the hash path read this module and must start without it (tests/test_startup_imports.py).

#: ``VolumeSegment.sequence`` of a file without a number (the device numbers none, or the name holds none).
NO_SEQUENCE = -1
_RESET_EPOCHS = _core.clock_reset_epochs()


def _col(values: Any) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(values, dtype=np.int64)


def _codes(devices: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    labels, codes = np.unique(np.asarray(devices), return_inverse=True)
    return labels, codes.astype(np.int64)


@dataclass(frozen=True, slots=True)
class Segment:
    """One file as the device wrote it, placed on the time line.

    ``start``/``end`` are None when the file gives no trustworthy time (an
    unset clock): it still counts for file numbering, not for gaps."""

    device: str
    path: str
    start: int | None  # ns, UTC
    end: int | None
    sequence: int = NO_SEQUENCE


def analyse(
    device: Sequence[str] | np.ndarray,
    start: Any,
    end: Any,
    sequence: Any | None = None,
    *,
    gap_tolerance: int = DEFAULT_GAP_TOLERANCE,
) -> dict[str, dict[str, np.ndarray]]:
    """Gaps, overlaps and sequence breaks as columns (the engine's output).

    ``device`` holds names (or any labels); ``start``/``end`` int64 ns;
    ``sequence`` file numbers with -1 for none. Returned ``device`` columns
    hold the labels again, ``before``/``after`` index the input segments.
    """
    import numpy as np

    labels, codes = _codes(device)
    seq = _col(np.full(len(codes), NO_SEQUENCE) if sequence is None else sequence)
    out = _core.analyse(codes, _col(start), _col(end), seq, int(gap_tolerance))
    for table in out.values():
        table["device"] = labels[table["device"]] if len(labels) else table["device"]
    return out


def segment_findings(segments: Sequence[Segment], *, gap_tolerance: int = DEFAULT_GAP_TOLERANCE) -> list[Finding]:
    """Findings ``gap``, ``overlap`` and ``sequence_break`` for segments.

    Gaps and overlaps come from the segments with a time; sequence breaks
    from every numbered file, timed or not (a deleted file is missing from the
    numbering whatever the clock said)."""
    timed = [s for s in segments if s.start is not None and s.end is not None]
    found: list[Finding] = []
    # A gap, an overlap or a break lies between two files: with fewer than two timed (or numbered) files there
    # is none to find, and the engine's numpy columns are not built (a volume of 10^5 files with no time or
    # number, a phone's photos or a terminal's logs, ingested without numpy: its peak RSS 151.8 -> 146.9 MiB).
    if len(timed) >= 2:
        r = analyse(
            [s.device for s in timed], [s.start for s in timed], [s.end for s in timed], gap_tolerance=gap_tolerance
        )
        found += _gap_findings(r, timed)
    if sum(s.sequence != NO_SEQUENCE for s in segments) >= 2:
        numbered = analyse(
            [s.device for s in segments], [0] * len(segments), [0] * len(segments), [s.sequence for s in segments]
        )
        found += _break_findings(numbered, segments)
    return sorted(found, key=lambda f: (f.device or "", f.start or 0, f.kind))


def _gap_findings(r: dict[str, dict[str, np.ndarray]], timed: Sequence[Segment]) -> list[Finding]:
    """The engine's gaps and overlaps between ``timed`` segments, as findings."""
    found: list[Finding] = []
    # A message names files through shown_name, the one display rule (issue 10): one line, no two
    # names alike; the evidence keeps the paths themselves.
    g = r["gaps"]
    for d, a, b, i, j in zip(g["device"], g["start"], g["end"], g["before"], g["after"], strict=True):
        found.append(
            Finding(
                "gap",
                f"{(b - a) / NS:.3f} s not recorded between {shown_name(timed[i].path)} "
                f"and {shown_name(timed[j].path)}",
                device=str(d),
                start=int(a),
                end=int(b),
                evidence={"before": timed[i].path, "after": timed[j].path},
            )
        )
    o = r["overlaps"]
    for d, a, b, i, j in zip(o["device"], o["start"], o["end"], o["before"], o["after"], strict=True):
        found.append(
            Finding(
                "overlap",
                f"{shown_name(timed[j].path)} starts {(b - a) / NS:.3f} s before {shown_name(timed[i].path)} ends: "
                "one device cannot record twice at once (clock jump or forgery)",
                device=str(d),
                start=int(a),
                end=int(b),
                evidence={"before": timed[i].path, "after": timed[j].path},
            )
        )
    return found


def _break_findings(numbered: dict[str, dict[str, np.ndarray]], segments: Sequence[Segment]) -> list[Finding]:
    """The engine's sequence breaks between numbered ``segments``, as findings."""
    found: list[Finding] = []
    q = numbered["sequence_breaks"]
    for d, last, nxt, i, j in zip(q["device"], q["last_seen"], q["next_seen"], q["before"], q["after"], strict=True):
        missing = list(range(int(last) + 1, int(nxt)))
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        found.append(
            Finding(
                "sequence_break",
                f"file number(s) {shown} missing between {shown_name(segments[i].path)} and "
                f"{shown_name(segments[j].path)}: a deleted file until shown otherwise",
                device=str(d),
                start=segments[i].end,
                end=segments[j].start,
                evidence={"missing": missing, "before": segments[i].path, "after": segments[j].path},
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of one task window a device's recordings cover."""

    covered: int  # ns
    window: int  # ns
    uncovered: list[tuple[int, int]]

    @property
    def share(self) -> float:
        return self.covered / self.window if self.window else 1.0


def coverage(
    segment_device: Any, segment_start: Any, segment_end: Any, task_device: Any, task_start: Any, task_end: Any
) -> list[Coverage]:
    """Coverage of each task window (device, start, end) by that device's segments."""
    import numpy as np

    labels, codes = _codes(np.concatenate([np.asarray(segment_device), np.asarray(task_device)]))
    n = len(segment_device)
    ts, te = _col(task_start), _col(task_end)
    r = _core.coverage(codes[:n].copy(), _col(segment_start), _col(segment_end), codes[n:].copy(), ts, te)
    holes: list[list[tuple[int, int]]] = [[] for _ in range(len(ts))]
    for j, a, b in zip(r["uncovered_task"], r["uncovered_start"], r["uncovered_end"], strict=True):
        holes[int(j)].append((int(a), int(b)))
    return [Coverage(int(c), int(e - s), h) for c, s, e, h in zip(r["covered"], ts, te, holes, strict=True)]


def clock_state(t: int, floor: int) -> int:
    """0 when a recording time is plausible, 1 when it is before ``floor``, 2 + k when it lies
    within a year after reset epoch k (``_core.clock_reset_epochs()``, which names it): the engine's
    ``clock_unset`` for one time, given as a list (no numpy column, so `custodes probe` starts without numpy)."""
    return _core.clock_checks([t], floor, 0, 0)[0][0]


def clock_ahead(t: int, reference: int, tolerance: int) -> bool:
    """Whether ``t`` lies more than ``tolerance`` after ``reference`` (the bound saturates at the
    int64 range): the engine's ``clock_future`` for one time."""
    return _core.clock_checks([t], INT64_MIN, reference, tolerance)[1][0]


def clock_findings(
    times: Sequence[int | None],
    paths: Sequence[str],
    devices: Sequence[str | None] | None = None,
    *,
    reference_time: int | None = None,
    floor: int = DEFAULT_CLOCK_FLOOR,
    tolerance: int = 5 * NS,
) -> list[Finding]:
    """``clock_unset`` (no time, before ``floor``, or just after a reset epoch)
    and ``clock_future`` (after ``reference_time`` + ``tolerance``) per file."""
    devices = devices if devices is not None else [None] * len(paths)
    reference = time.time_ns() if reference_time is None else reference_time
    found = [
        Finding(
            "clock_unset",
            "the container carries no creation time: the device clock was not set",
            device=devices[i],
            path=paths[i],
            evidence={"reason": "absent"},
        )
        for i, t in enumerate(times)
        if t is None
    ]
    known = [(i, int(t)) for i, t in enumerate(times) if t is not None]
    states, ahead = _core.clock_checks([t for _, t in known], floor, reference, tolerance)
    for (i, t), unset, future in zip(known, states, ahead, strict=True):
        if unset:
            reason = "before_floor" if unset == 1 else f"reset_{_RESET_EPOCHS[unset - 2][1]}"
            why = (
                f"just after the reset value {_RESET_EPOCHS[unset - 2][1]}" if unset > 1 else f"before {rfc3339(floor)}"
            )
            found.append(
                Finding(
                    "clock_unset",
                    f"recording time {rfc3339(t)} is not a real time ({why})",
                    device=devices[i],
                    path=paths[i],
                    start=t,
                    evidence={"reason": reason},
                )
            )
        elif future:
            found.append(
                Finding(
                    "clock_future",
                    f"recording time {rfc3339(t)} is after {rfc3339(reference)}: the device clock runs ahead",
                    device=devices[i],
                    path=paths[i],
                    start=t,
                    evidence={"ahead_seconds": (t - reference) / NS},
                )
            )
    return found


def name_time_findings(named: Sequence[tuple[str | None, str, int, int]], *, tz: str, tolerance: int) -> list[Finding]:
    """``name_time_mismatch`` for (device, path, name time, container time)
    rows whose two times differ by more than ``tolerance`` ns."""
    if not named:
        return []
    mismatch = _core.time_mismatch(_col([n[2] for n in named]), _col([n[3] for n in named]), int(tolerance))
    return [
        Finding(
            "name_time_mismatch",
            f"the name says {rfc3339(nt)} ({tz}), the container says {rfc3339(ct)}: {(ct - nt) / NS:+.0f} s apart",
            device=device,
            path=path,
            start=min(nt, ct),
            end=max(nt, ct),
            evidence={"name_time": rfc3339(nt), "container_time": rfc3339(ct), "tz": tz},
        )
        for (device, path, nt, ct), bad in zip(named, mismatch, strict=True)
        if bad
    ]


def correct_times(times: Any, device_readings: Any, trusted_readings: Any) -> np.ndarray:
    """Device-clock times corrected by the clock readings taken at dockings
    (linear between two readings, constant outside)."""
    return _core.correct_times(_col(times), _col(device_readings), _col(trusted_readings))


_NAME_TIME = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})[_T-]?(\d{2})(\d{2})(\d{2})(?!\d)")
_TRAILING_NUMBER = re.compile(r"(\d{3,})$")


_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})?$")


def zone_info(zone: str) -> tzinfo:
    """A time zone as a device or a person names it: ``UTC`` (or ``Z``), a fixed offset from UTC
    (``+08:00``, ``-05:30``, ``+0800``, ``+08``), or an IANA name (``Asia/Shanghai``).

    Fixed offsets are accepted wherever a zone is: many devices know only their offset, not a
    region. Raises ValueError naming the three forms for anything else."""
    if zone in ("UTC", "Z"):
        return UTC
    m = _OFFSET.match(zone)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        delta = timedelta(hours=hours, minutes=minutes)
        delta = -delta if m.group(1) == "-" else delta
        # The offsets of the world's clocks run from -12:00 to +14:00: +23:00 is a typo, not a place.
        if minutes > 59 or not timedelta(hours=-12) <= delta <= timedelta(hours=14):
            raise ValueError(f"time zone offset {zone!r} is out of range (-12:00 to +14:00, minutes below 60)")
        return timezone(delta)
    # Imported here: zoneinfo's import reads sysconfig, which `custodes probe` need not pay for.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {zone!r} (use an IANA name such as Asia/Shanghai, a UTC offset such as +08:00, or UTC)"
        ) from None


def name_time(name: str, tz: str = "UTC") -> int | None:
    """The time a device wrote into a file name (``YYYYMMDDhhmmss``, optionally
    with ``_``/``T``/``-`` between date and time), read in the device's zone (any form
    :func:`zone_info` takes), as UTC ns."""
    m = _NAME_TIME.search(os.path.basename(name))
    if not m:
        return None
    zone = zone_info(tz)
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        dt = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    return int(dt.timestamp()) * NS


def sequence_number(name: str) -> int:
    """The file number a device put at the end of a name (``CLIP0007.MP4`` -> 7), or -1.

    Devices zero-pad their counters, so only a name ending in three or more
    digits has one (``bt601.mov`` does, ``h265_clip.mp4`` does not); a 14-digit
    time stamp is not a sequence number. Vendor drivers know their own naming."""
    stem = os.path.splitext(os.path.basename(name))[0]
    stem = _NAME_TIME.sub("", stem)
    m = _TRAILING_NUMBER.search(stem)
    return int(m.group(1)) if m else NO_SEQUENCE
