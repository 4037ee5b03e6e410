"""Retention and holds (Art. 19, 20), and lawful purge.

Every recording is kept at least ``retention.minimum_days`` after it ends; one
linked to a case is kept as long as the case says (an open case: for ever);
a recording marked for long-term keeping (the Art. 20 reasons) or marked
important by the device is never due; a legal hold overrides everything.
Purge needs an approved ``purge`` access request, refuses anything held,
long-term or not yet due, and writes a tombstone to the ledger *before* the
object is removed, so ``verify`` tells a lawful purge from a deletion; the
removal is then recorded too (``purge_done``), and a purge stopped between
the two is finished by the next one (or ``resume_purge``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypedDict

from custodes.access import current_person, grant_for, not_in_ledger, purge_unapproved, refuse, require_role
from custodes.archive import Archive
from custodes.catalog import Catalog, Scope, replay
from custodes.defaults import NS, given_id, given_reason
from custodes.errors import CustodesError, UnknownRecordError
from custodes.export import sweep_exports
from custodes.findings import rfc3339
from custodes.storage import ObjectStore, StoredObject, StoreError

__all__ = [
    "LONG_TERM_REASONS",
    "HoldJSON",
    "ReleaseJSON",
    "RetentionStatus",
    "counts",
    "due",
    "hold",
    "hold_json",
    "link_case",
    "long_term",
    "PurgeResult",
    "RetentionGround",
    "purge",
    "release",
    "release_json",
    "resume_purge",
    "status",
]

DAY = 86_400 * NS
LONG_TERM_REASONS = ("complaint", "obstruction_or_assault", "mass_incident", "other")


@dataclass(frozen=True)
class RetentionGround:
    """One ground a recording is kept on: ``minimum`` (``value``: the policy's days), ``important`` (the
    device's important-file mark), ``long_term`` (``value``: one of :data:`LONG_TERM_REASONS`), ``case``
    (``value``: the case; ``until``: its end, None while open). The page labels each in its reader's language;
    :meth:`text` is the English of ``retention status`` and the JSON."""

    kind: str
    value: str | None = None
    until: int | None = None

    def text(self) -> str:
        if self.kind == "minimum":
            return f"minimum {self.value} days"
        if self.kind == "important":
            return "important-file mark (Art. 20)"
        if self.kind == "long_term":
            return f"long-term: {self.value} (Art. 20)"
        return f"case {self.value}" + (f" until {rfc3339(self.until)}" if self.until else " (open)")


@dataclass(frozen=True)
class RetentionStatus:
    segment: int
    name: str
    keep_until: int | None  # None: for ever (long-term, important, open case)
    reasons: list[str]  # the grounds' English text (:meth:`RetentionGround.text`)
    holds: list[int]
    purged: bool
    minimum_until: int = 0  # the end of the minimum alone (what a recording kept for ever is kept until at least)
    grounds: tuple[RetentionGround, ...] = ()

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


def status(archive: Archive, segments: list[int] | None = None) -> list[RetentionStatus]:
    catalog = archive.catalog
    minimum = minimum_ns(archive)
    # The minimum runs from the recording's end, or from its ingest when its clock
    # cannot be believed (none, or an unset clock before the floor): a camera
    # reset to the year 2000 must not make its footage due for purge at once.
    out = []
    for seg, name, end, important, purged, lt_reason in catalog.segments.retention_facts(segments):
        grounds = [RetentionGround("minimum", _days(archive.policy.retention_days))]
        if important:
            grounds.append(RetentionGround("important"))
        if lt_reason:
            grounds.append(RetentionGround("long_term", str(lt_reason)))
        cases = catalog.retention.cases_of(seg)
        grounds += [RetentionGround("case", case, until) for case, until in cases]
        keep = _keep_until(end + minimum, important, lt_reason, [until for _, until in cases])
        holds = catalog.retention.active_holds(seg)
        reasons = [g.text() for g in grounds]
        out.append(RetentionStatus(seg, name, keep, reasons, holds, purged is not None, end + minimum, tuple(grounds)))
    return out


def minimum_ns(archive: Archive) -> int:
    """The policy's minimum retention (``[retention] minimum_days``, fractions of a day included) in ns."""
    return round(archive.policy.retention_days * DAY)


def _days(days: float) -> str:
    """A number of days as the policy gives it: ``730``, ``0.5`` (every digit that tells it from another)."""
    return repr(float(days)).removesuffix(".0")


def _keep_until(minimum_end: int, important: Any, lt_reason: Any, case_ends: list[int | None]) -> int | None:
    """Until when a recording is kept: the minimum, or longer for its cases; None (for ever) when it is marked
    important or long-term, or linked to an open case."""
    keep: int | None = None if important or lt_reason else minimum_end
    for until in case_ends:
        keep = None if until is None or keep is None else max(keep, until)
    return keep


def counts(archive: Archive, scope: Scope, at: int) -> dict[str, int]:
    """How many of the scope's recordings are due for purge at ``at``, held, kept for ever, purged: what
    :func:`status` says of each, counted in one pass over the scope (the compliance report, Art. 19, 20)."""
    catalog = archive.catalog
    minimum = minimum_ns(archive)
    case_ends, held = catalog.retention.case_ends(), catalog.retention.held_segments()
    out = {"due": 0, "held": 0, "long_term": 0, "purged": 0}
    for seg, end, important, purged, lt_reason in catalog.segments.retention_in_scope(scope):
        keep = _keep_until(end + minimum, important, lt_reason, case_ends.get(seg, []))
        if purged is not None:
            out["purged"] += 1
        elif keep is None:
            out["long_term"] += 1
        if seg in held:
            out["held"] += 1
        elif purged is None and keep is not None and at >= keep:
            out["due"] += 1
    return out


def due(archive: Archive, at: int | None = None) -> list[RetentionStatus]:
    at = time.time_ns() if at is None else at
    return [s for s in status(archive) if s.due(at)]


def _ledgered(archive: Archive, entry: Callable[[Catalog], dict[str, Any]], segments: list[int]) -> None:
    """Ledger one change and make its rows from the entry (catalog.replay), in one transaction, then sign a
    checkpoint and have the store keep the ``segments``' objects as the change now says (:func:`to_store`).
    ``entry`` is made inside the transaction: it may name the id its row gets."""
    with archive.transaction() as catalog:
        replay.record(catalog, entry(catalog))
    try:
        archive.checkpoint()
    finally:  # the change is recorded: the storage keeps it so, its checkpoint written or not (a hostile review:
        # a hold answered "it stands" had no legal hold in the bucket)
        try:
            to_store(archive, archive.catalog.segments.objects_of(segments))
        except StoreError as e:
            raise StoreError(
                f"the change is recorded in the ledger, but the storage does not keep the recording as it says "
                f"yet: {e}; `custodes storage sync` applies it once the storage can"
            ) from None


def to_store(archive: Archive, digests: list[str]) -> None:
    """Have the storage itself keep each object as long as the catalog says its recordings are kept (Art. 19,
    20): retention until the latest of their dates, extended and never shortened, and a legal hold while any
    of them is held or kept for ever (an open case, a long-term or important mark: an S3 retention date cannot
    say "for ever", a legal hold can). Both copies, where the policy keeps a second; a backend that cannot
    enforce either is skipped (``local``).

    Called after every change that moves a date or a hold, by ingest for the objects it stored and by a
    repair for what it restored: the catalog and the ledger are the record, this makes the storage refuse
    what they forbid. Interrupted before it ran, a change is applied by the next one touching the object, or
    ``custodes storage sync``."""
    stores = enforcing_stores(archive)
    if not digests or not stores:
        return
    locks = [(store, digest, lock) for digest, lock in storage_locks(archive, digests).items() for store in stores]

    # Each lock is a few requests that wait on the storage: several at once (one at a time, half of a small
    # file's ingest into a bucket was its lock). The catalog was read above, on this thread only.
    def lock(job: tuple[ObjectStore, str, tuple[int | None, bool]]) -> tuple[str, Exception] | None:
        store, digest, (until, held) = job
        try:
            store.lock(digest, until, held)
        except (StoreError, OSError) as e:
            return digest, e
        return None

    with ThreadPoolExecutor(min(LOCKS_IN_FLIGHT, max(1, len(locks))), thread_name_prefix="custodes-lock") as pool:
        failed = [why for why in pool.map(lock, locks) if why is not None]
    if failed:  # every lock was tried: one that fails (an object gone) stops none of the others
        raise NotLockedError(failed)


class NotLockedError(StoreError):
    """Objects the storage does not keep as the catalog says: each failed lock's object and error (an object of
    two copies may fail in both); ``objects``: the objects, once each; ``missing``: every failure is an object
    gone from the storage (verify's ``missing``: the evidence, not the storage, is what is wrong)."""

    def __init__(self, failed: list[tuple[str, Exception]]) -> None:
        self.failed = [e for _, e in failed]
        self.objects = sorted({digest for digest, _ in failed})
        self.missing = all(isinstance(e, FileNotFoundError) for e in self.failed)
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        super().__init__(f"{len(self.objects)} object(s) not locked as the catalog keeps them: {self.failed[0]}{more}")


#: Objects :func:`to_store` locks at once.
LOCKS_IN_FLIGHT = 8


def enforcing_stores(archive: Archive) -> list[ObjectStore]:
    """The archive's copies whose storage enforces retention and legal holds itself (S3 Object Lock)."""
    return [s for s in (archive.store, archive.replica) if s is not None and s.enforces_retention]


def storage_locks(archive: Archive, digests: list[str]) -> dict[str, tuple[int | None, bool]]:
    """What :func:`to_store` has the storage keep of each object, as the catalog says now: ``(retain until,
    legal hold)``. The date is the latest its recordings are kept until, a recording kept for ever counting
    with the end of its minimum: a legal hold alone can be lifted by whoever may set one (S3's rule), a
    COMPLIANCE date by no one, so a held or kept-for-ever recording is never guarded by the hold alone while
    its minimum runs. An object no recording needs any more is left out: its purge decides."""
    needed = archive.catalog.segments.of_objects(digests)
    locks: dict[str, tuple[int | None, bool]] = {}
    for digest in digests:
        statuses = status(archive, needed[digest]) if needed[digest] else []
        if not statuses:
            continue
        held = any(st.holds for st in statuses) or any(st.keep_until is None for st in statuses)
        until = max(st.minimum_until if st.keep_until is None else st.keep_until for st in statuses)
        locks[digest] = (until, held)
    return locks


def locked_as_recorded(stored: StoredObject, lock: tuple[int | None, bool], now: int) -> bool:
    """Whether the storage keeps an object (``stored``, its :meth:`~custodes.storage.ObjectStore.stat`) as
    :func:`storage_locks` says it must: held or not as recorded, and retained until the recorded date (a date
    already past keeps nothing, so none is needed then)."""
    until, held = lock
    if bool(stored.legal_hold) != held:
        return False
    return until is None or until <= now or (stored.retain_until_ns or 0) >= until


def _segment_exists(archive: Archive, segment: int) -> None:
    if not archive.catalog.segments.exists(segment):
        raise UnknownRecordError(f"no segment {segment}")


class HoldJSON(TypedDict):
    """A hold placed, as ``custodes retention hold --json`` prints it and the HTTP API returns it."""

    hold: int
    segment: int


class ReleaseJSON(TypedDict):
    """A hold released, as ``custodes retention release --json`` prints it and the HTTP API returns it."""

    hold: int
    released: bool


def hold_json(hold_id: int, segment: int) -> HoldJSON:
    """The JSON of the hold :func:`hold` placed (one schema for the CLI and the HTTP API)."""
    return {"hold": hold_id, "segment": segment}


def release_json(hold_id: int) -> ReleaseJSON:
    """The JSON of a hold :func:`release` released (one schema for the CLI and the HTTP API)."""
    return {"hold": hold_id, "released": True}


#: Who may place a legal hold (:func:`hold`), and who may release one (:func:`release`).
HOLDERS = ("custodian", "approver")
RELEASERS = ("approver",)


def hold(archive: Archive, segment: int, reason: str) -> int:
    """A legal hold: nothing purges the recording until it is released."""
    person = require_role(archive, HOLDERS, "hold", segment)
    given_reason(reason, "a hold")
    _segment_exists(archive, segment)
    now = time.time_ns()
    held: list[int] = []

    def entry(catalog: Catalog) -> dict[str, Any]:
        held.append(replay.next_id(catalog, "holds"))
        return {"type": "hold", "hold": held[-1], "segment": segment, "reason": reason, "by": person, "time": now}

    _ledgered(archive, entry, [segment])
    return held[-1]


def release(archive: Archive, hold_id: int) -> None:
    person = require_role(archive, RELEASERS, "release")
    row = archive.catalog.retention.hold(hold_id)
    if row is None:  # never placed (a hold released already is not active either: the state refuses it)
        raise UnknownRecordError(f"no active hold {hold_id}")
    if row[1] is not None:
        raise CustodesError(f"no active hold {hold_id}")
    now = time.time_ns()
    _ledgered(
        archive,
        lambda _: {"type": "hold_release", "hold": hold_id, "segment": row[0], "by": person, "time": now},
        [row[0]],
    )


def long_term(archive: Archive, segment: int, reason: str) -> None:
    person = require_role(archive, ("custodian", "approver"), "long_term", segment)
    if reason not in LONG_TERM_REASONS:
        raise CustodesError(f"long-term reason must be one of {', '.join(LONG_TERM_REASONS)}")
    _segment_exists(archive, segment)
    now = time.time_ns()
    _ledgered(
        archive,
        lambda _: {"type": "retention_change", "segment": segment, "long_term": reason, "by": person, "time": now},
        [segment],
    )


def link_case(archive: Archive, case: str, segments: list[int], until: int | None, description: str = "") -> None:
    """Link recordings to a case; they follow its retention (``until`` None: the case is open)."""
    person = require_role(archive, ("custodian", "approver"), "case")
    given_id(case, "the case id")  # the id an export, a hold's reason and a court name it by
    for s in segments:
        _segment_exists(archive, s)
    now = time.time_ns()
    _ledgered(
        archive,
        lambda _: {
            "type": "retention_change",
            "case": case,
            "segments": sorted(segments),
            "until": until,
            "description": description,
            "by": person,
            "time": now,
        },
        segments,
    )


@dataclass(frozen=True)
class PurgeResult:
    """What one purge run did: ``purged``, the recordings it tombstoned and removed; ``finished``, those of
    earlier purges it completed (their tombstones were in the ledger, their bytes still stored, or their
    removal not yet recorded); ``already``, recordings of the request whose purge was complete before."""

    request: int | None
    purged: list[int]
    finished: list[int]
    already: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request, "purged": self.purged, "finished": self.finished, "already": self.already}


