"""Opening the catalog where its files or folder are not this account's to write (custodes.catalog.connect).

The wait for another account's SQLite handing the -wal/-shm files over (tests/test_service.py, the root reader
beside the service) is for that moment only: a hostile review found that it first also took a folder that
cannot be written, a read-only disk and -wal/-shm files made read-only for that moment, so each such command
waited 2 s and ended on a message without the way out, and a command that only reads stopped working.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import catalog_rows, run_cli


def test_a_catalog_folder_that_cannot_be_written_is_said_so_as_before(cli_archive: Path) -> None:
    """Named as the folder that cannot be written (a hostile review: told to remount a disk that was writable)."""
    os.chmod(cli_archive, 0o555)
    try:
        out = run_cli("ledger", "verify", cli_archive, obey_permissions=True)
    finally:
        os.chmod(cli_archive, 0o700)
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert "cannot write the catalog: " in err, err
    assert f"{cli_archive} cannot be written by this account (its owner or mode): run as the account that keeps" in err
    assert "remount" not in err and "SQLite cannot open it" not in err, err


def test_an_immutable_write_ahead_log_is_named(cli_archive: Path) -> None:
    wal = cli_archive / "catalog.sqlite-wal"
    wal.write_bytes(b"")
    if subprocess.run(["chattr", "+i", str(wal)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        out = run_cli("verify", cli_archive)
    finally:
        subprocess.run(["chattr", "-i", str(wal)], check=True)
    err = out.stderr.decode()
    assert out.returncode == 2 and f"{wal} is immutable (chattr; `lsattr -d {wal}`)" in err, err
    assert "remount" not in err, err
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
