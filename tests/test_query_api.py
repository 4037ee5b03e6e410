"""The query API (archive.segments / findings / events / devices) against an independent reading of the catalog:
for each filter, exactly the rows an SQL query written here finds (sqlite3 on the catalog file, read-only), on
archives made by real ingests of ffmpeg-made GA/T 947 recorders; a task's gap findings as `task coverage` shows
them. Unknown devices, officers, tasks and cases are refused, never answered with nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import ArchiveError, open_archive
from custodes.findings import rfc3339
from custodes.query import QueryError
from custodes.records import DeviceEvent, RecordedFinding, Segment
from footage import T0
from helpers import grant, run_cli
from query_sql import (
    BJ,
    T0_NS,
    TASK_OFFICERS,
    TASKS,
    S,
    expected_catalog_findings,
    expected_segments,
    iso,
    read_only,
    recorder,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorders (officers 001234 and 005678; BWCB logged a low battery at 3 s), three tasks, a case."""
    root = tmp_path_factory.mktemp("query")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    a = recorder(root, "BWCA", "001234", [0, 2, 4, 6, 8, 20, 22])
    b = recorder(
        root,
        "BWCB",
        "005678",
        [0, 2, 14, 16, 18, 20, 22],
        events=f"{(T0 + timedelta(seconds=3)).astimezone(BJ):%Y-%m-%d %H:%M:%S} battery_low 5%\n",
    )
    for vol in (a, b):
        out = run_cli("ingest", vol, "--archive", arch)
        assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
    tasks = root / "tasks.csv"
    tasks.write_text(TASKS)
    assert run_cli("task", "import", arch, tasks).returncode == 0
    out = run_cli("retention", "case", arch, "--case", "C1", "--segment", "2", "--segment", "10")
    assert out.returncode == 0, out.stderr
    return arch


