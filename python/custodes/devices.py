"""The device registry (Art. 6) and who holds which device when (Art. 9, 25).

The bureau equips units with registered devices, and whoever uses a device is responsible for it. The
**registry** holds each device: id, kind (:data:`KINDS`), vendor, model, serial, unit, and its status
(:data:`STATUSES`) with the time that status began (its history is kept). An **assignment** says which officer
held a device from when to when (no end: still holds it); one device's assignments never overlap.

Every registry change and assignment is a ledger entry (``device``, ``device_assign``) replayed into the
catalog; imports (:func:`load_devices`, :func:`load_assignments`) are all or nothing, every bad row named, and
importing the same data again writes nothing.

What a recording gets from the registry is **derived when it is read** (a report, :func:`device_findings`), not
recorded at ingest: an assignment or a status imported after the footage must count. A recording's
**responsible officer** is the assignee of its device at its time (its start, clock-corrected where known;
its ingest when the device's clock was unset). Once the registry is in use (one device registered), each
recording of the period gets at most one finding:

- ``unregistered_device``: its device is not in the registry, or was not yet: the recording is from before the
  device's first status (its registration);
- ``lost_device`` / ``retired_device``: its device had that status at the recording's time;
- ``unassigned_device``: its device was assigned to nobody at that time;
- ``device_lent``: its file name (else its device's identity) names an officer other than the assignee.

An archive with no registered device gets none of these: it reads as before.

Refused, naming the row: a status dated beyond now (more than :data:`FUTURE_SLACK_NS`), a status other than the
first dated before the device's registration (its first status; the first one given again earlier moves the
registration back), an assignment starting before its device's registration or while it is lost or retired, and
an assignment given to another officer with the start of a recorded one. That last is a **correction**, an
explicit act (``replace=True``, ``device assign --replace``): its ledger entry names the officer it replaces, and
:func:`show_device` lists it with the recordings already ingested whose responsible officer it changed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from custodes.access import require_role
from custodes.archive import Archive
from custodes.catalog import Scope, replay
from custodes.catalog.registry import AssignmentRow, RegistryRow, SegmentDeviceFacts
from custodes.drivers import IDENTITY_KINDS
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339
from custodes.tasks import parse_time, read_records

__all__ = [
    "Assignment",
    "DeviceError",
    "FINDING_KINDS",
    "FUTURE_SLACK_NS",
    "KINDS",
    "RegisteredDevice",
    "STATUSES",
    "assign_devices",
    "corrections",
    "device_findings",
    "import_assignments",
    "load_assignments",
    "load_devices",
    "parse_assignments",
    "parse_devices",
    "register_devices",
    "registered",
    "set_status",
    "show_device",
    "update_device",
]

#: The kinds of device the regulation names, spelt as drivers report them.
KINDS = IDENTITY_KINDS
#: A device's status; each begins at a time, kept in its history.
STATUSES = ("in_service", "in_repair", "lost", "retired")
#: The findings the registry gives a recording (see the module's text), the first that applies.
FINDING_KINDS = ("unregistered_device", "lost_device", "retired_device", "unassigned_device", "device_lent")
#: Who may register devices and assign them: the custodian (a refusal is logged, as for every workflow).
REGISTRARS = ("custodian",)
#: The fields of a device in an import file, and the ones a row may leave out (status: in_service; since: now).
_FIELDS = ("id", "kind", "vendor", "model", "serial", "unit", "status", "since")
#: The fields of an assignment in an import file (``to`` may be empty: still held).
_ASSIGNMENT_FIELDS = ("device", "officer", "from", "to")
#: How far beyond now a status, an assignment's start or a check may be dated (a station clock a little ahead);
#: later is a typing error (2099), refused.
FUTURE_SLACK_NS = 300 * 1_000_000_000
#: The longest device or officer id accepted (ids are shown on every line of a report).
MAX_ID = 128


class DeviceError(CustodesError, ValueError):
    """A device or assignment that cannot be accepted as given (a bad row, an overlap, an unknown device)."""

    kind = "device"


@dataclass(frozen=True)
class RegisteredDevice:
    """A device of the registry; ``since`` (ns UTC) is when its ``status`` began (None: when it is recorded)."""

    id: str
    kind: str
    vendor: str = ""
    model: str = ""
    serial: str = ""
    unit: str = ""
    status: str = "in_service"
    since: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "vendor": self.vendor,
            "model": self.model,
            "serial": self.serial,
            "unit": self.unit,
            "status": self.status,
            "since": rfc3339(self.since),
        }


@dataclass(frozen=True)
class Assignment:
    """``officer`` held ``device`` from ``start`` until ``end`` (ns UTC; None: still holds it)."""

    device: str
    officer: str
    start: int
    end: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "officer": self.officer, "from": rfc3339(self.start), "to": rfc3339(self.end)}


def _text(r: Mapping[str, Any], key: str) -> str:
    value = r.get(key)
    return "" if value is None else str(value).strip()


def _unknown_fields(r: Mapping[str, Any], fields: Sequence[str], where: str) -> None:
    """Refuse a column or key the import does not know (a misspelt ``stauts`` would otherwise be dropped)."""
    unknown = sorted(repr(k) if k is not None else "(a value past the last column)" for k in r if k not in fields)
    if unknown:
        raise DeviceError(f"{where}: unknown field {', '.join(unknown)} (known: {', '.join(fields)})")


def _id(value: str, what: str, where: str) -> str:
    if len(value) > MAX_ID:
        raise DeviceError(f"{where}: {what} id of {len(value)} characters (at most {MAX_ID})")
    return value


def _device(r: Mapping[str, Any], where: str) -> RegisteredDevice:
    _unknown_fields(r, _FIELDS, where)
    since = parse_time(r["since"], where) if _text(r, "since") else None
    vendor, model, serial, unit = (_text(r, k) for k in _FIELDS[2:6])
    device = RegisteredDevice(_text(r, "id"), _text(r, "kind"), vendor, model, serial, unit, "", since)
    return _checked(replace(device, status=_text(r, "status") or "in_service"), where)


def _checked(d: RegisteredDevice, where: str) -> RegisteredDevice:
    """The device as the registry may hold it, or a DeviceError naming what is wrong: an id (text, not empty, not
    too long), a kind of :data:`KINDS`, a status of :data:`STATUSES`, text fields, a time in ns or None. Asked of
    an import's rows and of devices handed to :func:`register_devices` alike (a hostile review: through the library
    an empty id, kind "toaster" and status "stolen" were recorded for good)."""
    if not isinstance(d.id, str) or not d.id.strip():
        raise DeviceError(f"{where}: no id")
    _id(d.id, "device", where)
    if d.kind not in KINDS:
        raise DeviceError(f"{where}: device {d.id!r}: kind {d.kind!r} is not one of {', '.join(KINDS)}")
    if d.status not in STATUSES:
        raise DeviceError(f"{where}: device {d.id!r}: status {d.status!r} is not one of {', '.join(STATUSES)}")
    for name in ("vendor", "model", "serial", "unit"):
        if not isinstance(getattr(d, name), str):
            raise DeviceError(f"{where}: device {d.id!r}: {name} {getattr(d, name)!r} is not text")
    if d.since is not None and type(d.since) is not int:
        raise DeviceError(f"{where}: device {d.id!r}: since {d.since!r} is not a time (ns since 1970)")
    return d


def parse_devices(records: Iterable[Mapping[str, Any]], source: str) -> list[RegisteredDevice]:
    """Devices from records (CSV rows or JSON objects with the keys id, kind, vendor, model, serial, unit, status,
    since), every problem reported with its row (:class:`DeviceError`, nothing accepted)."""
    out: list[RegisteredDevice] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, r in enumerate(records, start=1):
        where = f"{source} row {n}"
        try:
            d = _device(r, where)
            if d.id in seen:
                raise DeviceError(f"{where}: device {d.id!r} appears twice (row {seen[d.id]})")
            seen[d.id] = n
            out.append(d)
        except DeviceError as e:
            problems.append(str(e))
    if problems:
        raise DeviceError("nothing imported:\n  " + "\n  ".join(problems))
    return out


def load_devices(path: str | os.PathLike[str]) -> list[RegisteredDevice]:
    """Devices from a CSV file (columns id,kind,vendor,model,serial,unit,status,since) or a JSON file (a list of
    objects with those keys); ``since`` is RFC 3339 with an offset."""
    return parse_devices(*read_records(path, "device", DeviceError))


def _entry(d: RegisteredDevice, since: int, by: str, now: int) -> dict[str, Any]:
    return {
        "type": "device",
        "device": d.id,
        "kind": d.kind,
        "vendor": d.vendor,
        "model": d.model,
        "serial": d.serial,
        "unit": d.unit,
        "status": d.status,
        "since": since,
        "by": by,
        "time": now,
    }


def register_devices(
    archive: Archive, devices: Sequence[RegisteredDevice], *, new: bool = False
) -> dict[str, list[str]]:
    """Record devices (all or nothing): new and changed ones get a ledger entry, identical ones are skipped. A
    device whose status is unchanged keeps the time it began unless ``since`` says another; a new status without
    ``since`` begins now. The current status is the latest in time. Refused, naming each device: a status dated
    beyond now, one dated before the device's registration (unless it is the first status again, moving the
    registration back). ``new``: refuse a device already registered (``device add``)."""
    by = require_role(archive, REGISTRARS, "device_register")
    now = time.time_ns()
    out: dict[str, list[str]] = {"imported": [], "updated": [], "unchanged": []}
    with archive.transaction() as tx:
        if new:
            known = [d.id for d in devices if tx.registry.get(d.id) is not None]
            if known:
                raise DeviceError(f"device {', '.join(known)} is registered already; change it with device update")
        entries: list[tuple[RegisteredDevice, int, RegistryRow | None]] = []
        problems: list[str] = []
        for n, d in enumerate(devices, start=1):
            try:
                _checked(d, f"device {n}")
            except DeviceError as e:
                problems.append(str(e))
                continue
            row = tx.registry.get(d.id)
            since = d.since if d.since is not None else (row.status_since_ns if row and row.status == d.status else now)
            if since > now + FUTURE_SLACK_NS:
                problems.append(f"device {d.id!r}: status {d.status} since {rfc3339(since)} is in the future")
            first = tx.registry.statuses(d.id)[:1]
            if first and since < first[0][0] and d.status != first[0][1]:
                problems.append(
                    f"device {d.id!r}: status {d.status} since {rfc3339(since)} is before its registration "
                    f"({first[0][1]} since {rfc3339(first[0][0])})"
                )
            entries.append((d, since, row))
        if problems:
            raise DeviceError("nothing recorded:\n  " + "\n  ".join(problems))
        for d, since, row in entries:
            values = RegistryRow(d.id, d.kind, d.vendor, d.model, d.serial, d.unit, d.status, since)
            statuses = tx.registry.statuses(d.id) if row is not None else []
            if row is not None and row[:6] == values[:6] and (since, d.status) in statuses:  # known already
                out["unchanged"].append(d.id)
                continue
            replay.record(tx, _entry(d, since, by, now))  # the row is made from the entry (catalog.replay)
            out["updated" if row is not None else "imported"].append(d.id)
    if out["imported"] or out["updated"]:
        archive.checkpoint()
    return out


def _known(archive: Archive, device: str) -> RegisteredDevice:
    row = archive.catalog.registry.get(device)
    if row is None:
        raise DeviceError(f"no device {device!r} in the registry")
    return RegisteredDevice(*row)


def update_device(archive: Archive, device: str, **changes: Any) -> dict[str, list[str]]:
    """Change a registered device's fields (kind, vendor, model, serial, unit, status, since): one ledger entry,
    none when nothing changes."""
    current = _known(archive, device).to_json() | {"since": None}
    unknown = sorted(set(changes) - set(_FIELDS[1:]))
    if unknown:
        raise DeviceError(f"no device field {', '.join(unknown)}")
    record = current | {k: v for k, v in changes.items() if v is not None}
    since = changes.get("since")
    d = _device(record | {"since": None}, f"device {device!r}")
    return register_devices(archive, [replace(d, since=since)])


def set_status(archive: Archive, device: str, status: str, since: int | None = None) -> dict[str, list[str]]:
    """The device's status from ``since`` (default now): retired, lost, in repair, back in service."""
    return update_device(archive, device, status=status, since=since)


