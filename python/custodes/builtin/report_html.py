"""HTML and PDF reporters: one self-contained page (no network fetches), with an
SVG timeline per device, rendered to PDF by WeasyPrint with the Noto CJK font."""

from __future__ import annotations

import html
from typing import IO, Any

from custodes.errors import CustodesError
from custodes.findings import rfc3339
from custodes.hookspecs import hookimpl
from custodes.messages import label
from custodes.plugins import Reporter

CAUSE_COLOURS = {"unexplained": "#c62828"}
EXPLAINED = "#ef8f00"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _explained_table(tasks: list[dict[str, Any]], L: Any) -> str:  # noqa: N803 (the page's label function)
    """Each task gap that has a cause, beside what stated it: the device event (its kind and time) or the
    annotation (its ledger entry), by the rule of custodes.tasks.Explanations."""
    rows = [(t["task"], e) for t in tasks for e in t.get("explained") or ()]
    if not rows:
        return ""
    head = "".join(f"<th>{_e(L(k))}</th>" for k in ("task_window", "explained_gap", "reason", "explained_by"))

    def source(e: dict[str, Any]) -> str:
        if e.get("source") == "device_event":
            return f"{e.get('event')} {e.get('time')}"
        return f"{L('annotation')} {e.get('annotation')} (ledger {e.get('ledger_index')})"

    return (
        f"<table><tr>{head}</tr>"
        + "".join(
            f"<tr><td>{_e(task)}</td><td>{_e(e['gap']['start'])} — {_e(e['gap']['end'])}</td>"
            f"<td>{_e(e['cause'])}</td><td>{_e(source(e))}</td></tr>"
            for task, e in rows
        )
        + "</table>"
    )


def _failed_table(failed: list[dict[str, Any]], L: Any) -> str:  # noqa: N803 (the page's label function)
    """Each granted copy that never reached the person, and why (custodes.reports)."""
    if not failed:
        return ""
    head = "".join(f"<th>{_e(L(k))}</th>" for k in ("time", "person", "action", "recordings", "reason"))
    return (
        f"<table><tr>{head}</tr>"
        + "".join(
            f"<tr><td>{_e(f['time'])}</td><td>{_e(f['person'])}</td><td>{_e(L(f['action']))}</td>"
            f"<td>{_e(', '.join(map(str, f['segments'])))}</td><td>{_e(f['reason'])}</td></tr>"
            for f in failed
        )
        + "</table>"
    )


def _storage_check(check: dict[str, Any] | None, L: Any) -> str:  # noqa: N803 (the page's label function)
    """The latest ``custodes storage check``: when, by whom, and each copy's missing guarantees (or none)."""
    if check is None:
        return L("storage_never_checked")
    copies = "; ".join(
        f"{c['storage']}: "
        + (f"{L('storage_missing')} {', '.join(c['missing'])}" if c["missing"] else L("storage_all_held"))
        for c in check["copies"]
    )
    return f"{check['time']} ({check['by'] or '?'}, #{check['ledger_index']}) {copies}"


def _overdue(verification: dict[str, Any], L: Any) -> str:  # noqa: N803 (the page's label function)
    """The objects most overdue for re-hashing (the report lists the first of them; all are counted)."""
    listed = verification["overdue_objects"]
    if not listed:
        return ""
    head = "".join(f"<th>{_e(L(k))}</th>" for k in ("object", "size", "stored", "last_verified"))
    more = verification["overdue"] - len(listed)
    return (
        f"<table><tr>{head}</tr>"
        + "".join(
            f"<tr><td><code>{_e(o['object'])}</code></td><td>{o['size']}</td><td>{_e(o['stored'])}</td>"
            f"<td>{_e(o['last_verified'] or L('never_verified'))}</td></tr>"
            for o in listed
        )
        + "</table>"
        + (f"<p>… +{more}</p>" if more > 0 else "")
    )