def coverage_findings(arch: Path, f: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(task, kind, start, end) of the task findings ``f`` selects, as `task coverage --json` shows them."""
    if "case" in f:
        return []
    out = run_cli("task", "coverage", arch, "--json")
    assert out.returncode in (0, 1), out.stderr
    found = []
    for t in json.loads(out.stdout)["tasks"]:
        task = t["task"]["id"]
        if "task" in f and task != f["task"]:
            continue
        if "device" in f and f["device"] not in t["devices"]:
            continue
        if "officer" in f and f["officer"] not in TASK_OFFICERS[task]:
            continue
        found += [(task, x["kind"], x["start"], x["end"]) for x in t["findings"]]
    lo, hi = f.get("start"), f.get("end")
    return [
        x
        for x in found
        if (hi is None or x[2] < rfc3339(hi)) and (lo is None or x[3] > rfc3339(lo) or x[2] >= rfc3339(lo))
    ]


FILTERS = [
    {},
    {"device": "BWCA"},
    {"device": "BWCB"},
    {"officer": "001234"},
    {"officer": "005678"},
    {"case": "C1"},
    {"start": T0_NS + 5 * S, "end": T0_NS + 15 * S},
    {"start": T0_NS + 21 * S},
    {"end": T0_NS + 3 * S},
    {"task": "T1"},
    {"task": "T2"},
    {"task": "T3"},
    {"task": "T1", "device": "BWCB"},
    {"device": "BWCA", "start": T0_NS + 5 * S, "end": T0_NS + 21 * S},
    {"officer": "005678", "case": "C1"},
    {"officer": "005678", "task": "T2"},
    {"device": "BWCA", "task": "T2", "start": T0_NS + 15 * S},
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_segments_and_findings_are_what_sql_finds(small: Path, f: dict[str, Any]) -> None:
    with open_archive(small) as archive:
        segs = archive.segments(**f)
        assert iter(segs) is segs  # an iterator, read as it is walked
        got = list(segs)
        found = list(archive.findings(**f))
    assert all(isinstance(s, Segment) for s in got)
    assert [s.id for s in got] == expected_segments(small, f)
    assert all(isinstance(x, RecordedFinding) for x in found)
    assert [x.id for x in found if x.task is None] == expected_catalog_findings(small, f)
    tasks = [(x.task, x.kind, rfc3339(x.start), rfc3339(x.end)) for x in found if x.task is not None]
    assert tasks == coverage_findings(small, f)


def test_the_filters_select_something(small: Path) -> None:
    # The comparisons above would pass on an archive of nothing: these are the counts the footage gives.
    counts = {json.dumps(f): len(expected_segments(small, f)) for f in FILTERS}
    assert counts[json.dumps({})] == 15  # 14 clips and BWCB's event log
    assert counts[json.dumps({"device": "BWCA"})] == 7
    assert counts[json.dumps({"officer": "005678"})] == 7
    assert counts[json.dumps({"case": "C1"})] == 2
    assert counts[json.dumps({"task": "T3"})] == 2  # BWCB's clips at 0 and 2 s; the one at 14 s starts as T3 ends
    assert len(expected_catalog_findings(small, {})) > 0
    assert coverage_findings(small, {"task": "T2"}) == [("T2", "gap_unexplained", iso(9), iso(20))]  # 1 s clips


def test_a_segment_record_holds_what_the_catalog_holds(small: Path) -> None:
    (row,) = read_only(
        small,
        "SELECT id, device_id, original_name, kind, sha256, size, start_ns, end_ns, officer_id, ingest_id, ledger_seq "
        "FROM segments WHERE id = 2",
    )
    with open_archive(small) as archive:
        (seg,) = [s for s in archive.segments(case="C1") if s.id == 2]
    assert (
        seg.id,
        seg.device,
        seg.name,
        seg.kind,
        seg.sha256,
        seg.size,
        seg.device_start,
        seg.device_end,
        seg.officer,
        seg.ingest,
        seg.ledger_index,
    ) == row
    assert (seg.device, seg.officer, seg.kind, seg.start) == ("BWCA", "001234", "video", T0_NS + 2 * S)


def test_events_and_devices(small: Path) -> None:
    with open_archive(small) as archive:
        assert [d.id for d in archive.devices()] == ["BWCA", "BWCB"]
        assert {d.id: d.officer for d in archive.devices()} == dict(
            read_only(small, "SELECT device_id, officer_id FROM devices")
        )
        every = list(archive.events())
        assert all(isinstance(e, DeviceEvent) for e in every)
        assert [(e.device, e.time, e.kind, e.detail) for e in every] == read_only(
            small, "SELECT device_id, time_ns, kind, detail FROM device_events ORDER BY id"
        )
        assert [(e.device, e.time, e.kind) for e in every] == [("BWCB", T0_NS + 3 * S, "battery_low")]
        assert [e.id for e in archive.events(device="BWCA")] == []
        assert [e.id for e in archive.events(officer="005678")] == [every[0].id]
        assert [e.id for e in archive.events(task="T2")] == []  # BWCA only
        assert [e.id for e in archive.events(task="T3")] == [every[0].id]
        assert [e.id for e in archive.events(start=T0_NS + 4 * S)] == []
        assert [e.id for e in archive.events(start=T0_NS + 3 * S, end=T0_NS + 4 * S)] == [every[0].id]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.segments(device="BWCZ"), "no device 'BWCZ' in this archive"),
        (lambda a: a.findings(task="T9"), "no task 'T9' in this archive"),
        (lambda a: a.segments(case="C9"), "no case 'C9' in this archive"),
        (
            lambda a: a.events(officer="999999"),
            "no officer '999999' in this archive (no device issued to them, no recording theirs)",
        ),
        (lambda a: a.segments(start=T0_NS + S, end=T0_NS), "the time range ends before it starts"),
    ],
)
def test_what_the_archive_does_not_know_is_refused(small: Path, call: Any, message: str) -> None:
    with open_archive(small) as archive, pytest.raises(QueryError) as e:
        call(archive)  # refused when asked, not when first read
    assert str(e.value) == message


def test_a_volume_ingested_again_gives_each_finding_once(tmp_path: Path) -> None:
    # The ledger keeps what every ingest found (a second ingest records the same gaps and late ingests again);
    # the query API, as the report, gives each finding once: the first ingest's row of each.
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    vol = recorder(tmp_path, "BWCA", "001234", [0, 2, 10, 12])
    for _ in range(2):
        out = run_cli("ingest", vol, "--archive", arch)
        assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
    rows = read_only(arch, "SELECT id, ingest_id, kind FROM findings ORDER BY id")
    first = [kind for _, ingest, kind in rows if ingest == rows[0][1]]
    assert len(rows) == 2 * len(first) and "gap" in first and first.count("late_ingest") == 4  # recorded twice
    with open_archive(arch) as archive:
        found = list(archive.findings())
    assert [x.kind for x in found] == first
    assert [x.id for x in found] == [i for i, ingest, _ in rows if ingest == rows[0][1]]
    report = run_cli("report", arch, "--format", "json", "--out", tmp_path / "r.json")
    assert report.returncode == 0, report.stderr
    shown = [f["kind"] for f in json.loads((tmp_path / "r.json").read_text())["findings"] if "task" not in f]
    assert sorted(k for k in shown if k in first) == sorted(first)


def test_a_time_filter_is_an_instant_or_refused(small: Path) -> None:
    # Hostile review: a datetime or a string was compared as it came and matched nothing ("no recordings"),
    # a float or a bool was taken, and 2**70 was a raw OverflowError from sqlite3.
    lo, hi = T0_NS + 5 * S, T0_NS + 15 * S
    with open_archive(small) as archive:
        by_ns = [s.id for s in archive.segments(start=lo, end=hi)]
        as_dt = [s.id for s in archive.segments(start=T0 + timedelta(seconds=5), end=T0 + timedelta(seconds=15))]
        assert by_ns == as_dt == expected_segments(small, {"start": lo, "end": hi}) and by_ns
        for bad, message in (
            (T0.replace(tzinfo=None), "a datetime without a time zone is no instant"),
            ("2024-03-01T10:00:00Z", "a time is int nanoseconds since 1970 UTC, or an aware datetime"),
            (1.7e18, "a time is int nanoseconds since 1970 UTC, or an aware datetime"),
            (True, "a time is int nanoseconds since 1970 UTC, or an aware datetime"),
            (-(2**70), "outside the 64-bit nanoseconds a time is kept in"),
        ):
            for call in (archive.segments, archive.findings, archive.events):
                with pytest.raises(QueryError, match=message):
                    call(start=bad)


def test_a_closed_archive_says_so(small: Path) -> None:
    """A query of an archive after it is closed was sqlite3's ProgrammingError ("Cannot operate on a closed
    database"), naming no archive (session 13's note): an ArchiveError naming it; closing twice is no error."""
    with open_archive(small) as a:
        assert next(iter(a.segments())).id == 1
    a.close()
    for call in (a.segments, a.devices):
        with pytest.raises(ArchiveError, match="the archive was closed; open it again") as refused:
            next(iter(call()))
        assert str(small) in str(refused.value)
    with pytest.raises(ArchiveError, match="the archive was closed"), a:  # (a hostile review: `with` took it)
        pass
