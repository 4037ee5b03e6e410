"""Opening the catalog where its files or folder are not this account's to write (custodes.catalog.connect).

The wait for another account's SQLite handing the -wal/-shm files over (tests/test_service.py, the root reader
beside the service) is for that moment only: a hostile review found that it first also took a folder that
cannot be written, a read-only disk and -wal/-shm files made read-only for that moment, so each such command
waited 2 s and ended on a message without the way out, and a command that only reads stopped working.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import catalog_rows, run_cli


def test_a_catalog_folder_that_cannot_be_written_is_said_so_as_before(cli_archive: Path) -> None:
    os.chmod(cli_archive, 0o555)
    try:
        out = run_cli("ledger", "verify", cli_archive, obey_permissions=True)
    finally:
        os.chmod(cli_archive, 0o700)
    err = out.stderr.decode()
    assert out.returncode == 2 and "Traceback" not in err, err
    assert "cannot write the catalog: " in err, err
    assert "run as the account that keeps the archive, or remount its disk read-write" in err, err
    assert "SQLite cannot open it" not in err, err


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
