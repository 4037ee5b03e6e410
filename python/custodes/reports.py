"""The compliance report model (Art. 25): built only from catalog facts and findings.

:func:`build_report` returns one JSON-ready dict, the stable model for agency
tools, typed by :class:`Report` (one TypedDict per section; its JSON schema,
generated from these types by :func:`report_schema`, is published as
``docs/report.schema.json``); reporter plugins render it (JSON, CSV, HTML,
PDF). A caller may build only the sections it needs
(``build_report(archive, sections=("completeness",))``): the facts a section
needs are gathered only when a section asked for needs them. Every number
comes from a query on the catalog for the period and scope, so a test can
count the same things another way and compare.
"""

from __future__ import annotations

import bisect
import json
import statistics
import time
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, Literal, TypedDict, cast

from custodes import __version__
from custodes.archive import Archive
from custodes.catalog import Scope
from custodes.defaults import NS
from custodes.errors import CustodesError
from custodes.findings import ARTICLES, Finding, ns_from_rfc3339, rfc3339
from custodes.keys import fingerprint
from custodes.messages import LANGUAGES
from custodes.verify import VerifyResult, standing_findings, verify, verify_ledger_only

if typing.TYPE_CHECKING:
    from custodes.catalog.registry import SegmentDeviceFacts
    from custodes.tasks import Explanations, TaskCoverage

__all__ = [
    "DEVICE_COUNT_LABELS",
    "SCOPES",
    "SECTIONS",
    "AccessSection",
    "ArchiveInfo",
    "AssignmentCorrection",
    "CheckpointInfo",
    "ClocksSection",
    "ExplainedGap",
    "CompletenessSection",
    "Concern",
    "DelayHours",
    "Delivery",
    "DeviceCount",
    "DeviceTask",
    "DevicesSection",
    "DeviceTimeline",
    "Drift",
    "IntegritySection",
    "OverdueObject",
    "Period",
    "Report",
    "ReportError",
    "RecordingSection",
    "ReportFinding",
    "RetentionSection",
    "ScopeInfo",
    "StorageCheckInfo",
    "StorageCopyCheck",
    "TaskShare",
    "TaskTimeline",
    "TimelinessSection",
    "Timelines",
    "UncheckedDevice",
    "UnitDevices",
    "VerificationSection",
    "build_report",
    "default_lang",
    "report_schema",
]

#: What a report can be scoped to: the whole archive, or one unit, officer, device or case.
SCOPES = ("archive", "unit", "officer", "device", "case")
#: Art. 25 concerns and the finding kinds that show each.
CONCERNS = {
    "concern_deleted": ("missing", "sequence_break"),
    "concern_not_recorded": ("gap_unexplained", "task_not_recorded"),
    "concern_unapproved": ("unapproved_access",),
    "concern_altered": (
        "modified",
        "truncated_object",
        "ledger_mismatch",
        "checkpoint_mismatch",
        "untrusted_key",
        "witness_mismatch",
        "overlap",
        "name_time_mismatch",
    ),
    "concern_damaged": ("truncated", "no_moov", "malformed"),
    # Art. 25 (7), footage lost for not being stored: a file an ingest could not store, while no ingest has stored
    # it since (in_concern: a resolved failure is none).
    "concern_not_stored": ("ingest_failed",),
    # lending and losing devices: from the registry and its assignments (custodes.devices)
    "concern_device_lent": ("device_lent",),
    "concern_device_lost": ("lost_device",),
}


#: Overdue objects listed by name in a report (the most overdue first); all of them are counted.
OVERDUE_LISTED = 100

#: The sections of a report after its header, in the order the model holds them: what ``sections`` may name.
SECTIONS = (
    "integrity",
    "completeness",
    "clocks",
    "timeliness",
    "recording",
    "retention",
    "access",
    "devices",
    "concerns",
    "findings",
    "timelines",
)


class ReportError(CustodesError, ValueError):
    """A report that cannot be built as asked (a section that does not exist)."""


# The model's types. Times are RFC 3339 UTC strings unless a name says ns (int ns since the epoch, UTC) or
# seconds; shares are 0 to 1. The JSON is exactly these dicts (report_schema() is their JSON schema).


class ArchiveInfo(TypedDict):
    """Which archive the report speaks for, and the fingerprint of its checkpoint key (to compare with the one
    ``init`` printed and kept outside the archive)."""

    id: str
    origin: str
    verifier_key_fingerprint: str


#: The period asked for: recordings that start in [from, to); None: unbounded.
Period = TypedDict("Period", {"from": str | None, "to": str | None})


class ScopeInfo(TypedDict):
    """The scope asked for (one of SCOPES, its value) and the devices it covers (None: every device)."""

    kind: str
    value: str | None
    devices: list[str] | None


class CheckpointInfo(TypedDict):
    """The latest signed checkpoint: tree size and root (hex)."""

    size: int
    root: str


class OverdueObject(TypedDict):
    """An object due for re-hashing: its SHA-256, size, when it was stored and last re-hashed (None: never)."""

    object: str
    size: int
    stored: str
    last_verified: str | None


class VerificationSection(TypedDict):
    """The objects the policy's verification window says are due for re-hashing."""

    window_days: float
    overdue: int
    overdue_bytes: int
    overdue_objects: list[OverdueObject]


class StorageCopyCheck(TypedDict):
    """One copy's storage as the latest ``custodes storage check`` probed it: where, and what it was missing."""

    copy: str
    storage: str
    backend: str
    missing: list[str]


class StorageCheckInfo(TypedDict):
    """The latest ``custodes storage check`` (its ledger entry): when, by whom, each copy's missing guarantees."""

    time: str
    by: str | None
    ledger_index: int
    copies: list[StorageCopyCheck]


class IntegritySection(TypedDict):
    """Art. 23: the verification run for the report (ledger only, or every object re-hashed)."""

    full_verify: bool
    ok: bool
    checked: int
    bytes: int
    findings: int
    objects_never_verified: int
    verification: VerificationSection
    #: With --incremental: the verifier's kept replay (file, entries it held, entries replayed) or why the whole
    #: ledger was replayed (custodes.catalog.replay_cache); None: the whole ledger was replayed, as by default.
    replay: dict[str, Any] | None
    storage_check: StorageCheckInfo | None  # None: the storage was never checked


class TaskShare(TypedDict):
    """One task's coverage: the shares of its window recorded by one device and by two, and its unexplained gaps."""

    task: str
    covered_share: float
    two_device_share: float
    unexplained: int
    explained: list[ExplainedGap]


class ExplainedGap(TypedDict, total=False):
    """A task gap (``gap``: its start and end) and, for the part ``start``..``end`` of it, what explained it
    (custodes.tasks.Explanations): its ``cause`` and ``source`` (``device_event``, or the annotation's source),
    and the annotation (``annotation``, ``ledger_index``, ``note``) or the event (``event``, ``time``)."""

    start: str
    end: str
    gap: dict[str, str]
    cause: str
    source: str
    device: str
    note: str
    annotation: int
    ledger_index: int | None
    event: str
    time: str


