"""Access to recordings (Art. 22, 24): request, approval, access, all logged.

People and roles come from the policy's ``[people]`` table (operating-system
user = role: ``custodian``, ``approver``, ``viewer``, ``auditor``); identity
is the operating-system user, unless ``[identity]`` maps it to another name.
There is no password system: the operating system already authenticated the
person. A request names recordings, a reason and a purpose (``view``,
``export``, ``purge``); an approver other than the requester approves it for a
window or denies it; access outside an approved, unexpired request, to a
recording it does not name, or to a classified recording without a role that
may see it, is refused. Every step, refusals included, is an access-log row
and a ledger entry.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from custodes._durable import fsync_file
from custodes._faults import write_cut_short
from custodes.archive import (
    Archive,
    CheckpointFileError,
    NotReadyToRecord,
    Policy,
    open_archive,
    refuse_inside_archive,
    refuse_links,
)
from custodes.catalog import Catalog, SchemaDiffersError, replay
from custodes.catalog.custody import AccessRow
from custodes.defaults import given_reason, ns_add, ns_from_seconds
from custodes.errors import CustodesError, UnknownRecordError
from custodes.findings import rfc3339
from custodes.identity import current_caller
from custodes.storage import copy_object

__all__ = [
    "NOT_BY_TOKEN",
    "REFUSAL_COUNT",
    "ROLES",
    "UNSIGNED_GRANT",
    "AccessDenied",
    "AccessRequest",
    "AccessRequestJSON",
    "RefusalNotLogged",
    "approve",
    "classify",
    "current_person",
    "deny",
    "grant_for",
    "log_step",
    "open_recording",
    "person_role",
    "refuse_token_decision",
    "request_access",
    "requests",
]

ROLES = ("custodian", "approver", "viewer", "auditor")
PURPOSES = ("view", "export", "purge")


class AccessDenied(CustodesError, PermissionError):
    """An access the rules refuse; the refusal itself is logged."""

    kind = "unapproved_access"


class AccessRequestJSON(TypedDict):
    """An access request as ``custodes access request|approve|deny --json`` prints it and the HTTP API returns it
    (one schema): times RFC 3339 UTC, None while pending or after a denial."""

    id: int
    requester: str
    segments: list[int]
    reason: str
    purpose: str
    status: str
    decided_by: str | None
    valid_from: str | None
    valid_until: str | None


@dataclass(frozen=True)
class AccessRequest:
    id: int
    requester: str
    segments: tuple[int, ...]
    reason: str
    purpose: str
    status: str  # pending, approved, denied
    decided_by: str | None
    valid_from: int | None
    valid_until: int | None

    def to_json(self) -> AccessRequestJSON:
        return {
            "id": self.id,
            "requester": self.requester,
            "segments": list(self.segments),
            "reason": self.reason,
            "purpose": self.purpose,
            "status": self.status,
            "decided_by": self.decided_by,
            "valid_from": rfc3339(self.valid_from),
            "valid_until": rfc3339(self.valid_until),
        }


def identities(policy: Policy) -> dict[str, str]:
    """The policy's ``[identity]`` table: account -> the name the records give it."""
    mapping = policy.extra.get("identity", {})
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


#: How the records name an account whose own login name ``[identity]`` gives another account: ``account:zoe``.
#: No person is named so (the policy loader refuses the prefix in [people] and [identity]), so it has no role.
UNNAMED = "account:"


def name_holder(policy: Policy, account: str) -> str | None:
    """The account ``policy``'s ``[identity]`` gives ``account``'s login name to, when ``account`` has no entry of
    its own there: then ``account`` is not that person (None otherwise)."""
    mapping = identities(policy)
    if account in mapping:
        return None
    return next((a for a, n in sorted(mapping.items()) if n == account), None)


def person_of(policy: Policy, account: str) -> str:
    """The name ``policy`` gives ``account`` in the records: its ``[identity]`` name, else the account's own,
    unless [identity] gives that name to another account. A name belongs to one account: with ``zed = "zoe"``,
    a ``zoe`` account made later is not the person zoe (nor has her role), but ``account:zoe``."""
    if name_holder(policy, account) is not None:
        return UNNAMED + account
    return identities(policy).get(account, account)


