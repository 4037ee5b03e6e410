"""Asking an open archive questions: its segments, findings, device events and devices, as typed records.

    with open_archive("ARCHIVE") as archive:
        for seg in archive.segments(officer="0077", start=t0, end=t1):
            print(seg.id, seg.name, seg.sha256)
        gaps = [f for f in archive.findings(task="T-17") if f.kind == "gap_unexplained"]

Every call returns an iterator that reads the catalog a page at a time (:data:`PAGE` rows, keyset pagination by
id), so walking 10^6 segments holds one page, not the archive. The filters are keyword arguments, all optional,
combined with AND:

- ``device``: one device id;
- ``officer``: a segment is the officer's when its device was assigned to them at its time
  (:attr:`Segment.responsible`, custodes.devices), or, with nobody assigned then, when it was attributed to them
  at ingest (:attr:`Segment.officer`);
  a finding when its segment is, or, without a segment, when it is on a device issued to the officer or that
  recorded footage attributed to them; an event when it is on such a device;
- ``case``: the segments linked to the case by ``custodes retention case``, and the findings of those segments;
- ``task``: the task's window and its devices as task coverage takes them (the task's own devices, and the
  devices of its officers' recordings in the window): a task filter first computes that task's coverage;
- ``start``/``end`` (ns UTC): a segment or finding whose span overlaps [start, end) (clock-corrected times; a
  finding without a span is placed at its ingest's start; a segment without a time matches no range), an event
  whose time is in it.

A device, officer, task or case the archive does not know is a :class:`QueryError`, never an empty answer.

``after`` resumes a walk where an earlier one stopped (the HTTP API's cursor): only segments or events with a
greater id, devices with a greater device id, findings recorded with a greater id (then the derived findings, which
have none).

Which findings: :meth:`~custodes.archive.Archive.findings` yields the findings ingests recorded (by id), each once
(the first ingest's row of each identity, :data:`custodes.catalog.devices.FINDING_IDENTITY`: a volume ingested again
finds the same facts again; those recorded up to the call), then the ``gap_unexplained`` findings of the tasks'
coverage, as the report shows them (a ``case`` filter selects no task finding: a gap belongs to no recording). Not
here: the integrity findings of ``custodes verify`` (not facts the catalog holds: run :func:`custodes.verify.verify`)
and the access refusals the report lists from the access log (:func:`custodes.reports.build_report`'s ``access``
section).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from custodes.catalog.query import QueryFindingRow, SegmentRow, Selection
from custodes.defaults import INT64_MAX, INT64_MIN, NS
from custodes.errors import CustodesError
from custodes.findings import ARTICLES, Finding
from custodes.records import Device, DeviceEvent, RecordedFinding, Segment

if TYPE_CHECKING:
    from custodes.archive import Archive
    from custodes.tasks import TaskCoverage

__all__ = ["PAGE", "QueryError", "devices", "events", "findings", "segment", "segment_findings", "segments"]

#: Rows read from the catalog at a time.
PAGE = 500
#: Findings naming no segment on the selected devices up to which :func:`findings` checks identities page by page.
UNNAMED_PER_PAGE = 1000

T = TypeVar("T")
K = TypeVar("K")


class QueryError(CustodesError, LookupError):
    """A query the archive cannot answer as asked: a device, officer, task or case it does not know, or a time
    range that ends before it starts."""

    kind = "query"


def _paged(fetch: Callable[[K, int], list[T]], first: K, key: Callable[[T], K]) -> Iterator[T]:
    """Every row ``fetch(after, PAGE)`` gives, page after page, each page starting after the last row's key."""
    after = first
    while True:
        rows = fetch(after, PAGE)
        yield from rows
        if len(rows) < PAGE:
            return
        after = key(rows[-1])


