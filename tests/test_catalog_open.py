"""Opening the catalog where its files or folder are not this account's to write (custodes.catalog.connect).

The wait for another account's SQLite handing the -wal/-shm files over (tests/test_service.py, the root reader
beside the service) is for that moment only: a hostile review found that it first also took a folder that
cannot be written, a read-only disk and -wal/-shm files made read-only for that moment, so each such command
waited 2 s and ended on a message without the way out, and a command that only reads stopped working.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import open_archive
from helpers import catalog_rows, run_cli


def test_a_catalog_folder_that_cannot_be_written_is_said_so_as_before(cli_archive: Path) -> None:
    """Named as the folder that cannot be written (a hostile review: told to remount a disk that was writable), to
    a command that writes; one that only reads answers (SQLite can make no -shm file there: it failed so too)."""
    os.chmod(cli_archive, 0o555)
    try:
        read = run_cli("ledger", "verify", cli_archive, obey_permissions=True)
        out = run_cli("retention", "case", cli_archive, "--case", "C-1", "--segment", "1", obey_permissions=True)
    finally:
        os.chmod(cli_archive, 0o700)
    assert read.returncode == 0 and b"ledger consistent" in read.stdout, read.stderr
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert "cannot write the catalog: " in err, err
    assert f"{cli_archive} cannot be written by this account (its owner or mode): run as the account that keeps" in err
    assert "remount" not in err and "SQLite cannot open it" not in err, err


def test_an_immutable_write_ahead_log_is_named(cli_archive: Path) -> None:
    """Named, by a command that writes (nothing recorded) and by verify, which reads the catalog through it and
    records no run (a second hostile review: a copy kept with its -wal made immutable could not be verified)."""
    wal = cli_archive / "catalog.sqlite-wal"
    wal.write_bytes(b"")
    if subprocess.run(["chattr", "+i", str(wal)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        out = run_cli("retention", "case", cli_archive, "--case", "C-1", "--segment", "1")
        checked = run_cli("verify", cli_archive)
    finally:
        subprocess.run(["chattr", "-i", str(wal)], check=True)
    err = out.stderr.decode()
    assert out.returncode == 2 and f"{wal} is immutable (chattr; `lsattr -d {wal}`)" in err, err
    assert "remount" not in err and "nothing was recorded" in err, err
    said = checked.stdout.decode()
    assert checked.returncode == 0 and "(not recorded: the catalog is read-only here)" in said, checked.stderr
    assert f"why: {wal} is immutable (chattr; `lsattr -d {wal}`)" in said, said
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_disk_mounted_read_only_is_said_so(cli_archive: Path, tmp_path: Path) -> None:
    """A read-only bind mount of the archive: a command that writes is told to remount it (the one case where
    that is the way out); one that only reads still answers."""
    view = tmp_path / "ro"
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(cli_archive), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        out = run_cli("retention", "case", view, "--case", "C-1", "--segment", "1")
        err = out.stderr.decode()
        assert out.returncode == 2 and "its disk is mounted read-only: run as the account" in err, err
        assert "or remount it read-write" in err, err
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_shared_files_made_read_only_still_serve_a_command_that_only_reads(cli_archive: Path) -> None:
    """The -wal and -shm files this account's, but made 0444 (a catalog opened while it was 0444 leaves them
    so): SQLite reads through them, as before, and while the catalog is read-only a command that writes is
    refused, as before. Once the catalog is writable again, so are they: the next command gives them the
    catalog's mode (a hostile review: they stayed 0444 and every later write failed, naming the catalog)."""
    catalog = cli_archive / "catalog.sqlite"
    assert run_cli("ledger", "verify", cli_archive).returncode == 0
    os.chmod(catalog, 0o444)
    assert run_cli("ledger", "verify", cli_archive, obey_permissions=True).returncode == 0  # leaves them 0444
    shared = [Path(f"{catalog}{end}") for end in ("-wal", "-shm")]
    for path in shared:
        if not path.exists():
            path.write_bytes(b"")
        os.chmod(path, 0o444)
    case = ("retention", "case", cli_archive, "--case", "C-1", "--segment", "1")
    wrote = run_cli(*case, obey_permissions=True)
    err = wrote.stderr.decode()
    assert wrote.returncode == 2 and "cannot write the catalog" in err and "SQLite cannot open it" not in err, err
    os.chmod(catalog, 0o600)
    out = run_cli("ledger", "verify", cli_archive, "--json", obey_permissions=True)
    assert out.returncode == 0, out.stderr
    assert [oct(p.stat().st_mode & 0o777) for p in shared if p.exists()] in ([], ["0o600"], ["0o600", "0o600"])
    logged = catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log")[0][0]
    wrote = run_cli(*case, obey_permissions=True)  # root is the auditor: refused, and the refusal is written
    assert wrote.returncode == 1 and b"refused: root may not case" in wrote.stderr, wrote.stderr
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log") == [(logged + 1,)]
    assert run_cli("verify", cli_archive, obey_permissions=True).returncode == 0