def accounts_named(policy: Policy, name: str) -> set[str]:
    """The accounts ``policy`` gives the name ``name`` (see :func:`person_of`)."""
    candidates = {*identities(policy), name, name.removeprefix(UNNAMED)}
    return {a for a in candidates if person_of(policy, a) == name}


def no_role(archive: Archive, person: str) -> str:
    """Why ``person`` has no role, as a refusal says it."""
    why = f"{person} has no role in this archive's policy"
    own = person.removeprefix(UNNAMED)
    holder = name_holder(archive.policy, own) if own != person else None
    return (
        why
        if holder is None
        else f"{why}: [identity] gives the name {own} to account {holder}, and a name belongs to one account"
    )


def current_person(archive: Archive) -> str:
    """The person acting, as the records name them: the account the kernel vouches for (see
    :mod:`custodes.identity`; never ``LOGNAME``), renamed by the policy's ``[identity]`` table if it says so."""
    return person_of(archive.policy, current_caller().account)


def requester_accounts(archive: Archive, request_id: int, requester: str) -> set[str]:
    """The account that made request ``request_id``, as its entry records it; for an entry from before entries
    recorded the account, every account the policy in force gives the requester's name."""
    for _index, data in archive.catalog.ledger.of_type("access_request"):
        e = json.loads(data)
        if e.get("request") == request_id and e.get("ok") and isinstance(e.get("account"), str):
            return {e["account"]}
    return accounts_named(archive.policy, requester)


def person_role(archive: Archive, person: str) -> str | None:
    people = archive.policy.extra.get("people", {})
    role = people.get(person) if isinstance(people, dict) else None
    return role if role in ROLES else None


def _classified_roles(archive: Archive) -> set[str]:
    roles = archive.policy.extra.get("access", {}).get("classified_roles", ["approver"])
    return set(roles)


def _window_hours(archive: Archive) -> float:
    return float(archive.policy.extra.get("access", {}).get("window_hours", 72))


def _max_window_hours(archive: Archive) -> float:
    """The longest approval window an approver may open (``[access] max_window_hours``, default 30 days): an
    approval is for a review, not a standing licence to the footage."""
    return float(archive.policy.extra.get("access", {}).get("max_window_hours", 720))


def _log(
    catalog: Catalog,
    request: int | None,
    person: str,
    action: str,
    segment: int | None,
    ok: bool,
    detail: str,
    now: int,
    **facts: Any,
) -> int:
    """Ledger one step and make its rows from the entry (catalog.replay): its access-log row, and what a
    granted step records beyond it (``facts``: a request's segments, reason and purpose; a decision's window;
    a classification's level)."""
    return replay.record(catalog, _step(request, person, action, segment, ok, detail, now) | facts)


def _step(
    request: int | None, person: str, action: str, segment: int | None, ok: bool, detail: str, now: int | None
) -> dict[str, Any]:
    """The ledger entry of one access step by the current caller (``now`` None: stamped when recorded)."""
    return {
        "type": f"access_{action}",
        "request": request,
        "person": person,
        "segment": segment,
        "ok": ok,
        "detail": detail,
        "time": now,
        # The account as well as the name: a name is the policy's to give, the account is the kernel's, and
        # self-approval and the names rule (custodes.policy) compare accounts.
        "account": current_caller().account,
    }


#: Other workflows' steps (a policy proposal and its decision) are logged the same way; returns the entry's index.
log_step = _log


class RefusalNotLogged(SchemaDiffersError):
    """A refusal that could not be logged: the catalog's schema is not the one custodes makes, so custodes writes
    nothing into it, the refusal's own entry included. Not an :class:`AccessDenied` (which is logged): an
    environment error, whose message says both and the way out (:func:`_rebuild_way_out`)."""

    def __init__(self, why: str, cause: SchemaDiffersError, way_out: str) -> None:
        self.path, self.differences, self.what = cause.path, cause.differences, cause.what
        CustodesError.__init__(self, f"refused: {why}; and this refusal is not logged either: {cause.what}. {way_out}")


class RefusalNotRecorded(NotReadyToRecord):
    """A refusal that could not be recorded, the archive not ready to record any act
    (:meth:`custodes.archive.Archive.ready_to_record`): the refusal said first, then why it is not recorded (a
    hostile review: only the broken place's "nothing was recorded" was said, and the refused person never
    learnt of the refusal)."""

    def __init__(self, why: str, cause: NotReadyToRecord) -> None:
        super().__init__(f"refused: {why}; and this refusal could not be recorded either: {cause}")


