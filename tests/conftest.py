"""Shared fixtures: the real test data and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FOOTAGE = DATA / "footage"


@pytest.fixture
def footage_files() -> list[Path]:
    """Every real footage file shipped in tests/data/footage (see PROVENANCE.md)."""
    files = sorted(p for p in FOOTAGE.rglob("*") if p.is_file())
    assert len(files) == 17
    return files


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    input: bytes | None = None,
    obey_permissions: bool = False,
    user: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``custodes ARGS`` as a user would: a subprocess, stdout as bytes, the real exit code.

    ``obey_permissions``: when the tests run as root (CI does), drop the
    capabilities that let root read anything, so file modes apply as they
    would to a custodian's account. ``user``: the operating-system user the
    command sees (custody commands take identity from it).
    """
    prefix = []
    if obey_permissions and os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    env = None if user is None else {**os.environ, "LOGNAME": user, "USER": user}  # what getpass.getuser() reads
    return subprocess.run(
        [*prefix, sys.executable, "-m", "custodes", *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=300,
        env=env,
    )


def peer(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run an independent tool (sha256sum, b3sum, openssl ...) for cross-checking."""
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, timeout=300)


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs) mounted on ``folder`` for the test, unmounted after it:
    a full disk, a USB stick's root. Skips the test where mounting is not allowed (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
