"""Enforcement tasks, their coverage, and gap explanations (Art. 8, 11, 14).

A **task** is an enforcement act from the agency's systems: id, type, start,
end, officers, devices. Inside a task the law asks for continuous recording.
:func:`task_coverage` measures, per task, the share of the window recorded by
any of its devices (the task's devices, and the devices its officers' footage
came from), the uncovered intervals, and the share recorded by two devices at
once (Art. 11). An uncovered interval is **explained** by an annotation
(:func:`explain_gap`: the cause the officer stated on resuming, or an Art. 8
exemption) or by the device's own event log (battery low, storage full, a
fault); what is left is a ``gap_unexplained`` finding. Imports and
annotations are ledger entries.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import os
import re
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from custodes import timeline
from custodes.access import require_role
from custodes.archive import Archive
from custodes.catalog import replay
from custodes.catalog.custody import Explanation, TaskRow
from custodes.defaults import NS, TimeRangeError, ns_from_datetime, says_something
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339

__all__ = [
    "AnnotationJSON",
    "CAUSES",
    "CoverageCheck",
    "CoverageCheckJSON",
    "TaskCoverageJSON",
    "TaskJSON",
    "UncoveredJSON",
    "EXEMPTIONS",
    "EVENT_CAUSES",
    "EVENT_LEAD",
    "Explanations",
    "Task",
    "TaskCoverage",
    "TaskError",
    "annotation_json",
    "coverage_check",
    "explain_gap",
    "import_tasks",
    "parse_time",
    "load_tasks",
    "task_coverage",
]

#: Art. 8: recording is not required for secrets, work secrets, emergencies, or when objectively impossible.
EXEMPTIONS = ("secret", "work_secret", "emergency", "impossible")
#: Art. 14: the technical reasons recording may stop, plus the exemptions and "other".
CAUSES = ("device_fault", "damage", "weather", "battery", "storage_full", "location_change", *EXEMPTIONS, "other")
#: Device event kinds that state a cause by themselves.
EVENT_CAUSES = {"battery_low": "battery", "storage_full": "storage_full", "device_fault": "device_fault"}
#: An event this long before a gap begins still explains it (the device warns, then stops). The whole rule is
#: :class:`Explanations`.
EVENT_LEAD = 120 * NS


class TaskError(CustodesError, ValueError):
    """A task file or a gap explanation that cannot be accepted as given."""

    kind = "task"


class TaskJSON(TypedDict):
    """A task as the JSON of its coverage holds it: times RFC 3339 UTC."""

    id: str
    type: str
    start: str
    end: str
    officers: list[str]
    devices: list[str]


@dataclass(frozen=True)
class Task:
    id: str
    type: str
    start: int  # ns UTC
    end: int
    officers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()

    def to_json(self) -> TaskJSON:
        return {
            "id": self.id,
            "type": self.type,
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "officers": list(self.officers),
            "devices": list(self.devices),
        }


def parse_time(value: Any, where: str) -> int:
    text = str(value).strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise TaskError(f"{where}: {value!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise TaskError(f"{where}: {value!r} has no time zone offset; say Z or +08:00")
    # datetime keeps microseconds and drops the digits after them; times are ns, so add the 7th to 9th back
    # (09:50:00.000000001Z is not 09:50:00Z).
    fraction = re.search(r":\d\d[.,](\d+)", text)
    below_us = int(fraction.group(1)[6:9].ljust(3, "0")) if fraction and len(fraction.group(1)) > 6 else 0
    try:
        # the one int64-ns rule: year 9999 is refused here, not in SQLite
        return ns_from_datetime(dt, where) + below_us
    except TimeRangeError as e:
        raise TaskError(str(e)) from None


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v.strip() for v in str(value or "").replace(",", ";").split(";") if v.strip())


def parse_tasks(records: Iterable[Mapping[str, Any]], source: str) -> list[Task]:
    """Tasks from records (CSV rows or JSON objects), every problem reported with its row."""
    tasks: list[Task] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, r in enumerate(records, start=1):
        where = f"{source} row {n}"
        try:
            task_id = str(r.get("id") or "").strip()
            if not task_id:
                raise TaskError(f"{where}: no id")
            if task_id in seen:
                raise TaskError(f"{where}: task {task_id!r} appears twice")
            start, end = parse_time(r.get("start"), where), parse_time(r.get("end"), where)
            if end <= start:
                raise TaskError(f"{where}: task {task_id!r} ends before it starts")
            devices, officers = _names(r.get("devices")), _names(r.get("officers"))
            if not devices and not officers:
                raise TaskError(f"{where}: task {task_id!r} names no device and no officer")
            seen.add(task_id)
            tasks.append(Task(task_id, str(r.get("type") or "unspecified").strip(), start, end, officers, devices))
        except TaskError as e:
            problems.append(str(e))
    if problems:
        raise TaskError("nothing imported:\n  " + "\n  ".join(problems))
    return tasks


def load_tasks(path: str | os.PathLike[str]) -> list[Task]:
    """Tasks from a CSV file (columns id,type,start,end,officers,devices; names split by ';')
    or a JSON file (a list of objects with the same keys)."""
    return parse_tasks(*read_records(path, "task", TaskError))


def read_records(
    path: str | os.PathLike[str], what: str, error: type[CustodesError]
) -> tuple[Iterable[Mapping[str, Any]], str]:
    """The rows of a CSV file, or the objects of a JSON file (``.json``: a list), with the file's name: what an
    import (tasks, devices, assignments) parses. ``error``: the import's error class, naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read: {e}") from e
    if p.suffix.lower() != ".json":
        return list(csv.DictReader(io.StringIO(text))), p.name
    try:
        data = json.loads(text)
    except ValueError as e:
        raise error(f"{path}: not JSON: {e}") from e
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise error(f"{path}: expected a JSON list of {what} objects")
    return data, p.name