def _rebuild_way_out(archive: Archive) -> str:
    """Who may take the way out of a catalog custodes writes nothing into (``custodes ledger rebuild-catalog
    --replace``): the policy's custodians, and the archive's owner while it names no approver
    (custodes.policy.owner_alone); said to a caller who may not, so that they know whom to ask."""
    from custodes.policy import owner_account

    people = archive.policy.extra.get("people", {})
    roles = people if isinstance(people, dict) else {}
    who = [f"custodian {p}" for p, r in sorted(roles.items()) if r == "custodian"]
    if "approver" not in roles.values():
        who.append(f"the archive's owner (account {owner_account(archive)})")
    listed = "`custodes verify` lists every difference"
    if not who:
        return (
            f"{listed}; this policy names no custodian, and no one may run `custodes ledger rebuild-catalog "
            "--replace`: the archive's owner can remove each difference by hand (sqlite3)"
        )
    return (
        f"{listed}; `custodes ledger rebuild-catalog --replace`, which {' or '.join(who)} may run, makes the "
        "catalog again from the ledger"
    )


def _refuse(
    archive: Archive, request: int | None, person: str, action: str, segment: int | None, why: str
) -> AccessDenied:
    try:
        with archive.transaction() as tx:
            _log(tx, request, person, action, segment, False, why, time.time_ns())
    except SchemaDiffersError as e:
        raise RefusalNotLogged(why, e, _rebuild_way_out(archive)) from None
    except NotReadyToRecord as e:
        raise RefusalNotRecorded(why, e) from None
    return AccessDenied(why + _signed(archive))


def _signed(archive: Archive) -> str:
    """The checkpoint over a refusal just recorded: "" once signed and written; else what went wrong, said after
    the refusal (a second hostile review: the checkpoint's "what this command recorded stands" was all that was
    said, exit 2, and the operator took the refused hold for placed)."""
    try:
        archive.checkpoint()
    except CheckpointFileError as e:
        return f" (this refusal is recorded; its checkpoint is not: {e})"
    return ""


#: Why a caller that came with an API token (``via="token"``) may not decide. A token is handed to a program; it
#: proves no person is there, and a custodian issues tokens for any account: an approver's token in a custodian's
#: hands would make the second person of every decision the custodian again.
NOT_BY_TOKEN = "decisions are made by a person logged in, not by a token"


def refuse_token_decision(archive: Archive, request: int | None, person: str, action: str) -> None:
    """Refuse (logged, like every refusal) a decision by an API token: approving or denying an access request
    or a policy proposal. The one place of that rule; a token may still read and ask."""
    if current_caller().via == "token":
        raise _refuse(archive, request, person, action, None, NOT_BY_TOKEN)


def require_role(
    archive: Archive, roles: tuple[str, ...], action: str, segment: int | None = None, request: int | None = None
) -> str:
    """The current person, if their role is one of ``roles``; otherwise the refusal is logged (an access-log
    row and a ledger entry, like every refusal) and raised. Every act on the archive's records goes through
    this or :func:`grant_for`."""
    person = current_person(archive)
    if person_role(archive, person) not in roles:
        why = f"{person} may not {action} (needs {' or '.join(roles)})"
        if person.startswith(UNNAMED):  # the embedded owner, whose login name [identity] gives another account
            why += f"; {no_role(archive, person)}"
        raise _refuse(archive, request, person, action, segment, why)
    return person


#: What a caller of the archive service needs for a command beyond having a role (the default): ingesting
#: adds evidence, which only a custodian does for others; the embedded owner is the station itself.
SERVED_ROLES: dict[str, tuple[str, ...]] = {
    "ingest": ("custodian",),
    # The service writes to the witness folder and signs checkpoints with the archive's key: custodial acts.
    "ledger publish": ("custodian",),
    "ledger checkpoint": ("custodian", "approver"),
}