def purge(archive: Archive, request_id: int, at: int | None = None) -> PurgeResult:
    """Purge the recordings of an approved purge request, in two phases, then finish every purge left
    unfinished in the archive (see :func:`resume_purge`).

    Phase 1 writes each recording's tombstone (a ``purge`` ledger entry) and marks it purged, and signs a
    checkpoint: the lawful decision is in the signed ledger before any bytes go. Phase 2 removes each
    object's bytes and records that as a ``purge_done`` entry. A run stopped between the two (a storage
    error, a crash) leaves objects that ``verify`` reports as ``purge_incomplete``; the next purge run
    finishes them. Segments of the request purged already are not refused but reported."""
    req = archive.catalog.access.get(request_id)
    segments = json.loads(req.segments) if req else []
    # Destroying evidence is a custodian's or an approver's act, even under a request an approver granted.
    require_role(archive, ("custodian", "approver"), "purge", segments[0] if len(segments) == 1 else None, request_id)
    at = time.time_ns() if at is None else at
    # No such request: no segment to check (an empty list would mean all of them); grant_for refuses it.
    statuses = status(archive, segments) if segments else []
    # A hold the ledger placed and never released holds, whatever the catalog's holds row says.
    held = replay.held_in_ledger(archive.catalog, [st.segment for st in statuses if not st.purged])
    for st in statuses:
        if st.purged:
            continue  # its tombstone is in the ledger: only the object's removal may be left to do
        # Each refusal is logged and ledgered like an access refusal (Art. 22): who tried to destroy what.
        if st.holds:
            raise refuse(
                archive,
                request_id,
                "purge",
                st.segment,
                f"segment {st.segment} is under hold {st.holds}: nothing overrides a hold",
            )
        if st.segment in held:
            raise refuse(archive, request_id, "purge", st.segment, _released_in_catalog_only(archive, st, held))
        if st.keep_until is None:
            raise refuse(
                archive,
                request_id,
                "purge",
                st.segment,
                f"segment {st.segment} is kept for ever ({'; '.join(st.reasons[1:])})",
            )
        if at < st.keep_until:
            raise refuse(
                archive,
                request_id,
                "purge",
                st.segment,
                f"segment {st.segment} is not due until {rfc3339(st.keep_until)}",
            )
    grant_for(archive, request_id, segments, "purge", "purge")
    person = current_person(archive)
    now = time.time_ns()
    rows = archive.catalog.segments.purge_facts(segments)
    purged = []
    for seg, sha, was_purged in rows:
        if was_purged is None:
            with archive.transaction() as tx:  # the tombstone is made from the entry (catalog.replay)
                replay.record(
                    tx,
                    {"type": "purge", "segment": seg, "sha256": sha, "request": request_id, "by": person, "time": now},
                )
            purged.append(seg)
    if purged:
        archive.checkpoint()  # phase 1 is signed before phase 2 removes anything
    finished = _finish(archive, person, "purge", request_id)
    return PurgeResult(
        request_id,
        purged,
        sorted(set(finished) - set(purged)),
        [seg for seg, _, was_purged in rows if was_purged is not None and seg not in finished],
    )


