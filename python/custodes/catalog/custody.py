"""Who may see what and how long it is kept: access requests and their log (Art. 22, 24);
holds, cases, long-term marks and tombstones (Art. 19, 20); enforcement tasks and gap explanations."""

from __future__ import annotations

import json
from typing import NamedTuple

from custodes.catalog.evidence import Table


class AccessRow(NamedTuple):
    id: int
    requester: str
    segments: str  # JSON list of segment ids
    reason: str
    purpose: str
    status: str
    decided_by: str | None
    valid_from_ns: int | None
    valid_until_ns: int | None


class AccessLogRow(NamedTuple):
    action: str
    ok: int
    person: str
    segment_id: int | None
    detail: str
    time_ns: int
    ledger_seq: int
    request_id: int | None


class Tombstone(NamedTuple):
    sha256: str
    segment_ids: str  # JSON list of the segments purged with the object
    request_id: int


class AccessRequests(Table):
    def add(self, request: int, requester: str, segments: str, reason: str, purpose: str, now: int) -> None:
        """A request under the id its ``access_request`` entry names (catalog.replay)."""
        self._conn.execute(
            "INSERT INTO access_requests (id, requester, segments, reason, purpose, status, requested_ns) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (request, requester, segments, reason, purpose, now),
        )

    def get(self, request: int) -> AccessRow | None:
        row = self._conn.execute(
            f"SELECT {', '.join(AccessRow._fields)} FROM access_requests WHERE id = ?", (request,)
        ).fetchone()
        return None if row is None else AccessRow(*row)

    def all(self) -> list[AccessRow]:
        return [
            AccessRow(*r) for r in self._conn.execute(f"SELECT {', '.join(AccessRow._fields)} FROM access_requests")
        ]

    def decide(self, request: int, status: str, by: str, now: int, valid_until: int | None) -> None:
        """Approve (valid from now until ``valid_until``) or deny a pending request."""
        self._conn.execute(
            "UPDATE access_requests SET status = ?, decided_by = ?, decided_ns = ?, valid_from_ns = ?, "
            "valid_until_ns = ? WHERE id = ?",
            (status, by, now, now if status == "approved" else None, valid_until, request),
        )

    def log(
        self,
        request: int | None,
        person: str,
        action: str,
        segment: int | None,
        ok: bool,
        detail: str,
        now: int,
        ledger_seq: int,
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO access_log (request_id, person, action, segment_id, ok, detail, time_ns, ledger_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (request, person, action, segment, int(ok), detail, now, ledger_seq),
        )
        return int(cur.lastrowid or 0)

    def log_in_period(self, lo: int, hi: int) -> list[AccessLogRow]:
        sql = (
            f"SELECT {', '.join(AccessLogRow._fields)} FROM access_log WHERE time_ns >= ? AND time_ns < ? "
            "ORDER BY ledger_seq, id"
        )
        return [AccessLogRow(*r) for r in self._conn.execute(sql, (lo, hi))]


class RefusalWindow(NamedTuple):
    person: str
    started_ns: int
    logged: int  # refusals of the window ledgered one by one
    counted: int  # refusals beyond the limit, counted here until the window closes
    first_ns: int | None
    last_ns: int | None
    actions: str  # JSON {action: count} of the counted ones


class RefusalWindows(Table):
    """The refusal windows of accounts without a role (custodes.access); run state, not facts."""

    def get(self, person: str) -> RefusalWindow | None:
        row = self._conn.execute(
            f"SELECT {', '.join(RefusalWindow._fields)} FROM refusal_windows WHERE person = ?", (person,)
        ).fetchone()
        return None if row is None else RefusalWindow(*row)

    def start(self, person: str, now: int) -> RefusalWindow:
        self._conn.execute(
            "INSERT INTO refusal_windows (person, started_ns, logged, counted, actions) VALUES (?, ?, 0, 0, '{}')",
            (person, now),
        )
        return RefusalWindow(person, now, 0, 0, None, None, "{}")

    def note_logged(self, person: str) -> None:
        self._conn.execute("UPDATE refusal_windows SET logged = logged + 1 WHERE person = ?", (person,))

    def note_counted(self, window: RefusalWindow, action: str, now: int) -> None:
        """One more refusal counted, not ledgered: ``action`` tallied, the first and last time kept (inside the
        transaction that read ``window``)."""
        actions = json.loads(window.actions)
        actions[action] = actions.get(action, 0) + 1
        self._conn.execute(
            "UPDATE refusal_windows SET counted = counted + 1, first_ns = COALESCE(first_ns, ?), last_ns = ?, "
            "actions = ? WHERE person = ?",
            (now, now, json.dumps(actions, sort_keys=True), window.person),
        )

    def started_by(self, cutoff: int) -> list[RefusalWindow]:
        """The windows started at or before ``cutoff``: closed, when ``cutoff`` is now less the window's length."""
        sql = f"SELECT {', '.join(RefusalWindow._fields)} FROM refusal_windows WHERE started_ns <= ? ORDER BY person"
        return [RefusalWindow(*r) for r in self._conn.execute(sql, (cutoff,))]

    def end(self, person: str) -> None:
        self._conn.execute("DELETE FROM refusal_windows WHERE person = ?", (person,))


class Retention(Table):
    # --- holds ---
    def place_hold(self, hold: int | None, segment: int, reason: str, by: str, now: int) -> int:
        """A hold under the id its entry names (None: the next one, for entries written before ids were)."""
        cur = self._conn.execute(
            "INSERT INTO holds (id, segment_id, reason, by, placed_ns) VALUES (?, ?, ?, ?, ?)",
            (hold, segment, reason, by, now),
        )
        return int(cur.lastrowid or 0)

    def hold(self, hold: int) -> tuple[int, int | None] | None:
        """(segment, released) of a hold."""
        return self._conn.execute("SELECT segment_id, released_ns FROM holds WHERE id = ?", (hold,)).fetchone()

    def release_hold(self, hold: int, by: str, now: int) -> None:
        self._conn.execute("UPDATE holds SET released_ns = ?, released_by = ? WHERE id = ?", (now, by, hold))

    def active_holds(self, segment: int) -> list[int]:
        sql = "SELECT id FROM holds WHERE segment_id = ? AND released_ns IS NULL"
        return [h for (h,) in self._conn.execute(sql, (segment,))]

    # --- long-term marks and cases ---
    def mark_long_term(self, segment: int, reason: str, by: str, now: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO long_term (segment_id, reason, by, created_ns) VALUES (?, ?, ?, ?)",
            (segment, reason, by, now),
        )

    def link_case(self, case: str, until: int | None, description: str, segments: list[int]) -> None:
        """Create the case or set its retention end, and link the segments to it."""
        self._conn.execute(
            "INSERT INTO cases (id, retention_until_ns, description) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "retention_until_ns = excluded.retention_until_ns",
            (case, until, description),
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO case_segments (case_id, segment_id) VALUES (?, ?)", [(case, s) for s in segments]
        )

    def cases_of(self, segment: int) -> list[tuple[str, int | None]]:
        """(case, retention end or None while open) of each case the segment is linked to."""
        sql = (
            "SELECT c.id, c.retention_until_ns FROM case_segments cs JOIN cases c ON c.id = cs.case_id "
            "WHERE cs.segment_id = ?"
        )
        return self._conn.execute(sql, (segment,)).fetchall()

    def case_ends(self) -> dict[int, list[int | None]]:
        """Per segment linked to a case, the retention end of each of its cases (None while open)."""
        sql = "SELECT cs.segment_id, c.retention_until_ns FROM case_segments cs JOIN cases c ON c.id = cs.case_id"
        out: dict[int, list[int | None]] = {}
        for segment, until in self._conn.execute(sql):
            out.setdefault(segment, []).append(until)
        return out

    def held_segments(self) -> set[int]:
        """The segments under at least one hold not released."""
        return {s for (s,) in self._conn.execute("SELECT DISTINCT segment_id FROM holds WHERE released_ns IS NULL")}

    # --- tombstones ---
    def add_tombstone(self, sha256: str, segments: str, request: int, by: str, now: int, ledger_seq: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO tombstones (sha256, segment_ids, request_id, by, time_ns, ledger_seq) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sha256, segments, request, by, now, ledger_seq),
        )

    def tombstone_request(self, sha256: str) -> int | None:
        return self._one("SELECT request_id FROM tombstones WHERE sha256 = ?", (sha256,))

    def unfinished_tombstones(self) -> list[Tombstone]:
        """Tombstones whose completion is not in the ledger (no ``purge_done`` entry for the object), in
        digest order: purges stopped between the tombstone and the removal of the bytes, or before that
        removal was recorded. One pass over the ledger (SQLite reads the JSON); an entry that is not JSON
        is skipped here (verify's leaf check reports it)."""
        text = "CAST(entry AS TEXT)"
        field = f"CASE WHEN json_valid({text}) THEN json_extract({text}, '$.%s') END"
        sql = (
            "SELECT sha256, segment_ids, request_id FROM tombstones WHERE sha256 NOT IN ("
            f"SELECT {field % 'sha256'} FROM ledger WHERE {field % 'type'} = 'purge_done' "
            f"AND {field % 'sha256'} IS NOT NULL) ORDER BY sha256"
        )
        return [Tombstone(*r) for r in self._conn.execute(sql)]


