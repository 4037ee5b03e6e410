"""Ingest killed with SIGKILL at many points, then run again: nothing lost,
nothing doubled, the archive verifies, the volume is byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FOOTAGE
from custodes.archive import init_archive, open_archive
from custodes.verify import verify

# Phases of ingest, in order, and how many times each is reached for a 6-file volume.
PHASES = ["copy", "after_copy", "after_fsync", "after_readback", "after_link", "in_transaction", "after_commit"]
FILES = ["androidx-sample.mp4", "go-mp4-sample.mp4", "go-mp4-sample_fragmented.mp4"]


def make_volume(root: Path) -> Path:
    vol = root / "BWC0009"
    (vol / "DCIM").mkdir(parents=True)
    for name in FILES:
        shutil.copy(FOOTAGE / "encoders" / name, vol / "DCIM" / name)
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", vol / "DCIM" / "karma.mp4")  # 4 MiB: time to kill mid-copy
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "bt601.mov")
    shutil.copy(FOOTAGE / "drones" / "p4p_sample.SRT", vol / "notes.SRT")
    return vol


def digest_tree(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def ingest_cmd(vol: Path, arch: Path) -> list[str]:
    return [sys.executable, "-m", "custodes", "ingest", str(vol), "--archive", str(arch), "--driver", "generic", "--json"]


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
    # Timed kills, counted from the moment the ingest is provably under way (its catalog row exists):
    # wherever they land in the copies, fsyncs and commits, each must land before the ingest ends.
    plans += [("timer", rng.uniform(0.0, 0.08)) for _ in range(8)]
    return plans


PLANS = crash_plans()
assert len(PLANS) >= 50


@pytest.mark.parametrize("how,when", PLANS, ids=[f"{h}-{w if isinstance(w, str) else round(w, 2)}" for h, w in PLANS])
def test_kill_anywhere_then_rerun(tmp_path: Path, how: str, when: str | float) -> None:
    vol = make_volume(tmp_path)
    before = digest_tree(vol)
    arch = tmp_path / "archive"
    init_archive(arch).close()
    if how == "point":
        crashed = subprocess.run(ingest_cmd(vol, arch), capture_output=True,
                                 env={**os.environ, "CUSTODES_CRASHPOINT": str(when)}, timeout=120)
        assert crashed.returncode == -9, (when, crashed.stderr[-400:])
    else:
        proc = subprocess.Popen(ingest_cmd(vol, arch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = wait_for_ingest_row(arch, proc)
        time.sleep(float(when))
        assert proc.poll() is None, f"the ingest ended {time.monotonic() - started:.3f} s in, before the kill"
        proc.kill()
        proc.wait(timeout=60)
    assert digest_tree(vol) == before  # the crash left the source alone
    with open_archive(arch) as a:  # before the re-run: work in flight is `pending`, never tampering
        # The kill provably landed mid-ingest: the ingest never reached its signed end.
        assert a.conn.execute("SELECT COUNT(*) FROM ingests WHERE finished_ns IS NULL").fetchone()[0] == 1
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
        rows = a.conn.execute("SELECT original_name, sha256 FROM segments").fetchall()
        assert sorted(n for n, _ in rows) == sorted(before)  # every source file exactly once
        assert all(before[n][0] == sha for n, sha in rows)
        assert list(a.store.tmp.iterdir()) == []  # no stale copies left behind
        assert a.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == len(before)
