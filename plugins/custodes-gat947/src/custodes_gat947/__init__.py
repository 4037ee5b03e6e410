"""custodes driver for GA/T 947 body-worn recorders. See README.md for the
naming template and the on-volume identity, clock and event files."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from custodes import timeline
from custodes.defaults import NS
from custodes.drivers import (
    ClockReading,
    DeviceCheck,
    DeviceEvent,
    Driver,
    DriverOptionError,
    NonRecording,
    VolumeReading,
    device_zone,
    identity_from,
    media_segments,
    read_lines_head,
    scan_volume,
)
from custodes.findings import Finding
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver

__version__ = "0.1.0"

DEFAULT_NAMING = "{officer}_{device}_{time}_{seq}{imp}.{ext}"
DEFAULT_TZ = "Asia/Shanghai"
IDENTITY_FILE = "GAT947_ID.TXT"
CLOCK_FILE = "DOCKCLOCK.TXT"
EVENT_FILE = "EVENTS.LOG"

_FIELDS = {
    "officer": r"(?P<officer>[0-9A-Za-z]+)",
    "device": r"(?P<device>[0-9A-Za-z-]+)",
    "time": r"(?P<time>\d{14})",
    "seq": r"(?P<seq>\d+)",
    "imp": r"(?P<imp>IMP)?",
    "ext": r"(?P<ext>[0-9A-Za-z]+)",
}
#: The GA/T 947 data-interface identity fields and the shape each must have.
IDENTITY_SHAPES = {
    "product_serial": re.compile(r"^[0-9A-Za-z]{7}$"),
    "officer_number": re.compile(r"^\d{6}$"),
    "officer_name": re.compile(r"^\S.{0,31}$"),
    "unit_number": re.compile(r"^\d{12}$"),
    "unit_name": re.compile(r"^\S.{0,63}$"),
    "vendor": re.compile(r"^.{1,64}$"),
    "model": re.compile(r"^.{1,64}$"),
}


def naming_pattern(template: str) -> re.Pattern[str]:
    """A regular expression for a naming template such as ``{officer}_{device}_{time}_{seq}{imp}.{ext}``."""
    parts = re.split(r"(\{\w+\})", template)
    out = []
    seen: set[str] = set()
    for p in parts:
        if p.startswith("{") and p.endswith("}"):
            if p[1:-1] not in _FIELDS:
                raise DriverOptionError(
                    f"unknown field {p} in naming template {template!r} (known: {', '.join(_FIELDS)})"
                )
            if p in seen:  # one value each: twice made a regular expression error, "driver gat947 failed"
                raise DriverOptionError(f"field {p} is in naming template {template!r} twice; each field once")
            seen.add(p)
            out.append(_FIELDS[p[1:-1]])
        else:
            out.append(re.escape(p))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


#: The largest UTC offset of any zone: a station time said further from UTC is no time (+23:59 was accepted).
_MAX_OFFSET = timedelta(hours=14)
#: The most of a ``key=value`` file and of the event log read (a longer one is a finding, and read in part).
KEY_VALUES_LIMIT = 64 << 10
EVENTS_LIMIT = 8 << 20


def _station_time(given: str) -> tuple[int | None, str]:
    """The docking station's time (ns UTC), or None and why not. It must carry its UTC offset: without one it
    was read in the zone of the machine ingesting the card (TZ), and the evidence's clock corrected with that (a
    hostile review); and no zone is more than 14 h from UTC."""
    try:
        read = datetime.fromisoformat(given.replace("Z", "+00:00")) if given else None
    except ValueError:
        read = None
    if read is None:
        return None, f"station_time {given!r} is not an RFC 3339 time"
    offset = read.utcoffset()
    if offset is None:
        return None, f"station_time {given!r} has no UTC offset (Z, or +08:00)"
    if abs(offset) > _MAX_OFFSET:
        return None, f"station_time {given!r} is more than 14 hours from UTC"
    return int(read.timestamp()) * NS, ""


def read_key_values(path: Path) -> tuple[dict[str, str], list[str], list[str], list[Finding]]:
    """``key=value`` lines of a small text file, the lines that are not, the keys given more
    than once (ambiguous: the first value is kept, never silently the last), and a finding when the file is
    longer than :data:`KEY_VALUES_LIMIT` (read in part)."""
    values: dict[str, str] = {}
    bad: list[str] = []
    repeated: list[str] = []
    raw, cut = read_lines_head(path, KEY_VALUES_LIMIT)
    read_in_part = [] if cut is None else [cut]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return {}, ["not UTF-8 text"], [], read_in_part
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            bad.append(line[:80])
            continue
        key = key.strip()
        if key not in values:
            values[key] = value.strip()
        elif key not in repeated:
            repeated.append(key)
    return values, bad, repeated, read_in_part


def _repeated_findings(path: Path, repeated: list[str]) -> list[Finding]:
    return [
        Finding(
            "malformed",
            f"{key!r} is given more than once: ambiguous; the first value is kept",
            path=str(path),
            evidence={"key": key},
        )
        for key in repeated
    ]


def _local(text: str, tz: tzinfo) -> int | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return int(datetime.strptime(text.strip(), fmt).replace(tzinfo=tz).timestamp()) * NS
        except ValueError:
            continue
    return None


#: The device's own files and what each is (``volume`` lists them; ingest stores them).
OWN_FILES = {IDENTITY_FILE: "identity", CLOCK_FILE: "log", EVENT_FILE: "log"}


class Gat947Driver(Driver):
    name = "gat947"
    accepted_options = {"naming": f"file-naming template (default {DEFAULT_NAMING}); fields {', '.join(_FIELDS)}"}

    def recognise(self, volume: Path) -> float:
        if (volume / IDENTITY_FILE).is_file():
            return 0.9
        pattern = naming_pattern(DEFAULT_NAMING)
        files, _, _ = scan_volume(volume)
        return 0.6 if any(pattern.match(os.path.basename(f.name)) for f in files) else 0.0

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        pattern = naming_pattern(options.get("naming", DEFAULT_NAMING))
        files, findings, skipped = scan_volume(volume)
        own = set(OWN_FILES)
        found_identity, identity_findings = self._identity(volume)
        identity = identity_from(volume, options, file=str(volume / IDENTITY_FILE), **found_identity)
        device = identity.device_id
        findings = [replace(f, device=device) for f in findings] + identity_findings
        dock, dock_findings = self._dock_values(volume)
        # The device's own statement of its zone is the dock's time_zone line; the user's tz is above it.
        zone = device_zone(options, stated=dock.get("time_zone"), model=identity.model, default=DEFAULT_TZ)
        tz = zone.tzinfo
        clock, clock_findings = self._clock(volume, dock, tz)
        events, checks, event_findings = self._events(volume, tz)
        findings += dock_findings + clock_findings + event_findings
        segments, probe_findings, rest = media_segments([f for f in files if f.name not in own], device)
        findings += probe_findings
        findings += [
            Finding("unknown_file", "not a recording this driver knows; kept as it is", device, f.path) for f in rest
        ]
        out = []
        for s in segments:
            m = pattern.match(os.path.basename(s.name))
            if not m:
                findings.append(
                    Finding(
                        "unexpected_name",
                        f"name does not follow {options.get('naming', DEFAULT_NAMING)}; "
                        "kept, placed by its container time",
                        device,
                        s.path,
                    )
                )
                out.append(s)
                continue
            g = m.groupdict()
            start = _local(g["time"], tz) if g.get("time") else s.start
            if start is None:
                findings.append(Finding("malformed", f"impossible time {g.get('time')} in the name", device, s.path))
                out.append(s)
                continue
            duration = s.media.duration if s.media and s.media.duration is not None else s.extra.get("duration")
            end = start if s.kind == "photo" else (start + round(duration * NS) if duration is not None else None)
            seg = replace(
                s,
                start=start,
                end=end,
                start_source="name" if g.get("time") else s.start_source,
                sequence=int(g["seq"]) if g.get("seq") else s.sequence,
                important=bool(g.get("imp")),
                officer=g.get("officer") or None,
                extra={**s.extra, **({"device": g["device"]} if g.get("device") else {})},
            )
            out.append(seg)
        # The name's time against the container's runs centrally for every driver (drivers.shared_findings).
        known = [NonRecording(f.name, OWN_FILES[f.name]) for f in files if f.name in OWN_FILES]
        return VolumeReading(
            self.name,
            os.fspath(volume),
            identity,
            out,
            clock,
            events,
            findings,
            skipped,
            known,
            time_zone=zone,
            checks=checks,
        )

    def _identity(self, volume: Path) -> tuple[dict[str, str | None], list[Finding]]:
        path = volume / IDENTITY_FILE
        if not path.is_file() or path.is_symlink():
            return {}, []
        values, bad, repeated, findings = read_key_values(path)
        findings += [Finding("malformed_identity", f"line is not key=value: {b!r}", path=str(path)) for b in bad]
        findings += _repeated_findings(path, repeated)
        good: dict[str, str] = {}
        for key, value in values.items():
            shape = IDENTITY_SHAPES.get(key)
            if shape is None:
                findings.append(Finding("malformed_identity", f"unknown identity field {key!r}", path=str(path)))
            elif not shape.match(value):
                findings.append(
                    Finding(
                        "malformed_identity",
                        f"{key}={value!r} does not have the GA/T 947 shape",
                        path=str(path),
                        evidence={"field": key},
                    )
                )
            else:
                good[key] = value
        serial = good.get("product_serial")
        return {
            "device_id": serial,
            "serial": serial,
            "vendor": good.get("vendor"),
            "model": good.get("model"),
            "officer_id": good.get("officer_number"),
            "officer_name": good.get("officer_name"),
            "unit_id": good.get("unit_number"),
            "unit_name": good.get("unit_name"),
            "kind": "body_camera",
        }, findings

    def _dock_values(self, volume: Path) -> tuple[dict[str, str], list[Finding]]:
        """The docking station's ``key=value`` lines, with findings for keys given twice and for a
        ``time_zone`` that is not a zone."""
        path = volume / CLOCK_FILE
        if not path.is_file() or path.is_symlink():
            return {}, []
        values, _, repeated, findings = read_key_values(path)
        findings += _repeated_findings(path, repeated)
        if "time_zone" in values:
            try:
                timeline.zone_info(values["time_zone"])
            except ValueError as e:
                findings.append(Finding("malformed", f"time_zone: {e}; not used", path=str(path)))
        return values, findings

    def _clock(self, volume: Path, values: dict[str, str], tz: tzinfo) -> tuple[list[ClockReading], list[Finding]]:
        path = volume / CLOCK_FILE
        if not path.is_file() or path.is_symlink():
            return [], []
        given_device = values.get("device_time", "")
        device_time = _local(given_device, tz)
        trusted, why = _station_time(values.get("station_time", ""))
        if device_time is None:
            why = f"device_time {given_device!r} is not a device-local time (YYYY-MM-DD hh:mm:ss)"
        if trusted is None or device_time is None:
            return [], [Finding("malformed", f"no clock reading: {why}", path=str(path))]
        return [ClockReading(device_time, trusted, "dock", file=str(path))], []

    def _events(self, volume: Path, tz: tzinfo) -> tuple[list[DeviceEvent], list[DeviceCheck], list[Finding]]:
        """The event log's lines: events, and the pre-use checks it logs (:func:`_check`)."""
        path = volume / EVENT_FILE
        if not path.is_file() or path.is_symlink():
            return [], [], []
        events, checks, findings = [], [], []
        raw, cut = read_lines_head(path, EVENTS_LIMIT)
        findings += [] if cut is None else [cut]
        for line in raw.decode("utf-8", "replace").splitlines():
            parts = line.strip().split(None, 3)
            if not parts:
                continue
            when = _local(" ".join(parts[:2]), tz) if len(parts) >= 3 else None
            if when is None:
                findings.append(Finding("malformed", f"event log line not understood: {line[:80]!r}", path=str(path)))
                continue
            if parts[2] == CHECK_EVENT:
                check, bad = _check(when, parts[3] if len(parts) > 3 else "", str(path))
                checks.append(check)
                findings += bad
                continue
            events.append(DeviceEvent(when, parts[2], parts[3] if len(parts) > 3 else "", file=str(path)))
        return events, checks, findings


