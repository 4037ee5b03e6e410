"""Ingest killed with SIGKILL at many points, then run again: nothing lost,
nothing doubled, the archive verifies, the volume is byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from custodes.archive import init_archive, open_archive
from custodes.verify import verify
from helpers import FOOTAGE, catalog_rows, ingest_cmd

# Phases of ingest, in order, and how many times each is reached for a 6-file volume.
PHASES = ["copy", "after_copy", "after_fsync", "after_readback", "after_link", "in_transaction", "after_commit"]
FILES = ["androidx-sample.mp4", "go-mp4-sample.mp4", "go-mp4-sample_fragmented.mp4"]


#: For the timed kills: a 48 MiB device log beside the recordings makes the copy phase long enough
#: (hundreds of ms) that a kill at a random share of it lands inside it on any machine.
TIMED_FILLER_MIB = 48


def make_volume(root: Path, filler_mib: int = 0) -> Path:
    vol = root / "BWC0009"
    (vol / "DCIM").mkdir(parents=True)
    for name in FILES:
        shutil.copy(FOOTAGE / "encoders" / name, vol / "DCIM" / name)
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", vol / "DCIM" / "karma.mp4")  # 4 MiB: time to kill mid-copy
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "bt601.mov")
    shutil.copy(FOOTAGE / "drones" / "p4p_sample.SRT", vol / "notes.SRT")
    if filler_mib:
        (vol / "DEVICE.LOG").write_bytes(random.Random(9).randbytes(filler_mib << 20))
    return vol


def digest_tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_for_ingest_row(arch: Path, proc: subprocess.Popen) -> float:
    """Block until the ingest has written its catalog row (it is under way), polling read-only."""
    import sqlite3

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True, timeout=0.05) as c:
                if c.execute("SELECT COUNT(*) FROM ingests").fetchone()[0]:
                    return time.monotonic()
        except sqlite3.OperationalError:
            pass  # locked by the ingest's write this instant
        time.sleep(0.002)
    raise AssertionError("the ingest never started (or ended before it was seen)")


def crash_plans() -> list[tuple[str, str | float]]:
    plans: list[tuple[str, str | float]] = [("point", f"{phase}:{n}") for phase in PHASES for n in range(1, 7)]
    plans += [("point", "before_checkpoint:1")]
    rng = random.Random(947)
    # Timed kills at a random share of the ingest's own working time (measured on this machine by
    # `ingest_span`), counted from the moment it is provably under way: wherever they land in the
    # copies, fsyncs and commits, each lands before the ingest ends, on a fast machine or a slow one.
    plans += [("timer", rng.uniform(0.05, 0.7)) for _ in range(8)]
    return plans


@pytest.fixture(scope="module")
def ingest_span(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Seconds from an ingest's catalog row to its signed end, for this volume on this machine
    (the shortest of three clean runs, so a kill at a share of it is early enough)."""
    import sqlite3

    spans = []
    for i in range(3):
        root = tmp_path_factory.mktemp(f"span{i}")
        vol, arch = make_volume(root, TIMED_FILLER_MIB), root / "archive"
        init_archive(arch).close()
        proc = subprocess.Popen(ingest_cmd(vol, arch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = wait_for_ingest_row(arch, proc)
        finished = None
        while finished is None and time.monotonic() - started < 60:
            try:
                with sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True, timeout=0.05) as c:
                    if c.execute("SELECT finished_ns FROM ingests").fetchone()[0] is not None:
                        finished = time.monotonic()
            except sqlite3.OperationalError:
                pass
            time.sleep(0.001)
        assert proc.wait(timeout=60) == 0 or proc.returncode == 1
        assert finished is not None
        spans.append(finished - started)
    return min(spans)


PLANS = crash_plans()
assert len(PLANS) >= 50


@pytest.mark.parametrize("how,when", PLANS, ids=[f"{h}-{w if isinstance(w, str) else round(w, 2)}" for h, w in PLANS])
def test_kill_anywhere_then_rerun(tmp_path: Path, how: str, when: str | float, request: pytest.FixtureRequest) -> None:
    vol = make_volume(tmp_path, TIMED_FILLER_MIB if how == "timer" else 0)
    before = digest_tree(vol)
    arch = tmp_path / "archive"
    init_archive(arch).close()
    if how == "point":
        crashed = subprocess.run(
            ingest_cmd(vol, arch),
            capture_output=True,
            env={**os.environ, "CUSTODES_CRASHPOINT": str(when)},
            timeout=120,
        )
        assert crashed.returncode == -9, (when, crashed.stderr[-400:])
    else:
        span = request.getfixturevalue("ingest_span")
        # A run quicker than the measured span (the machine quieter than while it was measured: a fresh clone's
        # suite saw one end 0.06 s in) ends before a late kill, or signs its end as the kill is sent (a run beside
        # other work): again on a new archive, killed sooner.
        for share in (1.0, 0.5, 0.25, 0.1):
            proc = subprocess.Popen(ingest_cmd(vol, arch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started = wait_for_ingest_row(arch, proc)
            time.sleep(float(when) * span * share)
            proc.kill()
            proc.wait(timeout=60)
            if catalog_rows(arch, "SELECT COUNT(*) FROM ingests WHERE finished_ns IS NULL")[0][0] == 1:
                break
            ended = time.monotonic() - started
            shutil.rmtree(arch)
            init_archive(arch).close()
        else:
            raise AssertionError(f"the ingest ended {ended:.3f} s in, before the kill")
    assert digest_tree(vol) == before  # the crash left the source alone
    with open_archive(arch) as a:  # before the re-run: work in flight is `pending`, never tampering
        # The kill provably landed mid-ingest: the ingest never reached its signed end.
        assert catalog_rows(a.root, "SELECT COUNT(*) FROM ingests WHERE finished_ns IS NULL")[0][0] == 1
        v = verify(a)
        assert v.ok and {f.kind for f in v.findings} <= {"pending"}, v.to_json()
    done = subprocess.run(ingest_cmd(vol, arch), capture_output=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["failed"] == [], report
    assert sorted(report["stored"] + report["already_present"]) == sorted(before)
    assert digest_tree(vol) == before
    with open_archive(arch) as a:
        v = verify(a)
        assert v.ok and v.findings == [], v.to_json()  # finished: nothing pending any more
        rows = catalog_rows(a.root, "SELECT original_name, sha256 FROM segments")
        assert sorted(n for n, _ in rows) == sorted(before)  # every source file exactly once
        assert all(before[n][0] == sha for n, sha in rows)
        assert list(a.spool.iterdir()) == []  # no stale copies left behind
        # One ingest entry per file; each run's ingest_begin and ingest_end around them (catalog.replay).
        recorded = "SELECT COUNT(*) FROM ledger WHERE json_extract(entry, '$.type') = 'ingest'"
        assert catalog_rows(a.root, recorded)[0][0] == len(before)
