"""What an ingest or an act does in the catalog does not grow with the archive: each reads the rows of its own
volume or recordings, never a table that grows with the footage or with the archive's age.

Found at 10^6 segments (benches/bench_scale.py --synthetic): ingesting 1,000 files there took 1.5x the time it
took into an empty archive, because two statements walked every segment or every object: the segment ids of
the ingest (no index on ingest_id) and the intents dropped when it finishes (``sha256 IN (SELECT sha256 FROM
objects)``, which SQLite answered by walking all the objects). No timing is asserted here. Each statement an
ingest runs is traced, and SQLite's own plan for it (``EXPLAIN QUERY PLAN``) must not scan a growing table,
nor walk one to answer an ``IN``; the planner has no statistics in either case (custodes runs no ANALYZE), so
its plans on a small archive are those it makes at 10^6. And what a plan cannot show (a range from the first
row, a walk inside a trigger or a correlated subquery) the work itself does: SQLite's count of the
instructions it runs for an ingest of five files, or for a person's acts on one recording, is the same in an
archive of 200 segments and of 4,200.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from custodes import access, retention
from custodes.archive import init_archive, open_archive
from custodes.ingest import ingest
from helpers import grant, run_cli

#: Tables whose rows grow with the footage the archive holds (those of its people, devices and tasks grow
#: with the agency, and are read whole by design).
GROWING = ("segments", "objects", "ledger", "findings", "ingest_intents", "ingest_notes", "access_log", "tombstones")


def _walks(plan: list[tuple]) -> list[str]:
    """The steps of a plan that read a growing table whole: a SCAN of one, a SEARCH of one through an index with
    no constraint on it (SQLite's words for walking a whole index, e.g. for ``MAX(seq + 0)``), or an index walked
    for an IN."""
    steps = [row[3] for row in plan]
    found = []
    for i, step in enumerate(steps):
        scanned = re.match(r"SCAN (\w+)", step) or re.match(r"SEARCH (\w+) USING (?:COVERING )?INDEX \w+$", step)
        if scanned and scanned.group(1) in GROWING:
            found.append(step)
        elif "FOR IN-OPERATOR" in step and i > 0 and any(f" {t} " in steps[i - 1] + " " for t in GROWING):
            found.append(f"{steps[i - 1]} / {step}")
    return found


def test_no_statement_of_an_ingest_walks_a_table_that_grows(
    tmp_path: Path, dcim_volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = init_archive(tmp_path / "archive")
    try:
        ingest(archive, dcim_volume)  # rows in every table an ingest reads
        again = tmp_path / "again"
        shutil.copytree(dcim_volume, again)  # the same card's files (present) and a new one
        (again / "DCIM" / "d.bin").write_bytes(b"not a recording")
        statements: list[str] = []
        connect = sqlite3.connect

        def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)  # type: ignore[arg-type]
            conn.set_trace_callback(statements.append)
            return conn

        with monkeypatch.context() as m:
            m.setattr(sqlite3, "connect", traced)
            archive.close()
            archive = open_archive(tmp_path / "archive")
            ingest(archive, again)
            ingest(archive, dcim_volume)
    finally:
        archive.close()
    reader = sqlite3.connect(tmp_path / "archive" / "catalog.sqlite")
    walked = {}
    for sql in dict.fromkeys(statements):
        if not re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", sql, re.I):
            continue
        try:
            plan = reader.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        except sqlite3.Error:
            continue  # a temporary table of the connection that ran it
        if found := _walks(plan):
            walked[sql[:200]] = found
    assert len(statements) > 100
    assert not walked, "\n".join(f"{sql}\n    {found}" for sql, found in walked.items())


def _volume(folder: Path, files: int, one_content: bool) -> Path:
    """``files`` files in a new ``folder``: of one content (many segments of one object, quick to store), or each
    of its own."""
    folder.mkdir()
    for i in range(files):
        (folder / f"f{i:05d}.bin").write_bytes(b"one content" if one_content else os.urandom(64))
    return folder


def _counting(monkeypatch: pytest.MonkeyPatch, steps: list[int]) -> None:
    """Every connection opened from now on adds to ``steps[0]`` the instructions SQLite runs for it (counted in
    tens: the progress handler is called every ten)."""
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def tick() -> int:
        steps[0] += 10
        return 0  # go on

    def counted(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_progress_handler(tick, 10)
        return conn

    monkeypatch.setattr(sqlite3, "connect", counted)


def test_the_work_of_an_ingest_does_not_grow_with_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five new files of a new device, into an archive of 200 segments and then of 4,200: the instructions SQLite
    runs for them stay within 1.3x (about 2,500 both times; the code before 31abcdf ran 3,130, then 15,280)."""
    steps = [0]
    _counting(monkeypatch, steps)
    archive = init_archive(tmp_path / "archive")

    def work_of_five(name: str) -> int:
        steps[0] = 0
        assert len(ingest(archive, _volume(tmp_path / name, 5, False), driver="generic").stored) == 5
        return steps[0]

    try:
        ingest(archive, _volume(tmp_path / "BASE", 200, True), driver="generic")
        small = work_of_five("PROBE1")
        assert len(ingest(archive, _volume(tmp_path / "BIG", 4000, True), driver="generic").stored) == 4000
        large = work_of_five("PROBE2")
    finally:
        archive.close()
    assert small > 1000  # counted at all
    assert large <= 1.3 * small, (small, large)


def test_the_work_of_a_persons_acts_does_not_grow_with_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request to view a recording, a hold placed and released, the recording linked to a case, the requests
    listed: what the service does for people all day. The same acts on a recording of an archive of 200 segments
    and of 4,200 run within 1.3x the instructions."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "approver")
    steps = [0]
    _counting(monkeypatch, steps)
    archive = open_archive(arch)

    def acts(segment: int, case: str) -> int:
        steps[0] = 0
        access.request_access(archive, [segment], "complaint 2024-17 review", "view")
        retention.release(archive, retention.hold(archive, segment, "court order 12"))
        retention.link_case(archive, case, [segment], None)
        assert access.requests(archive)
        return steps[0]

    try:
        ingest(archive, _volume(tmp_path / "BASE", 200, True), driver="generic")
        small = acts(5, "C-1")
        ingest(archive, _volume(tmp_path / "BIG", 4000, True), driver="generic")
        large = acts(4100, "C-2")
    finally:
        archive.close()
    assert small > 500  # counted at all
    assert large <= 1.3 * small, (small, large)