#: Who may record tasks and explain gaps: the agency's custodians and approvers (a refusal is logged).
RECORDERS = ("custodian", "approver")


def import_tasks(archive: Archive, tasks: Sequence[Task]) -> dict[str, list[str]]:
    """Record tasks (all or nothing): new ones and changed ones get a ledger entry, identical ones are skipped."""
    by = require_role(archive, RECORDERS, "task_import")
    now = time.time_ns()
    out: dict[str, list[str]] = {"imported": [], "updated": [], "unchanged": []}
    with archive.transaction() as tx:
        for t in tasks:
            row = tx.tasks.get(t.id)
            values = TaskRow(t.id, t.type, t.start, t.end, json.dumps(list(t.officers)), json.dumps(list(t.devices)))
            if row == values:
                out["unchanged"].append(t.id)
                continue
            replay.record(  # the row is made from the entry (catalog.replay)
                tx,
                {
                    "type": "task",
                    "task": t.id,
                    "task_type": t.type,
                    "start": t.start,
                    "end": t.end,
                    "officers": list(t.officers),
                    "devices": list(t.devices),
                    "by": by,
                    "time": now,
                },
            )
            out["updated" if row is not None else "imported"].append(t.id)
    if out["imported"] or out["updated"]:
        archive.checkpoint()
    return out


def explain_gap(
    archive: Archive,
    device: str,
    start: int,
    end: int,
    cause: str,
    note: str = "",
    segment: int | None = None,
    offset: int | None = None,
) -> int:
    """Annotate the time ``start``..``end`` on ``device`` with a cause; returns the annotation id.

    ``segment``/``offset`` point at where the officer states the reason on
    resuming (Art. 14). The annotation is a ledger entry."""
    if cause not in CAUSES:
        raise TaskError(f"unknown cause {cause!r}; one of: {', '.join(CAUSES)}")
    # A note that says nothing ("." or blank) explains nothing, and "other" is a cause only with words saying
    # which (a hostile review recorded both); no note at all is none.
    if note and not says_something(note):
        raise TaskError(f"the note {note!r} says nothing: say what stopped the recording, in words, or give none")
    if cause == "other" and not note:
        raise TaskError("the cause 'other' needs a note saying what it was (--note)")
    if end <= start:
        raise TaskError(
            "the explained interval is empty (--from equals --to)"
            if end == start
            else "the explained interval ends before it starts"
        )
    by = require_role(archive, RECORDERS, "gap_explain", segment)
    now = time.time_ns()
    with archive.transaction() as tx:
        if not tx.devices.exists(device):
            raise TaskError(f"no device {device!r} in this archive")
        if segment is not None and not tx.segments.exists(segment):
            raise TaskError(f"no segment {segment} in this archive")
        annotation = replay.next_id(tx, "gap_explanations")
        replay.record(  # the row is made from the entry (catalog.replay)
            tx,
            {
                "type": "annotation",
                "annotation": annotation,
                "device": device,
                "start": start,
                "end": end,
                "cause": cause,
                "note": note,
                "segment": segment,
                "offset": offset,
                "by": by,
                "time": now,
            },
        )
    archive.checkpoint()
    return annotation


