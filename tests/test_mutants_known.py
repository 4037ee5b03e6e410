"""The deliberate bugs of issue 11 (scripts/mutants --known) stay applicable: each edits code that is still
there, exactly once. A refactor once moved ingest's read-back comparison, and --known stopped at that bug for
every later run without anyone noticing: the per-commit suite now fails instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_deliberate_bug_still_finds_the_code_it_edits() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutants"), "--anchors"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "mutants: the code of all 8 deliberate bugs is where KNOWN says\n"
