"""What a footage file says about its own time: :func:`probe`.

The Rust core walks the MP4/MOV boxes (never reading ``mdat``); this module
turns its facts into a typed :class:`MediaInfo` and into findings:
``truncated`` (bytes missing at the end: a camera that lost power),
``no_moov`` (no sample index at all), ``malformed``, ``internal_gap`` (a hole
in presentation time inside the file) and the clock checks of
:mod:`custodes.timeline`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from custodes import _core
from custodes import timeline as _timeline
from custodes.defaults import NS, TimeRangeError, ns_from_datetime
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339

if TYPE_CHECKING:
    import numpy as np  # only the per-sample columns (samples=True) are numpy arrays; probe starts without it

__all__ = ["CreationTime", "MediaInfo", "TrackInfo", "probe", "probe_many", "MP4_EPOCH_OFFSET"]

#: Seconds from 1904-01-01 (the MP4 epoch) to 1970-01-01.
MP4_EPOCH_OFFSET = 2_082_844_800
#: Extensions of the ISO-BMFF / QuickTime family the box walker reads.
MEDIA_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".m4a", ".m4b", ".3gp", ".3g2", ".mj2"})


def mp4_time(seconds_since_1904: int) -> int | None:
    """ns since the Unix epoch; None for 0, which means the device wrote no time."""
    if not seconds_since_1904:
        return None
    return (seconds_since_1904 - MP4_EPOCH_OFFSET) * NS


#: Metadata texts that state a creation time.
CREATION_DATE_KEYS = ("com.apple.quicktime.creationdate", "©day")


def _iso8601(text: str) -> datetime | None:
    """QuickTime's `2023-05-09T12:41:46+0100` (or with a Z / colon offset); None if it is not one."""
    text = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
    return None


def _iso8601_ns(text: str) -> int | None:
    """A QuickTime date text as UTC ns; None when it is not a date, or is one that
    int64 ns cannot hold (year 9999): such a time is absent, never an overflow later."""
    dt = _iso8601(text)
    if dt is None:
        return None
    try:
        return ns_from_datetime(dt, "creation date")
    except TimeRangeError:
        return None


@dataclass(frozen=True, slots=True)
class CreationTime:
    """One clock's statement of when the recording was made."""

    source: str  # "mvhd", "tkhd", "mdhd", "com.apple.quicktime.creationdate", "©day"
    time: int  # ns since the epoch, UTC as the container labels it
    raw: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "time": rfc3339(self.time), "raw": self.raw}


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One track of a container as its boxes describe it (times in seconds of the presentation)."""

    id: int
    kind: str  # video, audio, timecode, metadata, subtitle, data
    handler: str
    codec: str | None
    timescale: int
    samples: int
    duration: float | None  # seconds, from mdhd (or the fragments)
    start: float | None  # presentation time of the first sample, edit list applied
    end: float | None
    frame_duration: float | None  # median step between presentation times
    internal_gaps: list[tuple[float, float]]
    timecode: str | None
    pts: np.ndarray | None = None  # per sample, media timescale, decode order (samples=True)
    offsets: np.ndarray | None = None  # per sample file offset (samples=True)
    sizes: np.ndarray | None = None  # per sample size in bytes (samples=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "handler": self.handler,
            "codec": self.codec,
            "timescale": self.timescale,
            "samples": self.samples,
            "duration": self.duration,
            "start": self.start,
            "end": self.end,
            "frame_duration": self.frame_duration,
            "internal_gaps": [list(g) for g in self.internal_gaps],
            "timecode": self.timecode,
        }


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a file says about itself (:func:`probe`): its container's times, completeness, tracks and the
    findings about them. ``creation_time`` is ns since the epoch as the device's clock said it."""

    path: str
    size: int
    brand: str | None
    creation_time: int | None  # ns, from mvhd: what the device's clock said
    creation_times: list[CreationTime]
    duration: float | None
    complete: bool
    missing_bytes: int
    fragmented: bool
    location: str | None
    metadata: dict[str, str]
    tracks: list[TrackInfo]
    av_offset_start: float | None  # video start - audio start, seconds
    av_offset_end: float | None
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "brand": self.brand,
            "creation_time": rfc3339(self.creation_time),
            "creation_times": [c.to_json() for c in self.creation_times],
            "duration": self.duration,
            "complete": self.complete,
            "missing_bytes": self.missing_bytes,
            "fragmented": self.fragmented,
            "location": self.location,
            "metadata": self.metadata,
            "tracks": [t.to_json() for t in self.tracks],
            "av_offset_start": self.av_offset_start,
            "av_offset_end": self.av_offset_end,
            "findings": [f.to_json() for f in self.findings],
        }


def _track(t: dict[str, Any]) -> TrackInfo:
    timing = t["timing"]
    ts = t["timescale"]
    return TrackInfo(
        id=t["id"],
        kind=t["kind"],
        handler=t["handler"],
        codec=t["codec"],
        timescale=ts,
        samples=t["sample_count"],
        duration=t["duration"] / ts if ts else None,
        start=timing["start"] if timing else None,
        end=timing["end"] if timing else None,
        frame_duration=timing["median_step"] if timing else None,
        internal_gaps=list(timing["gaps"]) if timing else [],
        timecode=t["timecode"]["display"] if t["timecode"] else None,
        pts=t.get("pts"),
        offsets=t.get("offsets"),
        sizes=t.get("sizes"),
    )


