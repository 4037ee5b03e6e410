"""The compliance report model (Art. 25): built only from catalog facts and findings.

:func:`build_report` returns one JSON-ready dict, the stable model for agency
tools; reporter plugins render it (JSON, CSV, HTML, PDF). Every number comes
from a query on the catalog for the period and scope, so a test can count the
same things another way and compare.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from custodes import __version__
from custodes.archive import Archive
from custodes.defaults import SQL_CLOCK_IS_SET
from custodes.findings import ARTICLES, rfc3339
from custodes.verify import verify, verify_ledger_only

__all__ = ["SCOPES", "build_report"]

NS = 1_000_000_000
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
        "overlap",
        "name_time_mismatch",
    ),
    "concern_damaged": ("truncated", "no_moov", "malformed"),
}


def _devices_in_scope(archive: Archive, scope: str, value: str | None) -> list[str] | None:
    conn = archive.conn
    if scope == "archive":
        return None
    if scope == "device":
        return [value or ""]
    if scope == "unit":
        return [
            d
            for (d,) in conn.execute("SELECT device_id FROM devices WHERE unit_id = ? OR unit_name = ?", (value, value))
        ]
    if scope == "officer":
        return sorted(
            {
                d
                for (d,) in conn.execute(
                    "SELECT device_id FROM devices WHERE officer_id = ? UNION SELECT device_id FROM segments WHERE officer_id = ?",
                    (value, value),
                )
            }
        )
    return sorted(
        {
            d
            for (d,) in conn.execute(
                "SELECT s.device_id FROM case_segments c JOIN segments s ON s.id = c.segment_id WHERE c.case_id = ?",
                (value,),
            )
        }
    )


def _in(col: str, values: list[str] | None) -> tuple[str, tuple[Any, ...]]:
    if values is None:
        return "1=1", ()
    return f"{col} IN ({','.join('?' * len(values)) or 'NULL'})", tuple(values)


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
    for purge, and the generation time printed on it."""
    conn = archive.conn
    lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
    devices = _devices_in_scope(archive, scope, value)
    dev_sql, dev_args = _in("s.device_id", devices)
    # A recording is in the period its time says; with an unset clock (before the floor), its ingest's.
    when = f"CASE WHEN {SQL_CLOCK_IS_SET} THEN COALESCE(s.corrected_start_ns, s.start_ns) ELSE s.ingested_ns END"
    seg_where = f"{dev_sql} AND {when} >= ? AND {when} < ?"
    seg_args = (*dev_args, lo, hi)
    segments = conn.execute(
        f"SELECT s.id, s.device_id, s.ledger_seq FROM segments s WHERE {seg_where}", seg_args
    ).fetchall()
    seg_ids = {s for s, _, _ in segments}
    ledger_of = {s: seq for s, _, seq in segments}
    fdev_sql, fdev_args = _in("f.device_id", devices)
    frows = conn.execute(
        f"SELECT f.kind, f.severity, f.device_id, f.path, f.start_ns, f.end_ns, f.segment_id, f.detail "
        f"FROM findings f JOIN ingests i ON i.id = f.ingest_id WHERE {fdev_sql} AND "
        f"COALESCE(f.start_ns, i.started_ns) >= ? AND COALESCE(f.start_ns, i.started_ns) < ?",
        (*fdev_args, lo, hi),
    ).fetchall()
    findings = [json.loads(r[7]) | {"segment": r[6], "ledger_index": ledger_of.get(r[6])} for r in frows]

    result = verify(archive) if full_verify else verify_ledger_only(archive)
    integrity_findings = [f.to_json() | {"article": 23} for f in result.findings]
    never = conn.execute(
        "SELECT COUNT(*) FROM objects WHERE last_verified_ns IS NULL AND purged_ns IS NULL"
    ).fetchone()[0]

    from custodes.tasks import task_coverage

    covs = [
        c
        for c in task_coverage(archive)
        if lo <= c.task.start < hi and (devices is None or set(c.devices) & set(devices))
    ]
    unexplained = [f.to_json() for c in covs for f in c.findings]
    explained = [e for c in covs for e in c.explained]
    gaps_by_cause: dict[str, int] = {}
    for e in explained:
        gaps_by_cause[e["cause"]] = gaps_by_cause.get(e["cause"], 0) + 1
    if unexplained:
        gaps_by_cause["unexplained"] = len(unexplained)

    def count(kind: str) -> int:
        return sum(1 for f in findings if f["kind"] == kind)

    drift = []
    rdev_sql, rdev_args = _in("device_id", devices)
    for device, n, worst, last in conn.execute(
        f"SELECT device_id, COUNT(*), MAX(ABS(device_ns - trusted_ns)), "
        f"(SELECT device_ns - trusted_ns FROM clock_readings r2 WHERE r2.device_id = r.device_id ORDER BY device_ns DESC LIMIT 1) "
        f"FROM clock_readings r WHERE {rdev_sql} GROUP BY device_id ORDER BY device_id",
        rdev_args,
    ):
        drift.append(
            {"device": device, "readings": n, "max_offset_seconds": worst / NS, "last_offset_seconds": last / NS}
        )
    corrected = conn.execute(
        f"SELECT COUNT(*) FROM segments s WHERE {seg_where} AND s.corrected_start_ns IS NOT NULL "
        "AND s.corrected_start_ns != s.start_ns",
        seg_args,
    ).fetchone()[0]

    delays = [
        (ing - e) / 3600 / NS
        for ing, e in conn.execute(
            f"SELECT s.ingested_ns, COALESCE(s.corrected_end_ns, s.end_ns) FROM segments s WHERE {seg_where} "
            f"AND {SQL_CLOCK_IS_SET} AND COALESCE(s.corrected_end_ns, s.end_ns) IS NOT NULL",
            seg_args,
        )
    ]
    ingests = conn.execute(
        f"SELECT COUNT(DISTINCT s.ingest_id) FROM segments s WHERE {seg_where}", seg_args
    ).fetchone()[0]

    from custodes.retention import status

    ret = [r for r in status(archive) if r.segment in seg_ids]
    now = time.time_ns() if at is None else at

    access_rows = conn.execute("SELECT id, segments, status FROM access_requests").fetchall()
    in_scope_requests = [r for r in access_rows if devices is None or set(json.loads(r[1])) & seg_ids]
    log = conn.execute("SELECT action, ok, person, segment_id, detail, time_ns, ledger_seq FROM access_log").fetchall()
    log = [row for row in log if lo <= row[5] < hi and (devices is None or row[3] in seg_ids or row[3] is None)]
    refusals = [
        {
            "kind": "unapproved_access",
            "article": 22,
            "person": p,
            "action": a,
            "segment": s,
            "message": d,
            "start": rfc3339(t),
            "ledger_index": seq,
        }
        for a, ok, p, s, d, t, seq in log
        if not ok
    ]

    everything = findings + integrity_findings + unexplained + refusals
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

    cp = conn.execute("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return {
        "report": "custodes compliance report",
        "version": __version__,
        "lang": lang,
        "archive": {"id": archive.policy.archive_id, "origin": archive.policy.origin},
        "generated": rfc3339(now),
        "period": {"from": rfc3339(start), "to": rfc3339(end)},
        "scope": {"kind": scope, "value": value, "devices": devices},
        "checkpoint": {"size": cp[0], "root": bytes(cp[1]).hex()} if cp else None,
        "integrity": {
            "full_verify": full_verify,
            "ok": result.ok,
            "checked": result.checked,
            "bytes": result.bytes,
            "findings": len(result.findings),
            "objects_never_verified": never,
        },
        "completeness": {
            "segments": len(segments),
            "gaps": count("gap"),
            "gaps_by_cause": gaps_by_cause,
            "unexplained_gaps_in_tasks": len(unexplained),
            "sequence_breaks": count("sequence_break"),
            "internal_gaps": count("internal_gap"),
            "tasks": [
                {
                    "task": c.task.id,
                    "covered_share": c.covered / c.window,
                    "two_device_share": c.two_device / c.window,
                    "unexplained": len(c.findings),
                }
                for c in covs
            ],
        },
        "clocks": {
            "drift": drift,
            "clock_unset": count("clock_unset"),
            "clock_future": count("clock_future"),
            "name_time_mismatch": count("name_time_mismatch"),
            "corrected_segments": corrected,
        },
        "timeliness": {
            "ingests": ingests,
            "late_ingest": count("late_ingest"),
            "delay_hours": {"min": min(delays), "median": statistics.median(delays), "max": max(delays)}
            if delays
            else None,
        },
        "retention": {
            "due": sum(1 for r in ret if r.due(now)),
            "held": sum(1 for r in ret if r.holds),
            "long_term": sum(1 for r in ret if r.keep_until is None and not r.purged),
            "purged": sum(1 for r in ret if r.purged),
        },
        "access": {
            "requests": len(in_scope_requests),
            "approved": sum(1 for r in in_scope_requests if r[2] == "approved"),
            "denied": sum(1 for r in in_scope_requests if r[2] == "denied"),
            "refusals": len(refusals),
            "views": sum(1 for a, ok, *_ in log if a == "open" and ok),
            "exports": sum(1 for a, ok, *_ in log if a == "export" and ok),
        },
        "concerns": concerns,
        "findings": [{**f, "article": f.get("article") or ARTICLES.get(f["kind"])} for f in everything],
        "timelines": _timelines(archive, seg_where, seg_args, covs),
    }


