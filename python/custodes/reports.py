"""The compliance report model (Art. 25): built only from catalog facts and findings.

:func:`build_report` returns one JSON-ready dict, the stable model for agency
tools; reporter plugins render it (JSON, CSV, HTML, PDF). Every number comes
from a query on the catalog for the period and scope, so a test can count the
same things another way and compare.
"""

from __future__ import annotations

import bisect
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

from custodes import __version__
from custodes.archive import Archive
from custodes.catalog import Scope
from custodes.defaults import NS
from custodes.findings import ARTICLES, ns_from_rfc3339, rfc3339
from custodes.keys import fingerprint
from custodes.verify import verify, verify_ledger_only

if TYPE_CHECKING:
    from custodes.tasks import Explanations

__all__ = ["SCOPES", "build_report"]

SCOPES = ("archive", "unit", "officer", "device", "case")
#: Art. 25 concerns and the finding kinds that show each.
CONCERNS = {
    "concern_deleted": ("missing", "sequence_break"),
    "concern_not_recorded": ("gap_unexplained",),
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
}


#: Overdue objects listed by name in a report (the most overdue first); all of them are counted.
OVERDUE_LISTED = 100


def _verification_section(archive: Archive, now: int) -> dict[str, Any]:
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
    lang: str = "zh",
    at: int | None = None,
) -> dict[str, Any]:
    """The report for segments whose recording starts in [start, end) (ingest time when they have no clock).

    ``at`` (ns; default now) is the moment the report speaks for: what is due
    for purge, and the generation time printed on it. One section per concern of
    the regulation, each built by its own function below."""
    catalog = archive.catalog
    lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
    devices = _devices_in_scope(archive, scope, value)
    # A recording is in the period its time says; with an unset clock (before the floor), its ingest's.
    period = Scope(devices, lo, hi)
    findings = _catalog_findings(archive, period)

    result = verify(archive) if full_verify else verify_ledger_only(archive)
    integrity_findings = [f.to_json() | {"article": 23} for f in result.findings]

    from custodes.tasks import Explanations, task_coverage

    # Read only when a gap is to be resolved: it reads every recording (task_coverage reads them for its tasks).
    explanations = Explanations.of(archive) if any(f.get("kind") == "gap" for f in findings) else None
    if explanations is not None:
        _resolve_gaps(findings, explanations)
    _resolve_clocks(archive, findings)
    covs = [
        c
        for c in task_coverage(archive, explanations=explanations)
        if lo <= c.task.start < hi and (devices is None or set(c.devices) & set(devices))
    ]
    unexplained = [f.to_json() for c in covs for f in c.findings]
    access, refusals = _access_section(archive, period)
    everything = findings + integrity_findings + unexplained + refusals
    cp = catalog.checkpoints.latest()
    now = time.time_ns() if at is None else at
    return {
        "report": "custodes compliance report",
        "version": __version__,
        "lang": lang,
        "archive": {
            "id": archive.policy.archive_id,
            "origin": archive.policy.origin,
            # to compare with the fingerprint init printed and kept outside the archive (custodes.keys)
            "verifier_key_fingerprint": fingerprint(archive.verifier_key),
        },
        "generated": rfc3339(now),
        "period": {"from": rfc3339(start), "to": rfc3339(end)},
        "scope": {"kind": scope, "value": value, "devices": devices},
        "checkpoint": {"size": cp[0], "root": cp[1].hex()} if cp else None,
        "integrity": {
            "full_verify": full_verify,
            "ok": result.ok,
            "checked": result.checked,
            "bytes": result.bytes,
            "findings": len(result.findings),
            "objects_never_verified": catalog.objects.never_verified(),
            "verification": _verification_section(archive, now),
        },
        "completeness": _completeness_section(catalog.segments.count_in_scope(period), findings, covs, unexplained),
        "clocks": _clocks_section(archive, period, findings),
        "timeliness": _timeliness_section(archive, period, findings),
        "retention": _retention_section(archive, period, now),
        "access": access,
        "concerns": _concerns(everything),
        "findings": _with_articles(everything),
        "timelines": _timelines(archive, period, covs),
    }


def _catalog_findings(archive: Archive, period: Scope) -> list[dict[str, Any]]:
    """The findings ingest recorded in the scope, each with its segment and that segment's ledger index (None
    when the segment is not in the scope), in one pass. At 10^6 findings they are most of the model's memory:
    their JSON is read in runs of one document (so each run shares its key strings), and the short values most
    findings repeat (kind, severity, message, device) are shared too; a detail SQLite does not read as one JSON
    object is parsed alone, as it always was, and fails or not as it always did."""
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

    for seg, ledger_index, detail, is_object in archive.catalog.findings.in_scope(period):
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
    segments: int, findings: list[dict[str, Any]], covs: list[Any], unexplained: list[dict[str, Any]]
) -> dict[str, Any]:
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
                "explained": c.explained,  # each with the gap it explains and what explained it
            }
            for c in covs
        ],
    }


