"""The SVG time line of one device or officer over a window: what was recorded, the gaps (explained by a cause, or
not), the task windows, and the recordings whose times a clock correction moved.

:func:`timeline_of` gathers a :class:`Timeline` from the archive through the query API and custodes.tasks (the
same gaps, explanations and coverage the report and ``custodes query`` give); :func:`timeline_svg` draws one.

The picture is built for a page whose Content-Security-Policy forbids inline style and script: colours are
presentation attributes (``fill``, ``stroke``), never ``style=""``, and there is no script. Every text (device
names, file names, causes come from devices and people) is escaped as XML character data or a quoted attribute,
and a link is only ever a path on this server. Its size is bounded whatever the window holds: spans closer than
a pixel are drawn as one (linked to the window they cover, when the caller gives a ``zoom`` link), so a layer
holds at most about one element per two pixels of width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from custodes.defaults import NS
from custodes.findings import ns_from_rfc3339

if TYPE_CHECKING:
    from custodes.archive import Archive

__all__ = ["COLOURS", "Mark", "Span", "Timeline", "recording_href", "task_href", "timeline_of", "timeline_svg"]

#: The fill of each layer (presentation attributes: the page's CSP forbids inline style).
COLOURS = {
    "task": "#d9e2f3",
    "recorded": "#2e8b57",
    "explained": "#e8b53a",
    "unexplained": "#c62828",
    "correction": "#6a1b9a",
}
#: Height of the picture's rows, in pixels.
_TASK_Y, _TASK_H = 4, 14
_REC_Y, _REC_H = 22, 26
_MARK_Y = 52
_AXIS_Y = 66
HEIGHT = 100
#: Task windows drawn at most (the rest are not: a device serves a handful of tasks a day).
MAX_TASKS = 200


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time [start, end) ns UTC, the page it links to (None: none) and its label (the tooltip)."""

    start: int
    end: int
    href: str | None
    label: str


@dataclass(frozen=True, slots=True)
class Mark:
    """An instant (ns UTC) marked on the line: a recording whose time a clock correction moved."""

    time: int
    href: str | None
    label: str


@dataclass(frozen=True)
class Timeline:
    """What one device's or officer's line shows over [start, end) ns UTC: ``recorded`` time, the gaps between
    recordings ``explained`` by a cause or ``unexplained``, the ``tasks``' windows and their ``task_gaps`` (the
    tasks' ``gap_unexplained``), and the ``corrections`` (recordings whose times a clock correction moved)."""

    title: str
    start: int
    end: int
    recorded: list[Span] = field(default_factory=list)
    explained: list[Span] = field(default_factory=list)
    unexplained: list[Span] = field(default_factory=list)
    tasks: list[Span] = field(default_factory=list)
    task_gaps: list[Span] = field(default_factory=list)
    corrections: list[Mark] = field(default_factory=list)


def recording_href(segment: int) -> str:
    return f"/recordings/{int(segment)}"


def task_href(task: str) -> str:
    return "/tasks/" + quote(task, safe="")


def _seconds(ns: int) -> str:
    return f"{ns / NS:,.0f} s"


def _gap_span(f: dict[str, Any]) -> tuple[str, int, int] | None:
    """(device, start, end) of a ``gap`` finding of the report's model; None for one edited out of shape (verify
    names it; the report shows it open)."""
    try:
        device, a, b = f["device"], ns_from_rfc3339(f["start"]), ns_from_rfc3339(f["end"])
    except (KeyError, ValueError):
        return None
    return (device, a, b) if isinstance(device, str) and b > a else None


