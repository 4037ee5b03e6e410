"""Pre-use checks (Art. 10), the recording checklist (Art. 7) and enforcement context (Art. 5).

A **pre-use check** is what the officer (or the docking station, for them) found before recording: the time (the
station's clock), the device clock's offset against it before it was set, battery, free storage, fault flags.
Checks come from two places, both ledger entries replayed into ``device_checks``: a driver reads them at
docking (``VolumeReading.checks``, with the ``ingest_begin`` entry) and ``custodes device check`` records one by
hand (a ``device_check`` entry, :func:`record_check`).

The findings are derived whenever they are asked for (:func:`preuse_findings`, :func:`checklist_findings`),
never stored: a check recorded by hand after the footage was ingested, or a task imported late, counts at once.

- ``no_preuse_check``: a recording with no check of its device since the device's last docking before the
  recording (the check that counts is the latest one at or before the recording's start, and it must not be
  older than that docking: a docking ends the shift it was checked for).
- ``clock_not_set_before_use``: the check that counts found the device clock off by more than the policy's
  ``[timeline] clock_tolerance_seconds``.

Both only for devices that have ever had a check, or for every device when the policy says
``[devices] preuse_check_required = true``: an archive that never recorded a check is not told every recording
of it was unchecked.

- ``task_not_recorded``: a task whose type is on the policy's checklist (``[recording] required_task_types``) and
  that no recording of its devices or officers covers at all (custodes.tasks.task_coverage).
- ``no_enforcement_context`` (severity ``info``: tasks may be imported late): a recording that overlaps no task
  window of its device or officer and no exemption (an Art. 8 cause of ``custodes gap explain``) of its device;
  listed when the policy says ``[recording] enforcement_context = true``.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from custodes.access import require_role
from custodes.archive import Archive
from custodes.catalog import replay
from custodes.catalog.devices import CheckRow
from custodes.defaults import NS
from custodes.devices import FUTURE_SLACK_NS
from custodes.drivers import DeviceCheck
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339

__all__ = [
    "CHECKERS",
    "CHECK_KINDS",
    "CHECKLIST_KINDS",
    "Check",
    "PreuseError",
    "check_record",
    "checklist_findings",
    "checks",
    "preuse_findings",
    "record_check",
]

#: The finding kinds of the pre-use rule, and of the checklist and context rule.
CHECK_KINDS = ("no_preuse_check", "clock_not_set_before_use")
CHECKLIST_KINDS = ("task_not_recorded", "no_enforcement_context")
#: Who records a check by hand: the custodians and approvers who record tasks (a refusal is logged).
CHECKERS = ("custodian", "approver")


class PreuseError(CustodesError, ValueError):
    """A pre-use check that cannot be recorded as given."""

    kind = "preuse"


@dataclass(frozen=True)
class Check:
    """A recorded pre-use check: where it came from (``dock``: a driver at docking; ``hand``), who did it (by
    hand), and its ledger entry."""

    device: str
    time: int  # ns UTC, station clock
    source: str
    by: str | None
    clock_offset: int | None  # ns, device - station
    battery_percent: int | None
    free_bytes: int | None
    faults: tuple[str, ...]
    note: str
    ledger_index: int

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "time": rfc3339(self.time),
            "source": self.source,
            "by": self.by,
            "clock_offset_seconds": None if self.clock_offset is None else self.clock_offset / NS,
            "battery_percent": self.battery_percent,
            "free_bytes": self.free_bytes,
            "faults": list(self.faults),
            "note": self.note,
            "ledger_index": self.ledger_index,
        }


def check_record(x: DeviceCheck, note: str = "") -> dict[str, Any]:
    """A check as a ledger entry holds it (integers and text only: the ledger holds no floats)."""
    return {
        "time": x.time,
        "clock_offset": x.clock_offset,
        "battery_percent": x.battery_percent,
        "free_bytes": x.free_bytes,
        "faults": list(x.faults),
        "note": note,
    }


def record_check(archive: Archive, device: str, officer: str, check: DeviceCheck, note: str = "") -> int:
    """Record a pre-use check done by hand by ``officer`` on ``device``; returns its ledger index. The same check
    (device and time) twice is refused: a check is a fact once. Refused too: a time beyond now (more than
    custodes.devices.FUTURE_SLACK_NS), and, once the registry is in use, a device it does not hold and the
    catalog has no footage of (a device known by its footage alone is accepted: its recordings are
    unregistered_device findings already, and a check of it is still a fact worth keeping)."""
    if not officer.strip():
        raise PreuseError("--by names no officer")
    if check.battery_percent is not None and not 0 <= check.battery_percent <= 100:
        raise PreuseError(f"--battery {check.battery_percent} is not a percent 0 to 100")
    if check.free_bytes is not None and check.free_bytes < 0:
        raise PreuseError(f"--free-bytes {check.free_bytes} is negative")
    if any(not f.strip() for f in check.faults):
        raise PreuseError("--fault names no fault")
    if check.time > time.time_ns() + FUTURE_SLACK_NS:
        raise PreuseError(f"a check of {device} at {rfc3339(check.time)} is in the future")
    by = require_role(archive, CHECKERS, "device_check")
    with archive.transaction() as tx:
        known = tx.registry.get(device) is not None or tx.devices.exists(device)
        if not known and tx.registry.in_use():
            raise PreuseError(f"no device {device!r} in the registry or the catalog")
        if tx.device_checks.exists(device, check.time, "hand"):
            raise PreuseError(f"a check of {device} at {rfc3339(check.time)} is already recorded")
        index = replay.record(  # the row is made from the entry (catalog.replay)
            tx,
            {
                "type": "device_check",
                "device": device,
                "officer": officer.strip(),  # who checked the device
                "check": check_record(check, note),
                "by": by,  # who recorded it here
                "time": time.time_ns(),
            },
        )
    archive.checkpoint()
    return index


def checks(archive: Archive, devices: Sequence[str] | None = None) -> list[Check]:
    """The recorded checks (of ``devices``; all when None), by device and time."""
    wanted = None if devices is None else set(devices)
    return [_check(seq, r) for seq, r in archive.catalog.device_checks.all() if wanted is None or r.device_id in wanted]


def _check(seq: int, r: CheckRow) -> Check:
    return Check(
        r.device_id,
        r.time_ns,
        r.source,
        r.by,
        r.clock_offset_ns,
        r.battery_percent,
        r.free_bytes,
        tuple(json.loads(r.faults)),
        r.note,
        seq,
    )


def preuse_findings(archive: Archive) -> list[Finding]:
    """``no_preuse_check`` and ``clock_not_set_before_use``, one per recording at most, by device and start
    (see the module docstring)."""
    catalog = archive.catalog
    by_device: dict[str, list[Check]] = {}
    for c in checks(archive):
        by_device.setdefault(c.device, []).append(c)
    if not by_device and not archive.policy.preuse_check_required:
        return []  # the rule is off: no recording is read
    dockings: dict[str, list[int]] = {}
    for d, t in catalog.device_checks.dockings():
        dockings.setdefault(d, []).append(t)
    tolerance = round(archive.policy.clock_tolerance_seconds * NS)
    required = archive.policy.preuse_check_required
    times: dict[str, list[int]] = {}  # each device's check times, for bisect
    out = []
    for segment, device, officer, start, end, seq in catalog.device_checks.recordings():
        mine = by_device.get(device, [])
        if not mine and not required:
            continue
        if device not in times:
            times[device] = [c.time for c in mine]
        about = {"segment": segment, "segment_ledger_index": seq, "officer": officer}
        finding = _preuse_finding(about, device, start, end, mine, times[device], dockings.get(device, []), tolerance)
        if finding is not None:
            out.append(finding)
    return out


def _preuse_finding(
    about: dict[str, Any],
    device: str,
    start: int,
    end: int,
    mine: list[Check],
    times: list[int],
    dockings: list[int],
    tolerance: int,
) -> Finding | None:
    """The finding of one recording: none when the check that counts for it is in time and found the clock set.
    ``mine``: the device's checks by time, ``times`` their times; ``dockings`` its dockings, by time."""
    i = bisect.bisect_right(times, start)
    last = mine[i - 1] if i else None  # the latest check at or before the recording
    j = bisect.bisect_left(dockings, start)
    docked = dockings[j - 1] if j else None  # the last docking before the recording
    segment = about["segment"]
    if last is None or (docked is not None and last.time < docked):
        return Finding(
            "no_preuse_check",
            f"segment {segment}: no pre-use check of {device} since "
            + (f"its docking at {rfc3339(docked)}" if docked is not None else "before it was recorded"),
            device,
            start=start,
            end=end,
            evidence=about
            | {
                "docked": rfc3339(docked),
                "last_check": None if last is None else rfc3339(last.time),
                "last_check_ledger_index": None if last is None else last.ledger_index,
            },
        )
    if last.clock_offset is not None and abs(last.clock_offset) > tolerance:
        return Finding(
            "clock_not_set_before_use",
            f"segment {segment}: at the pre-use check of {rfc3339(last.time)} the clock of {device} was off by "
            f"{last.clock_offset / NS:+.0f} s (tolerance {tolerance / NS:g} s)",
            device,
            start=start,
            end=end,
            evidence=about
            | {
                "check": rfc3339(last.time),
                "check_ledger_index": last.ledger_index,
                "offset_seconds": last.clock_offset / NS,
                "tolerance_seconds": tolerance / NS,
            },
        )
    return None


