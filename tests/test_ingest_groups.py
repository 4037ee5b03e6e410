"""Ingest stores a volume in groups of files (custodes.ingest.Groups): each group's copies are synced together,
read back, noted, linked and recorded in one transaction. Killed inside any group, the groups before it stay
recorded and are not copied again; the group under way is redone by the next run."""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from custodes.archive import init_archive, open_archive
from custodes.ingest import Groups
from custodes.ingest import ingest as ingest_volume
from custodes.verify import verify
from helpers import catalog_rows, run_cli, small_tmpfs

#: Seven files, stored two at a time: four groups, the last of one file.
NAMES = [f"DCIM/F{i}.LOG" for i in range(7)]

#: The library call a test runs in its own process, so a crash point can kill it: ingest(ARCH, VOL) with the
#: group bounds and workers given as JSON.
INGEST = """
import json, sys
from custodes.archive import open_archive
from custodes.ingest import Groups, ingest
arch, vol, bounds, workers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
with open_archive(arch) as a:
    r = ingest(a, vol, driver="generic", groups=Groups(*bounds), workers=workers)
print(json.dumps(r.to_json()))
"""


def make_volume(root: Path) -> Path:
    vol = root / "vol"
    (vol / "DCIM").mkdir(parents=True)
    rng = random.Random(14)
    for i, name in enumerate(NAMES):
        (vol / name).write_bytes(rng.randbytes(1000 + 3000 * i))  # sizes differ: largest first within a group
    return vol


def log_volume(root: Path, count: int) -> Path:
    """A volume of ``count`` tiny log files the generic driver does not know, each its own content."""
    vol = root / "vol"
    vol.mkdir()
    for i in range(count):
        (vol / f"{i:04d}.LOG").write_bytes(b"%d" % i)
    return vol


def ingest(
    arch: Path, vol: Path, files: int = 2, seconds: float = 60.0, workers: int = 2, **env: str
) -> subprocess.CompletedProcess[bytes]:
    bounds = json.dumps([files, 1 << 30, seconds])
    return subprocess.run(
        [sys.executable, "-c", INGEST, str(arch), str(vol), bounds, str(workers)],
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )


def recorded(arch: Path) -> list[str]:
    """The names of the ingest entries in the ledger, in ledger order."""
    rows = catalog_rows(arch, "SELECT json_extract(entry, '$.name') FROM ledger WHERE type = 'ingest' ORDER BY seq")
    return [name for (name,) in rows]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    arch = tmp_path / "archive"
    init_archive(arch).close()
    return arch, make_volume(tmp_path)


def test_groups_store_the_volume_in_order_with_two_syncs_each(setup: tuple[Path, Path], tmp_path: Path) -> None:
    arch, vol = setup
    log = tmp_path / "ops"
    out = ingest(arch, vol, CUSTODES_FAULT_LOG=str(log))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["stored"] == NAMES and report["failed"] == []
    assert recorded(arch) == NAMES  # volume order in the ledger, group after group
    syncs = [ast.literal_eval(line.split("\t")[2]) for line in log.read_text().splitlines() if line[:6] == "fsync\t"]
    # The checkpoint the ingest's begin was signed with (since 2026-12-01: its two files and their two folders);
    # per group: one sync of its copies (tmp/) and one of their new names (objects/); then the final checkpoint's.
    per_group = [str(arch / "tmp"), str(arch / "objects" / "sha256")]
    assert syncs[4:12] == per_group * 4 and len(syncs) == 16, syncs
    with open_archive(arch) as a:
        v = verify(a)
    assert v.ok and v.findings == [] and v.checked == len(NAMES)


@pytest.mark.parametrize(
    "crash,kept",
    [
        ("after_commit:3", 4),  # the second group is committed; killed before the third starts
        ("in_transaction:4", 2),  # inside the second group's transaction: none of its records stay
        ("after_link:5", 4),  # the third group's first object is linked, not recorded: it is pending
        ("after_readback:7", 6),  # the last group read back (its copy overlapped the third group's recording)
    ],
)
def test_a_crash_costs_at_most_the_group_under_way(setup: tuple[Path, Path], crash: str, kept: int) -> None:
    arch, vol = setup
    killed = ingest(arch, vol, CUSTODES_CRASHPOINT=crash)
    assert killed.returncode == -9, killed.stderr
    assert recorded(arch) == NAMES[:kept]
    with open_archive(arch) as a:
        v = verify(a)
        assert v.ok and {f.kind for f in v.findings} <= {"pending"}, v.to_json()
    again = ingest(arch, vol)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["already_present"] == NAMES[:kept]  # the groups before the crash are not copied again
    assert report["stored"] == NAMES[kept:] and report["failed"] == []
    assert recorded(arch) == NAMES
    with open_archive(arch) as a:
        v = verify(a)
        assert v.ok and v.findings == [] and v.checked == len(NAMES), v.to_json()
        assert list(a.spool.iterdir()) == []