def _released_in_catalog_only(archive: Archive, st: RetentionStatus, held: dict[int, list[int]]) -> str:
    """Why a recording the catalog shows as not held is still held: holds the ledger placed and never released
    (:func:`custodes.catalog.replay.held_in_ledger`); a release written into catalog.sqlite is no approver's act."""
    ids = held[st.segment]
    rows = replay.unproven(archive.catalog, "holds", [h for h in ids if h > 0]) or [
        f"holds row {h} is not released in the ledger" for h in ids if h > 0
    ]
    rows += [f"the hold of ledger entry {-h} names no hold id, so no release matches it" for h in ids if h < 0]
    return not_in_ledger(archive, f"segment {st.segment} is under a hold in the ledger: {'; '.join(rows)}")


def resume_purge(archive: Archive) -> PurgeResult:
    """Finish every purge that was stopped after its tombstone (``purge_incomplete``), without a request:
    the tombstone in the signed ledger is the lawful decision, and the request that made it may have
    expired since. Custodians and approvers only; a refusal is logged like any other."""
    finished = _finish(archive, require_role(archive, ("custodian", "approver"), "purge_resume"), "purge_resume")
    return PurgeResult(None, [], finished, [])


def _purge_copy(store: ObjectStore, sha256: str) -> bool:
    """Remove an object's bytes from one copy; whether they were there."""
    if store.stat(sha256) is None:
        return False
    store.purge(sha256)
    return True


