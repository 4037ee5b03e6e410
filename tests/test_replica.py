"""A second copy of every object ([replica] in the policy): ingest stores both before it records a file, verify
checks both and names the bad copy, `custodes storage repair` restores it from the good one (a ledger entry)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import (
    PEOPLE,
    SERVICE_ACCOUNT,
    THREE_RECORDINGS,
    appended_by_hand,
    as_,
    catalog_rows,
    ensure_accounts,
    one_line_error,
    policy_text,
    request,
    run_cli,
    set_policy,
)

CUSTODIAN_ROOT = PEOPLE.replace('root = "auditor"', 'root = "custodian"')


def _objects(root: Path) -> dict[str, Path]:
    return {p.name: p for p in (root / "objects" / "sha256").rglob("*") if p.is_file()}


def _verify(arch: Path) -> tuple[int, list[dict[str, object]]]:
    r = run_cli("verify", arch, "--json")
    return r.returncode, json.loads(r.stdout)["findings"]


def _report_integrity(arch: Path, out: Path) -> set[tuple[str, str | None, str | None]]:
    """(kind, copy, object) of the integrity findings of a report made without re-hashing (exit 1 when any)."""
    r = run_cli("report", arch, "--format", "json", "--out", out)
    found = {(f["kind"], f["copy"], f["object"]) for f in json.loads(out.read_text())["findings"] if f["article"] == 23}
    assert r.returncode == (1 if found else 0), r.stderr
    return found


def _flip_a_byte(path: Path) -> None:
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o400)


def _archive_with_replica(make_cli_archive: Callable[..., Path], second: Path) -> Path:
    return make_cli_archive(
        recordings=THREE_RECORDINGS,
        ingest_exit=(1,),  # the 2016 footage is a late ingest, and go-mp4-sample has no clock
        people=CUSTODIAN_ROOT,
        init_args=("--replica", "local", "--replica-option", f"location={second}"),
    )


def test_ingest_stores_both_copies_byte_for_byte(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    first, copies = _objects(arch), _objects(second)
    assert len(first) == 3 and first.keys() == copies.keys()
    for name, path in copies.items():
        # By an independent tool: each copy's bytes are the object its name says.
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
        assert out == name == hashlib.sha256(first[name].read_bytes()).hexdigest()
        assert path.stat().st_mode & 0o222 == 0  # read-only there too
    assert _verify(arch) == (0, [])
    assert list((second / "tmp").iterdir()) == []  # no copy left in the second store's spool


def test_a_bad_copy_is_named_and_repaired_from_the_other(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    _flip_a_byte(_objects(second)[names[0]])  # the second copy of one object damaged
    lost = _objects(arch)[names[1]]  # the first copy of another lost
    lost.chmod(0o600)
    lost.unlink()
    rc, findings = _verify(arch)
    assert rc == 1
    assert {(f["kind"], f["copy"], f["object"]) for f in findings} == {
        ("modified", "replica", names[0]),
        ("missing", None, names[1]),
    }
    replica_finding = next(f for f in findings if f["copy"] == "replica")
    assert str(second) in str(replica_finding["message"])  # the message says where the bad copy is
    # A report made without re-hashing says what verify found of each copy, until it is mended; a catalog rebuilt
    # from the ledger keeps it (a hostile review: the rebuild dropped it, and the report said all was well).
    assert _report_integrity(arch, tmp_path / "before.json") == {
        ("modified", "replica", names[0]),
        ("missing", None, names[1]),
    }
    assert run_cli("ledger", "rebuild-catalog", arch, "--replace").returncode == 0
    assert _report_integrity(arch, tmp_path / "rebuilt.json") == {
        ("modified", "replica", names[0]),
        ("missing", None, names[1]),
    }

    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stderr
    assert _report_integrity(arch, tmp_path / "after.json") == set()
    repaired = json.loads(r.stdout)["repaired"]
    assert {(x["object"], x["copy"], x["was"], x["done"][0].split(" of ")[0]) for x in repaired} == {
        (names[0], "replica", "modified", "removed a damaged file"),
        (names[1], "first", "missing", "the object was missing"),
    }
    assert _verify(arch) == (0, [])  # the ledger (with the repairs) and both copies check out
    for name in names:
        assert hashlib.sha256(_objects(second)[name].read_bytes()).hexdigest() == name
        assert hashlib.sha256(_objects(arch)[name].read_bytes()).hexdigest() == name
    with sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        entries = [json.loads(e) for (e,) in db.execute("SELECT entry FROM ledger ORDER BY seq")]
    repairs = [e for e in entries if e["type"] == "storage_repair"]
    assert sorted(e["sha256"] for e in repairs) == sorted(names[:2]) and {e["by"] for e in repairs} == {"root"}
    assert all(e["done"] for e in repairs)  # what each repair removed is in the ledger
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 0 and b"nothing to repair" in r.stdout


def test_entries_no_checkpoint_covers_are_never_signed_by_a_repair(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """A repair killed after its ledger entry, before its checkpoint, leaves that entry unsigned (verify's
    checkpoint_mismatch). A later repair signed such entries, forgeries too (two hostile reviews: an approval, a
    repair and a policy filed as a repair, each appended by hand with its right leaf hash, signed with exit 0);
    then one signed nothing and repaired all the same (session 15). Now it refuses before it begins, as every
    command does while they are there (Archive.ready_to_record), naming them; a person signs them, once known to
    be custodes' own, and the repair then runs."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    _flip_a_byte(_objects(second)[names[0]])
    killed = run_cli("storage", "repair", arch, env={"CUSTODES_CRASHPOINT": "before_checkpoint:1"})
    assert killed.returncode == -9, killed.stderr
    rc, findings = _verify(arch)
    assert rc == 1 and [f["kind"] for f in findings] == ["checkpoint_mismatch"], findings
    (first, _), signed = findings[0]["row"], catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0]
    # One appended by hand, as a repair of an object nobody touched, with its right leaf hash.
    forged = {"type": "storage_repair", "sha256": names[2], "copy": "replica", "was": "modified", "by": "alice"}
    seq = appended_by_hand(arch, json.dumps(forged, sort_keys=True, separators=(",", ":")).encode(), "storage_repair")
    _flip_a_byte(_objects(second)[names[1]])
    refused = run_cli("storage", "repair", arch, "--json")
    one_line_error(refused, rf"\({first} \(storage_repair\), {seq} \(storage_repair\)\): nothing was recorded")
    assert catalog_rows(arch, "SELECT MAX(size) FROM checkpoints")[0][0] == signed  # nothing signed since the kill
    rc, findings = _verify(arch)
    assert rc == 1 and [f["row"] for f in findings if f["kind"] == "checkpoint_mismatch"] == [[first, seq + 1]]
    assert [f["object"] for f in findings if f["kind"] == "modified"] == [names[1]], findings  # not repaired
    assert run_cli("ledger", "checkpoint", arch).returncode == 0  # a person's word: known to be custodes' own
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0 and [x["object"] for x in json.loads(r.stdout)["repaired"]] == [names[1]], r.stdout
    assert _verify(arch) == (0, [])


