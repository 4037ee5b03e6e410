"""The package type-checks: mypy finds nothing in python/custodes (about 7 s here, from an empty cache)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_the_package(tmp_path: Path) -> None:
    # mypy from the venv running the tests; its cache in the test's folder, so a stale shared one proves nothing
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "python/custodes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found in "), done.stdout


#: An agency tool's code, as the README shows the library used: names re-exported by the package (some loaded on
#: first use) must be typed as what they are, not `object` (a hostile review: `custodes.probe(...)` was "not
#: callable" and `custodes.MediaInfo` "not valid as a type" under mypy --strict).
CLIENT = """
import custodes
from custodes import ChecksumEntry, MediaInfo


def duration(path: str) -> float | None:
    info: MediaInfo = custodes.probe(path)
    return info.duration


def listed(text: bytes) -> list[ChecksumEntry]:
    entries, _malformed = custodes.parse_checksum_list(text, "sha256")
    return entries


def digests(paths: list[str]) -> dict[str, str]:
    return {r.path: r.digests["sha256"] for r in custodes.hash_files(paths) if r.error is None}
"""


def test_a_client_of_the_package_s_names_type_checks_strictly(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(client)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