def _creation_times(raw: dict[str, Any]) -> list[CreationTime]:
    out: list[CreationTime] = []
    if raw["movie"] and (t := mp4_time(raw["movie"]["creation"])) is not None:
        out.append(CreationTime("mvhd", t, str(raw["movie"]["creation"])))
    for tr in raw["tracks"]:
        for source in ("tkhd", "mdhd"):
            value = tr[f"{source}_creation"]
            t = mp4_time(value)
            if t is not None and all(c.time != t or c.source != source for c in out):
                out.append(CreationTime(source, t, str(value)))
    for key, value in raw["metadata"]:
        if key in CREATION_DATE_KEYS and (t := _iso8601_ns(value)) is not None:
            out.append(CreationTime(key, t, value))
    return out


def _metadata_time_findings(path: str, raw: dict[str, Any]) -> list[Finding]:
    """A creation date that is a date but out of range is a misread or forged field: a finding."""
    return [
        Finding(
            "malformed",
            f"time_out_of_range: {key} {value.strip()!r} is outside the times custodes can "
            "represent (1677-09-21 to 2262-04-11 UTC); treated as absent",
            path=path,
            evidence={"problem": "time_out_of_range", "key": key, "value": value},
        )
        for key, value in raw["metadata"]
        if key in CREATION_DATE_KEYS and _iso8601(value) is not None and _iso8601_ns(value) is None
    ]


def _info(path: str, raw: dict[str, Any], *, reference_time: int, clock_floor: int, clock_tolerance: int) -> MediaInfo:
    tracks = [_track(t) for t in raw["tracks"]]
    movie = raw["movie"]
    if movie and movie["timescale"] and movie["duration"]:
        duration: float | None = movie["duration"] / movie["timescale"]
    else:  # fragmented files often leave mvhd's duration at 0
        ends = [t.duration for t in tracks if t.duration]
        duration = max(ends) if ends else None
    has_moov = "moov" in raw["top_level"]
    creation = mp4_time(movie["creation"]) if movie else None
    findings: list[Finding] = []
    if raw["missing_bytes"]:
        findings.append(
            Finding(
                "truncated",
                f"{raw['missing_bytes']} bytes missing at the end of the file "
                "(the container points past its end: recording cut off?)",
                path=path,
                evidence={"missing_bytes": raw["missing_bytes"], "size": raw["file_size"]},
            )
        )
    for kind, detail in raw["problems"]:
        if kind == "no_moov":
            findings.append(Finding("no_moov", detail, path=path))
        elif kind != "truncated_box":  # already said by the `truncated` finding
            findings.append(Finding("malformed", f"{kind}: {detail}", path=path, evidence={"problem": kind}))
    findings += _metadata_time_findings(path, raw)
    for t in tracks:
        for a, b in t.internal_gaps:
            findings.append(
                Finding(
                    "internal_gap",
                    f"{t.kind} track {t.id}: no samples for {b - a:.3f} s from {a:.3f} s",
                    path=path,
                    start=None if creation is None else creation + round(a * NS),
                    end=None if creation is None else creation + round(b * NS),
                    evidence={"track": t.id, "from": a, "to": b, "frame_duration": t.frame_duration},
                )
            )
    if has_moov:
        findings += _timeline.clock_findings(
            [creation], [path], reference_time=reference_time, floor=clock_floor, tolerance=clock_tolerance
        )
    video = next((t for t in tracks if t.kind == "video" and t.start is not None), None)
    audio = next((t for t in tracks if t.kind == "audio" and t.start is not None), None)
    both = video is not None and audio is not None
    return MediaInfo(
        path=path,
        size=raw["file_size"],
        brand=raw["major_brand"],
        creation_time=creation,
        creation_times=_creation_times(raw),
        duration=duration,
        complete=has_moov
        and not raw["missing_bytes"]
        and not any(f.kind in ("malformed", "no_moov") for f in findings),
        missing_bytes=raw["missing_bytes"],
        fragmented=raw["fragmented"],
        location=raw["location"],
        metadata=dict(raw["metadata"]),
        tracks=tracks,
        av_offset_start=video.start - audio.start if both else None,  # type: ignore[operator,union-attr]
        av_offset_end=video.end - audio.end if both else None,  # type: ignore[operator,union-attr]
        findings=findings,
    )


def probe_many(
    paths: Iterable[str | os.PathLike[str]],
    *,
    gap_factor: float = 3.0,
    samples: bool = False,
    reference_time: int | None = None,
    clock_floor: int = _timeline.DEFAULT_CLOCK_FLOOR,
    clock_tolerance: int = 5 * NS,
) -> list[MediaInfo | CustodesError]:
    """Probe many files in parallel; a file that cannot be opened is its exception.

    ``gap_factor``: an internal gap is a step in presentation time longer than
    this many median frame durations. ``reference_time`` (ns; default now) is
    the time after which a creation time is in the future.
    """
    fs = [os.fspath(p) for p in paths]
    ref = time.time_ns() if reference_time is None else reference_time
    raws = _core.probe_files(fs, gap_factor, samples)
    return [
        r
        if isinstance(r, CustodesError)
        else _info(p, r, reference_time=ref, clock_floor=clock_floor, clock_tolerance=clock_tolerance)
        for p, r in zip(fs, raws, strict=True)
    ]


def probe(path: str | os.PathLike[str], **options: Any) -> MediaInfo:
    """Container facts and findings of one file; raises if it cannot be opened."""
    (result,) = probe_many([path], **options)
    if isinstance(result, CustodesError):
        raise result
    return result
