"""Storage faults injected into the real CLI: ingest, retention purge and export
walked through every N of every storage operation (``CUSTODES_FAULT=op:n:what``,
see custodes._faults).

For each N the command runs once with the N-th write, read or fsync failing
(ENOSPC or EIO, taking turns over N so both are met at every phase) or with a
SIGKILL just before the N-th fsync completes; the walk goes one past the last
operation a clean run counts, where the fault must no longer fire. After each
faulted run: the exit code is exactly the one of its phase, no traceback, the
volume is byte-identical, nothing is half-recorded, and verify is clean or
names exactly the failure; then the same command without faults finishes the
work and the archive verifies clean.

Phases: a fault in one file's copy (its write, read-back or link) is that
file's ``ingest_failed`` finding, exit 1, and the rest of the volume is stored;
a fault in the sync of a group of copies or of their new names (ingest syncs
each group's files together, custodes._durable.sync_together) fails every file
of the group the same way, since a sync cannot say whose write-back failed; a
fault anywhere else (a checkpoint, a purge, a bag) is an environment error,
exit 2, one line naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import bagit
import pytest

from custodes.archive import Archive, init_archive, open_archive
from custodes.verify import verify
from helpers import (
    FOOTAGE,
    PEOPLE,
    catalog_rows,
    copy_archive,
    hand_back,
    one_line_error,
    policy_text,
    run_cli_with_faults,
    set_policy,
    small_tmpfs,
)

#: About 200 short CLI runs in all (every N of every operation of three commands, and each re-run).
pytestmark = pytest.mark.slow

FILES = {
    "DCIM/androidx-sample.mp4": FOOTAGE / "encoders" / "androidx-sample.mp4",  # 2016: due for purge
    "DCIM/bt601.mov": FOOTAGE / "phones" / "bt601.mov",  # 2024-02-12: due for purge
    "notes.SRT": FOOTAGE / "drones" / "p4p_sample.SRT",  # a sidecar, no clock: not due
}
SHA = {rel: hashlib.sha256(src.read_bytes()).hexdigest() for rel, src in FILES.items()}
DUE = ["DCIM/androidx-sample.mp4", "DCIM/bt601.mov"]
#: ENOSPC and EIO take turns over N; every other fsync is a crash before it completes.
FAULTS = {"write": ("ENOSPC", "EIO"), "read": ("EIO",), "fsync": ("EIO", "crash")}


def plan(op: str, n: int) -> str:
    whats = FAULTS[op]
    return f"{op}:{n}:{whats[n % len(whats)]}"


def make_volume(root: Path) -> Path:
    vol = root / "BWC0947"
    for rel, src in FILES.items():
        (vol / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, vol / rel)
    return vol


def digest_tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def cli(
    *args: object, fault: str | None = None, log: Path | None = None, user: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``custodes ARGS`` with a fault plan, in the process that does the work (helpers.run_cli_with_faults)."""
    return run_cli_with_faults(*[a if isinstance(a, Path) else str(a) for a in args], user=user, fault=fault, log=log)


