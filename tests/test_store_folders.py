"""The local store's folders are the archive's own: a folder of the digest tree, ``objects/`` or ``tmp/`` that is a
symbolic link (or a file) is never written through, and no command follows it out of the archive (a hostile
review: ingest stored new footage through a linked digest folder, `storage repair` deleted a file outside the
archive through one and said it had repaired the object)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import FOOTAGE, PEOPLE, THREE_RECORDINGS, nested_folders, run_cli, small_tmpfs

CUSTODIAN_ROOT = PEOPLE.replace('root = "auditor"', 'root = "custodian"')
CLIP = FOOTAGE / "encoders" / "androidx-sample.mp4"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside


def test_ingest_never_stores_through_a_linked_digest_folder(cli_archive: Path, tmp_path: Path) -> None:
    volume = tmp_path / "CARD"
    volume.mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", volume / "NEW.mp4")
    digest = hashlib.sha256((volume / "NEW.mp4").read_bytes()).hexdigest()
    tree = cli_archive / "objects" / "sha256"
    outside = _outside(tmp_path)
    shutil.rmtree(tree / digest[:2], ignore_errors=True)
    (tree / digest[:2]).symlink_to(outside)
    r = run_cli("ingest", volume, "--archive", cli_archive, "--driver", "generic", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["stored"] == [] and out["failed"] == ["NEW.mp4"]
    assert any("symbolic link or not a folder" in f["message"] for f in out["findings"]), out["findings"]
    assert list(outside.rglob("*")) == []  # nothing written outside the archive
    assert list((cli_archive / "tmp").iterdir()) == []  # the copy did not stay in the spool either


def test_repair_never_writes_or_removes_through_a_linked_digest_folder(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = make_cli_archive(
        recordings=THREE_RECORDINGS,
        ingest_exit=(1,),
        people=CUSTODIAN_ROOT,
        init_args=("--replica", "local", "--replica-option", f"location={second}"),
    )
    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    outside = _outside(tmp_path)
    planted = outside / digest[2:4] / digest
    planted.parent.mkdir()
    planted.write_bytes(b"someone else's file")
    tree = second / "objects" / "sha256"
    shutil.rmtree(tree / digest[:2])
    (tree / digest[:2]).symlink_to(outside)
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode != 0
    assert "symbolic link or not a folder" in r.stderr.decode() + r.stdout.decode()
    assert planted.read_bytes() == b"someone else's file"  # untouched: neither removed nor written over
    assert sorted(p.name for p in outside.rglob("*")) == sorted([digest[2:4], digest])
    found = json.loads(run_cli("verify", arch, "--json").stdout)["findings"]
    assert ("missing", "replica", digest) in {(f["kind"], f["copy"], f["object"]) for f in found}


@pytest.mark.parametrize("folder", ["objects", "objects/sha256", "tmp"])
@pytest.mark.parametrize("replaced_by", ["link", "file"])
def test_a_store_folder_that_is_a_link_or_a_file_stops_every_command_in_one_line(
    cli_archive: Path, tmp_path: Path, folder: str, replaced_by: str
) -> None:
    outside = _outside(tmp_path)
    place = cli_archive / folder
    shutil.move(place, outside / "moved")
    if replaced_by == "link":
        place.symlink_to(outside / "moved")
    else:
        place.write_bytes(b"x")
    for command in (("verify", cli_archive), ("ingest", FOOTAGE / "phones", "--archive", cli_archive)):
        r = run_cli(*command)
        text = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in text, text
        assert f"{place}" in text and ("symbolic link" in text or "not a folder" in text), text
    assert sorted(p.name for p in outside.iterdir()) == ["moved"]


def _findings(arch: Path, *args: str, code: int = 1, **kw: bool) -> list[dict[str, object]]:
    r = run_cli("verify", arch, "--json", *args, **kw)  # type: ignore[arg-type]
    assert r.returncode == code and "Traceback" not in r.stderr.decode(), r.stderr
    return json.loads(r.stdout)["findings"]  # type: ignore[no-any-return]


def test_a_folder_of_the_store_that_cannot_be_listed_is_named(cli_archive: Path) -> None:
    """It was passed over in silence: a stray folder's contents were never seen (intact, exit 0) and the
    objects of an unreadable digest folder were only `missing`."""
    tree = cli_archive / "objects" / "sha256"
    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    leaf = tree / digest[:2] / digest[2:4]
    stray = tree / "zz"
    stray.mkdir()
    (stray / "f").write_bytes(b"x")
    for folder in (leaf, stray):
        folder.chmod(0)
    try:
        found = _findings(cli_archive, obey_permissions=True)
    finally:
        for folder in (leaf, stray):
            folder.chmod(0o700)
    kinds = {(f["kind"], f["object"]) for f in found}
    assert ("unreadable", None) in kinds and ("missing", digest) in kinds, found
    named = [str(f["message"]) for f in found if f["kind"] == "unreadable"]
    assert len(named) == 2 and all("cannot be listed" in m and "Permission denied" in m for m in named), named
    assert any(f"objects/sha256/{digest[:2]}/{digest[2:4]}" in m for m in named) and any(
        "sha256/zz" in m for m in named
    )


def test_a_fifo_at_an_object_s_place_is_named_by_every_kind_of_run(cli_archive: Path) -> None:
    """--quick, --older-than and --resume judged it by its size (a FIFO of an empty object was intact); the
    listing every run makes names it."""
    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    place = cli_archive / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    place.chmod(0o600)
    place.unlink()
    os.mkfifo(place)
    for args in ((), ("--quick",), ("--older-than", "30")):
        found = _findings(cli_archive, *args)
        assert [(f["kind"], f["object"]) for f in found] == [("modified", digest)], (args, found)
        assert "object is a FIFO" in str(found[0]["message"])


def test_stray_names_are_shown_on_one_line(cli_archive: Path) -> None:
    """A stray named with a newline printed a fake summary line into verify's text output."""
    leaf = next(p for p in (cli_archive / "objects" / "sha256").rglob("*") if p.is_file()).parent
    (leaf / "x\nintact: 3 objects, 0 finding(s)").write_bytes(b"x")
    r = run_cli("verify", cli_archive)
    assert r.returncode == 1
    lines = r.stdout.decode().splitlines()
    assert not any(line.startswith("intact:") for line in lines), lines
    assert any("x\\nintact: 3 objects" in line for line in lines), lines