def require_role_to_serve(archive: Archive, command: str) -> str:
    """The gate of the archive service: the caller has a role in the policy (else the refusal is logged,
    even for a command that only reads: a report or a verification shows what the catalog holds, within the
    limit of :func:`_refuse_without_role`), and the role :data:`SERVED_ROLES` asks for the command. Every
    request through the gate first ledgers the counts of refusal windows that have closed."""
    person = current_person(archive)
    action = command.replace(" ", "_")
    if person_role(archive, person) is None:
        raise _refuse_without_role(archive, person, action)
    _close_refusal_windows(archive)
    roles = SERVED_ROLES.get(command)
    return person if roles is None else require_role(archive, roles, action)


#: The access-log action (entry ``access_refusal_count``) of refusals counted beyond the limit in one window.
REFUSAL_COUNT = "refusal_count"


def _refusal_limits(archive: Archive) -> tuple[int, int]:
    """([access] refusals_per_window, default 10; [access] refusal_window_seconds in ns, default one hour)."""
    access = archive.policy.extra.get("access", {})
    seconds = access.get("refusal_window_seconds", 3600)
    return int(access.get("refusals_per_window", 10)), ns_from_seconds(seconds, "[access] refusal_window_seconds")


def _refuse_without_role(archive: Archive, person: str, action: str) -> AccessDenied:
    """Refuse a request from an account with no role, without letting such requests grow the ledger at will.

    Every local account can reach the service, and a refusal ledgered one by one is an entry, an access-log
    row and a signed checkpoint, each kept for ever: a loop of ``custodes report`` by anyone would grow the
    archive without bound. Yet the regulation wants every refused attempt on record. So, per account, a window
    opens at its first refusal and lasts ``[access] refusal_window_seconds`` (default 3600); the first
    ``refusals_per_window`` (default 10) refusals in it are ledgered one by one, as every other refusal; any
    further one is answered at once and only counted (with its command, first and last time) in the catalog's
    ``refusal_windows`` table, in its own transaction, before the answer goes out. When the window has closed,
    the next request through the gate, by anyone, ledgers the count as one ``access_refusal_count`` entry
    (one access-log row: "N further refused requests from ACCOUNT between T1 and T2") and ends the window, in
    one transaction. So an account adds at most ``refusals_per_window + 1`` entries per window, and every
    refusal is in the ledger, one by one or in a count, once its window has closed and the service answered
    one more request. The count is never only in memory: a crash or restart of the service loses nothing
    counted (a refusal whose count did not commit was not answered either), and the count is ledgered
    exactly once (entry and end of window commit together). Counts of a window still open are not yet in the
    ledger, so not in a report; an archive whose service never runs again keeps them in the table.
    People with a role are not limited: their refusals name the request and the recording they tried, each a
    fact of its own, and they are accountable for every one."""
    why = no_role(archive, person)
    limit, window = _refusal_limits(archive)
    now = time.time_ns()
    try:
        with archive.transaction() as tx:
            closed = _ledger_closed_windows(tx, now, limit, window)
            current = tx.refusals.get(person) or tx.refusals.start(person, now)
            one_by_one = current.logged < limit
            if one_by_one:
                tx.refusals.note_logged(person)
                _log(tx, None, person, action, None, False, why, now)
            else:
                tx.refusals.note_counted(current, action, now)
    except SchemaDiffersError as e:
        raise RefusalNotLogged(why, e, _rebuild_way_out(archive)) from None
    except NotReadyToRecord as e:  # (the refusal first: the archive's trouble was said alone, as if it were all)
        raise RefusalNotRecorded(why, e) from None
    signed = _signed(archive) if one_by_one or closed else ""
    if one_by_one:
        return AccessDenied(why + signed)
    return AccessDenied(
        f"{why}; its refusals past {limit} since {rfc3339(current.started_ns)} are counted, and the count is "
        f"ledgered after {rfc3339(current.started_ns + window)}{signed}"
    )


def _close_refusal_windows(archive: Archive) -> None:
    """Ledger the count of every refusal window that has closed (one read when none has)."""
    limit, window = _refusal_limits(archive)
    now = time.time_ns()
    if not archive.catalog.refusals.started_by(now - window):
        return
    try:
        with archive.transaction() as tx:
            closed = _ledger_closed_windows(tx, now, limit, window)
    except NotReadyToRecord:
        # The counts stay in the catalog for a later request; an auditor's read is not refused for them (a
        # review: with tmp/ broken, every request through the service failed on this housekeeping).
        return
    if closed:
        archive.checkpoint_going_on()  # not the command's act: its failure must not speak for it