class AnnotationJSON(TypedDict):
    """A gap explanation recorded, as ``custodes gap explain --json`` prints it and the HTTP API returns it."""

    annotation: int


def annotation_json(annotation: int) -> AnnotationJSON:
    """The JSON of the annotation :func:`explain_gap` recorded (one schema for the CLI and the HTTP API)."""
    return {"annotation": annotation}


class UncoveredJSON(TypedDict):
    """An interval of a task's window no device recorded: RFC 3339 UTC, ``duration`` in seconds."""

    start: str
    end: str
    duration: float


class TaskCoverageJSON(TypedDict):
    """One task's coverage (:meth:`TaskCoverage.to_json`): shares 0 to 1; ``explained``: each explained part of
    an uncovered interval with what explained it (:class:`Explanations`); ``findings``: its gap_unexplained."""

    task: TaskJSON
    devices: list[str]
    covered_share: float
    covered_seconds: float
    two_device_share: float
    uncovered: list[UncoveredJSON]
    explained: list[dict[str, Any]]
    findings: list[dict[str, Any]]


class CoverageCheckJSON(TypedDict):
    """``custodes task coverage --json``'s object, and the HTTP API's: ``ok`` when no task has an unexplained gap
    and the recording checklist (Art. 7) found nothing above info."""

    ok: bool
    tasks: list[TaskCoverageJSON]
    checklist: list[dict[str, Any]]


@dataclass
class TaskCoverage:
    task: Task
    devices: list[str]
    covered: int  # ns recorded by at least one device
    two_device: int  # ns recorded by at least two devices (Art. 11)
    uncovered: list[tuple[int, int]]
    explained: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def window(self) -> int:
        return self.task.end - self.task.start

    def to_json(self) -> TaskCoverageJSON:
        return {
            "task": self.task.to_json(),
            "devices": self.devices,
            "covered_share": self.covered / self.window,
            "covered_seconds": self.covered / NS,
            "two_device_share": self.two_device / self.window,
            "uncovered": [
                {"start": rfc3339(a), "end": rfc3339(b), "duration": (b - a) / NS} for a, b in self.uncovered
            ],
            "explained": self.explained,
            "findings": [f.to_json() for f in self.findings],
        }


