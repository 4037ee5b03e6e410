"""custodes driver for GoPro cameras. See README.md."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from custodes.defaults import NS
from custodes.drivers import (
    ClockReading,
    Driver,
    NonRecording,
    VolumeFile,
    VolumeReading,
    device_zone,
    identity_from,
    media_segments,
    read_head,
    scan_volume,
)
from custodes.findings import Finding
from custodes.hookspecs import hookimpl
from custodes.media import MediaInfo
from custodes.plugins import DeviceDriver

__version__ = "0.1.0"
QUARTER_HOUR = 900 * NS
CHAPTER_NAME = re.compile(r"^(?:G[HXP](?P<chapter>\d{2})|GOPR)(?P<number>\d{4})\.MP4$", re.IGNORECASE)
MAX_DEPTH = 8
#: What MISC/version.txt holds: a camera type such as "HERO5 Black", a serial such as "C3261325012345".
MODEL_SHAPE = re.compile(r"[\x20-\x7e]{1,64}")
SERIAL_SHAPE = re.compile(r"[0-9A-Za-z_-]{1,64}")


def _json_first_wins(text: str) -> tuple[object, list[str]]:
    """JSON whose objects keep the first value of a repeated key (never silently the last), and the
    keys repeated in the outermost object (json's object_pairs_hook sees it last)."""
    repeated: list[list[str]] = [[]]

    def first_wins(pairs: list[tuple[str, object]]) -> dict[str, object]:
        obj: dict[str, object] = {}
        again: list[str] = []
        for key, value in pairs:
            if key not in obj:
                obj[key] = value
            elif key not in again:
                again.append(key)
        repeated.append(again)
        return obj

    return json.loads(text, object_pairs_hook=first_wins), repeated[-1]


def gpmf_items(data: bytes, depth: int = 0) -> Iterator[tuple[bytes, int, bytes]]:
    """(key, type, payload) of every GPMF KLV item, nested containers walked.

    GPMF: 4-byte key, 1-byte type, 1-byte struct size, 2-byte repeat count,
    payload of size*repeat bytes padded to 4. Type 0 nests. Bounded by the
    bytes it is given and by depth, so telemetry from a broken file cannot
    make it loop or read past the sample."""
    pos = 0
    while pos + 8 <= len(data) and depth <= MAX_DEPTH:
        key, typ, size, repeat = struct.unpack_from(">4sBBH", data, pos)
        length = size * repeat
        payload = data[pos + 8 : pos + 8 + length]
        if len(payload) < length:
            return
        yield key, typ, payload
        if typ == 0:
            yield from gpmf_items(payload, depth + 1)
        pos += 8 + (length + 3) // 4 * 4


def gps_time(data: bytes) -> int | None:
    """The first GPSU (``yymmddhhmmss.sss``, UTC) in a GPMF sample, as ns."""
    for key, typ, payload in gpmf_items(data):
        if key == b"GPSU" and typ == ord("U") and len(payload) >= 16:
            try:
                dt = datetime.strptime(payload[:16].decode("ascii"), "%y%m%d%H%M%S.%f").replace(tzinfo=UTC)
            except (UnicodeDecodeError, ValueError):
                continue
            return int(dt.timestamp()) * NS + dt.microsecond * 1000
    return None


def first_gps_time(path: str, info: MediaInfo) -> tuple[int, float] | None:
    """(GPS time, seconds into the file) from the first telemetry sample that has one."""
    track = next((t for t in info.tracks if t.codec == "gpmd" and t.offsets is not None), None)
    if track is None or track.pts is None or not track.timescale:
        return None
    with open(path, "rb") as f:
        for offset, size, pts in zip(track.offsets[:64], track.sizes[:64], track.pts[:64], strict=False):
            f.seek(int(offset))
            t = gps_time(f.read(min(int(size), 1 << 20)))
            if t is not None:
                return t, int(pts) / track.timescale
    return None


def _non_recording(f: VolumeFile) -> NonRecording | None:
    """What a file GoPro writes beside the recordings is: MISC/version.txt the identity, a .THM the
    thumbnail and a .LRV the low-resolution copy of a chapter, the rest of MISC/ and the camera's
    DCIM/100GOPRO/GOPRO* files its own bookkeeping; None for a file GoPro does not write."""
    upper, ext = f.name.upper(), os.path.splitext(f.name)[1].upper()
    if upper == "MISC/VERSION.TXT":
        return NonRecording(f.name, "identity")
    if ext == ".THM":
        return NonRecording(f.name, "thumbnail")
    if ext == ".LRV":
        return NonRecording(f.name, "sidecar")
    if upper.startswith(("MISC/", "DCIM/100GOPRO/GOPRO")):
        return NonRecording(f.name, "other")
    return None


class GoProDriver(Driver):
    name = "gopro"

    def recognise(self, volume: Path) -> float:
        files, _, _ = scan_volume(volume)
        hits = sum(1 for f in files if CHAPTER_NAME.match(os.path.basename(f.name)))
        return 0.8 if hits else 0.0

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        files, findings, skipped = scan_volume(volume)
        found, version_findings = self._version(volume)
        identity = identity_from(volume, options, kind="camera", vendor="GoPro", **found)
        # GoPro cameras write local time into the container; without GPS to tell the offset, a zone
        # from the user or the policy says which; the driver's own default (UTC) leaves the times as written.
        local_zone = device_zone(options, model=identity.model)
        tz = local_zone.tzinfo if local_zone.source != "driver" else None
        device = identity.device_id
        findings = [replace(f, device=device) for f in findings + version_findings]
        segments, probe_findings, rest = media_segments(files, device, samples=True)
        findings += probe_findings
        known = [n for n in map(_non_recording, rest) if n is not None]
        findings += [
            Finding("unknown_file", "not a recording this driver knows; kept as it is", device, f.path)
            for f, n in zip(rest, map(_non_recording, rest), strict=True)
            if n is None
        ]
        clock = []
        out = []
        chapters: dict[str, list[int]] = {}
        on_volume = {f.name for f in files}  # sidecars are looked up here: no stat per chapter
        for s in segments:
            m = CHAPTER_NAME.match(os.path.basename(s.name))
            if not m or s.media is None:
                out.append(s)
                continue
            number = m["number"]
            chapter = int(m["chapter"]) if m["chapter"] and not s.name.upper().startswith("GOPR") else 1
            chapters.setdefault(number, []).append(chapter)
            sidecars = tuple(
                n
                for n in (f"{os.path.splitext(s.name)[0]}.THM", s.name.replace("GH", "GL", 1)[:-3] + "LRV")
                if n in on_volume
            )
            start, extra = s.container_time, {}
            gps = first_gps_time(s.path, s.media) if s.container_time is not None else None
            if gps is not None and s.container_time is not None:
                gps_ns, at = gps
                device_at = s.container_time + round(at * NS)
                clock.append(ClockReading(device_at, gps_ns, "gps"))
                zone = round((device_at - gps_ns) / QUARTER_HOUR) * QUARTER_HOUR
                start = s.container_time - zone
                extra = {
                    "gps_offset_seconds": (device_at - gps_ns) / NS,
                    "zone_offset_hours": zone / 3600 / NS,
                    "clock_error_seconds": (device_at - zone - gps_ns) / NS,
                }
            elif tz is not None and s.container_time is not None:
                local = datetime.fromtimestamp(s.container_time // NS, tz=UTC).replace(tzinfo=tz)
                start = int(local.timestamp()) * NS
            end = start + round(s.media.duration * NS) if start is not None and s.media.duration is not None else None
            out.append(
                replace(
                    s,
                    start=start,
                    end=end,
                    start_source="gps" if gps else s.start_source,
                    sequence=int(number),
                    recording=number,
                    chapter=chapter,
                    sidecars=sidecars,
                    extra={**s.extra, **extra},
                )
            )
        # Names sort GH010007 < GH010009 < GH020007; a recording's chapters belong together.
        out.sort(key=lambda s: (s.recording is None, s.recording or "", s.chapter or 0, s.name))
        for number, seen in sorted(chapters.items()):
            missing = sorted(set(range(1, max(seen) + 1)) - set(seen))
            if missing:
                findings.append(
                    Finding(
                        "sequence_break",
                        f"recording {number}: chapter(s) {missing} missing",
                        device=device,
                        evidence={"recording": number, "missing_chapters": missing},
                    )
                )
        return VolumeReading(
            self.name, os.fspath(volume), identity, out, clock, [], findings, skipped, known, time_zone=local_zone
        )

    def _version(self, volume: Path) -> tuple[dict[str, str | None], list[Finding]]:
        """Model and serial from ``MISC/version.txt``, each checked for its shape; a field of
        another shape (a list, a number, control characters) is left out and is a finding."""
        path = volume / "MISC" / "version.txt"
        file = os.fspath(path)
        if path.is_dir() and not path.is_symlink():  # links and FIFOs are already scan_volume's findings
            return {}, [
                Finding("malformed", "a folder, not the file GoPro writes; camera type and serial not read", path=file)
            ]
        if not path.is_file() or path.is_symlink():
            return {}, []
        try:
            text = read_head(path, 65536).decode("utf-8", "replace").strip()
            # GoPro writes JSON with a trailing comma before the closing brace.
            info, repeated = _json_first_wins(re.sub(r",\s*}\s*$", "}", text))
        except (OSError, ValueError, RecursionError) as e:
            return {}, [
                Finding(
                    "malformed",
                    f"not the JSON object GoPro writes ({type(e).__name__}); camera type and serial not read",
                    path=file,
                )
            ]
        if not isinstance(info, dict):
            return {}, [
                Finding(
                    "malformed",
                    f"a JSON {type(info).__name__}, not an object; camera type and serial not read",
                    path=file,
                )
            ]
        found: dict[str, str | None] = {"file": file}  # findings about the identity name this file
        # A key given twice makes the identity ambiguous: the first value is kept, and said so.
        findings = [
            Finding(
                "malformed",
                f"{key!r} is given more than once: ambiguous; the first value is kept",
                path=file,
                evidence={"key": key},
            )
            for key in repeated
        ]
        bad = []
        for key, shape, fields in (
            ("camera type", MODEL_SHAPE, ("model",)),
            ("camera serial number", SERIAL_SHAPE, ("serial", "device_id")),
        ):
            value = info.get(key)
            if value is None:
                continue
            if isinstance(value, str) and shape.fullmatch(value):
                found.update(dict.fromkeys(fields, value))
            else:
                bad.append(f"{key!r} is {type(value).__name__} {json.dumps(value, ensure_ascii=True)[:60]}")
        findings += (
            [
                Finding(
                    "malformed",
                    f"{'; '.join(bad)}: not of the shape GoPro writes; left out",
                    path=file,
                    evidence={"fields": bad},
                )
            ]
            if bad
            else []
        )
        return found, findings


@hookimpl
def custodes_device_drivers() -> list[DeviceDriver]:
    return [DeviceDriver("gopro", "GoPro cameras: chaptered recordings, GPS time from GPMF telemetry", GoProDriver)]
