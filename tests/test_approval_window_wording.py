"""An approval window refused for a hair over the maximum says the number given, not a rounding of it (hostile
review of issue 13: ``--hours 720.0000001`` was "720 is longer than ... 720")."""

from __future__ import annotations

from pathlib import Path

from helpers import as_, catalog_rows, one_line_error, request


def test_a_window_a_hair_over_the_maximum_is_refused_in_the_digits_given(cli_archive: Path) -> None:
    rid = request(cli_archive, "carol", 1)
    one_line_error(
        as_("bob", "access", "approve", cli_archive, rid, "--hours", "720.0000001"),
        r"^custodes: --hours 720\.0000001 is longer than the longest approval window the policy allows "
        r"\(\[access\] max_window_hours = 720\); approve for 720 hours or fewer$",
    )
    assert catalog_rows(cli_archive, "SELECT status FROM access_requests WHERE id = ?", (rid,)) == [("pending",)]
