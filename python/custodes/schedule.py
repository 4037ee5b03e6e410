"""The verification schedule: which objects a verify run re-hashes, how far it may go, and where it resumes.

A full re-hash of an agency archive does not fit in one run on one machine (one SHA-NI core re-hashes about
1 GB/s: a petabyte is twelve days), so a run takes part of it:

- a **slice** ``K/N`` of the digest space: slices are ranges of SHA-256 values, so an object stays in its slice
  as the archive grows, and the N slices cover every object exactly once;
- objects **older than** a number of days since they were last re-hashed, the least recently verified first;
- a **budget** of bytes or of time, after which the run stops cleanly and says how far it got.

A run is recorded (``verify_runs``): one stopped by its budget or killed resumes when the same selection is run
again, by not re-hashing the objects it stamped verified since it started. A run is resumed only within the
policy's verification window (``[verification] window_days``), which is also how old a last re-hash may be
before the compliance report lists the object as overdue.

The ledger, the catalog and the store's listing are checked on every run whatever it re-hashes: they are
cheap, and a slice must not hide a rewritten ledger.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction

from custodes.catalog import Catalog
from custodes.catalog.evidence import EVERY_DIGEST, DigestRange, VerifyRun
from custodes.errors import CustodesError

__all__ = ["Budget", "Selection", "Slice", "parse_budget", "parse_slice", "resumable"]

NS_PER_DAY = 86_400 * 10**9
#: More slices than this cannot each hold an object of any archive (2^32: four billion objects).
MAX_SLICES = 2**32
#: --older-than at most a century: a cut-off that fits int64 nanoseconds, and older than any archive.
MAX_AGE_DAYS = 36_525
_DIGEST_SPACE = 1 << 256


class ScheduleError(CustodesError, ValueError):
    """A slice, age or budget that cannot be taken as given."""

    kind = "usage"


@dataclass(frozen=True)
class Slice:
    """Slice ``k`` of ``n`` (1-based): the SHA-256 values from (k-1)/n to k/n of the digest space."""

    k: int
    n: int

    def __post_init__(self) -> None:
        if not (1 <= self.k <= self.n):
            raise ScheduleError(f"slice {self.k}/{self.n}: K must be from 1 to N")
        if self.n > MAX_SLICES:
            raise ScheduleError(f"slice {self.k}/{self.n}: at most {MAX_SLICES:,} slices")

    @property
    def range(self) -> DigestRange:
        def bound(i: int) -> str | None:
            return None if i in (0, self.n) else format(i * _DIGEST_SPACE // self.n, "064x")

        return DigestRange(bound(self.k - 1), bound(self.k))

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def parse_slice(text: str) -> Slice:
    m = re.fullmatch(r"([0-9]{1,12})/([0-9]{1,12})", text.strip())
    if m is None:
        raise ScheduleError(f"slice {text!r}: give it as K/N, for example 3/30")
    return Slice(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Budget:
    """How much a run may re-hash: bytes, seconds, or both (None: no limit)."""

    bytes: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        parts = []
        if self.bytes is not None:
            parts.append(f"{self.bytes:,} bytes")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        return " and ".join(parts) or "none"


_BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
_BYTE_UNITS |= {"t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15}
_BYTE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}
#: A budget larger than this (a zettabyte, a hundred years) is a typo, not a plan.
MAX_BUDGET_BYTES, MAX_BUDGET_SECONDS = 10**21, 100 * 365.25 * 86_400
_TIME_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}


def parse_budget(text: str) -> Budget:
    """``500GB``, ``2TiB``, ``1048576`` (bytes) or ``90s``, ``30min``, ``8h``, ``1d`` (time)."""
    m = re.fullmatch(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([a-zA-Z]*)", text.strip())
    unit = "" if m is None else m.group(2).lower()
    if m is not None and unit in _TIME_UNITS:  # "m" is minutes: time first
        seconds = Fraction(m.group(1)) * _TIME_UNITS[unit]
        if seconds <= MAX_BUDGET_SECONDS:
            return Budget(seconds=float(seconds))
    elif m is not None and unit in _BYTE_UNITS:
        size = int(Fraction(m.group(1)) * _BYTE_UNITS[unit])  # exact: no float rounds a byte count
        if size <= MAX_BUDGET_BYTES:
            return Budget(bytes=size)
    raise ScheduleError(
        f"budget {text!r}: give bytes (500GB, 2TiB, 1PB, 1048576) or a duration (90s, 30min, 8h, 1d), at most "
        "a zettabyte or a hundred years; m is minutes, MB megabytes"
    )


@dataclass(frozen=True)
class Selection:
    """Which objects a run re-hashes (the budget is not part of it: a run resumed with another budget is the
    same run). ``quick``: no object is re-read, only its size and presence are checked."""

    slice: Slice | None = None
    older_than_days: float | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        days = self.older_than_days
        if days is not None and not (0 <= days <= MAX_AGE_DAYS):  # NaN fails too
            raise ScheduleError(f"--older-than {days}: a number of days from 0 to {MAX_AGE_DAYS:,}")

    @property
    def range(self) -> DigestRange:
        return EVERY_DIGEST if self.slice is None else self.slice.range

    @property
    def key(self) -> str:
        """What identifies the run to resume (verify_runs.selection)."""
        return json.dumps(
            {"slice": None if self.slice is None else str(self.slice), "older_than_days": self.older_than_days},
            sort_keys=True,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "slice": None if self.slice is None else str(self.slice),
            "older_than_days": self.older_than_days,
            "quick": self.quick,
        }

    def cutoff_ns(self, started_ns: int) -> int | None:
        """Objects last re-hashed before this are due for a run started at ``started_ns``: fixed by the run's
        start, so a resumed run picks the same objects."""
        if self.older_than_days is None:
            return None
        return started_ns - int(self.older_than_days * NS_PER_DAY)


def resumable(catalog: Catalog, selection: Selection, window_days: float, now: int) -> VerifyRun | None:
    """The run to go on with: the latest unfinished one of this selection started within the verification
    window, or None (a new run, recorded by verify with its first shard)."""
    return catalog.verify_runs.unfinished(selection.key, now - int(window_days * NS_PER_DAY))