def timeline_of(
    archive: Archive, *, device: str | None = None, officer: str | None = None, start: int, end: int
) -> Timeline:
    """The time line of ``device`` or ``officer`` (one of them) over [start, end) ns UTC: their recordings
    (custodes.query.segments), each recording whose start a clock correction moved, the ``gap`` findings of
    their devices (as the report reads them, custodes.reports) split into what custodes.tasks.Explanations
    explains and what it does not, and the tasks their devices (or the officer) served (custodes.tasks.task_coverage)
    with their ``gap_unexplained``. Raises custodes.query.QueryError for a device or officer the archive does
    not know."""
    from custodes.catalog import Scope
    from custodes.query import segments as query_segments
    from custodes.reports import _catalog_findings
    from custodes.tasks import Explanations, task_coverage

    if (device is None) == (officer is None):
        raise ValueError("a time line is of one device or one officer")
    line = Timeline(device if device is not None else f"officer {officer}", start, end)
    devices: set[str] = set() if device is None else {device}
    for s in query_segments(archive, device=device, officer=officer, start=start, end=end):
        devices.add(s.device)
        if s.start is None:
            continue
        label = f"{s.name} ({s.device}, segment {s.id})"
        line.recorded.append(Span(s.start, s.end if s.end is not None else s.start, recording_href(s.id), label))
        if s.device_start is not None and s.device_start != s.start:
            moved = f"{s.name}: clock corrected by {_seconds(s.start - s.device_start)}"
            line.corrections.append(Mark(s.start, recording_href(s.id), moved))
    if officer is not None:
        devices |= set(archive.catalog.devices.of_officer(officer))
    # A gap found before the window may reach into it: every gap of the devices up to the window's end, kept
    # when it ends inside.
    found = _catalog_findings(archive, Scope(sorted(devices), -(2**62), end), ("gap",)) if devices else []
    gaps = [g for g in (_gap_span(f) for f in found) if g is not None and g[2] > start]
    explanations = Explanations.of(archive) if gaps else None
    for d, a0, b0 in gaps:
        assert explanations is not None
        for a, b, why in explanations.within([d], a0, b0):
            line.explained.append(Span(a, b, None, f"{d}: {why.get('cause')}: {why.get('note') or ''}"))
        for a, b in explanations.unexplained([d], a0, b0):
            line.unexplained.append(Span(a, b, None, f"{d}: {_seconds(b - a)} not recorded, no cause"))
    for c in task_coverage(archive):
        t = c.task
        theirs = bool(devices & set(c.devices)) or (officer is not None and officer in t.officers)
        if not theirs or t.start >= end or t.end <= start:
            continue
        line.tasks.append(Span(t.start, t.end, task_href(t.id), f"task {t.id} ({t.type})"))
        for f in c.findings:  # the task's gap_unexplained, on its window
            if f.start is not None and f.end is not None:
                line.task_gaps.append(Span(f.start, f.end, task_href(t.id), f.message))
    return line


def _link(href: str | None, inner: str) -> str:
    """``inner`` linked to ``href``: a path on this server only (never a scheme or another host)."""
    if href is None or not href.startswith("/") or href.startswith("//"):
        return inner
    return f"<a href={quoteattr(href)}>{inner}</a>"


def _merged(
    spans: Iterable[Span], lo: int, hi: int, ns_per_px: float, zoom: Callable[[int, int], str] | None
) -> list[Span]:
    """The spans clipped to [lo, hi) and sorted, those less than a pixel apart drawn as one: a run of several
    links to ``zoom(start, end)`` (the window it covers), or to nothing."""
    out: list[tuple[int, int, list[Span]]] = []
    for s in sorted((s for s in spans if s.end >= lo and s.start < hi), key=lambda s: s.start):
        a, b = max(s.start, lo), min(max(s.end, s.start), hi)
        if out and a - out[-1][1] < ns_per_px:
            last = out[-1]
            last[2].append(s)
            out[-1] = (last[0], max(last[1], b), last[2])
        else:
            out.append((a, b, [s]))
    merged = []
    for a, b, group in out:
        if len(group) == 1:
            merged.append(Span(a, b, group[0].href, group[0].label))
        else:
            label = f"{len(group)} ({group[0].label} …)"
            merged.append(Span(a, b, zoom(a, b) if zoom is not None else None, label))
    return merged


#: Tick steps, seconds: the first that leaves at most :data:`_TICKS` ticks.
_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    30 * 86400,
)
_TICKS = 8