def test_copies_not_started_in_a_groups_time_wait_for_the_next_group(setup: tuple[Path, Path], tmp_path: Path) -> None:
    # No time at all: each group finishes the copy under way and defers the rest, yet every file is stored once.
    arch, vol = setup
    log = tmp_path / "ops"
    out = ingest(arch, vol, files=100, seconds=0.0, workers=1, CUSTODES_FAULT_LOG=str(log))
    assert out.returncode == 0, out.stderr
    groups = sum(1 for line in log.read_text().splitlines() if line[:6] == "fsync\t" and line.endswith("/tmp'"))
    assert groups > 1  # by its file bound alone the volume is one group
    report = json.loads(out.stdout)
    assert sorted(report["stored"]) == NAMES and report["failed"] == [] and report["already_present"] == []
    assert sorted(recorded(arch)) == NAMES
    with open_archive(arch) as a:
        v = verify(a)
    assert v.ok and v.findings == [] and v.checked == len(NAMES)


def test_findings_are_ledgered_a_thousand_an_entry(tmp_path: Path) -> None:
    # 1,001 files the generic driver does not know: 1,001 unknown_file findings, in two entries, not one
    # entry that grows with the volume (10^5 files made one of 48 MB).
    arch = tmp_path / "archive"
    init_archive(arch).close()
    vol = log_volume(tmp_path, 1001)
    out = ingest(arch, vol, files=1000)
    assert out.returncode == 0, out.stderr
    assert [f["kind"] for f in json.loads(out.stdout)["findings"]] == ["unknown_file"] * 1001
    rows = catalog_rows(arch, "SELECT entry FROM ledger WHERE type = 'ingest_findings' ORDER BY seq")
    chunks = [json.loads(entry)["findings"] for (entry,) in rows]
    assert [len(c) for c in chunks] == [1000, 1]
    assert [f["path"] for c in chunks for f in c] == [str(vol / f"{i:04d}.LOG") for i in range(1001)]
    assert catalog_rows(arch, "SELECT COUNT(*) FROM findings WHERE kind = 'unknown_file'") == [(1001,)]
    with open_archive(arch) as a:
        v = verify(a)  # the rows replayed from the entries are the rows the catalog holds
    assert v.ok and v.findings == [] and v.checked == 1001


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_what_is_put_in_a_files_place_after_the_scan_is_refused_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    # Found by a hostile review: a file (or a folder on the way to it) swapped for a link to /etc between the scan
    # and the copy was followed, and /etc/shadow stored as evidence. The swap is made right after the volume is
    # read (the race the attacker wins, made certain); the copy must be of the file the scan found, or nothing.
    import hashlib

    import custodes.ingest as ingest_module

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "B.LOG").write_bytes(b"a file outside the volume")
    vol = tmp_path / "vol"
    (vol / "DCIM").mkdir(parents=True)
    (vol / "DCIM" / "A.LOG").write_bytes(b"evidence A")
    (vol / "DCIM" / "B.LOG").write_bytes(b"evidence B")
    read_volume = ingest_module.read_volume

    def read_then_swap(*args: object, **kwargs: object) -> object:
        reading = read_volume(*args, **kwargs)  # type: ignore[arg-type]
        if swap == "file":
            (vol / "DCIM" / "B.LOG").unlink()
            (vol / "DCIM" / "B.LOG").symlink_to(elsewhere / "B.LOG")
        else:
            (vol / "DCIM").rename(tmp_path / "away")
            (vol / "DCIM").symlink_to(elsewhere)
        return reading

    monkeypatch.setattr(ingest_module, "read_volume", read_then_swap)
    arch = tmp_path / "archive"
    init_archive(arch).close()
    with open_archive(arch) as a:
        result = ingest_module.ingest(a, vol, driver="generic")
        outside = hashlib.sha256(b"a file outside the volume").hexdigest()
        assert a.store.stat(outside) is None  # never copied in
    assert "DCIM/B.LOG" in result.failed
    (failure,) = [f for f in result.findings if f.kind == "ingest_failed" and f.path.endswith("B.LOG")]
    assert "not the file found there when the volume was read (it changed since); not copied" in failure.message
    assert ("DCIM/A.LOG" in result.stored) == (swap == "file")  # a swapped folder takes A's place too


