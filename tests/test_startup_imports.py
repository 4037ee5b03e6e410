"""What a command pays for at start-up: `custodes hash` runs on every docking station and
`custodes probe FILE` is called once per file by scripts, so neither may import the heavy
modules (numpy, pluggy, cryptography, sqlite3, weasyprint, dask) that other commands need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FOOTAGE

HEAVY = ("numpy", "pluggy", "cryptography", "sqlite3", "_sqlite3", "weasyprint", "dask")
CLIP = FOOTAGE / "gopro" / "karma.mp4"


def imported(args: list[str]) -> set[str]:
    """Every module the real command imports (``python -X importtime``), after checking it worked."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "custodes", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout  # it did its work: a digest line, a JSON object
    lines = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header


#: Lighter modules a command still must not import, because it does not use them (issue 14: `custodes probe`,
#: whole process, was slower than ffprobe with them): checksum lists and media for hashing a file; checksum
#: lists, pathlib (urllib.parse, ipaddress), zoneinfo (sysconfig) and the hashing CLI's helpers for probing.
NOT_USED = {
    "hash": ("custodes.media", "custodes.timeline", "zoneinfo"),
    "probe": ("custodes.checksums", "pathlib", "zoneinfo", "urllib.parse"),
}


@pytest.mark.parametrize("args", [["hash", str(CLIP)], ["probe", str(CLIP), "--json"]], ids=["hash", "probe"])
def test_command_starts_without_the_heavy_imports(args: list[str]) -> None:
    modules = imported(args)
    assert "custodes.cli" in modules and "click" in modules  # the list is real: the CLI itself is in it
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in NOT_USED[args[0]] if m in modules) == []


def test_hashing_api_starts_without_the_heavy_imports() -> None:
    """The hash path as a library: custodes.hash_files on its own."""
    code = (
        "import sys, custodes.cli, custodes; custodes.hash_files([]);"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_volume_read_starts_without_the_archive(tmp_path: Path) -> None:
    """`custodes volume` loads every plugin (so pluggy, and what the plugin modules need), but a built-in
    plugin module must not pull in the archive, verify and cryptography before a hook runs (issue 14: the
    HTML reporter's module did, a fifth of the command's start-up), nor a storage client library."""
    modules = imported(["volume", "--driver", "generic", "--json", str(tmp_path)])
    assert "custodes.volumes" in modules
    archive_side = ("custodes.reports", "custodes.archive", "custodes.verify", "cryptography", "numpy", "weasyprint")
    archive_side += ("botocore", "boto3", "urllib3", "custodes_s3.store")
    assert sorted(m for m in modules if m in archive_side or m.split(".")[0] in archive_side) == []


def test_loading_the_plugins_imports_no_storage_client() -> None:
    """Every archive command loads every installed plugin to learn its backends; the s3 plugin's botocore took
    some 30 ms of that, a tenth of verifying 20,000 small objects on a local disk. It is imported when an
    archive on s3 is opened. (Checked in a process of its own: -X importtime does not see the plugins, which
    pluggy's entry points load through importlib.)"""
    client = ("botocore", "boto3", "urllib3", "custodes_s3.store")
    code = (
        "import sys; from custodes.plugins import plugin_manager; names = plugin_manager().storage_backends.names();"
        f"print(names, sorted(m for m in {client!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['local', 's3'] []"  # the s3 plugin (scripts/setup installs it) was loaded


def test_ingest_of_files_with_no_time_needs_no_numpy(tmp_path: Path) -> None:
    """numpy is the timeline engine's boundary: a volume with no two timed or numbered recordings has no gap,
    overlap or break to look for, and ingests without it (issue 14: 10^5 files of 1 KiB peaked at 151.8 MiB
    with it, 146.9 without)."""
    volume = tmp_path / "vol"
    (volume / "logs").mkdir(parents=True)
    for i in range(3):
        (volume / "logs" / f"terminal-{i}.log").write_bytes(b"docked\n" * (i + 1))
    archive = tmp_path / "archive"
    subprocess.run([sys.executable, "-m", "custodes", "init", str(archive)], check=True, capture_output=True)
    args = ["ingest", str(volume), "--archive", str(archive), "--driver", "generic", "--json"]
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "custodes", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr[-2000:]  # unknown_file warnings, nothing failed
    assert len(json.loads(out.stdout)["stored"]) == 3 and json.loads(out.stdout)["failed"] == []
    modules = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "custodes.timeline" in modules and "custodes.ingest" in modules
    assert sorted(m for m in modules if m.split(".")[0] == "numpy") == []
