"""The review page's recording, task, access and report pages, and the forms that act on the archive.

Every page reads through :func:`custodes.web.context.reading` and the library's read functions (custodes.query,
custodes.tasks, custodes.retention, custodes.reports); every form is a POST checked for its CSRF token
(:func:`custodes.web.auth.csrf_checked`) that runs the very library function the CLI command runs, under
:func:`custodes.web.context.acting` (the service's write lock, acting as the visitor). A form that succeeds
answers 303 back to its page with a flash message saying what was done; one the library refuses answers with the
library's own words: 403 for a refusal of the rules (:class:`custodes.access.AccessDenied`, logged by the
library), 400 for input it cannot accept. Never a traceback.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, tzinfo
from typing import Annotated, Any, cast
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from custodes import query, retention
from custodes.access import AccessDenied, AccessRequest, approve, deny, request_access, requests
from custodes.archive import Archive, CheckpointFileError
from custodes.catalog import Scope
from custodes.defaults import NS, ns_from_seconds
from custodes.errors import CustodesError
from custodes.findings import ns_from_rfc3339, rfc3339
from custodes.messages import label, message
from custodes.records import RecordedFinding, Segment
from custodes.reports import DEVICE_COUNT_LABELS, SCOPES, Report, build_report
from custodes.tasks import CAUSES, TaskCoverage, explain_gap, parse_time, task_coverage
from custodes.timeline import zone_info
from custodes.verify import verify_ledger_only
from custodes.web.auth import Visitor, csrf_checked, visitor
from custodes.web.context import acting, form_text, reading, render, state, status_of

__all__ = ["FLASH_COOKIE", "router"]

router = APIRouter()

#: The visitor of a page (logged in), and of a form (logged in, and its CSRF token checked).
Seen = Annotated[Visitor, Depends(visitor)]
Checked = Annotated[Visitor, Depends(csrf_checked)]

#: The one-shot cookie that carries a form's outcome to the page it answers 303 to (read and cleared there).
FLASH_COOKIE = "custodes_flash"
#: Longest flash message kept (a refusal's text is shown on its own page, not carried in a cookie).
_FLASH_LONGEST = 400
#: A page a form may send the visitor back to: a local path of this site, never another site's (no //host).
_LOCAL_PATH = re.compile(r"/(?!/)[A-Za-z0-9/_.\-]*")
#: What a view ticket looks like (STREAM's tickets: urlsafe base64); anything else is not put in the player.
_TICKET = re.compile(r"[A-Za-z0-9_\-]{16,128}")


# --- shared helpers ------------------------------------------------------------------------------------------


class _Refused(Exception):
    """A form's input refused before the library is called: its message, shown with 400."""


def _zone(archive: Archive) -> tzinfo:
    """The archive's zone ([devices] time_zone; UTC without one): the times a person reads on its pages."""
    try:
        return zone_info(archive.policy.device_time_zone or "UTC")
    except ValueError:  # the policy loader checked it; a zone this machine lost since reads as UTC
        return zone_info("UTC")