def _instant(value: object, name: str) -> int | None:
    """A time filter as ns UTC: an int (not a bool) in SQLite's 64-bit range, or an aware datetime; anything else
    (a naive datetime, text, a float) is a QueryError. Compared as it came, a datetime or a string matched
    nothing and the caller was told there was nothing to find."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise QueryError(f"{name}={value!r}: a datetime without a time zone is no instant; give it tzinfo")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        value = (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000
    if not isinstance(value, int) or isinstance(value, bool):
        raise QueryError(f"{name}={value!r}: a time is int nanoseconds since 1970 UTC, or an aware datetime")
    if not INT64_MIN <= value <= INT64_MAX:
        raise QueryError(f"{name}={value}: outside the 64-bit nanoseconds a time is kept in")
    return value


def _select(
    archive: Archive,
    device: str | None,
    officer: str | None,
    case: str | None,
    task: str | None,
    start: int | datetime | None,
    end: int | datetime | None,
) -> tuple[Selection, TaskCoverage | None]:
    """The filters checked against what the archive knows and resolved into a selection (and the task's
    coverage, when a task was named)."""
    catalog = archive.catalog
    if device is not None and not catalog.devices.exists(device):
        raise QueryError(f"no device {device!r} in this archive")
    if officer is not None and not catalog.query.officer_known(officer):
        raise QueryError(f"no officer {officer!r} in this archive (no device issued to them, no recording theirs)")
    if case is not None and not catalog.query.case_exists(case):
        raise QueryError(f"no case {case!r} in this archive")
    start, end = _instant(start, "start"), _instant(end, "end")
    if start is not None and end is not None and end < start:
        raise QueryError("the time range ends before it starts")
    devices: tuple[str, ...] | None = None if device is None else (device,)
    lo, hi, cov = start, end, None
    if task is not None:
        if catalog.tasks.get(task) is None:
            raise QueryError(f"no task {task!r} in this archive")
        from custodes.tasks import task_coverage

        (cov,) = task_coverage(archive, [task])
        devices = tuple(d for d in cov.devices if devices is None or d in devices)
        lo = cov.task.start if lo is None else max(lo, cov.task.start)
        hi = cov.task.end if hi is None else min(hi, cov.task.end)
    officer_devices = () if officer is None else tuple(catalog.devices.of_officer(officer))
    return Selection(devices, officer, officer_devices, case, lo, hi), cov


def segments(
    archive: Archive,
    *,
    device: str | None = None,
    officer: str | None = None,
    case: str | None = None,
    task: str | None = None,
    start: int | datetime | None = None,
    end: int | datetime | None = None,
    after: int = 0,
) -> Iterator[Segment]:
    """The segments the filters select (module docstring), by id, read a page at a time."""
    sel, _ = _select(archive, device, officer, case, task, start, end)
    rows = _paged(lambda last, n: archive.catalog.query.segments(sel, last, n), after, lambda r: r.id)
    return (_segment(r) for r in rows)


def segment(archive: Archive, segment_id: int) -> Segment:
    """The segment with id ``segment_id`` (a recording page, a link from a report); a :class:`QueryError` when the
    archive has none. The same read as :func:`segments`: the first segment after ``segment_id - 1``."""
    if not isinstance(segment_id, int) or isinstance(segment_id, bool) or not 0 < segment_id <= INT64_MAX:
        raise QueryError(f"no segment {segment_id!r} in this archive")
    rows = archive.catalog.query.segments(Selection(), segment_id - 1, 1)
    if not rows or rows[0].id != segment_id:
        raise QueryError(f"no segment {segment_id} in this archive")
    return _segment(rows[0])


def _segment(row: SegmentRow) -> Segment:
    return Segment(*row[:12], bool(row[12]), *row[13:])


def _recorded(row: QueryFindingRow) -> RecordedFinding:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):  # an edited row: verify names it; the query still gives its columns
        detail = {"message": row.detail}
    evidence = detail.get("evidence")
    return RecordedFinding(
        row.id,
        row.kind,
        row.severity,
        ARTICLES.get(row.kind),
        str(detail.get("message", "")),
        row.device_id,
        row.path,
        row.start_ns,
        row.end_ns,
        row.segment_id,
        row.ingest_id,
        None,
        evidence if isinstance(evidence, dict) else {},
    )


def _of_task(task: str, f: Finding) -> RecordedFinding:
    return RecordedFinding(
        None, f.kind, f.severity, f.article, f.message, f.device, f.path, f.start, f.end, None, None, task, f.evidence
    )


def _task_findings(archive: Archive, sel: Selection, cov: TaskCoverage | None) -> Iterator[RecordedFinding]:
    """The ``gap_unexplained`` findings of the selected tasks' coverage: the named task's, or, with no task
    named, every task's whose devices include the selected device and whose officers include the selected
    officer; each one overlapping the time range. None for a case."""
    if sel.case is not None:
        return
    if cov is not None:
        covs = [cov]
    else:
        from custodes.tasks import task_coverage

        covs = task_coverage(archive)
    for c in covs:
        if sel.devices is not None and not set(sel.devices) & set(c.devices):
            continue
        if sel.officer is not None and sel.officer not in c.task.officers:
            continue
        for f in c.findings:
            s, e = f.start, f.end if f.end is not None else f.start
            if (sel.hi is None or (s is not None and s < sel.hi)) and (
                sel.lo is None or (s is not None and e is not None and (e > sel.lo or s >= sel.lo))
            ):
                yield _of_task(c.task.id, f)


def _registry_findings(archive: Archive, sel: Selection) -> Iterator[RecordedFinding]:
    """The device registry's findings of the selected recordings (custodes.devices: derived now, from the
    registry and assignments as they are), each at its recording's time, which must fall in the time range."""
    from custodes.catalog import Scope
    from custodes.devices import device_findings

    devices = list(sel.devices) if sel.devices is not None else None
    if devices is None and sel.officer is not None:
        devices = list(sel.officer_devices)  # whose recordings without an assignment or an officer are theirs
    lo, hi = -(2**62) if sel.lo is None else sel.lo, 2**62 if sel.hi is None else sel.hi
    in_case = None if sel.case is None else {s.id for s in segments(archive, case=sel.case)}
    for facts, f in device_findings(archive, Scope(devices, lo, hi, sel.officer)):
        if in_case is None or facts.segment_id in in_case:
            yield RecordedFinding(None, f.kind, f.severity, f.article, f.message, f.device, None, f.start, None,
                                  facts.segment_id, None, None, f.evidence)  # fmt: skip