def test_a_folder_in_the_catalog_s_place_is_not_said_missing(cli_archive: Path) -> None:
    catalog = cli_archive / "catalog.sqlite"
    catalog.rename(cli_archive.parent / "kept.sqlite")
    catalog.mkdir()
    out = run_cli("verify", cli_archive)
    err = out.stderr.decode()
    assert out.returncode == 2 and "the catalog (catalog.sqlite) is not a regular file; move that aside" in err, err


@contextmanager
def read_only_view(archive: Path, view: Path) -> Iterator[Path]:
    """``archive`` seen at ``view`` through a read-only bind mount: a copy handed over on a read-only disk."""
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(archive), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_copy_on_a_read_only_disk_is_verified_and_reported_as_it_is(cli_archive: Path, tmp_path: Path) -> None:
    """An auditor's copy on a read-only disk: verify re-hashes every object and says its run is not recorded,
    `ledger verify` and the report answer, and a command that writes is refused, nothing recorded. Each of them
    failed at the open ("unable to open database file": SQLite could make no -shm file there). Damage in such a
    copy is found as anywhere."""
    copy = shutil.copytree(cli_archive, tmp_path / "copy", symlinks=True)
    objects = catalog_rows(copy, "SELECT COUNT(*) FROM objects")[0][0]
    with read_only_view(copy, tmp_path / "ro") as view:
        out = run_cli("verify", view, "--json")
        assert out.returncode == 0, out.stderr
        checked = json.loads(out.stdout)
        assert checked["run"]["not_recorded"] == "the catalog is read-only here", checked["run"]
        assert checked["checked"] == objects > 0, checked
        assert run_cli("ledger", "verify", view).returncode == 0
        report = run_cli("report", view, "--out", tmp_path / "report.json")
        assert report.returncode == 0 and json.loads((tmp_path / "report.json").read_text())["findings"], report.stderr
        wrote = run_cli("retention", "case", view, "--case", "C-1", "--segment", "1")
        err = wrote.stderr.decode()
        assert wrote.returncode == 2 and "cannot write the catalog: it is read-only here" in err, err
        assert "its disk is mounted read-only" in err and "nothing was recorded" in err, err
    assert catalog_rows(copy, "SELECT COUNT(*) FROM access_log") == catalog_rows(
        cli_archive, "SELECT COUNT(*) FROM access_log"
    )
    assert catalog_rows(copy, "SELECT COUNT(*) FROM verify_runs") == [(0,)]
    # One object's bytes changed in the copy: found there, read-only.
    (digest,) = catalog_rows(copy, "SELECT sha256 FROM objects ORDER BY sha256 LIMIT 1")[0]
    victim = copy / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    mode = victim.stat().st_mode
    victim.chmod(0o600)
    victim.write_bytes(bytes(data))
    victim.chmod(mode)
    with read_only_view(copy, tmp_path / "ro2") as view:
        out = run_cli("verify", view, "--json")
    assert out.returncode == 1, out.stderr
    found = json.loads(out.stdout)["findings"]
    assert [(f["kind"], f["object"]) for f in found] == [("modified", digest)], found


