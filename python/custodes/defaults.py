"""Defaults a user can defend (DESIGN.md), in a module light enough for the CLI to import at start."""

NS = 1_000_000_000
#: Times before 2005-01-01 are an unset clock: no enforcement recorder predates it.
DEFAULT_CLOCK_FLOOR = 1_104_537_600 * NS
#: Between chapters of one recording, more than 1 s uncovered is a gap.
DEFAULT_GAP_TOLERANCE = 1 * NS


def clock_is_set(ns: int | None) -> bool:
    """Whether a device-clock time can be believed: known, and not before the floor
    (an unset clock, whether a file name or a container said it)."""
    return ns is not None and ns >= DEFAULT_CLOCK_FLOOR


#: The same rule for a segment row in SQL.
SQL_CLOCK_IS_SET = f"(s.start_ns IS NOT NULL AND s.start_ns >= {DEFAULT_CLOCK_FLOOR})"