def test_a_volume_the_archive_s_disk_has_no_room_for_is_refused_before_it_is_recorded(tmp_path: Path) -> None:
    """The first group's files need more than the archive's disk has free: refused at once, with the numbers,
    nothing recorded (a hostile review: a full disk was met copy by copy, one "No space left" finding each)."""
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        arch = disk / "archive"
        init_archive(arch).close()
        vol = tmp_path / "vol"
        vol.mkdir()
        (vol / "BIG.LOG").write_bytes(random.Random(1).randbytes(7 << 20))
        entries = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
        out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
        err = out.stderr.decode()
        assert out.returncode == 2 and len(err.splitlines()) == 1, err
        assert f"custodes: the disk is full ({arch}): free space on it, then run the command again: " in err, err
        assert "MiB free, and the next 1 file(s) of the volume need 7.00 MiB" in err and "nothing was recorded" in err
        assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == entries
        assert list((arch / "tmp").iterdir()) == [] and not list((arch / "objects").rglob("*.*"))


def test_an_ingest_whose_disk_fills_stops_at_the_group_without_room_and_says_so_once(tmp_path: Path) -> None:
    """One file a group: the first two fit, the third does not. The two are stored and recorded; the third is
    failed with one finding for it and what was left, before any copy of it was made; with room, the re-run
    stores it."""
    with small_tmpfs(tmp_path / "disk", "12m") as disk:
        arch = disk / "archive"
        init_archive(arch).close()
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        vol = tmp_path / "vol"
        vol.mkdir()
        rng = random.Random(2)
        for name in ("A.LOG", "B.LOG", "C.LOG", "D.LOG"):
            (vol / name).write_bytes(rng.randbytes(int(free * 0.35)))
        with open_archive(arch) as a:
            r = ingest_volume(a, vol, driver="generic", groups=Groups(1, 1 << 30, 60.0))
        assert (r.stored, r.failed) == (["A.LOG", "B.LOG"], ["C.LOG", "D.LOG"]), r.to_json()
        (said,) = [f for f in r.findings if f.kind == "ingest_failed"]
        assert said.message.startswith(f"2 file(s) not copied, the first C.LOG: the disk is full ({arch})"), said
        assert "what was stored before is recorded, and the re-run copies the rest" in said.message
        assert list((arch / "tmp").iterdir()) == []
        with open_archive(arch) as a:
            assert verify(a).ok
        subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)
        with open_archive(arch) as a:
            again = ingest_volume(a, vol, driver="generic", groups=Groups(1, 1 << 30, 60.0))
            assert (again.stored, again.already_present, again.failed) == (["C.LOG", "D.LOG"], ["A.LOG", "B.LOG"], [])
            assert verify(a).ok


def test_a_disk_out_of_inodes_is_met_as_a_full_one(tmp_path: Path) -> None:
    """Room in bytes, but few inodes (a hostile review: a tmpfs of 40 inodes failed 700 files one by one): the
    volume is refused before it is recorded, the inodes said."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,nr_inodes=64", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        arch = disk / "archive"
        init_archive(arch).close()
        vol = log_volume(tmp_path, 100)
        entries = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
        out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
        err = out.stderr.decode()
        assert out.returncode == 2 and len(err.splitlines()) == 1, err
        assert "more file(s) (inodes), and the next 100 file(s) of the volume need up to 316" in err, err
        assert "nothing was recorded" in err and catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == entries
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_volume_held_whole_already_needs_no_room(tmp_path: Path) -> None:
    """Ingested again onto a disk with less free than the room kept for recording copies: every file is present,
    nothing is copied, so no room is asked (a group with nothing to copy was held to it, and its one finding named
    the first of no files: an IndexError)."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        arch = disk / "archive"
        init_archive(arch).close()
        vol = log_volume(tmp_path, 3)
        with open_archive(arch) as a:
            assert ingest_volume(a, vol, driver="generic", groups=Groups(1, 1 << 30, 60.0)).failed == []
        st = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - (160 << 10)))
        with open_archive(arch) as a:
            again = ingest_volume(a, vol, driver="generic", groups=Groups(1, 1 << 30, 60.0))
        assert (again.already_present, again.failed) == (["0000.LOG", "0001.LOG", "0002.LOG"], []), again.to_json()


