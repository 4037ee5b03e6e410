"""The query API's tests' own reading of the catalog (sqlite3, read-only): what each filter must select, in
SQL written apart from custodes' own, and the GA/T 947 recorders the archives are made of. Shared by
tests/test_query_api.py and tests/test_query_scale.py (a test module imports no other test module)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from footage import T0, make_clip

BJ = timezone(timedelta(hours=8))
S = 1_000_000_000
T0_NS = int(T0.timestamp()) * S

# A segment's span, clock-corrected, and the overlap of a span with [lo, hi), as this test reads the catalog.
SEG_START = "COALESCE(s.corrected_start_ns, s.start_ns)"
SEG_END = f"COALESCE(s.corrected_end_ns, s.end_ns, {SEG_START})"
F_START = "COALESCE(f.start_ns, i.started_ns)"
F_END = f"COALESCE(f.end_ns, {F_START})"


def read_only(arch: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def overlap(start: str, end: str, lo: int | None, hi: int | None) -> tuple[str, tuple[int, ...]]:
    if lo is None and hi is None:
        return "1=1", ()
    parts, args = [f"{start} IS NOT NULL"], []
    if hi is not None:
        parts.append(f"{start} < ?")
        args.append(hi)
    if lo is not None:
        parts.append(f"({end} > ? OR {start} >= ?)")
        args += [lo, lo]
    return " AND ".join(parts), tuple(args)


def recorder(root: Path, device: str, officer: str, starts: list[int], events: str = "") -> Path:
    vol = root / device
    for n, s in enumerate(starts, start=1):
        t = T0 + timedelta(seconds=s)
        make_clip(vol / f"{officer}_{device}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t, 1.0)
    if events:
        (vol / "EVENTS.LOG").write_text(events)
    return vol


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The tasks, and the devices each one's coverage takes: its own, and those of its officers' recordings.
TASKS = (
    "id,type,start,end,officers,devices\n"
    f"T1,traffic_stop,{iso(0)},{iso(24)},005678,BWCA\n"
    f"T2,inspection,{iso(0)},{iso(24)},,BWCA\n"
    f"T3,inspection,{iso(0)},{iso(14)},005678,\n"
)
TASK_DEVICES = {"T1": ("BWCA", "BWCB"), "T2": ("BWCA",), "T3": ("BWCB",)}
TASK_WINDOWS = {"T1": (T0_NS, T0_NS + 24 * S), "T2": (T0_NS, T0_NS + 24 * S), "T3": (T0_NS, T0_NS + 14 * S)}
TASK_OFFICERS = {"T1": ("005678",), "T2": (), "T3": ("005678",)}


def expected_segments(arch: Path, f: dict[str, Any]) -> list[int]:
    """The ids of the segments ``f`` selects, by this test's own SQL."""
    where, args = ["1=1"], []
    devices = [f["device"]] if "device" in f else None
    lo, hi = f.get("start"), f.get("end")
    if "task" in f:
        t_devices = TASK_DEVICES[f["task"]]
        devices = [d for d in t_devices if devices is None or d in devices]
        t_lo, t_hi = TASK_WINDOWS[f["task"]]
        lo, hi = max(lo or t_lo, t_lo), min(hi or t_hi, t_hi)
    if devices is not None:
        where.append(f"s.device_id IN ({','.join('?' * len(devices))})" if devices else "0")
        args += devices
    if "officer" in f:
        where.append("s.officer_id = ?")
        args.append(f["officer"])
    if "case" in f:
        where.append("s.id IN (SELECT segment_id FROM case_segments WHERE case_id = ?)")
        args.append(f["case"])
    span, span_args = overlap(SEG_START, SEG_END, lo, hi)
    sql = f"SELECT s.id FROM segments s WHERE {' AND '.join(where)} AND {span} ORDER BY s.id"
    return [i for (i,) in read_only(arch, sql, (*args, *span_args))]


def expected_catalog_findings(arch: Path, f: dict[str, Any]) -> list[int]:
    """The ids of the findings ingests recorded that ``f`` selects, by this test's own SQL."""
    where, args = ["1=1"], []
    devices = [f["device"]] if "device" in f else None
    lo, hi = f.get("start"), f.get("end")
    if "task" in f:
        devices = [d for d in TASK_DEVICES[f["task"]] if devices is None or d in devices]
        t_lo, t_hi = TASK_WINDOWS[f["task"]]
        lo, hi = max(lo or t_lo, t_lo), min(hi or t_hi, t_hi)
    if devices is not None:
        where.append(f"f.device_id IN ({','.join('?' * len(devices))})" if devices else "0")
        args += devices
    if "officer" in f:
        mine = "SELECT device_id FROM devices WHERE officer_id = ? UNION SELECT device_id FROM segments "
        mine += "WHERE officer_id = ?"
        where.append(f"(s.officer_id = ? OR (f.segment_id IS NULL AND f.device_id IN ({mine})))")
        args += [f["officer"]] * 3
    if "case" in f:
        where.append("f.segment_id IN (SELECT segment_id FROM case_segments WHERE case_id = ?)")
        args.append(f["case"])
    span, span_args = overlap(F_START, F_END, lo, hi)
    sql = (
        "SELECT f.id FROM findings f JOIN ingests i ON i.id = f.ingest_id LEFT JOIN segments s ON s.id = f.segment_id "
        f"WHERE {' AND '.join(where)} AND {span} ORDER BY f.id"
    )
    return [i for (i,) in read_only(arch, sql, (*args, *span_args))]
