"""The report model's numbers against counts made another way: every catalog row read with sqlite3 and the
report's rules applied in plain Python, one row at a time, in several scopes (the model counts in SQL and in
single passes, custodes.reports)."""

from __future__ import annotations

import json
import random
import statistics
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custodes.archive import Archive, init_archive
from custodes.catalog import replay
from custodes.defaults import DEFAULT_CLOCK_FLOOR, NS
from custodes.reports import _RecordedWindows, build_report
from custodes.retention import status
from helpers import catalog_rows

T0 = 1_709_280_000 * NS
DAY = 86_400 * NS
AT = T0 + 800 * DAY  # past the default 730 days of the earliest recordings, not of the latest


def _ingest(catalog: Any, rng: random.Random, ingest: int, device: str, officer: str, n: int, first: int) -> None:
    replay.record(
        catalog,
        {"type": "ingest_begin", "ingest": ingest, "device": device, "driver": "generic", "volume": f"v/{device}",
         "identity": {"kind": "body_camera", "officer_id": officer}, "events": [], "clock_readings": [], "time": T0},
    )  # fmt: skip
    findings = []
    for i in range(n):
        seg = first + i
        unset = i % 7 == 3  # a reset clock (the year 2000): its period and retention go by its ingest
        start = 946_684_800 * NS + i * NS if unset else T0 + rng.randrange(0, 200) * DAY
        end = start + rng.randrange(60, 600) * NS
        ingested = T0 + rng.randrange(0, 300) * DAY + rng.randrange(0, 3600) * NS
        sha = f"{seg:064x}"
        replay.record(
            catalog,
            {"type": "ingest", "ingest": ingest, "segment": seg, "device": device, "name": f"C{seg:04d}.MP4",
             "kind": "video", "digests": {"sha256": sha}, "head_sha256": sha, "size": 10, "start": start,
             "end": end, "start_source": "container", "corrected_start": start + 5 * NS if i % 5 == 0 else None,
             "corrected_end": end + 5 * NS if i % 5 == 0 else None, "sequence": i, "important": i % 11 == 4,
             "recording": None, "chapter": None, "officer": officer, "container": None, "time": ingested},
        )  # fmt: skip
        if i % 3 == 0:  # findings on the segment, and some on no segment or on a segment of another device
            kind = ("late_ingest", "gap", "clock_unset")[i % 9 // 3]
            detail = json.dumps({"kind": kind, "message": f"{kind} {seg}", "severity": "warning", "evidence": {}})
            findings.append(
                {"segment_id": seg if i % 4 else None if i % 8 else first + n + 1, "kind": kind, "severity": "warning",
                 "device_id": device, "path": f"C{seg:04d}.MP4", "start_ns": None if i % 6 == 0 else start,
                 "end_ns": end, "detail": detail},
            )  # fmt: skip
    # One detail Python reads and SQLite (before 3.42) does not: it is parsed alone, as every detail once was.
    odd = '{"kind": "malformed", "message": "odd", "ratio": NaN}'
    findings.append({"segment_id": first, "kind": "malformed", "severity": "warning", "device_id": device,
                     "path": "odd", "start_ns": T0, "end_ns": T0, "detail": odd})  # fmt: skip
    replay.record(catalog, {"type": "ingest_findings", "ingest": ingest, "findings": findings, "time": T0})


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    arch = init_archive(tmp_path_factory.mktemp("counts") / "archive")
    rng = random.Random(14)
    with arch.transaction() as catalog:
        _ingest(catalog, rng, 1, "CAM-A", "001", 40, 1)
        _ingest(catalog, rng, 2, "CAM-B", "002", 30, 41)
        for hold, seg in enumerate((2, 3, 45), start=1):
            replay.record(catalog, {"type": "hold", "hold": hold, "segment": seg, "reason": "r", "by": "x", "time": T0})
        replay.record(catalog, {"type": "hold_release", "hold": 2, "segment": 3, "by": "x", "time": T0})
        for seg in (5, 50):
            replay.record(
                catalog, {"type": "retention_change", "segment": seg, "long_term": "complaint", "by": "x", "time": T0}
            )
        cases = [("C-open", None, [6, 7, 44]), ("C-long", AT + DAY, [8, 9]), ("C-short", T0, [9, 10, 46])]
        for case, until, segments in cases:
            replay.record(
                catalog,
                {"type": "retention_change", "case": case, "until": until, "segments": segments, "by": "x", "time": T0},
            )
        replay.record(
            catalog, {"type": "purge", "segment": 11, "sha256": f"{11:064x}", "request": 1, "by": "x", "time": T0}
        )
        for request, segments in ((1, [12, 13]), (2, [47]), (3, [12, 999])):
            replay.record(
                catalog,
                {"type": "access_request", "request": request, "person": "p", "segments": segments, "reason": "r",
                 "purpose": "view", "ok": True, "detail": "", "time": T0},
            )  # fmt: skip
        for seg, ok in ((12, True), (13, False), (47, True), (None, False)):
            replay.record(
                catalog,
                {"type": "access_open", "request": 1, "person": "p", "segment": seg, "ok": ok, "detail": "d",
                 "time": T0 + DAY},
            )  # fmt: skip
        for seg, ok in ((47, True), (12, False)):  # views in the web page's player (custodes.web.streaming)
            replay.record(
                catalog,
                {"type": "access_stream", "request": 2, "person": "p", "segment": seg, "ok": ok, "detail": "d",
                 "time": T0 + 2 * DAY},
            )  # fmt: skip
        replay.record(
            catalog,
            {"type": "task", "task": "T1", "task_type": "stop", "start": T0, "end": T0 + 100 * DAY, "officers": ["002"],
             "devices": ["CAM-A"], "time": T0},
        )  # fmt: skip
    arch.checkpoint()
    return arch


def _segments(arch: Archive) -> list[dict[str, Any]]:
    columns = (
        "id, device_id, start_ns, end_ns, corrected_start_ns, corrected_end_ns, ingested_ns, important, purged_ns, "
        "ledger_seq"
    )
    names = [c.strip() for c in columns.split(",")]
    return [dict(zip(names, r, strict=True)) for r in catalog_rows(arch.root, f"SELECT {columns} FROM segments")]


def _in_scope(s: dict[str, Any], devices: list[str] | None, lo: int, hi: int) -> bool:
    clock_set = s["start_ns"] is not None and s["start_ns"] >= DEFAULT_CLOCK_FLOOR
    when = (s["corrected_start_ns"] or s["start_ns"]) if clock_set else s["ingested_ns"]
    return (devices is None or s["device_id"] in devices) and lo <= when < hi


SCOPES = [
    {},
    {"scope": "device", "value": "CAM-A"},
    {"scope": "device", "value": "CAM-B", "start": T0 + 50 * DAY, "end": T0 + 150 * DAY},
    {"start": T0 + 100 * DAY},
    {"scope": "officer", "value": "002", "end": T0 + 120 * DAY},
]


@pytest.mark.parametrize("kw", SCOPES, ids=lambda kw: "-".join(map(str, kw.values())) or "archive")
def test_the_model_counts_what_the_rows_say(archive: Archive, kw: dict[str, Any]) -> None:
    model = build_report(archive, at=AT, **kw)
    scope, value = kw.get("scope"), kw.get("value")
    devices_in = [value] if scope == "device" else ["CAM-B"] if scope == "officer" else None
    lo, hi = kw.get("start", -(2**62)), kw.get("end", 2**62)
    rows = [s for s in _segments(archive) if _in_scope(s, devices_in, lo, hi)]
    ids = {s["id"] for s in rows}
    assert model["scope"]["devices"] == devices_in
    assert model["completeness"]["segments"] == len(rows) > 0

    # Retention: what status() says of each recording, counted over the scope's.
    each = [r for r in status(archive) if r.segment in ids]
    assert model["retention"] == {
        "due": sum(r.due(AT) for r in each),
        "held": sum(bool(r.holds) for r in each),
        "long_term": sum(r.keep_until is None and not r.purged for r in each),
        "purged": sum(r.purged for r in each),
    }
    assert all(v > 0 for v in model["retention"].values()) or kw  # the whole archive has one of each

    # Delays: every (ingested - end) of a recording whose clock is set, in hours.
    delays = [
        (s["ingested_ns"] - (s["corrected_end_ns"] or s["end_ns"])) / 3600 / NS
        for s in rows
        if s["start_ns"] >= DEFAULT_CLOCK_FLOOR
    ]
    want = {"min": min(delays), "median": statistics.median(delays), "max": max(delays)}
    assert model["timeliness"]["delay_hours"] == want

    # Findings: every finding row of the scope's devices and period, in order, each with the recording it is about
    # (its own segment, else the device's latest of its file's name stored by its ingest, else the first stored
    # later) and that segment's ledger index when the segment is in the scope.
    found = catalog_rows(
        archive.root,
        "SELECT f.segment_id, f.detail, f.device_id, COALESCE(f.start_ns, i.started_ns), f.path, f.ingest_id, "
        "i.volume FROM findings f JOIN ingests i ON i.id = f.ingest_id ORDER BY f.id",
    )
    stored = catalog_rows(archive.root, "SELECT id, device_id, original_name, ingest_id, size, sha256 FROM segments")

    def about(seg: int | None, detail: str, device: str, path: str | None, ingest: int, volume: str) -> int | None:
        if path is None or seg is not None:
            return None if path is None else seg
        name = path[len(volume) + 1 :] if path.startswith(volume + "/") else path
        said = json.loads(detail).get("evidence", {})  # the file's size and digest, where the finding says them
        same = [
            (s, i)
            for s, d, n, i, size, sha in stored
            if (d, n) == (device, name) and said.get("size") in (None, size) and said.get("sha256") in (None, sha)
        ]
        before = [s for s, i in same if i <= ingest]
        later = [s for s, i in same if i > ingest]
        return max(before) if before else min(later) if later else None

    ledger_of = {s["id"]: s["ledger_seq"] for s in rows}
    expected = [
        (json.loads(detail)["kind"], seg, ledger_of.get(seg))
        for seg, detail, device, when, path, ingest, volume in found
        if (devices_in is None or device in devices_in) and lo <= when < hi
        for seg in [about(seg, detail, device, path, ingest, volume)]
    ]
    listed = [(f["kind"], f["segment"], f["ledger_index"]) for f in model["findings"][: len(expected)]]
    assert listed == expected  # the catalog's findings come first; verify's, the tasks' and refusals follow
    assert any(index is None for _, seg, index in expected if seg is not None) or kw  # a segment out of scope

    # Access: requests naming a recording of the scope (any, for the whole archive), log rows of the period.
    requests = catalog_rows(archive.root, "SELECT segments FROM access_requests")
    log = catalog_rows(archive.root, "SELECT segment_id, ok, time_ns, action FROM access_log")
    wanted = [r for (r,) in requests if devices_in is None or set(json.loads(r)) & ids]
    shown = [(a, ok) for seg, ok, t, a in log if lo <= t < hi and (devices_in is None or seg is None or seg in ids)]
    assert model["access"]["requests"] == len(wanted)
    assert model["access"]["views"] == sum(1 for a, ok in shown if a in ("open", "stream") and ok)
    assert model["access"]["refusals"] == sum(1 for _, ok in shown if not ok)


def test_the_task_finds_the_officers_devices(archive: Archive) -> None:
    tasks = build_report(archive, at=AT)["timelines"]["tasks"]
    assert [t["task"] for t in tasks] == ["T1"]
    assert set(tasks[0]["devices"]) == {"CAM-A", "CAM-B"}  # CAM-B through its officer 002, who recorded in the window


@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 40)), max_size=40),
    st.integers(-5, 150),
    st.integers(0, 60),
)
def test_a_tasks_timeline_looks_at_every_recording_that_overlaps_its_window(
    spans: list[tuple[int, int]], start: int, length: int
) -> None:
    """The timelines' slice of a device's recordings for a task window (reports._RecordedWindows) holds every
    recording that overlaps the window, in order: overlapping recordings, long ones reaching past later ones,
    recordings that touch the window's edges."""
    recorded = sorted([s, s + d] for s, d in spans)  # by start, as the catalog reads them
    device: dict[str, Any] = {"device": "D", "recorded": recorded, "explained": [], "tasks": []}
    windows = _RecordedWindows({"D": device})
    end = start + length
    got = [r for r in windows.between("D", start, end) if r[0] < end and r[1] > start]
    assert got == [r for r in recorded if r[0] < end and r[1] > start]
    assert windows.between("other", start, end) == []
