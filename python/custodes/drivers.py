"""The device driver contract and what every driver shares.

A driver is given a device volume (a mounted device or a folder copied from
one), says how sure it is that it knows the device (:meth:`Driver.recognise`),
and reads it (:meth:`Driver.read`) into a :class:`VolumeReading`: the device
identity, the segments with their vendor metadata, clock readings, the
device's own event log, and findings for anything odd on the volume.

Drivers never write to a volume and never read outside it: :func:`scan_volume`
walks it without following symbolic links, reports links, FIFOs, sockets,
devices and unreadable folders as findings, and skips only known file-system
noise, listing every file it skips.
"""

from __future__ import annotations

import os
import stat
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from custodes import timeline
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339
from custodes.media import MEDIA_EXTENSIONS, MediaInfo, probe_many

__all__ = [
    "ClockReading", "DeviceEvent", "DeviceIdentity", "Driver", "DriverOptionError", "VolumeFile", "VolumeReading", "VolumeSegment",
    "NOISE", "identity_from", "media_segments", "scan_volume",
]

NS = 1_000_000_000
#: Names file systems and desktops leave on removable volumes; skipped, and listed.
NOISE = frozenset({"System Volume Information", ".Trashes", "Thumbs.db", ".DS_Store", ".Spotlight-V100",
                   ".fseventsd", "$RECYCLE.BIN", "desktop.ini"})
AUDIO_EXTENSIONS = frozenset({".wav"})
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg"})


class DriverOptionError(CustodesError, ValueError):
    """A driver option that cannot be used (unknown naming field, time zone ...)."""

    kind = "driver_option"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    kind: str = "body_camera"  # body_camera, handheld_terminal, recorder, camera, cctv, drone
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    officer_id: str | None = None
    officer_name: str | None = None
    unit_id: str | None = None
    unit_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VolumeFile:
    """A regular file on the volume: absolute ``path`` and ``name`` relative to the volume."""

    path: str
    name: str
    size: int


@dataclass(frozen=True)
class VolumeSegment:
    """One recording file with what the vendor's naming and sidecars say about it."""

    path: str
    name: str
    kind: str  # video, audio, photo
    start: int | None  # ns UTC, on the device clock
    end: int | None
    start_source: str | None  # "container", "name", "sidecar"
    sequence: int = timeline.NO_SEQUENCE
    important: bool = False
    recording: str | None = None  # chapters of one take share this
    chapter: int | None = None
    sidecars: tuple[str, ...] = ()
    location: str | None = None  # ISO 6709 of the first fix
    container_time: int | None = None  # ns, what the container's own clock said
    media: MediaInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "kind": self.kind,
            "start": rfc3339(self.start), "end": rfc3339(self.end), "start_source": self.start_source,
            "sequence": None if self.sequence < 0 else self.sequence, "important": self.important,
            "recording": self.recording, "chapter": self.chapter, "sidecars": list(self.sidecars),
            "location": self.location, "container_time": rfc3339(self.container_time), "extra": self.extra,
        }


@dataclass(frozen=True)
class ClockReading:
    """The device clock against a trusted clock at one instant (a docking, or GPS in the footage)."""

    device_time: int  # ns, as the device clock showed it (its local zone applied)
    trusted_time: int  # ns UTC
    source: str  # "dock", "gps"

    @property
    def offset(self) -> float:
        """Seconds the device clock is ahead (+) or behind (-) the trusted clock."""
        return (self.device_time - self.trusted_time) / NS

    def to_json(self) -> dict[str, Any]:
        return {"device_time": rfc3339(self.device_time), "trusted_time": rfc3339(self.trusted_time),
                "source": self.source, "offset_seconds": self.offset}


@dataclass(frozen=True)
class DeviceEvent:
    time: int | None
    kind: str  # battery_low, storage_full, device_fault, power_on, record_start, ...
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"time": rfc3339(self.time), "kind": self.kind, "detail": self.detail}


@dataclass
class VolumeReading:
    driver: str
    volume: str
    identity: DeviceIdentity
    segments: list[VolumeSegment] = field(default_factory=list)
    clock_readings: list[ClockReading] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver, "volume": self.volume, "identity": self.identity.to_json(),
            "segments": [s.to_json() for s in self.segments],
            "clock_readings": [c.to_json() for c in self.clock_readings],
            "events": [e.to_json() for e in self.events],
            "findings": [f.to_json() for f in self.findings], "skipped": self.skipped,
        }


class Driver(ABC):
    """What a device driver does. Subclass it and publish it through the
    ``custodes_device_drivers`` hook."""

    name: str = ""

    @abstractmethod
    def recognise(self, volume: Path) -> float:
        """How sure the driver is that it knows this volume, 0 (not at all) to 1."""

    @abstractmethod
    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        """Read the volume (never writing to it) into a :class:`VolumeReading`."""


IDENTITY_FIELDS = frozenset(DeviceIdentity.__dataclass_fields__)