def registered(archive: Archive) -> list[RegisteredDevice]:
    """Every registered device, by id."""
    return [RegisteredDevice(*row) for row in archive.catalog.registry.all()]


def show_device(archive: Archive, device: str) -> dict[str, Any]:
    """A registered device with its status history, its assignments and the corrections made to them (each
    assignment given to another officer with ``replace``: when, by whom, whom it replaced, and how many of the
    device's recordings of that assignment were ingested before it, whose responsible officer it changed:
    :func:`corrections`)."""
    d = _known(archive, device)
    return d.to_json() | {
        "statuses": [{"status": s, "since": rfc3339(t)} for t, s in archive.catalog.registry.statuses(device)],
        "assignments": [_assignment(a).to_json() for a in archive.catalog.registry.assignments(device)],
        "corrections": corrections(archive, [device]),
    }


def corrections(
    archive: Archive, devices: Collection[str] | None = None, *, window: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """The corrections of assignments (of ``devices``; all when None; with ``window`` (ns, [lo, hi)) only those
    whose assignment shares time with it), oldest first, from their ledger entries: the device, the assignment's
    start and end, the officer it now names and the one it replaced, who made it and when, its ledger index, and
    ``recordings_before``: how many of the device's recordings of that assignment were ingested before it (their
    responsible officer changed after the fact, an Art. 25 matter for reviewers)."""
    out = []
    for seq, raw in archive.catalog.ledger.of_type("device_assign"):
        e = json.loads(raw)
        if "replaces" not in e or devices is not None and e["device"] not in devices:
            continue
        if window is not None and not (e["start"] < window[1] and (e["end"] is None or e["end"] > window[0])):
            continue
        before = archive.catalog.registry.recordings_between(e["device"], e["start"], e["end"], e["time"])
        out.append(
            {
                "device": e["device"],
                "start": rfc3339(e["start"]),
                "end": rfc3339(e["end"]),
                "officer": e["officer"],
                "replaced": e["replaces"],
                "by": e["by"],
                "at": rfc3339(e["time"]),
                "ledger_index": seq,
                "recordings_before": before,
            }  # fmt: skip
        )
    return out


def _assignment(a: AssignmentRow) -> Assignment:
    return Assignment(a.device_id, a.officer_id, a.start_ns, a.end_ns)


def _overlap_problems(rows: list[tuple[str, Assignment]]) -> list[str]:
    """One problem for each pair of the given assignments of one device that share time, naming both."""
    return [
        f"{m}: {b.device} to {b.officer} from {rfc3339(b.start)} overlaps {n} "
        f"({a.officer} from {rfc3339(a.start)} to {rfc3339(a.end) or 'open end'})"
        for (n, a), (m, b) in _overlaps(rows)
    ]


def _parse_assignments(
    records: Iterable[Mapping[str, Any]], source: str
) -> tuple[list[tuple[str, Assignment]], list[str]]:
    """Each well-formed record as (where, assignment), and a problem naming the row of every other one and of
    every overlap among them."""
    out: list[tuple[str, Assignment]] = []
    problems: list[str] = []
    for n, r in enumerate(records, start=1):
        where = f"{source} row {n}"
        try:
            _unknown_fields(r, _ASSIGNMENT_FIELDS, where)
            device, officer = _text(r, "device"), _text(r, "officer")
            if not device or not officer:
                raise DeviceError(f"{where}: names no {'device' if not device else 'officer'}")
            _id(device, "device", where)
            _id(officer, "officer", where)
            start = parse_time(r.get("from"), where)
            end = parse_time(r["to"], where) if _text(r, "to") else None
            if end is not None and end <= start:
                raise DeviceError(f"{where}: the assignment of {device!r} ends before it starts")
            out.append((where, Assignment(device, officer, start, end)))
        except CustodesError as e:
            problems.append(str(e))
    return out, problems + _overlap_problems(out)


def parse_assignments(records: Iterable[Mapping[str, Any]], source: str) -> list[Assignment]:
    """Assignments from records (keys device, officer, from, to; ``to`` may be empty: still held), every problem
    reported with its row, overlaps of one device's assignments naming both rows; an unknown key is refused."""
    out, problems = _parse_assignments(records, source)
    if problems:
        raise DeviceError("nothing imported:\n  " + "\n  ".join(problems))
    return [a for _, a in out]


def _overlaps(items: list[tuple[Any, Assignment]]) -> list[tuple[tuple[Any, Assignment], tuple[Any, Assignment]]]:
    """Each pair of one device's assignments that share time, as (earlier, later), by device and start. Sorted
    by start, an assignment shares time with an earlier one exactly when it starts before the latest end so far."""
    pairs = []
    by_device: dict[str, list[tuple[Any, Assignment]]] = {}
    for item in items:
        by_device.setdefault(item[1].device, []).append(item)
    for device in sorted(by_device):
        held = sorted(by_device[device], key=lambda x: x[1].start)
        reach: tuple[Any, Assignment] | None = None  # the one reaching latest so far
        for item in held:
            if reach is not None and (reach[1].end is None or item[1].start < reach[1].end):
                pairs.append((reach, item))
            if reach is None or reach[1].end is not None and (item[1].end is None or item[1].end > reach[1].end):
                reach = item
    return pairs


def load_assignments(path: str | os.PathLike[str]) -> list[Assignment]:
    """Assignments from a CSV file (columns device,officer,from,to) or a JSON file (a list of objects with those
    keys); times RFC 3339 with an offset."""
    return parse_assignments(*read_records(path, "assignment", DeviceError))


def import_assignments(
    archive: Archive, path: str | os.PathLike[str], *, replace: bool = False
) -> dict[str, list[str]]:
    """:func:`load_assignments` and :func:`assign_devices` in one pass: every bad row, its format or what the
    registry says of it (an unknown device, an overlap), named with its row number; nothing recorded then."""
    rows, problems = _parse_assignments(*read_records(path, "assignment", DeviceError))
    return _assign(archive, rows, problems, replace)


def assign_devices(
    archive: Archive, assignments: Sequence[Assignment], *, replace: bool = False
) -> dict[str, list[str]]:
    """Record assignments (all or nothing): each new or changed one (one device, one start) is a ledger entry,
    identical ones are skipped; the same officer's with another end changes its end. Refused, naming each: an
    unregistered device, an assignment starting beyond now, before its device's registration or while it is
    lost or retired, one that overlaps another of its device (given here or recorded before), and one naming
    another officer than the assignment recorded with its start, unless ``replace``: then it is a correction,
    whose entry names the officer it replaces (and refused where there is none to replace)."""
    rows = [(f"assignment {n}", a) for n, a in enumerate(assignments, start=1)]
    return _assign(archive, rows, _overlap_problems(rows), replace)


def _registry_problems(tx: Any, where: str, a: Assignment, now: int, replace: bool) -> list[str]:
    """What the registry refuses of one assignment (see :func:`assign_devices`)."""
    if tx.registry.get(a.device) is None:
        return [f"{where}: no device {a.device!r} in the registry"]
    problems = []
    if a.start > now + FUTURE_SLACK_NS:
        problems.append(f"{where}: {a.device} from {rfc3339(a.start)} is in the future")
    statuses = tx.registry.statuses(a.device)
    at = [(t, st) for t, st in statuses if t <= a.start][-1:]
    if not at:
        t0, st0 = statuses[0]
        problems.append(
            f"{where}: {a.device} from {rfc3339(a.start)} is before its registration ({st0} since {rfc3339(t0)}; "
            "move that back with device update --since)"
        )
    elif at[0][1] in ("lost", "retired"):
        problems.append(f"{where}: {a.device} from {rfc3339(a.start)}: it is {at[0][1]} since {rfc3339(at[0][0])}")
    row = tx.registry.assignment(a.device, a.start)
    if row is not None and row.officer_id != a.officer and not replace:
        problems.append(
            f"{where}: {a.device} from {rfc3339(a.start)} is recorded as held by {row.officer_id}, not {a.officer}; "
            "a correction is explicit (device assign --replace)"
        )
    if replace and (row is None or row.officer_id == a.officer):
        problems.append(f"{where}: {a.device} from {rfc3339(a.start)}: no assignment to another officer to replace")
    return problems


def _assign(
    archive: Archive, rows: list[tuple[str, Assignment]], problems: list[str], replace: bool
) -> dict[str, list[str]]:
    by = require_role(archive, REGISTRARS, "device_assign")
    now = time.time_ns()
    out: dict[str, list[str]] = {"assigned": [], "updated": [], "unchanged": []}
    with archive.transaction() as tx:
        for where, a in rows:
            problems.extend(_registry_problems(tx, where, a, now, replace))
        given = {(a.device, a.start) for _, a in rows}
        recorded = [
            (f"the assignment recorded from {rfc3339(r.start_ns)}", _assignment(r))
            for d in sorted({a.device for _, a in rows})
            for r in tx.registry.assignments(d)
            if (r.device_id, r.start_ns) not in given  # one given again with the same start stands for it
        ]
        mine = set(rows)
        for (what_a, a), (what_b, b) in _overlaps(recorded + rows):
            if (what_a, a) in mine and (what_b, b) in mine:
                continue  # named already (_overlap_problems)
            if (what_a, a) in mine or (what_b, b) in mine:
                problems.append(f"{what_b}: {b.device} ({b.officer}) overlaps {what_a} ({a.officer})")
        if problems:
            raise DeviceError("nothing assigned:\n  " + "\n  ".join(problems))
        for _, a in rows:
            row = tx.registry.assignment(a.device, a.start)
            if row == AssignmentRow(a.device, a.start, a.end, a.officer):
                out["unchanged"].append(f"{a.device}@{rfc3339(a.start)}")
                continue
            entry = {"type": "device_assign", "device": a.device, "officer": a.officer, "start": a.start,
                     "end": a.end, "by": by, "time": now}  # fmt: skip
            if row is not None and row.officer_id != a.officer:  # a correction (replace): name whom it replaces
                seq = dict(tx.registry.assignment_entries(a.device))[a.start]
                entry |= {"replaces": row.officer_id, "replaces_entry": seq}
            replay.record(tx, entry)  # the row is made from the entry (catalog.replay)
            out["updated" if row is not None else "assigned"].append(f"{a.device}@{rfc3339(a.start)}")
    if out["assigned"] or out["updated"]:
        archive.checkpoint()
    return out


def _finding(f: SegmentDeviceFacts) -> Finding | None:
    """The registry's finding for one recording (the first of FINDING_KINDS that applies), or None."""
    at = rfc3339(f.when_ns)
    if not f.registered:
        kind, message = "unregistered_device", f"device {f.device_id} is not in the registry (recording at {at})"
    elif f.status is None:  # registered only after it recorded: it was not a registered device then (Art. 6)
        kind, message = "unregistered_device", f"device {f.device_id} recorded at {at}, before its registration"
    elif f.status in ("lost", "retired"):
        kind = f"{f.status}_device"
        message = f"device {f.device_id} recorded at {at}, {f.status} since {rfc3339(f.status_since_ns)}"
    elif f.assignee is None:
        kind, message = "unassigned_device", f"device {f.device_id} was assigned to nobody when it recorded at {at}"
    elif f.named_officer is not None and f.named_officer != f.assignee:
        kind = "device_lent"
        message = f"device {f.device_id}, assigned to {f.assignee}, recorded at {at} as {f.named_officer}'s"
    else:
        return None
    evidence = {"unit": f.unit, "status": f.status, "assignee": f.assignee, "named_officer": f.named_officer}
    return Finding(kind, message, device=f.device_id, start=f.when_ns, evidence=evidence)


def device_findings(archive: Archive, scope: Scope) -> list[tuple[SegmentDeviceFacts, Finding]]:
    """The registry's findings of the scope's recordings, each with the recording's facts (its segment, ledger
    index, unit, assignee); none while no device is registered."""
    if not archive.catalog.registry.in_use():
        return []
    return [(f, found) for f in archive.catalog.registry.segment_facts(scope) if (found := _finding(f)) is not None]