def test_a_copy_taken_while_the_archive_was_in_use_is_read_with_its_write_ahead_log(
    cli_archive: Path, tmp_path: Path
) -> None:
    """A copy taken while transactions were still in the -wal file: on a read-only disk they are read with it
    (SQLite's immutable open, which reads a copy without a -shm file, would ignore them: an older catalog, its
    latest ledger entries missing); without the -shm file beside it the copy is refused, naming the -wal file,
    never read as an older catalog."""
    source = shutil.copytree(cli_archive, tmp_path / "source", symlinks=True)
    holder = sqlite3.connect(source / "catalog.sqlite")
    try:
        holder.execute("PRAGMA wal_autocheckpoint=0")
        holder.execute("BEGIN")
        holder.execute("SELECT COUNT(*) FROM ledger").fetchone()  # a reader: the writer's commits stay in the -wal
        refused = run_cli("retention", "case", source, "--case", "C-1", "--segment", "1")  # root: refused, recorded
        assert refused.returncode == 1, refused.stderr
        assert (source / "catalog.sqlite-wal").stat().st_size > 0
        copy = shutil.copytree(source, tmp_path / "copy", symlinks=True)
    finally:
        holder.close()
    entries = catalog_rows(source, "SELECT COUNT(*) FROM ledger")
    with read_only_view(copy, tmp_path / "ro") as view:
        assert run_cli("ledger", "verify", view).returncode == 0
        with open_archive(view) as a:  # the library opens it so too
            assert a.catalog.read_only and a.catalog.ledger.size() == entries[0][0]
    (copy / "catalog.sqlite-shm").unlink()
    with read_only_view(copy, tmp_path / "ro2") as view:
        out = run_cli("verify", view)
    err = out.stderr.decode()
    assert out.returncode == 2 and "its write-ahead log (catalog.sqlite-wal) holds transactions not yet in" in err, err
    assert "copy the archive, -wal file and all, to a place this account may write" in err, err


def test_a_catalog_file_mounted_read_only_alone_is_said_so(cli_archive: Path) -> None:
    """The catalog file bind-mounted read-only by itself, its folder on a writable disk: named as a read-only
    mount (a hostile review: it was called a file "this account cannot write (its owner or mode)", as the folder's
    disk is writable); verify still re-hashes and records nothing."""
    catalog = cli_archive / "catalog.sqlite"
    if subprocess.run(["mount", "--bind", "-o", "ro", str(catalog), str(catalog)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        wrote = run_cli("retention", "case", cli_archive, "--case", "C-1", "--segment", "1")
        checked = run_cli("verify", cli_archive, "--json")
    finally:
        subprocess.run(["umount", str(catalog)], check=True)
    err = wrote.stderr.decode()
    assert wrote.returncode == 2 and "it is read-only here" in err and "its disk is mounted read-only" in err, err
    assert "owner or mode" not in err, err
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["run"]["not_recorded"] == "the catalog is read-only here"


@pytest.mark.parametrize(
    ("end", "make", "kind", "kept"),
    [("-wal", os.mkfifo, "a FIFO", "write-ahead log"), ("-shm", os.mkdir, "a folder", "write-ahead log index")],
)
def test_a_journal_file_that_is_no_file_is_named(cli_archive: Path, end: str, make: Any, kind: str, kept: str) -> None:
    """A FIFO for the -wal was "disk I/O error: check the disk (dmesg, smartctl)", and a folder for the -shm a
    question of rights (a hostile review): neither is either."""
    journal = cli_archive / f"catalog.sqlite{end}"
    journal.unlink(missing_ok=True)
    make(journal)
    out = run_cli("verify", cli_archive)
    err = out.stderr.decode()
    assert out.returncode == 2 and f"{journal} is {kind}, not a file: SQLite keeps the catalog's {kept} there" in err, (
        err
    )
    assert "disk I/O" not in err and "account" not in err, err
    journal.unlink() if end == "-wal" else journal.rmdir()
    assert run_cli("verify", cli_archive).returncode == 0