def identity_from(volume: Path, options: Mapping[str, str], **found: str | None) -> DeviceIdentity:
    """The identity a driver found on the volume, overridden by the user's
    ``options``; the device id defaults to the volume folder's name."""
    fields = {k: v for k, v in found.items() if v is not None}
    fields.update({k: v for k, v in options.items() if k in IDENTITY_FIELDS})
    fields.setdefault("device_id", os.path.basename(os.path.abspath(volume)))
    return DeviceIdentity(**fields)


def _is_noise(name: str) -> bool:
    return name in NOISE or name.startswith("._")


def scan_volume(volume: Path) -> tuple[list[VolumeFile], list[Finding], list[str]]:
    """Every regular file on the volume, the findings about what is not one, and the skipped noise.

    Nothing is followed out of the volume: a symbolic link is a finding (with
    where it points), never a file to read.
    """
    root = os.fspath(volume)
    files: list[VolumeFile] = []
    findings: list[Finding] = []
    skipped: list[str] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            findings.append(Finding("unreadable", f"cannot list folder: {e.strerror}", path=folder))
            continue
        subfolders = []
        for entry in entries:
            rel = os.path.relpath(entry.path, root)
            if _is_noise(entry.name):
                skipped.append(rel)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                findings.append(Finding("unreadable", f"cannot stat: {e.strerror}", path=entry.path))
                continue
            if os.fsencode(entry.name).decode("utf-8", "replace") != entry.name:
                findings.append(Finding("odd_name", "file name is not valid UTF-8; kept byte for byte",
                                        path=entry.path, evidence={"name_bytes": os.fsencode(entry.name).hex()}))
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
                outside = not os.path.realpath(entry.path).startswith(os.path.realpath(root) + os.sep)
                findings.append(Finding("symlink", f"symbolic link to {target!r}{' (outside the volume)' if outside else ''}; not followed",
                                        path=entry.path, evidence={"target": target, "outside": outside}))
            elif stat.S_ISDIR(st.st_mode):
                subfolders.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                files.append(VolumeFile(entry.path, rel, st.st_size))
            else:
                findings.append(Finding("not_regular_file", "not a regular file (FIFO, socket or device); not read",
                                        path=entry.path))
        stack.extend(reversed(subfolders))
    files.sort(key=lambda f: os.fsencode(f.name))
    return files, findings, skipped


def wav_duration(path: str) -> float | None:
    """Seconds of PCM in a RIFF/WAVE file, from its header chunks (None if not WAVE)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = None
            for _ in range(64):  # bounded: a hostile file cannot make us loop
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(size, 64))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    f.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
                elif cid == b"data":
                    return size / byte_rate if byte_rate else None
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def media_segments(files: Iterable[VolumeFile], device: str | None = None, *,
                   samples: bool = False) -> tuple[list[VolumeSegment], list[Finding], list[VolumeFile]]:
    """Segments for the recordings among ``files`` with times from their containers.

    ``samples`` keeps per-sample times, offsets and sizes in each segment's
    ``media`` (for drivers that read telemetry tracks).

    Returns the segments, the findings of probing them, and the files that
    are not recordings (for a driver to claim as sidecars or report).
    """
    files = list(files)
    media = [f for f in files if os.path.splitext(f.name)[1].lower() in MEDIA_EXTENSIONS]
    others = [f for f in files if f not in media]
    segments: list[VolumeSegment] = []
    findings: list[Finding] = []
    for f, info in zip(media, probe_many([f.path for f in media], samples=samples)):
        if isinstance(info, CustodesError):
            findings.append(Finding("unreadable", str(info), device=device, path=f.path))
            continue
        findings += [replace(x, device=device) for x in info.findings]
        start = info.creation_time if not any(x.kind == "clock_unset" for x in info.findings) else None
        end = start + round(info.duration * NS) if start is not None and info.duration is not None else None
        kind = "video" if any(t.kind == "video" for t in info.tracks) else "audio"
        segments.append(VolumeSegment(f.path, f.name, kind, start, end, "container" if start is not None else None,
                                      sequence=timeline.sequence_number(f.name), location=info.location,
                                      container_time=info.creation_time, media=info))
    rest = []
    for f in others:
        ext = os.path.splitext(f.name)[1].lower()
        if ext in AUDIO_EXTENSIONS:
            seconds = wav_duration(f.path)
            if seconds is None:
                findings.append(Finding("malformed", "not a readable RIFF/WAVE file", device=device, path=f.path))
            segments.append(VolumeSegment(f.path, f.name, "audio", None, None, None,
                                          sequence=timeline.sequence_number(f.name), extra={"duration": seconds}))
        elif ext in PHOTO_EXTENSIONS:
            segments.append(VolumeSegment(f.path, f.name, "photo", None, None, None,
                                          sequence=timeline.sequence_number(f.name)))
        else:
            rest.append(f)
    return segments, findings, rest