class TaskRow(NamedTuple):
    id: str
    type: str
    start_ns: int
    end_ns: int
    officers: str  # JSON list
    devices: str  # JSON list


class Tasks(Table):
    def get(self, task: str) -> TaskRow | None:
        row = self._conn.execute(f"SELECT {', '.join(TaskRow._fields)} FROM tasks WHERE id = ?", (task,)).fetchone()
        return None if row is None else TaskRow(*row)

    def upsert(self, row: TaskRow, now: int, ledger_seq: int) -> None:
        self._conn.execute(
            "INSERT INTO tasks (id, type, start_ns, end_ns, officers, devices, imported_ns, ledger_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET type=excluded.type, "
            "start_ns=excluded.start_ns, end_ns=excluded.end_ns, officers=excluded.officers, "
            "devices=excluded.devices, imported_ns=excluded.imported_ns, ledger_seq=excluded.ledger_seq",
            (*row, now, ledger_seq),
        )

    def all(self) -> list[TaskRow]:
        sql = f"SELECT {', '.join(TaskRow._fields)} FROM tasks ORDER BY start_ns, id"
        return [TaskRow(*r) for r in self._conn.execute(sql)]


class Explanation(NamedTuple):
    device_id: str
    start_ns: int
    end_ns: int
    cause: str
    note: str | None
    source: str
    id: int
    ledger_seq: int | None  # the annotation's entry


class GapExplanations(Table):
    def add(
        self,
        annotation: int | None,
        device: str,
        start: int,
        end: int,
        cause: str,
        note: str,
        segment: int | None,
        offset: int | None,
        by: str,
        now: int,
        ledger_seq: int,
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO gap_explanations (id, device_id, start_ns, end_ns, cause, note, segment_id, offset_ns, "
            "source, by, created_ns, ledger_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'annotation', ?, ?, ?)",
            (annotation, device, start, end, cause, note, segment, offset, by, now, ledger_seq),
        )
        return int(cur.lastrowid or 0)

    def all(self) -> list[Explanation]:
        sql = f"SELECT {', '.join(Explanation._fields)} FROM gap_explanations"
        return [Explanation(*r) for r in self._conn.execute(sql)]
