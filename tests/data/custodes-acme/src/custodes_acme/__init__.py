"""custodes driver for the (invented) Acme BodyCam: the worked example of docs/writing-a-driver.md.

An Acme volume::

    ACME.ID                               identity: serial=, model=, officer= (key=value lines)
    ACME.LOG                              event log: "YYYY-MM-DD hh:mm:ss KIND [DETAIL]", device local time
    DCIM/ACME_<YYYYMMDDhhmmss>_<NNNN>.MP4 recordings: start in device local time, file number
    DCIM/ACME_..._<NNNN>.THM              a thumbnail beside a recording
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from custodes.drivers import (
    DeviceEvent,
    Driver,
    DriverOptionError,
    NonRecording,
    VolumeReading,
    identity_from,
    media_segments,
    scan_volume,
)
from custodes.findings import Finding
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver

__version__ = "1.0.0"
IDENTITY_FILE = "ACME.ID"
EVENT_LOG = "ACME.LOG"
NAME = re.compile(r"^ACME_(?P<time>\d{14})_(?P<seq>\d{4})\.MP4$", re.IGNORECASE)
NS = 1_000_000_000


def _local(text: str, fmt: str, tz: ZoneInfo) -> int | None:
    """A device-local time as ns UTC (None when it is not a time)."""
    try:
        return int(datetime.strptime(text, fmt).replace(tzinfo=tz).timestamp()) * NS
    except ValueError:
        return None


class AcmeDriver(Driver):
    name = "acme"
    # Beyond the options every driver takes (identity fields, tz, clock_tolerance): its own, declared.
    accepted_options = {"event_log": f"name of the device's event log on the volume (default {EVENT_LOG})"}

    def recognise(self, volume: Path) -> float:
        if (volume / IDENTITY_FILE).is_file():
            return 0.95
        files, _, _ = scan_volume(volume)
        return 0.6 if any(NAME.match(os.path.basename(f.name)) for f in files) else 0.0

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        try:
            tz = ZoneInfo(options.get("tz", "UTC"))
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise DriverOptionError(f"unknown time zone {options.get('tz')!r}") from e
        log_name = options.get("event_log", EVENT_LOG)
        files, findings, skipped = scan_volume(volume)  # links, FIFOs, odd names: already findings
        found, identity_findings = self._identity(volume)
        identity = identity_from(volume, options, kind="body_camera", vendor="Acme", **found)
        device = identity.device_id
        findings = [replace(f, device=device) for f in findings + identity_findings]
        own = {IDENTITY_FILE: "identity", log_name: "log"}
        known = [NonRecording(f.name, own[f.name]) for f in files if f.name in own]
        segments, probe_findings, rest = media_segments([f for f in files if f.name not in own], device)
        findings += probe_findings
        for f in rest:
            if f.name.upper().endswith(".THM"):
                known.append(NonRecording(f.name, "thumbnail"))
            else:
                findings.append(Finding("unknown_file", "not a file Acme cameras write; kept as it is", device, f.path))
        out = []
        for s in segments:
            m = NAME.match(os.path.basename(s.name))
            start = _local(m["time"], "%Y%m%d%H%M%S", tz) if m else None
            if start is None:  # no Acme name: placed by its container time, and said so
                findings.append(Finding("unexpected_name", "not an Acme name; placed by its container", device, s.path))
                out.append(s)
                continue
            duration = s.media.duration if s.media is not None else None
            end = start + round(duration * NS) if duration is not None else None
            out.append(replace(s, start=start, end=end, start_source="name", sequence=int(m["seq"])))
        events, event_findings = self._events(volume / log_name, tz)
        findings += event_findings
        return VolumeReading(self.name, os.fspath(volume), identity, out, [], events, findings, skipped, known)

    def _identity(self, volume: Path) -> tuple[dict[str, str], list[Finding]]:
        path = volume / IDENTITY_FILE
        if not path.is_file() or path.is_symlink():
            return {}, []
        values: dict[str, str] = {}
        findings = []
        for line in path.read_bytes()[:4096].decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                findings.append(Finding("malformed_identity", f"not key=value: {line[:60]!r}", path=str(path)))
            elif key.strip() in ("serial", "model", "officer"):
                values.setdefault(key.strip(), value.strip())
        found = {"file": str(path)}
        if "serial" in values:
            found.update(device_id=values["serial"], serial=values["serial"])
        if "model" in values:
            found["model"] = values["model"]
        if "officer" in values:
            found["officer_id"] = values["officer"]
        return found, findings

    def _events(self, path: Path, tz: ZoneInfo) -> tuple[list[DeviceEvent], list[Finding]]:
        if not path.is_file() or path.is_symlink():
            return [], []
        events, findings = [], []
        for line in path.read_bytes()[: 1 << 20].decode("utf-8", "replace").splitlines():
            parts = line.split(None, 3)
            when = _local(" ".join(parts[:2]), "%Y-%m-%d %H:%M:%S", tz) if len(parts) >= 3 else None
            if when is None:
                if line.strip():
                    findings.append(Finding("malformed", f"event line not understood: {line[:60]!r}", path=str(path)))
                continue
            events.append(DeviceEvent(when, parts[2], parts[3] if len(parts) > 3 else "", file=str(path)))
        return events, findings


@hookimpl
def custodes_device_drivers() -> list[DeviceDriver]:
    return [DeviceDriver("acme", "Acme BodyCam: local-time names, ACME.ID identity, ACME.LOG events", AcmeDriver)]