def test_a_folder_too_deep_beside_the_tree_is_listed_without_a_traceback(cli_archive: Path) -> None:
    """os.walk ran out of Python's stack on 1,000 nested folders beside objects/sha256."""
    folder = cli_archive / "objects" / "other"
    folder.mkdir()

    def deep_file(level: int, fd: int) -> None:
        if level == 1200:
            with open(os.open("deep", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
                f.write(b"x")

    nested_folders(folder, 1200, deep_file)
    try:
        found = _findings(cli_archive)
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)  # shutil.rmtree recurses as deep as os.walk did
    assert {f["kind"] for f in found} <= {"unexpected", "unreadable"} and found, found


@pytest.mark.parametrize("end", ["-wal", "-shm", "-journal"])
def test_a_linked_journal_of_the_catalog_is_named_as_a_link(cli_archive: Path, tmp_path: Path, end: str) -> None:
    """SQLite refuses a write-ahead log that is a link, rightly, but its error read as a question of rights (the
    message said to run as the archive's account; a hostile review). The link is named, and nothing is written
    through it."""
    outside = _outside(tmp_path) / "journal"
    outside.write_bytes(b"not the archive's")
    place = cli_archive / f"catalog.sqlite{end}"
    place.unlink(missing_ok=True)
    place.symlink_to(outside)
    for command in (("verify", cli_archive), ("ingest", FOOTAGE / "gopro", "--archive", cli_archive)):
        r = run_cli(*command)
        text = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in text, text
        assert f"{place} is a symbolic link" in text and "remove the link" in text, text
    assert outside.read_bytes() == b"not the archive's"


@pytest.mark.parametrize("entry", ["ledger", "ledger/checkpoints", "exports", "run", "catalog.sqlite"])
def test_the_archive_s_own_folders_and_catalog_are_never_followed_out_of_it(
    cli_archive: Path, tmp_path: Path, entry: str
) -> None:
    """Through a linked ledger/ or ledger/checkpoints/ ingest wrote checkpoints outside (and verify called the
    archive intact); through exports/ a purge removed folders outside; through run/ the service changed an
    outside folder's mode; through catalog.sqlite the catalog was written outside (a hostile review)."""
    outside = _outside(tmp_path)
    place = cli_archive / entry
    place.parent.mkdir(exist_ok=True)
    if place.exists():
        shutil.move(place, outside / "moved")
    else:
        (outside / "moved").mkdir()
    place.symlink_to(outside / "moved")
    before = sorted((p.relative_to(outside), p.stat().st_mtime_ns) for p in outside.rglob("*"))
    for command in (("verify", cli_archive), ("ingest", FOOTAGE / "gopro", "--archive", cli_archive)):
        r = run_cli(*command)
        text = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in text, text
        assert str(place) in text and "symbolic link" in text, text
    assert sorted((p.relative_to(outside), p.stat().st_mtime_ns) for p in outside.rglob("*")) == before


def test_a_bag_s_place_in_exports_that_is_a_link_is_removed_not_followed(cli_archive: Path, tmp_path: Path) -> None:
    from custodes.archive import open_archive
    from custodes.export import sweep_exports

    outside = _outside(tmp_path)
    (outside / "keep").write_bytes(b"x")
    exports = cli_archive / "exports"
    exports.mkdir(exist_ok=True)
    (exports / "99").symlink_to(outside)  # no export 99 exists: not downloadable, swept
    (exports / "98").write_bytes(b"x")
    with open_archive(cli_archive) as a:
        assert sorted(sweep_exports(a)) == ["98", "99"]
    assert list(exports.iterdir()) == [] and (outside / "keep").read_bytes() == b"x"


@pytest.mark.parametrize("kind", ["fifo", "link", "folder"])
def test_key_and_lock_files_that_are_not_files_stop_commands_in_one_line(
    cli_archive: Path, tmp_path: Path, kind: str
) -> None:
    """keys/checkpoint.vkey or run/service.lock as a FIFO hung every command; as a link to another file the
    error printed the start of it; as a folder it was a traceback (a hostile review)."""
    secret = tmp_path / "secret"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    for name in ("keys/checkpoint.vkey", "run/service.lock"):
        place = cli_archive / name
        saved = place.read_bytes() if place.exists() else None
        place.parent.mkdir(exist_ok=True)
        place.unlink(missing_ok=True)
        if kind == "fifo":
            os.mkfifo(place)
        elif kind == "link":
            place.symlink_to(secret)
        else:
            place.mkdir()
        r = run_cli("verify", cli_archive, timeout=60)
        text = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in text and "SECRET" not in text, (name, text)
        assert name.split("/")[-1] in text, (name, text)
        if place.is_dir() and not place.is_symlink():
            place.rmdir()
        else:
            place.unlink()
        if saved is not None:
            place.write_bytes(saved)
    assert run_cli("verify", cli_archive).returncode == 0


@pytest.mark.parametrize("planted", ["fifo", "garbage", "link"])
def test_ingest_never_takes_what_was_planted_at_an_object_s_place_for_the_object(
    cli_archive: Path, tmp_path: Path, planted: str
) -> None:
    """A FIFO, other bytes or a link where a new object belongs was taken as stored and the copy thrown away
    (a hostile review): now that file fails, the planted entry is left for verify to name."""
    volume = tmp_path / "CARD"
    volume.mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", volume / "NEW.mp4")
    digest = hashlib.sha256((volume / "NEW.mp4").read_bytes()).hexdigest()
    folder = cli_archive / "objects" / "sha256" / digest[:2] / digest[2:4]
    folder.mkdir(parents=True, exist_ok=True)
    if planted == "fifo":
        os.mkfifo(folder / digest)
    elif planted == "garbage":
        (folder / digest).write_bytes(b"garbage")
    else:
        (folder / digest).symlink_to(volume / "NEW.mp4")
    r = run_cli("ingest", volume, "--archive", cli_archive, "--driver", "generic", "--json", timeout=60)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["stored"] == [] and out["failed"] == ["NEW.mp4"], (r.stderr, out)
    assert any("is there already" in f["message"] for f in out["findings"]), out["findings"]


def test_access_open_never_waits_on_a_fifo_at_an_object_s_place(cli_archive: Path, tmp_path: Path) -> None:
    from custodes.archive import open_archive
    from custodes.storage import StoreError

    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    place = cli_archive / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    place.chmod(0o600)
    place.unlink()
    os.mkfifo(place)
    with open_archive(cli_archive) as a, pytest.raises(StoreError, match="not a regular file"):
        a.store.open(digest)


def test_a_link_in_the_service_s_outbox_is_removed_not_followed(cli_archive: Path, tmp_path: Path) -> None:
    """A link planted among the service's outboxes led its sweep outside the archive (a hostile review)."""
    from custodes.archive import open_archive
    from custodes.service import _sweep_outboxes, outbox_root

    outside = _outside(tmp_path)
    staged = outside / "1" / "out"
    staged.mkdir(parents=True)
    (staged / "keep").write_bytes(b"x")
    folder = outbox_root(cli_archive)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "12345678-1-aa").symlink_to(outside)
    with open_archive(cli_archive) as a:
        _sweep_outboxes(a)
    assert list(folder.iterdir()) == [] and (staged / "keep").read_bytes() == b"x"


