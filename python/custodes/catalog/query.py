"""The query API's reads (custodes.query): segments, findings, device events and devices, one page at a time.

Each read returns at most ``limit`` rows after a key (keyset pagination: ``WHERE id > ? ORDER BY id LIMIT ?``),
so a caller walking the whole archive holds one page, never the archive, and no read transaction stays open
between pages (an ingest may commit meanwhile; rows it adds have higher ids and are seen by later pages)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, NamedTuple

from custodes.catalog.devices import _FINDING_SUBJECT, FINDING_IDENTITY, FINDING_SEGMENT
from custodes.catalog.evidence import _HELD_AT, Table, question_marks

#: Numbers the temporary tables of first findings, one per walk (two walks at once on one connection).
_WALKS = itertools.count()

#: A segment's time span, clock-corrected where a correction is known; a segment without an end spans its start.
_SEG_START = "COALESCE(s.corrected_start_ns, s.start_ns)"
_SEG_END = f"COALESCE(s.corrected_end_ns, s.end_ns, {_SEG_START})"
#: A finding's span: its own, or its ingest's start when it has none (as the report places it).
_FINDING_START = "COALESCE(f.start_ns, i.started_ns)"
_FINDING_END = f"COALESCE(f.end_ns, {_FINDING_START})"


@dataclass(frozen=True)
class Selection:
    """What the caller asked for, resolved: ``devices`` (None: every device), the segments' ``officer``, a
    ``case``'s segments, the time range [lo, hi) a span must overlap (None: open on that side), and for findings
    the one ``segment`` they name (None: any)."""

    devices: tuple[str, ...] | None = None
    officer: str | None = None
    officer_devices: tuple[str, ...] = ()  # a finding without a segment is the officer's when on one of these
    case: str | None = None
    lo: int | None = None
    hi: int | None = None
    segment: int | None = None


def _overlaps(start: str, end: str, sel: Selection) -> tuple[list[str], list[Any]]:
    """A span [start, end] overlaps [lo, hi): it starts before hi, and ends after lo (or, empty, starts at lo or
    later). A span with no time at all overlaps no range."""
    parts: list[str] = []
    args: list[Any] = []
    if sel.lo is not None or sel.hi is not None:
        parts.append(f"{start} IS NOT NULL")
    if sel.hi is not None:
        parts.append(f"{start} < ?")
        args.append(sel.hi)
    if sel.lo is not None:
        parts.append(f"({end} > ? OR {start} >= ?)")
        args += [sel.lo, sel.lo]
    return parts, args


class SegmentRow(NamedTuple):
    id: int
    device_id: str
    original_name: str
    kind: str
    sha256: str
    size: int
    start_ns: int | None  # corrected where known
    end_ns: int | None
    device_start_ns: int | None  # as the device's clock said
    device_end_ns: int | None
    start_source: str | None
    sequence: int | None
    important: int
    recording: str | None
    chapter: int | None
    officer_id: str | None
    ingest_id: int
    ingested_ns: int
    ledger_seq: int
    purged_ns: int | None
    responsible: str | None  # the assignee of its device at its time (custodes.devices)


class QueryFindingRow(NamedTuple):
    id: int
    ingest_id: int
    segment_id: int | None
    kind: str
    severity: str
    device_id: str | None
    path: str | None
    start_ns: int | None
    end_ns: int | None
    detail: str  # the finding as JSON


class EventRow(NamedTuple):
    id: int
    device_id: str
    time_ns: int
    kind: str
    detail: str
    ingest_id: int | None


class DeviceRow(NamedTuple):
    device_id: str
    kind: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    officer_id: str | None
    officer_name: str | None
    unit_id: str | None
    unit_name: str | None
    updated_ns: int | None


_SEGMENT_COLUMNS = (
    f"s.id, s.device_id, s.original_name, s.kind, s.sha256, s.size, {_SEG_START}, "
    "COALESCE(s.corrected_end_ns, s.end_ns), s.start_ns, s.end_ns, s.start_source, s.sequence, s.important, "
    "s.recording, s.chapter, s.officer_id, s.ingest_id, s.ingested_ns, s.ledger_seq, s.purged_ns, "
    f"(SELECT a.officer_id FROM assignments a WHERE {_HELD_AT} ORDER BY a.start_ns DESC LIMIT 1)"
)
#: The segment ``s`` is the officer's (the parameter, given twice): its device's assignee at its time, or, with
#: nobody assigned then, the officer it was attributed to at ingest (custodes.devices).
_OFFICERS = (
    f"(EXISTS (SELECT 1 FROM assignments a WHERE {_HELD_AT} AND a.officer_id = ?) "
    f"OR (NOT EXISTS (SELECT 1 FROM assignments a WHERE {_HELD_AT}) AND s.officer_id = ?))"
)


class Query(Table):
    def case_exists(self, case: str) -> bool:
        return self._one("SELECT 1 FROM cases WHERE id = ?", (case,)) is not None

    def officer_known(self, officer: str) -> bool:
        """A device is issued or assigned to the officer, or a recording is attributed to them."""
        sql = (
            "SELECT EXISTS (SELECT 1 FROM devices WHERE officer_id = ?1) "
            "OR EXISTS (SELECT 1 FROM segments WHERE officer_id = ?1) "
            "OR EXISTS (SELECT 1 FROM assignments WHERE officer_id = ?1)"
        )
        return self._one(sql, (officer,)) == 1

    def segments(self, sel: Selection, after: int, limit: int) -> list[SegmentRow]:
        """The selected segments with an id above ``after``, at most ``limit``, by id."""
        parts: list[str] = ["s.id > ?"]
        args: list[Any] = [after]
        if sel.devices is not None:
            parts.append(f"s.device_id IN ({question_marks(sel.devices)})")
            args += sel.devices
        if sel.officer is not None:
            parts.append(_OFFICERS)
            args += [sel.officer, sel.officer]
        if sel.case is not None:
            parts.append("s.id IN (SELECT segment_id FROM case_segments WHERE case_id = ?)")
            args.append(sel.case)
        more, more_args = _overlaps(_SEG_START, _SEG_END, sel)
        sql = f"SELECT {_SEGMENT_COLUMNS} FROM segments s WHERE {' AND '.join(parts + more)} ORDER BY s.id LIMIT ?"  # noqa: S608
        return [SegmentRow(*r) for r in self._conn.execute(sql, (*args, *more_args, limit))]

    def first_findings(self, sel: Selection) -> str:
        """A temporary table (its name) of the ids of the archive's findings on the selected devices: the first row
        of each identity (custodes.catalog.devices.FINDING_IDENTITY; a volume ingested again records its findings
        again). Made in one pass, so each page of :meth:`findings` looks its rows up in it instead of grouping the
        whole table again; it lives in SQLite's temporary store, not in the caller's memory. The caller drops it
        with :meth:`drop_first_findings` when its walk ends."""
        name = f"first_findings_{next(_WALKS)}"
        where = "1=1"
        args: list[Any] = []
        if sel.devices is not None:
            where, args = f"f.device_id IN ({question_marks(sel.devices)})", list(sel.devices)
        if sel.segment is not None:
            # Every row of an identity that has a row naming the segment: those naming it, and those naming no
            # segment (a file found already present is about the recording stored before; a finding about no file,
            # whose identity is its span, names none: an ingest takes a finding's segment from its path). The first
            # of each of those identities is then the first of all its rows. Two index lookups, not the device's
            # rows: a UNION, as SQLite uses no index for "segment_id = ? OR segment_id IS NULL".
            on = "" if sel.devices is None else f"g.device_id IN ({question_marks(sel.devices)}) AND "
            where += (
                f" AND f.id IN (SELECT g.id FROM findings g WHERE {on}g.segment_id = ? "
                f"UNION ALL SELECT g.id FROM findings g WHERE {on}g.segment_id IS NULL)"
            )
            devices = [] if sel.devices is None else list(sel.devices)
            args += [*devices, sel.segment, *devices]
        self._conn.execute(f"CREATE TEMP TABLE {name} (id INTEGER PRIMARY KEY)")
        self._conn.execute(
            f"INSERT INTO temp.{name} SELECT MIN(f.id) FROM findings f JOIN ingests i ON i.id = f.ingest_id "  # noqa: S608
            f"WHERE {where} GROUP BY {FINDING_IDENTITY}",
            args,
        )
        return name

    def few_unnamed(self, sel: Selection, most: int) -> bool:
        """The selected devices' findings that name no segment are at most ``most`` (False with no device
        selected): then :meth:`firsts_among` reads a page's identities in a few index lookups."""
        if sel.devices is None:
            return False
        sql = (
            "SELECT COUNT(*) FROM (SELECT 1 FROM findings WHERE "  # noqa: S608
            f"device_id IN ({question_marks(sel.devices)}) AND segment_id IS NULL LIMIT ?)"
        )
        return int(self._one(sql, (*sel.devices, most + 1))) <= most

    def firsts_among(self, ids: list[int]) -> set[int]:
        """Those of the findings ``ids`` that are the first row of their identity (FINDING_IDENTITY): a page's
        check, where :meth:`first_findings` groups every row of the devices. The rows an identity can share are
        found by index: those naming the segment its finding is about, and those of its device naming no segment
        (a file found already present names none; nor does a finding about no file, whose identity is its span:
        an ingest takes a finding's segment from its path)."""
        if not ids:
            return set()
        sql = (
            f"WITH cand AS (SELECT f.id, f.device_id, {_FINDING_SUBJECT} AS subject FROM findings f "  # noqa: S608
            f"JOIN ingests i ON i.id = f.ingest_id WHERE f.id IN ({question_marks(ids)})), "
            "pool AS (SELECT g.id FROM cand c JOIN findings g "
            "ON g.device_id = c.device_id AND g.segment_id = c.subject "
            "UNION SELECT g.id FROM findings g WHERE g.device_id IN (SELECT device_id FROM cand) "
            "AND g.segment_id IS NULL) "
            "SELECT MIN(f.id) FROM findings f JOIN ingests i ON i.id = f.ingest_id WHERE f.id IN (SELECT id FROM pool) "
            f"GROUP BY {FINDING_IDENTITY}"
        )
        return {r[0] for r in self._conn.execute(sql, ids)} & set(ids)

    def drop_first_findings(self, name: str) -> None:
        self._conn.execute(f"DROP TABLE IF EXISTS temp.{name}")

    def findings(self, sel: Selection, after: int, limit: int, firsts: str | None = None) -> list[QueryFindingRow]:
        """The selected findings ingests recorded, with an id above ``after``, at most ``limit``, by id, each with
        the recording it is about (custodes.catalog.devices.FINDING_SEGMENT: a failed file's, once stored). A
        finding is the officer's when its segment is, or, without a segment, when it is on one of
        ``sel.officer_devices``; a case's when its segment is linked to the case."""
        parts: list[str] = ["f.id > ?"]
        args: list[Any] = [after]
        if firsts is not None:  # only the first row of each identity (first_findings)
            parts.append(f"f.id IN (SELECT id FROM temp.{firsts})")
        if sel.devices is not None:
            parts.append(f"f.device_id IN ({question_marks(sel.devices)})")
            args += sel.devices
        if sel.officer is not None:
            parts.append(f"({_OFFICERS} OR (s.id IS NULL AND f.device_id IN ({question_marks(sel.officer_devices)})))")
            args += [sel.officer, sel.officer, *sel.officer_devices]
        if sel.case is not None:
            parts.append("s.id IN (SELECT segment_id FROM case_segments WHERE case_id = ?)")
            args.append(sel.case)
        if sel.segment is not None:
            # Its own rows, and those naming no segment that are about it: two index lookups (as first_findings).
            parts.append("(f.segment_id = ? OR (f.segment_id IS NULL AND s.id = ?))")
            args += [sel.segment, sel.segment]
        more, more_args = _overlaps(_FINDING_START, _FINDING_END, sel)
        sql = (
            "SELECT f.id, f.ingest_id, s.id, f.kind, f.severity, f.device_id, f.path, f.start_ns, f.end_ns, "  # noqa: S608
            "f.detail FROM findings f JOIN ingests i ON i.id = f.ingest_id "
            f"LEFT JOIN segments s ON s.id = {FINDING_SEGMENT} WHERE {' AND '.join(parts + more)} ORDER BY f.id LIMIT ?"
        )
        return [QueryFindingRow(*r) for r in self._conn.execute(sql, (*args, *more_args, limit))]

    def events(self, sel: Selection, after: int, limit: int) -> list[EventRow]:
        """The selected devices' log entries with an id above ``after``, at most ``limit``, by id; a time range
        selects the entries whose time is in it."""
        parts: list[str] = ["e.id > ?"]
        args: list[Any] = [after]
        if sel.devices is not None:
            parts.append(f"e.device_id IN ({question_marks(sel.devices)})")
            args += sel.devices
        if sel.hi is not None:
            parts.append("e.time_ns < ?")
            args.append(sel.hi)
        if sel.lo is not None:
            parts.append("e.time_ns >= ?")
            args.append(sel.lo)
        sql = (
            "SELECT e.id, e.device_id, e.time_ns, e.kind, e.detail, e.ingest_id FROM device_events e "  # noqa: S608
            f"WHERE {' AND '.join(parts)} ORDER BY e.id LIMIT ?"
        )
        return [EventRow(*r) for r in self._conn.execute(sql, (*args, limit))]

    def devices(self, after: str, limit: int) -> list[DeviceRow]:
        """Devices with an id above ``after`` (by text), at most ``limit``, by id."""
        sql = (
            f"SELECT {', '.join(DeviceRow._fields)} FROM devices WHERE device_id > ? "  # noqa: S608
            "ORDER BY device_id LIMIT ?"
        )
        return [DeviceRow(*r) for r in self._conn.execute(sql, (after, limit))]