def logged(log: Path) -> list[tuple[str, int, str, bool]]:
    """(op, n, path, fault fired) per storage operation of one run."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        op, n, path, *fired = line.split("\t")
        out.append((op, int(n), path[1:-1], fired == ["fault"]))
    return out


def count_ops(log: Path) -> dict[str, int]:
    ops = logged(log)
    assert not any(f for *_, f in ops)
    return {op: sum(1 for o, *_ in ops if o == op) for op in FAULTS}


def strerror(what: str) -> str:
    return os.strerror(getattr(errno, what))


def no_traceback(out: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")[-2000:]


def one_line_storage_error(out: subprocess.CompletedProcess[bytes], path: str) -> None:
    """Exit 2, one line on stderr naming the file the storage failed on and what to do."""
    text = out.stderr.decode()
    assert out.returncode == 2, (out.returncode, text)
    assert text.count("\n") == 1 and text.startswith("custodes: "), text
    assert Path(path).name in text and "run the command again" in text, text


def verify_kinds(arch: Path) -> set[str]:
    with open_archive(arch) as a:
        return {f.kind for f in verify(a).findings}


def unsigned_entries(arch: Path) -> bool:
    """The ledger holds entries past its latest checkpoint (a command's checkpoint failed after its entries)."""
    return catalog_rows(arch, "SELECT (SELECT COUNT(*) FROM ledger) > (SELECT MAX(size) FROM checkpoints)")[0][0] == 1


def store_files(arch: Path) -> set[str]:
    return {p.name for p in (arch / "objects").rglob("*") if p.is_file()}


def assert_whole_rows(arch: Path, pending_ok: bool = False) -> None:
    """Nothing half-recorded: every segment has its ledger entry and its catalogued object, every live object is
    in the store, an object is purged exactly when its tombstone is in the ledger, and every file in the store is
    catalogued (or, after a crash, linked under an ingest that has not finished: verify calls it pending). A
    purged object still in the store (a purge stopped between tombstone and unlink) is purge_incomplete."""
    with open_archive(arch) as a:
        assert catalog_rows(
            arch,
            "SELECT COUNT(*) FROM segments s LEFT JOIN objects o ON o.sha256 = s.sha256 "
            "LEFT JOIN ledger l ON l.seq = s.ledger_seq WHERE o.sha256 IS NULL OR l.seq IS NULL",
        ) == [(0,)]
        live = {sha for (sha,) in catalog_rows(arch, "SELECT sha256 FROM objects WHERE purged_ns IS NULL")}
        purged = {sha for (sha,) in catalog_rows(arch, "SELECT sha256 FROM objects WHERE purged_ns IS NOT NULL")}
        tombs = {sha for (sha,) in catalog_rows(arch, "SELECT sha256 FROM tombstones")}
        assert purged == tombs
        findings = verify(a).findings
        pending = {f.object for f in findings if f.kind == "pending"}
        incomplete = {f.object for f in findings if f.kind == "purge_incomplete"}
    on_disk = store_files(arch)
    assert live <= on_disk
    strays = on_disk - live - purged
    assert not strays or pending_ok, strays
    assert strays <= pending, (strays, pending)
    assert purged & on_disk == incomplete, (purged & on_disk, incomplete)


# ---------------------------------------------------------------- ingest


def ingest(vol: Path, arch: Path, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json", **kw)  # type: ignore[arg-type]


def new_archive(path: Path) -> Path:
    init_archive(path).close()
    return path


@pytest.fixture(scope="module")
def ingest_ops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Storage operations of a clean ingest of the volume (the walk's length), and its exit code."""
    root = tmp_path_factory.mktemp("clean-ingest")
    log = root / "ops"
    out = ingest(make_volume(root), new_archive(root / "archive"), log=log)
    no_traceback(out)
    assert out.returncode == 1  # late_ingest, gap, unknown_file: the footage is old, the sidecar no recording
    report = json.loads(out.stdout)
    assert report["failed"] == [] and sorted(report["stored"]) == sorted(FILES)
    counts = count_ops(log)
    # 3 copies, 3 links, two checkpoints' 2 temps and their 2 links each (its begin's, since 2026-12-01, and its
    # end's); one sync of the group's copies and one of their new names (all 3 files are one group), per
    # checkpoint 2 fsyncs of its temps and 2 of their folders; 2 reads back per copy.
    assert counts == {"write": 14, "read": 6, "fsync": 10}
    return counts


def files_of(arch: Path, path: str) -> set[str]:
    """The volume files a storage operation worked for: one file's copy in tmp/ or its object; every file
    (the volume is one group) for the sync of the group's copies (tmp/) or of their names (objects/sha256)."""
    p = Path(path)
    if p in (arch / "tmp", arch / "objects" / "sha256"):
        return set(FILES)
    for rel, sha in SHA.items():
        obj = arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
        if (p.parent == arch / "tmp" and p.name.endswith("-" + Path(rel).name)) or p == obj:
            return {rel}
    return set()


@pytest.mark.parametrize("op", list(FAULTS))
def test_ingest_through_every_fault(tmp_path: Path, ingest_ops: dict[str, int], op: str) -> None:
    vol = make_volume(tmp_path)
    before = digest_tree(vol)
    for n in range(1, ingest_ops[op] + 2):
        fault = plan(op, n)
        what = fault.rsplit(":", 1)[1]
        arch = new_archive(tmp_path / f"archive-{n}")
        log = tmp_path / f"ops-{n}"
        out = ingest(vol, arch, fault=fault, log=log)
        no_traceback(out)
        assert digest_tree(vol) == before, fault
        hit = [path for o, _, path, fired in logged(log) if fired]
        if n > ingest_ops[op]:  # past the last operation: the fault never fires, the ingest is whole
            assert hit == [] and out.returncode == 1, (fault, out.stderr)
            assert json.loads(out.stdout)["failed"] == []
            continue
        assert len(hit) == 1, (fault, hit)
        victims = files_of(arch, hit[0])
        if what == "crash":
            assert out.returncode == -9, (fault, out.stderr)
            assert_whole_rows(arch, pending_ok=True)
            assert verify_kinds(arch) <= {"pending", "checkpoint_mismatch"}, fault
        elif victims:  # one file's copy, or its group's sync: those files' findings, the rest stored
            assert out.returncode == 1, (fault, out.stderr)
            report = json.loads(out.stdout)
            assert sorted(report["failed"]) == sorted(victims), (fault, report["failed"])
            assert sorted(report["stored"]) == sorted(set(FILES) - victims)
            failed = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
            assert sorted(Path(f["path"]).relative_to(vol).as_posix() for f in failed) == sorted(victims), failed
            assert all(strerror(what) in f["message"] for f in failed), failed
            assert list((arch / "tmp").iterdir()) == []  # the failed copies are gone, not left half-written
            assert_whole_rows(arch)
            assert verify_kinds(arch) == set(), fault
            assert not {SHA[v] for v in victims} & store_files(arch)
        else:  # the checkpoint that closes the ingest: every file is recorded, the signature is not
            one_line_storage_error(out, hit[0])
            assert list((arch / "tmp").iterdir()) == []
            assert_whole_rows(arch)
            # verify names the unsigned work as the pending ingest to re-run (or the checkpoint it lacks)
            assert verify_kinds(arch) <= {"pending", "checkpoint_mismatch"}, fault
        rerun = ingest(vol, arch)
        no_traceback(rerun)
        assert rerun.returncode == 1, (fault, rerun.stderr)
        report = json.loads(rerun.stdout)
        assert report["failed"] == [] and sorted(report["stored"] + report["already_present"]) == sorted(FILES), fault
        assert digest_tree(vol) == before
        with open_archive(arch) as a:
            v = verify(a)
            assert v.findings == [] and v.checked == len(FILES), (fault, v.to_json())
            rows = catalog_rows(a.root, "SELECT original_name, sha256 FROM segments")
            assert sorted(rows) == sorted(SHA.items())  # every file exactly once, with its own bytes
            # ... and one ingest entry each (each run also ledgers its ingest_begin and ingest_end: catalog.replay)
            recorded = "SELECT COUNT(*) FROM ledger WHERE json_extract(entry, '$.type') = 'ingest'"
            assert catalog_rows(a.root, recorded)[0][0] == len(FILES)
        assert list((arch / "tmp").iterdir()) == []  # what a crash left in tmp/ is cleaned by the re-run
        assert_whole_rows(arch)
        shutil.rmtree(arch)


# ---------------------------------------------------------------- retention purge


def archive_with_people(root: Path) -> tuple[Path, dict[str, int]]:
    """A template archive with the policy's people, holding the volume; segment ids by file name."""
    arch = root / "template"
    assert cli("init", arch).returncode == 0
    assert set_policy(arch, policy_text(arch) + PEOPLE).returncode == 0
    assert ingest(make_volume(root), arch).returncode == 1
    with open_archive(arch) as a:
        return arch, dict(catalog_rows(a.root, "SELECT original_name, id FROM segments"))


@pytest.fixture(scope="module")
def purge_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, int]]:
    """An archive holding the volume, with an approved purge request for the two recordings that are due;
    the request id; and the storage operations of a clean purge."""
    root = tmp_path_factory.mktemp("purge")
    arch, ids = archive_with_people(root)
    out = cli(
        "access",
        "request",
        arch,
        "--segment",
        ids[DUE[0]],
        "--segment",
        ids[DUE[1]],
        "--reason",
        "retention ended",
        "--purpose",
        "purge",
        "--json",
        user="alice",
    )
    assert out.returncode == 0, out.stderr
    rid = json.loads(out.stdout)["id"]
    assert cli("access", "approve", arch, rid, user="bob").returncode == 0
    clean = root / "clean"
    copy_archive(arch, clean)
    out = cli("retention", "purge", clean, "--request", rid, user="alice", log=root / "ops")
    assert out.returncode == 0, out.stderr
    counts = count_ops(root / "ops")
    # three checkpoints (the logged grant, the tombstones, the removals) of 4 writes and 4 fsyncs each; per object
    # an unlink and its fsync
    assert counts == {"write": 14, "read": 0, "fsync": 14}
    return arch, rid, counts


@pytest.mark.parametrize("op", ["write", "fsync"])
def test_purge_through_every_fault(tmp_path: Path, purge_template: tuple[Path, int, dict[str, int]], op: str) -> None:
    template, rid, counts = purge_template
    due = {SHA[r] for r in DUE}
    for n in range(1, counts[op] + 2):
        fault = plan(op, n)
        arch = tmp_path / f"archive-{n}"
        copy_archive(template, arch)
        log = tmp_path / f"ops-{n}"
        out = cli("retention", "purge", arch, "--request", rid, user="alice", fault=fault, log=log)
        no_traceback(out)
        hit = [path for o, _, path, fired in logged(log) if fired]
        if n > counts[op]:
            assert hit == [] and out.returncode == 0, (fault, out.stderr)
        else:
            assert len(hit) == 1, (fault, hit)
            if fault.endswith("crash"):
                assert out.returncode == -9, (fault, out.stderr)
            else:
                one_line_storage_error(out, hit[0])
            # A tombstone may be in the ledger with its object still present (the unlink failed): verify calls it
            # purge_incomplete, and the checkpoint the purge could not sign; the re-run finishes. Entries the failed
            # checkpoint left unsigned are signed by a person first: no command acts beside them (since 2026-12-01:
            # they could as well have been written into catalog.sqlite by hand), the purge's re-run neither.
            assert_whole_rows(arch)
            assert verify_kinds(arch) <= {"purge_incomplete", "checkpoint_mismatch"}, fault
            if unsigned_entries(arch):
                refused = cli("retention", "purge", arch, "--request", rid, user="alice")
                one_line_error(refused, r"entries no checkpoint covers .*\(purge[_a-z]*\).*: nothing was recorded")
                assert cli("ledger", "checkpoint", arch, user="alice").returncode == 0
            rerun = cli("retention", "purge", arch, "--request", rid, user="alice")
            no_traceback(rerun)
            assert rerun.returncode == 0, (fault, rerun.stderr)
        with open_archive(arch) as a:
            v = verify(a)
            assert v.findings == [] and v.checked == len(FILES) - len(DUE), (fault, v.to_json())
            assert {sha for (sha,) in catalog_rows(a.root, "SELECT sha256 FROM tombstones")} == due
            assert (
                catalog_rows(a.root, "SELECT COUNT(*) FROM ledger WHERE json_extract(entry, '$.type') = 'purge'")[0][0]
                == 2
            )
        assert store_files(arch) == set(SHA.values()) - due  # purged objects gone, the rest untouched
        assert_whole_rows(arch)
        shutil.rmtree(arch)


# ---------------------------------------------------------------- export


@pytest.fixture(scope="module")
def export_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, int]]:
    """An archive holding the volume, its two recordings linked to case C-9 and an approved export request;
    the request id; and the storage operations of a clean export."""
    root = tmp_path_factory.mktemp("export")
    arch, ids = archive_with_people(root)
    segs = [x for r in DUE for x in ("--segment", ids[r])]
    assert cli("retention", "case", arch, "--case", "C-9", *segs, user="alice").returncode == 0
    # root (an auditor) asks, bob approves, through the service; then root exports embedded, as the archive's
    # owner again: the faults and crash points are those of the export itself.
    out = cli("access", "request", arch, *segs, "--reason", "court order 9", "--purpose", "export", "--json")
    assert out.returncode == 0, out.stderr
    rid = json.loads(out.stdout)["id"]
    assert cli("access", "approve", arch, rid, user="bob").returncode == 0
    hand_back(arch)
    clean = root / "clean"
    copy_archive(arch, clean)
    out = cli("export", clean, "--case", "C-9", "--request", rid, "--to", root / "bag", log=root / "ops")
    assert out.returncode == 0, out.stderr
    assert bagit.Bag(str(root / "bag")).is_valid()
    counts = count_ops(root / "ops")
    # two checkpoints (the logged grant, the export entry): 8 writes, 8 fsyncs; 2 payload copies, 8 tag files
    # and the rename into place; every file (10) and folder (5) of the bag fsynced, then --to's parent;
    # per recording its object read and its copy read back.
    assert counts == {"write": 19, "read": 4, "fsync": 24}
    return arch, rid, counts