def _ticks(lo: int, hi: int, zone: tzinfo) -> list[tuple[int, str]]:
    """Tick times (ns) on whole steps of the zone's local time, each with its label in that zone."""
    span_s = max(1, (hi - lo) // NS)
    step = next((s for s in _STEPS if span_s / s <= _TICKS), None)
    if step is None:
        step = -(-span_s // _TICKS)
    offset = int((datetime.fromtimestamp(lo // NS, UTC).astimezone(zone).utcoffset() or timedelta()).total_seconds())
    first = -(-(lo // NS + offset) // step) * step - offset
    fmt = "%m-%d" if step >= 86400 else ("%m-%d %H:%M" if span_s > 86400 else ("%H:%M" if step >= 60 else "%H:%M:%S"))
    out = []
    for t in range(first, hi // NS + 1, step):
        out.append((t * NS, datetime.fromtimestamp(t, UTC).astimezone(zone).strftime(fmt)))
    return out


def _rect(x0: float, x1: float, y: int, h: int, fill: str, span: Span, width: int, stroke: str = "none") -> str:
    w = max(x1 - x0, 1.0)  # a span narrower than a pixel is drawn one pixel wide, not lost
    x0 = min(x0, width - w)  # nor drawn past the right edge (a window ends at its last recording's end)
    body = (
        f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{h}" fill="{fill}" stroke="{stroke}">'
        f"<title>{escape(span.label)}</title></rect>"
    )
    return _link(span.href, body)


def timeline_svg(
    line: Timeline,
    *,
    zone: tzinfo = UTC,
    width: int = 960,
    zoom: Callable[[int, int], str] | None = None,
) -> str:
    """``line`` drawn as an SVG document ``width`` pixels wide: task windows on top, then recordings and gaps on
    one row, clock corrections as marks beneath, and an axis with times in ``zone`` (the archive's). Each element
    links to its page (``zoom(start, end)``: the page of a shorter window, for spans drawn as one); each label is
    its ``<title>``. Raises ValueError for an empty window or a width below 100 pixels."""
    lo, hi = line.start, line.end
    if hi <= lo:
        raise ValueError("a time line's window must end after it starts")
    if width < 100:
        raise ValueError(f"width {width}: at least 100 pixels")
    ns_per_px = (hi - lo) / width

    def x(t: int) -> float:
        return min(max((t - lo) / ns_per_px, 0.0), float(width))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}" role="img" aria-label={quoteattr(line.title)} class="timeline">',
        f"<title>{escape(line.title)}</title>",
        f'<rect x="0" y="{_REC_Y}" width="{width}" height="{_REC_H}" fill="#f4f4f4" stroke="#bbb"/>',
    ]
    # Tasks are few and may share a window (each its own page): drawn each, not merged, at most MAX_TASKS.
    for s in sorted(line.tasks, key=lambda s: s.start)[:MAX_TASKS]:
        parts.append(_rect(x(s.start), x(s.end), _TASK_Y, _TASK_H, COLOURS["task"], s, width, stroke="#5b7bb5"))
    for s in _merged(line.task_gaps, lo, hi, ns_per_px, zoom):  # inside their task's window, on its row
        parts.append(_rect(x(s.start), x(s.end), _TASK_Y, _TASK_H, COLOURS["unexplained"], s, width))
    # Recordings last, over the gaps: a gap ends where a recording starts, and one drawn after a recording shorter
    # than a pixel covered it.
    for layer in ("unexplained", "explained", "recorded"):
        spans: list[Span] = getattr(line, layer)
        for s in _merged(spans, lo, hi, ns_per_px, zoom):
            parts.append(_rect(x(s.start), x(s.end), _REC_Y, _REC_H, COLOURS[layer], s, width))
    marks = [Span(m.time, m.time, m.href, m.label) for m in line.corrections]
    for s in _merged(marks, lo, hi, ns_per_px * 6, zoom):  # a mark is six pixels wide: closer ones are one
        cx = x(s.start)
        shape = (
            f'<polygon points="{cx:.1f},{_MARK_Y} {cx - 4:.1f},{_MARK_Y + 8} {cx + 4:.1f},{_MARK_Y + 8}" '
            f'fill="{COLOURS["correction"]}"><title>{escape(s.label)}</title></polygon>'
        )
        parts.append(_link(s.href, shape))
    parts.append(f'<line x1="0" y1="{_AXIS_Y}" x2="{width}" y2="{_AXIS_Y}" stroke="#444"/>')
    for t, label in _ticks(lo, hi, zone):
        tx = x(t)
        anchor = "start" if tx < 40 else ("end" if tx > width - 40 else "middle")
        parts.append(f'<line x1="{tx:.1f}" y1="{_AXIS_Y}" x2="{tx:.1f}" y2="{_AXIS_Y + 5}" stroke="#444"/>')
        parts.append(
            f'<text x="{tx:.1f}" y="{_AXIS_Y + 17}" font-size="11" fill="#222" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    zone_name = datetime.fromtimestamp(lo // NS, UTC).astimezone(zone).tzname() or ""
    parts.append(
        f'<text x="{width}" y="{HEIGHT - 2}" font-size="10" fill="#555" text-anchor="end">{escape(zone_name)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