def _ledger_closed_windows(tx: Catalog, now: int, limit: int, window: int) -> int:
    """In ``tx``: one ``access_refusal_count`` entry for each closed window that counted refusals, and every
    closed window ended; returns how many entries were appended."""
    appended = 0
    for w in tx.refusals.started_by(now - window):
        if w.counted:
            actions = json.loads(w.actions)
            tally = ", ".join(f"{a} {n}" for a, n in sorted(actions.items()))
            detail = (
                f"{w.counted} further refused requests from {w.person} between {rfc3339(w.first_ns)} and "
                f"{rfc3339(w.last_ns)} ({tally}): past the {limit} ledgered one by one in the window from "
                f"{rfc3339(w.started_ns)}, counted"
            )
            facts = {"count": w.counted, "first": w.first_ns, "last": w.last_ns, "actions": actions}
            _log(tx, None, w.person, REFUSAL_COUNT, None, False, detail, now, window_start=w.started_ns, **facts)
            appended += 1
        tx.refusals.end(w.person)
    return appended


def refuse(archive: Archive, request: int | None, action: str, segment: int | None, why: str) -> AccessDenied:
    """Log and ledger a refusal of ``action`` by the current person; returns the error to raise."""
    return _refuse(archive, request, current_person(archive), action, segment, why)


def _load(archive: Archive, request_id: int) -> AccessRequest:
    row = archive.catalog.access.get(request_id)
    if row is None:
        raise UnknownRecordError(f"no access request {request_id}")
    return _request(row)


#: The roles that see every access request (to decide on them, or to audit them); a viewer sees their own.
SEE_ALL_REQUESTS = ("approver", "custodian", "auditor")


def requests(archive: Archive, *, seen_by: str | None = None) -> list[AccessRequest]:
    """The archive's access requests, by id. With ``seen_by`` (a person), only those that person may see: every
    request for the roles of :data:`SEE_ALL_REQUESTS`, their own for anyone else (a request's reason and the
    recordings it names are not for every viewer to read). The page, the API and the dashboard all list so."""
    listed = sorted((_request(row) for row in archive.catalog.access.all()), key=lambda r: r.id)
    if seen_by is None or person_role(archive, seen_by) in SEE_ALL_REQUESTS:
        return listed
    return [r for r in listed if r.requester == seen_by]


def _request(row: AccessRow) -> AccessRequest:
    return AccessRequest(
        row.id,
        row.requester,
        tuple(json.loads(row.segments)),
        row.reason,
        row.purpose,
        row.status,
        row.decided_by,
        row.valid_from_ns,
        row.valid_until_ns,
    )


def request_access(archive: Archive, segments: list[int], reason: str, purpose: str = "view") -> AccessRequest:
    person = current_person(archive)
    if purpose not in PURPOSES:
        raise CustodesError(f"purpose must be one of {', '.join(PURPOSES)}")
    given_reason(reason, "a request")
    segments = list(dict.fromkeys(segments))  # one recording named twice is asked for once (it was stored [1, 1])
    if person_role(archive, person) is None:
        raise _refuse(archive, None, person, "request", None, no_role(archive, person))
    known = archive.catalog.segments.existing(segments)
    if not segments or known != set(segments):
        raise UnknownRecordError(f"no such segment(s): {sorted(set(segments) - known)}")
    now = time.time_ns()
    with archive.transaction() as tx:
        rid = replay.next_id(tx, "access_requests")
        facts = {"segments": sorted(segments), "reason": reason, "purpose": purpose}
        _log(tx, rid, person, "request", None, True, f"{purpose}: {reason}", now, **facts)
    archive.checkpoint()
    return _load(archive, rid)