@pytest.mark.parametrize("op", list(FAULTS))
def test_export_through_every_fault(tmp_path: Path, export_template: tuple[Path, int, dict[str, int]], op: str) -> None:
    template, rid, counts = export_template
    for n in range(1, counts[op] + 2):
        fault = plan(op, n)
        arch = tmp_path / f"archive-{n}"
        copy_archive(template, arch)
        out_dir = tmp_path / f"out-{n}"
        out_dir.mkdir()
        bag = out_dir / "bag-C-9"
        log = tmp_path / f"ops-{n}"
        out = cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag, fault=fault, log=log)
        no_traceback(out)
        hit = [path for o, _, path, fired in logged(log) if fired]
        if n > counts[op]:
            assert hit == [] and out.returncode == 0, (fault, out.stderr)
        else:
            assert len(hit) == 1, (fault, hit)
            if fault.endswith("crash"):
                assert out.returncode == -9, (fault, out.stderr)
            else:
                one_line_storage_error(out, hit[0])
                assert list(out_dir.iterdir()) == []  # no half bag, no staging folder
            assert not bag.exists() or (bag.is_dir() and not any(bag.iterdir())), fault  # never a half bag at --to
            assert verify_kinds(arch) <= {"checkpoint_mismatch"}, fault
            rerun = cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag)
            no_traceback(rerun)
            assert rerun.returncode == 0, (fault, rerun.stderr)
        assert [p.name for p in out_dir.iterdir()] == ["bag-C-9"]  # a staging folder a crash left is cleaned
        assert bagit.Bag(str(bag)).is_valid(), fault
        assert sorted(p.name for p in (bag / "data").rglob("*") if p.is_file()) == sorted(Path(r).name for r in DUE)
        with open_archive(arch) as a:
            v = verify(a)
            assert v.findings == [] and v.checked == len(FILES), (fault, v.to_json())
        assert_whole_rows(arch)
        shutil.rmtree(arch)
        shutil.rmtree(out_dir)


