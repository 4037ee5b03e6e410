"""Issue 10: clear errors instead of tracebacks, through the real CLI.

Every case here was once a Python traceback. Each must now end with the
exact exit code (2: usage or environment; 1: a logged refusal), one line on
stderr naming the file or value and what to do, and nothing stored that
should not be (evidence is never modified or lost).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import open_archive
from custodes.hashing import clamp_workers, max_workers
from helpers import (
    FOOTAGE,
    PEOPLE_AND_ROOT,
    THREE_RECORDINGS,
    as_,
    build_cli_archive,
    catalog_edit,
    catalog_rows,
    fill,
    one_line_error,
    peer,
    request,
    run_cli,
    serve,
    small_ext4,
    small_tmpfs,
    stop_service,
)


def bad_option(out: subprocess.CompletedProcess[bytes], option: str, pattern: str) -> None:
    """click's usage error for a bad option value: exit 2, the option and the value named."""
    err = out.stderr.decode()
    assert out.returncode == 2, (out.stdout, err)
    assert "Traceback" not in err, err
    assert re.search(rf"Invalid value for '{re.escape(option)}': {pattern}", err), err


def objects(arch: Path) -> dict[str, bytes]:
    return {str(p.relative_to(arch)): p.read_bytes() for p in sorted((arch / "objects").rglob("*")) if p.is_file()}


# 1 and 3: one mapping for every command; a damaged catalog, a missing verifier key, no checkpoint.


@pytest.mark.parametrize(
    "command",
    [["verify"], ["ledger", "verify"], ["ledger", "checkpoint"], ["retention", "status"], ["task", "coverage"]],
)
def test_corrupt_catalog_is_one_line_naming_it(two_clip_archive: Path, command: list[str]) -> None:
    stored = objects(two_clip_archive)
    for side in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (two_clip_archive / side).unlink(missing_ok=True)
    (two_clip_archive / "catalog.sqlite").write_bytes(b"\x13\x37 not sqlite at all " * 300)
    out = run_cli(*command, two_clip_archive)
    one_line_error(
        out,
        rf"the catalog is damaged: file is not a database \({re.escape(str(two_clip_archive / 'catalog.sqlite'))}\): "
        "restore catalog.sqlite from a backup",
    )
    assert objects(two_clip_archive) == stored  # the evidence is untouched


@pytest.mark.parametrize("table", ["ledger", "segments", "checkpoints"])
def test_a_dropped_table_is_a_damaged_catalog_not_a_traceback(two_clip_archive: Path, table: str) -> None:
    # Found by a hostile user: `drop table ledger` made verify a Python traceback.
    with catalog_edit(two_clip_archive, foreign_keys=False) as c:
        c.execute(f"DROP TABLE {table}")
    catalog = re.escape(str(two_clip_archive / "catalog.sqlite"))
    checks = [["verify", two_clip_archive], ["ledger", "verify", two_clip_archive]]
    if table == "segments":  # a fact table: verify replays the ledger and names every segment it lost (catalog.replay)
        for command in checks:
            out = run_cli(*command, "--json")
            found = [(f["kind"], f["table"], f["row"]) for f in json.loads(out.stdout)["findings"]]
            lost = [("missing", "segments", None), ("missing", "segments", [1]), ("missing", "segments", [2])]
            assert (out.returncode, found) == (1, lost)  # the table (the schema check), then each row
        checks = []
    if table == "checkpoints":  # the schema check names it; every signed note is still checked from its file
        for command in checks:
            out = run_cli(*command, "--json")
            assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr
            found = {(f["kind"], f["table"]) for f in json.loads(out.stdout)["findings"]}
            assert ("missing", "checkpoints") in found and {k for k, _ in found} <= {"missing", "checkpoint_mismatch"}
        checks = []
    for command in [*checks, ["report", two_clip_archive, "--out", two_clip_archive.parent / "r.json"]]:
        one_line_error(run_cli(*command), rf"the catalog is damaged: no such table: {table} \({catalog}\)")


def test_missing_verifier_key(two_clip_archive: Path) -> None:
    (two_clip_archive / "keys" / "checkpoint.vkey").unlink()
    for command in (
        ["verify", two_clip_archive],
        ["ledger", "proof", two_clip_archive, "--entry", "0"],
        ["report", two_clip_archive, "--out", two_clip_archive.parent / "r.json"],
    ):
        one_line_error(
            run_cli(*command), r"keys/checkpoint\.vkey: the verifier key is missing; restore it from a backup"
        )
    assert not (two_clip_archive.parent / "r.json").exists()


def test_ledger_proof_without_a_checkpoint(two_clip_archive: Path) -> None:
    (two_clip_archive / "ledger" / "checkpoint").unlink()
    one_line_error(
        run_cli("ledger", "proof", two_clip_archive, "--entry", "0"),
        r"ledger/checkpoint: no signed checkpoint to prove against; .*`custodes ledger checkpoint`",
    )
    assert run_cli("ledger", "checkpoint", two_clip_archive).returncode == 0
    proof = run_cli("ledger", "proof", two_clip_archive, "--entry", "0")
    assert proof.returncode == 0 and json.loads(proof.stdout)["inclusion"]["index"] == 0


def test_permission_denied_on_the_catalog_is_one_line(two_clip_archive: Path) -> None:
    (two_clip_archive / "catalog.sqlite").chmod(0o444)
    two_clip_archive.chmod(0o555)
    try:
        out = run_cli(
            "retention",
            "hold",
            two_clip_archive,
            "--segment",
            "1",
            "--reason",
            "litigation",
            obey_permissions=True,
        )
    finally:
        two_clip_archive.chmod(0o755)
        (two_clip_archive / "catalog.sqlite").chmod(0o644)
    one_line_error(
        out,
        rf"cannot write the catalog: it is read-only here \({re.escape(str(two_clip_archive))}/catalog\.sqlite\); "
        "nothing was recorded: "
        rf"{re.escape(str(two_clip_archive))} cannot be written by this account \(its owner or mode\): run as the "
        "account that keeps the archive",
    )
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM holds") == [(0,)]


@pytest.mark.parametrize("how", ["read-only", "another account's"])
def test_an_ingest_into_an_archive_whose_tmp_cannot_take_a_file_is_refused_before_it_records(
    tmp_path: Path, how: str
) -> None:
    # A hostile review: the ingest recorded a failed copy for each file, then stopped at the checkpoint with a
    # message about the checkpoint files alone (`ingest --json` printed no JSON; verify then said "pending").
    # A second: tmp/ another account's (0700) stopped the spool sweep before that, with the disk's words alone.
    arch = build_cli_archive(tmp_path / "archive", people=PEOPLE_AND_ROOT)
    vol = tmp_path / "BWC0001"
    vol.mkdir()
    shutil.copy(THREE_RECORDINGS[0], vol / THREE_RECORDINGS[0].name)
    entries = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
    if how == "read-only":
        (arch / "tmp").chmod(0o555)
    else:
        os.chown(arch / "tmp", 65534, -1)
    try:
        out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json", obey_permissions=True)
    finally:
        (arch / "tmp").chmod(0o700)
        os.chown(arch / "tmp", os.getuid(), -1)
    one_line_error(
        out,
        rf"Permission denied: the archive's tmp/ folder cannot take a new file \({re.escape(str(arch))}/tmp\): "
        r"nothing was recorded\. Give it back to the archive's account",
    )
    assert out.stdout == b""
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == entries
    assert list((arch / "tmp").iterdir()) == []  # no probe left behind
    # Given back, the same ingest stores the file and the archive verifies clean.
    assert run_cli("ingest", vol, "--archive", arch, "--driver", "generic").returncode in (0, 1)
    assert catalog_rows(arch, "SELECT COUNT(*) FROM segments") == [(1,)]
    assert run_cli("verify", arch).returncode == 0


def _broken_place(arch: Path, place: str, stack: contextlib.ExitStack) -> None:
    """One of the places an act needs after it is recorded, made unusable (undone when ``stack`` closes)."""
    if place == "tmp read-only":
        (arch / "tmp").chmod(0o555)
        stack.callback((arch / "tmp").chmod, 0o700)
    elif place == "checkpoints read-only":
        (arch / "ledger" / "checkpoints").chmod(0o555)
        stack.callback((arch / "ledger" / "checkpoints").chmod, 0o700)
    elif place == "tmp on another disk":
        stack.enter_context(small_tmpfs(arch / "tmp", "1m"))
    elif place == "key unreadable":
        key = arch / "private" / "checkpoint.key"
        key.chmod(0o000)
        stack.callback(key.chmod, 0o400)
    elif place in ("checkpoint immutable", "ledger append-only", "tmp append-only"):
        flagged = {"checkpoint": arch / "ledger" / "checkpoint", "ledger": arch / "ledger", "tmp": arch / "tmp"}
        where, flag = flagged[place.split()[0]], "+i" if "immutable" in place else "+a"
        if subprocess.run(["chattr", flag, str(where)], capture_output=True).returncode != 0:
            pytest.skip(f"chattr {flag} is not supported here")
        stack.callback(subprocess.run, ["chattr", "-i", "-a", str(where)], check=True)
    elif place == "ledger shut":
        (arch / "ledger").chmod(0o000)
        stack.callback((arch / "ledger").chmod, 0o700)
    elif place == "key readable by others":
        key = arch / "private" / "checkpoint.key"
        key.chmod(0o644)
        stack.callback(key.chmod, 0o600)
    elif place == "private writable by others":
        (arch / "private").chmod(0o777)
        stack.callback((arch / "private").chmod, 0o700)
    elif place == "private shut":
        (arch / "private").chmod(0o000)
        stack.callback((arch / "private").chmod, 0o700)
    elif place == "private not a folder":
        (arch / "private").rename(arch.parent / "private-kept")
        (arch / "private").write_text("")
        stack.callback(lambda: ((arch / "private").unlink(), (arch.parent / "private-kept").rename(arch / "private")))


