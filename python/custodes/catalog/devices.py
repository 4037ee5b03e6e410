"""Devices, their event logs and clock readings; ingests (one per volume read), their intents and findings."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from custodes.catalog.evidence import Scope, Table, question_marks


class DeviceIdentity(NamedTuple):
    device_id: str
    kind: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    officer_id: str | None
    officer_name: str | None
    unit_id: str | None
    unit_name: str | None


class Drift(NamedTuple):
    device_id: str
    readings: int
    max_offset_ns: int
    last_offset_ns: int


def _inserted(cur: sqlite3.Cursor) -> int | None:
    """The id of the row an ``INSERT OR IGNORE`` made, None when it made none (lastrowid would then be
    the connection's previous insert, of any table)."""
    return int(cur.lastrowid or 0) if cur.rowcount == 1 else None


class Devices(Table):
    def upsert(self, identity: DeviceIdentity, now: int) -> None:
        """Record a device as its volume describes it; what this volume leaves unsaid is kept."""
        keep = ", ".join(f"{c}=COALESCE(excluded.{c}, {c})" for c in DeviceIdentity._fields[2:])
        self._conn.execute(
            f"INSERT INTO devices ({', '.join(DeviceIdentity._fields)}, updated_ns) "
            f"VALUES ({question_marks(identity)}, ?) ON CONFLICT(device_id) DO UPDATE SET kind=excluded.kind, "
            f"{keep}, updated_ns=excluded.updated_ns",
            (*identity, now),
        )

    def exists(self, device: str) -> bool:
        return self._one("SELECT 1 FROM devices WHERE device_id = ?", (device,)) is not None

    def of_unit(self, unit: str | None) -> list[str]:
        """Devices whose volumes name the unit, or that the registry issues to it (custodes.devices)."""
        sql = (
            "SELECT device_id FROM devices WHERE unit_id = ?1 OR unit_name = ?1 "
            "UNION SELECT device_id FROM registry WHERE unit = ?1 ORDER BY 1"
        )
        return [d for (d,) in self._conn.execute(sql, (unit,))]

    def of_officer(self, officer: str | None) -> list[str]:
        """Devices issued to the officer, that recorded footage marked as theirs, or assigned to them in the
        registry (custodes.devices), sorted."""
        sql = (
            "SELECT device_id FROM devices WHERE officer_id = ? "
            "UNION SELECT device_id FROM segments WHERE officer_id = ? "
            "UNION SELECT device_id FROM assignments WHERE officer_id = ?"
        )
        return sorted({d for (d,) in self._conn.execute(sql, (officer, officer, officer))})

    def of_case(self, case: str | None) -> list[str]:
        sql = "SELECT s.device_id FROM case_segments c JOIN segments s ON s.id = c.segment_id WHERE c.case_id = ?"
        return sorted({d for (d,) in self._conn.execute(sql, (case,))})

    def add_event(self, device: str, time_ns: int, kind: str, detail: str, ingest_id: int) -> int | None:
        """An entry of the device's own log; one read before (an earlier ingest) is not repeated (None)."""
        return _inserted(
            self._conn.execute(
                "INSERT OR IGNORE INTO device_events (device_id, time_ns, kind, detail, ingest_id) "
                "VALUES (?, ?, ?, ?, ?)",
                (device, time_ns, kind, detail, ingest_id),
            )
        )

    def events(self) -> list[tuple[str, int, str, str]]:
        """(device, time, kind, detail) of every device event."""
        return self._conn.execute("SELECT device_id, time_ns, kind, detail FROM device_events").fetchall()

    def add_clock_reading(
        self, device: str, device_ns: int, trusted_ns: int, source: str, ingest_id: int
    ) -> int | None:
        """A clock reading; one read before (an earlier ingest) is not repeated (None)."""
        return _inserted(
            self._conn.execute(
                "INSERT OR IGNORE INTO clock_readings (device_id, device_ns, trusted_ns, source, ingest_id) "
                "VALUES (?, ?, ?, ?, ?)",
                (device, device_ns, trusted_ns, source, ingest_id),
            )
        )

    def dock_readings(self, device: str) -> list[tuple[int, int]]:
        """(device clock, trusted clock) of the device's dock readings, by device clock."""
        sql = (
            "SELECT device_ns, trusted_ns FROM clock_readings WHERE device_id = ? AND source = 'dock' "
            "ORDER BY device_ns"
        )
        return [(int(d), int(t)) for d, t in self._conn.execute(sql, (device,))]

    def docked(self, segment: int) -> tuple[str, int] | None:
        """(device, ingest) of a segment: the docking that stored it; None for no such segment."""
        row = self._conn.execute("SELECT device_id, ingest_id FROM segments WHERE id = ?", (segment,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def dock_readings_by_ingest(self, device: str) -> list[tuple[int, int, int]]:
        """(ingest, device clock, trusted clock) of the device's dock clock readings, in ingest order: as many as
        the device's dockings, not its recordings."""
        sql = (
            "SELECT ingest_id, device_ns, trusted_ns FROM clock_readings WHERE device_id = ? AND source = 'dock' "
            "AND ingest_id IS NOT NULL ORDER BY ingest_id, id"
        )
        return [(int(i), int(d), int(t)) for i, d, t in self._conn.execute(sql, (device,))]

    def drift(self, devices: list[str] | None) -> list[Drift]:
        """Per device (all when None): readings, the largest and the latest clock offset (device - trusted)."""
        where = "1=1" if devices is None else f"device_id IN ({question_marks(devices)})"
        latest = (
            "SELECT device_ns - trusted_ns FROM clock_readings r2 WHERE r2.device_id = r.device_id "
            "ORDER BY device_ns DESC LIMIT 1"
        )
        sql = (
            f"SELECT device_id, COUNT(*), MAX(ABS(device_ns - trusted_ns)), ({latest}) "
            f"FROM clock_readings r WHERE {where} GROUP BY device_id ORDER BY device_id"
        )
        return [Drift(*r) for r in self._conn.execute(sql, devices or ())]

    def latest_offsets(self) -> list[tuple[str, int]]:
        """(device, device - trusted) at each device's latest clock reading."""
        sql = (
            "SELECT device_id, device_ns - trusted_ns FROM clock_readings r WHERE device_ns = "
            "(SELECT MAX(device_ns) FROM clock_readings r2 WHERE r2.device_id = r.device_id)"
        )
        return self._conn.execute(sql).fetchall()


class CheckRow(NamedTuple):
    """A pre-use check (Art. 10) as the catalog holds it; offsets device clock - station clock, ns."""

    device_id: str
    time_ns: int
    source: str  # "dock" (read by a driver at docking) or "hand" (custodes device check)
    by: str | None
    clock_offset_ns: int | None
    battery_percent: int | None  # whole percent: the ledger holds no floats
    free_bytes: int | None
    faults: str  # JSON list of the fault flags the check saw
    note: str
    ingest_id: int | None


class DeviceChecks(Table):
    """Pre-use checks, the dockings they are measured against, and the recordings they are for."""

    def add(self, row: CheckRow, ledger_seq: int) -> int | None:
        """A check; one read before (the same volume docked again) is not repeated (None)."""
        return _inserted(
            self._conn.execute(
                f"INSERT OR IGNORE INTO device_checks ({', '.join(CheckRow._fields)}, ledger_seq) "
                f"VALUES ({question_marks(row)}, ?)",
                (*row, ledger_seq),
            )
        )

    def exists(self, device: str, time_ns: int, source: str) -> bool:
        sql = "SELECT 1 FROM device_checks WHERE device_id = ? AND time_ns = ? AND source = ?"
        return self._one(sql, (device, time_ns, source)) is not None

    def all(self) -> list[tuple[int, CheckRow]]:
        """(ledger index, check) of every check, by device and time."""
        sql = f"SELECT ledger_seq, {', '.join(CheckRow._fields)} FROM device_checks ORDER BY device_id, time_ns, id"
        return [(int(r[0]), CheckRow(*r[1:])) for r in self._conn.execute(sql)]

    def dockings(self) -> list[tuple[str, int]]:
        """(device, time) of every docking: each ingest of the device (the archive's clock) and each dock clock
        reading (the station's clock, which a volume docked later still carries)."""
        sql = (
            "SELECT device_id, started_ns FROM ingests UNION "
            "SELECT device_id, trusted_ns FROM clock_readings WHERE source = 'dock' ORDER BY 1, 2"
        )
        return [(str(d), int(t)) for d, t in self._conn.execute(sql)]

    def recordings(self) -> list[tuple[int, str, str | None, int, int, int]]:
        """(segment, device, officer, start, end, ledger index) of every timed audio/video recording not purged,
        clock-corrected where known, by device and start."""
        sql = (
            "SELECT id, device_id, officer_id, COALESCE(corrected_start_ns, start_ns), "
            "COALESCE(corrected_end_ns, end_ns), ledger_seq FROM segments WHERE kind IN ('video', 'audio') "
            "AND start_ns IS NOT NULL AND end_ns IS NOT NULL AND purged_ns IS NULL ORDER BY device_id, 4, id"
        )
        return [(int(i), str(d), o, int(s), int(e), int(q)) for i, d, o, s, e, q in self._conn.execute(sql)]


class Ingests(Table):
    def start(self, ingest_id: int, volume: str, driver: str, device: str, now: int) -> None:
        """An ingest under the id its ``ingest_begin`` entry names (catalog.replay)."""
        self._conn.execute(
            "INSERT INTO ingests (id, volume, driver, device_id, started_ns) VALUES (?, ?, ?, ?, ?)",
            (ingest_id, volume, driver, device, now),
        )

    def set_result(self, ingest_id: int, result: str) -> None:
        self._conn.execute("UPDATE ingests SET result = ? WHERE id = ?", (result, ingest_id))

    def finished_with(self, ingest_id: int, volume: str, device: str) -> list[int]:
        """The earlier unfinished ingests of the same volume and device, which ``ingest_id`` finishes as it ends
        (:meth:`finish`; its ``ingest_end`` entry names them, custodes.ingest)."""
        sql = "SELECT id FROM ingests WHERE finished_ns IS NULL AND id < ? AND volume = ? AND device_id = ? ORDER BY id"
        return [i for (i,) in self._conn.execute(sql, (ingest_id, volume, device))]

    def finish(self, ingest_id: int, volume: str, device: str, now: int) -> None:
        """Mark the ingest finished, and with it earlier unfinished ingests of the same volume and
        device: running an ingest again is how an interrupted one is finished. Their intents whose objects
        are recorded are done with; those left name objects stored that nothing records (verify: unrecorded)."""
        for i in [ingest_id, *self.finished_with(ingest_id, volume, device)]:
            self._conn.execute("UPDATE ingests SET finished_ns = ? WHERE id = ?", (now, i))
            for table in ("ingest_intents", "ingest_notes"):
                # EXISTS, not `sha256 IN (SELECT sha256 FROM objects)`: for that, SQLite walked every object in
                # the archive (0.35 s at 10^6) and looked each up among the intents.
                self._conn.execute(
                    f"DELETE FROM {table} WHERE ingest_id = ? AND "  # noqa: S608
                    f"EXISTS (SELECT 1 FROM objects o WHERE o.sha256 = {table}.sha256)",
                    (i,),
                )

    def unfinished(self) -> dict[int, tuple[str, str]]:
        """(volume, device) of each ingest not finished (under way, or interrupted)."""
        rows = self._conn.execute("SELECT id, volume, device_id FROM ingests WHERE finished_ns IS NULL")
        return {i: (v, d) for i, v, d in rows}

    def note_intent(self, sha256: str, ingest_id: int, now: int, entry: str | None = None) -> None:
        """Note that the ingest is about to store this object, with the ``entry`` (JSON) it would record one file
        of it by: a note each, as a volume may hold the same bytes under many names, each a recording."""
        self._conn.execute(
            "INSERT OR IGNORE INTO ingest_intents (sha256, ingest_id, created_ns) VALUES (?, ?, ?)",
            (sha256, ingest_id, now),
        )
        if entry is not None:
            self._conn.execute(
                "INSERT INTO ingest_notes (ingest_id, sha256, entry) VALUES (?, ?, ?)", (ingest_id, sha256, entry)
            )

    def interrupted_intents(self, ingest_id: int, volume: str, device: str) -> list[tuple[str, int, str | None]]:
        """(object, ingest, entry) of every note of the intents of the unfinished ingests of this volume and
        device before ``ingest_id`` (those :meth:`finish` marks finished with it); an intent without a note once,
        with ``entry`` None. Oldest ingest first, each ingest's notes in the order noted."""
        return self._conn.execute(
            "SELECT t.sha256, t.ingest_id, n.entry FROM ingest_intents t JOIN ingests i ON i.id = t.ingest_id "
            "LEFT JOIN ingest_notes n ON n.ingest_id = t.ingest_id AND n.sha256 = t.sha256 "
            "WHERE i.finished_ns IS NULL AND i.id < ? AND i.volume = ? AND i.device_id = ? "
            "ORDER BY t.ingest_id, t.sha256, n.rowid",
            (ingest_id, volume, device),
        ).fetchall()

    def finished_notes(self, ingest_id: int, volume: str, device: str) -> list[tuple[str, int, str]]:
        """(object, ingest, entry) of every note the finished ingests of this volume and device before
        ``ingest_id`` keep: of objects nothing recorded when they finished (:meth:`finish` keeps no other; another
        volume's ingest may have recorded one since), as noted."""
        return self._conn.execute(
            "SELECT n.sha256, n.ingest_id, n.entry FROM ingest_notes n JOIN ingests i ON i.id = n.ingest_id "
            "WHERE i.finished_ns IS NOT NULL AND i.id < ? AND i.volume = ? AND i.device_id = ? "
            "ORDER BY n.ingest_id, n.rowid",
            (ingest_id, volume, device),
        ).fetchall()

    def unrecorded_notes(self) -> list[tuple[str, str]]:
        """(object, entry) of every note of an intent whose object the catalog does not record, of any ingest and
        volume (a finished ingest keeps only those: :meth:`finish`): what the copies a killed ingest left in the
        spool may be (custodes.ingest.keep_noted_copies)."""
        return self._conn.execute(
            "SELECT n.sha256, n.entry FROM ingest_notes n "
            "WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.sha256 = n.sha256) ORDER BY n.rowid"
        ).fetchall()

    def intent_for(self, sha256: str) -> tuple[int, str, int | None, str] | None:
        """(ingest, volume, finished, device) of the latest ingest that noted it would link this object."""
        return self._conn.execute(
            "SELECT i.id, i.volume, i.finished_ns, i.device_id FROM ingest_intents t "
            "JOIN ingests i ON i.id = t.ingest_id WHERE t.sha256 = ? ORDER BY i.id DESC LIMIT 1",
            (sha256,),
        ).fetchone()


class FindingRow(NamedTuple):
    ingest_id: int
    segment_id: int | None
    kind: str
    severity: str
    device_id: str | None
    path: str | None
    start_ns: int | None
    end_ns: int | None
    detail: str  # the finding as JSON


#: The file a finding row concerns, as its volume names it: the row's path less its ingest's volume folder (the
#: same card docked at another mount point names the same file), the path as recorded when it is not under it.
_FINDING_FILE = (
    "CASE WHEN substr(f.path, 1, length(i.volume) + 1) = i.volume || '/' "
    "THEN substr(f.path, length(i.volume) + 2) ELSE f.path END"
)
#: A fact a finding's evidence gives of its file (its ``size``, its ``sha256``), NULL where it gives none.
_SAID = "CASE WHEN json_valid(f.detail) THEN json_extract(f.detail, '$.evidence.{}') END"
#: The segment ``s`` is the file the finding read, as far as the finding says: of its device and name, and of the
#: digest and size it gives (an ingest_failed gives the size the volume listed, and the digest of what was read
#: where the copy was made). Not the name alone: a camera that numbers its files from 1 again after the card is
#: formatted gives a new recording an old name.
_SAME_FILE = (
    f"s.device_id = f.device_id AND s.original_name = {_FINDING_FILE} "
    f"AND s.sha256 = COALESCE({_SAID.format('sha256')}, s.sha256) AND s.size = COALESCE({_SAID.format('size')}, s.size)"
)
#: The recording a finding about a file concerns, None for a finding about no file or about a file the archive
#: never stored: its own segment; for a file the ingest found already present (its row names no segment: it was
#: stored by an earlier ingest), the latest segment of that file (:data:`_SAME_FILE`) stored by then; for a file
#: that ingest failed to store (its one finding then is its ingest_failed: custodes.ingest), the first such
#: segment a later ingest stored (the re-run's): the failure is resolved by that recording, and by no other one
#: given its name; never by the name alone (a failure whose evidence gives neither size nor digest stays open),
#: and by a recording stored before it only with its digest (a card reused after a format: the new recording of an
#: old name and size that failed is not the old one stored: two hostile reviews).
FINDING_SEGMENT = (
    "CASE WHEN f.path IS NULL THEN NULL ELSE COALESCE(f.segment_id, "
    f"(SELECT MAX(s.id) FROM segments s WHERE {_SAME_FILE} AND s.ingest_id <= f.ingest_id "
    f"AND (f.kind <> 'ingest_failed' OR {_SAID.format('sha256')} IS NOT NULL)), "
    f"(SELECT MIN(s.id) FROM segments s WHERE {_SAME_FILE} AND s.ingest_id > f.ingest_id "
    f"AND COALESCE({_SAID.format('size')}, {_SAID.format('sha256')}) IS NOT NULL)) END"
)
#: What a finding about a file is about: the recording (:data:`FINDING_SEGMENT`), else the file's name (a file
#: that is no recording, or one never stored).
_FINDING_SUBJECT = f"CASE WHEN f.path IS NULL THEN NULL ELSE COALESCE({FINDING_SEGMENT}, {_FINDING_FILE}) END"
#: A finding's identity (issue 17): its kind, its device, and what it is about: the recording (or file) for a
#: finding about a file (late_ingest, clock_unset, truncated ...: one per kind and recording, whatever times a
#: later ingest gives it: a late_ingest's end is the time of the ingest that found it, and a later docking's clock
#: readings correct its start), the span of the device's own time for a finding about no file (gap, overlap,
#: sequence_break: the container times, the same at every docking of the card).
FINDING_IDENTITY = (
    f"f.kind, f.device_id, {_FINDING_SUBJECT}, CASE WHEN f.path IS NULL THEN f.start_ns END, "
    "CASE WHEN f.path IS NULL THEN f.end_ns END"
)


class Findings(Table):
    """Every ingest's findings as its entries hold them: a volume ingested again (or a later docking of the same
    card) finds the same facts again, and an archive written before issue 17 holds them once per ingest. The
    findings of the archive are the first row of each identity (:data:`FINDING_IDENTITY`): the ingest that first
    found it."""

    #: Made once: a replay adds a row per finding (10^6 at 10^6 segments), and making the text each time cost a
    #: tenth of replaying an ingest's findings.
    _INSERT = f"INSERT INTO findings ({', '.join(FindingRow._fields)}) VALUES ({question_marks(FindingRow._fields)})"

    def add(self, row: FindingRow) -> int:
        cur = self._conn.execute(self._INSERT, row)
        return int(cur.lastrowid or 0)

    def in_scope(
        self, scope: Scope, kinds: Sequence[str] | None = None
    ) -> Iterator[tuple[int | None, int | None, str, int]]:
        """The archive's findings (the first row of each identity) of the scope's devices whose time (their start,
        else their first ingest's) is in the scope's period, streamed in finding order, each with the ledger index
        of its segment when that segment is in the scope (else None), and 1 when its JSON is an object by
        SQLite's reading (0 otherwise: the caller parses it alone). ``kinds``: only findings of these kinds (None:
        every kind)."""
        seg_where, seg_args = scope.where()
        where = "1=1" if scope.devices is None else f"f.device_id IN ({question_marks(scope.devices)})"
        if kinds is not None:  # the kind is part of a finding's identity: the first of each is the same
            where += f" AND f.kind IN ({question_marks(kinds)})"
        when = "COALESCE(f.start_ns, i.started_ns)"
        # The first row of each identity, grouped on narrow rows: a window over whole rows (details and all) took
        # longer. At 10^6 findings the report's findings take about a quarter longer than without it.
        firsts = (
            f"SELECT MIN(f.id) FROM findings f JOIN ingests i ON i.id = f.ingest_id WHERE {where} "
            f"GROUP BY {FINDING_IDENTITY}"
        )
        # Each with the recording it is about (FINDING_SEGMENT): the first row of a file found already present, or
        # of one a failed ingest could not store, names no segment of its own.
        picked = (
            f"SELECT f.id, f.detail, {FINDING_SEGMENT} AS segment_id FROM findings f "
            f"JOIN ingests i ON i.id = f.ingest_id WHERE f.id IN ({firsts}) AND {when} >= ? AND {when} < ?"
        )
        sql = (
            "SELECT p.segment_id, s.ledger_seq, p.detail, "
            "CASE WHEN json_valid(p.detail) THEN json_type(p.detail) = 'object' ELSE 0 END "
            f"FROM ({picked}) p LEFT JOIN segments s ON s.id = p.segment_id AND {seg_where} ORDER BY p.id"
        )
        args = (*(scope.devices or ()), *(kinds or ()), scope.lo, scope.hi, *seg_args)
        return iter(self._conn.execute(sql, args))