def test_an_export_whose_copy_reads_back_changed_is_refused(
    tmp_path: Path, export_template: tuple[Path, int, dict[str, int]]
) -> None:
    # A copy of the same size whose bytes changed on the way to the disk (a bad controller, bit rot): the digest
    # of what was written, not only its size, decides (a mutmut survivor: a size check alone passed).
    template, rid, _ = export_template
    arch = tmp_path / "archive"
    copy_archive(template, arch)
    clean, log = tmp_path / "clean", tmp_path / "ops"
    copy_archive(template, clean)
    assert cli("export", clean, "--case", "C-9", "--request", rid, "--to", tmp_path / "b0", log=log).returncode == 0
    n = next(n for o, n, path, _ in logged(log) if o == "read" and ".partial-" in path)  # the staged copy
    bag = tmp_path / "bag"
    out = cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag, fault=f"read:{n}:corrupt")
    no_traceback(out)
    assert out.returncode == 2 and "differs from the archive's object" in out.stderr.decode(), out.stderr
    assert not bag.exists()
    entries = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]
    assert [e["type"] for e in entries if e["type"].startswith("export")] == ["export_failed"]
    assert cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag).returncode == 0  # the re-run


@pytest.fixture
def mount_point(tmp_path: Path):
    """An empty tmpfs mounted for the test: an export to the root of a disc or USB stick."""
    with small_tmpfs(tmp_path / "stick", "16m") as disk:
        yield disk