@pytest.mark.parametrize(
    ("place", "said"),
    [
        ("tmp read-only", r"Permission denied: the archive's tmp/ folder cannot take a new file \(.*/tmp\)"),
        (
            "checkpoints read-only",
            r"the ledger's checkpoint files cannot be written into this folder \(.*/checkpoints\)",
        ),
        ("tmp on another disk", r"renamed here from tmp/, on another filesystem \(.*/ledger\)"),
        ("key unreadable", r"checkpoint\.key: the signing key cannot be read \(Permission denied\)"),
        ("private shut", r"checkpoint\.key: the signing key cannot be read \(Permission denied\)"),
        # Refused by the disk as the archive opens, the folder that refused named (it was ledger/checkpoints).
        ("ledger shut", r"permission denied \(.*/ledger\): .*the archive could not be opened"),
        ("key readable by others", r"checkpoint\.key: mode 0644: readable or writable by others: .* signs nothing"),
        ("private writable by others", r"private: mode 0777: writable by others: the folder that holds the signing"),
        ("private not a folder", r"checkpoint\.key: the signing key cannot be read \(Not a directory\)"),
        (
            "checkpoint immutable",
            r"immutable \(chattr\): custodes cannot replace or remove a file there \(.*/ledger/checkpoint\)",
        ),
        ("ledger append-only", r"append-only \(chattr\): custodes cannot replace or remove a file there \(.*/ledger\)"),
        ("tmp append-only", r"append-only \(chattr\): custodes cannot replace or remove a file there \(.*/tmp\)"),
    ],
)
def test_an_act_whose_checkpoint_could_not_be_made_is_refused_before_it_is_recorded(
    two_clip_archive: Path, place: str, said: str
) -> None:
    """A hostile review: a hold (so an access request, a policy change) was recorded, then the command failed at
    its checkpoint: unsigned entries `ledger verify` refused until a later act signed them, the new id never
    shown (no --json output), and a traceback where private/ was a file. Now the act is refused before it is
    recorded, one line naming the place, and done once the place is given back."""
    arch = two_clip_archive
    entries = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
    hold = ("retention", "hold", arch, "--segment", "1", "--reason", "litigation", "--json")
    with contextlib.ExitStack() as stack:
        _broken_place(arch, place, stack)
        out = run_cli(*hold, obey_permissions=True)
    one_line_error(out, said + r".*[:;] nothing was recorded")
    assert out.stdout == b""
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == entries
    assert catalog_rows(arch, "SELECT COUNT(*) FROM holds") == [(0,)]
    assert run_cli("ledger", "verify", arch).returncode == 0
    assert [p.name for p in (arch / "tmp").iterdir() if p.name.endswith("-probe")] == []  # (an append-only tmp/)
    done = run_cli(*hold)
    assert done.returncode == 0 and json.loads(done.stdout)["hold"] == 1, done.stderr
    assert run_cli("ledger", "verify", arch).returncode == 0


def test_a_refusal_on_an_archive_not_ready_to_record_is_said_first(cli_archive: Path) -> None:
    """root, the auditor, may not hold; tmp/ cannot take a file, so the refusal cannot be recorded: both said,
    the refusal first (a hostile review: only the place's "nothing was recorded"; the refusal never shown)."""
    entries = catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")
    with contextlib.ExitStack() as stack:
        _broken_place(cli_archive, "tmp read-only", stack)
        out = run_cli("retention", "hold", cli_archive, "--segment", "1", "--reason", "x", obey_permissions=True)
    one_line_error(
        out,
        r"^custodes: refused: root may not hold \(needs custodian or approver\); and this refusal could not be "
        r"recorded either: Permission denied: the archive's tmp/ folder cannot take a new file .*nothing was recorded",
    )
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger") == entries
    out = run_cli("retention", "hold", cli_archive, "--segment", "1", "--reason", "x")  # recorded, given back
    assert out.returncode == 1 and b"refused: root may not hold" in out.stderr, out.stderr
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger") == [(entries[0][0] + 1,)]


def test_a_key_rotation_whose_new_key_cannot_be_written_records_nothing(two_clip_archive: Path) -> None:
    """private/ at 0500: the old key reads, the new one cannot be written; said so, nothing recorded (a hostile
    review: "permission denied" alone)."""
    private = two_clip_archive / "private"
    entries = catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM ledger")
    private.chmod(0o500)
    try:
        out = run_cli("ledger", "rotate-key", two_clip_archive, obey_permissions=True)
    finally:
        private.chmod(0o700)
    one_line_error(
        out, r"private/checkpoint\.key\.[0-9a-f]+: the new key file cannot be written \(Permission denied\): nothing"
    )
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM ledger") == entries
    assert [p.name for p in private.iterdir()] == ["checkpoint.key"]
    assert run_cli("ledger", "rotate-key", two_clip_archive).returncode == 0


def test_a_file_in_the_next_checkpoint_s_place_is_said_not_passed_over(two_clip_archive: Path) -> None:
    """A junk file named as the next checkpoint (tampering): the hold is recorded, and its checkpoint file is said
    not written, naming the file, which is left as it is (a hostile review: the hold reported done, the file
    never written). Moved aside, `ledger checkpoint` writes it and the ledger verifies."""
    arch = two_clip_archive
    (size,) = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")[0]
    junk = arch / "ledger" / "checkpoints" / str(size + 1)
    junk.write_text("planted\n")
    out = run_cli("retention", "hold", arch, "--segment", "1", "--reason", "litigation")
    one_line_error(
        out,
        rf"another file is already there under this name, left as it is \(.*checkpoints/{size + 1}\) writing the "
        r"ledger's checkpoint files: what this command recorded stands, so do not repeat an act; move that file "
        r"aside, and keep it",
    )
    assert junk.read_text() == "planted\n" and catalog_rows(arch, "SELECT COUNT(*) FROM holds") == [(1,)]
    junk.rename(arch.parent / "kept-aside")
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    assert run_cli("ledger", "verify", arch).returncode == 0


def test_a_key_reached_through_a_link_into_an_open_folder_or_proposed_there_signs_nothing(
    two_clip_archive: Path, tmp_path: Path
) -> None:
    """The folder a key lives in decides who may swap or delete it (a hostile review: a policy moved the key into
    a 0777 folder and signing went on until another account deleted it; a link from private/ into such a folder
    was not even flagged by verify)."""
    arch = two_clip_archive
    key = arch / "private" / "checkpoint.key"
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    shutil.copy2(key, open_folder / "k.key")
    text = (arch / "custodes.toml").read_text()
    proposed = tmp_path / "moved.toml"
    proposed.write_text(text.replace('signing_key = "private/checkpoint.key"', f'signing_key = "{open_folder}/k.key"'))
    one_line_error(
        run_cli("policy", "set", arch, proposed),
        rf"moved\.toml: \[keys\] signing_key = .*: {open_folder}: mode 0777: writable by others: another account",
    )
    # A 0700 folder inside the open one: whoever may write the open one may rename it away (a second review).
    (open_folder / "sub").mkdir(mode=0o700)
    proposed.write_text(
        text.replace('signing_key = "private/checkpoint.key"', f'signing_key = "{open_folder}/sub/k.key"')
    )
    shutil.copy2(key, open_folder / "sub" / "k.key")
    one_line_error(
        run_cli("policy", "set", arch, proposed),
        rf"moved\.toml: \[keys\] signing_key = .*: {open_folder}: mode 0777: writable by others: another account",
    )
    key.rename(tmp_path / "kept.key")
    key.symlink_to(open_folder / "k.key")
    entries = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
    out = run_cli("retention", "hold", arch, "--segment", "1", "--reason", "litigation")
    one_line_error(out, rf"{open_folder}: mode 0777: writable by others: the folder that holds the signing key")
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == entries
    found = json.loads(run_cli("verify", arch, "--json").stdout)["findings"]
    assert [f for f in found if f["kind"] == "unprotected" and f["message"].startswith(f"{open_folder}: ")], found


