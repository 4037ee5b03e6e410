"""What needs a person: the review page's dashboard, gathered from the rules the report and the query API already
apply (no rule of its own).

- ``not_stored``: the files an ingest could not store (``ingest_failed``) that no ingest has stored since (the
  report's rule, custodes.reports: a failure a re-run mended is resolved); their bytes may be only on the card;
- ``task_gaps``: the ``gap_unexplained`` findings of the tasks' coverage (custodes.tasks.task_coverage, as the
  query API's and the report's task findings);
- ``late_ingests``, ``clock_faults``, ``damaged``: the findings ingests recorded (the report's own reading of
  them, custodes.reports: each once, a clock fault with what corrected it since); a clock fault a dock clock
  reading corrected needs nobody (the report counts it resolved), the others do;
- ``access_requests``: access requests no approver has decided (custodes.access);
- ``overdue``: objects the verification window says are due for re-hashing (the report's verification section,
  custodes.schedule's window);
- ``holds``: recordings under a legal hold not released (custodes.retention).

Every section counts all its items and lists at most ``limit`` of them (the first found), so a dashboard of an
archive of 10^5 recordings stays a page. Each item carries what a page links it by (segment, device, officer,
task, request, hold, object) and a short text.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custodes.access import requests
from custodes.catalog import Scope
from custodes.findings import ns_from_rfc3339
from custodes.reports import (
    CLOCK_CORRECTED,
    CONCERNS,
    _catalog_findings,
    _resolve_clocks,
    _resolve_failures,
    _verification_section,
    in_concern,
)

if TYPE_CHECKING:
    from custodes.archive import Archive

__all__ = ["CLOCK_FAULTS", "DAMAGED", "KINDS", "Dashboard", "Item", "Section", "needs_a_person"]

#: Findings about a device's clock (Art. 10) that ingests record about a recording.
CLOCK_FAULTS = ("clock_unset", "clock_future", "name_time_mismatch", "time_reread", "clock_drift")
#: Files found damaged (truncated, no index, malformed): the report's "damaged" concern.
DAMAGED = CONCERNS["concern_damaged"]
#: The dashboard's sections, in the order a page shows them.
KINDS = ("not_stored", "task_gaps", "late_ingests", "clock_faults", "damaged", "access_requests", "overdue", "holds")
#: Items listed per section when the caller names no limit.
LISTED = 50


@dataclass(frozen=True, slots=True)
class Item:
    """One thing a person should look at: its ``kind`` (a finding kind, ``access_request``, ``overdue_object``
    or ``hold``), a short ``text`` (the finding's own message, or one made of the facts), and what a page links
    it by (None: not known for this item). Times are ns UTC."""

    kind: str
    text: str
    segment: int | None = None
    device: str | None = None
    officer: str | None = None
    task: str | None = None
    request: int | None = None
    hold: int | None = None
    object: str | None = None
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """One kind of thing needing a person: how many there are (``count``) and the first ``items`` of them."""

    name: str
    count: int
    items: tuple[Item, ...]

    @property
    def more(self) -> int:
        """How many were counted but not listed."""
        return self.count - len(self.items)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Every section of :data:`KINDS`, as of ``now`` (ns UTC)."""

    now: int
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.sections)


def _bounded(name: str, items: Iterable[Item], limit: int) -> Section:
    """A section counting every item and keeping the first ``limit``."""
    kept: list[Item] = []
    count = 0
    for item in items:
        count += 1
        if len(kept) < limit:
            kept.append(item)
    return Section(name, count, tuple(kept))


def _ns(value: Any) -> int | None:
    try:
        return ns_from_rfc3339(value)
    except ValueError:
        return None


def _finding_item(f: dict[str, Any]) -> Item:
    """An item of a finding of the report's model (its keys: kind, message, device, segment, start, end,
    evidence)."""
    evidence = f.get("evidence")
    officer = evidence.get("officer") if isinstance(evidence, dict) else None
    segment = f.get("segment") if isinstance(f.get("segment"), int) else None
    device = f.get("device") if isinstance(f.get("device"), str) else None
    return Item(
        str(f.get("kind")),
        str(f.get("message", "")),
        segment=segment,
        device=device,
        officer=officer if isinstance(officer, str) else None,
        start=_ns(f.get("start")),
        end=_ns(f.get("end")),
    )


