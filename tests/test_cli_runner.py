"""The CLI's shared pieces, in process through click's CliRunner (issue 12): the archive argument, --json and
--quiet, the one refusal mapping; and the library function behind `hash --check`, called directly.

Real files throughout: archives made by `custodes init`, footage from tests/data/footage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from custodes.checksums import ChecksumCheck, EntryCheck, check_checksum_list
from custodes.cli import Output, main
from custodes.errors import DigestListError, EvidenceNotFoundError
from custodes.identity import account_name
from helpers import FOOTAGE, request, run_cli

CLIP = FOOTAGE / "encoders" / "go-mp4-sample.mp4"
OTHER = FOOTAGE / "gopro" / "karma.mp4"


def invoke(*args: str | Path, user: str | None = None, input: bytes | None = None) -> Result:
    env = None if user is None else {"LOGNAME": user, "USER": user}  # what getpass.getuser() read, once
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(result: Result, code: int) -> str:
    """The command ended with ``code`` and exactly one ``custodes: ...`` line on stderr, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("custodes: "), result.stderr
    return lines[0]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    made = invoke("init", root, "--quiet")
    assert made.exit_code == 0, made.stderr
    return root


# --- the archive argument -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["verify"], ["ledger", "verify"], ["retention", "due"], ["task", "coverage"]])
def test_archive_argument_that_does_not_exist_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    result = invoke(*command, tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "Invalid value for 'ARCHIVE'" in result.stderr and "does not exist" in result.stderr


def test_archive_argument_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("verify", CLIP)
    assert result.exit_code == 2
    assert "Invalid value for 'ARCHIVE'" in result.stderr and "is a file" in result.stderr


@pytest.mark.parametrize(
    ("command", "options"),
    [(["verify"], []), (["ledger", "checkpoint"], []), (["access", "classify"], ["--segment", "1", "--level", "1"])],
)
def test_a_folder_that_is_no_archive_is_one_line_exit_2(tmp_path: Path, command: list[str], options: list[str]) -> None:
    folder = tmp_path / "not-an-archive"
    folder.mkdir()
    line = one_line(invoke(*command, folder, *options), 2)
    assert str(folder) in line


# --- --json ---------------------------------------------------------------------------------------------------


def test_json_output_shape(archive: Path) -> None:
    verified = invoke("verify", archive, "--json")
    assert verified.exit_code == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["checked"] == 0 and report["findings"] == []
    assert {"ok", "checked", "bytes", "findings"} <= report.keys()

    ledger = json.loads(invoke("ledger", "verify", archive, "--json").stdout)
    assert ledger["ok"] is True and ledger["findings"] == []

    due = invoke("retention", "due", archive, "--json")
    assert due.exit_code == 0 and json.loads(due.stdout) == {"due": []}


def test_json_from_hash_check_is_the_library_result(tmp_path: Path) -> None:
    listing = tmp_path / "SHA256SUMS"
    listing.write_text(f"{sha256(CLIP)}  {CLIP}\n{'0' * 64}  {OTHER}\n")
    result = invoke("hash", "--check", listing, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == check_checksum_list(listing, "sha256").to_json()


# --- --quiet --------------------------------------------------------------------------------------------------


def test_quiet_init_prints_nothing(tmp_path: Path) -> None:
    loud = invoke("init", tmp_path / "a")
    assert loud.exit_code == 0 and loud.stdout.startswith("created archive ")
    quiet = invoke("init", tmp_path / "b", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert (tmp_path / "b" / "custodes.toml").is_file()
    # --json is data asked for: --quiet does not take it away
    both = invoke("init", tmp_path / "c", "--quiet", "--json")
    assert json.loads(both.stdout)["archive"] == str(tmp_path / "c")


def test_quiet_verify_and_ledger_verify_leave_out_the_summary(archive: Path) -> None:
    # The first line says which key was trusted, and that it came from the archive itself (issue 13).
    trusted = "trusted key {} (taken from the archive itself (keys/checkpoint.vkey); pin it with --trusted-key)\n"
    fingerprint = hashlib.sha256((archive / "keys" / "checkpoint.vkey").read_text().strip().encode()).hexdigest()
    loud = invoke("verify", archive)
    assert (
        loud.exit_code == 0
        and loud.stdout
        == trusted.format(fingerprint)
        + "verification run (not recorded: nothing re-hashed): every object; executor local\n"
        + "intact: 0 objects, 0 B checked, 0 finding(s)\n"
    )
    quiet = invoke("verify", archive, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""

    loud = invoke("ledger", "verify", archive)
    assert loud.exit_code == 0 and loud.stdout == trusted.format(fingerprint) + "ledger consistent: 0 finding(s)\n"
    quiet = invoke("ledger", "verify", archive, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == ""


def test_quiet_hash_check_keeps_each_line_and_drops_the_totals(tmp_path: Path) -> None:
    listing = tmp_path / "SHA256SUMS"
    listing.write_text(f"{sha256(CLIP)}  {CLIP}\n{'0' * 64}  {OTHER}\n")
    loud = invoke("hash", "--check", listing)
    quiet = invoke("hash", "--check", listing, "--quiet")
    assert loud.exit_code == quiet.exit_code == 1
    assert loud.stdout == quiet.stdout == f"{CLIP}: OK\n{OTHER}: FAILED\n"
    assert loud.stderr == "custodes: WARNING: 1 computed checksum(s) did NOT match\n"
    assert quiet.stderr == ""


def test_quiet_never_hides_errors(tmp_path: Path) -> None:
    listing = tmp_path / "SHA256SUMS"
    missing = tmp_path / "gone.mp4"
    listing.write_text(f"{sha256(CLIP)}  {missing}\n")
    quiet = invoke("hash", "--check", listing, "--quiet")
    assert quiet.exit_code == 1
    assert quiet.stdout == f"{missing}: FAILED open or read\n"
    assert quiet.stderr.startswith(f"custodes: {missing}: ") and "WARNING" not in quiet.stderr


def test_quiet_timeline_drops_the_stderr_summary(tmp_path: Path) -> None:
    volume = tmp_path / "BWC0001"
    volume.mkdir()
    shutil.copy(CLIP, volume / CLIP.name)
    loud = invoke("timeline", volume)
    quiet = invoke("timeline", volume, "--quiet")
    assert loud.exit_code == quiet.exit_code
    assert loud.stdout == quiet.stdout
    assert "segments on 1 volume(s)" in loud.stderr
    assert quiet.stderr == ""


def test_quiet_ingest_keeps_the_summary_and_drops_the_checkpoint_line(tmp_path: Path) -> None:
    volume = tmp_path / "BWC0001"
    volume.mkdir()
    shutil.copy(CLIP, volume / CLIP.name)
    lines = {}
    for name, flags in (("loud", []), ("quiet", ["--quiet"])):
        assert invoke("init", tmp_path / name, "-q").exit_code == 0
        result = invoke("ingest", volume, "--archive", tmp_path / name, *flags)
        assert result.exit_code in (0, 1), (result.stderr, result.exception)
        lines[name] = result.stdout.splitlines()
    assert any(line.startswith("  checkpoint: ") for line in lines["loud"])
    assert lines["quiet"] == [line for line in lines["loud"] if not line.startswith("  checkpoint: ")]
    assert " 1 stored " in lines["quiet"][0]


def test_quiet_that_cannot_mean_anything_is_accepted_and_says_so(archive: Path) -> None:
    plain = invoke("retention", "due", archive)
    quiet = invoke("retention", "due", archive, "-q")
    assert plain.exit_code == quiet.exit_code == 0 and plain.stdout == quiet.stdout
    shown = invoke("retention", "due", "--help")
    assert "Accepted for compatibility" in " ".join(shown.stdout.split())


def test_output_is_one_small_frozen_object() -> None:
    out = Output(json=False, quiet=True, progress=False)
    with pytest.raises(AttributeError):
        out.quiet = False  # type: ignore[misc]
    assert out.progress_line().enabled is False


# --- refusals -------------------------------------------------------------------------------------------------


def test_a_refusal_is_exit_1_and_one_line(archive: Path) -> None:
    # The archive's policy names nobody, so whoever asks has no role: refused, and the refusal is logged.
    # The person is this process's account, whatever LOGNAME and USER say (issue 13).
    result = invoke("access", "request", archive, "--segment", "1", "--reason", "complaint 17", user="mallory")
    line = one_line(result, 1)
    assert line == f"custodes: refused: {account_name(os.getuid())} has no role in this archive's policy"
    assert result.stdout == ""
    # logged in the ledger: it is still consistent, and holds the refusal
    assert invoke("ledger", "verify", archive, "-q").exit_code == 0


def test_a_bad_request_is_still_exit_2(archive: Path) -> None:
    result = invoke("retention", "due", archive, "--at", "yesterday")
    line = one_line(result, 2)
    assert "--at" in line


# --- the library behind `hash --check` ------------------------------------------------------------------------


def test_check_checksum_list_reports_each_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    listing = tmp_path / "SHA256SUMS"
    listing.write_bytes(
        f"{sha256(CLIP)}  {CLIP}\n"  # good
        f"{sha256(CLIP)}  {OTHER}\n"  # a digest that does not match
        f"{sha256(CLIP)}  {missing}\n"  # a file that is not there
        "this is not a checksum line\n"  # malformed
        "# a comment\n".encode()
    )
    check = check_checksum_list(listing, "sha256")
    assert isinstance(check, ChecksumCheck) and all(isinstance(e, EntryCheck) for e in check.entries)
    good, mismatch, gone = check.entries
    assert (good.status, good.ok, good.actual, good.error) == ("ok", True, sha256(CLIP), None)
    assert (mismatch.status, mismatch.actual, mismatch.entry.digest) == ("failed", sha256(OTHER), sha256(CLIP))
    assert gone.status == "missing" and gone.actual is None and isinstance(gone.error, EvidenceNotFoundError)
    assert [e.entry.line_no for e in check.entries] == [1, 2, 3]
    assert check.malformed == (4,)
    assert not check.ok
    assert (check.count("ok"), check.count("failed"), check.count("missing"), check.count("unreadable")) == (1, 1, 1, 0)
    assert check.to_json()["files"][2]["error"]["kind"] == "not_found"


def test_check_checksum_list_all_good(tmp_path: Path) -> None:
    listing = tmp_path / "B3SUMS"
    listing.write_text(f"SHA256 ({CLIP}) = {sha256(CLIP)}\n")
    check = check_checksum_list(listing, "blake3")  # a tagged line names its own algorithm
    assert check.ok and check.entries[0].entry.algorithm == "sha256"


def test_check_checksum_list_refuses_a_list_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(DigestListError, match="no properly formatted sha256 checksum lines"):
        check_checksum_list(tmp_path / "list", "sha256", data=b"not a checksum line\n")
    with pytest.raises(DigestListError, match="cannot read checksum list"):
        check_checksum_list(tmp_path / "absent", "sha256")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: refused at once, never waited on
    with pytest.raises(DigestListError, match="not a regular file"):
        check_checksum_list(fifo, "sha256")


def _leaf_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _leaf_commands(cmd, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", cmd))
    return out


def test_every_command_takes_json_and_quiet() -> None:
    # The README promises it of every command; a hostile user found ten without (issue 12).
    commands = _leaf_commands(main)
    assert len(commands) > 25
    missing = {
        name: sorted({"--json", "--quiet"} - {o for p in cmd.params for o in getattr(p, "opts", [])})
        for name, cmd in commands
    }
    assert {name: m for name, m in missing.items() if m} == {}


def test_custody_commands_print_one_json_object(cli_archive: Path) -> None:
    def as_json(user: str, *args: object) -> dict:
        out = run_cli(*args, "--json", user=user)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # exactly one object: json.loads refuses trailing data

    assert as_json("alice", "retention", "hold", cli_archive, "--segment", "2", "--reason", "court order") == {
        "hold": 1,
        "segment": 2,
    }
    assert as_json("bob", "retention", "release", cli_archive, "--hold", "1") == {"hold": 1, "released": True}
    assert as_json("alice", "access", "classify", cli_archive, "--segment", "3", "--level", "1") == {
        "segment": 3,
        "level": 1,
    }
    assert as_json("alice", "retention", "long-term", cli_archive, "--segment", "3", "--reason", "complaint") == {
        "segment": 3,
        "long_term": "complaint",
    }
    case = as_json("alice", "retention", "case", cli_archive, "--case", "C-9", "--segment", "1", "--segment", "1")
    assert case == {"case": "C-9", "segments": [1], "until": None}
    rid = request(cli_archive, "dave", 1)
    denied = as_json("bob", "access", "deny", cli_archive, str(rid), "--reason", "not needed")
    assert denied["id"] == rid and denied["status"] == "denied"
    quiet = run_cli("retention", "hold", cli_archive, "--segment", "1", "--reason", "again", "-q", user="alice")
    assert quiet.returncode == 0 and quiet.stdout == b"hold 2 on segment 1\n"  # the new id is the data asked for
    report = as_json("alice", "report", cli_archive, "--format", "json", "--out", cli_archive.parent / "r.json")
    assert report["out"] == str(cli_archive.parent / "r.json") and report["format"] == "json"
    assert json.loads((cli_archive.parent / "r.json").read_text())["report"] == "custodes compliance report"


def test_a_ledger_checkpoint_the_disk_refused_to_sign_says_nothing_was_signed(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ledger checkpoint`'s signing is its one act: where its transaction failed (SQLite's "database or disk is
    full", as a full disk gives it), it said "what this command recorded stands, so do not repeat an act", telling
    a person not to do the one thing to do (a hostile review). Now: nothing was signed, free space, run it again."""
    import sqlite3

    from custodes.archive import Archive

    def full(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Archive, "sign_within", full)
    said = one_line(invoke("ledger", "checkpoint", archive), 2)
    assert said.endswith(
        "signing the ledger's checkpoint: nothing was signed; free space on the disk, then run the command again"
    ), said
    assert "do not repeat" not in said