#: A purge of many objects signs what it recorded at least this often: another command waits only
#: OTHERS_SIGN_WITHIN_S for entries no checkpoint covers before it takes them for another hand's (a hostile review:
#: a long purge stopped every other command).
SIGN_EVERY_S = 1.0


def _finish(archive: Archive, person: str, action: str, request: int | None = None) -> list[int]:
    """Phase 2 of every tombstoned object whose completion is not in the ledger: remove its bytes (when
    still stored), then append its ``purge_done`` entry, one object at a time, so a run stopped part way
    leaves each object either finished and recorded or still to do. Returns the segments finished.

    Nothing is removed unless every tombstone to finish is the ledger's own (its ``purge`` entries: digest,
    segments, request) and the catalog's schema is custodes' own (the ``purge_done`` entries could not be
    written otherwise, and removed bytes cannot be put back): a refusal (``action``, logged) comes first."""
    archive.catalog.require_own_schema()
    tombstones = archive.catalog.retention.unfinished_tombstones()
    forged = replay.tombstones_unproven(archive.catalog, [tomb.sha256 for tomb in tombstones])
    if forged:
        raise refuse(archive, request, action, None, not_in_ledger(archive, "; ".join(forged)))
    # And each tombstone's request must be an approved purge of its recordings, as the ledger has it.
    for tomb in tombstones:
        if why := purge_unapproved(archive, tomb.request_id, json.loads(tomb.segment_ids)):
            raise refuse(archive, request, action, None, f"the tombstone of object {tomb.sha256}: {why}")
    finished = []
    signed = time.monotonic()
    for tomb in tombstones:
        if not archive.catalog.objects.due_for_removal(tomb.sha256):
            continue  # a live recording needs the bytes (not reachable through purge; never remove them)
        stored = _purge_copy(archive.store, tomb.sha256)
        segments = json.loads(tomb.segment_ids)
        entry = {
            "type": "purge_done",
            "sha256": tomb.sha256,
            "segments": segments,
            "request": tomb.request_id,
            "removed": stored,  # False: the bytes were gone already (a run stopped before recording this)
            "by": person,
            "time": time.time_ns(),
        }
        if archive.replica is not None:
            # The second copy goes too (a hostile review: it stayed, and verify called the purged object's
            # bytes back in the store). A run stopped between the two finds the first gone and this one left.
            entry["removed_second_copy"] = _purge_copy(archive.replica, tomb.sha256)
        with archive.transaction() as tx:
            replay.record(tx, entry)
        finished += segments
        if time.monotonic() - signed >= SIGN_EVERY_S:
            archive.checkpoint()  # others wait only seconds for what no checkpoint covers (Archive.checkpoint)
            signed = time.monotonic()
    if finished:
        archive.checkpoint()
        # A bag exported for download on the review page is a copy of the footage: one holding a purged
        # recording goes with it, not at the next export or download that sweeps ARCHIVE/exports/.
        sweep_exports(archive)
    return sorted(finished)
