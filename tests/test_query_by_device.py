"""The query API's reads by device and by recording: the same answers as a walk of the device, and SQLite's own plan
for the statements it runs uses the catalog's indexes, on a real CLI-made archive. A plan that reads a whole
device's rows (and sorts them) for every page or every recording is a page time that grows with the device's
history (the review page's device and recording pages, /api/v1/segments?device=)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from custodes import query
from custodes.archive import Archive, open_archive
from helpers import run_cli


@contextmanager
def statements(archive: Archive) -> Iterator[list[str]]:
    """Every SQL statement the archive's catalog connection runs meanwhile, its parameters bound."""
    ran: list[str] = []
    conn = archive.catalog._conn
    conn.set_trace_callback(ran.append)
    try:
        yield ran
    finally:
        conn.set_trace_callback(None)


def plan(archive: Archive, sql: str) -> list[str]:
    return [row[3] for row in archive.catalog._conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


def test_a_devices_segments_are_paged_by_id_without_a_sort(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        device = next(iter(a.segments())).device
        with statements(a) as ran:
            listed = [s.id for s in query.segments(a, device=device, after=1)]
        assert listed and all(i > 1 for i in listed)
        pages = [sql for sql in ran if sql.lstrip().upper().startswith("SELECT") and "FROM segments s" in sql]
        assert pages, ran
        for sql in pages:
            steps = plan(a, sql)
            assert any("segments_by_device (device_id=? AND id>?)" in step for step in steps), steps
            assert not any("TEMP B-TREE FOR ORDER BY" in step for step in steps), steps


def _select_statements(ran: list[str], table: str) -> list[str]:
    return [sql for sql in ran if "SELECT" in sql.upper() and table in sql]


def test_a_recordings_findings_are_the_devices_that_name_it(cli_archive: Path) -> None:
    # The volume again: its files are found already present, and their findings recorded again naming no segment.
    again = run_cli("ingest", cli_archive.parent / "BWC0001", "--archive", cli_archive, "--driver", "generic")
    assert again.returncode in (0, 1), again.stderr
    with open_archive(cli_archive) as a:
        rows = a.catalog._conn.execute("SELECT COUNT(*), COUNT(segment_id) FROM findings").fetchone()
        assert rows[0] > rows[1] > 0  # findings naming a recording, and findings recorded again naming none
        named = 0
        for seg in a.segments():
            walked = [f for f in query.findings(a, device=seg.device) if f.segment == seg.id]
            assert query.segment_findings(a, seg) == walked
            named += len(walked)
        assert named > 0


def test_a_recordings_findings_are_read_by_index(cli_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_archive(cli_archive) as a:
        seg = next(iter(a.segments()))
        # the walk's temporary table kept until its statements are planned
        monkeypatch.setattr(type(a.catalog.query), "drop_first_findings", lambda *_: None)
        with statements(a) as ran:
            query.segment_findings(a, seg)
        reads = [sql.partition(" SELECT ")[1] + sql.partition(" SELECT ")[2] if sql.startswith("INSERT") else sql
                 for sql in _select_statements(ran, "FROM findings")]  # fmt: skip
        assert len(reads) >= 2, ran  # the first of each identity, and the page
        by_segment = "findings_by_device_segment (device_id=? AND segment_id=?"
        for sql in reads:
            steps = plan(a, sql)
            assert not any(step.startswith("SCAN f") or step.startswith("SCAN g") for step in steps), (sql, steps)
            # The first of each identity is found among the rows naming the recording and those naming none, by
            # index; a page then reads those (a row naming none is the recording's when it is about it: a file
            # found present, or one a failed ingest could not store).
            firsts = "first_findings" in sql
            assert any(by_segment in step or (firsts and "first_find" in step) for step in steps), steps


@pytest.mark.parametrize("page", [1, 2, 500])
def test_a_devices_findings_checked_page_by_page_are_those_found_for_the_walk(
    cli_archive: Path, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    again = run_cli("ingest", cli_archive.parent / "BWC0001", "--archive", cli_archive, "--driver", "generic")
    assert again.returncode in (0, 1), again.stderr
    monkeypatch.setattr(query, "PAGE", page)
    with open_archive(cli_archive) as a:
        devices = sorted({s.device for s in a.segments()})
        for device in devices:
            assert a.catalog.query.few_unnamed(query.Selection(devices=(device,)), query.UNNAMED_PER_PAGE)
            by_page = list(query.findings(a, device=device))
            monkeypatch.setattr(query, "UNNAMED_PER_PAGE", -1)  # every identity's first row found once instead
            for_walk = list(query.findings(a, device=device))
            monkeypatch.undo()
            monkeypatch.setattr(query, "PAGE", page)
            assert by_page == for_walk
            assert (
                len({f.id for f in by_page if f.id is not None})
                < a.catalog._conn.execute("SELECT COUNT(*) FROM findings WHERE device_id = ?", (device,)).fetchone()[0]
            )  # the rows recorded again are left out