def test_a_folder_where_an_object_or_the_latest_checkpoint_belongs_is_named(cli_archive: Path) -> None:
    from custodes.archive import open_archive

    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    place = cli_archive / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    place.chmod(0o600)
    place.unlink()
    place.mkdir()
    with open_archive(cli_archive) as a:
        assert a.store.stat(digest) is None  # not the object: a purge passes it by, verify calls it missing
    latest = cli_archive / "ledger" / "checkpoint"
    latest.unlink()
    latest.mkdir()
    r = run_cli("verify", cli_archive)
    assert r.returncode == 2 and "Traceback" not in r.stderr.decode() and "is a folder" in r.stderr.decode()


def test_a_dead_process_s_spool_folder_of_any_depth_is_swept_links_and_all(cli_archive: Path, tmp_path: Path) -> None:
    """shutil.rmtree recursed: a dead process's folder nested 1,200 deep stopped every ingest (a hostile review)."""
    outside = _outside(tmp_path)
    (outside / "keep").write_bytes(b"x")
    dead = cli_archive / "tmp" / "99999999-x"
    dead.mkdir()
    nested_folders(dead, 1200, lambda _, fd: os.symlink(outside, "out", dir_fd=fd))  # links: never followed
    volume = tmp_path / "CARD"
    volume.mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", volume / "NEW.mp4")
    r = run_cli("ingest", volume, "--archive", cli_archive, "--driver", "generic", "--json")
    assert json.loads(r.stdout)["stored"] == ["NEW.mp4"], r.stderr
    assert not dead.exists() and (outside / "keep").read_bytes() == b"x"