class CompletenessSection(TypedDict):
    """Art. 11, 14: gaps (explained by cause, or not), sequence breaks, and each task's coverage."""

    segments: int
    gaps: int
    gaps_open: int
    gaps_resolved: int
    gaps_by_cause: dict[str, int]
    unexplained_gaps_in_tasks: int
    sequence_breaks: int
    internal_gaps: int
    tasks: list[TaskShare]


class Drift(TypedDict):
    """One device's clock against trusted time: readings, the largest and the latest offset (device - trusted)."""

    device: str
    readings: int
    max_offset_seconds: float
    last_offset_seconds: float


class ClocksSection(TypedDict):
    """Art. 10: device clocks: drift, clock faults, segments whose times were corrected."""

    drift: list[Drift]
    clock_findings_resolved: int
    clock_findings_open: int
    clock_unset: int
    clock_future: int
    name_time_mismatch: int
    corrected_segments: int


class DelayHours(TypedDict):
    """Hours from recording to ingest: the lowest, the median, the highest."""

    min: float
    median: float
    max: float


class TimelinessSection(TypedDict):
    """Art. 16: how long after recording the footage was ingested (None: no timed recording)."""

    ingests: int
    late_ingest: int
    delay_hours: DelayHours | None


class UncheckedDevice(TypedDict):
    """A device whose recordings in the scope lack a pre-use check (Art. 10): how many, and why."""

    device: str
    checks: int
    no_preuse_check: int
    clock_not_set_before_use: int


class RecordingSection(TypedDict):
    """The duties before and around recording: pre-use checks (Art. 10), the recording checklist (Art. 7) and
    the enforcement context of each recording (Art. 5); the findings themselves are in ``findings``
    (custodes.preuse)."""

    preuse_check_required: bool
    checks: int
    no_preuse_check: int
    clock_not_set_before_use: int
    unchecked_devices: list[UncheckedDevice]
    required_task_types: list[str]
    task_not_recorded: int
    no_enforcement_context: int


class RetentionSection(TypedDict):
    """Art. 19, 20: the scope's recordings due for purge, held, kept for ever, purged."""

    due: int
    held: int
    long_term: int
    purged: int


class Delivery(TypedDict):
    """A copy that did not reach the person, or whose receipt was not confirmed: the action (open, export), who
    and which request, the recordings, why, when, and its ledger entry."""

    action: str
    person: str | None
    request: int | None
    segments: list[int]
    reason: str | None
    time: str | None
    ledger_index: int


class AccessSection(TypedDict):
    """Art. 22, 24: requests and decisions, views and exports delivered, copies that failed or are unconfirmed."""

    requests: int
    approved: int
    denied: int
    refusals: int
    views: int
    exports: int
    failed: int
    failed_deliveries: list[Delivery]
    unconfirmed: int
    unconfirmed_deliveries: list[Delivery]


class Concern(TypedDict):
    """Art. 25: the findings of one concern a supervisor looks into, with their segments and ledger entries."""

    article: int
    concern: str
    count: int
    kinds: list[str]
    segments: list[int]
    ledger_indexes: list[int]


class DeviceCount(TypedDict):
    """Recordings of one registry finding kind in a unit: how many, on which devices, and their segments."""

    count: int
    devices: list[str]
    segments: list[int]


class UnitDevices(TypedDict):
    """One unit's devices (``unit`` None: devices not in the registry): how many are registered, by their status
    now, and the period's recordings lent, unassigned, lost, retired, unregistered (custodes.devices)."""

    unit: str | None
    devices: int
    by_status: dict[str, int]
    lent: DeviceCount
    unassigned: DeviceCount
    lost: DeviceCount
    retired: DeviceCount
    unregistered: DeviceCount
    unchecked: DeviceCount  # recordings without a pre-use check, or whose check found the clock off (Art. 10)


class AssignmentCorrection(TypedDict):
    """An assignment given to another officer after the fact (``device assign --replace``,
    custodes.devices.corrections): ``recordings_before`` of its device's recordings were ingested before it."""

    device: str
    start: str
    end: str | None
    officer: str
    replaced: str
    by: str
    at: str
    ledger_index: int
    recordings_before: int


class DevicesSection(TypedDict):
    """Art. 6, 9, 25: the device registry (in use once one device is registered) and, per unit, its devices and
    the recordings the registry has findings on; the corrections of assignments of the period's devices made
    after footage of their time was ingested (Art. 25: who was responsible changed after the fact)."""

    in_use: bool
    registered: int
    units: list[UnitDevices]
    corrections: list[AssignmentCorrection]


class _FindingKind(TypedDict):
    kind: str
    article: int | None


class ReportFinding(_FindingKind, total=False):
    """One finding: its kind and article always; the keys its source gives (a Finding's, verify's, a refusal's),
    and any facts of its own kind (open: the schema allows other keys)."""

    severity: str
    message: str
    device: str | None
    path: str | None
    start: str | None
    end: str | None
    duration: float | None
    evidence: dict[str, Any]
    segment: int | None
    ledger_index: int | None


class DeviceTask(TypedDict):
    """A task a device served: its window (ns) and the unexplained gaps in it ([start, end] ns)."""

    task: str
    start: int
    end: int
    unexplained: list[list[int | None]]


class DeviceTimeline(TypedDict):
    """One device's picture: recorded intervals and explained gaps ([start, end(, cause)], ns), its tasks, and
    the clock correction applied (seconds; None: none)."""

    device: str
    recorded: list[list[int]]
    explained: list[list[int | str]]
    tasks: list[DeviceTask]
    correction_seconds: float | None


class TaskTimeline(TypedDict):
    """One task's picture: window (ns), unexplained ([start, end] ns) and explained ([start, end, cause], ns)
    gaps, and each device's recording inside the window ([start, end] ns)."""

    task: str
    start: int
    end: int
    unexplained: list[list[int | None]]
    explained: list[list[int | str]]
    devices: dict[str, list[list[int]]]


class Timelines(TypedDict):
    """Data for the pictures: per device and per task."""

    devices: list[DeviceTimeline]
    tasks: list[TaskTimeline]


class _ReportHeader(TypedDict):
    report: str
    version: str
    lang: str
    archive: ArchiveInfo
    generated: str
    period: Period
    scope: ScopeInfo
    checkpoint: CheckpointInfo | None


class Report(_ReportHeader, total=False):
    """The whole model: the header (always) and each section asked for (all by default), named as SECTIONS."""

    integrity: IntegritySection
    completeness: CompletenessSection
    clocks: ClocksSection
    timeliness: TimelinessSection
    recording: RecordingSection
    retention: RetentionSection
    access: AccessSection
    devices: DevicesSection
    concerns: list[Concern]
    findings: list[ReportFinding]
    timelines: Timelines


#: Records whose JSON may hold keys beyond their type's: a finding carries the facts of its own kind.
_OPEN_RECORDS = (ReportFinding,)
_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}