def _subtract(intervals: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``intervals`` minus the union of ``holes``."""
    out = []
    for a, b in intervals:
        pieces = [(a, b)]
        for h0, h1 in holes:
            pieces = [p for x0, x1 in pieces for p in ((x0, min(x1, h0)), (max(x0, h1), x1)) if p[1] > p[0]]
        out += pieces
    return out


def _at_least(k: int, per_device: list[list[tuple[int, int]]]) -> int:
    """ns covered by at least ``k`` of the interval lists (a sweep over their edges)."""
    edges = sorted([(a, 1) for iv in per_device for a, _ in iv] + [(b, -1) for iv in per_device for _, b in iv])
    total, depth, last = 0, 0, None
    for t, d in edges:
        if last is not None and depth >= k:
            total += t - last
        depth += d
        last = t
    return total


#: No next recording: an event's explanation runs to the end of time (a task window clips it).
_NEVER = 2**63 - 1


class Explanations:
    """Every stated cause of a device not recording, as spans of time per device, from the two sources the law
    accepts (Art. 14): an annotation (``custodes gap explain``: the span it names), and the device's own event
    log, by one rule:

    A device event (:data:`EVENT_CAUSES`) explains the one gap of its device that begins within
    :data:`EVENT_LEAD` after the event (the device warns, then stops), or at most the gap tolerance before it
    (a device logs in whole seconds and may log as it stops): from that gap's start to the device's next
    recording. Never a later gap, once recording resumed; an event further from the start of a gap explains
    nothing. A gap is where the device's recordings (clock-corrected where known) leave more than the gap
    tolerance unrecorded.

    Each span comes with what explained it: its cause, and the annotation (its id and ledger index) or the
    event (its kind and time)."""

    def __init__(
        self,
        recordings: Iterable[tuple[str, int, int]],
        annotations: Iterable[Explanation],
        events: Iterable[tuple[str, int, str, str]],
        tolerance: int,
    ) -> None:
        self._spans: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
        for x in annotations:
            why = {"cause": x.cause, "note": x.note, "source": x.source, "device": x.device_id, "annotation": x.id}
            self._spans.setdefault(x.device_id, []).append((x.start_ns, x.end_ns, why | {"ledger_index": x.ledger_seq}))
        runs = _runs(recordings, tolerance)
        for d, ts, kind, detail in events:
            if kind not in EVENT_CAUSES or d not in runs:
                continue
            gap = _gap_after(runs[d], ts, tolerance)
            if gap is not None:
                why = {"cause": EVENT_CAUSES[kind], "note": detail, "source": "device_event", "device": d}
                self._spans.setdefault(d, []).append((*gap, why | {"event": kind, "time": rfc3339(ts)}))

    @classmethod
    def of(cls, archive: Archive, tolerance: int | None = None) -> Explanations:
        """The archive's explanations, gaps measured with ``tolerance`` ns (default: the policy's)."""
        tol = round(archive.policy.gap_tolerance_seconds * NS) if tolerance is None else tolerance
        recordings = [(d, s, e) for d, _, s, e in archive.catalog.segments.timed_recordings()]
        return cls(recordings, archive.catalog.gap_explanations.all(), archive.catalog.devices.events(), tol)

    def within(self, devices: Iterable[str], start: int, end: int) -> list[tuple[int, int, dict[str, Any]]]:
        """The explanations of ``devices`` that cover part of ``start``..``end``, each clipped to it."""
        return [
            (max(start, a), min(end, b), why)
            for d in devices
            for a, b, why in self._spans.get(d, ())
            if a < end and b > start
        ]

    def unexplained(self, devices: Iterable[str], start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``start``..``end`` no explanation of ``devices`` covers."""
        return _subtract([(start, end)], [(a, b) for a, b, _ in self.within(devices, start, end)])


def _runs(recordings: Iterable[tuple[str, int, int]], tolerance: int) -> dict[str, list[tuple[int, int]]]:
    """Per device, its recorded time as runs: recordings less than ``tolerance`` apart are one run."""
    by_device: dict[str, list[tuple[int, int]]] = {}
    for d, s, e in recordings:
        by_device.setdefault(d, []).append((s, e))
    runs: dict[str, list[tuple[int, int]]] = {}
    for d, spans in by_device.items():
        merged: list[tuple[int, int]] = []
        for s, e in sorted(spans):
            if merged and s - merged[-1][1] <= tolerance:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        runs[d] = merged
    return runs


def _gap_after(runs: list[tuple[int, int]], ts: int, tolerance: int) -> tuple[int, int] | None:
    """The gap an event at ``ts`` explains (see :class:`Explanations`): (its start, the next recording's start),
    or None."""
    i = bisect.bisect_right(runs, (ts, _NEVER))  # runs[:i] start at or before ts
    if i and runs[i - 1][1] > ts:  # recording at ts: the gap begins when this run ends
        start = runs[i - 1][1]
        if start - ts > EVENT_LEAD:
            return None
    elif i and ts - runs[i - 1][1] <= tolerance:  # logged as the device stopped
        start = runs[i - 1][1]
    else:  # not recording since long before the event (or never yet): no gap begins after it
        return None
    return start, runs[i][0] if i < len(runs) else _NEVER