def test_a_key_rotation_whose_entry_is_not_recorded_leaves_no_key(two_clip_archive: Path) -> None:
    """The catalog immutable: the rotation's entry cannot commit, and the new key it wrote is removed (a hostile
    review: a stray private key each try, no entry naming it)."""
    catalog = two_clip_archive / "catalog.sqlite"
    if subprocess.run(["chattr", "+i", str(catalog)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        out = run_cli("ledger", "rotate-key", two_clip_archive)
    finally:
        subprocess.run(["chattr", "-i", str(catalog)], check=True)
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
    assert [p.name for p in (two_clip_archive / "private").iterdir()] == ["checkpoint.key"]


@pytest.mark.parametrize("place", ["key unreadable", "private shut", "private not a folder"])
def test_what_never_signs_runs_without_the_signing_key(two_clip_archive: Path, tmp_path: Path, place: str) -> None:
    """verify, `ledger verify` and report read no key (a hostile review: private/ at 0000 stopped all three with
    "permission denied (private/checkpoint.key)", while a missing key stopped none)."""
    with contextlib.ExitStack() as stack:
        _broken_place(two_clip_archive, place, stack)
        for command in (
            ["verify", two_clip_archive],
            ["ledger", "verify", two_clip_archive],
            ["report", two_clip_archive, "--format", "json", "--out", tmp_path / "report.json"],
        ):
            out = run_cli(*command, obey_permissions=True)
            assert out.returncode == 0 and out.stderr == b"", (command, out.stderr)


def test_a_store_folder_that_cannot_be_written_is_named_by_its_whole_path(tmp_path: Path) -> None:
    """objects/sha256 not writable: the file's ingest_failed finding said "Permission denied: 'b2'" (a hostile
    review), the folder's last name alone. It names the folder."""
    arch = build_cli_archive(tmp_path / "archive", people=None)
    vol = tmp_path / "BWC0001"
    vol.mkdir()
    shutil.copy(THREE_RECORDINGS[0], vol / "clip.mp4")
    sha = hashlib.sha256((vol / "clip.mp4").read_bytes()).hexdigest()
    (arch / "objects" / "sha256").chmod(0o555)
    try:
        out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json", obey_permissions=True)
    finally:
        (arch / "objects" / "sha256").chmod(0o700)
    (failed,) = [f for f in json.loads(out.stdout)["findings"] if f["kind"] == "ingest_failed"]
    assert f"Permission denied: '{arch}/objects/sha256/{sha[:2]}'" in failed["message"], failed


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # `hash --check -` blocks reading standard input: a real place for a user to press Ctrl-C.
    proc = subprocess.Popen(
        [sys.executable, "-m", "custodes", "hash", "--check", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as at a terminal: a run started in the background (`cmd &`, mutmut) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until it sits in read(0, ...), so Python's handler is in place
            fields = Path(f"/proc/{proc.pid}/syscall").read_text().split()
            if fields[:2] in (["0", "0x0"], ["63", "0x0"]):  # read on fd 0 (x86-64, arm64)
                break
            time.sleep(0.05)
        else:
            pytest.fail("custodes never started reading standard input")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and err.decode().splitlines() == [
        "custodes: interrupted; run the command again to finish"
    ]


def test_ctrl_c_pressed_again_and_again_during_an_ingest_stops_it_once(tmp_path: Path) -> None:
    """Six presses, 50 ms apart, while an ingest copies: one line, exit 130, no traceback (a hostile review: from
    the third press the copies' threads were left running and the interpreter's exit printed one), nothing left
    copying in the spool, and the re-run stores every file."""
    card, arch = tmp_path / "card", tmp_path / "archive"
    card.mkdir()
    for i in range(12):
        (card / f"CLIP{i:04d}.bin").write_bytes(os.urandom(24 * 2**20))
    assert run_cli("init", arch).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "custodes", "ingest", card, "--archive", arch, "--driver", "generic", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not any((arch / "tmp").glob("*CLIP*")):  # the first copy is under way
            assert proc.poll() is None and time.monotonic() < deadline, "the ingest ended before copying"
            time.sleep(0.005)
        for _ in range(6):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.decode().splitlines() == ["custodes: interrupted; run the command again to finish"]
    again = run_cli("ingest", card, "--archive", arch, "--driver", "generic", "--json")
    assert again.returncode in (0, 1), again.stderr.decode()  # (1: random bytes named .bin are no recordings)
    report = json.loads(again.stdout)
    assert sorted(report["stored"] + report["already_present"]) == sorted(p.name for p in card.iterdir())
    assert run_cli("verify", arch).returncode == 0
    assert not list((arch / "tmp").iterdir())


def test_ctrl_c_stops_the_copy_of_a_large_file_at_its_next_buffer(tmp_path: Path) -> None:
    """Ctrl-C while ingest copies one large file: the copy stops where it is, not at the file's end (a hostile
    review: 100 MB into 5.4 GB, the copy ran on for 8.8 s before the exit). A sparse file of 16 GiB reads at memory
    speed: copied and hashed whole it takes some ten seconds here; stopped, the command ends at once, exit 130,
    nothing left in the spool, nothing recorded."""
    card, arch = tmp_path / "card", tmp_path / "archive"
    card.mkdir()
    with open(card / "LONG0001.bin", "wb") as f:
        f.truncate(16 << 30)
    assert run_cli("init", arch).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "custodes", "ingest", card, "--archive", arch, "--driver", "generic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while sum(p.stat().st_size for p in (arch / "tmp").glob("*LONG*")) < 64 << 20:  # well under way
            assert proc.poll() is None and time.monotonic() < deadline, "the ingest ended before copying"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        asked = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - asked
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert took < 5, f"{took:.1f} s from Ctrl-C to the exit: the copy ran on"
    assert not list((arch / "tmp").iterdir()) and catalog_rows(arch, "SELECT count(*) FROM segments") == [(0,)]


def test_the_cli_run_inside_a_program_leaves_its_ctrl_c_as_it_was() -> None:
    """The CLI hears only the first Ctrl-C of a command (above), and only while the command runs: run inside
    another program (click's runner here), Python's own handler is back when it returns."""
    from click.testing import CliRunner

    from custodes.cli import main

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert CliRunner().invoke(main, ["--version"]).exit_code == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_command_done_leaves_with_ctrl_c_ignored() -> None:
    """Run as `custodes`, a command whose work is done leaves with SIGINT ignored: Python puts SIG_DFL back for its
    own handler as it shuts down, and a press then killed a finished verify or ingest (exit 130, not a word; a
    hostile review)."""
    leaving = (
        "import signal, sys\n"
        "sys.argv = ['custodes', '--version']\n"
        "from custodes.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    out = subprocess.run([sys.executable, "-c", leaving], capture_output=True, check=True)
    assert out.stdout.decode().splitlines()[-1] == "True", out.stdout


# 2: a full disk, on a real small file system.


@pytest.fixture
def small_disk(tmp_path: Path):
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        yield disk


@pytest.mark.parametrize("size", ["120k", "300k"])
def test_init_on_a_nearly_full_disk_says_the_disk_is_full(tmp_path: Path, size: str) -> None:
    """The catalog's schema made step by step on a disk that fills on the way: said as a full disk, not as a
    schema step that failed (a hostile review: "bringing its schema from version 3 to 4 failed"); nothing kept."""
    with small_tmpfs(tmp_path / "nearly", size) as disk:
        out = run_cli("init", disk / "archive")
        one_line_error(out, r"the disk is full \(.*archive.*\): free space on it, then run the command again")
        assert "schema" not in out.stderr.decode() and list(disk.iterdir()) == []


def test_every_archive_command_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    arch = build_cli_archive(
        small_disk / "archive",
        people=PEOPLE_AND_ROOT,
        recordings=THREE_RECORDINGS[:2],
        volume=tmp_path / "BWC0001",
        ingest_exit=(0, 1),
    )
    before = objects(arch)
    segments = catalog_rows(arch, "SELECT id, sha256 FROM segments ORDER BY id")
    ledger_size = catalog_rows(arch, "SELECT COUNT(*) FROM ledger")
    vol2 = tmp_path / "BWC0002"
    vol2.mkdir()
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol2 / "bt601.mov")
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(
        "id,type,start,end,officers,devices\nT1,patrol,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,,BWC0001\n"
    )
    full = r"the disk is full \(.*archive.*\): free space on it, then run the command again"
    report = tmp_path / "report.json"
    for command in (
        ["ingest", vol2, "--archive", arch, "--driver", "generic"],
        ["ledger", "checkpoint", arch],
        ["access", "request", arch, "--segment", "1", "--reason", "complaint 7"],
        ["retention", "hold", arch, "--segment", "1", "--reason", "litigation"],
        ["task", "import", arch, tasks],
    ):
        fill(small_disk)
        one_line_error(run_cli(*command), full)  # root: the custodian of PEOPLE_AND_ROOT, embedded
    # Readers answer, and correctly: opening the catalog needs its WAL shared-memory file, and where the full
    # disk has no room for it the catalog is read as it is (they stopped with the line above before; verify,
    # which records its run, too: test_verify_on_a_full_disk_verifies_and_records_nothing).
    for command, answered in (
        (["ledger", "verify", arch], lambda out: out.stdout.endswith(b")\nledger consistent: 0 finding(s)\n")),
        (["report", arch, "--out", report], lambda out: json.loads(report.read_bytes())["integrity"] is not None),
        (["verify", arch], lambda out: out.stdout.endswith(b"intact: 2 objects, 107.4 KiB checked, 0 finding(s)\n")),
    ):
        fill(small_disk)
        out = run_cli(*command)
        assert out.returncode == 0 and out.stderr == b"" and answered(out), (out.stdout, out.stderr)
    (small_disk / "filler").unlink()
    intact = run_cli("verify", arch, "--json")
    assert intact.returncode == 0, intact.stdout
    assert json.loads(intact.stdout)["ok"] is True
    assert objects(arch) == before
    assert catalog_rows(arch, "SELECT id, sha256 FROM segments ORDER BY id") == segments
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ledger") == ledger_size  # nothing half-recorded
    # With space again, the commands that failed do their work.
    assert run_cli("ingest", vol2, "--archive", arch, "--driver", "generic").returncode in (0, 1)
    assert run_cli("task", "import", arch, tasks).returncode == 0
    assert run_cli("verify", arch).returncode == 0


@pytest.mark.parametrize("shm", ["none", "held"])
def test_verify_on_a_full_disk_verifies_and_records_nothing(small_disk: Path, tmp_path: Path, shm: str) -> None:
    """A full disk is when an archive most wants checking: verify stopped with "the disk is full" and checked
    nothing (SQLite could not size the catalog's -shm file, "disk I/O error"). Now the catalog is read as it is
    (``none``: no -shm yet), or, where one is there and its stamps meet the full disk (``held``: another connection
    open, as a running service's), recording stops: every object is re-hashed all the same, a modified one found,
    and the run is "not recorded: the disk is full". With room again, the next verify records its run."""
    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:2], volume=tmp_path / "BWC0001")
    runs = catalog_rows(arch, "SELECT COUNT(*) FROM verify_runs")
    victim = sorted(p for p in (arch / "objects").rglob("*") if p.is_file())[0]
    victim.chmod(0o600)
    with open(victim, "r+b") as f:  # the same size: a change the full disk lets through
        f.seek(10)
        f.write(b"\xff" if f.read(1) != b"\xff" else b"\x00")
    held = sqlite3.connect(arch / "catalog.sqlite") if shm == "held" else None
    try:
        if held is not None:
            held.execute("SELECT COUNT(*) FROM objects").fetchone()  # its -wal and -shm made, and kept open
        fill(small_disk)
        out = run_cli("verify", arch, "--json")
        assert out.returncode == 1 and out.stderr == b"", out.stderr
        said = json.loads(out.stdout)
        assert said["checked"] == 2 and said["run"]["not_recorded"] == "the disk is full", said["run"]
        assert said["run"]["id"] is None  # (held: it named the run its rolled-back stamp had started, a review)
        assert {(f["kind"], f["object"]) for f in said["findings"]} >= {("modified", victim.name)}
        if held is None:  # (where it is held, the WAL a refused write grew may take the next run's stamps)
            text = run_cli("verify", arch)
            assert text.returncode == 1 and b"verification run (not recorded: the disk is full)" in text.stdout
    finally:
        if held is not None:
            held.close()
    # An act is refused, naming the full disk, not a read-only catalog.
    fill(small_disk)
    one_line_error(
        run_cli("ledger", "checkpoint", arch),
        r"^custodes: the disk is full \(.*catalog.sqlite\): free space on it, then run the command again",
    )
    (small_disk / "filler").unlink()
    assert catalog_rows(arch, "SELECT COUNT(*) FROM verify_runs") == runs  # nothing half-recorded
    again = json.loads(run_cli("verify", arch, "--json").stdout)
    assert again["run"]["id"] is not None and again["run"]["not_recorded"] is None


def test_a_verify_on_a_full_disk_lets_go_of_the_catalog_once_it_reads_a_copy(small_disk: Path, tmp_path: Path) -> None:
    """On a full disk the catalog is read alone (catalog._alone_on_a_full_disk) and a verify held it for its whole
    length: every other command, and the review page, waited 60 s and was told the catalog was busy, for hours on
    a large archive, and freeing space did not end it. Where the system's temporary folder has room, verify reads
    a copy of the catalog from its start and lets go of the catalog: another command answers while it runs."""
    import tempfile

    from custodes._durable import process_tag
    from custodes.verify import verify

    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:2], volume=tmp_path / "BWC0001")
    fill(small_disk)
    meanwhile: list[subprocess.CompletedProcess[bytes]] = []
    pid, start, _boot, space = process_tag().split(".")
    killed = Path(tempfile.gettempdir()) / f"{pid}.{start}.anotherboot.{space}-x-catalog-copy.sqlite"
    killed.write_bytes(b"the copy of a verify killed in another boot")

    def another_command(_done: int, _total: int) -> None:
        if not meanwhile:
            meanwhile.append(run_cli("ledger", "verify", arch, timeout=30))

    with open_archive(arch) as a:
        result = verify(a, progress=another_command, workers=1)
        said = result.to_json()
        assert result.ok and result.checked == 2 and said["run"]["not_recorded"] == "the disk is full", said
        assert a.catalog.path == arch / "catalog.sqlite"  # (what its messages name)
    assert meanwhile and meanwhile[0].returncode == 0, meanwhile
    assert meanwhile[0].stdout.endswith(b"ledger consistent: 0 finding(s)\n"), meanwhile[0].stdout
    assert list(Path(tempfile.gettempdir()).glob(f"{process_tag()}-*-catalog-copy.sqlite")) == []  # gone with it
    assert not killed.exists()  # and a dead process's, found then
    killed.write_bytes(b"the copy of a verify killed in another boot")
    (small_disk / "filler").unlink()
    with open_archive(arch) as a:  # (and by a verify with room: a killed verify's copy did not wait for a full disk)
        assert verify(a, workers=1).ok
    assert not killed.exists()