def report_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of :class:`Report`, generated from the types above: every record's keys,
    which are required, and their JSON types."""
    defs: dict[str, Any] = {}
    root = _schema_of(Report, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "custodes compliance report",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if tp in _JSON_TYPES:
        return _JSON_TYPES[tp]
    if typing.is_typeddict(tp):
        if tp is Report:
            return _record_schema(tp, defs)
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # reserved before its fields are walked: a record met again is a reference
            defs[tp.__name__] = _record_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [_schema_of(a, defs) for a in args]}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0], defs)}
    if origin is dict and args[0] is str:
        return {"type": "object", "additionalProperties": _schema_of(args[1], defs)}
    if origin is Literal:
        return {"enum": list(args)}
    raise TypeError(f"no JSON schema for {tp!r}")  # a type the model must not use: JSON has no such value


def _record_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(tp)
    out: dict[str, Any] = {"type": "object"}
    if tp.__doc__ and tp.__doc__.strip() and not tp.__doc__.startswith(tp.__name__):
        out["description"] = " ".join(tp.__doc__.split())
    out["properties"] = {key: _schema_of(hint, defs) for key, hint in hints.items()}
    out["required"] = [key for key in hints if key in tp.__required_keys__]
    out["additionalProperties"] = tp in _OPEN_RECORDS
    return out


def _verification_section(archive: Archive, now: int) -> VerificationSection:
    """The objects the policy's verification window says are due for re-hashing (custodes.schedule): last
    re-hashed before the window began, or never and stored before it; `custodes verify --older-than DAYS` takes
    them, the oldest first."""
    window = archive.policy.verification_window_days
    count, size, most = archive.catalog.objects.overdue(now - int(window * 86_400 * 10**9), OVERDUE_LISTED)
    return {
        "window_days": window,
        "overdue": count,
        "overdue_bytes": size,
        "overdue_objects": [
            {
                "object": o.sha256,
                "size": o.size,
                "stored": rfc3339(o.stored_ns),
                "last_verified": None if o.last_verified_ns is None else rfc3339(o.last_verified_ns),
            }
            for o in most
        ],
    }


def default_lang(archive: Archive) -> str:
    """The language of a report when none is asked for: the policy's ``[report] lang``, else Chinese."""
    return str(archive.policy.extra.get("report", {}).get("lang", "zh"))


def scope_problem(scope: str, value: str | None) -> str | None:
    """What is wrong with a report's scope as given (one of :data:`SCOPES`, and an id with any but ``archive``, none
    with ``archive``); None when nothing is."""
    if scope not in SCOPES or (scope != "archive") != bool(value):
        return f"scope {scope!r}: use archive, or one of unit, officer, device, case with an id"
    return None


def _asked_for(
    archive: Archive, scope: str, value: str | None, start: int | None, end: int | None, lang: str
) -> list[str] | None:
    """The scope's devices (None: the whole archive), or a ReportError for a report that cannot be made as asked:
    a scope that is none, a period that ends before it starts, a language there is none of, a device or a case the
    archive does not know (a hostile review: each gave a confident report of 0 recordings and 0 gaps, where the
    query API refuses the same name)."""
    problem = scope_problem(scope, value)
    if problem is not None:
        raise ReportError(problem)
    if start is not None and end is not None and end <= start:
        raise ReportError(f"the period ends ({rfc3339(end)}) where or before it starts ({rfc3339(start)})")
    if lang not in LANGUAGES:
        raise ReportError(f"no report language {lang!r} (known: {', '.join(LANGUAGES)})")
    catalog = archive.catalog
    if scope == "device" and not (catalog.devices.exists(value or "") or catalog.registry.get(value or "")):
        raise ReportError(f"the archive knows no device {value!r}: no report is made for it")
    if scope == "case" and not catalog.query.case_exists(value or ""):
        raise ReportError(f"the archive knows no case {value!r}: no report is made for it")
    # (an officer or a unit may have no recording in the archive and still be one: a device was issued to them at
    # a docking since superseded, a unit has yet to record; their report says 0 recordings)
    return _devices_in_scope(archive, scope, value)


def _devices_in_scope(archive: Archive, scope: str, value: str | None) -> list[str] | None:
    devices = archive.catalog.devices
    if scope == "archive":
        return None
    if scope == "device":
        return [value or ""]
    if scope == "unit":
        return devices.of_unit(value)
    if scope == "officer":
        return devices.of_officer(value)
    return devices.of_case(value)


