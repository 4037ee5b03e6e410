"""The query API on an archive of 10^5 segments, made by real ingests: per filter, exactly the segments and
findings an independent SQL query finds, read lazily (tracemalloc's peak while walking all 10^5 stays small:
a page at a time, never the archive). The archive takes under a minute to make: one module fixture."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import open_archive
from helpers import grant, memory_folder, policy_text, run_cli, set_policy
from query_sql import (
    T0_NS,
    S,
    expected_catalog_findings,
    expected_segments,
    recorder,
)

pytestmark = pytest.mark.slow  # the module fixture ingests 10^5 files (40-70 s)

BIG = 100_000
#: Peak of Python allocations while walking every segment or finding (a page is about 0.5 MiB).
FLAT = 20 * 2**20


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A volume of 10^5 small files (device BIG, one unknown_file finding each), a GA/T 947 recorder with
    officer 001234's clips, and a case holding segments of both; in memory where a tmpfs can be mounted."""
    with memory_folder(tmp_path_factory.mktemp("query-scale"), "4g") as root:
        yield _make_large(root)


def _make_large(root: Path) -> Path:
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    # Copies checked from the page cache: this test is about the catalog, not the disk (10^5 reads saved).
    out = set_policy(arch, policy_text(arch).replace('readback = "storage"', 'readback = "cache"'))
    assert out.returncode == 0, out.stderr
    grant(arch, "custodian")
    vol = root / "BIG"
    vol.mkdir()
    for n in range(BIG):
        # A content of its own each: with one content, 10^5 spool copies are made and deleted again, and on an
        # ext4 without a journal (this machine's /tmp, CI's) each new inode is then sought past every recently
        # deleted one: 83 s for the ingest, where 10^5 distinct files take 40 s.
        (vol / f"f{n:06d}.bin").write_bytes(b"custodes %d" % n)
    started = time.monotonic()
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "-q", "--json", timeout=600)
    print(f"\n10^5-file ingest: {time.monotonic() - started:.1f} s")  # noqa: T201 - the report quotes it
    assert out.returncode == 1, out.stderr  # an unknown_file finding for each
    listed = json.loads(out.stdout)["segments"]
    assert len(listed) == BIG and listed[-1]["segment"] == BIG
    small = recorder(root, "BWCA", "001234", [0, 2, 4, 6, 8, 20, 22])
    assert run_cli("ingest", small, "--archive", arch).returncode == 1
    args = [x for s in (1, 50_000, BIG, BIG + 1, BIG + 7) for x in ("--segment", str(s))]
    assert run_cli("retention", "case", arch, "--case", "C1", *args).returncode == 0
    return arch


def _walk_flat(records: Iterator[Any], expected: list[int]) -> int:
    """Walk ``records`` comparing each id with ``expected`` in order, holding nothing; the peak allocation."""
    tracemalloc.start()
    try:
        n = 0
        for n, (record, want) in enumerate(zip(records, expected, strict=True), start=1):  # noqa: B007
            assert record.id == want
        return tracemalloc.get_traced_memory()[1] if n == len(expected) else -1
    finally:
        tracemalloc.stop()


def test_every_segment_and_finding_walked_in_flat_memory(large: Path) -> None:
    segments, findings = expected_segments(large, {}), expected_catalog_findings(large, {})
    assert len(segments) == BIG + 7 and len(findings) >= BIG
    with open_archive(large) as archive:
        peak = _walk_flat(archive.segments(), segments)
        print(f"\nsegments: peak {peak / 2**20:.1f} MiB")  # noqa: T201
        assert 0 < peak < FLAT
        peak = _walk_flat(archive.findings(), findings)  # no tasks: every finding is one an ingest recorded
        print(f"findings: peak {peak / 2**20:.1f} MiB")  # noqa: T201
        assert 0 < peak < FLAT


@pytest.mark.parametrize(
    "f",
    [
        {"device": "BIG"},
        {"device": "BWCA"},
        {"officer": "001234"},
        {"case": "C1"},
        {"start": T0_NS + 5 * S, "end": T0_NS + 21 * S},
        {"device": "BIG", "case": "C1"},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_each_filter_at_scale_is_what_sql_finds(large: Path, f: dict[str, Any]) -> None:
    with open_archive(large) as archive:
        assert [s.id for s in archive.segments(**f)] == expected_segments(large, f)
        assert [x.id for x in archive.findings(**f)] == expected_catalog_findings(large, f)


def test_the_scale_filters_select_what_the_archive_holds(large: Path) -> None:
    assert len(expected_segments(large, {"device": "BIG"})) == BIG
    assert expected_segments(large, {"case": "C1"}) == [1, 50_000, BIG, BIG + 1, BIG + 7]
    assert expected_segments(large, {"device": "BIG", "case": "C1"}) == [1, 50_000, BIG]
    assert len(expected_segments(large, {"officer": "001234"})) == 7
    # The clips of 1 s at 6, 8 and 20 s overlap [5 s, 21 s); the one at 4 s ends as it begins; the files have no time.
    assert expected_segments(large, {"start": T0_NS + 5 * S, "end": T0_NS + 21 * S}) == [BIG + 4, BIG + 5, BIG + 6]
