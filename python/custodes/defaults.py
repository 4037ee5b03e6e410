"""Defaults a user can defend (DESIGN.md), in a module light enough for the CLI to import at start."""

NS = 1_000_000_000
#: Times before 2005-01-01 are an unset clock: no enforcement recorder predates it.
DEFAULT_CLOCK_FLOOR = 1_104_537_600 * NS
#: Between chapters of one recording, more than 1 s uncovered is a gap.
DEFAULT_GAP_TOLERANCE = 1 * NS