def _clocks_section(archive: Archive, period: Scope, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Art. 10: device clocks: drift against trusted time, clock faults, segments whose times were corrected."""
    drift = [
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


def _timeliness_section(archive: Archive, period: Scope, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Art. 16: how long after recording the footage was ingested."""
    n, ranked = archive.catalog.segments.ingest_delay_ranks(period)
    hours = [(ing - e) / 3600 / NS for ing, e in ranked]  # the lowest, the middle one or two, the highest
    return {
        "ingests": archive.catalog.segments.ingest_count(period),
        "late_ingest": _count(findings, "late_ingest"),
        "delay_hours": {"min": hours[0], "median": statistics.median(hours[1:-1]), "max": hours[-1]} if n else None,
    }


def _retention_section(archive: Archive, period: Scope, now: int) -> dict[str, Any]:
    """Art. 19, 20: what is due for purge at ``now``, held, kept for ever, purged."""
    from custodes.retention import counts

    return counts(archive, period, now)


#: Access-log actions that record a copy which never reached the person, logged after its granted step
#: (custodes.access.open_recording): a failed delivery, not a refusal. An export's is its ``export_failed``
#: ledger entry (custodes.export), which makes no access-log row.
UNDELIVERED = {"open_failed": "open"}
EXPORT_FAILED = "export_failed"


def _access_section(archive: Archive, period: Scope) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
    refusals = [_refusal(archive, row) for row in log if not row.ok and row.action not in UNDELIVERED]
    delivered, failed = _deliveries(period, seg_ids, log, failures)
    unconfirmed = _unconfirmed(archive, log)
    section = {
        "requests": len(in_scope_requests),
        "approved": sum(1 for r in in_scope_requests if r.status == "approved"),
        "denied": sum(1 for r in in_scope_requests if r.status == "denied"),
        "refusals": sum(f["count"] for f in refusals),
        "views": delivered["open"],
        "exports": delivered["export"],
        "failed": len(failed),
        "failed_deliveries": failed,
        "unconfirmed": len(unconfirmed),
        "unconfirmed_deliveries": unconfirmed,
    }
    return section, refusals


def _unconfirmed(archive: Archive, log: list[Any]) -> list[dict[str, Any]]:
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
        segments = [x for x in listed if isinstance(x, int)] if export else [row.segment_id]
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
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """How many granted opens and exports reached the person, and each copy that did not. A failure is recorded
    after its grant, so in ledger order it cancels the latest earlier grant of the same request, person and
    recording that is not cancelled yet; what is left was delivered."""
    events: list[tuple[int, Any]] = [(row.ledger_seq, row) for row in log]
    for seq, e in failures:
        if period.devices is None or set(e["segments"]) & seg_ids:
            events.append((seq, e))
    granted: dict[tuple[str, int | None, str, int | None], list[int]] = {}
    failed: list[dict[str, Any]] = []
    for seq, item in sorted(events, key=lambda x: x[0]):
        if isinstance(item, dict):  # an export_failed entry: one bag, every recording it was to hold
            for s in item.get("segments") or ():
                _cancel(granted, ("export", item.get("request"), item.get("by"), s))
            failed.append(_failure("export", item.get("by"), item.get("request"), item.get("segments"), item, seq))
        elif item.ok and item.action in ("open", "export"):
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
    delivered = {a: sum(len(v) for k, v in granted.items() if k[0] == a) for a in ("open", "export")}
    return delivered, failed


def _cancel(granted: dict[tuple[str, int | None, str, int | None], list[int]], key: Any) -> None:
    pending = granted.get(key)
    if pending:
        pending.pop()


def _failure(action: str, person: Any, request: Any, segments: Any, about: dict[str, Any], seq: int) -> dict[str, Any]:
    return {
        "action": action,
        "person": person,
        "request": request,
        "segments": list(segments or ()),
        "reason": about.get("reason"),
        "time": rfc3339(about.get("time")),
        "ledger_index": seq,
    }


def _concerns(everything: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Art. 25: the findings grouped by the concern a supervisor looks into."""
    concerns = []
    for key, kinds in CONCERNS.items():
        hits = [f for f in everything if f["kind"] in kinds]
        if hits:
            concerns.append(
                {
                    "article": 25,
                    "concern": key,
                    "count": len(hits),
                    "kinds": sorted({f["kind"] for f in hits}),
                    "segments": sorted({f["segment"] for f in hits if f.get("segment")}),
                    "ledger_indexes": sorted({f["ledger_index"] for f in hits if f.get("ledger_index") is not None}),
                }
            )
    return concerns


def _timelines(archive: Archive, period: Scope, covs: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Data for the pictures: per device, recorded intervals, explained gaps, task windows and the
    clock correction applied; per task, each device's recording inside the window and its gaps."""
    devices: dict[str, dict[str, Any]] = {}
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
    tasks = []
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
                        for s, e in devices.get(d, {}).get("recorded", [])
                        if s < c.task.end and e > c.task.start
                    ]
                    for d in c.devices
                },
            }
        )
    return {"devices": list(devices.values()), "tasks": tasks}