def test_another_way_into_the_archive_is_refused_like_the_first(cli_archive: Path, tmp_path: Path) -> None:
    """The inside-the-archive checks compared path text: through a bind mount of the archive a report was
    written over its catalog, and the archive ingested itself, private key included (a hostile review)."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    door = tmp_path / "door"
    door.mkdir()
    subprocess.run(["mount", "--bind", str(cli_archive), str(door)], check=True)
    try:
        catalog = (cli_archive / "catalog.sqlite").read_bytes()
        r = run_cli("report", cli_archive, "--format", "json", "--out", door / "catalog.sqlite")
        assert r.returncode == 2 and "inside the archive" in r.stderr.decode(), r.stderr
        r = run_cli("ingest", door, "--archive", cli_archive, "--driver", "generic")
        assert r.returncode == 2 and "the archive is inside the volume" in r.stderr.decode(), r.stderr
        assert (cli_archive / "catalog.sqlite").read_bytes() == catalog
    finally:
        subprocess.run(["umount", str(door)], check=True)
    assert run_cli("verify", cli_archive).returncode == 0


@pytest.mark.parametrize(
    ("what", "change", "said"),
    [
        ("", lambda p: p.chmod(0o777), "the archive's own folder must be"),
        ("catalog.sqlite", lambda p: p.chmod(0o666), "writable by others"),
        # Read by others: the access log, who saw what and why (a hostile review: 0644 was called intact).
        ("catalog.sqlite", lambda p: p.chmod(0o644), "mode 0644: readable or writable by others: the archive's own"),
        ("keys", lambda p: os.chown(p, 65534, -1), "owned by account 65534"),
        ("private/checkpoint.key", lambda p: p.chmod(0o644), "the signing key must be"),
        ("keys/checkpoint.vkey", lambda p: p.chmod(0o666), "writable by others"),  # the key verify trusts
        ("ledger/checkpoint", lambda p: os.chown(p, 65534, -1), "owned by account 65534"),
    ],
)
def test_the_archive_s_own_entries_others_could_write_are_unprotected(
    cli_archive: Path, what: str, change: Callable[[Path], None], said: str
) -> None:
    """Folders and the catalog made 0777/0666, a folder given to another account and the signing key readable by
    all were called intact, and checkpoints were signed with that key (a hostile review)."""
    path = cli_archive / what
    was = path.stat()
    change(path)
    try:
        out = run_cli("verify", cli_archive, "--json")
        assert out.returncode == 1, out.stderr
        found = json.loads(out.stdout)["findings"]
        assert {f["kind"] for f in found} == {"unprotected"}, found  # (SQLite gives its -wal and -shm the mode too)
        assert any(said in f["message"] and f["message"].startswith(f"{path}: ") for f in found), found
    finally:
        os.chown(path, was.st_uid, was.st_gid)
        path.chmod(stat.S_IMODE(was.st_mode))
    assert run_cli("verify", cli_archive).returncode == 0


def test_an_archive_or_its_key_reached_through_a_link_is_judged_by_what_the_link_names(
    cli_archive: Path, tmp_path: Path
) -> None:
    """A link's own mode (0777) is no one's: verify through a link to the archive, and with the signing key kept
    elsewhere through a link, called a clean archive unprotected (a hostile review). A sticky folder for the key
    (as /tmp) lets only its owner replace it."""
    link = tmp_path / "alink"
    link.symlink_to(cli_archive)
    assert run_cli("verify", link).returncode == 0
    key = cli_archive / "private" / "checkpoint.key"
    kept = tmp_path / "hsm"
    kept.mkdir(mode=0o700)
    key.rename(kept / key.name)
    key.symlink_to(kept / key.name)
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 0, out.stdout
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert run_cli("init", tmp_path / "other", "--signing-key", shared / "k.key").returncode == 0
    out = run_cli("verify", tmp_path / "other", "--json")
    assert out.returncode == 0, out.stdout
    shared.chmod(0o777)  # not sticky: another account could replace the key
    found = json.loads(run_cli("verify", tmp_path / "other", "--json").stdout)["findings"]
    assert [f["kind"] for f in found] == ["unprotected"] and f"{shared}: mode 0777" in found[0]["message"]
    # init holds a key's folder to the same rule (a new archive was NOT INTACT from its first verify)
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o775)
    refused = run_cli("init", tmp_path / "third", "--signing-key", group / "k.key")
    assert refused.returncode == 2 and b"mode 0775: writable by others" in refused.stderr, refused.stderr
    assert not (tmp_path / "third").exists() and not (group / "k.key").exists()


def test_an_ingest_writes_no_part_of_the_catalog_to_the_system_s_temporary_folder(
    cli_archive: Path, tmp_path: Path
) -> None:
    """SQLite keeps a savepoint's journal (ingest records each file under one) in memory until it outgrows 64 KiB,
    then in a file of the system's temporary folder (/var/tmp): pages of the catalog written outside the archive,
    and an ingest that failed when that folder was full. Here that folder is a full file system: the ingest of
    enough files to outgrow it stores and records every one."""
    volume = tmp_path / "CARD"
    volume.mkdir()
    for n in range(300):
        (volume / f"f{n:04d}.bin").write_bytes(b"custodes %d" % n)
    with small_tmpfs(tmp_path / "full", "64k") as full:
        with open(full / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                f.write(bytes(128 * 1024))
        r = run_cli(
            "ingest",
            volume,
            "--archive",
            cli_archive,
            "--driver",
            "generic",
            "-q",
            "--json",
            env={"SQLITE_TMPDIR": str(full)},
        )
    assert r.returncode == 1, r.stderr  # an unknown_file finding for each: stored, not failed
    assert len(json.loads(r.stdout)["segments"]) == 300
    assert run_cli("verify", cli_archive).returncode == 0