#: The event log's pre-use check line (Art. 10), written when the officer takes the device from the docking
#: station: ``2024-03-01 07:58:00 preuse_check clock_offset=+90 battery=96 free_bytes=31000000000 faults=none``.
#: The time is the device's own; clock_offset (seconds, device - station, as found before the station set the
#: clock) places the check on the station's clock. Every key is optional; faults is a comma list or "none".
CHECK_EVENT = "preuse_check"


def _check(when: int, detail: str, file: str) -> tuple[DeviceCheck, list[Finding]]:
    """A ``preuse_check`` line's check; a value that is not what its key needs is dropped with a finding."""
    values: dict[str, int | None] = {"clock_offset": None, "battery": None, "free_bytes": None}
    faults: tuple[str, ...] = ()
    findings = []
    for token in detail.split():
        key, _, value = token.partition("=")
        if key == "faults":
            faults = tuple(f for f in value.split(",") if f and f != "none")
            continue
        try:
            if key not in values:
                raise ValueError(f"unknown key {key!r}")
            values[key] = int(value)
        except ValueError:
            findings.append(Finding("malformed", f"preuse_check: {token[:80]!r} not understood; dropped", path=file))
    offset = None if values["clock_offset"] is None else values["clock_offset"] * NS
    station = when - (offset or 0)
    return DeviceCheck(station, offset, values["battery"], values["free_bytes"], faults, file=file), findings


@hookimpl
def custodes_device_drivers() -> list[DeviceDriver]:
    return [
        DeviceDriver(
            "gat947",
            "GA/T 947 body-worn recorders: names with officer, device, local time, sequence and IMP mark",
            Gat947Driver,
        )
    ]