def _decide(archive: Archive, request_id: int, approve_it: bool, hours: float | None, why: str) -> AccessRequest:
    person = current_person(archive)
    req = _load(archive, request_id)
    action = "approve" if approve_it else "deny"
    if person_role(archive, person) != "approver":
        raise _refuse(archive, request_id, person, action, None, f"{person} is not an approver")
    if person == req.requester or current_caller().account in requester_accounts(archive, request_id, req.requester):
        # Names and accounts: another name in [identity] does not make the same account a second person.
        raise _refuse(archive, request_id, person, action, None, "nobody approves their own request")
    refuse_token_decision(archive, request_id, person, action)
    if current_caller().via == "process":
        # The embedded CLI acts as one account, the archive's owner: it cannot be the second person.
        raise _refuse(
            archive,
            request_id,
            person,
            action,
            None,
            "a decision needs a second person: run it through the archive service (`custodes serve`), "
            "where each person acts as their own account",
        )
    if not approve_it:
        given_reason(why, "a denial")
    if req.status != "pending":
        raise CustodesError(f"request {request_id} is already {req.status}")
    now = time.time_ns()
    until = None
    if approve_it:
        window = hours if hours is not None else _window_hours(archive)
        # The one int64-ns rule: --hours inf or 1e9 (or such a policy value) is refused before anything is logged.
        until = ns_add(
            now, ns_from_seconds(window * 3600, f"approval window of {window} hours"), "the approval window's end"
        )
        longest = _max_window_hours(archive)
        if window > longest:  # before anything is logged too: a mistyped --hours is an error, not an act
            given = (
                f"--hours {_hours(window)}" if hours is not None else f"the policy's window_hours = {_hours(window)}"
            )
            raise CustodesError(
                f"{given} is longer than the longest approval window the policy allows ([access] "
                f"max_window_hours = {_hours(longest)}); approve for {_hours(longest)} hours or fewer"
            )
    with archive.transaction() as tx:
        _log(tx, request_id, person, action, None, True, why, now, valid_until=until)
    archive.checkpoint()
    return _load(archive, request_id)


def _hours(value: float) -> str:
    """A number of hours as given, with every digit that tells it from another (``:g`` would show 720.0000001 as
    720, "longer than 720"), and no ``.0`` on a whole number."""
    return repr(float(value)).removesuffix(".0")


def approve(archive: Archive, request_id: int, hours: float | None = None, note: str = "") -> AccessRequest:
    return _decide(archive, request_id, True, hours, note)


def deny(archive: Archive, request_id: int, reason: str) -> AccessRequest:
    return _decide(archive, request_id, False, None, reason)


def classify(archive: Archive, segment: int, level: int) -> None:
    """Set a recording's classification (0 = none); custodians and approvers only (Art. 24)."""
    person = current_person(archive)
    if person_role(archive, person) not in ("custodian", "approver"):
        raise _refuse(archive, None, person, "classify", segment, f"{person} may not classify recordings")
    now = time.time_ns()
    with archive.transaction() as tx:
        if not tx.segments.exists(segment):
            raise CustodesError(f"no segment {segment}")
        _log(tx, None, person, "classify", segment, True, f"level {level}", now, level=level)
    archive.checkpoint()


#: What a command says of a grant it handed over whose checkpoint it could not write (Archive.unsigned).
UNSIGNED_GRANT = "the access is recorded, its checkpoint is not"


def grant_for(
    archive: Archive, request_id: int, segments: list[int], purpose: str, action: str, *, gives: bool = False
) -> AccessRequest:
    """Check that the current person may do ``purpose`` on ``segments`` under the request now.

    Success is logged as ``action``; any refusal is logged and raised. ``gives``: the caller hands over at once
    what is granted (a view, a copy, a download), which, once the grant is recorded, it does even where the
    grant's checkpoint cannot be written (Archive.checkpoint_going_on); else (an export, a purge: acts that
    follow it) that failure stops the act."""
    person = current_person(archive)
    try:
        req = _load(archive, request_id)
    except CustodesError as e:
        raise _refuse(archive, None, person, action, None, str(e)) from None
    now = time.time_ns()
    why = None
    if req.requester != person:
        why = f"request {request_id} is {req.requester}'s, not {person}'s"
    elif req.status != "approved":
        why = f"request {request_id} is {req.status}, not approved"
    elif req.purpose != purpose:
        why = f"request {request_id} was approved for {req.purpose}, not {purpose}"
    elif req.valid_until is not None and now > req.valid_until:
        why = f"request {request_id} expired at {rfc3339(req.valid_until)}"
    elif outside := sorted(set(segments) - set(req.segments)):
        why = f"segment(s) {outside} are not in request {request_id}"
    else:
        rows = archive.catalog.segments.access_facts(segments)
        classified = [i for i, level, _ in rows if level and level > 0]
        # A purged recording's bytes are gone: refuse (and log the refusal) before any success is logged.
        # A purge request itself may name purged segments: retention.purge finishes or reports them.
        purged = [(i, p) for i, _, p in rows if p is not None]
        if purged and purpose != "purge":
            why = "; ".join(
                f"segment {i} was purged at {rfc3339(p)} (its tombstone is in the ledger)" for i, p in purged
            )
        elif classified and person_role(archive, person) not in _classified_roles(archive):
            why = f"segment(s) {classified} are classified and {person}'s role may not see them"
        else:
            why = request_unproven(archive, req)
    if why is not None:
        raise _refuse(archive, request_id, person, action, segments[0] if len(segments) == 1 else None, why)
    with archive.transaction() as tx:
        for s in segments:
            _log(tx, request_id, person, action, s, True, req.reason, now)
    if gives:
        archive.checkpoint_going_on()
    else:
        archive.checkpoint()
    return req


