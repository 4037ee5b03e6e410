"""The catalog's reads use its indexes as meant: SQLite's own plan for the statements the query API runs, on a
real CLI-made archive. A plan that reads a whole device's rows and sorts them for every page is a page time that
grows with the device's history (the review page's device pages, /api/v1/segments?device=)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from custodes import query
from custodes.archive import Archive, open_archive


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