@pytest.mark.parametrize("disk", [small_tmpfs, small_ext4])
def test_the_archive_service_on_a_full_disk_answers_what_reads(tmp_path: Path, disk: Callable[..., Any]) -> None:
    """The service of an archive whose disk is full starts (it could not write who holds its lock), and answers
    a verify, which re-hashes everything and records nothing; an act is refused naming the full disk, and a report
    it stages in the archive names the archive's disk, not the folder the caller gave (a hostile review: "give
    --out a file in a folder you can write", for a folder with room). On ext4, where a new folder takes a block,
    each request made its outbox first, and every command failed there, verify included: the outbox is made when
    a command stages a file."""
    with disk(tmp_path / "disk", "4m" if disk is small_tmpfs else "64M") as small_disk:
        _service_on_a_full_disk(small_disk, tmp_path, started_before=disk is small_ext4)


def _service_on_a_full_disk(small_disk: Path, tmp_path: Path, *, started_before: bool) -> None:
    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:2], volume=tmp_path / "BWC0001")
    if started_before:  # (a first start on a full ext4 cannot make the service's run/ folder, and says so)
        serve(arch, log_folder=tmp_path)
        shutil.rmtree(arch / "tmp" / "outbox")  # (made again at a request, where there is room: a review)
    fill(small_disk)
    serve(arch, log_folder=tmp_path)  # (its log on another disk; the one running already, where it was started)
    try:
        out = as_("alice", "verify", arch, "--json")
        assert out.returncode == 0, out.stderr
        said = json.loads(out.stdout)
        assert said["checked"] == 2 and said["run"] == {**said["run"], "id": None, "not_recorded": "the disk is full"}
        # A file the command reads, handed over by the caller (ext4: it was staged in a folder of the full disk).
        pinned = shutil.copy(arch / "keys" / "checkpoint.vkey", tmp_path / "pinned.vkey")
        os.chmod(pinned, 0o644)
        out = as_("alice", "verify", arch, "--trusted-key", pinned)
        assert out.returncode == 0 and b"intact: 2 objects" in out.stdout, out.stderr
        one_line_error(
            as_("alice", "retention", "hold", arch, "--segment", "1", "--reason", "litigation"),
            r"the disk is full \(.*catalog.sqlite\): free space on it, then run the command again",
        )
        report = tmp_path / "report.json"
        one_line_error(
            as_("alice", "report", arch, "--out", report),
            r"cannot write (the report \()?.*report.json\)?: (the disk it is made on is full|it is made first on the "
            r"archive's disk, which is full) \(.*archive/tmp/outbox",
        )
        assert not report.exists()
    finally:
        stop_service(arch)


def test_a_refusal_the_full_disk_kept_from_the_ledger_is_said_as_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    """A request by an account with no role is refused and the refusal ledgered; on a full disk that ledgering
    failed, and the service answered SQLite's own words ("could not answer: database or disk is full", a hostile
    review): now the CLI's line for a full disk."""
    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:1], volume=tmp_path / "BWC0001")
    serve(arch, log_folder=tmp_path)
    held = sqlite3.connect(arch / "catalog.sqlite")  # (its -shm sized: the refusal's write meets the full disk)
    try:
        held.execute("SELECT COUNT(*) FROM objects").fetchone()
        fill(small_disk)
        one_line_error(
            as_("mallory", "verify", arch),
            r"^custodes: the archive service could not answer: the disk is full \(.*catalog.sqlite\): free space",
        )
    finally:
        held.close()
        stop_service(arch)


def test_an_answer_of_the_service_on_a_full_disk_is_kept_whole(tmp_path: Path) -> None:
    """The service keeps a command's answer in memory up to 1 MiB, then in a file in the archive: on a full disk
    a verify --json naming thousands of objects failed there, its findings lost (a hostile review). Now it is
    kept in memory whole, and reaches the caller."""
    made = tmp_path / "subtitles"
    made.mkdir()
    for i in range(3000):
        (made / f"c{i:05d}.srt").write_text(f"1\n00:00:00,000 --> 00:00:01,000\nline {i}\n")
    with small_tmpfs(tmp_path / "disk", "48m") as disk:
        arch = build_cli_archive(
            disk / "archive",
            people=PEOPLE_AND_ROOT,  # root an auditor: a verify through the service needs a role
            recordings={f.name: f for f in sorted(made.iterdir())},
            volume=tmp_path / "BWC0001",
            ingest_exit=(0, 1),
        )
        for f in (arch / "objects").rglob("*"):
            if f.is_file():
                f.chmod(0o444)  # each object `unprotected`: a finding each, some 400 bytes of --json
        fill(disk)
        serve(arch, log_folder=tmp_path)
        try:
            out = as_("root", "verify", arch, "--json")
            assert len(out.stdout) > 1 << 20 and out.returncode == 1, out.stderr
            said = json.loads(out.stdout)
            assert said["checked"] == 3000 and said["run"]["not_recorded"] == "the disk is full"
            assert sum(f["kind"] == "unprotected" for f in said["findings"]) == 3000
        finally:
            stop_service(arch)


def test_a_write_ahead_log_a_full_disk_cannot_fold_in_is_left_as_it_is(small_disk: Path, tmp_path: Path) -> None:
    """Transactions in the catalog's -wal and no -shm file (a process killed, its -shm removed since), on a full
    disk: read in exclusive locking mode, SQLite folded the log into the catalog file as the command closed, the
    full disk cut that short, and catalog.sqlite alone was no catalog (a hostile review). Now the command is
    refused, naming the log, and neither file is touched; with room again, all is read."""
    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:1], volume=tmp_path / "BWC0001")
    killed = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('UPDATE objects SET last_verified_ns = 7')\n"  # committed, in the -wal only
        "os._exit(0)\n"  # gone without closing: the -wal stays
    )
    subprocess.run([sys.executable, "-c", killed, arch / "catalog.sqlite"], check=True)
    (arch / "catalog.sqlite-shm").unlink()
    files = {end: (arch / f"catalog.sqlite{end}").read_bytes() for end in ("", "-wal")}
    assert files["-wal"]
    fill(small_disk)
    one_line_error(
        run_cli("verify", arch),
        r"catalog.sqlite: on a full disk, and its write-ahead log \(catalog.sqlite-wal\) holds transactions not yet "
        r"in the catalog file.*: free space on it, then run the command again",
    )
    assert {end: (arch / f"catalog.sqlite{end}").read_bytes() for end in ("", "-wal")} == files
    (small_disk / "filler").unlink()
    assert catalog_rows(arch, "SELECT DISTINCT last_verified_ns FROM objects") == [(7,)]
    assert run_cli("verify", arch).returncode == 0