def request_unproven(archive: Archive, req: AccessRequest) -> str | None:
    """Why the catalog's row of an approved request is not enough to act on, or None: the ledger must make the
    very row (its request, and an approval by a person other than the requester, for that purpose, those
    recordings and that window), since anyone who can write catalog.sqlite can write an approval into it.
    The one check of every act under a request (:func:`grant_for`): export, purge, open, stream, download."""
    why = replay.unproven(archive.catalog, "access_requests", [req.id])
    if not why and req.decided_by == req.requester:
        why = [f"access_requests row {req.id} was approved by its own requester {req.requester}"]
    return not_in_ledger(archive, "; ".join(why)) if why else None


def purge_unapproved(archive: Archive, request_id: int, segments: list[int]) -> str | None:
    """Why request ``request_id`` does not authorise the purge of ``segments`` (a tombstone's, when the removal of
    its bytes is finished later), or None: a purge request, approved by a person other than its requester as the
    ledger records it, naming them. Its window is not asked again: it was asked when the tombstone
    was written. A purge entry forged into the ledger table named a pending export request (a hostile review)."""
    try:
        req = _load(archive, request_id)
    except CustodesError as e:
        return str(e)
    if req.purpose != "purge" or req.status != "approved":
        return f"request {request_id} is a {req.status} request for {req.purpose}, not an approved purge"
    # One of them at least: an object several recordings share has one tombstone, whose segments may come from
    # several purge requests; each recording's own purge entry is checked by replay.tombstones_unproven.
    if not set(segments) & set(req.segments):
        return f"none of segment(s) {sorted(segments)} is in purge request {request_id}"
    return request_unproven(archive, req)


def not_in_ledger(archive: Archive, why: str) -> str:
    """A refusal of an act on a catalog row the ledger does not prove (``why`` names the row), with the way on:
    what differs, and the catalog made from the ledger again."""
    return (
        f"{why}; nothing was done. The catalog is a view of the ledger: `custodes verify {archive.root}` shows what "
        f"differs, and `custodes ledger rebuild-catalog {archive.root} --replace` makes the catalog from the ledger"
    )