def test_export_to_a_mount_point_through_faults(
    tmp_path: Path, mount_point: Path, export_template: tuple[Path, int, dict[str, int]]
) -> None:
    """A mount point cannot be replaced by a rename: the bag is staged inside it and its entries moved up.
    A fault while staging, while moving, or at the last fsync leaves the mount point empty; a crash leaves
    only a hidden staging folder; either way the re-run writes the whole bag there."""
    template, rid, _ = export_template
    arch = tmp_path / "archive"
    copy_archive(template, arch)
    log = tmp_path / "clean-ops"
    assert cli("export", arch, "--case", "C-9", "--request", rid, "--to", mount_point, log=log).returncode == 0
    assert bagit.Bag(str(mount_point)).is_valid()
    ops = logged(log)
    staged = [(o, n) for o, n, p, _ in ops if ".custodes-partial-" in p]
    plans = [
        next(f"write:{n}:ENOSPC" for o, n, p, _ in ops if o == "write" and p.endswith("/bag-info.txt")),
        next(f"write:{n}:EIO" for o, n, p, _ in ops if o == "write" and Path(p).parent == mount_point),  # first move up
        f"fsync:{max(n for o, n, p, _ in ops if o == 'fsync' and Path(p) == mount_point)}:EIO",  # after the moves
        next(f"fsync:{n}:crash" for o, n in staged if o == "fsync"),
    ]
    assert len(set(plans)) == 4
    for fault in plans:
        for entry in mount_point.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        out = cli("export", arch, "--case", "C-9", "--request", rid, "--to", mount_point, fault=fault)
        no_traceback(out)
        left = sorted(p.name for p in mount_point.iterdir())
        if fault.endswith("crash"):
            assert out.returncode == -9 and len(left) == 1 and left[0].startswith(".custodes-partial-"), (fault, left)
        else:
            op, n, _ = fault.split(":")
            one_line_storage_error(out, next(p for o, m, p, _ in ops if (o, m) == (op, int(n))))
            assert left == [], (fault, left)
        rerun = cli("export", arch, "--case", "C-9", "--request", rid, "--to", mount_point)
        no_traceback(rerun)
        assert rerun.returncode == 0, (fault, rerun.stderr)
        assert not any(p.name.startswith(".custodes-partial-") for p in mount_point.iterdir()), fault
        assert bagit.Bag(str(mount_point)).is_valid(), fault
    with open_archive(arch) as a:
        assert verify(a).findings == []


