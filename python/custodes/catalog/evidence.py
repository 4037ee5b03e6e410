"""Segments (one recorded file each) and objects (the stored bytes they point at, by SHA-256)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from custodes.defaults import DEFAULT_CLOCK_FLOOR

#: A segment's clock can be believed: known, and not before the floor (defaults.clock_is_set, in SQL).
CLOCK_IS_SET = f"(s.start_ns IS NOT NULL AND s.start_ns >= {DEFAULT_CLOCK_FLOOR})"
#: When a recording happened, for periods: its (corrected) start, or its ingest when its clock is unset.
_WHEN = f"CASE WHEN {CLOCK_IS_SET} THEN COALESCE(s.corrected_start_ns, s.start_ns) ELSE s.ingested_ns END"
#: When its minimum retention starts: its (corrected) end, or its ingest when its clock is unset.
_RETENTION_FROM = (
    f"CASE WHEN {CLOCK_IS_SET} THEN COALESCE(s.corrected_end_ns, s.end_ns, s.ingested_ns) ELSE s.ingested_ns END"
)


def question_marks(values: Iterable[Any]) -> str:
    """``?, ?, ?`` for an ``IN (...)`` list; ``NULL`` for none, which matches nothing."""
    return ",".join("?" * len(list(values))) or "NULL"


def blob(value: bytes | memoryview | str) -> bytes:
    """A stored BLOB as bytes. Custodes writes BLOBs; one rewritten as TEXT (by hand, with sqlite3)
    is read as its UTF-8 bytes, so verify compares it like any other value and never crashes on it."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


class Table:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]


@dataclass(frozen=True)
class Scope:
    """The segments a report speaks for: recorded in [lo, hi) on ``devices`` (None: every device) and, for an
    officer's report, made by ``officer``: a recording's own officer decides (a device docked by several officers
    gives each only theirs), and a recording without one belongs to whom its device is issued to (``devices``).
    Once the registry assigns the device (custodes.devices), the assignee at the recording's time decides."""

    devices: list[str] | None
    lo: int
    hi: int
    officer: str | None = None

    def where(self) -> tuple[str, tuple[Any, ...]]:
        devices = "1=1" if self.devices is None else f"s.device_id IN ({question_marks(self.devices)})"
        args: tuple[Any, ...] = (*(self.devices or ()), self.lo, self.hi)
        if self.officer is not None:
            # The device's assignment at the recording's time decides (custodes.devices); without one, as before.
            held, nobody = _held_by_officer, _held_by_nobody
            devices = f"({held} OR ({nobody} AND (s.officer_id = ? OR (s.officer_id IS NULL AND {devices}))))"
            args = (self.officer, self.officer, *args)
        return f"{devices} AND {_WHEN} >= ? AND {_WHEN} < ?", args


#: The recording's device was assigned to the officer (the parameter) at the recording's time / to nobody then.
_HELD_AT = f"a.device_id = s.device_id AND a.start_ns <= {_WHEN} AND (a.end_ns IS NULL OR a.end_ns > {_WHEN})"
_held_by_officer = f"EXISTS (SELECT 1 FROM assignments a WHERE {_HELD_AT} AND a.officer_id = ?)"
_held_by_nobody = f"NOT EXISTS (SELECT 1 FROM assignments a WHERE {_HELD_AT})"


class NewSegment(NamedTuple):
    device_id: str
    original_name: str
    kind: str
    sha256: str
    size: int
    start_ns: int | None
    end_ns: int | None
    start_source: str | None
    corrected_start_ns: int | None
    corrected_end_ns: int | None
    sequence: int | None
    important: int
    recording: str | None
    chapter: int | None
    officer_id: str | None
    container: str | None
    ingest_id: int
    ingested_ns: int
    ledger_seq: int
    original_name_bytes: bytes | None


class LedgerView(NamedTuple):
    """A segment as the catalog holds it, beside the ledger entry it was recorded with (None: none)."""

    id: int
    device_id: str
    original_name: str
    original_name_bytes: bytes | None
    sha256: str
    size: int
    ledger_seq: int
    entry: bytes | None
    kind: str
    start_ns: int | None
    end_ns: int | None
    corrected_start_ns: int | None
    corrected_end_ns: int | None
    important: int
    ingest_id: int
    ingested_ns: int