def open_recording(archive: Archive, request_id: int, segment: int, to: str | os.PathLike[str] | None = None) -> Path:
    """Open one recording under an approved, unexpired view request (logged as ``open``).

    Without ``to``: the stored object's path (read-only). With ``to``: a
    read-only copy in that folder, checked against the archive's SHA-256 and
    fsynced before it takes its name, which never replaces a file already
    there. The folder is checked before the access is logged; a copy that
    fails (a full disk, a read-only folder) leaves nothing behind and is
    logged as ``open_failed`` after the granted ``open``."""
    folder = None if to is None else refuse_links(refuse_inside_archive(archive, to, "--to"), "--to")
    if folder is not None:  # checked without creating anything: a refused open leaves no trace outside the log
        existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise CustodesError(f"--to {folder}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise CustodesError(f"--to {folder}: {existing} is not writable")
    local_file = getattr(archive.store, "local_file", None)  # only a store that keeps objects as local files
    if folder is None and local_file is None:
        raise CustodesError(
            f"this archive's objects are stored in {archive.store.describe()}, not in local files: open the "
            "recording with --to FOLDER for a checked copy"
        )
    grant_for(archive, request_id, [segment], "view", "open", gives=True)
    recorded = archive.catalog.segments.name_and_object(segment)
    assert recorded is not None  # grant_for refused a segment not in the request, and requests name known ones
    name, sha = recorded
    if folder is None:
        local = None if local_file is None else local_file(sha)
        if local is None:
            raise CustodesError(f"recording {segment}'s object is not in the store; run `custodes verify`")
        return local
    target = folder / os.path.basename(name)
    temp = folder / f".{os.path.basename(name)[-40:]}.{os.getpid()}-{os.urandom(4).hex()}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        copied = write_cut_short(temp, functools.partial(copy_object, archive.store, sha, temp))
        if copied["sha256"] != sha:
            raise CustodesError(
                f"{archive.store.describe(sha)}: the stored object does not match its digest; run `custodes verify`"
            )
        os.chmod(temp, 0o400)  # read-only, and not for other accounts to read
        fsync_file(temp)
        try:
            os.link(temp, target)  # never replaces: an existing file of that name is left alone
        except FileExistsError:
            raise CustodesError(
                f"--to {target}: a file of that name is already there; open into another folder"
            ) from None
    except (OSError, CustodesError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        with archive.transaction() as tx:
            _log(
                tx,
                request_id,
                current_person(archive),
                "open_failed",
                segment,
                False,
                f"copy to {folder} failed: {why}",
                time.time_ns(),
            )
        archive.checkpoint()
        raise CustodesError(f"--to {target}: the copy failed ({why}); nothing was left there") from None
    finally:
        temp.unlink(missing_ok=True)
    if_undelivered(_step(request_id, current_person(archive), "open_failed", segment, False, "", None), "detail")
    return target


def if_undelivered(entry: dict[str, Any], why_field: str) -> None:
    """Through the archive service, a copy the command made still has to reach the caller, whose CLI writes
    it: if it does not (the caller says so, hangs up, or the service dies first), ``entry`` is ledgered with
    the reason in ``why_field`` (see :func:`record_undelivered`), so the log never says a copy was handed over
    that never arrived. The service keeps the entry in the request's outbox, where the next service finds it
    after a crash (custodes.service)."""
    from custodes.service import request

    serving = request()
    if serving is not None:
        serving.on_undelivered(entry, why_field)


#: The access-log action of a copy that left the service but whose receipt the caller's CLI did not confirm.
UNCONFIRMED = "delivery_unconfirmed"


def record_undelivered(
    root: Path, notes: list[tuple[str, dict[str, Any], str]], why: str, *, sent: bool = False
) -> None:
    """Ledger what became of copies whose delivery the caller's CLI did not confirm, in one transaction, then
    sign. ``notes``: (delivery id, the entry the command asked for, its field for the reason).

    Not ``sent`` (no byte left the service): each note's own entry, the command's rule for a copy that never
    arrived (``open_failed``, ``export_failed``), with ``why``. ``sent``: the service cannot know what the
    caller kept (its CLI could keep every byte and still say it failed), so the copy stays handed over and an
    ``access_delivery_unconfirmed`` step says what the caller's CLI reported. A note already ledgered (its
    delivery id is in an entry of that type: a service that died after recording it) is not ledgered again."""
    if not notes:
        return
    with open_archive(root) as archive:
        with archive.transaction() as tx:
            now = time.time_ns()
            for delivery, entry, field in notes:
                made = _unconfirmed_step(entry, why, now) if sent else entry | {field: why, "time": now}
                kind = str(made["type"])
                if all(json.loads(data).get("delivery") != delivery for _i, data in tx.ledger.of_type(kind)):
                    replay.record(tx, made | {"delivery": delivery})
        archive.checkpoint()


def _unconfirmed_step(entry: dict[str, Any], said: str, now: int) -> dict[str, Any]:
    """The access step of a copy sent but not confirmed, from the entry its command noted: same request, person
    and recording (an export's: every recording of the bag)."""
    what = "the bag" if entry.get("type") == "export_failed" else "the copy"
    detail = f"{what} was sent; the caller's CLI did not confirm it wrote it: {said[:500]}"
    step = _step(
        entry.get("request"), str(entry.get("person") or entry.get("by")), UNCONFIRMED, None, True, detail, now
    )
    step["account"] = entry.get("account", step["account"])  # the caller's, though a later service records it
    return step | {"segment": entry.get("segment"), "segments": entry.get("segments")}
