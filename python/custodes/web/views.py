"""The review page's overview routes: the dashboard of what needs a person (``/``), the devices (``/devices``),
and one device's or officer's page (``/devices/{device}``, ``/officers/{officer}``) with its SVG time line, its
recordings and its findings over a window.

Every route only reads (the per-thread archive of custodes.web.context.reading, never the write lock) and
needs a visitor with a role in the policy (custodes.web.auth.visitor), as every read of the archive service
does. The facts come from custodes.web.dashboard, custodes.web.svg and the query API (custodes.query); each list
shows its first :data:`LISTED` rows and says when there are more (the dashboard counts everything; the report
counts a device's findings), so a device of 10^5 recordings is still a page.

The window of a device or officer page is given by the query parameters ``start`` and ``end``: ns since 1970
UTC (the time line's own links), or an ISO 8601 time (``2024-03-01T18:00``: in the archive's time zone when it
names no offset, as a browser's date-time field gives it). By default: the last seven days that hold recordings.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from custodes.archive import Archive
from custodes.catalog import Scope
from custodes.defaults import NS, ns_from_datetime
from custodes.errors import CustodesError
from custodes.query import QueryError
from custodes.timeline import zone_info
from custodes.web.auth import Visitor, visitor
from custodes.web.context import reading, render
from custodes.web.dashboard import KINDS, needs_a_person
from custodes.web.svg import COLOURS, timeline_of, timeline_svg

__all__ = ["LISTED", "WEEK", "archive_zone", "device_href", "officer_href", "router"]

router = APIRouter()
T = TypeVar("T")

#: Rows shown per list of a page.
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


def _local(ns: int | None, zone: tzinfo, sep: str = " ") -> str:
    """``ns`` in ``zone``, to the second (the second it falls in: truncated, never rounded); ``sep`` between
    the date and the time (``T``: a date-time field's value)."""
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns // NS, UTC).astimezone(zone).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def _shown_window(lo: int, hi: int) -> tuple[int, int]:
    """The window as a person reads it and gives it back: whole seconds, its end rounded up (so that the form,
    sent again, still holds a recording that ends inside the last second). The heading and the form's fields
    both show these two, through :func:`_local`."""
    return lo // NS * NS, -(-hi // NS) * NS


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


#: How far back the latest recording is looked for first: the last month's recordings are read, not a device's
#: years of them (10^5 rows are half a second), and only a device silent that long is read in full.
_RECENT = 31 * 86_400 * NS


def _latest_recording(archive: Archive, scope: Scope) -> int | None:
    """When the scope's latest timed recording ended (ns), or None when it has none."""
    recent = Scope(scope.devices, time.time_ns() - _RECENT, 2**62, scope.officer)
    for where in (recent, scope):
        latest = max((e for _, _, e in archive.catalog.segments.recorded(where)), default=None)
        if latest is not None:
            return latest
    return None


def _window(archive: Archive, scope: Scope, start: str | None, end: str | None, zone: tzinfo) -> tuple[int, int]:
    """The window asked for; what is not given, from the last seven days with recordings in ``scope`` (or the
    seven days before now when it has none). A default window runs a twentieth past the last recording's end: at
    the very edge, a short last recording was a pixel under the picture's border, and the week read as all gap."""
    lo, hi = _bound(start, "start", zone), _bound(end, "end", zone)
    if hi is None:
        latest = _latest_recording(archive, scope)
        hi = latest + WEEK // 20 if latest is not None else time.time_ns()
        if lo is not None and hi <= lo:
            hi = lo + WEEK
    if lo is None:
        lo = hi - WEEK
    if hi <= lo:
        raise HTTPException(400, "the window must end after it starts (end after start)")
    return lo, hi


def _first(items: Iterator[T], limit: int | None = None) -> tuple[list[T], bool]:
    """The first ``limit`` of ``items``, and whether there are more. A page lists the first rows only: counting
    every finding of a device of 10^5 would read them all (seconds), for a number the report gives anyway."""
    limit = LISTED if limit is None else limit
    try:
        shown = list(itertools.islice(items, limit + 1))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a query walk drops its temporary table when it ends
    return shown[:limit], len(shown) > limit


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:  # noqa: B008
    archive = reading(request)
    board = needs_a_person(archive, limit=LISTED, seen_by=who.person)
    zone = archive_zone(archive)
    return render(
        request,
        who,
        "dashboard.html",
        board=board,
        kinds=KINDS,
        local=lambda ns: _local(ns, zone),
        device_href=device_href,
        officer_href=officer_href,
        quote=lambda s: quote(s, safe=""),
    )


@router.get("/devices", response_class=HTMLResponse)
def devices(request: Request, who: Visitor = Depends(visitor)) -> HTMLResponse:  # noqa: B008
    archive = reading(request)
    shown, more = _first(archive.devices(), 1000)
    zone = archive_zone(archive)
    return render(
        request,
        who,
        "devices.html",
        devices=shown,
        more=more,
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
        line = timeline_of(archive, device=device, officer=officer, start=lo, end=hi)
        recordings, more_recordings = _first(archive.segments(device=device, officer=officer, start=lo, end=hi))
        findings, more_findings = _first(archive.findings(device=device, officer=officer, start=lo, end=hi))
    except QueryError as e:
        raise HTTPException(400, str(e)) from None
    svg = timeline_svg(line, zone=zone, zoom=lambda a, b: f"{here}?start={a}&end={b}")
    shown = _shown_window(lo, hi)
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
        recordings=recordings,
        more_recordings=more_recordings,
        findings=findings,
        more_findings=more_findings,
        start_field=_local(shown[0], zone, "T"),
        end_field=_local(shown[1], zone, "T"),
        window=(_local(shown[0], zone), _local(shown[1], zone)),
        zone_name=datetime.fromtimestamp(lo // NS, UTC).astimezone(zone).tzname() or "",
        local=lambda ns: _local(ns, zone),
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