class RetentionFacts(NamedTuple):
    id: int
    original_name: str
    retention_from_ns: int
    important: int
    purged_ns: int | None
    long_term_reason: str | None


class CaseRecording(NamedTuple):
    id: int
    device_id: str
    original_name: str
    sha256: str
    size: int
    ledger_seq: int
    officer_id: str | None
    digests: str


#: Made once: verify's replay inserts a segment per ingest entry, and building the statement cost more than running it.
_INSERT_SEGMENT = (
    f"INSERT INTO segments (id, {', '.join(NewSegment._fields)}) VALUES (?, {question_marks(NewSegment._fields)})"
)


class Segments(Table):
    def insert(self, segment: int, row: NewSegment) -> None:
        """A segment under the id its ingest entry names (catalog.replay)."""
        self._conn.execute(_INSERT_SEGMENT, (segment, *row))

    def exists(self, segment: int) -> bool:
        return self._one("SELECT 1 FROM segments WHERE id = ?", (segment,)) is not None

    def existing(self, segments: list[int]) -> set[int]:
        sql = f"SELECT id FROM segments WHERE id IN ({question_marks(segments)})"
        return {i for (i,) in self._conn.execute(sql, segments)}

    def find(self, device: str, name: str, name_bytes: bytes | None, sha256: str) -> int | None:
        """The segment of this device, name and content, if recorded."""
        return self._one(
            "SELECT id FROM segments WHERE device_id = ? AND original_name = ? AND original_name_bytes IS ? "
            "AND sha256 = ?",
            (device, name, name_bytes, sha256),
        )

    def device_times(self, segments: list[int]) -> dict[int, tuple[int | None, int | None]]:
        """(start, end) of each segment as its device's clock gave them when it was stored (ns UTC, uncorrected)."""
        out: dict[int, tuple[int | None, int | None]] = {}
        for first in range(0, len(segments), 500):  # bounded statements: a volume may hold 10^5 present files
            part = segments[first : first + 500]
            sql = f"SELECT id, start_ns, end_ns FROM segments WHERE id IN ({question_marks(part)})"  # noqa: S608
            out.update((i, (s, e)) for i, s, e in self._conn.execute(sql, part))
        return out

    def objects_named(self, device: str, name: str, name_bytes: bytes | None, size: int) -> list[str]:
        """The objects recorded for this device, name and size."""
        sql = (
            "SELECT sha256 FROM segments WHERE device_id = ? AND original_name = ? AND "
            "original_name_bytes IS ? AND size = ?"
        )
        return [sha for (sha,) in self._conn.execute(sql, (device, name, name_bytes, size))]

    def first_for_object(self, sha256: str) -> int | None:
        return self._one("SELECT id FROM segments WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,))

    def all_for_object(self, sha256: str) -> list[int]:
        """Every recording of the object, purged or not, by id."""
        return [s for (s,) in self._conn.execute("SELECT id FROM segments WHERE sha256 = ? ORDER BY id", (sha256,))]

    def name_and_object(self, segment: int) -> tuple[str, str] | None:
        row = self._conn.execute("SELECT original_name, sha256 FROM segments WHERE id = ?", (segment,)).fetchone()
        return None if row is None else (row[0], row[1])

    def ledger_index(self, segment: int) -> int | None:
        return self._one("SELECT ledger_seq FROM segments WHERE id = ?", (segment,))

    def access_facts(self, segments: list[int]) -> list[tuple[int, int, int | None]]:
        """(id, classification, purged_ns) of each segment that exists."""
        sql = f"SELECT id, classification, purged_ns FROM segments WHERE id IN ({question_marks(segments)})"
        return self._conn.execute(sql, segments).fetchall()

    def set_classification(self, segment: int, level: int) -> None:
        self._conn.execute("UPDATE segments SET classification = ? WHERE id = ?", (level, segment))

    def purge_facts(self, segments: list[int]) -> list[tuple[int, str, int | None]]:
        """(id, sha256, purged_ns) of each segment that exists."""
        sql = f"SELECT id, sha256, purged_ns FROM segments WHERE id IN ({question_marks(segments)})"
        return self._conn.execute(sql, segments).fetchall()

    def mark_purged(self, segment: int, now: int) -> None:
        self._conn.execute("UPDATE segments SET purged_ns = ? WHERE id = ?", (now, segment))

    def of_objects(self, digests: list[str]) -> dict[str, list[int]]:
        """The recordings not purged that need each object's bytes, by digest."""
        sql = (
            f"SELECT sha256, id FROM segments WHERE sha256 IN ({question_marks(digests)}) AND purged_ns IS NULL "
            "ORDER BY id"
        )
        out: dict[str, list[int]] = {d: [] for d in digests}
        for sha, seg in self._conn.execute(sql, digests):
            out[sha].append(seg)
        return out

    def objects_of(self, segments: list[int]) -> list[str]:
        sql = f"SELECT DISTINCT sha256 FROM segments WHERE id IN ({question_marks(segments)})"
        return [sha for (sha,) in self._conn.execute(sql, segments)]

    def live_for_object(self, sha256: str) -> int:
        """How many recordings not purged still need this object's bytes."""
        return int(self._one("SELECT COUNT(*) FROM segments WHERE sha256 = ? AND purged_ns IS NULL", (sha256,)))

    def retention_facts(self, segments: list[int] | None = None) -> list[RetentionFacts]:
        where = f"WHERE s.id IN ({question_marks(segments)})" if segments else ""
        sql = (
            f"SELECT s.id, s.original_name, {_RETENTION_FROM}, s.important, s.purged_ns, lt.reason "
            f"FROM segments s LEFT JOIN long_term lt ON lt.segment_id = s.id {where} ORDER BY s.id"
        )
        return [RetentionFacts(*r) for r in self._conn.execute(sql, segments or ())]

    def of_case(self, case: str) -> list[CaseRecording]:
        """The case's recordings that are not purged, with their objects' digests, in segment order."""
        sql = (
            "SELECT s.id, s.device_id, s.original_name, s.sha256, s.size, s.ledger_seq, s.officer_id, o.digests "
            "FROM case_segments cs JOIN segments s ON s.id = cs.segment_id JOIN objects o ON o.sha256 = s.sha256 "
            "WHERE cs.case_id = ? AND s.purged_ns IS NULL ORDER BY s.id"
        )
        return [CaseRecording(*r) for r in self._conn.execute(sql, (case,))]

    def beside_ledger(self) -> Iterator[LedgerView]:
        """Every segment beside its ledger entry, in id order (streamed)."""
        sql = (
            "SELECT s.id, s.device_id, s.original_name, s.original_name_bytes, s.sha256, s.size, s.ledger_seq, "
            "l.entry, s.kind, s.start_ns, s.end_ns, s.corrected_start_ns, s.corrected_end_ns, s.important, "
            "s.ingest_id, s.ingested_ns FROM segments s LEFT JOIN ledger l ON l.seq = s.ledger_seq ORDER BY s.id"
        )
        return (
            LedgerView._make(
                (*r[:3], None if r[3] is None else blob(r[3]), *r[4:7], None if r[7] is None else blob(r[7]), *r[8:])
            )
            for r in self._conn.execute(sql)
        )

    def timed_recordings(self) -> list[tuple[str, str | None, int, int]]:
        """(device, officer, start, end) of every timed audio/video segment, clock-corrected where known."""
        sql = (
            "SELECT device_id, officer_id, COALESCE(corrected_start_ns, start_ns), COALESCE(corrected_end_ns, end_ns) "
            "FROM segments WHERE kind IN ('video', 'audio') AND start_ns IS NOT NULL AND end_ns IS NOT NULL"
        )
        return self._conn.execute(sql).fetchall()

    # --- a report's scope ---------------------------------------------------------------

    def count_in_scope(self, scope: Scope) -> int:
        where, args = scope.where()
        return int(self._one(f"SELECT COUNT(*) FROM segments s WHERE {where}", args))

    def in_scope_among(self, scope: Scope, segments: Iterable[int]) -> set[int]:
        """Which of ``segments`` (ids) are in the scope: a few ids looked up, not the scope's every id held."""
        wanted = sorted(set(segments))
        where, args = scope.where()
        found: set[int] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            sql = f"SELECT s.id FROM segments s WHERE s.id IN ({question_marks(chunk)}) AND {where}"
            found.update(i for (i,) in self._conn.execute(sql, (*chunk, *args)))
        return found

    def retention_in_scope(self, scope: Scope) -> Iterator[tuple[int, int, int, int | None, str | None]]:
        """(id, retention from, important, purged, long-term reason) of the scope's segments (streamed)."""
        where, args = scope.where()
        sql = (
            f"SELECT s.id, {_RETENTION_FROM}, s.important, s.purged_ns, lt.reason "
            f"FROM segments s LEFT JOIN long_term lt ON lt.segment_id = s.id WHERE {where}"
        )
        return iter(self._conn.execute(sql, args))

    def clock_corrected_count(self, scope: Scope) -> int:
        where, args = scope.where()
        sql = (
            f"SELECT COUNT(*) FROM segments s WHERE {where} AND s.corrected_start_ns IS NOT NULL "
            "AND s.corrected_start_ns != s.start_ns"
        )
        return int(self._one(sql, args))

    def ingest_delay_ranks(self, scope: Scope) -> tuple[int, list[tuple[int, int]]]:
        """How many (ingested, recording end) pairs the scope's segments whose clock can be believed give, and,
        in the order of ingested - end, the (ingested, end) of the lowest, the middle one (or two, for an even
        count) and the highest: what a minimum, median and maximum are made of, found by SQLite instead of every
        pair held in memory."""
        where, args = scope.where()
        end = "COALESCE(s.corrected_end_ns, s.end_ns)"
        rows = f"FROM segments s WHERE {where} AND {CLOCK_IS_SET} AND {end} IS NOT NULL"
        n = int(self._one(f"SELECT COUNT(*) {rows}", args))
        if not n:
            return 0, []
        pick = f"SELECT s.ingested_ns, {end} {rows} ORDER BY s.ingested_ns - {end}"
        lowest = self._conn.execute(f"{pick} LIMIT 1", args).fetchone()
        middle = self._conn.execute(f"{pick} LIMIT ? OFFSET ?", (*args, 2 - n % 2, (n - 1) // 2)).fetchall()
        highest = self._conn.execute(f"{pick} DESC LIMIT 1", args).fetchone()
        return n, [lowest, *middle, highest]

    def ingest_count(self, scope: Scope) -> int:
        where, args = scope.where()
        return int(self._one(f"SELECT COUNT(DISTINCT s.ingest_id) FROM segments s WHERE {where}", args))

    def recorded(self, scope: Scope) -> list[tuple[str, int, int]]:
        """(device, start, end) of the scope's timed audio/video, clock-corrected, by device and start."""
        where, args = scope.where()
        sql = (
            "SELECT s.device_id, COALESCE(s.corrected_start_ns, s.start_ns), COALESCE(s.corrected_end_ns, s.end_ns) "
            f"FROM segments s WHERE {where} AND {CLOCK_IS_SET} AND s.end_ns IS NOT NULL "
            "AND s.kind IN ('video', 'audio') ORDER BY 1, 2"
        )
        return self._conn.execute(sql, args).fetchall()


class StoredObject(NamedTuple):
    sha256: str
    size: int
    digests: str  # JSON {algorithm: hex}
    head_sha256: str
    purged_ns: int | None
    last_verified_ns: int | None


class DigestRange(NamedTuple):
    """Objects whose SHA-256 (lower-case hex) is ``>= low`` and ``< high``; None is open on that side."""

    low: str | None = None
    high: str | None = None

    def where(self) -> tuple[str, tuple[str, ...]]:
        parts, args = [], []
        if self.low is not None:
            parts.append("sha256 >= ?")
            args.append(self.low)
        if self.high is not None:
            parts.append("sha256 < ?")
            args.append(self.high)
        return (" AND ".join(parts) or "1"), tuple(args)


#: Every digest: a verify run that is not a slice.
EVERY_DIGEST = DigestRange()


class OverdueObject(NamedTuple):
    sha256: str
    size: int
    stored_ns: int
    last_verified_ns: int | None


_OBJECT_COLUMNS = "sha256, size, digests, head_sha256, purged_ns, last_verified_ns"


class Objects(Table):
    def add(self, sha256: str, size: int, digests: str, head_sha256: str, now: int) -> None:
        """Record an object; one recorded already (the same bytes under another name) is kept as it is."""
        self._conn.execute(
            "INSERT OR IGNORE INTO objects (sha256, size, digests, head_sha256, stored_ns) VALUES (?, ?, ?, ?, ?)",
            (sha256, size, digests, head_sha256, now),
        )

    def known(self, sha256: str) -> bool:
        return self._one("SELECT 1 FROM objects WHERE sha256 = ?", (sha256,)) is not None

    def get(self, sha256: str) -> StoredObject | None:
        row = self._conn.execute(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE sha256 = ?", (sha256,)).fetchone()  # noqa: S608
        return None if row is None else StoredObject(*row)

    def total_size(self, within: DigestRange = EVERY_DIGEST) -> int:
        where, args = within.where()
        return int(self._one(f"SELECT COALESCE(SUM(size), 0) FROM objects WHERE {where}", args))  # noqa: S608

    def walk(self, within: DigestRange = EVERY_DIGEST) -> Iterator[StoredObject]:
        """Every object in digest order (streamed: nothing grows with the archive). A row whose key is NULL (only
        an edit of the catalog writes one) lies in no digest range: the first slice takes it, first, as SQLite
        orders NULL (verify --slice 1/N reported no such row; "sha256 IS NULL OR" in the range would cost its
        index, a scan of every row for each first slice)."""
        where, args = within.where()
        sql = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE {where} ORDER BY sha256"  # noqa: S608
        unnamed = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE sha256 IS NULL"  # noqa: S608
        first = within.low is None and within.high is not None  # (the whole range holds NULL already)
        return (
            StoredObject(*r)
            for r in itertools.chain(self._conn.execute(unnamed) if first else (), self._conn.execute(sql, args))
        )

    def least_recently_verified(self, before_ns: int, within: DigestRange = EVERY_DIGEST) -> Iterator[StoredObject]:
        """Live objects not re-hashed since ``before_ns``, never-verified first, then the oldest first (streamed,
        through the index on last_verified_ns)."""
        where, args = within.where()
        sql = (
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE purged_ns IS NULL AND {where} "  # noqa: S608
            "AND (last_verified_ns IS NULL OR last_verified_ns < ?) ORDER BY last_verified_ns NULLS FIRST, sha256"
        )
        return (StoredObject(*r) for r in self._conn.execute(sql, (*args, before_ns)))

    def stamp_verified(self, digests: list[str], now: int) -> None:
        self._conn.executemany(
            "UPDATE objects SET last_verified_ns = ? WHERE sha256 = ?", [(now, sha) for sha in digests]
        )

    def never_verified(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM objects WHERE last_verified_ns IS NULL AND purged_ns IS NULL"))

    def overdue(self, before_ns: int, limit: int) -> tuple[int, int, list[OverdueObject]]:
        """(count, bytes, the ``limit`` most overdue) of live objects last re-hashed before ``before_ns``, or
        never re-hashed and stored before it: what the policy's verification window says is due."""
        due = "purged_ns IS NULL AND (last_verified_ns < ?1 OR (last_verified_ns IS NULL AND stored_ns < ?1))"
        count, size = self._conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE {due}",
            (before_ns,),  # noqa: S608
        ).fetchone()
        rows = self._conn.execute(
            f"SELECT sha256, size, stored_ns, last_verified_ns FROM objects WHERE {due} "  # noqa: S608
            "ORDER BY COALESCE(last_verified_ns, stored_ns), sha256 LIMIT ?2",
            (before_ns, limit),
        ).fetchall()
        return int(count), int(size), [OverdueObject(*r) for r in rows]

    def mark_purged(self, sha256: str, now: int) -> None:
        self._conn.execute("UPDATE objects SET purged_ns = ? WHERE sha256 = ?", (now, sha256))

    def due_for_removal(self, sha256: str) -> bool:
        """The object's tombstone is recorded and no live recording needs its bytes."""
        sql = (
            "SELECT EXISTS (SELECT 1 FROM tombstones WHERE sha256 = ?) "
            "AND NOT EXISTS (SELECT 1 FROM segments WHERE sha256 = ? AND purged_ns IS NULL)"
        )
        return self._one(sql, (sha256, sha256)) == 1


class VerifyRun(NamedTuple):
    id: int
    selection: str  # JSON of the run's selection (custodes.schedule.Selection.key)
    started_ns: int
    finished_ns: int | None
    objects: int
    bytes: int
    stopped: str | None  # why it stopped before the end (a budget spent), None while running or when finished


class ObjectFinding(NamedTuple):
    sha256: str
    copy: str  # "first", "replica"
    kind: str
    message: str
    found_ns: int


class ObjectFindings(Table):
    """What the latest verify that looked at an object found wrong with it, by copy, until a verify finds it sound
    or a repair mends it: for a report made without re-hashing. Run state, not a fact."""

    def found(self, findings: list[ObjectFinding], rehashed: Collection[tuple[str, str]] = ()) -> None:
        """What a verify found of these objects; for the (object, copy) pairs it ``rehashed``, replacing what an
        earlier one found of that copy (a look without reading the bytes adds to it)."""
        self._conn.executemany("DELETE FROM object_findings WHERE sha256 = ? AND copy = ?", list(rehashed))
        self._conn.executemany("INSERT OR REPLACE INTO object_findings VALUES (?, ?, ?, ?, ?)", findings)

    def sound(self, digests: list[str]) -> None:
        """These objects were found sound (their bytes re-hashed, in every copy the run looked at)."""
        self._conn.executemany("DELETE FROM object_findings WHERE sha256 = ?", [(d,) for d in digests])

    def mended(self, sha256: str, copy: str, kind: str | None = None) -> None:
        """A repair mended the object's copy: what was found of it (``kind``: that finding only)."""
        self._conn.execute(
            "DELETE FROM object_findings WHERE sha256 = ? AND copy = ? AND kind = COALESCE(?, kind)",
            (sha256, copy, kind),
        )

    def all(self) -> list[ObjectFinding]:
        rows = self._conn.execute(
            "SELECT f.sha256, f.copy, f.kind, f.message, f.found_ns FROM object_findings f "
            "JOIN objects o ON o.sha256 = f.sha256 WHERE o.purged_ns IS NULL ORDER BY f.sha256, f.copy, f.kind"
        )
        return [ObjectFinding(*r) for r in rows]


class VerifyRuns(Table):
    """Verification runs (custodes.schedule): run state, so a stopped run resumes; not a fact."""

    _COLUMNS = "id, selection, started_ns, finished_ns, objects, bytes, stopped"

    def start(self, selection: str, now: int) -> VerifyRun:
        cur = self._conn.execute("INSERT INTO verify_runs (selection, started_ns) VALUES (?, ?)", (selection, now))
        return VerifyRun(int(cur.lastrowid or 0), selection, now, None, 0, 0, None)

    def unfinished(self, selection: str, since_ns: int) -> VerifyRun | None:
        """The latest run of this selection that started after ``since_ns`` and has not finished."""
        row = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM verify_runs WHERE selection = ? AND finished_ns IS NULL "  # noqa: S608
            "AND started_ns >= ? ORDER BY id DESC LIMIT 1",
            (selection, since_ns),
        ).fetchone()
        return None if row is None else VerifyRun(*row)

    def add(self, run: int, objects: int, size: int) -> None:
        self._conn.execute(
            "UPDATE verify_runs SET objects = objects + ?, bytes = bytes + ? WHERE id = ?", (objects, size, run)
        )

    def stop(self, run: int, reason: str) -> None:
        self._conn.execute("UPDATE verify_runs SET stopped = ? WHERE id = ?", (reason, run))

    def finish(self, run: int, now: int) -> None:
        self._conn.execute("UPDATE verify_runs SET finished_ns = ?, stopped = NULL WHERE id = ?", (now, run))

    def get(self, run: int) -> VerifyRun | None:
        row = self._conn.execute(f"SELECT {self._COLUMNS} FROM verify_runs WHERE id = ?", (run,)).fetchone()  # noqa: S608
        return None if row is None else VerifyRun(*row)
