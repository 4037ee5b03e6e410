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


def crash_plans() -> list[tuple[str, str | float]]:
    plans: list[tuple[str, str | float]] = [("point", f"{phase}:{n}") for phase in PHASES for n in range(1, 7)]
    plans += [("point", "before_checkpoint:1")]
    rng = random.Random(947)
    plans += [("timer", rng.uniform(0.05, 0.9)) for _ in range(8)]  # wherever the kill lands
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
        time.sleep(float(when))
        proc.kill()
        proc.wait(timeout=60)
    assert digest_tree(vol) == before  # the crash left the source alone
    with open_archive(arch) as a:  # before the re-run: work in flight is `pending`, never tampering
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