def test_a_refused_export_leaves_what_a_crashed_one_left(
    tmp_path: Path, export_template: tuple[Path, int, dict[str, int]]
) -> None:
    """An export crashed after its entry leaves its staging folder beside --to. The next export there ledgers it
    failed and removes the folder, but only once it is granted (a hostile review: a refused export, by anyone,
    removed the folder and appended export_failed before its request was looked at)."""
    template, rid, _ = export_template
    arch = tmp_path / "archive"
    copy_archive(template, arch)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bag = out_dir / "bag-C-9"
    log = tmp_path / "ops"
    assert cli("export", copy_archive(template, tmp_path / "clean"), "--case", "C-9", "--request", rid,
               "--to", bag, log=log).returncode == 0  # fmt: skip
    shutil.rmtree(bag)
    custody = next(n for o, n, p, _ in logged(log) if o == "fsync" and "/custody/" in p)  # after the export entry
    out = cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag, fault=f"fsync:{custody}:crash")
    assert out.returncode == -9, out.stderr
    (staging,) = out_dir.iterdir()
    assert ".partial-" in staging.name

    def types() -> list[str]:
        return [json.loads(e)["type"] for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]

    before = types()
    assert before[-1] == "export"
    refused = cli("export", arch, "--case", "C-9", "--request", rid + 1000, "--to", bag)
    no_traceback(refused)
    assert refused.returncode == 1 and b"refused: no access request" in refused.stderr, refused.stderr
    assert list(out_dir.iterdir()) == [staging]  # still there, untouched
    assert "export_failed" not in types()[len(before) :]
    rerun = cli("export", arch, "--case", "C-9", "--request", rid, "--to", bag)
    assert rerun.returncode == 0, rerun.stderr
    assert [p.name for p in out_dir.iterdir()] == ["bag-C-9"]
    assert types()[len(before) :].count("export_failed") == 1
    assert bagit.Bag(str(bag)).is_valid()


def test_only_a_staging_folder_an_export_made_is_taken_for_one(
    tmp_path: Path, export_template: tuple[Path, int, dict[str, int]]
) -> None:
    """Named like a crashed export's staging folder but not one (a hostile review): a folder holding other files
    was removed with them, and a link or an empty folder named after a delivered export's time had that export
    ledgered as failed. Now only a folder of the exporter's account holding nothing but what an export stages is
    removed, and only one holding a staged bag stands for an export entry."""
    template, rid, _ = export_template
    arch = tmp_path / "archive"
    copy_archive(template, arch)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert cli("export", arch, "--case", "C-9", "--request", rid, "--to", out_dir / "bag1").returncode == 0
    (delivered,) = [
        e["time"] for (e,) in ((json.loads(r),) for (r,) in catalog_rows(arch, "SELECT entry FROM ledger"))
        if e["type"] == "export"
    ]  # fmt: skip
    dead = 2**22 + 7  # past the kernel's largest pid: no such process
    notes = out_dir / f".bag2.partial-{dead}-1"
    notes.mkdir()
    (notes / "notes.txt").write_text("precious")
    (out_dir / f".bag2.partial-{dead}-{delivered}").symlink_to(tmp_path)
    (out_dir / f".bag2.partial-{dead + 1}-{delivered}").mkdir()
    assert cli("export", arch, "--case", "C-9", "--request", rid, "--to", out_dir / "bag2").returncode == 0
    types = [json.loads(e)["type"] for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]
    assert "export_failed" not in types  # the delivered export stays delivered
    assert (notes / "notes.txt").read_text() == "precious"  # not the export's: left as it is
    assert (out_dir / f".bag2.partial-{dead}-{delivered}").is_symlink()
    assert not (out_dir / f".bag2.partial-{dead + 1}-{delivered}").exists()  # an empty one: removed, nothing said


