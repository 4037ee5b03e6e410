"""Ingest's read-back: a copy that reads back other bytes than were read from
the volume (a storage fault after fsync) is never stored, linked or recorded.

The fault comes from the storage fault injector (``CUSTODES_FAULT=read:n:corrupt``
flips a bit in the copy just before the n-th read of an archive file), in the
real CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from custodes.archive import open_archive
from helpers import FOOTAGE, catalog_rows, run_cli

BIG, SMALL = FOOTAGE / "gopro" / "karma.mp4", FOOTAGE / "encoders" / "androidx-sample.mp4"


def test_a_copy_that_reads_back_different_is_not_stored(tmp_path: Path, monkeypatch) -> None:
    vol = tmp_path / "BWC0005"
    vol.mkdir()
    shutil.copy(BIG, vol / "big.mp4")
    shutil.copy(SMALL, vol / "small.mp4")
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    # One copy at a time, largest first: the first archive read is big.mp4's read-back.
    monkeypatch.setenv("CUSTODES_FAULT", "read:1:corrupt")
    out = run_cli("ingest", vol, "--archive", arch, "--workers", "1", "--driver", "generic", "--json")
    monkeypatch.delenv("CUSTODES_FAULT")
    assert b"Traceback" not in out.stderr and out.returncode == 1
    report = json.loads(out.stdout)
    assert (report["stored"], report["failed"]) == (["small.mp4"], ["big.mp4"])
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert failed["path"].endswith("big.mp4") and "differs" in failed["message"]
    with open_archive(arch) as a:
        names = [n for (n,) in catalog_rows(a.root, "SELECT original_name FROM segments")]
        assert names == ["small.mp4"]  # nothing recorded for the bad copy
        entries = [json.loads(e) for (e,) in catalog_rows(a.root, "SELECT entry FROM ledger")]
        # No recording entry for it; the failure itself is ledgered, among the ingest's findings (ingest_findings).
        assert [e["name"] for e in entries if e["type"] == "ingest"] == ["small.mp4"]
        (found,) = [e for e in entries if e["type"] == "ingest_findings"]
        assert [
            (f["kind"], f["path"].endswith("big.mp4")) for f in found["findings"] if f["kind"] == "ingest_failed"
        ] == [("ingest_failed", True)]
        assert len(list(a.store.list())) == 1  # nothing linked for it either
        assert list(a.spool.iterdir()) == []  # and its temp copy is gone
    assert run_cli("verify", arch).returncode == 0
    assert (vol / "big.mp4").read_bytes() == BIG.read_bytes()  # the volume is untouched
    # The storage behaves again: a re-run stores the file.
    again = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json")
    report = json.loads(again.stdout)
    assert (report["stored"], report["already_present"], report["failed"]) == (["big.mp4"], ["small.mp4"], [])
    assert run_cli("verify", arch).returncode == 0


def test_the_injected_corruption_is_real(tmp_path: Path, monkeypatch) -> None:
    """The fault flips a bit in the file itself, so the read-back can only see it by comparing digests."""
    f = tmp_path / "x.bin"
    f.write_bytes(bytes(100))
    os.chmod(f, 0o444)
    monkeypatch.setenv("CUSTODES_FAULT", "read:1:corrupt")
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-c", f"from custodes._faults import storage_op; storage_op('read', {str(f)!r})"],
        check=True,
        env=os.environ.copy(),
    )
    assert f.read_bytes() == bytes(50) + b"\x01" + bytes(49)
    assert f.stat().st_mode & 0o777 == 0o444
