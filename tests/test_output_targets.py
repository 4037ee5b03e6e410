"""Where custodes writes what a person asked for (an export, a disc image, a
report, an opened recording): never inside the archive, never over an
existing file it was not asked to replace, and never half a file. A bad
target is refused before anything is exported or logged."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from pathlib import Path

import pytest

from helpers import as_, request, run_cli, small_tmpfs


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("catalog.sqlite-")
    }


def ledger_size(arch: Path) -> int:
    with sqlite3.connect(arch / "catalog.sqlite") as c:
        return c.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]


def single_error_line(out, exit_code: int = 2) -> str:
    err = out.stderr.decode()
    assert out.returncode == exit_code and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def export_request(cli_archive: Path) -> int:
    assert as_("alice", "retention", "case", cli_archive, "--case", "C-3", "--segment", "1").returncode == 0
    rid = request(cli_archive, "carol", 1, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    return rid


def test_a_disc_image_never_replaces_a_file(cli_archive: Path, export_request: int, tmp_path: Path) -> None:
    obj = next(p for p in (cli_archive / "objects").rglob("*") if p.is_file())
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("not to be overwritten")
    before, size = digests(cli_archive), ledger_size(cli_archive)
    for target, says in [
        (obj, "inside the archive"),
        (cli_archive / "catalog.sqlite", "inside the archive"),
        (cli_archive / "private" / "checkpoint.key", "inside the archive"),
        (elsewhere, "already there"),
        (tmp_path / "bag" / "x.iso", "inside the bag"),
        (tmp_path / "no-such-folder" / "x.iso", "does not exist"),
    ]:
        out = as_(
            "carol",
            "export",
            cli_archive,
            "--case",
            "C-3",
            "--request",
            export_request,
            "--to",
            tmp_path / "bag",
            "--iso",
            target,
        )
        assert says in single_error_line(out), (target, out.stderr)
        assert not (tmp_path / "bag").exists()  # refused before anything was exported ...
    assert ledger_size(cli_archive) == size  # ... or logged
    assert digests(cli_archive) == before and elsewhere.read_text() == "not to be overwritten"
    # A new file beside the bag is fine, and lists with xorriso.
    out = as_(
        "carol",
        "export",
        cli_archive,
        "--case",
        "C-3",
        "--request",
        export_request,
        "--to",
        tmp_path / "bag",
        "--iso",
        tmp_path / "C-3.iso",
    )
    assert out.returncode == 0, out.stderr
    listing = subprocess.run(
        ["xorriso", "-indev", str(tmp_path / "C-3.iso"), "-find", "/", "-type", "f"], capture_output=True, text=True
    )
    assert "bagit.txt" in listing.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_an_export_or_report_inside_the_archive_is_refused(cli_archive: Path, export_request: int) -> None:
    before, size = digests(cli_archive), ledger_size(cli_archive)
    out = as_(
        "carol",
        "export",
        cli_archive,
        "--case",
        "C-3",
        "--request",
        export_request,
        "--to",
        cli_archive / "exports" / "C-3",
    )
    assert "inside the archive" in single_error_line(out)
    link = cli_archive.parent / "sneaky"
    link.symlink_to(cli_archive)
    out = as_("carol", "export", cli_archive, "--case", "C-3", "--request", export_request, "--to", link / "bag")
    assert "inside the archive" in single_error_line(out)  # a symlink does not smuggle the write in
    for target in (cli_archive / "catalog.sqlite", link / "custodes.toml"):
        out = run_cli("report", cli_archive, "--out", target)
        assert "inside the archive" in single_error_line(out)
    assert digests(cli_archive) == before and ledger_size(cli_archive) == size
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_report_is_written_whole(cli_archive: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    out_file.write_text("an older report")
    assert run_cli("report", cli_archive, "--out", out_file).returncode == 0
    assert out_file.read_text().startswith("{") and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_open_into_a_folder_copies_checks_and_never_replaces(cli_archive: Path, tmp_path: Path) -> None:
    rid = request(cli_archive, "carol", 1)
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    out = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", tmp_path / "view")
    assert out.returncode == 0, out.stderr
    copy = Path(out.stdout.decode().strip())
    with sqlite3.connect(cli_archive / "catalog.sqlite") as c:
        sha = c.execute("SELECT sha256 FROM segments WHERE id = 1").fetchone()[0]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == sha and copy.stat().st_mode & 0o777 == 0o400
    again = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", tmp_path / "view")
    assert "already there" in single_error_line(again)
    out = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", cli_archive / "objects")
    assert "inside the archive" in single_error_line(out)
    assert [p.name for p in (tmp_path / "view").iterdir()] == [copy.name]


def test_open_onto_a_full_disk_leaves_nothing_and_logs_the_failure(cli_archive: Path, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", "64k") as disk:
        rid = request(cli_archive, "carol", 1)
        assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
        out = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", disk)
        err = single_error_line(out)
        assert str(disk) in err and out.stdout == b""  # no path of a copy
        # The copy was sent before her disk refused it: the archive cannot know what her CLI kept, so it stays
        # a view, its receipt unconfirmed (test_reports_delivery has what the report makes of it).
        assert "the copy was sent, so the archive records it as handed over to you" in err
        assert list(disk.iterdir()) == []  # her CLI left nothing there
        with sqlite3.connect(cli_archive / "catalog.sqlite") as c:
            log = c.execute("SELECT action, ok FROM access_log WHERE request_id = ? ORDER BY id", (rid,)).fetchall()
        assert log == [("request", 1), ("approve", 1), ("open", 1), ("delivery_unconfirmed", 1)]
        assert run_cli("ledger", "verify", cli_archive).returncode == 0


def test_export_text_must_fit_one_bag_info_line(cli_archive: Path, export_request: int, tmp_path: Path) -> None:
    for bad in ("two\nlines", "\udcff\udcfe"):
        out = as_(
            "carol",
            "export",
            cli_archive,
            "--case",
            "C-3",
            "--request",
            export_request,
            "--to",
            tmp_path / "bag",
            "--description",
            bad,
        )
        assert out.returncode == 2 and b"Traceback" not in out.stderr and b"--description" in out.stderr
        assert not (tmp_path / "bag").exists()
    out = as_(
        "carol",
        "export",
        cli_archive,
        "--case",
        "C-3",
        "--request",
        export_request,
        "--to",
        tmp_path / "bag",
        "--description",
        "Stop at\tgate 3, 2024",
    )
    assert out.returncode == 0, out.stderr
    assert run_cli("bag", "validate", tmp_path / "bag").returncode == 0
