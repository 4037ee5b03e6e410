"""The tests' CLI runs (helpers.run_cli) are forked from a process that imported the CLI once (tests/cli_zygote.py):
each must be what ``python -m custodes`` started afresh gives, or the suite would test another program. Here both
run the same commands side by side: exit codes of every kind, stdout and stderr byte for byte, stdin, the
environment (a fault plan, which custodes._faults reads as it is imported), the working folder, a timeout. (The
umask and the time zone are handed over too; nothing custodes writes or prints depends on either.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import FOOTAGE, REAL_PROCESSES_ENV, run_cli


def both(*args: str | Path, **kw: object) -> tuple[subprocess.CompletedProcess[bytes], ...]:
    """``custodes ARGS`` forked, then as a real process."""
    forked = run_cli(*args, **kw)  # type: ignore[arg-type]
    os.environ[REAL_PROCESSES_ENV] = "1"
    try:
        real = run_cli(*args, **kw)  # type: ignore[arg-type]
    finally:
        del os.environ[REAL_PROCESSES_ENV]
    return forked, real


def same(forked: subprocess.CompletedProcess[bytes], real: subprocess.CompletedProcess[bytes]) -> None:
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("hash", "--algo", "sha256", str(FOOTAGE / "phones" / "bt601.mov")),  # 0
        ("hash", "--json", "/nonexistent/file.mp4"),  # 1: a finding
        ("verify", "--no-such-option"),  # 2: usage
        ("probe", str(FOOTAGE / "phones" / "bt601.mov")),
    ],
)
def test_a_forked_run_says_what_a_started_one_says(args: tuple[str, ...]) -> None:
    forked, real = both(*args)
    same(forked, real)
    assert forked.returncode == {"--version": 0, "verify": 2}.get(args[0], forked.returncode)


def test_stdin_the_folder_and_a_fault_plan_reach_the_forked_run(tmp_path: Path) -> None:
    listed = tmp_path / "SHA256SUMS"
    (tmp_path / "a.bin").write_bytes(b"custodes")
    forked, real = both("hash", "--algo", "sha256", "a.bin", cwd=tmp_path)  # a path relative to the folder
    same(forked, real)
    assert forked.returncode == 0 and b"a.bin" in forked.stdout
    listed.write_bytes(forked.stdout)
    forked, real = both("hash", "--check", "-", cwd=tmp_path, input=listed.read_bytes())
    same(forked, real)
    assert forked.returncode == 0 and b"OK" in forked.stdout, forked
    # custodes._faults reads its plan as it is imported: the fork server imported it before any plan was set.
    plan = {"CUSTODES_FAULT": "fsync:1:EIO"}
    forked, real = both("init", tmp_path / "a1", env=plan)
    assert forked.returncode == real.returncode == 2 and b"Input/output error" in forked.stderr, forked
    assert forked.stderr.replace(b"a1", b"a2") == real.stderr.replace(b"a1", b"a2")


def test_a_run_past_its_timeout_is_killed_and_raises_as_subprocess_run_does(tmp_path: Path) -> None:
    import socket

    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    with pytest.raises(subprocess.TimeoutExpired) as e:
        run_cli("serve", arch, timeout=3)  # serves until it is stopped
    assert b"serving" in (e.value.stderr or b""), e.value.stderr
    with socket.socket(socket.AF_UNIX) as conn, pytest.raises(ConnectionRefusedError):
        conn.connect(str(arch / "run" / "custodes.sock"))  # killed: nothing answers there


def test_what_a_fresh_process_refuses_or_reads_at_start_is_the_same_forked(tmp_path: Path) -> None:
    """A hostile review's cases: a working folder that is none, and a NUL in the environment, raise as
    subprocess.run raises (forked, they were a silent exit 1); a fault plan custodes._faults refuses fails every
    import of it, as in a fresh process (forked: a silent exit 1); what the dynamic loader reads as a process
    starts (LD_PRELOAD here) is read; and stdin is empty when no input is given, both ways."""
    with pytest.raises(FileNotFoundError):
        run_cli("plugins", cwd=tmp_path / "none")
    with pytest.raises(ValueError, match="null byte"):
        run_cli("plugins", env={"CUSTODES_X": "a\0b"})
    forked, real = both("plugins", env={"CUSTODES_FAULT": "bogus"})
    same(forked, real)
    assert b"plugin gopro: failed to load: ValueError" in forked.stderr, forked
    forked, real = both("--version", env={"LD_PRELOAD": str(tmp_path / "none.so")})
    same(forked, real)
    assert b"LD_PRELOAD cannot be preloaded" in forked.stderr, forked
    forked, real = both("hash", "--check", "-")
    same(forked, real)
    assert forked.returncode == 2, forked