def _task_gaps(archive: Archive) -> Iterator[Item]:
    """The tasks' ``gap_unexplained`` findings (custodes.tasks.task_coverage: what the report and the query API
    name), each linked to its task, and to its device and officer when it has one of each."""
    from custodes.tasks import task_coverage

    for c in task_coverage(archive):
        for f in c.findings:
            devices = f.evidence.get("devices") or []
            yield Item(
                f.kind,
                f.message,
                device=devices[0] if len(devices) == 1 else None,
                officer=c.task.officers[0] if len(c.task.officers) == 1 else None,
                task=c.task.id,
                start=f.start,
                end=f.end,
            )


def _open_clock_fault(f: dict[str, Any]) -> bool:
    """A clock finding no dock clock reading has corrected since (the report's ``clock_findings_open``); the
    kinds no reading corrects are open as found."""
    return f["kind"] in CLOCK_FAULTS and not (f["kind"] in CLOCK_CORRECTED and f.get("resolved_by"))


def _not_stored(f: dict[str, Any]) -> bool:
    """A file an ingest could not store that no ingest has stored since; and a failure naming no file (a disk
    short of room for the rest of a volume: the report says how many), which no later fact resolves."""
    return in_concern("concern_not_stored", f)


def _access_requests(archive: Archive, seen_by: str | None) -> Iterator[Item]:
    """The pending requests ``seen_by`` may see (custodes.access.requests: a viewer, their own)."""
    for r in requests(archive, seen_by=seen_by):
        if r.status != "pending":
            continue
        yield Item(
            "access_request",
            f"request {r.id} by {r.requester} ({r.purpose}, {len(r.segments)} recording(s)): {r.reason}",
            segment=r.segments[0] if len(r.segments) == 1 else None,
            request=r.id,
        )


def _overdue(archive: Archive, now: int, limit: int) -> Section:
    """The report's verification section: every overdue object counted, the most overdue listed (each with its
    first recording, which a page links)."""
    v = _verification_section(archive, now)
    listed = v["overdue_objects"][:limit]
    segments = archive.catalog.segments.of_objects([o["object"] for o in listed]) if listed else {}
    items = [
        Item(
            "overdue_object",
            f"{o['object'][:16]}… ({o['size']:,} bytes) last re-hashed {o['last_verified'] or 'never'}; "
            f"due every {v['window_days']:g} days",
            segment=next(iter(segments.get(o["object"], ())), None),  # its first recording not purged
            object=o["object"],
        )
        for o in listed
    ]
    return Section("overdue", v["overdue"], tuple(items))


def _holds(archive: Archive, limit: int) -> Section:
    from custodes.retention import status

    held = sorted(archive.catalog.retention.held_segments())
    shown = status(archive, held[:limit]) if held else []
    items = [
        Item(
            "hold",
            f"{s.name}: held ({', '.join(f'hold {h}' for h in s.holds)})",
            segment=s.segment,
            hold=s.holds[0] if s.holds else None,
        )
        for s in shown
    ]
    return Section("holds", len(held), tuple(items))


def needs_a_person(
    archive: Archive, *, now: int | None = None, limit: int = LISTED, seen_by: str | None = None
) -> Dashboard:
    """The dashboard of ``archive`` at ``now`` (ns UTC; default: now): each section of :data:`KINDS` with its
    count and at most ``limit`` items; the access requests those ``seen_by`` (a person) may see, when given."""
    if limit < 0:
        raise ValueError(f"limit {limit}: a number of items, 0 or more")
    now = time.time_ns() if now is None else now
    # The findings ingests recorded, of these kinds only, read as the report reads them (each once), each clock
    # fault with the dock clock reading that corrected it since, each failed file with the ingest that stored it
    # since (the report's rules, custodes.reports).
    everything = Scope(None, -(2**62), 2**62)
    found = _catalog_findings(archive, everything, ("ingest_failed", "late_ingest", *CLOCK_FAULTS, *DAMAGED))
    _resolve_clocks(archive, found)
    _resolve_failures(archive, found)
    sections = (
        _bounded("not_stored", (_finding_item(f) for f in found if _not_stored(f)), limit),
        _bounded("task_gaps", _task_gaps(archive), limit),
        _bounded("late_ingests", (_finding_item(f) for f in found if f["kind"] == "late_ingest"), limit),
        _bounded("clock_faults", (_finding_item(f) for f in found if _open_clock_fault(f)), limit),
        _bounded("damaged", (_finding_item(f) for f in found if f["kind"] in DAMAGED), limit),
        _bounded("access_requests", _access_requests(archive, seen_by), limit),
        _overdue(archive, now, limit),
        _holds(archive, limit),
    )
    return Dashboard(now, sections)