def _svg(t: dict[str, Any], lang: str) -> str:
    spans = [s for s, _ in t["recorded"]] + [task["start"] for task in t["tasks"]]
    ends = [e for _, e in t["recorded"]] + [task["end"] for task in t["tasks"]]
    if not spans:
        return ""
    lo, hi = min(spans), max(ends)
    width, scale = 900, 900 / max(hi - lo, 1)
    x = lambda v: (v - lo) * scale  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} 70" role="img">',
        f"<title>{_e(t['device'])}</title>",
    ]
    for task in t["tasks"]:
        parts.append(
            f'<rect x="{x(task["start"]):.1f}" y="4" '
            f'width="{max(x(task["end"]) - x(task["start"]), 1):.1f}" height="14" '
            f'fill="none" stroke="#1565c0"><title>{_e(label("task_window", lang))} {_e(task["task"])}</title></rect>'
        )
        for a, b in task["unexplained"]:
            parts.append(
                f'<rect x="{x(a):.1f}" y="24" width="{max(x(b) - x(a), 1):.1f}" height="22" fill="#c62828">'
                f"<title>{_e(label('unexplained_gaps', lang))} {rfc3339(a)}</title></rect>"
            )
    # Intervals closer than a pixel are one bar on the page: 10^5 segments stay a few hundred rectangles.
    merged: list[list[int]] = []
    for s, e in t["recorded"]:
        if merged and x(s) - x(merged[-1][1]) < 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in merged:
        parts.append(f'<rect x="{x(s):.1f}" y="24" width="{max(x(e) - x(s), 1):.1f}" height="22" fill="#2e7d32"/>')
    for s, e, cause in t["explained"]:
        if e > lo and s < hi:
            parts.append(
                f'<rect x="{x(max(s, lo)):.1f}" y="24" width="{max(x(min(e, hi)) - x(max(s, lo)), 1):.1f}" height="22" '
                f'fill="{EXPLAINED}"><title>{_e(label("explained_gap", lang))}: {_e(cause)}</title></rect>'
            )
    if t.get("correction_seconds"):
        parts.append(
            f'<text x="{width}" y="14" font-size="10" text-anchor="end">{_e(label("clock_correction", lang))} '
            f"{t['correction_seconds']:+.1f} s</text>"
        )
    parts.append(
        f'<text x="0" y="62" font-size="10">{_e(rfc3339(lo))}</text>'
        f'<text x="{width}" y="62" font-size="10" text-anchor="end">{_e(rfc3339(hi))}</text></svg>'
    )
    return "".join(parts)