def task_coverage(
    archive: Archive,
    task_ids: Sequence[str] | None = None,
    gap_tolerance: int | None = None,
    explanations: Explanations | None = None,
) -> list[TaskCoverage]:
    """Coverage of each task window by its devices' segments (clock-corrected times where known); the gaps
    explained by ``explanations`` (default: the archive's, :class:`Explanations`) are listed with what
    explained each, the rest are ``gap_unexplained`` findings."""
    tol = round(archive.policy.gap_tolerance_seconds * NS) if gap_tolerance is None else gap_tolerance
    catalog = archive.catalog
    tasks = [
        Task(r.id, r.type, r.start_ns, r.end_ns, tuple(json.loads(r.officers)), tuple(json.loads(r.devices)))
        for r in catalog.tasks.all()
    ]
    if task_ids is not None:
        unknown = set(task_ids) - {t.id for t in tasks}
        if unknown:
            raise TaskError(f"no task {', '.join(sorted(unknown))} in this archive")
        tasks = [t for t in tasks if t.id in set(task_ids)]
    if not tasks:
        return []
    segs = catalog.segments.timed_recordings()
    by_officer: dict[Any, list[tuple[str, int, int]]] = {}  # each task looks at its officers' recordings only
    for d, officer, s, e in segs:
        by_officer.setdefault(officer, []).append((d, s, e))
    pairs: list[tuple[Task, str]] = []
    for t in tasks:
        found = set(t.devices) | {
            d
            for officer in {o for o in t.officers if isinstance(o, Hashable)}  # another never equals an officer
            for d, s, e in by_officer.get(officer, ())
            if s < t.end and e > t.start
        }
        pairs += [(t, d) for d in sorted(found)]
    covs = (
        timeline.coverage(
            [d for d, *_ in segs],
            [s for *_, s, _ in segs],
            [e for *_, e in segs],
            [d for _, d in pairs],
            [t.start for t, _ in pairs],
            [t.end for t, _ in pairs],
        )
        if pairs
        else []
    )
    if explanations is None:
        explanations = Explanations([(d, s, e) for d, _, s, e in segs], catalog.gap_explanations.all(),
                                    catalog.devices.events(), tol)  # fmt: skip
    per_task: dict[str, list[tuple[str, Any]]] = {}  # grouped once: a scan of every pair per task was quadratic
    for (task, d), c in zip(pairs, covs, strict=True):
        per_task.setdefault(task.id, []).append((d, c))
    out = []
    for t in tasks:
        mine = per_task.get(t.id, [])
        devices = [d for d, _ in mine]
        covered_by = [_subtract([(t.start, t.end)], c.uncovered) for _, c in mine]
        union_uncovered = [(t.start, t.end)]
        for iv in covered_by:
            union_uncovered = _subtract(union_uncovered, iv)
        tc = TaskCoverage(t, devices, _at_least(1, covered_by), _at_least(2, covered_by), union_uncovered)
        for a, b in union_uncovered:
            gap = {"start": rfc3339(a), "end": rfc3339(b)}
            for ea, eb, why in explanations.within(devices, a, b):
                tc.explained.append({"start": rfc3339(ea), "end": rfc3339(eb), **why, "gap": gap})
            for x0, x1 in explanations.unexplained(devices, a, b):
                if x1 - x0 > tol:
                    tc.findings.append(
                        Finding(
                            "gap_unexplained",
                            f"task {t.id}: {(x1 - x0) / NS:.0f} s not recorded by any of its devices "
                            f"({', '.join(devices) or 'none'}) and no cause recorded",
                            device=",".join(devices) or None,
                            start=x0,
                            end=x1,
                            evidence={"task": t.id, "devices": devices},
                        )
                    )
        out.append(tc)
    return out


@dataclass(frozen=True)
class CoverageCheck:
    """The coverage of the tasks asked for (all when none was named) and the recording checklist's findings
    (custodes.preuse: for named tasks only ``task_not_recorded``; recordings outside every task only when all
    tasks were asked for): what ``custodes task coverage`` shows and the HTTP API returns."""

    tasks: list[TaskCoverage]
    checklist: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        """What makes the check fail: every unexplained gap, and every checklist finding above info."""
        return [f for c in self.tasks for f in c.findings] + [f for f in self.checklist if f.severity != "info"]

    def to_json(self) -> CoverageCheckJSON:
        return {
            "ok": not self.findings,
            "tasks": [c.to_json() for c in self.tasks],
            "checklist": [f.to_json() for f in self.checklist],
        }


def coverage_check(archive: Archive, task_ids: Sequence[str] | None = None) -> CoverageCheck:
    """:func:`task_coverage` of ``task_ids`` (None or empty: every task) with the recording checklist (Art. 7)."""
    from custodes.preuse import checklist_findings

    covs = task_coverage(archive, list(task_ids) if task_ids else None)
    checklist = [f for f in checklist_findings(archive, covs) if not task_ids or f.kind == "task_not_recorded"]
    return CoverageCheck(covs, checklist)