#: The measurement of the test below, run in a process of its own: in a test worker, what earlier test files left
#: in the process (another file's ingests before it) moved the peaks by 1.1 KiB a file, order by order.
PEAKS = """
import json, sys, tracemalloc
from pathlib import Path
from custodes.archive import init_archive, open_archive
from custodes.ingest import Groups, ingest

root = Path(sys.argv[1])
def log_volume(where, count):
    vol = where / "vol"
    vol.mkdir(parents=True)
    for i in range(count):
        (vol / f"{i:04d}.LOG").write_bytes(b"%d" % i)
    return vol
init_archive(root / "warm").close()
with open_archive(root / "warm") as a:  # the imports a first ingest makes are not the volume's
    ingest(a, log_volume(root / "w", 3), driver="generic")
peaks = {}
for count in (400, 2000):
    arch = root / f"archive{count}"
    init_archive(arch).close()
    vol = log_volume(root / f"v{count}", count)
    with open_archive(arch) as a:
        tracemalloc.start()
        try:
            result = ingest(a, vol, driver="generic", groups=Groups(100, 1 << 30, 60.0))
            held, peak = tracemalloc.get_traced_memory()  # held: the result (still referenced) and the caches
            peaks[count] = (peak, held)
        finally:
            tracemalloc.stop()
    assert len(result.stored) == count, result.to_json(per_file=False)
print(json.dumps(peaks))
"""


def test_what_an_ingest_holds_grows_with_its_files_only_by_what_it_reports(tmp_path: Path) -> None:
    """Python's peak allocation in an ingest grows with the volume, beyond what the result it returns holds, only by
    what the volume's listing holds (1.1 KiB a file at a 16-character root, 1.4 KiB at 115), never by what each
    group's copying made: every future handed to the copying pool was kept to the end with its result (1.6 KiB
    more a file here; 10^5 files of 1 KiB peaked at 428 MiB of RSS). The result itself is subtracted: it holds
    each file's path, and the peak alone rose with the length of the test's folder (2.3 KiB a file here, 2.6
    under CI's longer basetemp, against a bound of 2.5)."""
    out = subprocess.run([sys.executable, "-c", PEAKS, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    peaks = {int(k): v for k, v in json.loads(out.stdout).items()}
    (peak_small, held_small), (peak_big, held_big) = peaks[400], peaks[2000]
    per_file = ((peak_big - held_big) - (peak_small - held_small)) / 1600
    assert per_file < 2 * 1024, f"{per_file:.0f} bytes a file beyond the result"


LIVES_ON = """
import gc, json, sys, tracemalloc
from pathlib import Path
from custodes.archive import init_archive, open_archive
from custodes.ingest import Groups, ingest

root = Path(sys.argv[1])
def log_volume(name, count):
    vol = root / name
    vol.mkdir()
    for i in range(count):
        (vol / f"{name}-{i:04d}.LOG").write_bytes(b"%d" % i)
    return vol
init_archive(root / "archive").close()
# pathlib interns every name it parses, and the table of interned strings is reallocated (tracemalloc sees it) as
# names come and go: kept large by names that stay, it is reallocated at the same size.
stay = [sys.intern(f"custodes-test-{i}") for i in range(30000)]
held = []
with open_archive(root / "archive") as a:  # one archive open across acts, as the archive service holds it
    tracemalloc.start()
    for name in ("first", "second", "third"):  # the first: the imports, caches and tables a first act grows
        result = ingest(a, log_volume(name, 600), driver="generic", groups=Groups(100, 1 << 30, 60.0))
        assert len(result.stored) == 600, result.to_json(per_file=False)
        del result
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0])
print(json.dumps(held))
"""


def test_a_process_that_lives_on_holds_nothing_for_each_entry_it_appended(tmp_path: Path) -> None:
    """Once an act is done and its entries are signed, what the process holds does not grow with them: the
    archive service appends for months. Each entry's leaf was kept for whose-is-it checks (catalog.ledger.
    OwnEntries), which ask only past the latest checkpoint: 150 bytes an entry for the life of the process."""
    out = subprocess.run([sys.executable, "-c", LIVES_ON, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second, third = json.loads(out.stdout)
    assert (third - first) / 1200 < 16, f"{(third - first) / 1200:.0f} bytes held for each file ingested"
