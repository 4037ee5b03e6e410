"""custodes driver for DJI drone footage with .SRT sidecars. See README.md."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from custodes import timeline
from custodes.defaults import NS
from custodes.drivers import (
    Driver,
    DriverOptionError,
    NonRecording,
    VolumeReading,
    VolumeSegment,
    identity_from,
    media_segments,
    scan_volume,
)
from custodes.findings import Finding
from custodes.hookspecs import hookimpl
from custodes.media import MEDIA_EXTENSIONS
from custodes.plugins import DeviceDriver

__version__ = "0.1.0"
MAX_SIDECAR = 64 << 20

_CUE = re.compile(r"^(\d+):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{3})")
_WALL = [
    (re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})[,.](\d{3})"), True),
    (re.compile(r"(\d{4})\.(\d{2})\.(\d{2}) (\d{2}):(\d{2}):(\d{2})"), False),
]
# Some firmwares spell it "longtitude".
_LATLON = re.compile(
    r"\[latitude\s*:\s*(-?[\d.]+)\]\s*\[(?:longitude|longtitude)\s*:\s*(-?[\d.]+)\]"
    r"(?:\s*\[(?:rel_alt|altitude)\s*:\s*(-?[\d.]+))?"
)
_GPS = re.compile(r"GPS\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)")


@dataclass(frozen=True)
class Fix:
    """One telemetry block: when (into the video, and on the aircraft clock) and where."""

    offset: float  # seconds into the video
    wall: int | None  # ns, aircraft clock read in the option's zone
    lat: float | None
    lon: float | None
    alt: float | None


def _number(text: str | None) -> float | None:
    """A coordinate from the sidecar, or None when the text is not a finite number."""
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def parse_srt(text: str, tz: ZoneInfo) -> tuple[list[Fix], bool]:
    """The telemetry blocks of a DJI sidecar, and whether it is whole.

    A sidecar is cut off or damaged when a block has no cue line, no body, or
    fewer lines than the file's usual block (a recorder that lost power stops
    in the middle of one)."""
    fixes: list[Fix] = []
    complete = True
    blocks = [b.strip().splitlines() for b in re.split(r"\r?\n\s*\r?\n", text.strip()) if b.strip()]
    counts = sorted(len(b) for b in blocks)
    usual = counts[len(counts) // 2] if len(counts) >= 3 else 0
    for lines in blocks:
        if len(lines) < usual:
            complete = False
        cue = next((m for line in lines[:3] if (m := _CUE.match(line.strip()))), None)
        if cue is None:
            complete = False
            continue
        h, mi, se, ms = (int(x) for x in cue.groups()[:4])
        offset = h * 3600 + mi * 60 + se + ms / 1000
        body = " ".join(lines[2:]) if len(lines) > 2 else ""
        wall = None
        for pattern, has_ms in _WALL:
            if m := pattern.search(body):
                parts = [int(x) for x in m.groups()]
                try:
                    dt = datetime(*parts[:6], tzinfo=tz)
                except ValueError:
                    break
                wall = int(dt.timestamp()) * NS + (parts[6] * 1_000_000 if has_ms else 0)
                break
        lat = lon = alt = None
        if m := _LATLON.search(body):
            lat, lon, alt = _number(m[1]), _number(m[2]), _number(m[3])
        elif m := _GPS.search(body):  # DJI writes GPS (longitude, latitude, altitude)
            lon, lat, alt = _number(m[1]), _number(m[2]), _number(m[3])
        if m and (lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180):
            lat = lon = alt = None  # a position that is not one ("1.2.3", "."): the block is damaged
            complete = False
        if not body:
            complete = False
        fixes.append(Fix(offset, wall, lat, lon, alt))
    return fixes, complete


def iso6709(fix: Fix) -> str:
    alt = f"{fix.alt:+.3f}" if fix.alt is not None else ""
    return f"{fix.lat:+08.4f}{fix.lon:+09.4f}{alt}/"


class DjiDriver(Driver):
    name = "dji"

    def recognise(self, volume: Path) -> float:
        """Sure (0.8) when a .SRT sidecar sits beside its recording, less (0.5) from DJI_ names alone, or
        (0.3) a card of sidecars only. Sidecars beside other recordings, none of them theirs, are not a
        drone's card (the bundled sample footage: phones, cameras and two loose DJI sidecars)."""
        files, _, _ = scan_volume(volume)
        names = [f.name.upper() for f in files]
        stems = {os.path.splitext(n)[0] for n in names if n.endswith(".SRT")}
        media = {os.path.splitext(n)[0] for n in names if os.path.splitext(n)[1].lower() in MEDIA_EXTENSIONS}
        if stems & media:
            return 0.8
        if any(os.path.basename(n).startswith("DJI_") for n in names):
            return 0.5
        return 0.3 if stems and not media else 0.0

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        try:
            tz = ZoneInfo(options.get("tz", "UTC"))
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise DriverOptionError(f"unknown time zone {options.get('tz')!r}") from e
        files, findings, skipped = scan_volume(volume)
        identity = identity_from(volume, options, kind="drone", vendor="DJI")
        device = identity.device_id
        findings = [replace(f, device=device) for f in findings]
        sidecars = {os.path.splitext(f.name)[0].upper(): f for f in files if f.name.upper().endswith(".SRT")}
        segments, probe_findings, rest = media_segments(
            [f for f in files if not f.name.upper().endswith(".SRT")], device
        )
        findings += probe_findings
        findings += [
            Finding("unknown_file", "not a recording this driver knows; kept as it is", device, f.path) for f in rest
        ]
        telemetry: dict[str, tuple[list[Fix], bool]] = {}
        for key, f in sidecars.items():
            try:
                with open(f.path, "rb") as fh:
                    raw = fh.read(MAX_SIDECAR)
            except OSError as e:
                findings.append(Finding("unreadable", f"sidecar cannot be read: {e.strerror}", device, f.path))
                continue
            fixes, complete = parse_srt(raw.decode("utf-8", "replace"), tz)
            telemetry[key] = (fixes, complete)
            if not complete:
                findings.append(
                    Finding(
                        "malformed",
                        f"sidecar cut off or damaged: {len(fixes)} readable blocks",
                        device,
                        f.path,
                        evidence={"blocks": len(fixes)},
                    )
                )
        out: list[VolumeSegment] = []
        named = []
        for s in segments:
            key = os.path.splitext(s.name)[0].upper()
            if key not in telemetry:
                out.append(s)
                continue
            fixes, _ = telemetry.pop(key)
            first_wall = next((x for x in fixes if x.wall is not None), None)
            first_fix = next((x for x in fixes if x.lat is not None), None)
            start = first_wall.wall - round(first_wall.offset * NS) if first_wall else s.start
            duration = s.media.duration if s.media else None
            end = start + round(duration * NS) if start is not None and duration is not None else None
            out.append(
                replace(
                    s,
                    start=start,
                    end=end,
                    start_source="sidecar" if first_wall else s.start_source,
                    sidecars=(sidecars[key].name,),
                    location=iso6709(first_fix) if first_fix else s.location,
                    extra={**s.extra, "telemetry_blocks": len(fixes)},
                )
            )
            if first_wall and s.container_time is not None:
                named.append((device, s.path, start, s.container_time))
        for key, (fixes, _) in sorted(telemetry.items()):
            f = sidecars[key]
            first_wall = next((x for x in fixes if x.wall is not None), None)
            first_fix = next((x for x in fixes if x.lat is not None), None)
            findings.append(
                Finding(
                    "orphan_sidecar",
                    "telemetry of a recording that is not on the volume",
                    device,
                    f.path,
                    start=first_wall.wall if first_wall else None,
                    evidence={
                        "blocks": len(fixes),
                        "first_time": None if not first_wall else first_wall.wall,
                        "first_fix": None if not first_fix else iso6709(first_fix),
                    },
                )
            )
        tolerance = round(float(options.get("clock_tolerance", 2)) * NS)
        findings += timeline.name_time_findings(named, tz=options.get("tz", "UTC"), tolerance=tolerance)
        known = [NonRecording(f.name, "sidecar") for f in files if f.name.upper().endswith(".SRT")]
        return VolumeReading(self.name, os.fspath(volume), identity, out, [], [], findings, skipped, known)


@hookimpl
def custodes_device_drivers() -> list[DeviceDriver]:
    return [DeviceDriver("dji", "DJI drones: per-frame time and GPS from .SRT sidecars", DjiDriver)]