def _timelines(
    archive: Archive, seg_where: str, seg_args: tuple[Any, ...], covs: list[Any]
) -> dict[str, list[dict[str, Any]]]:
    """Data for the pictures: per device, recorded intervals, explained gaps, task windows and the
    clock correction applied; per task, each device's recording inside the window and its gaps."""
    devices: dict[str, dict[str, Any]] = {}
    for device, s, e in archive.conn.execute(
        f"SELECT s.device_id, COALESCE(s.corrected_start_ns, s.start_ns), COALESCE(s.corrected_end_ns, s.end_ns) "
        f"FROM segments s WHERE {seg_where} AND {SQL_CLOCK_IS_SET} AND s.end_ns IS NOT NULL "
        f"AND s.kind IN ('video', 'audio') ORDER BY 1, 2",
        seg_args,
    ):
        devices.setdefault(
            device, {"device": device, "recorded": [], "explained": [], "tasks": [], "correction_seconds": None}
        )["recorded"].append([s, e])
    for device, offset in archive.conn.execute(
        "SELECT device_id, device_ns - trusted_ns FROM clock_readings r WHERE device_ns = "
        "(SELECT MAX(device_ns) FROM clock_readings r2 WHERE r2.device_id = r.device_id)"
    ):
        if device in devices:
            devices[device]["correction_seconds"] = -offset / NS
    for device, s, e, cause in archive.conn.execute("SELECT device_id, start_ns, end_ns, cause FROM gap_explanations"):
        if device in devices:
            devices[device]["explained"].append([s, e, cause])
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
                "explained": [[e["start"], e["end"], e["cause"]] for e in c.explained],
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
