"""The review page's overview routes: the dashboard of what needs a person (``/``), the devices (``/devices``),
and one device's or officer's page (``/devices/{device}``, ``/officers/{officer}``) with its SVG time line, its
recordings and its findings over a window.

Every route only reads (the per-thread archive of custodes.web.context.reading, never the write lock) and
needs a visitor with a role in the policy (custodes.web.auth.visitor), as every read of the archive service
does. The facts come from custodes.web.dashboard, custodes.web.svg and the query API (custodes.query); each list
is bounded (counted in full, at most :data:`LISTED` rows shown), so a device of 10^5 recordings is still a page.

The window of a device or officer page is given by the query parameters ``start`` and ``end``: ns since 1970
UTC (the time line's own links), or an ISO 8601 time (``2024-03-01T18:00``: in the archive's time zone when it
names no offset, as a browser's date-time field gives it). By default: the last seven days that hold recordings.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from custodes.archive import Archive
from custodes.catalog import Scope
from custodes.defaults import NS, ns_from_datetime
from custodes.errors import CustodesError
from custodes.query import QueryError
from custodes.records import RecordedFinding, Segment
from custodes.timeline import zone_info
from custodes.web.auth import Visitor, visitor
from custodes.web.context import reading, render
from custodes.web.dashboard import KINDS, needs_a_person
from custodes.web.i18n import translator
from custodes.web.svg import COLOURS, timeline_of, timeline_svg

__all__ = ["LISTED", "WEEK", "archive_zone", "device_href", "officer_href", "router"]

router = APIRouter()

#: Rows shown per list of a page (all are counted).
LISTED = 200
#: The default window: the last seven days with recordings.
WEEK = 7 * 86_400 * NS


def device_href(device: str) -> str:
    return "/devices/" + quote(device, safe="")


def officer_href(officer: str) -> str:
    return "/officers/" + quote(officer, safe="")


def archive_zone(archive: Archive) -> tzinfo:
    """The zone the archive's people read times in: its devices' zone ([devices] time_zone), else UTC."""
    return zone_info(archive.policy.device_time_zone or "UTC")


def _local(ns: int | None, zone: tzinfo) -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns // NS, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _field(ns: int, zone: tzinfo) -> str:
    """``ns`` as a date-time field's value, in ``zone``."""
    return datetime.fromtimestamp(ns // NS, UTC).astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def _bound(text: str | None, name: str, zone: tzinfo) -> int | None:
    """A window's bound from a query parameter (module docstring), or a 400 naming it."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if text.lstrip("-").isdigit() and len(text) <= 20:
            return int(text)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return ns_from_datetime(when if when.tzinfo is not None else when.replace(tzinfo=zone), name)
    except (ValueError, OverflowError, CustodesError):
        raise HTTPException(400, f"{name}={text!r}: give a time as 2024-03-01T18:00 (or ns since 1970)") from None


def _window(archive: Archive, scope: Scope, start: str | None, end: str | None, zone: tzinfo) -> tuple[int, int]:
    """The window asked for; what is not given, from the last seven days with recordings in ``scope`` (or the
    seven days before now when it has none)."""
    lo, hi = _bound(start, "start", zone), _bound(end, "end", zone)
    if hi is None:
        recorded = archive.catalog.segments.recorded(scope)
        latest = max((e for _, _, e in recorded), default=None)
        hi = latest + 1 if latest is not None else time.time_ns()
        if lo is not None and hi <= lo:
            hi = lo + WEEK
    if lo is None:
        lo = hi - WEEK
    if hi <= lo:
        raise HTTPException(400, "the window must end after it starts (end after start)")
    return lo, hi


def _bounded(items: Any, limit: int = LISTED) -> tuple[list[Any], int]:
    """The first ``limit`` items and how many there are in all."""
    it = iter(items)
    shown = list(itertools.islice(it, limit))
    return shown, len(shown) + sum(1 for _ in it)


def _kind_label(lang: str) -> Any:
    """A finding kind's label in ``lang`` where the catalogue has one, else the kind itself."""
    t = translator(lang)

    def of(kind: str) -> str:
        try:
            return t(kind)
        except KeyError:
            return kind

    return of


#: The findings the time line draws (custodes.web.svg.timeline_of): every one of them is kept for it.
_GAPS = ("gap", "gap_unexplained")


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:  # noqa: B008
    archive = reading(request)
    board = needs_a_person(archive, limit=LISTED)
    zone = archive_zone(archive)
    return render(
        request,
        who,
        "dashboard.html",
        board=board,
        kinds=KINDS,
        kind_label=_kind_label(who.lang),
        local=lambda ns: _local(ns, zone),
        device_href=device_href,
        officer_href=officer_href,
        quote=lambda s: quote(s, safe=""),
    )


@router.get("/devices", response_class=HTMLResponse)
def devices(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:  # noqa: B008
    archive = reading(request)
    shown, count = _bounded(archive.devices(), 1000)
    zone = archive_zone(archive)
    return render(
        request,
        who,
        "devices.html",
        devices=shown,
        count=count,
        local=lambda ns: _local(ns, zone),
        device_href=device_href,
        officer_href=officer_href,
    )


def _timeline_page(
    request: Request,
    who: Visitor,
    *,
    device: str | None,
    officer: str | None,
    start: str | None,
    end: str | None,
) -> HTMLResponse:
    """The page of one device or officer over a window (module docstring)."""
    archive = reading(request)
    zone = archive_zone(archive)
    catalog = archive.catalog
    if device is not None:
        if not catalog.devices.exists(device):
            raise HTTPException(404, f"no device {device!r} in this archive")
        scope, here = Scope([device], -(2**62), 2**62), device_href(device)
    else:
        assert officer is not None
        if not catalog.query.officer_known(officer):
            raise HTTPException(404, f"no officer {officer!r} in this archive")
        scope, here = Scope(catalog.devices.of_officer(officer), -(2**62), 2**62, officer), officer_href(officer)
    lo, hi = _window(archive, scope, start, end, zone)
    try:
        listed: list[RecordedFinding] = []
        gaps: list[RecordedFinding] = []
        finding_count = 0
        for f in archive.findings(device=device, officer=officer, start=lo, end=hi):
            finding_count += 1
            if len(listed) < LISTED:
                listed.append(f)
            if f.kind in _GAPS:
                gaps.append(f)
        line = timeline_of(archive, device=device, officer=officer, start=lo, end=hi, findings=gaps)
        recordings: tuple[list[Segment], int] = _bounded(
            archive.segments(device=device, officer=officer, start=lo, end=hi)
        )
    except QueryError as e:
        raise HTTPException(400, str(e)) from None
    svg = timeline_svg(line, zone=zone, zoom=lambda a, b: f"{here}?start={a}&end={b}")
    facts = next((d for d in archive.devices() if d.id == device), None) if device is not None else None
    return render(
        request,
        who,
        "device.html" if device is not None else "officer.html",
        device=device,
        officer=officer,
        facts=facts,
        here=here,
        svg=Markup(svg),  # noqa: S704 - built by timeline_svg, every text in it escaped
        colours=COLOURS,
        recordings=recordings[0],
        recording_count=recordings[1],
        findings=listed,
        finding_count=finding_count,
        start_field=_field(lo, zone),
        end_field=_field(hi - 1, zone),
        window=(_local(lo, zone), _local(hi, zone)),
        zone_name=datetime.fromtimestamp(lo // NS, UTC).astimezone(zone).tzname() or "",
        local=lambda ns: _local(ns, zone),
        kind_label=_kind_label(who.lang),
        device_href=device_href,
        officer_href=officer_href,
        quote=lambda s: quote(s, safe=""),
        NS=NS,
    )


@router.get("/devices/{device}", response_class=HTMLResponse)
def device_page(
    request: Request,
    device: str,
    start: str | None = None,
    end: str | None = None,
    who: Visitor = Depends(visitor),  # noqa: B008
) -> HTMLResponse:
    return _timeline_page(request, who, device=device, officer=None, start=start, end=end)


@router.get("/officers/{officer}", response_class=HTMLResponse)
def officer_page(
    request: Request,
    officer: str,
    start: str | None = None,
    end: str | None = None,
    who: Visitor = Depends(visitor),  # noqa: B008
) -> HTMLResponse:
    return _timeline_page(request, who, device=None, officer=officer, start=start, end=end)