def build_report(
    archive: Archive,
    *,
    start: int | None = None,
    end: int | None = None,
    scope: str = "archive",
    value: str | None = None,
    full_verify: bool = False,
    incremental: bool = False,
    lang: str = "zh",
    at: int | None = None,
    sections: Iterable[str] = SECTIONS,
) -> Report:
    """The report for segments whose recording starts in [start, end) (ingest time when they have no clock).

    ``at`` (ns; default now) is the moment the report speaks for: what is due
    for purge, and the generation time printed on it. ``sections`` (names from
    SECTIONS; all by default) are the sections built after the header; a fact
    several sections share (the catalog's findings, the verification, the
    tasks' coverage) is gathered once, and only when one of them is asked for.
    One section per concern of the regulation, each built by its own function
    below. Raises :class:`ReportError` for a section that does not exist."""
    wanted = {sections} if isinstance(sections, str) else set(sections)  # "completeness" is one name, not letters
    unknown = sorted(wanted - set(SECTIONS))
    if unknown:
        raise ReportError(f"no report section {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    devices = _asked_for(archive, scope, value, start, end, lang)
    lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
    # A recording is in the period its time says; with an unset clock (before the floor), its ingest's.
    facts = _Facts(
        archive,
        Scope(devices, lo, hi, value if scope == "officer" else None),
        full_verify,
        time.time_ns() if at is None else at,
        incremental,
    )
    cp = archive.catalog.checkpoints.latest()
    report: Report = {
        "report": "custodes compliance report",
        "version": __version__,
        "lang": lang,
        "archive": {
            "id": archive.policy.archive_id,
            "origin": archive.policy.origin,
            # to compare with the fingerprint init printed and kept outside the archive (custodes.keys)
            "verifier_key_fingerprint": fingerprint(archive.verifier_key),
        },
        "generated": rfc3339(facts.now),
        "period": {"from": rfc3339(start), "to": rfc3339(end)},
        "scope": {"kind": scope, "value": value, "devices": devices},
        "checkpoint": {"size": cp[0], "root": cp[1].hex()} if cp else None,
    }
    if "integrity" in wanted:
        report["integrity"] = facts.integrity()
    if "completeness" in wanted:
        report["completeness"] = facts.completeness()
    if "clocks" in wanted:
        report["clocks"] = _clocks_section(archive, facts.period, facts.findings)
    if "timeliness" in wanted:
        report["timeliness"] = _timeliness_section(archive, facts.period, facts.findings)
    if "recording" in wanted:
        report["recording"] = _recording_section(archive, facts.period, facts.duties)
    if "retention" in wanted:
        report["retention"] = _retention_section(archive, facts.period, facts.now)
    if "access" in wanted:
        report["access"] = facts.access[0]
    if "devices" in wanted:
        report["devices"] = _devices_section(archive, facts.period, facts.registry, facts.duties)
    if "concerns" in wanted:
        report["concerns"] = _concerns(facts.everything)
    if "findings" in wanted:
        report["findings"] = facts.everything
    if "timelines" in wanted:
        report["timelines"] = _timelines(archive, facts.period, facts.coverage)
    return report


class _Facts:
    """What several sections share, each gathered on first use (so a report of one section reads only what it
    needs) and then kept for the others."""

    def __init__(self, archive: Archive, period: Scope, full_verify: bool, now: int, incremental: bool) -> None:
        self.archive, self.period, self.full_verify, self.now = archive, period, full_verify, now
        self.incremental = incremental

    @cached_property
    def findings(self) -> list[dict[str, Any]]:
        """The findings ingest recorded in the scope, each gap and clock fault with what resolved it since."""
        found = _catalog_findings(self.archive, self.period)
        if any(f.get("kind") == "gap" for f in found):
            _resolve_gaps(found, self.explanations)
        _resolve_clocks(self.archive, found)
        _resolve_failures(self.archive, found)
        return found

    @cached_property
    def explanations(self) -> Explanations:
        """Every stated cause of a device not recording: read only when a gap is to be resolved (it reads every
        recording), then shared with the tasks' coverage."""
        from custodes.tasks import Explanations

        return Explanations.of(self.archive)

    @cached_property
    def verification(self) -> VerifyResult:
        if self.full_verify:
            return verify(self.archive, incremental=self.incremental)
        result = verify_ledger_only(self.archive, incremental=self.incremental)
        # Not re-hashed here: what the latest verify found wrong with an object stands until a verify finds it sound
        # or a repair mends it (a hostile review: the report said integrity ok, 0 findings, after verify had found
        # an object modified).
        result.findings += standing_findings(self.archive, "this report")
        return result

    @cached_property
    def coverage(self) -> list[TaskCoverage]:
        """The coverage of the tasks that start in the period and name a device of the scope."""
        from custodes.tasks import task_coverage

        devices, lo, hi = self.period.devices, self.period.lo, self.period.hi
        return [
            c
            # the explanations the gaps were resolved by, when they were read (else task_coverage reads only what
            # its tasks need)
            for c in task_coverage(self.archive, explanations=self.__dict__.get("explanations"))
            if lo <= c.task.start < hi and (devices is None or set(c.devices) & set(devices))
        ]

    @cached_property
    def unexplained(self) -> list[dict[str, Any]]:
        return [f.to_json() for c in self.coverage for f in c.findings]

    @cached_property
    def duties(self) -> list[dict[str, Any]]:
        """The pre-use, checklist and context findings of the scope (custodes.preuse), each with its segment and
        that segment's ledger index; a task on the checklist with its task. Derived now, from the catalog."""
        from custodes.preuse import checklist_findings, preuse_findings

        policy = self.archive.policy
        coverage = self.coverage if policy.required_task_types else []  # the tasks are read only when needed
        found = [f for f in preuse_findings(self.archive) if _in_scope(f, self.period)]
        found += [  # the coverage is of the scope's tasks already
            f
            for f in checklist_findings(self.archive, coverage)
            if f.kind == "task_not_recorded" or _in_scope(f, self.period)
        ]
        return [
            f.to_json() | {"segment": f.evidence.get("segment"), "ledger_index": f.evidence.get("segment_ledger_index")}
            for f in found
        ]

    @cached_property
    def access(self) -> tuple[AccessSection, list[dict[str, Any]]]:
        return _access_section(self.archive, self.period)

    @cached_property
    def registry(self) -> list[tuple[SegmentDeviceFacts, Finding]]:
        """The registry's findings of the scope's recordings, derived now (custodes.devices)."""
        from custodes.devices import device_findings

        return device_findings(self.archive, self.period)

    @cached_property
    def everything(self) -> list[ReportFinding]:
        """Every finding of the report, each with its article (_with_articles makes every dict a ReportFinding)."""
        integrity = [f.to_json() | {"article": 23} for f in self.verification.findings]
        registry = [f.to_json() | {"segment": s.segment_id, "ledger_index": s.ledger_seq} for s, f in self.registry]
        found = self.findings + integrity + self.unexplained + self.duties + self.access[1] + registry
        return cast(list[ReportFinding], _with_articles(found))

    def integrity(self) -> IntegritySection:
        result = self.verification
        return {
            "full_verify": self.full_verify,
            "ok": result.ok,
            "checked": result.checked,
            "bytes": result.bytes,
            "findings": len(result.findings),
            "objects_never_verified": self.archive.catalog.objects.never_verified(),
            "verification": _verification_section(self.archive, self.now),
            "storage_check": _latest_storage_check(self.archive),
            "replay": result.replay,
        }

    def completeness(self) -> CompletenessSection:
        segments = self.archive.catalog.segments.count_in_scope(self.period)
        return _completeness_section(segments, self.findings, self.coverage, self.unexplained)


def _latest_storage_check(archive: Archive) -> StorageCheckInfo | None:
    """The latest ``storage_check`` entry (custodes.repair.check_storage), or None: never checked. Its values are
    read as the ledger holds them, each of the type the model says or left out (an entry is never trusted to be
    well-formed: a report is not where a malformed one fails)."""
    found = archive.catalog.ledger.latest_of_type("storage_check")
    if found is None:
        return None
    index, data = found
    e = json.loads(data)
    copies: list[StorageCopyCheck] = []
    listed = e.get("copies")
    for c in listed if isinstance(listed, list) else []:
        if not isinstance(c, dict):
            continue
        guarantees = c["guarantees"] if isinstance(c.get("guarantees"), list) else []
        copies.append(
            {
                "copy": str(c.get("copy", "")),
                "storage": str(c.get("storage", "")),
                "backend": str(c.get("backend", "")),
                "missing": [
                    str(g.get("name")) for g in guarantees if isinstance(g, dict) and g.get("held") is not True
                ],
            }
        )
    when = e.get("time")
    return {
        "time": rfc3339(when) if isinstance(when, int) else "",
        "by": e["by"] if isinstance(e.get("by"), str) else None,
        "ledger_index": index,
        "copies": copies,
    }


def _catalog_findings(archive: Archive, period: Scope, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The findings ingest recorded in the scope (``kinds``: of these kinds only; None: all), each with its
    segment and that segment's ledger index (None when the segment is not in the scope), in one pass. At 10^6
    findings they are most of the model's memory: their JSON is read in runs of one document (so each run shares
    its key strings), and the short values most findings repeat (kind, severity, message, device) are shared too; a
    detail SQLite does not read as one JSON object is parsed alone, as it always was, and fails or not as it always
    did."""
    out: list[dict[str, Any]] = []
    shared: dict[str, str] = {}
    run: list[tuple[Any, Any, str]] = []

    def flush() -> None:
        parsed = None
        if len(run) > 1:
            try:
                parsed = json.loads("[" + ",".join(detail for _, _, detail in run) + "]")
            except ValueError:
                parsed = None
        if parsed is None or len(parsed) != len(run):
            parsed = [json.loads(detail) for _, _, detail in run]
        for (seg, ledger_index, _), f in zip(run, parsed, strict=True):
            if type(f) is not dict:
                out.append(f | {"segment": seg, "ledger_index": ledger_index})  # fails as it always did
                continue
            for key in _SHARED_VALUES:
                v = f.get(key)
                if type(v) is str and len(v) <= _SHARED_LENGTH:
                    f[key] = shared.setdefault(v, v)
            f["segment"], f["ledger_index"] = seg, ledger_index  # what `f | {...}` gives, without a copy
            out.append(f)
        run.clear()

    for seg, ledger_index, detail, is_object in archive.catalog.findings.in_scope(period, kinds):
        if not is_object:
            flush()
            run.append((seg, ledger_index, detail))
            flush()
        else:
            run.append((seg, ledger_index, detail))
            if len(run) >= _RUN:
                flush()
    flush()
    return out


#: Findings parsed as one JSON document; the values of these keys shared between findings when short.
_RUN = 1000
_SHARED_VALUES = ("kind", "severity", "message", "device")
_SHARED_LENGTH = 200


def _resolve_gaps(findings: list[dict[str, Any]], explanations: Explanations) -> None:
    """Each ``gap`` finding with ``resolved_by``: the explanations that cover the whole gap (an annotation made
    after the fact, with its ledger index; the device event that explains it, with its kind and time, by the
    rule of custodes.tasks.Explanations), or None while part of it is explained by nothing (it stays open).
    The finding itself is recorded once; what resolves it is a later fact, shown beside it, not a second
    finding. Set in place."""
    for f in findings:
        if f.get("kind") != "gap":
            continue
        try:
            device, a, b = f["device"], ns_from_rfc3339(f["start"]), ns_from_rfc3339(f["end"])
        except (KeyError, ValueError):  # a detail edited out of shape: verify names it; the gap is shown open
            device = None
        if not isinstance(device, str):
            f["resolved_by"] = None
            continue
        covering = explanations.within([device], a, b)
        f["resolved_by"] = (
            None
            if explanations.unexplained([device], a, b)
            else [
                {k: v for k, v in why.items() if k in _RESOLUTION_KEYS} | {"start": rfc3339(x0), "end": rfc3339(x1)}
                for x0, x1, why in covering
            ]
        )


#: Findings of a device clock that a dock clock reading corrects: the recording's time is known to be wrong, and
#: a reading of that clock against trusted time (at the ingest that stored it, or a later docking) measures by how
#: much (custodes.ingest corrects times by such readings). ``clock_unset`` without a time (the container held
#: none) is not among them: no reading gives a time to a recording that has none.
CLOCK_CORRECTED = ("clock_future", "clock_unset")


def _resolve_clocks(archive: Archive, findings: list[dict[str, Any]]) -> None:
    """Each clock finding (:data:`CLOCK_CORRECTED`) with ``resolved_by``: the first dock clock reading of its
    device taken at the ingest that stored the recording or later (its ingest, the ledger index of the entry
    holding it, the offset it measured), or None while no docking has read that clock since. Set in place; the
    finding itself stays one. Each device's readings are read once, each docking's entry looked up once."""
    catalog = archive.catalog
    readings: dict[str, list[tuple[int, int, int]]] = {}
    entries: dict[int, int | None] = {}
    for f in findings:
        if f.get("kind") not in CLOCK_CORRECTED:
            continue
        f["resolved_by"] = None
        segment = f.get("segment")
        docked = catalog.devices.docked(segment) if isinstance(segment, int) and f.get("start") is not None else None
        if docked is None:
            continue
        device, own = docked
        if device not in readings:
            readings[device] = catalog.devices.dock_readings_by_ingest(device)
        mine = readings[device]
        first = bisect.bisect_left(mine, own, key=lambda r: r[0])  # the first docking at or after its own
        if first == len(mine):
            continue
        at = mine[first]
        if at[0] not in entries:
            entries[at[0]] = catalog.ledger.ingest_begin_index(at[0])
        f["resolved_by"] = [
            {
                "source": "clock_reading",
                "ingest": at[0],
                "ledger_index": entries[at[0]],
                "offset_seconds": (at[1] - at[2]) / NS,
            }
        ]


def _resolve_failures(archive: Archive, findings: list[dict[str, Any]]) -> None:
    """Each ``ingest_failed`` of a file with ``resolved_by``: the ingest that stored that file since (a re-run,
    or an earlier ingest that held it already; its ledger index, the recording), or None while the archive holds
    no such recording (custodes.catalog.devices.FINDING_SEGMENT: the finding's segment is it). ``matched_by``
    says how sure that is: ``digest`` where the failed run read the file whole, else ``name and size`` (a file it
    could not read at all: a recording of that name and size is taken for it). Set in place: the failure stays
    one finding, as it happened; the report says it is mended."""
    for f in findings:
        if f.get("kind") != "ingest_failed" or not f.get("path"):
            continue
        f["resolved_by"] = None
        segment = f.get("segment")
        if not isinstance(segment, int) or (docked := archive.catalog.devices.docked(segment)) is None:
            continue
        evidence = f.get("evidence")
        read = isinstance(evidence, dict) and evidence.get("sha256") is not None
        f["resolved_by"] = [
            {
                "source": "ingest",
                "ingest": docked[1],
                "segment": segment,
                "ledger_index": archive.catalog.segments.ledger_index(segment),
                "matched_by": "digest" if read else "name and size",
            }
        ]


#: What a resolved gap shows of each explanation.
_RESOLUTION_KEYS = ("source", "cause", "ledger_index", "event", "time")


def _with_articles(everything: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every finding with its article: its own, or the one its kind is under. Set in place (each finding is a dict
    of its own, made for this model): one dict per finding, not two."""
    for f in everything:
        f["article"] = f.get("article") or ARTICLES.get(f["kind"])
    return everything


def _count(findings: list[dict[str, Any]], kind: str) -> int:
    return sum(1 for f in findings if f["kind"] == kind)


def _completeness_section(
    segments: int, findings: list[dict[str, Any]], covs: list[TaskCoverage], unexplained: list[dict[str, Any]]
) -> CompletenessSection:
    """Art. 11, 14: gaps (explained by cause, or not), sequence breaks, and each task's coverage."""
    gaps_by_cause: dict[str, int] = {}
    # Each task gap once per cause: a gap explained again (a second annotation) is not a second gap.
    for cause in {(c.task.id, e["gap"]["start"], e["gap"]["end"], e["cause"]) for c in covs for e in c.explained}:
        gaps_by_cause[cause[3]] = gaps_by_cause.get(cause[3], 0) + 1
    if unexplained:
        gaps_by_cause["unexplained"] = len(unexplained)
    resolved = sum(1 for f in findings if f["kind"] == "gap" and f.get("resolved_by"))
    return {
        "segments": segments,
        "gaps": _count(findings, "gap"),  # each gap once (custodes.catalog.devices.FINDING_IDENTITY)
        "gaps_open": _count(findings, "gap") - resolved,
        "gaps_resolved": resolved,
        "gaps_by_cause": gaps_by_cause,
        "unexplained_gaps_in_tasks": len(unexplained),
        "sequence_breaks": _count(findings, "sequence_break"),
        "internal_gaps": _count(findings, "internal_gap"),
        "tasks": [
            {
                "task": c.task.id,
                "covered_share": c.covered / c.window,
                "two_device_share": c.two_device / c.window,
                "unexplained": len(c.findings),
                "explained": cast(list[ExplainedGap], c.explained),  # each with its gap and what explained it
            }
            for c in covs
        ],
    }


def _clocks_section(archive: Archive, period: Scope, findings: list[dict[str, Any]]) -> ClocksSection:
    """Art. 10: device clocks: drift against trusted time, clock faults, segments whose times were corrected."""
    drift: list[Drift] = [
        {
            "device": d.device_id,
            "readings": d.readings,
            "max_offset_seconds": d.max_offset_ns / NS,
            "last_offset_seconds": d.last_offset_ns / NS,
        }
        for d in archive.catalog.devices.drift(period.devices)
    ]
    resolved = sum(1 for f in findings if f["kind"] in CLOCK_CORRECTED and f.get("resolved_by"))
    return {
        "drift": drift,
        # clock_unset and clock_future whose recording a dock clock reading corrects, and those still open
        "clock_findings_resolved": resolved,
        "clock_findings_open": sum(1 for f in findings if f["kind"] in CLOCK_CORRECTED) - resolved,
        "clock_unset": _count(findings, "clock_unset"),
        "clock_future": _count(findings, "clock_future"),
        "name_time_mismatch": _count(findings, "name_time_mismatch"),
        "corrected_segments": archive.catalog.segments.clock_corrected_count(period),
    }


def _timeliness_section(archive: Archive, period: Scope, findings: list[dict[str, Any]]) -> TimelinessSection:
    """Art. 16: how long after recording the footage was ingested."""
    n, ranked = archive.catalog.segments.ingest_delay_ranks(period)
    hours = [(ing - e) / 3600 / NS for ing, e in ranked]  # the lowest, the middle one or two, the highest
    return {
        "ingests": archive.catalog.segments.ingest_count(period),
        "late_ingest": _count(findings, "late_ingest"),
        "delay_hours": {"min": hours[0], "median": statistics.median(hours[1:-1]), "max": hours[-1]} if n else None,
    }


def _in_scope(f: Finding, period: Scope) -> bool:
    """A finding about a recording is in the scope its recording is: its device, its time, its officer (a
    recording without one belongs to its device's)."""
    officer = f.evidence.get("officer")
    in_devices = period.devices is None or f.device in period.devices
    mine = in_devices if period.officer is None or officer is None else officer == period.officer
    return mine and f.start is not None and period.lo <= f.start < period.hi


def _recording_section(archive: Archive, period: Scope, duties: list[dict[str, Any]]) -> RecordingSection:
    from custodes.preuse import checks

    policy = archive.policy
    made = [c for c in checks(archive, period.devices) if period.lo <= c.time < period.hi]
    per_device: dict[str, UncheckedDevice] = {}
    for f in duties:
        if f["kind"] in ("no_preuse_check", "clock_not_set_before_use"):
            row = per_device.setdefault(
                f["device"], {"device": f["device"], "checks": 0, "no_preuse_check": 0, "clock_not_set_before_use": 0}
            )
            row[f["kind"]] += 1  # type: ignore[literal-required]
    for c in made:
        if c.device in per_device:
            per_device[c.device]["checks"] += 1
    return {
        "preuse_check_required": policy.preuse_check_required,
        "checks": len(made),
        "no_preuse_check": _count(duties, "no_preuse_check"),
        "clock_not_set_before_use": _count(duties, "clock_not_set_before_use"),
        "unchecked_devices": [per_device[d] for d in sorted(per_device)],
        "required_task_types": list(policy.required_task_types),
        "task_not_recorded": _count(duties, "task_not_recorded"),
        "no_enforcement_context": _count(duties, "no_enforcement_context"),
    }


def _retention_section(archive: Archive, period: Scope, now: int) -> RetentionSection:
    """Art. 19, 20: what is due for purge at ``now``, held, kept for ever, purged."""
    from custodes.retention import counts

    c = counts(archive, period, now)
    return {"due": c["due"], "held": c["held"], "long_term": c["long_term"], "purged": c["purged"]}


#: Access-log actions that record a copy which never reached the person, logged after its granted step
#: (custodes.access.open_recording): a failed delivery, not a refusal. An export's is its ``export_failed``
#: ledger entry (custodes.export), which makes no access-log row.
UNDELIVERED = {"open_failed": "open"}
#: Access-log actions that are no access to recordings: a web front end's logins and failed logins
#: (custodes.web), logged like every step but neither a refusal of Art. 22 nor a view.
NOT_ACCESS = frozenset({"login"})
#: The granted steps that hand footage to a person: ``access open`` (a view through the CLI), ``stream`` (a view in
#: the web page's player, custodes.web.streaming) and ``export``; the report's views are the first two.
DELIVERIES = ("open", "stream", "export")
EXPORT_FAILED = "export_failed"


def _access_section(archive: Archive, period: Scope) -> tuple[AccessSection, list[dict[str, Any]]]:
    """Art. 22, 24: requests and their decisions; views and exports that reached the person, and each copy that
    did not (with why); each refusal as a finding. A count of refusals answered without an entry each
    (custodes.access: refusals beyond the policy's limit) is one finding carrying its count."""
    devices = period.devices
    requests: list[tuple[Any, Any]] = [
        (r, json.loads(r.segments) if devices is not None else None) for r in archive.catalog.access.all()
    ]
    log = archive.catalog.access.log_in_period(period.lo, period.hi)
    failures = _export_failures(archive, period)
    # Which of the recordings these name are in the scope (a scope of devices only; the whole archive's has all).
    seg_ids: set[int] = set()
    if devices is not None:
        named = [x for _, listed in requests for x in listed] + [row.segment_id for row in log]
        named += [x for _, e in failures for x in e["segments"]]
        seg_ids = archive.catalog.segments.in_scope_among(period, _integral(named))
    in_scope_requests = [r for r, listed in requests if devices is None or set(listed) & seg_ids]
    log = [row for row in log if devices is None or row.segment_id in seg_ids or row.segment_id is None]
    refusals = [
        _refusal(archive, row)
        for row in log
        if not row.ok and row.action not in UNDELIVERED and row.action not in NOT_ACCESS
    ]
    delivered, failed = _deliveries(period, seg_ids, log, failures)
    unconfirmed = _unconfirmed(archive, log)
    section: AccessSection = {
        "requests": len(in_scope_requests),
        "approved": sum(1 for r in in_scope_requests if r.status == "approved"),
        "denied": sum(1 for r in in_scope_requests if r.status == "denied"),
        "refusals": sum(f["count"] for f in refusals),
        "views": delivered["open"] + delivered["stream"],
        "exports": delivered["export"],
        "failed": len(failed),
        "failed_deliveries": failed,
        "unconfirmed": len(unconfirmed),
        "unconfirmed_deliveries": unconfirmed,
    }
    return section, refusals


def _unconfirmed(archive: Archive, log: list[Any]) -> list[Delivery]:
    """Each copy that left the archive service but whose receipt the caller's CLI did not confirm
    (custodes.access.record_undelivered): counted among the views and exports (the service cannot know what
    the caller kept), and listed with what the CLI said."""
    from custodes.access import UNCONFIRMED

    out = []
    for row in log:
        if row.action != UNCONFIRMED:
            continue
        data = archive.catalog.ledger.entry(row.ledger_seq)
        try:
            listed = json.loads(data).get("segments") if data is not None else None
        except (ValueError, AttributeError):
            listed = None  # an edited entry: verify names it; the report still lists the row
        export = isinstance(listed, list)
        segments = [x for x in listed if isinstance(x, int)] if isinstance(listed, list) else [row.segment_id]
        about = {"reason": row.detail, "time": row.time_ns}
        out.append(
            _failure("export" if export else "open", row.person, row.request_id, segments, about, row.ledger_seq)
        )
    return out


def _refusal(archive: Archive, row: Any) -> dict[str, Any]:
    """The unapproved_access finding of one refused step (or of a count of them: its entry holds the number)."""
    from custodes.access import REFUSAL_COUNT

    count = 1
    if row.action == REFUSAL_COUNT:  # the row was made from its entry; an entry edited since is verify's finding
        data = archive.catalog.ledger.entry(row.ledger_seq)
        try:
            held = json.loads(data)["count"] if data is not None else None
        except (ValueError, KeyError, TypeError):
            held = None
        count = held if isinstance(held, int) and not isinstance(held, bool) and held > 0 else 1
    return {
        "kind": "unapproved_access",
        "article": 22,
        "person": row.person,
        "action": row.action,
        "segment": row.segment_id,
        "message": row.detail,
        "start": rfc3339(row.time_ns),
        "ledger_index": row.ledger_seq,
        "count": count,
    }


def _integral(values: list[Any]) -> list[int]:
    """The ids among ``values`` a segment id can equal (Python's ==: 2, 2.0 and True == 1 all can)."""
    out = []
    for v in values:
        if isinstance(v, int):
            out.append(int(v))
        elif isinstance(v, float) and v.is_integer():
            out.append(int(v))
    return out


def _export_failures(archive: Archive, period: Scope) -> list[tuple[int, dict[str, Any]]]:
    """The ``export_failed`` entries of the period: (ledger index, entry with its int segments only)."""
    out = []
    for seq, data in archive.catalog.ledger.of_type(EXPORT_FAILED):
        e = json.loads(data)  # of_type returns valid JSON objects of that type only
        listed = e.get("segments") if isinstance(e.get("segments"), list) else []
        segments = [s for s in listed if isinstance(s, int)]
        if isinstance(e.get("time"), int) and period.lo <= e["time"] < period.hi:
            out.append((seq, e | {"segments": segments}))
    return out


def _deliveries(
    period: Scope, seg_ids: set[int], log: list[Any], failures: list[tuple[int, dict[str, Any]]]
) -> tuple[dict[str, int], list[Delivery]]:
    """How many granted opens and exports reached the person, and each copy that did not. A failure is recorded
    after its grant, so in ledger order it cancels the latest earlier grant of the same request, person and
    recording that is not cancelled yet; what is left was delivered."""
    events: list[tuple[int, Any]] = [(row.ledger_seq, row) for row in log]
    for seq, e in failures:
        if period.devices is None or set(e["segments"]) & seg_ids:
            events.append((seq, e))
    granted: dict[tuple[str, int | None, str, int | None], list[int]] = {}
    failed: list[Delivery] = []
    for seq, item in sorted(events, key=lambda x: x[0]):
        if isinstance(item, dict):  # an export_failed entry: one bag, every recording it was to hold
            for s in item.get("segments") or ():
                _cancel(granted, ("export", item.get("request"), item.get("by"), s))
            failed.append(_failure("export", item.get("by"), item.get("request"), item.get("segments"), item, seq))
        elif item.ok and item.action in DELIVERIES:
            granted.setdefault((item.action, item.request_id, item.person, item.segment_id), []).append(seq)
        elif item.action in UNDELIVERED:
            action = UNDELIVERED[item.action]
            _cancel(granted, (action, item.request_id, item.person, item.segment_id))
            failed.append(
                _failure(
                    action,
                    item.person,
                    item.request_id,
                    [item.segment_id],
                    {"reason": item.detail, "time": item.time_ns},
                    seq,
                )
            )
    delivered = {a: sum(len(v) for k, v in granted.items() if k[0] == a) for a in DELIVERIES}
    return delivered, failed


def _cancel(granted: dict[tuple[str, int | None, str, int | None], list[int]], key: Any) -> None:
    pending = granted.get(key)
    if pending:
        pending.pop()


def _failure(action: str, person: Any, request: Any, segments: Any, about: dict[str, Any], seq: int) -> Delivery:
    return {
        "action": action,
        "person": person,
        "request": request,
        "segments": list(segments or ()),
        "reason": about.get("reason"),
        "time": rfc3339(about.get("time")),
        "ledger_index": seq,
    }


#: Each registry finding kind and the key that counts it in a unit of the devices section.
_DEVICE_COUNTS = {
    "device_lent": "lent",
    "unassigned_device": "unassigned",
    "lost_device": "lost",
    "retired_device": "retired",
    "unregistered_device": "unregistered",
    "no_preuse_check": "unchecked",  # from custodes.preuse, by the unit the registry issues the device to
    "clock_not_set_before_use": "unchecked",
}

#: The devices section's counts of recordings per unit (a :class:`UnitDevices`' keys), in the order a report shows
#: them, each with its label in the message catalogue: the HTML report's columns and the review page's links.
DEVICE_COUNT_LABELS = (
    ("lent", "rec_lent"),
    ("unassigned", "rec_unassigned"),
    ("lost", "rec_lost"),
    ("retired", "rec_retired"),
    ("unregistered", "rec_unregistered"),
    ("unchecked", "rec_unchecked"),
)


def _devices_section(
    archive: Archive,
    period: Scope,
    found: list[tuple[SegmentDeviceFacts, Finding]],
    unchecked: list[dict[str, Any]],
) -> DevicesSection:
    """Art. 6, 9, 25: the registered devices of the scope per unit, by status now, and per unit the period's
    recordings the registry has findings on, and those without a pre-use check (``unchecked``: the pre-use
    findings, custodes.preuse) (unit None: devices not in the registry or registered with no unit)."""
    from custodes.devices import corrections  # custodes.devices imports the catalog this module reads

    devices = None if period.devices is None else set(period.devices)
    rows = [r for r in archive.catalog.registry.all() if devices is None or r.device_id in devices]
    units: dict[str | None, UnitDevices] = {}

    def unit(name: str | None) -> UnitDevices:
        if name not in units:
            empty = {key: {"count": 0, "devices": [], "segments": []} for key in _DEVICE_COUNTS.values()}
            units[name] = cast(UnitDevices, {"unit": name, "devices": 0, "by_status": {}, **empty})
        return units[name]

    for r in rows:
        u = unit(r.unit or None)  # a device registered with no unit is in the one "no unit" row
        u["devices"] += 1
        u["by_status"][r.status] = u["by_status"].get(r.status, 0) + 1
    named: dict[tuple[str | None, str], set[str]] = {}  # the devices of each count, listed once each
    hits = [(facts.unit, facts.device_id, facts.segment_id, f.kind) for facts, f in found]
    unit_of = {r.device_id: r.unit for r in rows}
    hits += [
        (unit_of.get(f["device"]), f["device"], f["segment"], f["kind"])
        for f in unchecked
        if f["kind"] in _DEVICE_COUNTS and isinstance(f.get("segment"), int)
    ]
    for name, device, segment, kind in [(n or None, d, s, k) for n, d, s, k in hits]:
        key = _DEVICE_COUNTS[kind]
        count = cast(DeviceCount, unit(name)[key])  # type: ignore[literal-required]
        count["count"] += 1
        count["segments"].append(segment)
        named.setdefault((name, key), set()).add(device)
    for (name, key), listed in named.items():
        units[name][key]["devices"] = sorted(listed)  # type: ignore[literal-required]
    ordered = sorted(units.values(), key=lambda u: (u["unit"] is None, u["unit"] or ""))
    fixed = [c for c in corrections(archive, devices, window=(period.lo, period.hi)) if c["recordings_before"]]
    return {
        "in_use": archive.catalog.registry.in_use(),
        "registered": len(rows),
        "units": ordered,
        "corrections": cast(list[AssignmentCorrection], fixed),
    }


#: The kinds whose findings leave their concern once a later fact resolves them (``resolved_by``): a file an ingest
#: could not store and a later one stored is no footage lost.
_LEFT_ONCE_RESOLVED = frozenset({"ingest_failed"})


def in_concern(concern: str, finding: Mapping[str, Any]) -> bool:
    """Whether a finding of the report model is one of the Art. 25 ``concern``'s (a key of :data:`CONCERNS`): its
    kind is, and it is not a failure resolved since."""
    kind = finding["kind"]
    return kind in CONCERNS[concern] and not (kind in _LEFT_ONCE_RESOLVED and finding.get("resolved_by"))


def _concerns(everything: list[ReportFinding]) -> list[Concern]:
    """Art. 25: the findings grouped by the concern a supervisor looks into."""
    concerns: list[Concern] = []
    for key in CONCERNS:
        hits = [f for f in everything if in_concern(key, f)]
        if hits:
            concerns.append(
                {
                    "article": 25,
                    "concern": key,
                    "count": len(hits),
                    "kinds": sorted({f["kind"] for f in hits}),
                    "segments": sorted({s for f in hits if (s := f.get("segment"))}),
                    "ledger_indexes": sorted({i for f in hits if (i := f.get("ledger_index")) is not None}),
                }
            )
    return concerns


def _timelines(archive: Archive, period: Scope, covs: list[TaskCoverage]) -> Timelines:
    """Data for the pictures: per device, recorded intervals, explained gaps, task windows and the
    clock correction applied; per task, each device's recording inside the window and its gaps."""
    devices: dict[str, DeviceTimeline] = {}
    for device, s, e in archive.catalog.segments.recorded(period):
        devices.setdefault(
            device, {"device": device, "recorded": [], "explained": [], "tasks": [], "correction_seconds": None}
        )["recorded"].append([s, e])
    for device, offset in archive.catalog.devices.latest_offsets():
        if device in devices:
            devices[device]["correction_seconds"] = -offset / NS
    for explanation in archive.catalog.gap_explanations.all():
        if explanation.device_id in devices:
            devices[explanation.device_id]["explained"].append(
                [explanation.start_ns, explanation.end_ns, explanation.cause]
            )
    tasks: list[TaskTimeline] = []
    windows = _RecordedWindows(devices)
    for c in covs:
        for d in c.devices:
            if d in devices:
                devices[d]["tasks"].append(
                    {
                        "task": c.task.id,
                        "start": c.task.start,
                        "end": c.task.end,
                        "unexplained": [[f.start, f.end] for f in c.findings],
                    }
                )
        tasks.append(
            {
                "task": c.task.id,
                "start": c.task.start,
                "end": c.task.end,
                "unexplained": [[f.start, f.end] for f in c.findings],
                # ns, as every other span of the picture (c.explained holds RFC 3339 text)
                "explained": [
                    [ns_from_rfc3339(e["start"]), ns_from_rfc3339(e["end"]), e["cause"]] for e in c.explained
                ],
                "devices": {
                    d: [
                        [max(s, c.task.start), min(e, c.task.end)]
                        for s, e in windows.between(d, c.task.start, c.task.end)
                        if s < c.task.end and e > c.task.start
                    ]
                    for d in c.devices
                },
            }
        )
    return {"devices": list(devices.values()), "tasks": tasks}


class _RecordedWindows:
    """A device's recorded intervals (in start order, as the catalog reads them) that may overlap a task's
    window: from the first whose end, or an earlier one's, reaches past the window's start, up to the first whose
    start is at or past the window's end. None outside that slice can overlap, so a task looks at it instead of
    all its device's recordings (at 10^6 segments, 500 tasks scanned 2.5 million of them)."""

    def __init__(self, devices: dict[str, DeviceTimeline]) -> None:
        self._devices = devices
        self._index: dict[str, tuple[list[Any], list[Any]]] = {}

    def between(self, device: str, start: Any, end: Any) -> list[list[Any]]:
        if device not in self._devices:
            return []
        recorded = self._devices[device]["recorded"]
        if device not in self._index:
            starts, reach, furthest = [], [], None
            for s, e in recorded:
                furthest = e if furthest is None else max(furthest, e)
                starts.append(s)
                reach.append(furthest)  # the latest end of this recording and every one before it: never falls
            self._index[device] = starts, reach
        starts, reach = self._index[device]
        return recorded[bisect.bisect_right(reach, start) : bisect.bisect_left(starts, end)]
