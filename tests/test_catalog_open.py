"""Opening the catalog where its files or folder are not this account's to write (custodes.catalog.connect).

The wait for another account's SQLite handing the -wal/-shm files over (tests/test_service.py, the root reader
beside the service) is for that moment only: a hostile review found that it first also took a folder that
cannot be written, a read-only disk and -wal/-shm files made read-only for that moment, so each such command
waited 2 s and ended on a message without the way out, and a command that only reads stopped working.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import run_cli


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
    """The -wal and -shm files this account's, but made 0444 (a catalog once opened while it was 0444 leaves
    them so): SQLite reads through them, as before; a command that writes is refused, as before."""
    catalog = cli_archive / "catalog.sqlite"
    assert run_cli("ledger", "verify", cli_archive).returncode == 0
    os.chmod(catalog, 0o444)
    assert run_cli("ledger", "verify", cli_archive, obey_permissions=True).returncode == 0  # leaves them 0444
    os.chmod(catalog, 0o600)
    shared = [Path(f"{catalog}{end}") for end in ("-wal", "-shm")]
    for path in shared:
        if not path.exists():
            path.write_bytes(b"")
        os.chmod(path, 0o444)
    out = run_cli("ledger", "verify", cli_archive, "--json", obey_permissions=True)
    assert out.returncode == 0, out.stderr
    wrote = run_cli("retention", "case", cli_archive, "--case", "C-1", "--segment", "1", obey_permissions=True)
    err = wrote.stderr.decode()
    assert wrote.returncode == 2 and "cannot write the catalog" in err and "SQLite cannot open it" not in err, err