def test_a_catalog_read_on_a_full_disk_is_not_written_under_it(small_disk: Path, tmp_path: Path) -> None:
    """On a full disk the catalog is read as it is, and no other process writes it meanwhile (a hostile review:
    read as ``immutable``, a verify met the pages an ingest wrote once space was freed and called the sound
    catalog damaged): until the reading connection closes, a writer is told the catalog is busy, even with room
    again; then it writes."""
    arch = build_cli_archive(small_disk / "archive", recordings=THREE_RECORDINGS[:1], volume=tmp_path / "BWC0001")
    write = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0.5, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); c.execute('UPDATE objects SET last_verified_ns = 1'); c.execute('COMMIT')\n"
    )
    fill(small_disk)
    with open_archive(arch) as a:
        assert a.catalog.disk_full and a.catalog.read_only
        (small_disk / "filler").unlink()  # room again: only the reading connection stands in the way
        refused = subprocess.run([sys.executable, "-c", write, arch / "catalog.sqlite"], capture_output=True)
        assert refused.returncode == 1 and b"database is locked" in refused.stderr, refused.stderr
    done = subprocess.run([sys.executable, "-c", write, arch / "catalog.sqlite"], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_an_error_after_sqlite_rolled_back_by_itself_is_the_one_raised(two_clip_archive: Path) -> None:
    """SQLite rolls a transaction back itself when the disk fills or an I/O error strikes mid-statement (a stamp
    of thousands of objects); the ROLLBACK after it then failed with "no transaction is active", and that took
    the place of the full disk (a hostile review: verify's traceback, exit 1). Here the rollback is SQLite's own
    statement, in a transaction and in a savepoint inside one."""
    with open_archive(two_clip_archive) as a:
        catalog = a.catalog
        for scope in (catalog.transaction, lambda: _savepoint_in_transaction(catalog)):
            with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
                with scope():
                    catalog._conn.execute("ROLLBACK")  # what SQLite does of itself on SQLITE_FULL
                    raise sqlite3.OperationalError("database or disk is full")
            assert not catalog.in_transaction
        with catalog.transaction():  # and the catalog takes the next transaction as ever
            catalog.objects.stamp_verified([], 1)


@contextmanager
def _savepoint_in_transaction(catalog: Any) -> Iterator[None]:
    with catalog.transaction(), catalog.savepoint():
        yield


# 4: one int64-ns rule for every time and duration.


def test_durations_that_are_not_finite_or_too_long(two_clip_archive: Path, tmp_path: Path) -> None:
    out = run_cli(
        "access", "request", two_clip_archive, "--segment", "1", "--reason", "complaint 7", "--json", user="carol"
    )
    rid = str(json.loads(out.stdout)["id"])
    bad_option(
        run_cli("access", "approve", two_clip_archive, rid, "--hours", "inf", user="bob"),
        "--hours",
        "'inf' is not a finite number",
    )
    bad_option(
        run_cli("access", "approve", two_clip_archive, rid, "--hours", "nan", user="bob"),
        "--hours",
        "'nan' is not a finite number",
    )
    bad_option(
        run_cli("access", "approve", two_clip_archive, rid, "--hours", "1e9", user="bob"),
        "--hours",
        "'1e9' hours is too long: custodes holds durations up to 292 years",
    )
    # An approval that ends as it starts is no approval (found by a hostile user).
    bad_option(
        run_cli("access", "approve", two_clip_archive, rid, "--hours", "0", user="bob"),
        "--hours",
        "'0': must be more than 0",
    )
    # Short enough to be a duration, too long to end before 2262: the window's end is refused, not stored.
    one_line_error(
        run_cli("access", "approve", two_clip_archive, rid, "--hours", "2500000", user="bob"),
        r"the approval window's end would be past 2262-04-11 \(UTC\)",
    )
    assert catalog_rows(two_clip_archive, f"SELECT status, valid_until_ns FROM access_requests WHERE id = {rid}") == [
        ("pending", None)
    ]
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM access_log WHERE action = 'approve'") == [(0,)]
    approved = run_cli("access", "approve", two_clip_archive, rid, "--hours", "2", "--json", user="bob")
    assert approved.returncode == 0 and json.loads(approved.stdout)["status"] == "approved"
    vol = two_clip_archive.parent / "BWC0001"
    bad_option(run_cli("timeline", vol, "--gap-tolerance", "nan"), "--gap-tolerance", "'nan' is not a finite number")
    bad_option(run_cli("timeline", vol, "--gap-tolerance", "inf"), "--gap-tolerance", "'inf' is not a finite number")
    bad_option(
        run_cli("timeline", vol, "--clock-tolerance", "-inf"), "--clock-tolerance", "'-inf' is not a finite number"
    )
    bad_option(
        run_cli("probe", vol / "go-mp4-sample.mp4", "--gap-factor", "nan"),
        "--gap-factor",
        "'nan' is not a finite number",
    )
    assert run_cli("timeline", vol, "--gap-tolerance", "1e6").returncode in (0, 1)


def test_times_in_the_year_9999(two_clip_archive: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(
        "id,type,start,end,officers,devices\n"
        "T1,patrol,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,,BWC0001\n"
        "T2,patrol,2024-01-01T00:00:00Z,9999-12-31T23:59:59Z,,BWC0001\n"
    )
    out = run_cli("task", "import", two_clip_archive, tasks)
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
    assert re.search(
        rb"tasks.csv row 2: '9999-12-31T23:59:59\+00:00' is out of range: custodes records times from "
        rb"1677-09-21 to 2262-04-11",
        out.stderr,
    ), out.stderr
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM tasks") == [(0,)]  # all or nothing
    device = catalog_rows(two_clip_archive, "SELECT device_id FROM devices")[0][0]
    one_line_error(
        run_cli(
            "gap",
            "explain",
            two_clip_archive,
            "--device",
            device,
            "--from",
            "2024-01-01T00:00:00Z",
            "--to",
            "9999-12-31T23:59:59+08:00",
            "--cause",
            "battery",
        ),
        r"--to: '9999-12-31T23:59:59\+08:00' is out of range",
    )
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM gap_explanations") == [(0,)]
    bad_option(
        run_cli(
            "gap",
            "explain",
            two_clip_archive,
            "--device",
            device,
            "--from",
            "2024-01-01T00:00:00Z",
            "--to",
            "2024-01-01T00:10:00Z",
            "--cause",
            "battery",
            "--segment",
            "1",
            "--offset",
            "inf",
        ),
        "--offset",
        "'inf' is not a finite number",
    )
    report = tmp_path / "r.json"
    one_line_error(
        run_cli("report", two_clip_archive, "--out", report, "--from", "9999-01-01T00:00:00Z"),
        r"--from: '9999-01-01T00:00:00\+00:00' is out of range",
    )
    one_line_error(
        run_cli("retention", "due", two_clip_archive, "--at", "0001-01-01T00:00:00Z"),
        r"--at: '0001-01-01T00:00:00\+00:00' is out of range",
    )
    assert not report.exists()
    # The edge itself is fine: the last second an int64 of nanoseconds holds.
    ok = run_cli(
        "report", two_clip_archive, "--out", report, "--from", "2024-01-01T00:00:00Z", "--to", "2262-04-11T23:47:16Z"
    )
    assert ok.returncode == 0, ok.stderr


# 5: opening a purged recording is a logged refusal, never a logged success.


def test_open_a_purged_recording_is_refused_and_logged(two_clip_archive: Path, tmp_path: Path) -> None:
    def request(user: str, purpose: str) -> str:
        out = run_cli(
            "access",
            "request",
            two_clip_archive,
            "--segment",
            "1",
            "--reason",
            "complaint 7",
            "--purpose",
            purpose,
            "--json",
            user=user,
        )
        assert out.returncode == 0, out.stderr
        rid = str(json.loads(out.stdout)["id"])
        assert run_cli("access", "approve", two_clip_archive, rid, user="bob").returncode == 0
        return rid

    view = request("carol", "view")
    purge = request("alice", "purge")
    assert run_cli("retention", "purge", two_clip_archive, "--request", purge, user="alice").returncode == 0
    out = run_cli("access", "open", two_clip_archive, view, "--segment", "1", "--to", tmp_path / "seen", user="carol")
    line = one_line_error(
        out, r"^custodes: refused: segment 1 was purged at \d{4}-.*Z \(its tombstone is in the ledger\)$", code=1
    )
    assert out.stdout == b"" and not (tmp_path / "seen").exists()
    assert catalog_rows(two_clip_archive, "SELECT person, ok, detail FROM access_log WHERE action = 'open'") == [
        ("carol", 0, line.removeprefix("custodes: refused: "))
    ]
    entries = [json.loads(e) for (e,) in catalog_rows(two_clip_archive, "SELECT entry FROM ledger ORDER BY seq")]
    assert [(e["person"], e["ok"]) for e in entries if e["type"] == "access_open"] == [("carol", False)]
    assert run_cli("verify", two_clip_archive).returncode == 0


# 6: the policy is checked when it is loaded.


@pytest.mark.parametrize(
    "old, new, pattern",
    [
        ('"blake3"', '"sha3"', r"\[hashing\] algorithms: unknown 'sha3'; allowed: .*sha256.*blake3.*sm3"),
        (
            'backend = "local"',
            'backend = "tape-robot"',
            r"\[storage\] backend = 'tape-robot' is not a storage backend here; allowed: .*local.*s3",
        ),
        (
            "gap_tolerance_seconds = 1.0",
            "gap_tolerance_seconds = nan",
            r"\[timeline\] gap_tolerance_seconds: nan is not a finite",
        ),
        ("deadline_hours = 24", "deadline_hours = 1e300", r"\[ingest\] deadline_hours: .* is out of range"),
        ("minimum_days = 730", "minimum_days = 10000000", r"\[retention\] minimum_days: .* is out of range"),
        ("minimum_days = 730", 'minimum_days = "two years"', r"\[retention\] minimum_days must be a number of days"),
        (
            'bob = "approver"',
            'bob = "aprover"',
            r"\[people\] bob = 'aprover' is not a role; allowed: custodian, approver",
        ),
        (
            "[people]",
            '[access]\nwindow_hours = "3 days"\n[people]',
            r"\[access\] window_hours must be a number of hours",
        ),
        # A misspelt key or table would fall back to the default silently (found by a hostile user).
        (
            "minimum_days = 730",
            "minimum_dayz = 3650",
            r"\[retention\] minimum_dayz: not a key of \[retention\]; allowed: minimum_days",
        ),
        ("[retention]", "[retension]", r"\[retension\] is not a policy table; allowed: archive, ingest, retention"),
        # A key file the proposed policy names that is not there (a hostile review: it was told to restore the
        # archive's custodes.toml, where nothing was wrong).
        (
            'signing_key = "private/checkpoint.key"',
            'signing_key = "private/moved.key"',
            r"\[keys\] signing_key = 'private/moved\.key': .*/private/moved\.key: the signing key is missing; move "
            "the key file there before a policy names it",
        ),
    ],
)
def test_bad_policy_values_are_named_at_load(
    two_clip_archive: Path, tmp_path: Path, old: str, new: str, pattern: str
) -> None:
    # A policy changes only through `policy set`, which checks the new file with the loader every open uses.
    text = (two_clip_archive / "custodes.toml").read_text()
    assert old in text
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace(old, new))
    before = unchanged(two_clip_archive)
    one_line_error(run_cli("policy", "set", two_clip_archive, edited), rf"{re.escape(str(edited))}: {pattern}")
    assert unchanged(two_clip_archive) == before  # nothing recorded, the file untouched
    assert (two_clip_archive / "custodes.toml").read_text() == text


# 7 and 8: init is all or nothing, and writes the policy with a TOML library.


def test_init_with_a_file_that_is_not_a_key_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "archive"
    one_line_error(
        run_cli("init", target, "--signing-key", "/etc/passwd"),
        r"/etc/passwd: not an Ed25519 private key .*name the key custodes made",
    )
    assert not target.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli("init", empty, "--signing-key", "/etc/passwd"), "not an Ed25519 private key")
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("under", ["f/sub", "f/sub/deeper"])
def test_init_inside_a_file_names_the_file(tmp_path: Path, under: str) -> None:
    """A file where a folder of the path should be is named as one (a hostile review: "File exists")."""
    (tmp_path / "f").write_bytes(b"not a folder")
    one_line_error(run_cli("init", under, cwd=tmp_path), r"^custodes: f: a file, not a folder: the archive cannot go")
    assert (tmp_path / "f").read_bytes() == b"not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("how", ["absolute", "through .."])