def findings(
    archive: Archive,
    *,
    device: str | None = None,
    officer: str | None = None,
    case: str | None = None,
    task: str | None = None,
    start: int | datetime | None = None,
    end: int | datetime | None = None,
    after: int = 0,
) -> Iterator[RecordedFinding]:
    """The findings the filters select (module docstring): those ingests recorded, by id, read a page at a time;
    then the tasks' ``gap_unexplained``; then the device registry's (custodes.devices), by segment."""
    sel, cov = _select(archive, device, officer, case, task, start, end)

    def walk() -> Iterator[RecordedFinding]:
        # Each finding once, as the report counts them: a volume ingested again records its findings again.
        query = archive.catalog.query
        if query.few_unnamed(sel, UNNAMED_PER_PAGE):
            # Checked a page at a time: the first page of a device of 10^5 findings without grouping them all
            # (a device page, /api/v1/findings?device=: 0.1 s each)
            last = after
            while True:
                rows = query.findings(sel, last, PAGE)
                firsts = query.firsts_among([r.id for r in rows])
                yield from (_recorded(r) for r in rows if r.id in firsts)
                if len(rows) < PAGE:
                    break
                last = rows[-1].id
        else:  # every identity's first row found once, for the walk (each page would read the unnamed rows again)
            table = query.first_findings(sel)
            try:
                walked = _paged(lambda last, n: query.findings(sel, last, n, table), after, lambda r: r.id)
                yield from (_recorded(r) for r in walked)
            finally:
                query.drop_first_findings(table)
        yield from _task_findings(archive, sel, cov)
        yield from _registry_findings(archive, sel)

    return walk()


def segment_findings(archive: Archive, segment: Segment) -> list[RecordedFinding]:
    """The findings about one recording: exactly those of :func:`findings` of its device that name it (each once,
    as the report counts them): those ingests recorded, then the device registry's. The recording page's read:
    the segment's rows and those its findings' identities share, not every finding of the device (a device of
    10^5 findings took seconds a page)."""
    sel = Selection(devices=(segment.device,), segment=segment.id)
    query = archive.catalog.query
    firsts = query.first_findings(sel)
    try:
        found = [_recorded(r) for r in _paged(lambda last, n: query.findings(sel, last, n, firsts), 0, lambda r: r.id)]
    finally:
        query.drop_first_findings(firsts)
    # The tasks' gap_unexplained name no segment; the registry's are found by device and kept for this one.
    return found + [
        f for f in _registry_findings(archive, Selection(devices=(segment.device,))) if f.segment == segment.id
    ]


def events(
    archive: Archive,
    *,
    device: str | None = None,
    officer: str | None = None,
    task: str | None = None,
    start: int | datetime | None = None,
    end: int | datetime | None = None,
    after: int = 0,
) -> Iterator[DeviceEvent]:
    """The device log entries the filters select (module docstring; an event has no case), by id."""
    sel, _ = _select(archive, device, officer, None, task, start, end)
    if officer is not None:
        mine = set(sel.officer_devices)
        sel = Selection(
            tuple(d for d in (sel.devices if sel.devices is not None else sel.officer_devices) if d in mine),
            lo=sel.lo,
            hi=sel.hi,
        )
    rows = _paged(lambda last, n: archive.catalog.query.events(sel, last, n), after, lambda r: r.id)
    return (DeviceEvent(*r) for r in rows)


def devices(archive: Archive, *, after: str = "") -> Iterator[Device]:
    """Every device the archive knows, by id, read a page at a time."""
    rows = _paged(lambda last, n: archive.catalog.query.devices(last, n), after, lambda r: r.device_id)
    return (Device(*r) for r in rows)
