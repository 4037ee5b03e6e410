"""Retention and holds (Art. 19, 20), and lawful purge.

Every recording is kept at least ``retention.minimum_days`` after it ends; one
linked to a case is kept as long as the case says (an open case: for ever);
a recording marked for long-term keeping (the Art. 20 reasons) or marked
important by the device is never due; a legal hold overrides everything.
Purge needs an approved ``purge`` access request, refuses anything held,
long-term or not yet due, and writes a tombstone to the ledger *before* the
object is removed, so ``verify`` tells a lawful purge from a deletion.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from custodes import ledger
from custodes.access import AccessDenied, current_person, grant_for, person_role
from custodes.archive import Archive
from custodes.defaults import SQL_CLOCK_IS_SET
from custodes.errors import CustodesError
from custodes.findings import rfc3339

__all__ = [
    "LONG_TERM_REASONS",
    "RetentionStatus",
    "due",
    "hold",
    "link_case",
    "long_term",
    "purge",
    "release",
    "status",
]

NS = 1_000_000_000
DAY = 86_400 * NS
LONG_TERM_REASONS = ("complaint", "obstruction_or_assault", "mass_incident", "other")


@dataclass(frozen=True)
class RetentionStatus:
    segment: int
    name: str
    keep_until: int | None  # None: for ever (long-term, important, open case)
    reasons: list[str]
    holds: list[int]
    purged: bool

    def due(self, at: int) -> bool:
        return not self.purged and not self.holds and self.keep_until is not None and at >= self.keep_until

    def to_json(self, at: int | None = None) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "name": self.name,
            "keep_until": rfc3339(self.keep_until),
            "reasons": self.reasons,
            "holds": self.holds,
            "purged": self.purged,
            "due": self.due(time.time_ns() if at is None else at),
        }


def _require(archive: Archive, roles: tuple[str, ...]) -> str:
    person = current_person(archive)
    if person_role(archive, person) not in roles:
        raise AccessDenied(f"{person} may not do this (needs {' or '.join(roles)})")
    return person


def status(archive: Archive, segments: list[int] | None = None) -> list[RetentionStatus]:
    conn = archive.conn
    minimum = archive.policy.retention_days * DAY
    where = f"WHERE s.id IN ({','.join('?' * len(segments))})" if segments else ""
    # The minimum runs from the recording's end, or from its ingest when its clock
    # cannot be believed (none, or an unset clock before the floor): a camera
    # reset to the year 2000 must not make its footage due for purge at once.
    rows = conn.execute(
        f"SELECT s.id, s.original_name, CASE WHEN {SQL_CLOCK_IS_SET} THEN "
        f"COALESCE(s.corrected_end_ns, s.end_ns, s.ingested_ns) ELSE s.ingested_ns END, s.important, "
        f"s.purged_ns, lt.reason FROM segments s LEFT JOIN long_term lt ON lt.segment_id = s.id {where} "
        "ORDER BY s.id",
        segments or (),
    ).fetchall()
    out = []
    for seg, name, end, important, purged, lt_reason in rows:
        reasons = [f"minimum {archive.policy.retention_days} days"]
        keep: int | None = end + minimum
        if important:
            keep, reasons = None, reasons + ["important-file mark (Art. 20)"]
        if lt_reason:
            keep, reasons = None, reasons + [f"long-term: {lt_reason} (Art. 20)"]
        for case, until in conn.execute(
            "SELECT c.id, c.retention_until_ns FROM case_segments cs JOIN cases c ON c.id = cs.case_id "
            "WHERE cs.segment_id = ?",
            (seg,),
        ):
            reasons.append(f"case {case}" + (f" until {rfc3339(until)}" if until else " (open)"))
            keep = None if until is None or keep is None else max(keep, until)
        holds = [
            h for (h,) in conn.execute("SELECT id FROM holds WHERE segment_id = ? AND released_ns IS NULL", (seg,))
        ]
        out.append(RetentionStatus(seg, name, keep, reasons, holds, purged is not None))
    return out


def due(archive: Archive, at: int | None = None) -> list[RetentionStatus]:
    at = time.time_ns() if at is None else at
    return [s for s in status(archive) if s.due(at)]


def _ledgered(archive: Archive, entry: dict[str, Any], sql: str, params: tuple[Any, ...]) -> int:
    """Run one catalog change with its ledger entry in one transaction; returns the row id."""
    with archive.transaction() as tx:
        ledger.append(tx, entry)
        rowid = int(tx.execute(sql, params).lastrowid or 0)
    archive.checkpoint()
    return rowid


def _segment_exists(archive: Archive, segment: int) -> None:
    if archive.conn.execute("SELECT 1 FROM segments WHERE id = ?", (segment,)).fetchone() is None:
        raise CustodesError(f"no segment {segment}")


def hold(archive: Archive, segment: int, reason: str) -> int:
    """A legal hold: nothing purges the recording until it is released."""
    person = _require(archive, ("custodian", "approver"))
    _segment_exists(archive, segment)
    now = time.time_ns()
    return _ledgered(
        archive,
        {"type": "hold", "segment": segment, "reason": reason, "by": person, "time": now},
        "INSERT INTO holds (segment_id, reason, by, placed_ns) VALUES (?, ?, ?, ?)",
        (segment, reason, person, now),
    )


def release(archive: Archive, hold_id: int) -> None:
    person = _require(archive, ("approver",))
    row = archive.conn.execute("SELECT segment_id, released_ns FROM holds WHERE id = ?", (hold_id,)).fetchone()
    if row is None or row[1] is not None:
        raise CustodesError(f"no active hold {hold_id}")
    now = time.time_ns()
    _ledgered(
        archive,
        {"type": "hold_release", "hold": hold_id, "segment": row[0], "by": person, "time": now},
        "UPDATE holds SET released_ns = ?, released_by = ? WHERE id = ?",
        (now, person, hold_id),
    )


def long_term(archive: Archive, segment: int, reason: str) -> None:
    person = _require(archive, ("custodian", "approver"))
    if reason not in LONG_TERM_REASONS:
        raise CustodesError(f"long-term reason must be one of {', '.join(LONG_TERM_REASONS)}")
    _segment_exists(archive, segment)
    now = time.time_ns()
    _ledgered(
        archive,
        {"type": "retention_change", "segment": segment, "long_term": reason, "by": person, "time": now},
        "INSERT OR REPLACE INTO long_term (segment_id, reason, by, created_ns) VALUES (?, ?, ?, ?)",
        (segment, reason, person, now),
    )


def link_case(archive: Archive, case: str, segments: list[int], until: int | None, description: str = "") -> None:
    """Link recordings to a case; they follow its retention (``until`` None: the case is open)."""
    person = _require(archive, ("custodian", "approver"))
    for s in segments:
        _segment_exists(archive, s)
    now = time.time_ns()
    with archive.transaction() as tx:
        ledger.append(
            tx,
            {
                "type": "retention_change",
                "case": case,
                "segments": sorted(segments),
                "until": until,
                "by": person,
                "time": now,
            },
        )
        tx.execute(
            "INSERT INTO cases (id, retention_until_ns, description) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "retention_until_ns = excluded.retention_until_ns",
            (case, until, description),
        )
        tx.executemany(
            "INSERT OR IGNORE INTO case_segments (case_id, segment_id) VALUES (?, ?)", [(case, s) for s in segments]
        )
    archive.checkpoint()


def purge(archive: Archive, request_id: int, at: int | None = None) -> list[int]:
    """Purge the recordings of an approved purge request: tombstone first, then the object.

    A purge stopped part way (a storage error, a crash) is finished by running
    it again: segments already purged are not refused but completed, and an
    object whose tombstone is in the ledger but which is still in the store is
    removed then."""
    req = archive.conn.execute("SELECT segments FROM access_requests WHERE id = ?", (request_id,)).fetchone()
    segments = json.loads(req[0]) if req else []
    at = time.time_ns() if at is None else at
    for st in status(archive, segments):
        if st.purged:
            continue  # its tombstone is in the ledger: only the object's removal may be left to do
        if st.holds:
            raise AccessDenied(f"segment {st.segment} is under hold {st.holds}: nothing overrides a hold")
        if st.keep_until is None:
            raise AccessDenied(f"segment {st.segment} is kept for ever ({'; '.join(st.reasons[1:])})")
        if at < st.keep_until:
            raise AccessDenied(f"segment {st.segment} is not due until {rfc3339(st.keep_until)}")
    grant_for(archive, request_id, segments, "purge", "purge")
    person = current_person(archive)
    now = time.time_ns()
    rows = archive.conn.execute(
        f"SELECT id, sha256, purged_ns FROM segments WHERE id IN ({','.join('?' * len(segments))})", segments
    ).fetchall()
    for seg, sha, purged in rows:
        if purged is None:
            with archive.transaction() as tx:
                seq = ledger.append(
                    tx,
                    {"type": "purge", "segment": seg, "sha256": sha, "request": request_id, "by": person, "time": now},
                )
                tx.execute("UPDATE segments SET purged_ns = ? WHERE id = ?", (now, seg))
                others = tx.execute(
                    "SELECT COUNT(*) FROM segments WHERE sha256 = ? AND purged_ns IS NULL", (sha,)
                ).fetchone()[0]
                if not others:  # the object goes only when no live recording still needs its bytes
                    tx.execute("UPDATE objects SET purged_ns = ? WHERE sha256 = ?", (now, sha))
                    tx.execute(
                        "INSERT OR REPLACE INTO tombstones (sha256, segment_ids, request_id, by, time_ns, ledger_seq) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (sha, json.dumps([seg]), request_id, person, now, seq),
                    )
        if _object_due_for_removal(archive, sha) and archive.store.stat(sha) is not None:
            archive.store.purge(sha)
    archive.checkpoint()
    return [seg for seg, _, _ in rows]


def _object_due_for_removal(archive: Archive, sha: str) -> bool:
    """The object's tombstone is in the ledger and no live recording needs its bytes."""
    return (
        archive.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM tombstones WHERE sha256 = ?) "
            "AND NOT EXISTS (SELECT 1 FROM segments WHERE sha256 = ? AND purged_ns IS NULL)",
            (sha, sha),
        ).fetchone()[0]
        == 1
    )