def test_init_with_a_key_path_into_the_new_folder_makes_it_there(tmp_path: Path, how: str) -> None:
    """A key named by a path into the archive's new folder (a hostile review: the init failed with "Directory not
    empty", left the folder, and the next init was refused as "not empty")."""
    key = f"{tmp_path}/I/private/x.key" if how == "absolute" else "../I/private/x.key"
    out = run_cli("init", "--signing-key", key, tmp_path / "I", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert tomllib.loads((tmp_path / "I" / "custodes.toml").read_text())["keys"]["signing_key"] == "private/x.key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["I"]
    assert run_cli("ledger", "checkpoint", tmp_path / "I").returncode == 0


def test_init_with_a_key_that_is_there_already_says_it_reuses_it(tmp_path: Path) -> None:
    """A second archive given the first one's key (a hostile review: init said only "keep it safe", as for a key
    it made, and a mistyped path made two archives sign with one key unseen)."""
    first = run_cli("init", tmp_path / "A", "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["signing_key_made"] is True, first.stderr
    key = tmp_path / "A" / "private" / "checkpoint.key"
    before = key.read_bytes()
    out = run_cli("init", tmp_path / "B", "--signing-key", key)
    assert out.returncode == 0, out.stderr
    assert f"signing key  {key} (already there, not made: this archive signs with that key;" in out.stdout.decode()
    assert key.read_bytes() == before
    again = json.loads(run_cli("init", tmp_path / "C", "--signing-key", key, "--json").stdout)
    assert (again["signing_key"], again["signing_key_made"]) == (str(key), False)
    made = run_cli("init", tmp_path / "D").stdout.decode()
    assert "(made now; keep it safe; it signs the ledger's checkpoints)" in made, made


def test_init_with_a_key_named_through_a_folder_it_has_not_made_yet(tmp_path: Path) -> None:
    """``private/../../keys/k.key``, from the new archive folder, is ``../keys/k.key``: the key there is used
    (init said "File exists" and made nothing: the kernel cannot pass through a private/ init has not made yet)."""
    first = run_cli("init", tmp_path / "A", "--signing-key", tmp_path / "keys" / "k.key", "--json")
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "keys" / "k.key").read_bytes()
    out = run_cli("init", tmp_path / "B", "--signing-key", "private/../../keys/k.key", "--json")
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert (made["signing_key"], made["signing_key_made"]) == (str(tmp_path / "B" / "../keys/k.key"), False)
    assert tomllib.loads((tmp_path / "B" / "custodes.toml").read_text())["keys"]["signing_key"] == "../keys/k.key"
    assert (tmp_path / "keys" / "k.key").read_bytes() == before
    assert json.loads(first.stdout)["verifier_key"].split("+")[-1] == made["verifier_key"].split("+")[-1]
    # Inside the folder the folded path is held to the rule as ever: never the archive's own files.
    refused = run_cli("init", tmp_path / "C", "--signing-key", "private/../ledger/k.key")
    one_line_error(
        refused, r"--signing-key 'private/\.\./ledger/k\.key' is inside the archive folder \(ledger/k\.key\)"
    )
    assert not (tmp_path / "C").exists()


@pytest.mark.parametrize(
    ("ending", "said"),
    [("/", "names a folder: name the key file"), ("/.", "names a folder"), ("/..", "names a folder"),
     (" ", "starts or ends with a space: name the key file without")],
)  # fmt: skip
def test_init_refuses_a_key_path_that_names_a_folder(tmp_path: Path, ending: str, said: str) -> None:
    """`--signing-key keys/newdir/` made a key file named newdir, and `k.key ` a new key beside k.key, shown
    alike (hostile reviews): a folder is never the key, and a space at the end is a slip."""
    key = f"{tmp_path}/keys/newdir{ending}"
    one_line_error(run_cli("init", tmp_path / "A", "--signing-key", key), said)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_init_given_a_link_to_no_key_says_so_and_makes_none(tmp_path: Path) -> None:
    """A --signing-key that is a link to a file not there: init never writes through a link, so it makes no key;
    it said "the signing key is missing; restore it ... `custodes policy set`", the advice of an archive whose key
    went missing, for an archive that does not exist yet (a review)."""
    link = tmp_path / "k.key"
    link.symlink_to(tmp_path / "elsewhere" / "k.key")
    said = one_line_error(run_cli("init", tmp_path / "A", "--signing-key", link), "a symbolic link to a file")
    assert "policy set" not in said and "init makes a key only as a new file" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"] and link.is_symlink()


def test_init_failing_half_way_leaves_nothing(tmp_path: Path) -> None:
    # The key's folder cannot be made (a file is in the way): found after the archive folder exists.
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(
        run_cli("init", tmp_path / "archive", "--signing-key", "/etc/passwd/checkpoint.key"),
        r"cannot create the archive: .*nothing was kept",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no archive, no hidden half-built sibling
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli("init", empty, "--signing-key", "/etc/passwd/checkpoint.key"), "nothing was kept")
    assert list(empty.iterdir()) == []
    one_line_error(run_cli("init", "/etc/passwd/archive"), r"/etc/passwd: a file, not a folder: the archive cannot go")
    key = tmp_path / "keys" / "new.key"  # a refused init makes no key either
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("x")
    assert run_cli("init", tmp_path / "occupied", "--signing-key", key).returncode == 2
    assert not key.exists()


def test_init_signing_key_with_quote_and_newline_round_trips(tmp_path: Path) -> None:
    value = 'private/k"\n[people]\nmallory = "approver"\n#\\x'  # inside the archive only private/ may hold it
    arch = tmp_path / "archive"
    out = run_cli("init", arch, "--signing-key", value)
    assert out.returncode == 0, out.stderr
    policy = tomllib.loads((arch / "custodes.toml").read_text())
    assert policy["keys"] == {"signing_key": value}
    assert set(policy) == {
        "archive",
        "ingest",
        "retention",
        "timeline",
        "hashing",
        "devices",
        "keys",
        "storage",
        "verification",
    }
    assert (arch / value).is_file()  # the key is where the policy says
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    assert run_cli("verify", arch).returncode == 0


# 9: --workers is clamped in one place.


def test_workers_are_clamped_and_said(tmp_path: Path, two_clip_archive: Path) -> None:
    files = [
        FOOTAGE / "encoders" / n for n in ("androidx-sample.mp4", "go-mp4-sample.mp4", "go-mp4-sample_fragmented.mp4")
    ]
    out = run_cli("hash", "--workers", "10000", *files)  # once 97 s; the subprocess timeout bounds it now
    assert out.returncode == 0
    assert out.stdout == peer("sha256sum", *files).stdout
    cap = max_workers()
    assert out.stderr.decode().splitlines() == [
        f"custodes: --workers 10000 is more than this machine can use; using {cap} (4 per core)"
    ]
    out = run_cli("verify", two_clip_archive, "--workers", "100000", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True
    assert out.stderr.decode().splitlines() == [
        f"custodes: --workers 100000 is more than this machine can use; using {cap} (4 per core)"
    ]
    assert run_cli("hash", "--workers", str(cap), *files).stderr == b""  # at the cap: nothing to say
    # ingest copies through the same clamp: every file stored, once.
    vol = tmp_path / "BWC0042"
    vol.mkdir()
    for f in files:
        shutil.copy(f, vol / f.name)
    out = run_cli("ingest", vol, "--archive", two_clip_archive, "--workers", "100000", "--json")
    assert out.returncode == 1 and b"Traceback" not in out.stderr  # 1: the 2016 footage is late, go-mp4 has no clock
    assert sorted(json.loads(out.stdout)["stored"]) == sorted(f.name for f in files)
    assert out.stderr.decode().splitlines()[0] == (
        f"custodes: --workers 100000 is more than this machine can use; using {cap} (4 per core)"
    )
    # The API clamp every command goes through: never more than the files, never less than one.
    assert clamp_workers(10_000, 3) == 3 and clamp_workers(10_000, 10**6) == cap
    assert clamp_workers(1, 0) == 1 and clamp_workers(None, 5) is None


# 10: hash --check prints names as sha256sum -c does.


def test_check_escapes_names_like_sha256sum(tmp_path: Path) -> None:
    folder = tmp_path / "names"
    folder.mkdir()
    names = ["a\nb", "back\\slash", "cr\rhere", "all\\of\nthem\r", "plain"]
    for i, n in enumerate(names):
        (folder / n).write_bytes(bytes([i]) * 10)
    listing = peer("sha256sum", *names, cwd=folder).stdout
    (tmp_path / "list").write_bytes(listing)
    ours = run_cli("hash", "--check", tmp_path / "list", cwd=folder)
    theirs = peer("sha256sum", "-c", tmp_path / "list", cwd=folder)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout
    assert b"\\a\\nb: OK\n" in ours.stdout and b"\\all\\\\of\\nthem\\r: OK\n" in ours.stdout
    assert b"cr\rhere: OK\n" in ours.stdout  # no newline: printed raw, as sha256sum does
    (folder / "a\nb").unlink()
    (folder / "plain").write_bytes(b"changed")
    ours = run_cli("hash", "--check", tmp_path / "list", cwd=folder)
    theirs = peer("sha256sum", "-c", tmp_path / "list", cwd=folder)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout
    assert b"\\a\\nb: FAILED open or read\n" in ours.stdout and b"plain: FAILED\n" in ours.stdout


def test_ids_too_large_for_the_catalog(two_clip_archive: Path) -> None:
    huge = "99999999999999999999"  # once an OverflowError from SQLite
    for command, option in (
        (["access", "approve", two_clip_archive, huge], "REQUEST"),
        (["access", "request", two_clip_archive, "--segment", huge, "--reason", "x"], "--segment"),
        (["access", "classify", two_clip_archive, "--segment", "1", "--level", huge], "--level"),
        (["retention", "hold", two_clip_archive, "--segment", huge, "--reason", "x"], "--segment"),
        (["retention", "status", two_clip_archive, "--segment", huge], "--segment"),
        (["ledger", "proof", two_clip_archive, "--entry", huge], "--entry"),
    ):
        out = run_cli(*command, user="alice")
        assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
        assert re.search(
            rf"Invalid value for '{option}': {huge} is out of range: no id or index in the catalog is that "
            "large",
            out.stderr.decode(),
        ), out.stderr
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM access_log") == [(0,)]


# Hostile review of issue 10: every policy key is checked at load, init checks its inputs by the same rules, and
# every free-text option goes through one click type (TEXT_LINE).


def edit_policy(arch: Path, table: str, key: str, value: str) -> Path:
    """The archive's policy with ``[table] key = value`` (``value`` in TOML), in a new file beside the archive
    for `custodes policy set`."""
    import tomli_w

    data = tomllib.loads((arch / "custodes.toml").read_text())
    data.setdefault(table, {})[key] = tomllib.loads(f"v = {value}")["v"]
    edited = arch.parent / "edited.toml"
    edited.write_text(tomli_w.dumps(data))
    return edited


def unchanged(arch: Path):
    """Snapshot of an archive: the same after a refused command (catalog, ledger, checkpoints, objects)."""
    return (
        catalog_rows(arch, "SELECT COUNT(*) FROM ledger"),
        catalog_rows(arch, "SELECT size FROM checkpoints"),
        sorted(p.name for p in (arch / "ledger" / "checkpoints").iterdir()),
        objects(arch),
    )


def test_duplicate_algorithms_deduplicated_at_init_refused_at_load(tmp_path: Path, two_clip_archive: Path) -> None:
    arch = tmp_path / "dup"
    out = run_cli("init", "--algo", "sha256", "--algo", "sha256", "--algo", "blake3", "--algo", "blake3", arch)
    assert out.returncode == 0, out.stderr
    assert tomllib.loads((arch / "custodes.toml").read_text())["hashing"]["algorithms"] == ["sha256", "blake3"]
    assert run_cli("ingest", tmp_path / "BWC0001", "--archive", arch).returncode in (0, 1)
    assert catalog_rows(arch, "SELECT COUNT(*) FROM segments") == [(2,)]
    before = unchanged(two_clip_archive)
    policy = edit_policy(two_clip_archive, "hashing", "algorithms", '["sha256", "sha256", "blake3"]')
    one_line_error(
        run_cli("policy", "set", two_clip_archive, policy),
        rf"{re.escape(str(policy))}: \[hashing\] algorithms names 'sha256' more than once",
    )
    assert unchanged(two_clip_archive) == before


@pytest.mark.parametrize("damage", ["empty", "no schema"])
@pytest.mark.parametrize(
    "command",
    [["ledger", "checkpoint"], ["verify"], ["retention", "status"], ["task", "coverage"], ["ingest"], ["report"]],
)
def test_an_empty_catalog_is_damaged_not_new(
    two_clip_archive: Path, tmp_path: Path, damage: str, command: list[str]
) -> None:
    stored, checkpoints = objects(two_clip_archive), sorted((two_clip_archive / "ledger" / "checkpoints").iterdir())
    head = (two_clip_archive / "ledger" / "checkpoint").read_bytes()
    for side in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (two_clip_archive / side).unlink(missing_ok=True)
    (two_clip_archive / "catalog.sqlite").unlink()
    if damage == "empty":
        (two_clip_archive / "catalog.sqlite").write_bytes(b"")
    else:
        sqlite3.connect(two_clip_archive / "catalog.sqlite").execute("CREATE TABLE unrelated (x)").connection.close()
    args = {
        "ingest": [tmp_path / "BWC0001", "--archive", two_clip_archive],
        "report": [two_clip_archive, "--out", tmp_path / "r.json"],
    }.get(command[0], [two_clip_archive])
    one_line_error(
        run_cli(*command, *args),
        rf"the catalog is damaged \(empty\).*\({re.escape(str(two_clip_archive / 'catalog.sqlite'))}\): "
        "restore it from a backup",
    )
    assert (
        objects(two_clip_archive) == stored
        and sorted((two_clip_archive / "ledger" / "checkpoints").iterdir()) == checkpoints
    )
    assert (two_clip_archive / "ledger" / "checkpoint").read_bytes() == head  # no size-0 checkpoint rolls the head back
    assert not (tmp_path / "r.json").exists()
    if damage == "empty":
        assert (two_clip_archive / "catalog.sqlite").read_bytes() == b""  # not turned into a new database


@pytest.mark.parametrize(
    "key, pattern",
    [
        (
            "objects/sha256/k",
            r"--signing-key 'objects/sha256/k' is inside the archive folder \(objects/sha256/k\) "
            r"but not under private/",
        ),
        ("catalog.sqlite", r"--signing-key 'catalog.sqlite' is inside the archive folder .* not under private/"),
        ("tmp/k", r"--signing-key 'tmp/k' is inside the archive folder .* not under private/"),
        ("private/../ledger/k", r"is inside the archive folder \(ledger/k\) but not under private/"),
        ("ABSOLUTE/objects/k", r"is inside the archive folder \(objects/k\) but not under private/"),
        ("/tmp", r"--signing-key '/tmp' is a folder \(/tmp\): name the key file"),
        ("\udcff\udcfe.key", r"--signing-key b'\\xff\\xfe.key': the path is not UTF-8"),
        ("", r"--signing-key must be the path of the Ed25519 key file"),
        # Said as what it is (a hostile review: "not an Ed25519 key", as if its bytes were read).
        ("FIFO", r"fifo: not a regular file \(a FIFO or a device\), not a key file; name the key custodes made"),
    ],
)
def test_init_refuses_a_bad_signing_key_and_creates_nothing(tmp_path: Path, key: str, pattern: str) -> None:
    target = tmp_path / "A6"
    key = key.replace("ABSOLUTE", str(target))
    if key == "FIFO":
        os.mkfifo(tmp_path / "fifo")
        key = str(tmp_path / "fifo")
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(run_cli("init", "--signing-key", key, target, cwd=tmp_path), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no archive, no hidden staging folder, no key
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli("init", "--signing-key", key.replace(str(target), str(empty)), empty, cwd=tmp_path), pattern)
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(
    "table, key, value, pattern",
    [
        ("keys", "signing_key", "5", r"\[keys\] signing_key must be the path of the Ed25519 key file; not 5"),
        ("keys", "signing_key", '"objects/k"', r"\[keys\] signing_key 'objects/k' is inside the archive folder"),
        ("keys", "signing_key", '"/tmp"', r"\[keys\] signing_key '/tmp' is a folder \(/tmp\): name the key file"),
        ("archive", "origin", "5", r"\[archive\] origin = 5 must be a non-empty string of printable characters"),
        ("archive", "origin", '"a\\nb"', r"\[archive\] origin = 'a\\nb' must be a non-empty string"),
        ("archive", "origin", '""', r"\[archive\] origin = '' must be a non-empty string"),
        ("archive", "id", "5", r"\[archive\] id = 5 must be a non-empty string"),
        ("devices", "time_zone", "5", r"\[devices\] time_zone must be an IANA zone name"),
        (
            "devices",
            "time_zone",
            '"Mars/Olympus"',
            r"\[devices\] time_zone = 'Mars/Olympus' is not a time zone known here",
        ),
        ("report", "lang", '"fr"', r"\[report\] lang = 'fr' is not a report language; allowed: zh, en"),
    ],
)
def test_bad_policy_keys_are_named_at_load(
    two_clip_archive: Path, tmp_path: Path, table: str, key: str, value: str, pattern: str
) -> None:
    before = unchanged(two_clip_archive)
    policy = edit_policy(two_clip_archive, table, key, value)
    line = one_line_error(run_cli("policy", "set", two_clip_archive, policy), pattern)
    assert line.startswith(f"custodes: {policy}: "), line
    assert unchanged(two_clip_archive) == before  # nothing recorded, no entry left unsigned


def test_init_with_an_unknown_time_zone_creates_nothing(tmp_path: Path) -> None:
    from custodes.archive import ArchiveError, init_archive

    with pytest.raises(ArchiveError, match=r"--time-zone = 'Mars/Olympus' is not a time zone known here"):
        init_archive(tmp_path / "a", time_zone="Mars/Olympus")
    assert list(tmp_path.iterdir()) == []
    out = run_cli("init", "--time-zone", "Mars/Olympus", tmp_path / "a")
    assert out.returncode == 2 and b"Traceback" not in out.stderr and b"unknown time zone 'Mars/Olympus'" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("\udcff\udcfe", r"b'\\xff\\xfe' is not valid UTF-8 text"),
        ("two\nlines", r"'two\\nlines' holds a control character \('\\n'\): give one line of text"),
        ("bell\x07", r"'bell\\x07' holds a control character \('\\x07'\)"),
    ],
)
def test_free_text_options_refuse_bytes_and_control_characters(two_clip_archive: Path, text: str, pattern: str) -> None:
    before = unchanged(two_clip_archive)
    for command, option in (
        (["access", "request", two_clip_archive, "--segment", "1", "--reason", text], "--reason"),
        (["access", "request", two_clip_archive, "--segment", "1", "--json", "--reason", text], "--reason"),
        (["access", "deny", two_clip_archive, "1", "--reason", text], "--reason"),
        (["retention", "hold", two_clip_archive, "--segment", "1", "--reason", text], "--reason"),
        (["retention", "case", two_clip_archive, "--case", text, "--segment", "1"], "--case"),
        (
            [
                "gap",
                "explain",
                two_clip_archive,
                "--device",
                text,
                "--from",
                "2024-01-01T00:00:00Z",
                "--to",
                "2024-01-01T01:00:00Z",
                "--cause",
                "other",
            ],
            "--device",
        ),
        (["task", "coverage", two_clip_archive, "--task", text], "--task"),
    ):
        bad_option(run_cli(*command, user="alice"), option, pattern)
    assert unchanged(two_clip_archive) == before
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM access_requests") == [(0,)]
    # A note may span lines (tab and newline), but not hold other control characters.
    gap = [
        "gap",
        "explain",
        two_clip_archive,
        "--device",
        "BWC0001",
        "--from",
        "2024-01-01T00:00:00Z",
        "--to",
        "2024-01-01T01:00:00Z",
        "--cause",
        "other",
        "--note",
    ]
    bad_option(
        run_cli(*gap, "bell\x07"), "--note", r"'bell\\x07' holds a control character \('\\x07'\): give text without it"
    )