def test_a_repair_signs_each_object_s_entry_as_it_records_it(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """Another command waits only seconds for entries no checkpoint covers before it takes them for another hand's
    and refuses: a repair of large objects, signing once at its end, stopped every other command (a hostile
    review). Each object's entry is signed as it is recorded."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    for name in names[:2]:
        _flip_a_byte(_objects(second)[name])
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["repaired"]) == 2, r.stdout
    repairs = [seq for (seq,) in catalog_rows(arch, "SELECT seq FROM ledger WHERE type = 'storage_repair'")]
    sizes = {size for (size,) in catalog_rows(arch, "SELECT size FROM checkpoints")}
    assert len(repairs) == 2 and all(seq + 1 in sizes for seq in repairs), (repairs, sizes)


def test_an_object_bad_in_both_copies_is_reported_not_guessed(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    name = sorted(_objects(arch))[2]
    _flip_a_byte(_objects(arch)[name])
    _flip_a_byte(_objects(second)[name])
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["repaired"] == [] and [u["object"] for u in out["unrepairable"]] == [name]
    rc, findings = _verify(arch)
    assert rc == 1 and {f["copy"] for f in findings} == {None, "replica"}  # nothing was changed


def test_with_one_copy_repair_protects_in_place_and_reports_bad_bytes(make_cli_archive: Callable[..., Path]) -> None:
    """An archive of one copy was refused whole ("nothing to repair from"), so an object whose mode was widened
    had to be chmod-ed by hand, outside the ledger. Its bytes are sound: repair makes it read-only again in
    place, ledgered; bytes that are bad have no other copy to come from and are reported, never guessed at."""
    arch = make_cli_archive(recordings=THREE_RECORDINGS, ingest_exit=(1,), people=CUSTODIAN_ROOT)
    names = sorted(_objects(arch))
    _objects(arch)[names[0]].chmod(0o644)
    refused = as_("carol", "storage", "repair", arch)  # carol is no custodian
    assert refused.returncode == 1 and b"custodian" in refused.stderr
    assert _objects(arch)[names[0]].stat().st_mode & 0o777 == 0o644  # refused: nothing was done
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 0, r.stderr
    assert f"repaired {names[0]}: its first copy was unprotected".encode() in r.stdout
    assert b"made read-only again in place" in r.stdout and b"restored" not in r.stdout
    assert _objects(arch)[names[0]].stat().st_mode & 0o7777 == 0o400
    assert _verify(arch) == (0, [])
    entries = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger")]
    entries = [e for e in entries if e["type"] == "storage_repair"]
    assert [(e["sha256"], e["copy"], e["was"], e["done"]) for e in entries] == [
        (names[0], "first", "unprotected", ["set mode 0644 back to 0400"])
    ]
    _flip_a_byte(_objects(arch)[names[1]])
    _objects(arch)[names[1]].chmod(0o644)  # changed, and left writable (a hostile review: it stayed so)
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert [(x["object"], x["was"]) for x in out["repaired"]] == [(names[1], "unprotected")]  # made read-only
    assert [u["object"] for u in out["unrepairable"]] == [names[1]]
    assert "is modified and the archive keeps one copy" in out["unrepairable"][0]["why"]
    assert _objects(arch)[names[1]].stat().st_mode & 0o777 == 0o400
    rc, findings = _verify(arch)
    assert rc == 1 and [f["kind"] for f in findings] == ["modified"]  # its bytes as they were: not guessed at


def test_a_replica_inside_the_archive_is_refused(tmp_path: Path) -> None:
    arch = tmp_path / "arch"
    r = run_cli("init", arch, "--replica", "local", "--replica-option", f"location={arch / 'copy'}")
    assert r.returncode == 2 and b"outside the archive" in r.stderr and not arch.exists()
    r = run_cli("init", tmp_path / "b", "--replica", "local")
    assert r.returncode == 2 and b"location" in r.stderr


def test_storage_check_probes_both_copies(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    r = run_cli("storage", "check", arch, "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["replica"]["storage"] == str(second)
    assert "retention enforced by the storage" in report["replica"]["missing"]  # a disk, honestly named
    # Both copies on one file system (the tests' own): one disk's failure loses both (a hostile review: a second
    # copy on the first's disk, even made of hard links to its files, passed every check).
    apart = {g["name"]: g for g in report["replica"]["guarantees"]}["second copy kept apart"]
    assert not apart["held"] and "on the first copy's file system" in apart["detail"]
    assert "hard links" not in apart["detail"]
    for name, path in _objects(arch).items():  # the second copy made of the first's own files
        copy = _objects(second)[name]
        copy.unlink()
        os.link(path, copy)
    # Byte for byte the same; verify names each copy's file as one with a second name (since 2026-12-01: it said
    # nothing, and a change through either name changed both copies), and the storage check says why.
    rc, found = _verify(arch)
    assert rc == 1 and sorted((f["kind"], f["copy"] or "first") for f in found) == sorted(
        [("unprotected", "first")] * 3 + [("unprotected", "replica")] * 3
    ), found
    assert all("2 names" in f["message"] for f in found), found
    report = json.loads(run_cli("storage", "check", arch, "--json").stdout)
    apart = {g["name"]: g for g in report["replica"]["guarantees"]}["second copy kept apart"]
    assert "and 3 of its objects are the first copy's own files (hard links" in apart["detail"], apart
    r = run_cli("storage", "repair", arch, "--json")  # each copy given a file of its own
    assert r.returncode == 0, r.stderr
    # Once the first copy's file is its own, the second's is too: no entry that did nothing (a hostile review).
    assert all(x["done"] for x in json.loads(r.stdout)["repaired"]), r.stdout
    assert _verify(arch) == (0, [])
    assert all(p.stat().st_nlink == 1 for p in [*_objects(arch).values(), *_objects(second).values()])


def test_a_second_copy_never_shares_a_place(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    # Found by a hostile user: a relative location was taken from wherever a command ran, a policy set could put
    # the copy inside the archive (and no command could open it again), an unmounted disk was made anew, and
    # two archives could keep their copies in one folder (a purge of one deleting the other's).
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    r = run_cli("init", tmp_path / "b", "--replica", "local", "--replica-option", "location=relative/copy")
    assert r.returncode == 2 and b"absolute path" in r.stderr and not (tmp_path / "b").exists()
    r = run_cli("init", tmp_path / "c", "--replica", "local", "--replica-option", f"location={second}")
    assert r.returncode == 2 and b"belongs to archive" in r.stderr and not (tmp_path / "c").exists()
    inside = policy_text(arch).replace(str(second), str(arch / "copy"))
    r = set_policy(arch, inside)
    assert r.returncode != 0 and b"outside the archive" in r.stderr
    assert _verify(arch) == (0, [])  # and the archive still opens
    moved = tmp_path / "disk2-unmounted"
    (tmp_path / "disk2").rename(moved)
    r = run_cli("verify", arch)
    assert r.returncode == 2 and b"not there (an unmounted disk?)" in r.stderr and not second.exists()
    moved.rename(tmp_path / "disk2")
    assert _verify(arch) == (0, [])


def test_copies_a_dead_process_left_in_the_second_copy_s_spool_are_swept(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    # Hostile review (issue 15): a copy onto the second disk cut short by a crash stayed in its tmp/ for ever
    # (only the archive's own tmp/ was swept), filling the disk that holds the evidence's second copy.
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    left = second / "tmp" / f"{dead}-0123456789ab-copy"
    left.write_bytes(b"half a copy")
    in_flight = second / "tmp" / f"{1}-0123456789ab-copy"  # pid 1 runs: its copy is work in flight
    in_flight.write_bytes(b"being written")
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and in_flight.exists()


def test_copies_a_killed_ingest_noted_and_never_stored_go_into_both_copies(tmp_path: Path) -> None:
    """An ingest killed after noting its intents, before storing either copy; the card then wiped. The re-run
    stores the spool's copies (their bytes those noted) in both copies, then records them, and verify is clean:
    the second copy is not left short of what the first holds."""
    second = tmp_path / "disk2" / "copy"
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "--replica", "local", "--replica-option", f"location={second}").returncode == 0
    vol = tmp_path / "BWC0002"
    vol.mkdir()
    for src in THREE_RECORDINGS:
        (vol / src.name).write_bytes(src.read_bytes())
    read = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in vol.iterdir()}
    args = ("ingest", vol, "--archive", arch, "--driver", "generic", "-o", "device_id=BWC0002", "--json")
    killed = run_cli(*args, env={"CUSTODES_CRASHPOINT": "after_intent:1"})
    assert killed.returncode == -9, killed.stderr
    assert _objects(arch) == {} and _objects(second) == {}
    for p in list(vol.iterdir()):
        p.unlink()  # the card wiped
    rerun = run_cli(*args)
    report = json.loads(rerun.stdout)
    assert sorted(report["recovered"]) == sorted(read) and report["failed"] == [], report
    assert _objects(arch).keys() == _objects(second).keys() == set(read.values())
    assert _verify(arch) == (0, [])
    assert list((arch / "tmp").iterdir()) == [] and list((second / "tmp").iterdir()) == []


def test_repair_on_a_catalog_whose_schema_differs_changes_no_copy(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """`storage repair` replaces what a copy holds before it writes its entry: on a catalog custodes writes nothing
    into (a trigger planted) it must refuse first, the damaged file left as it was for the repair after the fix."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    name = sorted(_objects(arch))[0]
    damaged = _objects(second)[name]
    _flip_a_byte(damaged)
    before = damaged.read_bytes()
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        db.execute("CREATE TRIGGER planted AFTER INSERT ON findings BEGIN SELECT 1; END")
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 2 and b"custodes writes nothing into this catalog" in r.stderr, r.stderr
    assert damaged.read_bytes() == before  # not removed, not replaced
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        db.execute("DROP TRIGGER planted")
    assert run_cli("storage", "repair", arch).returncode == 0
    assert _verify(arch) == (0, [])


def test_a_purge_removes_both_copies(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    """A lawful purge left the second copy (a hostile review): the purged object's bytes stayed in the replica
    and verify called the archive not intact at once."""
    second = tmp_path / "disk2" / "copy"
    arch = make_cli_archive(
        recordings=THREE_RECORDINGS,
        ingest_exit=(1,),
        init_args=("--replica", "local", "--replica-option", f"location={second}"),
    )
    seg, sha = next(
        (s, h)
        for s, n, h in catalog_rows(arch, "SELECT id, original_name, sha256 FROM segments")
        if n == "androidx-sample.mp4"  # 2016: long past its retention
    )
    ensure_accounts()
    subprocess.run(["chown", "-R", f"{SERVICE_ACCOUNT}:", str(second.parent)], check=True)  # the service keeps both
    rid = request(arch, "alice", seg, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    out = as_("alice", "retention", "purge", arch, "--request", rid, "--json")
    assert out.returncode == 0, out.stderr
    assert sha not in _objects(arch) and sha not in _objects(second)
    assert _verify(arch) == (0, [])
    (done,) = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger") if b"purge_done" in e]
    assert done["removed"] is True and done["removed_second_copy"] is True


def test_a_folder_at_an_object_s_place_is_repaired_only_when_empty(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """A folder where an object belongs (a hostile review: repair failed on "[Errno 21] Is a directory"): an
    empty one is removed and the object restored, in the ledger as such; one holding files is left as it is, and
    its failure names it and says what to do."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    empty, full = _objects(arch)[names[0]], _objects(second)[names[1]]
    for place in (empty, full):
        place.chmod(0o600)
        place.unlink()
        place.mkdir()
    (full / "notes.txt").write_bytes(b"not the archive's")
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [(x["object"], x["copy"], x["done"]) for x in out["repaired"]] == [
        (names[0], "first", ["removed an empty folder"])
    ]
    ((failed),) = out["failed"]
    assert (failed["object"], failed["copy"]) == (names[1], "replica")
    assert "a folder that is not empty is at its place" in failed["why"] and str(full) in failed["why"]
    assert "Errno" not in failed["why"]
    assert (full / "notes.txt").read_bytes() == b"not the archive's"  # nothing in it removed
    (full / "notes.txt").unlink()
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stderr
    assert [(x["object"], x["copy"], x["done"]) for x in json.loads(r.stdout)["repaired"]] == [
        (names[1], "replica", ["removed an empty folder"])
    ]
    assert _verify(arch) == (0, [])
    assert hashlib.sha256(empty.read_bytes()).hexdigest() == names[0]
    assert hashlib.sha256(full.read_bytes()).hexdigest() == names[1]


def test_no_output_lands_in_the_second_copy(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    """A report written over an object of the second copy replaced it (a hostile review): every output path a
    person names is refused inside the second copy's folder as inside the archive's, through a link as well."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    name, target = next(iter(_objects(second).items()))
    (tmp_path / "door").symlink_to(second / "objects")
    for out in (target, second / "report.json", tmp_path / "door" / "report.json"):
        r = run_cli("report", arch, "--format", "json", "--out", out)
        assert r.returncode == 2 and b"inside the archive's second copy" in r.stderr, r.stderr
    r = run_cli("ledger", "publish", arch, second / "witness")
    assert r.returncode == 2 and b"inside the archive's second copy" in r.stderr, r.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == name
    assert sorted(p.name for p in second.iterdir()) == sorted(["custodes-archive.txt", "objects", "tmp"])
    assert _verify(arch) == (0, [])


def test_a_second_copy_s_folder_that_is_a_link_is_not_followed(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """The second copy's folder swapped for a link to an empty folder: repair filled wherever it pointed (a
    hostile review). Every command now stops, naming the link; nothing is written there."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    second.rename(tmp_path / "disk2" / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second.symlink_to(elsewhere)
    for command in (("storage", "repair", arch), ("verify", arch)):
        r = run_cli(*command)
        assert r.returncode == 2 and b"is a symbolic link" in r.stderr and str(second).encode() in r.stderr, r
        assert b"Traceback" not in r.stderr
    assert list(elsewhere.iterdir()) == []


def test_repair_says_what_it_removed(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    """A FIFO at an object's place was recorded as "a damaged file of 0 bytes", the lines printed never said what
    was removed, and an object bad in both copies was said as a Python dict (a hostile review)."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    fifo = _objects(arch)[names[0]]
    fifo.unlink()
    os.mkfifo(fifo)
    _flip_a_byte(_objects(arch)[names[1]])
    _flip_a_byte(_objects(second)[names[1]])
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 1
    assert f"repaired {names[0]}: its first copy was modified (removed a FIFO (not a file)); restored".encode() in (
        r.stdout
    ), r.stdout
    assert (
        f"NOT repaired {names[1]}: both copies are bad: the first copy is modified, the replica copy is modified"
    ).encode() in r.stderr, r.stderr
    with sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        entries = [json.loads(e) for (e,) in db.execute("SELECT entry FROM ledger WHERE type = 'storage_repair'")]
    assert [e["done"] for e in entries] == [["removed a FIFO (not a file)"]]


def test_an_object_made_writable_or_readable_by_others_is_found_and_repaired(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """An object's file chmod-ed from 0400 went unreported, by verify and by repair (two hostile reviews): now
    it is `unprotected` in every kind of run, in either copy, its bytes still re-hashed (a change of them is
    `modified` too), and repair makes it read-only again in place, in the ledger."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    names = sorted(_objects(arch))
    _objects(arch)[names[0]].chmod(0o644)
    _objects(second)[names[1]].chmod(0o600)
    _flip_a_byte(_objects(arch)[names[2]])  # written through a mode opened for it, then closed again...
    _objects(arch)[names[2]].chmod(0o640)  # ...and left readable by the group
    for extra in ((), ("--quick",)):
        r = run_cli("verify", arch, "--json", *extra)
        assert r.returncode == 1
        found = {(f["kind"], f["copy"], f["object"]) for f in json.loads(r.stdout)["findings"]}
        expected = {
            ("unprotected", None, names[0]),
            ("unprotected", "replica", names[1]),
            ("unprotected", None, names[2]),
        }
        # --quick reads no bytes: the `modified` it names is the whole run's before it, standing (it said nothing of
        # it before standing findings were named; a hostile review: its `unprotected` had erased it).
        assert found == expected | {("modified", None, names[2])}, found
        if extra:
            (standing,) = [f for f in json.loads(r.stdout)["findings"] if f["kind"] == "modified"]
            assert "(found by verify at " in standing["message"], standing
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stderr
    done = {(x["object"], x["copy"], x["was"], tuple(x["done"])) for x in json.loads(r.stdout)["repaired"]}
    assert (names[0], "first", "unprotected", ("set mode 0644 back to 0400",)) in done
    assert (names[1], "replica", "unprotected", ("set mode 0600 back to 0400",)) in done
    assert any(o == names[2] and was == "modified" for o, _, was, _ in done)  # restored whole, read-only
    assert _verify(arch) == (0, [])
    for path in [*_objects(arch).values(), *_objects(second).values()]:
        assert path.stat().st_mode & 0o7777 == 0o400, path


def test_an_object_that_is_one_file_with_a_name_elsewhere_is_named_and_given_a_file_of_its_own(
    tmp_path: Path,
) -> None:
    """A card's file hard-linked at its object's place before the ingest: the store took it as the object, so
    the card's file was the evidence; verify said only `unprotected` (its mode), repair then set the mode of the
    card's own file, and verify called the archive intact while a change of the card's file changed the evidence
    (a hostile review). Verify names the other name; repair gives the object a file of its own, checked against
    its name, and leaves the card's file as it was; a change of the card's file is no change of the archive."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    assert set_policy(arch, policy_text(arch) + CUSTODIAN_ROOT).returncode == 0
    vol = tmp_path / "BWC0003"
    vol.mkdir()
    card_file = vol / "clip.mp4"
    card_file.write_bytes(THREE_RECORDINGS[0].read_bytes())
    card_file.chmod(0o644)
    sha = hashlib.sha256(card_file.read_bytes()).hexdigest()
    place = arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    place.parent.mkdir(parents=True)
    os.link(card_file, place)
    r = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "-o", "device_id=BWC0003")
    assert r.returncode in (0, 1), r.stderr
    rc, found = _verify(arch)
    assert rc == 1 and [(f["kind"], f["object"]) for f in found] == [("unprotected", sha)], found
    assert "2 names" in found[0]["message"] and "hard link" in found[0]["message"], found
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stderr
    (done,) = json.loads(r.stdout)["repaired"]
    assert done["done"] == ["gave it a file of its own: it was one file with 1 other name(s)"], done
    assert card_file.stat().st_mode & 0o7777 == 0o644 and card_file.stat().st_nlink == 1  # the card's, untouched
    assert place.stat().st_mode & 0o7777 == 0o400 and place.stat().st_nlink == 1
    assert _verify(arch) == (0, [])
    card_file.write_bytes(b"shredded")
    assert _verify(arch) == (0, [])


def test_a_hard_linked_copy_whose_bytes_changed_is_restored_from_the_other_once(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """The first copy's file hard-linked elsewhere and its bytes changed through that name: repair reported it
    both failed (its own file could not be made from bytes that are not its name's) and repaired (restored from
    the second copy), exit 1 (a hostile review). Restored once, exit 0; the other name keeps its file."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    name = sorted(_objects(arch))[0]
    elsewhere = tmp_path / "elsewhere"
    os.link(_objects(arch)[name], elsewhere)
    _flip_a_byte(elsewhere)
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stdout
    done = json.loads(r.stdout)
    assert done["failed"] == [] and [(x["object"], x["was"]) for x in done["repaired"]] == [(name, "modified")]
    assert _verify(arch) == (0, [])
    assert elsewhere.stat().st_nlink == 1 and hashlib.sha256(elsewhere.read_bytes()).hexdigest() != name


def test_an_object_given_to_another_account_is_unprotected_and_given_back(
    make_cli_archive: Callable[..., Path],
) -> None:
    """An object file chown-ed to another account, still 0400, was called intact (a hostile review): that
    account can make it writable and change it. Verify names it; repair (root) gives it back, in the ledger."""
    arch = make_cli_archive(recordings=THREE_RECORDINGS, ingest_exit=(1,), people=CUSTODIAN_ROOT)
    name = sorted(_objects(arch))[0]
    os.chown(_objects(arch)[name], 65534, -1)
    rc, findings = _verify(arch)
    assert rc == 1 and [(f["kind"], f["object"]) for f in findings] == [("unprotected", name)]
    assert "owned by account 65534, not the store's (0)" in findings[0]["message"]
    assert "mode" not in findings[0]["message"].split(": ", 1)[-1].split(";")[0]  # (its mode is as it should be)
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0, r.stderr
    assert [x["done"] for x in json.loads(r.stdout)["repaired"]] == [["gave it back to account 0 from 65534"]]
    assert _objects(arch)[name].stat().st_uid == 0 and _verify(arch) == (0, [])


def test_the_second_copy_s_folders_others_could_write_are_unprotected(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """The second copy's folder, its objects/ and tmp/ made 0777 were called intact (the first copy's were
    named): a hostile review."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    (second / "objects").chmod(0o777)
    (second / "custodes-archive.txt").chmod(0o666)  # its owner file too
    rc, findings = _verify(arch)
    assert rc == 1 and [(f["kind"], f["copy"]) for f in findings] == [("unprotected", "replica")] * 2
    said = sorted(str(f["message"]) for f in findings)
    assert said[0].startswith(f"second copy ({second}): {second / 'custodes-archive.txt'}: mode 0666")
    assert said[1].startswith(f"second copy ({second}): {second / 'objects'}: mode 0777")
    (second / "objects").chmod(0o700)
    (second / "custodes-archive.txt").chmod(0o400)
    assert _verify(arch) == (0, [])


def test_a_digest_folder_others_could_write_or_another_account_owns_is_unprotected(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """The digest tree's own folders (objects/sha256/ab, objects/sha256/ab/cd) made 0777 or given to another account
    were called intact (only objects/ and objects/sha256 were checked): another account may then replace the
    objects in them. Named in either copy, with the folder; a folder only different from the store's (a store made
    under another umask: 0755) or sticky is not."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    first, other = sorted(_objects(arch).values())[:2]
    top, leaf = first.parent.parent, _objects(second)[first.name].parent
    top.chmod(0o777)
    leaf.chmod(0o775)
    os.chown(other.parent, 65534, -1)
    rc, findings = _verify(arch)
    assert rc == 1 and sorted((f["kind"], f["copy"] or "first", f["object"]) for f in findings) == [
        ("unprotected", "first", None),
        ("unprotected", "first", None),
        ("unprotected", "replica", None),
    ]
    said = sorted(str(f["message"]) for f in findings)
    assert any(
        m.startswith(f"folder of the store {top.relative_to(arch)}: mode 0777: writable by others") for m in said
    )
    assert any(f"{other.parent.relative_to(arch)}: owned by account 65534, not the store's (0)" in m for m in said)
    assert any(f"{leaf.relative_to(second)}: mode 0775: writable by others" in m for m in said)
    # A repair puts no folder right: it says they remain (a hostile review: "every copy of every object is
    # intact", exit 0, beside verify's NOT INTACT).
    r = run_cli("storage", "repair", arch)
    assert r.returncode == 1 and b"3 finding(s) that a repair does not put right remain" in r.stderr, r.stderr
    left = json.loads(run_cli("storage", "repair", arch, "--json").stdout)["left"]
    assert sorted((x["kind"], x["copy"] or "first") for x in left) == [("unprotected", "first")] * 2 + [
        ("unprotected", "replica")
    ]
    top.chmod(0o755)  # only unlike the others
    leaf.chmod(0o1777)  # sticky, as /tmp: only an entry's owner may replace it
    os.chown(other.parent, 0, -1)
    assert _verify(arch) == (0, [])
    # Beside the digest tree everything is foreign, a folder of another mode included: its file is named, once.
    stray = arch / "objects" / "extra" / "aa"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_bytes(b"x")
    stray.chmod(0o777)
    rc, findings = _verify(arch)
    assert rc == 1 and [(f["kind"], f["message"]) for f in findings] == [
        ("unexpected", "file in the store that is not an object: objects/extra/aa/notes.txt")
    ]


def test_a_second_copy_s_folder_is_new_or_empty_never_another_archive_s_or_a_folder_of_things(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """A hostile review: `init --replica local --replica-option location=<another archive's folder>` was
    accepted, the owner file written into it, and the two archives shared one store (each calling the other's
    objects unexpected); the archive's parent folder, full of other things, was accepted too. A second copy's
    folder not claimed yet must be new or empty; the refusal writes nothing there."""
    other = make_cli_archive(recordings=THREE_RECORDINGS, ingest_exit=(1,))
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    things = tmp_path / "things"
    (things / "objects" / "sha256" / "ab").mkdir(parents=True)
    (things / "notes.txt").write_text("x")
    for place, names in ((other, "catalog.sqlite"), (things, "notes.txt, objects/sha256/ab")):
        r = run_cli("init", tmp_path / "x", "--replica", "local", "--replica-option", f"location={place}")
        assert r.returncode == 2 and not (tmp_path / "x").exists(), r.stderr
        line = r.stderr.decode().strip()
        assert f"{place} holds" in line and names in line and "must be new or empty" in line, line
    assert sorted(p.name for p in things.iterdir()) == ["notes.txt", "objects"]  # nothing written there
    # The folder above a new archive's (where it would lie inside its own copy): refused as that.
    r = run_cli("init", tmp_path / "x", "--replica", "local", "--replica-option", f"location={tmp_path}")
    assert r.returncode == 2 and b"the archive lies inside it" in r.stderr and not (tmp_path / "x").exists()
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before and _verify(other) == (0, [])
    # An empty folder, or one a claim cut short left (empty objects/sha256 and tmp), is taken.
    cut_short = tmp_path / "cut-short"
    (cut_short / "objects" / "sha256").mkdir(parents=True)
    (cut_short / "tmp").mkdir()
    arch = make_cli_archive(
        "second",
        recordings=THREE_RECORDINGS,
        volume=tmp_path / "BWC0002",
        ingest_exit=(1,),
        init_args=("--replica", "local", "--replica-option", f"location={cut_short}"),
    )
    assert _verify(arch) == (0, []) and len(_objects(cut_short)) == 3
    # The owner file of a copy that holds objects lost: every command stops and says how to put it back.
    mark = cut_short / "custodes-archive.txt"
    owner = mark.read_text()
    mark.unlink()
    r = run_cli("verify", arch)
    line = r.stderr.decode().strip()
    assert r.returncode == 2 and f"put it back holding {owner!r}" in line and "\n" not in line, line
    mark.write_text(owner)
    mark.chmod(0o400)
    assert _verify(arch) == (0, [])


def test_a_folder_above_the_second_copy_others_may_write_stops_every_command(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """A hostile review: a second copy in a folder any account may write (0777, not sticky) was accepted; another
    account moved the copy away and put its own in its place, and ingest and repair filled that with the
    evidence. init refuses such a place; one made so later stops every command (as a copy's folder that is gone
    does) until it is put right; a sticky folder, as /tmp, is sound."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    r = run_cli("init", tmp_path / "x", "--replica", "local", "--replica-option", f"location={shared / 'copy'}")
    assert r.returncode == 2 and not (tmp_path / "x").exists() and not (shared / "copy").exists()
    line = r.stderr.decode().strip()
    assert f"{shared} above it: mode 0777: writable by others: another account could move" in line, line
    shared.chmod(0o1777)
    arch = _archive_with_replica(make_cli_archive, shared / "copy")
    assert _verify(arch) == (0, [])
    shared.chmod(0o777)
    for args in (("verify", arch), ("storage", "repair", arch), ("ingest", arch, "--archive", arch)):
        r = run_cli(*args)
        assert r.returncode == 2 and b"above it: mode 0777" in r.stderr and r.stderr.count(b"\n") == 1, args
    shared.chmod(0o755)
    assert _verify(arch) == (0, [])
    # The copy's folder itself given to another account (which could then rename objects/ away; repair gave it
    # the evidence files, as "the store's account"): stops every command too.
    os.chown(shared / "copy", 65534, -1)
    r = run_cli("verify", arch)
    line = r.stderr.decode().strip()
    assert r.returncode == 2 and "its folder: owned by account 65534, not the archive's (0)" in line, line
    os.chown(shared / "copy", 0, -1)
    assert _verify(arch) == (0, [])
    # ... and a folder another account made for it beforehand, open to all, is refused at init.
    made = tmp_path / "made-by-another"
    made.mkdir(mode=0o777)
    made.chmod(0o777)
    os.chown(made, 65534, -1)
    r = run_cli("init", tmp_path / "y", "--replica", "local", "--replica-option", f"location={made}")
    line = r.stderr.decode().strip()
    assert r.returncode == 2 and not (tmp_path / "y").exists() and "its folder: owned by account 65534" in line
    assert list(made.iterdir()) == []
    # A location through "..": the kernel would resolve it after a folder the checks found missing.
    r = run_cli("init", tmp_path / "z", "--replica", "local", "--replica-option", f"location={tmp_path}/no/../c")
    assert r.returncode == 2 and b"without . or .." in r.stderr and not (tmp_path / "no").exists()


def test_a_second_copy_that_is_the_archive_s_folder_under_another_name_is_refused(tmp_path: Path) -> None:
    """A hostile review: a bind mount of the archive's folder named as the second copy was accepted (one folder,
    two names: two copies by every check). The folders themselves are compared, not only their paths. (Mounted
    in a mount namespace of the command's own: nothing stays mounted.)"""
    arch, view = tmp_path / "a", tmp_path / "view"
    view.mkdir()
    assert run_cli("init", arch).returncode == 0
    for location in (view, view / "copy"):
        policy = tmp_path / "policy.toml"
        policy.write_text(policy_text(arch) + f'\n[replica]\nbackend = "local"\nlocation = "{location}"\n')
        script = f'mount --bind "{arch}" "{view}" && exec "$@"'
        command = [sys.executable, "-m", "custodes", "policy", "set", str(arch), str(policy)]
        r = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *command], capture_output=True)
        line = r.stderr.decode().strip()
        assert r.returncode == 2 and f"{view} is the archive's own folder under another name" in line, line
    assert "[replica]" not in policy_text(arch) and run_cli("verify", arch).returncode == 0


def test_repair_of_an_object_whose_catalog_row_was_edited_says_to_rebuild_the_catalog_first(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """A hostile review: the first copy changed and its catalog row's digests edited to the forgery's; verify named
    both (modified, ledger_mismatch), but repair checked the good copy's bytes against the edited row, refused
    them, and said only that "the bytes streamed are not the ones named". It says what to do, and changes no
    copy; after `ledger rebuild-catalog --replace` the repair restores the first copy from the second."""
    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    name = sorted(_objects(arch))[0]
    forged = _objects(arch)[name]
    _flip_a_byte(forged)
    data = forged.read_bytes()
    digests = json.dumps({"sha256": hashlib.sha256(data).hexdigest()}, sort_keys=True)
    db = sqlite3.connect(arch / "catalog.sqlite")
    with db:
        db.execute("UPDATE objects SET digests = ? WHERE sha256 = ?", (digests, name))
    db.close()
    rc, findings = _verify(arch)
    assert rc == 1 and {(f["kind"], f["object"] or f["row"][0]) for f in findings} >= {
        ("modified", name),
        ("ledger_mismatch", name),
    }
    r = run_cli("storage", "repair", arch, "--json")
    said = json.loads(r.stdout)
    assert r.returncode == 1 and said["repaired"] == [] and said["failed"] == [], said
    assert [u["object"] for u in said["unrepairable"]] == [name]
    assert "ledger rebuild-catalog" in said["unrepairable"][0]["why"] and forged.read_bytes() == data
    r = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert r.returncode == 0, r.stderr
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode == 0 and [x["object"] for x in json.loads(r.stdout)["repaired"]] == [name], r.stderr
    assert _verify(arch) == (0, [])


def _grant_write_by_acl(folder: Path, uid: int) -> None:
    """A POSIX access ACL giving account ``uid`` rwx on ``folder`` (the kernel's xattr form: version 2, then each
    entry's tag, permissions and id, in tag order), as `setfacl -m u:UID:rwx` makes it."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 7, uid), (0x04, 5, undefined), (0x10, 7, undefined), (0x20, 5, undefined)]
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(folder, "system.posix_acl_access", blob)


def test_a_folder_another_account_may_write_through_an_acl_is_named_with_the_acl(
    make_cli_archive: Callable[..., Path],
) -> None:
    """A hostile review: a digest folder another account could write through a POSIX ACL was named "mode 0775:
    writable by others", the ACL's mask shown as group bits; the message now says an ACL grants it."""
    arch = make_cli_archive(recordings=THREE_RECORDINGS, ingest_exit=(1,))
    folder = sorted(_objects(arch).values())[0].parent
    _grant_write_by_acl(folder, 65534)
    rc, findings = _verify(arch)
    assert rc == 1 and [f["kind"] for f in findings] == ["unprotected"]
    assert "mode 0775: writable by others (through a POSIX ACL: `getfacl` names whom)" in findings[0]["message"]
    os.removexattr(folder, "system.posix_acl_access")
    folder.chmod(0o700)
    assert _verify(arch) == (0, [])


def test_another_account_reading_an_archive_makes_nothing_in_either_copy(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """Root opening through the library an archive another account owns, with a second copy whose owner file and
    folders were gone: it wrote a root-owned owner file into the copy's folder (every later command of the
    archive's own account failed on it) and, where a folder was gone, stopped with a FileNotFoundError (a
    hostile review). It reads, and makes nothing."""
    from custodes.archive import open_archive
    from custodes.verify import rebuild_catalog, verify

    second = tmp_path / "disk2" / "copy"
    arch = _archive_with_replica(make_cli_archive, second)
    ensure_accounts()
    for place in (arch, second):
        subprocess.run(["chown", "-R", f"{SERVICE_ACCOUNT}:", str(place)], check=True)
    (second / "custodes-archive.txt").unlink()
    shutil.rmtree(second / "objects")
    shutil.rmtree(arch / "tmp")
    with open_archive(arch) as a:
        found = {(f.kind, f.copy) for f in verify(a).findings}
        assert rebuild_catalog(a).equal  # compared only: its rebuilt catalog made in the archive's tmp/ (a review)
    assert found == {("missing", "replica")}, found
    assert [p for p in (*arch.rglob("*"), *second.rglob("*")) if p.owner() == "root"] == []
    assert not (second / "custodes-archive.txt").exists() and not (second / "objects").exists()
