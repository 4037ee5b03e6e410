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

- ``unregistered_device``: its device is not in the registry;
- ``lost_device`` / ``retired_device``: its device had that status at the recording's time;
- ``unassigned_device``: its device was assigned to nobody at that time;
- ``device_lent``: its file name (else its device's identity) names an officer other than the assignee.

An archive with no registered device gets none of these: it reads as before.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from custodes.access import require_role
from custodes.archive import Archive
from custodes.catalog import Scope, replay
from custodes.catalog.registry import AssignmentRow, RegistryRow, SegmentDeviceFacts
from custodes.drivers import IDENTITY_KINDS
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339
from custodes.tasks import parse_time

__all__ = [
    "Assignment",
    "DeviceError",
    "FINDING_KINDS",
    "KINDS",
    "RegisteredDevice",
    "STATUSES",
    "assign_devices",
    "device_findings",
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


def _device(r: Mapping[str, Any], where: str) -> RegisteredDevice:
    device = _text(r, "id")
    if not device:
        raise DeviceError(f"{where}: no id")
    kind = _text(r, "kind")
    if kind not in KINDS:
        raise DeviceError(f"{where}: device {device!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    status = _text(r, "status") or "in_service"
    if status not in STATUSES:
        raise DeviceError(f"{where}: device {device!r}: status {status!r} is not one of {', '.join(STATUSES)}")
    since = parse_time(r["since"], where) if _text(r, "since") else None
    vendor, model, serial, unit = (_text(r, k) for k in _FIELDS[2:6])
    return RegisteredDevice(device, kind, vendor, model, serial, unit, status, since)


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


def _records(path: str | os.PathLike[str], what: str) -> tuple[list[Mapping[str, Any]], str]:
    """The rows of a CSV file, or the objects of a JSON file (a list), with the file's name."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DeviceError(f"{path}: cannot read: {e}") from e
    if p.suffix.lower() != ".json":
        return list(csv.DictReader(io.StringIO(text))), p.name
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DeviceError(f"{path}: not JSON: {e}") from e
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise DeviceError(f"{path}: expected a JSON list of {what} objects")
    return data, p.name


def load_devices(path: str | os.PathLike[str]) -> list[RegisteredDevice]:
    """Devices from a CSV file (columns id,kind,vendor,model,serial,unit,status,since) or a JSON file (a list of
    objects with those keys); ``since`` is RFC 3339 with an offset."""
    return parse_devices(*_records(path, "device"))


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
    ``since`` begins now. ``new``: refuse a device already registered (``device add``)."""
    by = require_role(archive, REGISTRARS, "device_register")
    now = time.time_ns()
    out: dict[str, list[str]] = {"imported": [], "updated": [], "unchanged": []}
    with archive.transaction() as tx:
        if new:
            known = [d.id for d in devices if tx.registry.get(d.id) is not None]
            if known:
                raise DeviceError(f"device {', '.join(known)} is registered already; change it with device update")
        for d in devices:
            row = tx.registry.get(d.id)
            since = d.since if d.since is not None else (row.status_since_ns if row and row.status == d.status else now)
            values = RegistryRow(d.id, d.kind, d.vendor, d.model, d.serial, d.unit, d.status, since)
            if row == values:
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
    """A registered device with its status history and its assignments."""
    d = _known(archive, device)
    return d.to_json() | {
        "statuses": [{"status": s, "since": rfc3339(t)} for t, s in archive.catalog.registry.statuses(device)],
        "assignments": [_assignment(a).to_json() for a in archive.catalog.registry.assignments(device)],
    }


def _assignment(a: AssignmentRow) -> Assignment:
    return Assignment(a.device_id, a.officer_id, a.start_ns, a.end_ns)


def parse_assignments(records: Iterable[Mapping[str, Any]], source: str) -> list[Assignment]:
    """Assignments from records (keys device, officer, from, to; ``to`` may be empty: still held), every problem
    reported with its row, overlaps of one device's assignments naming both rows."""
    out: list[tuple[int, Assignment]] = []
    problems: list[str] = []
    for n, r in enumerate(records, start=1):
        where = f"{source} row {n}"
        try:
            device, officer = _text(r, "device"), _text(r, "officer")
            if not device or not officer:
                raise DeviceError(f"{where}: names no {'device' if not device else 'officer'}")
            start = parse_time(r.get("from"), where)
            end = parse_time(r["to"], where) if _text(r, "to") else None
            if end is not None and end <= start:
                raise DeviceError(f"{where}: the assignment of {device!r} ends before it starts")
            out.append((n, Assignment(device, officer, start, end)))
        except (DeviceError, CustodesError) as e:
            problems.append(str(e))
    for (n, a), (m, b) in _overlaps(out):
        problems.append(
            f"{source} row {m}: {b.device} to {b.officer} from {rfc3339(b.start)} overlaps row {n} "
            f"({a.officer} from {rfc3339(a.start)} to {rfc3339(a.end) or 'open end'})"
        )
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
    return parse_assignments(*_records(path, "assignment"))


def assign_devices(archive: Archive, assignments: Sequence[Assignment]) -> dict[str, list[str]]:
    """Record assignments (all or nothing): each new or changed one (one device, one start) is a ledger entry,
    identical ones are skipped. Refused, naming each: an unregistered device, and an assignment that overlaps
    another of its device (given here or recorded before)."""
    by = require_role(archive, REGISTRARS, "device_assign")
    now = time.time_ns()
    out: dict[str, list[str]] = {"imported": [], "updated": [], "unchanged": []}
    with archive.transaction() as tx:
        problems = [f"no device {d!r} in the registry" for d in sorted({a.device for a in assignments})
                    if tx.registry.get(d) is None]  # fmt: skip
        given = {(a.device, a.start) for a in assignments}
        recorded = [
            (f"the assignment recorded from {rfc3339(r.start_ns)}", _assignment(r))
            for d in sorted({a.device for a in assignments})
            for r in tx.registry.assignments(d)
            if (r.device_id, r.start_ns) not in given  # one given again with the same start replaces it
        ]
        mine = [(f"the assignment given from {rfc3339(a.start)}", a) for a in assignments]
        given_here = set(mine)
        for (what_a, a), (what_b, b) in _overlaps(recorded + mine):
            if (what_a, a) in given_here or (what_b, b) in given_here:
                problems.append(f"{b.device}: {what_b} ({b.officer}) overlaps {what_a} ({a.officer})")
        if problems:
            raise DeviceError("nothing assigned:\n  " + "\n  ".join(problems))
        for a in assignments:
            row = tx.registry.assignment(a.device, a.start)
            if row == AssignmentRow(a.device, a.start, a.end, a.officer):
                out["unchanged"].append(f"{a.device}@{rfc3339(a.start)}")
                continue
            entry = {"type": "device_assign", "device": a.device, "officer": a.officer, "start": a.start,
                     "end": a.end, "by": by, "time": now}  # fmt: skip
            replay.record(tx, entry)  # the row is made from the entry (catalog.replay)
            out["updated" if row is not None else "imported"].append(f"{a.device}@{rfc3339(a.start)}")
    if out["imported"] or out["updated"]:
        archive.checkpoint()
    return out


def _finding(f: SegmentDeviceFacts) -> Finding | None:
    """The registry's finding for one recording (the first of FINDING_KINDS that applies), or None."""
    at = rfc3339(f.when_ns)
    if not f.registered:
        kind, message = "unregistered_device", f"device {f.device_id} is not in the registry (recording at {at})"
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
