"""The type stubs of the Rust extension match it (mypy.stubtest, as pydantic-core does)."""

from __future__ import annotations

import subprocess
import sys


def test_core_stubs_match_the_extension() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "custodes._core"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