def test_minor_usage_errors(tmp_path: Path, two_clip_archive: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = run_cli("hash", "--check", fifo)  # no writer: once it hung for ever
    assert out.returncode == 2 and b"Traceback" not in out.stderr
    assert f"cannot read checksum list {fifo}: not a regular file".encode() in out.stderr
    bad_option(run_cli("hash", ""), "[PATHS]...", "'' is an empty path")
    bad_option(run_cli("init", "", cwd=tmp_path), "ARCHIVE", "'' is an empty path")
    bad_option(run_cli("hash", "--check", ""), "--check' / '-c", "'' is an empty path")
    bad_option(run_cli("report", two_clip_archive, "--out", ""), "--out", "'' is an empty path")
    # ingest into an archive that is not there: click's message, as every other command's (once a traceback)
    missing = tmp_path / "no-archive"
    bad_option(run_cli("ingest", tmp_path, "--archive", missing), "--archive", f"Directory '{missing}' does not exist")
    # An init error names the target, never the hidden staging folder it builds in.
    line = one_line_error(run_cli("init", "--signing-key", "private/" + "k" * 300, tmp_path / "T"), "nothing was kept")
    assert ".init-" not in line and f"{tmp_path / 'T'}/private" in line
    assert not (tmp_path / "T").exists() and not [p for p in tmp_path.iterdir() if ".init-" in p.name]
    # An approval window past 2262 says so, not an internal sum of nanoseconds.
    (two_clip_archive / "custodes.toml").write_text((two_clip_archive / "custodes.toml").read_text())
    assert (
        run_cli("access", "request", two_clip_archive, "--segment", "1", "--reason", "court", user="carol").returncode
        == 0
    )
    line = one_line_error(
        run_cli("access", "approve", two_clip_archive, "1", "--hours", "2562047", user="bob"),
        r"the approval window's end would be past 2262-04-11 \(UTC\)",
    )
    assert " ns" not in line and "+" not in line


def test_empty_periods_are_refused(two_clip_archive: Path) -> None:
    # Found by a hostile user: a report whose --from is after --to was written, empty.
    out = run_cli(
        "report",
        two_clip_archive,
        "--out",
        two_clip_archive.parent / "r.json",
        "--from",
        "2024-03-02T00:00:00Z",
        "--to",
        "2024-03-01T00:00:00Z",
    )
    assert out.returncode == 2 and b"is not before --to 2024-03-01T00:00:00Z: the period would be empty" in out.stderr
    assert not (two_clip_archive.parent / "r.json").exists()
    same = "2024-03-01T10:00:00Z"
    out = run_cli(
        "gap", "explain", two_clip_archive, "--device", "BWC0001", "--from", same, "--to", same, "--cause", "battery"
    )
    one_line_error(out, r"the explained interval is empty \(--from equals --to\)")


@pytest.mark.parametrize(
    ("case", "said"),
    [
        (" C1", "starts or ends with a space"),
        ("C1 ", "starts or ends with a space"),
        ("C\u200b1", r"holds a character that shows nothing \(U\+200B\)"),
        ("C\u2060\u00ad1", r"holds a character that shows nothing \(U\+2060\)"),
        ("C\t1", r"holds a space other than ' ' \('\\t'\)"),  # a third review: it showed as "C 1"
        ("C\u30001", r"holds a space other than ' ' \('\\u3000'\)"),
        ("C  1", "holds two spaces in a row: give it with one"),
        # Characters Unicode says show nothing, though a letter (U+3164) or a mark (U+FE0F) by category.
        ("C1\u3164", r"holds a character that shows nothing \(U\+3164\)"),
        ("C1\ufe0f", r"holds a character that shows nothing \(U\+FE0F\)"),
        ("C\u03011", r"is not in Unicode's composed form \(NFC\): give it as '\u01061', which shows the same"),
        ("\u212a1", r"is not in Unicode's composed form \(NFC\): give it as 'K1'"),  # the Kelvin sign
        # Shown as a blank, a box or nothing: a blank Braille pattern, private use, unassigned (a second review).
        ("C1\u2800", r"holds a character that shows nothing \(U\+2800\)"),
        ("C1\ue000", r"holds a character no font shows as itself \(U\+E000, private use or unassigned\)"),
        ("C1\u0378", r"no font shows as itself \(U\+0378"),
    ],
)
def test_a_case_id_is_what_it_shows(cli_archive: Path, case: str, said: str) -> None:
    """ "C1", "C1 " and "C\u200b1" were three cases that all showed as C1, and " lead" was not found by an export
    of "lead" (a hostile review)."""
    one_line_error(as_("alice", "retention", "case", cli_archive, "--case", case, "--segment", "1"), said)
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger WHERE type = 'retention_change'") == [(0,)]


def test_free_text_is_held_to_one_length_everywhere(cli_archive: Path) -> None:
    """The HTTP API refused a reason of 4,001 characters, the CLI took 120,000 and echoed it (a hostile review)."""
    out = as_("carol", "access", "request", cli_archive, "--segment", "1", "--reason", "x" * 4001)
    assert out.returncode == 2 and b"4001 characters; give at most 4000" in out.stderr, out.stderr
    assert len(out.stderr) < 400, out.stderr
    assert as_("carol", "access", "request", cli_archive, "--segment", "1", "--reason", "x" * 4000).returncode == 0


@pytest.mark.parametrize(
    "blank", ["", "   ", "\t", ".", "\u200b", "\ufeff\u2060", "\u2800", "\u00ad", "\u3164", "\u115f\u1160", "\uffa0"]
)
def test_an_act_that_needs_a_reason_refuses_a_blank_one(cli_archive: Path, blank: str) -> None:
    """A hold, an access request, a denial: each is ledgered with the reason a person gave (Art. 22), and a
    blank one is refused (and a blank case id), whoever calls (a hostile review placed a hold with `--reason ""`:
    the library asked for a reason in some acts and not in others; one rule now asks it of every act). A second
    review: ".", and characters that show nothing (U+200B, U+FEFF, U+2800, a soft hyphen), said nothing too."""
    from custodes.access import request_access
    from custodes.errors import CustodesError

    rid = request(cli_archive, "carol", 1)
    before = catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger")
    one_line_error(
        as_("alice", "retention", "hold", cli_archive, "--segment", "1", "--reason", blank), "a hold needs a reason"
    )
    one_line_error(
        as_("carol", "access", "request", cli_archive, "--segment", "1", "--reason", blank), "a request needs a reason"
    )
    one_line_error(as_("bob", "access", "deny", cli_archive, rid, "--reason", blank), "a denial needs a reason")
    one_line_error(
        as_("alice", "retention", "case", cli_archive, "--case", blank, "--segment", "1"),
        r"the case id .* says nothing: give it in letters or digits",
    )
    with open_archive(cli_archive) as archive:  # the library, as an agency's tool calls it: the same rule
        with pytest.raises(CustodesError, match="a request needs a reason"):
            request_access(archive, [1], blank)
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM ledger") == before
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM holds") == [(0,)]
    assert as_("bob", "access", "deny", cli_archive, rid, "--reason", "not needed").returncode == 0


def test_a_recording_named_twice_is_one(cli_archive: Path) -> None:
    """`--segment 1 --segment 1` said "2 recording(s)" for a case, and an access request stored [1, 1]."""
    out = as_("alice", "retention", "case", cli_archive, "--case", "C-2", "--segment", "1", "--segment", "1")
    assert out.returncode == 0 and out.stdout.decode().strip() == "case C-2: 1 recording(s)", out
    out = as_("carol", "access", "request", cli_archive, "--segment", "1", "--segment", "1", "--reason", "r", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["segments"] == [1], out.stdout


def test_a_new_file_the_disk_cannot_hold_is_not_left_behind(small_disk: Path) -> None:
    """A key rotation on a full disk left a 0-byte private/checkpoint.key.<id> behind (a hostile review): the one
    writer of new files (the rotated key among them) removes what it made when the write fails."""
    from custodes._durable import write_new_file

    target = small_disk / "checkpoint.key.new"
    with pytest.raises(OSError) as raised:
        write_new_file(target, b"k" * (8 << 20), 0o600)  # twice the disk
    assert raised.value.errno == errno.ENOSPC and not target.exists()


def test_a_disk_out_of_inodes_is_said_so_when_the_catalog_cannot_open(tmp_path: Path) -> None:
    """SQLite's "unable to open database file" on a disk with no free inode was told "remount read-write"."""
    disk = tmp_path / "ino"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,nr_inodes=40", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        assert run_cli("init", disk / "a").returncode == 0
        for i in range(100):
            try:
                (disk / f"f{i}").touch()
            except OSError:
                break
        out = run_cli("verify", disk / "a")
        one_line_error(out, r"its disk can make no more files \(no free inodes\): free some")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_an_output_that_cannot_be_written_is_named_not_the_archive(tmp_path: Path) -> None:
    """`ingest --json >/dev/full` after a whole, signed ingest: the disk error was put on the archive ("the disk is
    full (ARCHIVE) ... what was not finished was not recorded"), and a person would look for lost work (a hostile
    review). The line names standard output, and says the command ran to its end."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    vol = tmp_path / "BWC0001"
    vol.mkdir()
    (vol / "clip.mov").write_bytes((FOOTAGE / "phones" / "bt601.mov").read_bytes())
    commands = (
        ["ingest", str(vol), "--archive", str(arch), "--json"],
        ["hash", "--json", str(vol / "clip.mov")],
        ["verify", str(arch)],  # text, written by click.echo (a second review: still the archive's disk)
        ["verify", str(arch), "--json"],
    )
    for args in commands:
        for stdout, why in (("/dev/full", "No space left on device"), (None, "closed")):  # None: started with `>&-`
            with open(stdout or os.devnull, "wb") as sink:
                command = [sys.executable, "-m", "custodes", *args]
                if stdout is None:
                    command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
                out = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE)
            text = out.stderr.decode()
            if stdout is None and "--json" not in args:
                assert out.returncode == 0 and text == "", text  # (print to a closed stdout: Python says nothing)
                continue
            assert out.returncode == 2 and text.count("\n") == 1 and "Traceback" not in text, (args, text)
            assert f"({why}: standard output): the command ran to its end" in text, (args, text)
            assert str(arch) not in text and "not recorded" not in text, text
    again = run_cli("ingest", vol, "--archive", arch, "--json")
    assert json.loads(again.stdout)["already_present"] == ["clip.mov"], again.stdout  # the ingest was whole
