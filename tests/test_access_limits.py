"""Limits the policy sets on access (issue 13, hostile review): an approval window has a maximum length.

Real accounts, a real archive service (helpers.serve).
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import PEOPLE, THREE_RECORDINGS, as_, build_cli_archive, catalog_rows, one_line_error, request


def test_an_approval_window_longer_than_the_policy_allows_is_refused(cli_archive: Path) -> None:
    rid = request(cli_archive, "carol", 1)
    line = one_line_error(as_("bob", "access", "approve", cli_archive, rid, "--hours", "100000"), "--hours 100000")
    assert "max_window_hours = 720" in line  # the default maximum: 30 days
    one_line_error(
        as_("bob", "access", "approve", cli_archive, rid, "--hours", "721"), r"approve for 720 hours or fewer"
    )
    assert catalog_rows(cli_archive, "SELECT status FROM access_requests WHERE id = ?", (rid,)) == [("pending",)]
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log WHERE action = 'approve'") == [(0,)]
    out = as_("bob", "access", "approve", cli_archive, rid, "--hours", "720", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "approved"


def test_the_maximum_window_is_the_policy_s_and_bounds_its_default_too(tmp_path: Path) -> None:
    people = PEOPLE.replace("window_hours = 72\n", "window_hours = 72\nmax_window_hours = 24\n")
    arch = build_cli_archive(tmp_path / "archive", people=people, recordings=THREE_RECORDINGS[:1], ingest_exit=(0, 1))
    rid = request(arch, "carol", 1)
    line = one_line_error(as_("bob", "access", "approve", arch, rid), r"the policy's window_hours = 72")
    assert "max_window_hours = 24" in line
    one_line_error(as_("bob", "access", "approve", arch, rid, "--hours", "25"), r"--hours 25 is longer")
    assert as_("bob", "access", "approve", arch, rid, "--hours", "24").returncode == 0
    assert catalog_rows(arch, "SELECT status FROM access_requests WHERE id = ?", (rid,)) == [("approved",)]