def _task_svg(task: dict[str, Any], lang: str) -> str:
    """One task window: a row per device (recorded in green), gaps red (unexplained) or orange (explained)."""
    lo, hi = task["start"], task["end"]
    width, row = 900, 20
    scale = width / max(hi - lo, 1)
    x = lambda v: (min(max(v, lo), hi) - lo) * scale  # noqa: E731
    devices = sorted(task["devices"])
    height = 24 + row * (len(devices) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="0" y="2" width="{width}" height="12" fill="none" stroke="#1565c0"/>',
    ]
    for k, d in enumerate(devices):
        y = 20 + row * k
        parts.append(f'<text x="2" y="{y + 13}" font-size="9">{_e(d)}</text>')
        for s, e in task["devices"][d]:
            parts.append(
                f'<rect x="{x(s):.1f}" y="{y}" width="{max(x(e) - x(s), 1):.1f}" height="{row - 4}" '
                'fill="#2e7d32" opacity="0.8"/>'
            )
    y = 20 + row * len(devices)
    for s, e in task["unexplained"]:
        parts.append(
            f'<rect x="{x(s):.1f}" y="{y}" width="{max(x(e) - x(s), 1):.1f}" height="{row - 4}" fill="#c62828">'
            f"<title>{_e(label('unexplained_gaps', lang))}</title></rect>"
        )
    for s, e, cause in task["explained"]:
        parts.append(
            f'<rect x="{x(s):.1f}" y="{y}" width="{max(x(e) - x(s), 1):.1f}" height="{row - 4}" fill="{EXPLAINED}">'
            f"<title>{_e(cause)}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _recording(r: dict[str, Any] | None, L: Any) -> str:
    """The recording duties (pre-use checks, checklist, context), with each unchecked device; "" when the model
    holds no such section (a report of other sections)."""
    if r is None:
        return ""
    return f"<h2>{_e(L('recording'))}</h2>" + _table(
        [
            (L("preuse_checks"), r["checks"]),
            (L("no_preuse_check"), r["no_preuse_check"]),
            (L("clock_not_set_before_use"), r["clock_not_set_before_use"]),
            (L("task_not_recorded"), r["task_not_recorded"]),
            (L("no_enforcement_context"), r["no_enforcement_context"]),
        ]
        + [
            (
                f"{L('device')} {d['device']} · {L('no_preuse_check')} / {L('clock_not_set_before_use')}",
                f"{d['no_preuse_check']} / {d['clock_not_set_before_use']}",
            )
            for d in r["unchecked_devices"]
        ]
    )


def _devices(d: dict[str, Any] | None, L: Any) -> str:  # noqa: N803 (the page's label function)
    """The devices section (Art. 6, 9, 10, 25): per unit, its registered devices by status and the recordings
    lent, unassigned, lost, retired, unregistered, unchecked; "" when the model holds no such section or no
    device is registered (the registry is not in use: the section says nothing)."""
    # Imported here: this plugin module is loaded with every plugin, by `custodes volume` too, and
    # custodes.reports brings the archive, verify and cryptography (a fifth of a volume read's start-up).
    from custodes.reports import DEVICE_COUNT_LABELS

    if d is None or not d["in_use"]:
        return ""
    head = "".join(f"<th>{_e(L(k))}</th>" for k in ("unit", "registered_devices", "by_status"))
    head += "".join(f"<th>{_e(L(label_key))}</th>" for _, label_key in DEVICE_COUNT_LABELS)
    rows = "".join(
        f"<tr><td>{_e(u['unit'] or L('no_unit'))}</td><td>{u['devices']}</td>"
        f"<td>{_e(', '.join(f'{L(s)} {n}' for s, n in u['by_status'].items()))}</td>"
        + "".join(f"<td>{u[key]['count']}</td>" for key, _ in DEVICE_COUNT_LABELS)
        + "</tr>"
        for u in d["units"]
    )
    return f"<h2>{_e(L('devices'))}</h2><table><tr>{head}</tr>{rows}</table>"


def render_html_text(report: dict[str, Any]) -> str:
    lang = report.get("lang", "zh")
    L = lambda k: label(k, lang)  # noqa: E731
    c, cl, ti, re_, ac, integ = (
        report[k] for k in ("completeness", "clocks", "timeliness", "retention", "access", "integrity")
    )
    cp = report.get("checkpoint") or {"size": 0, "root": ""}
    delay = ti.get("delay_hours") or {}
    body = [
        f"<h1>{_e(L('title'))}</h1>",
        _table(
            [
                (L("archive"), report["archive"]["id"]),
                (L("period"), f"{report['period']['from'] or '…'} — {report['period']['to'] or '…'}"),
                (L("scope"), f"{report['scope']['kind']} {report['scope']['value'] or ''}"),
                (L("generated"), report["generated"]),
                (L("checkpoint"), f"{cp['size']} / {cp['root']}"),
            ]
        ),
        f"<h2>{_e(L('integrity'))}</h2>",
        _table(
            [
                (L("objects_checked"), integ["checked"]),
                (L("integrity_findings"), integ["findings"]),
                (L("never_verified"), integ["objects_never_verified"]),
                (L("verification_window"), integ["verification"]["window_days"]),
                (L("overdue"), integ["verification"]["overdue"]),
                (L("storage_check"), _storage_check(integ.get("storage_check"), L)),
            ]
        ),
        _overdue(integ["verification"], L),
        f"<h2>{_e(L('completeness'))}</h2>",
        _table(
            [
                (L("segments"), c["segments"]),
                (L("gaps"), c["gaps"]),
                (L("gaps_open"), c["gaps_open"]),
                (L("gaps_resolved"), c["gaps_resolved"]),
                (L("unexplained_gaps"), c["unexplained_gaps_in_tasks"]),
                (L("sequence_breaks"), c["sequence_breaks"]),
                (L("internal_gaps"), c["internal_gaps"]),
            ]
        ),
        "<table><tr><th>ID</th><th>"
        + _e(L("task_coverage"))
        + "</th><th>"
        + _e(L("two_device"))
        + "</th><th>"
        + _e(L("unexplained_gaps"))
        + "</th></tr>"
        + "".join(
            f"<tr><td>{_e(t['task'])}</td><td>{100 * t['covered_share']:.1f}%</td>"
            f"<td>{100 * t['two_device_share']:.1f}%</td>"
            f"<td>{t['unexplained']}</td></tr>"
            for t in c["tasks"]
        )
        + "</table>",
        _explained_table(c["tasks"], L),
        f"<h2>{_e(L('clocks'))}</h2>",
        _table(
            [
                (L("clock_unset"), cl["clock_unset"]),
                (L("clock_future"), cl["clock_future"]),
                (L("name_time_mismatch"), cl["name_time_mismatch"]),
            ]
            + [
                (f"{L('device')} {d['device']} · {L('max_offset')}", f"{d['max_offset_seconds']:.1f}")
                for d in cl["drift"]
            ]
        ),
        f"<h2>{_e(L('timeliness'))}</h2>",
        _table(
            [
                (L("ingests"), ti["ingests"]),
                (L("late_ingest"), ti["late_ingest"]),
                (L("delay_median"), f"{delay.get('median', 0):.1f}"),
                (L("delay_max"), f"{delay.get('max', 0):.1f}"),
            ]
        ),
        _recording(report.get("recording"), L),
        _devices(report.get("devices"), L),
        f"<h2>{_e(L('retention'))}</h2>",
        _table(
            [
                (L("due"), re_["due"]),
                (L("held"), re_["held"]),
                (L("long_term"), re_["long_term"]),
                (L("purged"), re_["purged"]),
            ]
        ),
        f"<h2>{_e(L('access'))}</h2>",
        _table(
            [
                (L("requests"), ac["requests"]),
                (L("approved"), ac["approved"]),
                (L("denied"), ac["denied"]),
                (L("refusals"), ac["refusals"]),
                (L("views"), ac["views"]),
                (L("exports"), ac["exports"]),
                (L("failed_deliveries"), ac["failed"]),
                (L("unconfirmed_deliveries"), ac["unconfirmed"]),
            ]
        ),
        _failed_table(ac["failed_deliveries"], L),
        _failed_table(ac["unconfirmed_deliveries"], L),
        f"<h2>{_e(L('concerns'))}</h2>",
        "<table><tr><th>"
        + _e(L("article"))
        + "</th><th>"
        + _e(L("kind"))
        + "</th><th>"
        + _e(L("count"))
        + "</th></tr>"
        + (
            "".join(
                f"<tr><td>25</td><td>{_e(L(x['concern']))} ({_e(', '.join(x['kinds']))})</td><td>{x['count']}</td></tr>"
                for x in report["concerns"]
            )
            or f"<tr><td colspan='3'>{_e(L('none'))}</td></tr>"
        )
        + "</table>",
        f"<h2>{_e(L('timelines'))}</h2>",
        "".join(f"<h3>{_e(L('device'))} {_e(t['device'])}</h3>{_svg(t, lang)}" for t in report["timelines"]["devices"]),
        "".join(
            f"<h3>{_e(L('task_window'))} {_e(t['task'])}</h3>{_task_svg(t, lang)}" for t in report["timelines"]["tasks"]
        ),
    ]
    page_note = f"{report['archive']['id']} · {cp['root'][:16]} · {report['generated']}"
    css = f"""
      body {{ font-family: "Noto Sans CJK SC", "Noto Sans CJK", sans-serif; font-size: 10pt; }}
      table {{ border-collapse: collapse; margin: 4pt 0 10pt; }}
      th, td {{ border: 1px solid #999; padding: 2pt 6pt; text-align: left; }}
      h1 {{ font-size: 16pt; }} h2 {{ font-size: 12pt; margin-top: 14pt; }}
      @page {{ size: A4; margin: 18mm 14mm;
        @top-center {{ content: "{_e(page_note)}"; font-size: 7pt; }}
        @bottom-right {{ content: "{_e(L("page"))} " counter(page) " / " counter(pages); font-size: 8pt; }} }}
    """
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{_e(L("title"))}</title>'
        f"<style>{css}</style></head><body>{''.join(body)}</body></html>"
    )


def render_html(report: Any, out: IO[bytes]) -> None:
    out.write(render_html_text(report).encode("utf-8"))


def render_pdf(report: Any, out: IO[bytes]) -> None:
    try:
        from weasyprint import HTML  # type: ignore[import-untyped]  # heavy, only for a PDF; WeasyPrint has no stubs
    except ImportError as e:
        raise CustodesError(
            "PDF reports need WeasyPrint: pip install 'custodes[pdf]' (and Pango from your system)"
        ) from e

    HTML(string=render_html_text(report)).write_pdf(out)


@hookimpl
def custodes_reporters() -> list[Reporter]:
    return [
        Reporter("html", "one self-contained page with SVG timelines", "text/html", ".html", render_html),
        Reporter(
            "pdf",
            "the HTML page as PDF (WeasyPrint, Noto CJK), page numbers and checkpoint on every page",
            "application/pdf",
            ".pdf",
            render_pdf,
        ),
    ]
