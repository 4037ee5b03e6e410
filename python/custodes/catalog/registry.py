"""The device registry (Art. 6), each device's statuses, and who held which device when (Art. 9, 25).

Rows are made from their ledger entries only (catalog.replay: ``device``, ``device_assign``); the facts a
recording gets from them (its responsible officer, a lent or lost device) are read here at report time, joined to
the segments, so an assignment imported after the footage counts (custodes.devices)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from custodes.catalog.evidence import _HELD_AT, _WHEN, Scope, Table, question_marks


class RegistryRow(NamedTuple):
    device_id: str
    kind: str
    vendor: str
    model: str
    serial: str
    unit: str
    status: str
    status_since_ns: int


class AssignmentRow(NamedTuple):
    device_id: str
    start_ns: int
    end_ns: int | None
    officer_id: str


class SegmentDeviceFacts(NamedTuple):
    """One recording with what the registry says of its device at the recording's time."""

    segment_id: int
    ledger_seq: int
    device_id: str
    when_ns: int
    named_officer: str | None  # the officer its file name, else its device's identity, names
    registered: bool
    unit: str | None
    status: str | None  # the device's status at the recording's time (None: before its first status)
    status_since_ns: int | None
    assignee: str | None  # who held the device at the recording's time (None: nobody)


class Registry(Table):
    def get(self, device: str) -> RegistryRow | None:
        sql = f"SELECT {', '.join(RegistryRow._fields)} FROM registry WHERE device_id = ?"  # noqa: S608
        row = self._conn.execute(sql, (device,)).fetchone()
        return None if row is None else RegistryRow(*row)

    def in_use(self) -> bool:
        """At least one device is registered: only then does footage get registry findings."""
        return self._one("SELECT 1 FROM registry LIMIT 1") is not None

    def all(self) -> list[RegistryRow]:
        sql = f"SELECT {', '.join(RegistryRow._fields)} FROM registry ORDER BY device_id"  # noqa: S608
        return [RegistryRow(*r) for r in self._conn.execute(sql)]

    def upsert(self, row: RegistryRow, by: str, now: int, ledger_seq: int) -> None:
        """The device as its latest entry describes it; a status with a new start is added to its history."""
        others = [c for c in RegistryRow._fields[1:]] + ["by", "updated_ns", "ledger_seq"]
        self._conn.execute(
            f"INSERT INTO registry ({', '.join(RegistryRow._fields)}, by, updated_ns, ledger_seq) "
            f"VALUES ({question_marks(row)}, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
            + ", ".join(f"{c}=excluded.{c}" for c in others),
            (*row, by, now, ledger_seq),
        )
        self._conn.execute(
            "INSERT INTO registry_statuses (device_id, since_ns, status, ledger_seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device_id, since_ns) DO UPDATE SET status=excluded.status, ledger_seq=excluded.ledger_seq",
            (row.device_id, row.status_since_ns, row.status, ledger_seq),
        )
        # The current status is the latest in time, not the latest entered: a status dated back (a retirement
        # recorded late) goes into the history without overriding a later one.
        self._conn.execute(
            "UPDATE registry SET (status, status_since_ns) = (SELECT st.status, st.since_ns FROM registry_statuses st "
            "WHERE st.device_id = registry.device_id ORDER BY st.since_ns DESC LIMIT 1) WHERE device_id = ?",
            (row.device_id,),
        )

    def statuses(self, device: str) -> list[tuple[int, str]]:
        """(since, status) of the device, oldest first."""
        sql = "SELECT since_ns, status FROM registry_statuses WHERE device_id = ? ORDER BY since_ns"
        return [(int(t), str(s)) for t, s in self._conn.execute(sql, (device,))]

    def assignment(self, device: str, start: int) -> AssignmentRow | None:
        sql = f"SELECT {', '.join(AssignmentRow._fields)} FROM assignments WHERE device_id = ? AND start_ns = ?"  # noqa: S608
        row = self._conn.execute(sql, (device, start)).fetchone()
        return None if row is None else AssignmentRow(*row)

    def assignments(self, device: str | None = None) -> list[AssignmentRow]:
        """Every assignment (of ``device`` when given), by device and start."""
        where = "1=1" if device is None else "device_id = ?"
        sql = f"SELECT {', '.join(AssignmentRow._fields)} FROM assignments WHERE {where} ORDER BY device_id, start_ns"  # noqa: S608
        return [AssignmentRow(*r) for r in self._conn.execute(sql, () if device is None else (device,))]

    def assignment_entries(self, device: str) -> list[tuple[int, int]]:
        """(start, ledger index of the entry that made it) of each assignment of ``device``, by start."""
        sql = "SELECT start_ns, ledger_seq FROM assignments WHERE device_id = ? ORDER BY start_ns"
        return [(int(t), int(q)) for t, q in self._conn.execute(sql, (device,))]

    def recordings_between(self, device: str, start: int, end: int | None, ingested_before: int) -> int:
        """How many recordings of ``device`` fall in [start, end) (their clock-corrected time) and were ingested
        before ``ingested_before``: the footage an assignment's correction changed the responsible officer of."""
        sql = (
            f"SELECT COUNT(*) FROM segments s WHERE s.device_id = ? AND s.kind IN ('video', 'audio', 'photo') "
            f"AND {_WHEN} >= ? AND (? IS NULL OR {_WHEN} < ?) AND s.ingested_ns < ?"
        )
        return int(self._one(sql, (device, start, end, end, ingested_before)) or 0)

    def assign(self, row: AssignmentRow, by: str, now: int, ledger_seq: int) -> None:
        self._conn.execute(
            "INSERT INTO assignments (device_id, start_ns, end_ns, officer_id, by, created_ns, ledger_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id, start_ns) DO UPDATE SET end_ns=excluded.end_ns, "
            "officer_id=excluded.officer_id, by=excluded.by, created_ns=excluded.created_ns, "
            "ledger_seq=excluded.ledger_seq",
            (*row, by, now, ledger_seq),
        )

    def segment_facts(self, scope: Scope) -> Iterator[SegmentDeviceFacts]:
        """Every recording of the scope (video, audio, photo) with its device's registry facts at its time, in
        segment order, streamed: one pass, each lookup by the (device, time) keys of the two history tables."""
        where, args = scope.where()
        status_at = (
            f"SELECT st.status || ' ' || st.since_ns FROM registry_statuses st WHERE st.device_id = s.device_id "
            f"AND st.since_ns <= {_WHEN} ORDER BY st.since_ns DESC LIMIT 1"
        )
        assignee = f"SELECT a.officer_id FROM assignments a WHERE {_HELD_AT} ORDER BY a.start_ns DESC LIMIT 1"
        sql = (
            f"SELECT s.id, s.ledger_seq, s.device_id, {_WHEN}, COALESCE(s.officer_id, d.officer_id), "
            f"r.device_id IS NOT NULL, r.unit, ({status_at}), ({assignee}) "
            "FROM segments s LEFT JOIN registry r ON r.device_id = s.device_id "
            "LEFT JOIN devices d ON d.device_id = s.device_id "
            f"WHERE {where} AND s.kind IN ('video', 'audio', 'photo') ORDER BY s.id"
        )
        for seg, seq, device, when, named, registered, unit, st, held in self._conn.execute(sql, args):
            status, since = (None, None) if st is None else st.rsplit(" ", 1)  # status names hold no space
            yield SegmentDeviceFacts(
                seg,
                seq,
                device,
                when,
                named,
                bool(registered),
                unit,
                status,
                None if since is None else int(since),
                held,
            )