def test_an_act_whose_checkpoint_file_cannot_be_written_says_it_is_done(cli_archive: Path, tmp_path: Path) -> None:
    """A hold recorded, then its checkpoint's file refused by a full disk: the disk's message said "run the command
    again (what was not finished was not recorded)", and run again it placed a second hold (a hostile review).
    It says the act is done, not to run it again, and how the file is written once the disk has room."""
    from helpers import run_cli

    log = tmp_path / "ops"
    hold = ["retention", "hold", cli_archive, "--segment", "1", "--reason", "court order 12"]
    assert run_cli_with_faults(*hold, user="alice", log=log).returncode == 0
    (n,) = [n for op, n, path, _ in logged(log) if op == "write" and "/ledger/checkpoints/" in path]
    out = run_cli_with_faults(*hold, user="alice", fault=f"write:{n}:ENOSPC")
    no_traceback(out)
    text = out.stderr.decode()
    assert out.returncode == 2 and text.count("\n") == 1 and text.startswith("custodes: No space left on device"), text
    assert "what this command recorded stands, so do not repeat an act; free space on the disk, then" in text, text
    assert f"`custodes ledger checkpoint {cli_archive}` to write them" in text, text  # a word a shell reads back
    assert len(catalog_rows(cli_archive, "SELECT id FROM holds WHERE segment_id = 1")) == 2  # the two asked for
    out = run_cli("ledger", "checkpoint", cli_archive, user="alice")
    assert out.returncode == 0 and b"wrote back lost checkpoint files from their signed notes: " in out.stderr
    assert run_cli("verify", cli_archive).returncode == 0
    # The same when what fails is writing back a lost older file, first thing at the checkpoint (a third review:
    # that one still said "what was not finished was not recorded", and the hold was recorded).
    folder = cli_archive / "ledger" / "checkpoints"
    (folder / str(min(int(p.name) for p in folder.iterdir()))).unlink()
    log = tmp_path / "ops-again"
    out = run_cli_with_faults(*hold, user="alice", fault="write:2:ENOSPC", log=log)
    (hit,) = [path for op, _, path, fired in logged(log) if fired]
    text = out.stderr.decode()
    assert "/ledger/checkpoints/" in hit and out.returncode == 2 and text.count("\n") == 1, (hit, text)
    assert "what this command recorded stands, so do not repeat an act" in text, text
    assert len(catalog_rows(cli_archive, "SELECT id FROM holds WHERE segment_id = 1")) == 3
    assert run_cli("ledger", "checkpoint", cli_archive, user="alice").returncode == 0
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_copy_whose_grant_s_checkpoint_file_cannot_be_written_is_made_and_said(
    cli_archive: Path, tmp_path: Path
) -> None:
    """`access open` whose grant was recorded and whose checkpoint file a full disk refused: the access log said
    carol opened it, and she got nothing (a hostile review); then, handed over, it was silent, and verify later
    called the missing file a rollback (a second). The copy is made, and a note says what to run."""
    from helpers import as_, request

    rid = request(cli_archive, "carol", 1)
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    log = tmp_path / "ops"
    opened = ["access", "open", cli_archive, rid, "--segment", "1", "--to"]
    assert run_cli_with_faults(*opened, tmp_path / "first", user="carol", log=log).returncode == 0
    (n, *_) = [n for op, n, path, _ in logged(log) if op == "write" and "/ledger/checkpoints/" in path]
    out = run_cli_with_faults(*opened, tmp_path / "second", "--json", user="carol", fault=f"write:{n}:ENOSPC")
    no_traceback(out)
    assert out.returncode == 0 and [p.name for p in (tmp_path / "second").iterdir()] == ["androidx-sample.mp4"]
    assert "custodes ledger checkpoint" in json.loads(out.stdout)["recorded_unsigned"], out.stdout  # (a tool's too)
    text = out.stderr.decode()
    assert text.startswith("custodes: note: the access is recorded, its checkpoint is not: No space left") and (
        "custodes ledger checkpoint" in text
    ), text
    opens = catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log WHERE action = 'open' AND ok = 1")
    assert opens == [(2,)]  # one a try, each handed over
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0
    assert as_("alice", "verify", cli_archive).returncode == 0


def test_housekeeping_before_an_act_whose_checkpoint_file_cannot_be_written_does_not_speak_for_it(
    tmp_path: Path,
) -> None:
    """Before a served command acts, the service ledgers the count of refusals of every closed window and signs
    it. That checkpoint's file refused by a full disk said "what this command recorded stands, so do not repeat an
    act" of a hold that was never placed (a hostile review). The command goes on; its own checkpoint writes the
    file back."""
    from helpers import THREE_RECORDINGS, as_, build_cli_archive

    few = PEOPLE.replace(
        "window_hours = 72\n", "window_hours = 72\nrefusals_per_window = 1\nrefusal_window_seconds = 2\n"
    )
    arch = build_cli_archive(tmp_path / "archive", people=few, recordings=THREE_RECORDINGS[:1])
    for _ in range(3):
        assert as_("mallory", "ledger", "verify", arch).returncode != 0  # refused: no role; counted past one
    time.sleep(3)  # the window closed: its count is ledgered before the next served command acts
    hold = ["retention", "hold", arch, "--segment", "1", "--reason", "court order 12"]
    out = run_cli_with_faults(*hold, user="alice", fault="write:1:ENOSPC", log=tmp_path / "ops")
    (hit,) = [path for _op, _n, path, fired in logged(tmp_path / "ops") if fired]
    assert "/archive/tmp/" in hit, hit  # (the housekeeping's checkpoint file, written first as a temp)
    assert out.returncode == 0, out.stderr
    assert catalog_rows(arch, "SELECT COUNT(*) FROM holds") == [(1,)]
    assert as_("alice", "verify", arch).returncode == 0