def _when(zone: tzinfo) -> Callable[[int | None], str]:
    """A formatter of ns UTC as a local time with its offset (``—`` for no time)."""

    def when(ns: int | None) -> str:
        if ns is None:
            return "—"
        local = datetime.fromtimestamp(ns // NS, tz=zone)
        return local.strftime("%Y-%m-%d %H:%M:%S %z")

    return when


def _when_text(zone: tzinfo) -> Callable[[str | None], str]:
    """:func:`_when` of a time the report model holds as RFC 3339 UTC text (shown as it is if it is not one)."""
    when = _when(zone)

    def shown(text: str | None) -> str:
        if not text:
            return "—"
        try:
            return when(ns_from_rfc3339(text))
        except ValueError:
            return text

    return shown


def _said(archive: Archive, who: Visitor, key: str, **params: object) -> str:
    """What a form did, for its flash message: the label ``key`` in the visitor's language, with its parameters;
    a time among them (an int, ns UTC) shown in the archive's zone as the pages show every time."""
    when = _when(_zone(archive))
    shown = {k: when(v) if k in _TIMES and (v is None or isinstance(v, int)) else v for k, v in params.items()}
    return message(key, who.lang, **shown)


#: The parameters of a flash message that are times (ns UTC, or None for none).
_TIMES = frozenset({"until"})


def _seconds(ns: int | None) -> str:
    return "—" if ns is None else f"{ns / NS:.1f} s"


def _take_flash(request: Request) -> str | None:
    text = request.cookies.get(FLASH_COOKIE)
    return unquote(text)[:_FLASH_LONGEST] if text else None


def _page(request: Request, who: Visitor, template: str, **ctx: Any) -> HTMLResponse:
    """A page rendered with the flash message a form left for it (then cleared)."""
    flash = _take_flash(request)
    resp = render(request, who, template, flash=flash, **ctx)
    if flash is not None:
        secure = state(request).secure_cookies
        resp.delete_cookie(FLASH_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    return resp


def _back(request: Request, target: str, message: str) -> RedirectResponse:
    """303 to ``target`` with ``message`` for it to show."""
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        FLASH_COOKIE,
        quote(message[:_FLASH_LONGEST]),
        path="/",
        secure=state(request).secure_cookies,
        httponly=True,
        samesite="strict",
        max_age=60,
    )
    return resp


def _refusal(request: Request, who: Visitor, message: str, status: int, back: str) -> HTMLResponse:
    """The library's refusal (or the form's own), in its words, with a way back to the page."""
    return render(request, who, "refused.html", status_code=status, message=message, back=back)


def _acted(request: Request, who: Visitor, back: str, act: Callable[[Archive], str]) -> Response:
    """Run ``act`` (one library call) as the visitor under the write lock; 303 back with what it says, or the
    library's refusal: 403 for what the rules refuse, 400 for input it cannot take, 503 for a catalog custodes
    writes nothing into."""
    try:
        with acting(request, who) as archive:
            said = act(archive)
    except _Refused as e:
        return _refusal(request, who, str(e), 400, back)
    except AccessDenied as e:
        return _refusal(request, who, str(e), 403, back)
    except CheckpointFileError as e:
        return recorded_back(request, who, back, e)
    except CustodesError as e:
        return _refusal(request, who, str(e), status_of(e, 400), back)
    return _back(request, back, said)


def recorded_back(request: Request, who: Visitor, back: str, unsigned: CheckpointFileError) -> RedirectResponse:
    """The answer to a form whose act was recorded and whose checkpoint was not (``unsigned``: raised after the
    act, its checkpoint file or signature alone missing): back to ``back`` as after any act, saying so. A
    "refused" page (400) had a person do it again: a second hold (a fourth hostile review)."""
    said = message("flash_recorded_unsigned", who.lang, cause=unsigned.cause, mend=unsigned.mend)
    return _back(request, back, said)


def _local(path: str, default: str) -> str:
    """``path`` when it is a page of this site, else ``default``: a form's ``back`` never leads elsewhere."""
    return path if _LOCAL_PATH.fullmatch(path) else default


async def _form(request: Request) -> dict[str, str]:
    """The form's text fields (a field given twice: its first value), each free text as the CLI and the API take
    it (custodes.web.context.form_text; a note may hold lines)."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in out:
            out[key] = form_text(key, value.strip(), single_line=key != "note")
    return out


def _id(value: str, what: str) -> int:
    """A positive id given in a form; a clear refusal naming the field otherwise."""
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise _Refused(f"{what}: {value!r} is not an id (a whole number from 1)")
    return int(value)


def _ids(value: str, what: str) -> list[int]:
    """Ids given as a list separated by spaces or commas."""
    parts = [p for p in re.split(r"[\s,;]+", value) if p]
    if not parts:
        raise _Refused(f"{what}: name at least one")
    return [_id(p, what) for p in parts]


def _number(value: str, what: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise _Refused(f"{what}: {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _Refused(f"{what}: {value!r} is not a number")
    return number


def _open_view(archive: Archive, who: Visitor, segment: int, now: int) -> list[AccessRequest]:
    """The visitor's approved, unexpired view requests that name ``segment``: those the player may start under."""
    return [
        r
        for r in requests(archive)
        if r.requester == who.person
        and r.status == "approved"
        and r.purpose == "view"
        and segment in r.segments
        and (r.valid_until is None or now <= r.valid_until)
    ]


def _exports(archive: Archive) -> list[dict[str, Any]]:
    """Every export the ledger records (case, request, recordings, who, when), each with its entry's index: the
    id its bag is downloaded by (``/exports/<index>/bag.tar``, custodes.web.streaming), newest first."""
    return [json.loads(data) | {"index": index} for index, data in reversed(archive.catalog.ledger.of_type("export"))]


def _holds(archive: Archive, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The ledger entries that placed the holds ``ids`` (their reason, who, when), by hold id."""
    wanted = set(ids)
    if not wanted:
        return {}
    entries = (json.loads(data) for _, data in archive.catalog.ledger.of_type("hold"))
    return {e["hold"]: e for e in entries if e.get("hold") in wanted}


# --- /recordings/{segment} -----------------------------------------------------------------------------------


@router.get("/recordings/{segment}", response_class=HTMLResponse)
def recording_page(request: Request, segment: int, who: Seen) -> Response:
    """A recording: its facts, findings with their evidence, the ledger entry that recorded it, its proof, holds,
    and the player (with an open view window of the visitor's) or a form to request access."""
    archive = reading(request)
    try:
        seg = query.segment(archive, segment)
    except query.QueryError as e:
        return _refusal(request, who, str(e), 404, "/")
    stored = archive.catalog.objects.get(seg.sha256)
    digests = json.loads(stored.digests) if stored is not None else {"sha256": seg.sha256}
    found = query.segment_findings(archive, seg)
    raw = archive.catalog.ledger.entry(seg.ledger_index)
    entry = json.dumps(json.loads(raw), indent=2, ensure_ascii=False) if raw is not None else None
    (kept,) = retention.status(archive, [seg.id])
    now = time.time_ns()
    ticket = request.query_params.get("view", "")  # the ticket STREAM's view route sends the page back with
    return _page(
        request,
        who,
        "recording.html",
        seg=seg,
        digests=digests,
        findings=found,
        entry=entry,
        kept=kept,
        placed=_holds(archive, kept.holds),
        windows=_open_view(archive, who, seg.id, now),
        ticket=ticket if _TICKET.fullmatch(ticket) else None,
        kept_on=_kept_on(kept, who.lang, _when(_zone(archive))),
        when=_when(_zone(archive)),
        utc=rfc3339,
        seconds=_seconds,
        evidence=_evidence,
    )


def _kept_on(kept: retention.RetentionStatus, lang: str, when: Callable[[int | None], str]) -> list[str]:
    """The grounds a recording is kept on (custodes.retention.RetentionGround), each labelled in ``lang``."""
    out = []
    for g in kept.grounds:
        if g.kind == "minimum":
            out.append(message("keep_minimum", lang, days=g.value))
        elif g.kind == "important":
            out.append(message("keep_important", lang))
        elif g.kind == "long_term":
            key = f"long_term_{g.value}"
            reason = label(key, lang) if g.value in retention.LONG_TERM_REASONS else g.value
            out.append(message("keep_long_term", lang, reason=reason))
        elif g.until is None:
            out.append(message("keep_case_open", lang, case=g.value))
        else:
            out.append(message("keep_case_until", lang, case=g.value, until=when(g.until)))
    return out


def _evidence(f: RecordedFinding) -> str:
    return json.dumps(f.evidence, indent=1, ensure_ascii=False, sort_keys=True, default=str)


# --- /tasks --------------------------------------------------------------------------------------------------


@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, who: Seen) -> Response:
    """Every task with its coverage: the share recorded, by two devices, and its unexplained gaps."""
    archive = reading(request)
    covs = task_coverage(archive)
    return _page(request, who, "tasks.html", covs=covs, when=_when(_zone(archive)))


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(request: Request, task_id: str, who: Seen) -> Response:
    """One task: its coverage, its uncovered intervals with what explains each, and the form to explain a gap."""
    archive = reading(request)
    try:
        (cov,) = task_coverage(archive, [task_id])
    except CustodesError as e:
        return _refusal(request, who, str(e), 404, "/tasks")
    return _page(
        request,
        who,
        "task.html",
        cov=cov,
        gaps=_gaps(cov),
        causes=CAUSES,
        when=_when(_zone(archive)),
        utc=rfc3339,
        seconds=_seconds,
    )


def _gaps(cov: TaskCoverage) -> list[dict[str, Any]]:
    """Each uncovered interval with the explanations of it and the parts no explanation covers."""
    out = []
    for a, b in cov.uncovered:
        gap = {"start": rfc3339(a), "end": rfc3339(b)}
        explained = [e for e in cov.explained if e["gap"] == gap]
        open_parts = [f for f in cov.findings if f.start is not None and a <= f.start < b]
        # Nothing explains any of it: said so, not the interval's times again; else the parts still unexplained.
        whole = [(f.start, f.end) for f in open_parts] == [(a, b)]
        out.append(
            {"start": a, "end": b, "explained": explained, "unexplained": [] if whole else open_parts, "whole": whole}
        )
    return out


@router.post("/tasks/{task_id}/explain")
async def explain_gap_form(request: Request, task_id: str, who: Checked) -> Response:
    """Explain a gap (``custodes gap explain``): device, from, to, cause, note, and where the officer says why."""
    form = await _form(request)
    back = f"/tasks/{quote(task_id, safe='')}"

    def act(archive: Archive) -> str:
        if archive.catalog.tasks.get(task_id) is None:
            raise _Refused(f"no task {task_id!r} in this archive")
        segment = _id(form["segment"], "segment") if form.get("segment") else None
        offset = _number(form.get("offset", ""), "offset")
        annotation = explain_gap(
            archive,
            form.get("device", ""),
            parse_time(form.get("start", ""), "from"),
            parse_time(form.get("end", ""), "to"),
            form.get("cause", ""),
            form.get("note", ""),
            segment,
            None if offset is None else ns_from_seconds(offset, "offset"),
        )
        return _said(archive, who, "flash_gap_explained", annotation=annotation)

    return _acted(request, who, back, act)


# --- /access -------------------------------------------------------------------------------------------------


@router.get("/access", response_class=HTMLResponse)
def access_page(request: Request, who: Seen) -> Response:
    """The access requests the visitor may see, the holds, and the forms that act on them."""
    archive = reading(request)
    visible = requests(archive, seen_by=who.person)
    held = sorted(archive.catalog.retention.held_segments())
    holds = [s for s in retention.status(archive, held) if s.holds] if held else []
    exports = [e for e in _exports(archive) if e["by"] == who.person]
    return _page(
        request,
        who,
        "access.html",
        requests=list(reversed(visible)),
        holds=holds,
        placed=_holds(archive, [h for s in holds for h in s.holds]),
        exports=exports,
        when=_when(_zone(archive)),
    )


@router.post("/access/request")
async def request_access_form(request: Request, who: Checked) -> Response:
    """Ask for access (``custodes access request``): segments, reason, purpose."""
    form = await _form(request)
    back = _local(form.get("back", ""), "/access")

    def act(archive: Archive) -> str:
        req = request_access(
            archive, _ids(form.get("segments", ""), "segments"), form.get("reason", ""), form.get("purpose", "view")
        )
        purpose = label(f"purpose_{req.purpose}", who.lang)
        return _said(archive, who, "flash_request_pending", id=req.id, purpose=purpose, reason=req.reason)

    return _acted(request, who, back, act)


@router.post("/access/{request_id}/approve")
async def approve_form(request: Request, request_id: int, who: Checked) -> Response:
    """Approve a request (``custodes access approve``) for a window of hours, with a note."""
    form = await _form(request)

    def act(archive: Archive) -> str:
        req = approve(archive, request_id, _number(form.get("hours", ""), "hours"), form.get("note", ""))
        return _said(archive, who, "flash_request_approved", id=req.id, until=req.valid_until)

    return _acted(request, who, "/access", act)


@router.post("/access/{request_id}/deny")
async def deny_form(request: Request, request_id: int, who: Checked) -> Response:
    """Deny a request (``custodes access deny``) with its reason."""
    form = await _form(request)

    def act(archive: Archive) -> str:
        reason = form.get("reason", "")
        if not reason:
            raise _Refused("reason: a denial says why (it is logged and ledgered)")
        req = deny(archive, request_id, reason)
        return _said(archive, who, "flash_request_denied", id=req.id)

    return _acted(request, who, "/access", act)


@router.post("/holds")
async def hold_form(request: Request, who: Checked) -> Response:
    """Place a legal hold (``custodes retention hold``) on a recording, with its reason."""
    form = await _form(request)
    back = _local(form.get("back", ""), "/access")

    def act(archive: Archive) -> str:
        segment = _id(form.get("segment", ""), "segment")
        reason = form.get("reason", "")
        if not reason:
            raise _Refused("reason: a hold says why (a case, a complaint, a court order)")
        placed = retention.hold(archive, segment, reason)
        return _said(archive, who, "flash_hold_placed", hold=placed, segment=segment)

    return _acted(request, who, back, act)


@router.post("/holds/{hold_id}/release")
async def release_form(request: Request, hold_id: int, who: Checked) -> Response:
    """Release a legal hold (``custodes retention release``)."""
    form = await _form(request)
    back = _local(form.get("back", ""), "/access")

    def act(archive: Archive) -> str:
        retention.release(archive, hold_id)
        return _said(archive, who, "flash_hold_released", hold=hold_id)

    return _acted(request, who, back, act)


# --- /report -------------------------------------------------------------------------------------------------

#: Each count of the report page that lists items: (section, count) -> which items (custodes.reports' keys).
#: ``kind:K`` the report's findings of kind K; ``gap:open``/``gap:resolved`` its gaps without/with a cause;
#: ``segments`` the recordings the report counted; ``retention:X`` the recordings due/held/long-term/purged at
#: the report's moment; ``requests:S`` its access requests (all, approved, denied); ``integrity`` the integrity
#: findings; ``concern:C`` the findings of an Art. 25 concern.
_ITEMS: dict[tuple[str, str], str] = {
    ("integrity", "findings"): "integrity",
    ("completeness", "segments"): "segments",
    ("completeness", "gaps"): "kind:gap",
    ("completeness", "gaps_open"): "gap:open",
    ("completeness", "gaps_resolved"): "gap:resolved",
    ("completeness", "unexplained_gaps_in_tasks"): "kind:gap_unexplained",
    ("completeness", "sequence_breaks"): "kind:sequence_break",
    ("completeness", "internal_gaps"): "kind:internal_gap",
    ("clocks", "clock_unset"): "kind:clock_unset",
    ("clocks", "clock_future"): "kind:clock_future",
    ("clocks", "name_time_mismatch"): "kind:name_time_mismatch",
    ("timeliness", "late_ingest"): "kind:late_ingest",
    ("recording", "no_preuse_check"): "kind:no_preuse_check",
    ("recording", "clock_not_set_before_use"): "kind:clock_not_set_before_use",
    ("recording", "task_not_recorded"): "kind:task_not_recorded",
    ("recording", "no_enforcement_context"): "kind:no_enforcement_context",
    ("retention", "due"): "retention:due",
    ("retention", "held"): "retention:held",
    ("retention", "long_term"): "retention:long_term",
    ("retention", "purged"): "retention:purged",
    ("access", "requests"): "requests:all",
    ("access", "approved"): "requests:approved",
    ("access", "denied"): "requests:denied",
    ("access", "refusals"): "kind:unapproved_access",
    ("access", "failed"): "deliveries:failed_deliveries",
    ("access", "unconfirmed"): "deliveries:unconfirmed_deliveries",
    ("recording", "checks"): "checks",
}
#: The counts each section shows, in order, with their catalogue labels.
_COUNTS: dict[str, list[tuple[str, str]]] = {
    "integrity": [
        ("checked", "objects_checked"),
        ("findings", "integrity_findings"),
        ("objects_never_verified", "never_verified"),
    ],
    "completeness": [
        ("segments", "segments"),
        ("gaps", "gaps"),
        ("gaps_open", "gaps_open"),
        ("gaps_resolved", "gaps_resolved"),
        ("unexplained_gaps_in_tasks", "unexplained_gaps"),
        ("sequence_breaks", "sequence_breaks"),
        ("internal_gaps", "internal_gaps"),
    ],
    "clocks": [
        ("clock_unset", "clock_unset"),
        ("clock_future", "clock_future"),
        ("name_time_mismatch", "name_time_mismatch"),
    ],
    "timeliness": [("ingests", "ingests"), ("late_ingest", "late_ingest")],
    "recording": [
        ("checks", "preuse_checks"),
        ("no_preuse_check", "no_preuse_check"),
        ("clock_not_set_before_use", "clock_not_set_before_use"),
        ("task_not_recorded", "task_not_recorded"),
        ("no_enforcement_context", "no_enforcement_context"),
    ],
    "retention": [("due", "due"), ("held", "held"), ("long_term", "long_term"), ("purged", "purged")],
    "access": [
        ("requests", "requests"),
        ("approved", "approved"),
        ("denied", "denied"),
        ("refusals", "refusals"),
        ("views", "views"),
        ("exports", "exports"),
        ("failed", "failed_deliveries"),
        ("unconfirmed", "unconfirmed_deliveries"),
    ],
}


class _Period:
    """The report form's period and scope, checked: what build_report takes, and the query string that asks for
    the same report again (the links and downloads)."""

    def __init__(self, params: dict[str, str], lang: str) -> None:
        self.start_text, self.end_text = params.get("start", "").strip(), params.get("end", "").strip()
        self.scope = params.get("scope", "archive").strip() or "archive"
        self.value = params.get("value", "").strip()
        self.lang = params.get("lang", lang) if params.get("lang") in ("zh", "en") else lang
        self.at_text = params.get("at", "").strip()
        if self.scope not in SCOPES:
            raise _Refused(f"scope: {self.scope!r} is not one of {', '.join(SCOPES)}")
        if self.scope != "archive" and not self.value:
            raise _Refused(f"value: a {self.scope} scope names the {self.scope}'s id")
        try:
            self.start = parse_time(self.start_text, "from") if self.start_text else None
            self.end = parse_time(self.end_text, "to") if self.end_text else None
            self.at = parse_time(self.at_text, "at") if self.at_text else None
        except CustodesError as e:
            raise _Refused(str(e)) from None
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise _Refused(f"from {self.start_text} is not before to {self.end_text}: the period would be empty")

    def build(self, archive: Archive, sections: tuple[str, ...] | None = None) -> Report:
        kw: dict[str, Any] = {} if sections is None else {"sections": sections}
        return build_report(
            archive,
            start=self.start,
            end=self.end,
            scope=self.scope,
            value=None if self.scope == "archive" else self.value,
            lang=self.lang,
            at=self.at,
            **kw,
        )

    def query(self, **more: str) -> str:
        fields = {"start": self.start_text, "end": self.end_text, "scope": self.scope, "value": self.value}
        fields |= {"lang": self.lang, "at": self.at_text} | more
        return urlencode({k: v for k, v in fields.items() if v})


def _counts(report: Report, period: _Period) -> list[dict[str, Any]]:
    """The report's sections as rows of (label, count, link to its items or None), in the model's order."""
    model: dict[str, Any] = dict(report)
    at = report["generated"]  # the items of a link are those of this moment (what is due, held)

    def row(label: str, value: int, prefix: str = "", **link: str) -> dict[str, Any]:
        return {
            "prefix": prefix,
            "label": label,
            "value": value,
            "link": "/report/items?" + period.query(at=at, **link) if link else None,
        }

    sections = []
    for section, counts in _COUNTS.items():
        rows = [
            row(label, model[section][key], **({"section": section, "count": key} if (section, key) in _ITEMS else {}))
            for key, label in counts
        ]
        sections.append({"section": section, "rows": rows})
    devices = [row("registered_devices", report["devices"]["registered"])]
    for u in report["devices"]["units"]:
        name, counted = u["unit"] or "", cast(dict[str, Any], u)
        devices += [
            row(label, counted[key]["count"], name, section="devices", count=key, unit=name)
            for key, label in DEVICE_COUNT_LABELS
        ]
    sections.append({"section": "devices", "rows": devices})
    concerns = [row(c["concern"], c["count"], section="concerns", count=c["concern"]) for c in report["concerns"]]
    sections.append({"section": "concerns", "rows": concerns})
    return sections


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, who: Seen) -> Response:
    """The compliance report for a period and scope: each count links to the items behind it; downloads as PDF,
    CSV and JSON."""
    archive = reading(request)
    params = _params(request)
    try:
        period = _Period(params, who.lang)
        report = period.build(archive)
    except (_Refused, CustodesError) as e:
        return _refusal(request, who, str(e), 400, "/report")
    return _page(
        request,
        who,
        "report.html",
        report=report,
        period=period,
        sections=_counts(report, period),
        scopes=SCOPES,
        when_text=_when_text(_zone(archive)),
        downloads=[(fmt, "/report/download?" + period.query(format=fmt)) for fmt in ("pdf", "csv", "json")],
    )


@router.get("/report/items", response_class=HTMLResponse)
def report_items_page(request: Request, who: Seen) -> Response:
    """The items behind one count of the report: its findings, recordings or requests."""
    archive = reading(request)
    params = _params(request)
    section, count = params.get("section", ""), params.get("count", "")
    try:
        period = _Period(params, who.lang)
        if section == "concerns":
            from custodes.reports import CONCERNS

            if count not in CONCERNS:
                raise _Refused(f"count: {count!r} is no Art. 25 concern")
            what = "concern:" + count
        elif section == "devices":
            if count not in dict(DEVICE_COUNT_LABELS):
                raise _Refused(f"count: {count!r} is no count of recordings of the devices section")
            what = f"devices:{count}"
        elif (section, count) in _ITEMS:
            what = _ITEMS[(section, count)]
        else:
            raise _Refused(f"section {section!r}, count {count!r}: no count of the report lists items")
        kind, items = _items(archive, period, what, params.get("unit", ""))
    except (_Refused, CustodesError) as e:
        return _refusal(request, who, str(e), 400, "/report")
    return _page(
        request,
        who,
        "report_items.html",
        section=section,
        count=count,
        count_label=_count_label(section, count),
        kind=kind,
        items=items,
        back="/report?" + period.query(),
        when=_when(_zone(archive)),
        when_text=_when_text(_zone(archive)),
    )


def _count_label(section: str, count: str) -> str:
    """The catalogue label of one count of the report (as the report page shows it); a concern is its own key."""
    if section == "concerns":
        return count
    if section == "devices":
        return dict(DEVICE_COUNT_LABELS)[count]
    return dict(_COUNTS[section])[count]


def _items(archive: Archive, period: _Period, what: str, unit: str = "") -> tuple[str, list[Any]]:
    """``(kind of item, the items)`` behind one count (see :data:`_ITEMS`; ``unit``: the devices section's unit,
    "" for the devices of no unit)."""
    family, _, arg = what.partition(":")
    if family in ("kind", "gap", "concern"):
        from custodes.reports import in_concern

        report = period.build(archive, ("findings",))
        found: list[Any] = report["findings"]
        if family == "kind":
            return "findings", [f for f in found if f["kind"] == arg]
        if family == "concern":
            return "findings", [f for f in found if in_concern(arg, f)]
        gaps = [f for f in found if f["kind"] == "gap"]
        return "findings", [f for f in gaps if bool(f.get("resolved_by")) == (arg == "resolved")]
    if family == "integrity":
        return "findings", [f.to_json() for f in verify_ledger_only(archive).findings]
    if family == "deliveries":
        access: dict[str, Any] = dict(period.build(archive, ("access",))["access"])
        return "deliveries", list(access[arg])
    if family == "devices":
        units: list[dict[str, Any]] = [dict(u) for u in period.build(archive, ("devices",))["devices"]["units"]]
        listed: list[int] = next((u[arg]["segments"] for u in units if (u["unit"] or "") == unit), [])
        return "segments", [query.segment(archive, s) for s in listed]
    header = period.build(archive, ())
    scope = _scope(header, period)
    if family == "segments":
        return "segments", list(_segments_in(archive, scope))
    if family == "checks":
        from custodes.preuse import checks

        return "checks", [c for c in checks(archive, scope.devices) if scope.lo <= c.time < scope.hi]
    if family == "retention":
        at = ns_from_rfc3339(header["generated"])
        ids = [s.id for s in _segments_in(archive, scope)]
        rows = retention.status(archive, ids) if ids else []
        pick = {
            "purged": lambda r: r.purged,
            "long_term": lambda r: not r.purged and r.keep_until is None,
            "held": lambda r: bool(r.holds),
            "due": lambda r: not r.holds and not r.purged and r.keep_until is not None and at >= r.keep_until,
        }[arg]
        return "retention", [r for r in rows if pick(r)]
    if family == "requests":
        asked = requests(archive)
        if scope.devices is not None:  # as the report counts them: those naming a recording of the scope
            named = sorted({s for r in asked for s in r.segments})
            inside = archive.catalog.segments.in_scope_among(scope, named)
            asked = [r for r in asked if set(r.segments) & inside]
        return "requests", [r for r in asked if arg == "all" or r.status == arg]
    raise _Refused(f"no items {what!r}")


def _scope(header: Report, period: _Period) -> Scope:
    """The scope the report counted in (its devices from the report's own header)."""
    devices = header["scope"]["devices"]
    lo = period.start if period.start is not None else -(2**62)
    hi = period.end if period.end is not None else 2**62
    return Scope(devices, lo, hi, period.value if period.scope == "officer" else None)


def _segments_in(archive: Archive, scope: Scope) -> Iterator[Segment]:
    """The recordings the report counts in ``scope``: the archive's segments (custodes.query, a page at a time)
    that the catalog's own scope rule keeps."""
    page: list[Segment] = []
    for seg in query.segments(archive):
        page.append(seg)
        if len(page) == query.PAGE:
            yield from _kept(archive, scope, page)
            page = []
    yield from _kept(archive, scope, page)


def _kept(archive: Archive, scope: Scope, page: list[Segment]) -> list[Segment]:
    if not page:
        return []
    inside = archive.catalog.segments.in_scope_among(scope, [s.id for s in page])
    return [s for s in page if s.id in inside]


@router.get("/report/download")
def report_download(request: Request, who: Seen) -> Response:
    """The report as a file, written by the reporter ``custodes report --format`` uses (pdf, csv, json)."""
    from custodes.plugins import UnknownPluginError, plugin_manager

    archive = reading(request)
    params = _params(request)
    fmt = params.get("format", "")
    try:
        if fmt not in ("pdf", "csv", "json"):
            raise _Refused(f"format: {fmt!r} is not one of pdf, csv, json")
        reporter = plugin_manager().reporters.get(fmt)
        period = _Period(params, who.lang)
        out = io.BytesIO()
        reporter.render(period.build(archive), out)
    except (_Refused, UnknownPluginError) as e:
        return _refusal(request, who, str(e), 400, "/report")
    except CustodesError as e:
        return _refusal(request, who, str(e), 400, "/report")
    return Response(
        out.getvalue(),
        media_type=reporter.media_type,
        headers={"Content-Disposition": f'attachment; filename="custodes-report{reporter.extension}"'},
    )