def checklist_findings(archive: Archive, coverage: Iterable[Any] | None = None) -> list[Finding]:
    """``task_not_recorded`` (tasks on the policy's checklist that no recording covers) and, when the policy asks,
    ``no_enforcement_context`` (recordings in no task window and no exemption). ``coverage``: the tasks'
    coverage when the caller has it (custodes.tasks.task_coverage), else read here."""
    from custodes.tasks import EXEMPTIONS, task_coverage

    policy = archive.policy
    out: list[Finding] = []
    if policy.required_task_types:
        required = set(policy.required_task_types)
        for c in task_coverage(archive) if coverage is None else coverage:
            if c.task.type in required and c.covered == 0:
                out.append(
                    Finding(
                        "task_not_recorded",
                        f"task {c.task.id} ({c.task.type}) is on the recording checklist and nothing recorded it",
                        ",".join(c.task.devices) or None,
                        start=c.task.start,
                        end=c.task.end,
                        evidence={"task": c.task.id, "task_type": c.task.type, "devices": c.devices},
                    )
                )
    if policy.enforcement_context:
        catalog = archive.catalog
        windows: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        for t in catalog.tasks.all():
            for d in json.loads(t.devices):
                windows.setdefault(("device", d), []).append((t.start_ns, t.end_ns, t.id))
            for o in json.loads(t.officers):
                windows.setdefault(("officer", str(o)), []).append((t.start_ns, t.end_ns, t.id))
        for x in catalog.gap_explanations.all():
            if x.cause in EXEMPTIONS:
                windows.setdefault(("device", x.device_id), []).append((x.start_ns, x.end_ns, x.cause))
        for segment, device, officer, start, end, seq in catalog.device_checks.recordings():
            near = windows.get(("device", device), []) + windows.get(("officer", str(officer)), [])
            if not any(a < max(end, start + 1) and b > start for a, b, _ in near):  # a photo is an instant
                out.append(
                    Finding(
                        "no_enforcement_context",
                        f"segment {segment}: recorded in no task window and no exemption of {device}"
                        + (f" or officer {officer}" if officer else ""),
                        device,
                        start=start,
                        end=end,
                        evidence={"segment": segment, "segment_ledger_index": seq, "officer": officer},
                    )
                )
    return out