def test_an_ingest_whose_closing_checkpoint_file_cannot_be_written_says_what_it_stored(tmp_path: Path) -> None:
    """`ingest --json` whose closing checkpoint's file a full disk refused: the result, not ok, with an error of a
    kind of its own (it was "error", as any other: a tool could not tell "write the files" from the rest)."""
    arch = new_archive(tmp_path / "archive")
    vol = make_volume(tmp_path)
    log = tmp_path / "ops"
    assert ingest(vol, copy_archive(arch, tmp_path / "clean"), log=log).returncode in (0, 1)
    writes = [n for op, n, path, _ in logged(log) if op == "write" and path.endswith("/ledger/checkpoint")]
    out = ingest(vol, arch, fault=f"write:{writes[-1]}:ENOSPC")
    assert out.returncode == 2 and out.stderr.decode().count("\n") == 1, out.stderr.decode()
    result = json.loads(out.stdout)
    assert (result["ok"], result["checkpoint"], result["error"]["kind"]) == (False, None, "checkpoint_file"), result
    assert sorted(result["stored"]) == sorted(FILES)
    assert "what this command recorded stands" in result["error"]["message"], result


def test_a_checkpoint_the_catalog_refuses_to_sign_says_the_act_stands(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's own transaction refused by SQLite after the act was recorded (a full disk: a hostile
    review's hold on a nearly full tmpfs): the disk's "run the command again (what was not finished was not
    recorded)" made a second hold. It says the act stands, and how it is signed once the disk has room."""
    from custodes.archive import CheckpointFileError
    from custodes.catalog.ledger import Checkpoints

    def full(*_: object) -> str:
        refused = sqlite3.OperationalError("database or disk is full")
        refused.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it  # type: ignore[attr-defined]
        raise refused

    monkeypatch.setattr(Checkpoints, "add", full)
    with pytest.raises(CheckpointFileError) as refused:
        archive.checkpoint()
    said = str(refused.value)
    assert said.startswith(f"database or disk is full ({archive.root / 'catalog.sqlite'}) signing the ledger's"), said
    assert "what this command recorded stands, so do not repeat an act; free space on the disk, then run" in said
    assert f"`custodes ledger checkpoint {archive.root}` to sign and write them" in said, said
    monkeypatch.undo()
    assert archive.checkpoint().size == archive.catalog.ledger.size()


def test_a_refusal_whose_checkpoint_file_cannot_be_written_is_said_as_a_refusal_first(
    cli_archive: Path, tmp_path: Path
) -> None:
    """A refused act is recorded (a ledger entry) and checkpointed like any other. When that checkpoint's file
    could not be written, the command said only "what this command recorded stands, so do not repeat an act",
    exit 2 (a second hostile review): the operator took the refused hold for placed. The refusal comes first,
    exit 1, and then that its record is not signed yet and how to sign it."""
    hold = ["retention", "hold", cli_archive, "--segment", "1", "--reason", "court order 12"]
    log = tmp_path / "ops"
    refused = run_cli_with_faults(*hold, log=log)  # root: no role in this archive's policy
    no_traceback(refused)
    assert refused.returncode == 1, refused.stderr
    said = refused.stderr.decode().strip()
    (n,) = [n for op, n, path, _ in logged(log) if op == "write" and "/ledger/checkpoints/" in path]
    out = run_cli_with_faults(*hold, fault=f"write:{n}:ENOSPC")
    no_traceback(out)
    text = out.stderr.decode()
    assert out.returncode == 1 and text.count("\n") == 1, text
    assert text.startswith(said + " (this refusal is recorded; its checkpoint is not: No space left on device"), text
    assert "what this command recorded stands, so do not repeat an act" in text, text
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM holds") == [(0,)]
    # ledger verify's finding names the same way out (it said only "else restore catalog.sqlite from a backup").
    found = json.loads(run_cli_with_faults("ledger", "verify", cli_archive, "--json").stdout)["findings"]
    (mismatch,) = [f for f in found if f["kind"] == "checkpoint_mismatch"]
    assert f"`custodes ledger checkpoint {cli_archive}` writes its file out" in mismatch["message"], mismatch
    assert run_cli_with_faults("ledger", "checkpoint", cli_archive).returncode == 0
    assert run_cli_with_faults("verify", cli_archive).returncode == 0


def test_a_checkpoint_file_whose_rename_is_refused_names_the_file_it_replaces(tmp_path: Path) -> None:
    """A rename names the temp first and the name it replaces second: the message named tmp/NNNN-checkpoint,
    sending the operator to tmp/, when ledger/checkpoint was the one refusing (a second hostile review)."""
    from custodes.archive import CheckpointFileError

    refused = OSError(
        errno.EPERM,
        "Operation not permitted",
        str(tmp_path / "tmp" / "1-ab-checkpoint"),
        None,
        str(tmp_path / "ledger" / "checkpoint"),
    )
    said = str(CheckpointFileError(tmp_path, refused))
    assert said.startswith(f"Operation not permitted ({tmp_path / 'ledger' / 'checkpoint'}) writing"), said
