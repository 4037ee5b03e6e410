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

The records
-----------
Times are integer nanoseconds since 1970-01-01 UTC (64-bit: 1677 to 2262);
durations in :class:`~custodes.media.MediaInfo` are float seconds. Text fields
hold at most :data:`TEXT_MAX` characters, UTF-8, without NUL.

- :class:`DeviceIdentity`, :class:`VolumeSegment`, :class:`ClockReading`,
  :class:`DeviceEvent` and :class:`VolumeFile` are **frozen**: build each with
  its constructor (keywords for everything after the first few fields) and
  derive a changed one with :func:`dataclasses.replace`
  (``replace(seg, start=t, start_source="name")``).
  :class:`VolumeReading` is the one mutable record: a driver fills its lists.
- Allowed values, enforced by :func:`check_reading` (a value outside them is
  dropped and becomes a ``malformed`` finding naming the file):
  ``VolumeSegment.kind`` in :data:`SEGMENT_KINDS`, ``start_source`` in
  :data:`START_SOURCES` (or None), ``DeviceIdentity.kind`` in
  :data:`IDENTITY_KINDS`, ``ClockReading.source`` in :data:`CLOCK_SOURCES`,
  ``VolumeReading.time_zone.source`` in :data:`ZONE_SOURCES`.
  ``DeviceEvent.kind`` is open (a device logs what it logs), but only the kinds
  in :data:`EVENT_KINDS` mean something to custodes; spell those as written there.
- A reading says at most :data:`FINDINGS_PER_FILE` findings of one kind about one file; the rest are counted in
  one more finding of that kind (a device log of junk is one file, not half a million findings). The volume
  scanner says at most :data:`FINDINGS_PER_VOLUME` of each kind about entries it does not store or names oddly
  (links, FIFOs, unreadable entries, odd names), and counts the rest the same way. A device's text file past
  what a driver reads of it is read in whole lines up to there, and said so (:func:`read_lines_head`).
- :class:`DeviceCheck` (optional, frozen): a pre-use check the device or its docking station logged (Art. 10:
  before recording the officer checks the device and sets its clock): its time (station clock), and what it
  saw: ``clock_offset`` (device clock - station clock, ns, as found before the clock was set), ``battery_percent``
  (0 to 100), ``free_bytes``, ``faults`` (the fault flags raised; empty: none). A field the device does not
  report is None. Read at docking, a check counts for the recordings made after it until the next docking
  (custodes.preuse); a driver whose devices log no checks leaves ``VolumeReading.checks`` empty.
- :func:`identity_from` takes the keys in :data:`IDENTITY_FIELDS` (every
  :class:`DeviceIdentity` field but ``file``), from what the driver found and,
  above it, from the user's ``-o`` options.

The device time zone
--------------------
Devices write local times (in names, logs, clock files). Which zone they are
read in is decided by one function, :func:`device_zone`, in one order, first
that applies:

1. ``option``: the user's explicit ``-o tz=ZONE`` (``--tz``), above all;
2. ``device``: what the device itself states on the volume (the driver reads it
   and passes it as ``stated``);
3. ``policy_model``: the archive policy's ``[time_zones]`` entry for the device
   model (``"Model X" = "Asia/Shanghai"``);
4. ``policy_default``: the archive policy's ``[devices] time_zone``;
5. ``driver``: the driver's own default for its devices (UTC when it names none).

The commands (``volume``, ``timeline``, ``ingest``) set the policy's part with
:func:`zone_policy`; a driver calls :func:`device_zone` and puts the answer in
``VolumeReading.time_zone``, which ``volume --json``, ``ingest --json`` and the
ingest's ledger entry show. A zone is an IANA name, ``UTC`` or a fixed offset
(``+08:00``): :func:`custodes.timeline.zone_info`.

Checks every driver gets
------------------------
:func:`shared_findings` runs once for every reading, whatever driver made it:
the name-vs-container time check (``name_time_mismatch``). Drivers do not run
it themselves.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import operator
import os
import re
import reprlib
import stat
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar

from custodes import _durable, timeline
from custodes.defaults import INT64_MAX, INT64_MIN, NOISE, NS
from custodes.errors import CustodesError
from custodes.findings import Finding, _escaped, rfc3339, shown_name
from custodes.media import MEDIA_EXTENSIONS, MediaInfo, probe_many

__all__ = [
    "ClockReading",
    "DeviceEvent",
    "CLOSE_CONFIDENCE",
    "COMMON_OPTIONS",
    "DeviceCheck",
    "DeviceIdentity",
    "Driver",
    "DriverChoice",
    "DriverOptionError",
    "CLOCK_SOURCES",
    "EVENT_KINDS",
    "IDENTITY_FIELDS",
    "IDENTITY_KINDS",
    "SEGMENT_KINDS",
    "START_SOURCES",
    "TEXT_MAX",
    "TimeZoneChoice",
    "ZONE_SOURCES",
    "device_zone",
    "shared_findings",
    "zone_policy",
    "NON_RECORDING_ROLES",
    "NonRecording",
    "VolumeFile",
    "VolumeReading",
    "VolumeSegment",
    "NOISE",
    "NOISE_FILES",
    "APPLE_DOUBLE",
    "check_options",
    "FINDINGS_PER_FILE",
    "FINDINGS_PER_VOLUME",
    "bounded_findings",
    "check_reading",
    "read_head",
    "read_lines_head",
    "identity_from",
    "known_options",
    "media_segments",
    "name_bytes",
    "name_from",
    "name_text",
    "odd_name",
    "one_scan_per_volume",
    "scan_volume",
    "shown_name",
]

#: Files desktops leave, by name, each skipped only when its first bytes are that file's own format (magic, or
#: None: text of a few KiB): a recording renamed ``Thumbs.db`` or ``._FILE0004.MP4`` is read like the rest.
NOISE_FILES: dict[str, bytes | None] = {
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # an OLE2 compound file
    ".DS_Store": b"\x00\x00\x00\x01Bud1",
    "desktop.ini": None,
}
#: The first bytes of the ``._NAME`` file macOS writes beside NAME (AppleDouble): such a file is noise.
APPLE_DOUBLE = b"\x00\x05\x16\x07"
#: ``VolumeSegment.kind``: a video recording (with or without sound), sound only, a still photo.
SEGMENT_KINDS = ("video", "audio", "photo")
#: ``VolumeSegment.start_source``, where the start time was read: the container's own creation time, the file
#: name (device-local time), a sidecar file (device-local time, e.g. a drone's .SRT), GPS time in the footage.
START_SOURCES = ("container", "name", "sidecar", "gps")
#: ``DeviceIdentity.kind``.
IDENTITY_KINDS = ("body_camera", "handheld_terminal", "recorder", "camera", "cctv", "drone")
#: ``ClockReading.source``: a docking station's trusted clock, or GPS time found in the footage.
CLOCK_SOURCES = ("dock", "gps")
#: ``DeviceEvent.kind`` values custodes acts on: ``battery_low``, ``storage_full`` and ``device_fault`` explain the
#: one gap of the device that begins within 120 s after the event (or within the gap tolerance before it), up to its
#: next recording, never a later gap (custodes.tasks.Explanations; README, `gap explain`); the others place the
#: device's own log on the time line. A driver may pass other kinds its device logs (kept as they are, acted on by
#: nobody).
EVENT_KINDS = (
    "power_on",
    "power_off",
    "record_start",
    "record_stop",
    "battery_low",
    "storage_full",
    "device_fault",
)
#: ``TimeZoneChoice.source``, in the order :func:`device_zone` tries them (see the module docstring).
ZONE_SOURCES = ("option", "device", "policy_model", "policy_default", "driver")
AUDIO_EXTENSIONS = frozenset({".wav"})
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg"})


class DriverOptionError(CustodesError, ValueError):
    """A driver option that cannot be used (unknown naming field, time zone ...)."""

    kind = "driver_option"


@dataclass(frozen=True)
class DeviceIdentity:
    """Who the device is and whom it is issued to, as the volume (and the user's options) say.

    Frozen; build it with :func:`identity_from`, which fills ``device_id`` from the folder name
    when the volume names none and lets the user's ``-o`` options override what was found.
    ``officer_id`` is whom the device is issued to at this docking; a recording's own officer is
    :attr:`VolumeSegment.officer`."""

    device_id: str  # the archive's name for the device; non-empty text
    kind: str = "body_camera"  # one of IDENTITY_KINDS
    vendor: str | None = None
    model: str | None = None  # the key of the policy's [time_zones] table
    serial: str | None = None
    officer_id: str | None = None
    officer_name: str | None = None
    unit_id: str | None = None
    unit_name: str | None = None
    file: str | None = None  # the device file the identity was read from (findings about it name it)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "file"}


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """A regular file on the volume: absolute ``path`` and ``name`` relative to the volume, and the file the scan
    found there (``device``, ``inode``): what is copied must be that very file, not one put in its place since."""

    path: str
    name: str
    size: int
    device: int = 0
    inode: int = 0


@dataclass(frozen=True)
class VolumeSegment:
    """One recording file with what the vendor's naming and sidecars say about it.

    Frozen; :func:`media_segments` builds one per recording with the container's times, and a
    driver refines it with :func:`dataclasses.replace`."""

    path: str  # absolute path of the file
    name: str  # its name relative to the volume (what the archive keeps)
    kind: str  # one of SEGMENT_KINDS
    start: int | None  # ns UTC, on the device clock (not yet corrected by clock readings); None: no trustworthy time
    end: int | None  # ns UTC; a photo's end is its start
    start_source: str | None  # one of START_SOURCES, or None without a start
    sequence: int = timeline.NO_SEQUENCE  # the device's file number (>= 0), or NO_SEQUENCE (-1)
    important: bool = False  # the officer marked it important (kept long-term)
    recording: str | None = None  # chapters of one take share this
    chapter: int | None = None  # 1, 2, ... within ``recording``
    sidecars: tuple[str, ...] = ()  # names (relative to the volume) of the files that describe this one
    location: str | None = None  # ISO 6709 of the first fix
    container_time: int | None = None  # ns, what the container's own clock said (compared with a name's time)
    media: MediaInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # vendor facts, JSON values; shown, not acted on
    #: The officer who made this recording (a body camera's file name often says). None: the officer the device
    #: is issued to at this docking (``DeviceIdentity.officer_id``) is recorded for it. Drivers written before
    #: this field put it in ``extra["officer"]``, still read when this is None.
    officer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "kind": self.kind,
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "start_source": self.start_source,
            "sequence": None if self.sequence < 0 else self.sequence,
            "important": self.important,
            "recording": self.recording,
            "chapter": self.chapter,
            "sidecars": list(self.sidecars),
            "location": self.location,
            "container_time": rfc3339(self.container_time),
            "officer": self.officer,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class ClockReading:
    """The device clock against a trusted clock at one instant (a docking, or GPS in the footage). Frozen."""

    device_time: int  # ns, as the device clock showed it (its local zone applied)
    trusted_time: int  # ns UTC
    source: str  # one of CLOCK_SOURCES
    file: str | None = None  # the device file it was read from (findings about it name it)

    @property
    def offset(self) -> float:
        """Seconds the device clock is ahead (+) or behind (-) the trusted clock."""
        return (self.device_time - self.trusted_time) / NS

    def to_json(self) -> dict[str, Any]:
        return {
            "device_time": rfc3339(self.device_time),
            "trusted_time": rfc3339(self.trusted_time),
            "source": self.source,
            "offset_seconds": self.offset,
        }


@dataclass(frozen=True)
class DeviceEvent:
    """One line of the device's own event log. Frozen."""

    time: int  # ns UTC; required: an event whose time is missing or out of range is dropped by check_reading
    kind: str  # non-empty text; EVENT_KINDS are the ones custodes acts on
    detail: str = ""
    file: str | None = None  # the device log it was read from (findings about it name it)

    def to_json(self) -> dict[str, Any]:
        return {"time": rfc3339(self.time), "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class DeviceCheck:
    """A pre-use check (Art. 10) the device or its docking station logged. Frozen. See the module docstring."""

    time: int  # ns UTC, station clock; required: a check without a time is dropped by check_reading
    clock_offset: int | None = None  # device clock - station clock at the check, ns, before it was set
    battery_percent: int | None = None  # 0..100
    free_bytes: int | None = None
    faults: tuple[str, ...] = ()  # the fault flags raised at the check; () when none
    file: str | None = None  # the device file it was read from (findings about it name it)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": rfc3339(self.time),
            "clock_offset_seconds": None if self.clock_offset is None else self.clock_offset / NS,
            "battery_percent": self.battery_percent,
            "free_bytes": self.free_bytes,
            "faults": list(self.faults),
        }


@dataclass(frozen=True)
class TimeZoneChoice:
    """The zone a volume's device-local times were read in, and why (see :func:`device_zone`). Frozen."""

    zone: str  # an IANA name, UTC, or a fixed offset such as +08:00 (custodes.timeline.zone_info)
    source: str  # one of ZONE_SOURCES

    @property
    def tzinfo(self) -> tzinfo:
        return timeline.zone_info(self.zone)

    def to_json(self) -> dict[str, Any]:
        return {"zone": self.zone, "source": self.source}


#: What a known non-recording file is to its device (:attr:`NonRecording.role`).
NON_RECORDING_ROLES = frozenset({"identity", "log", "sidecar", "index", "thumbnail", "other"})


@dataclass(frozen=True)
class NonRecording:
    """A file the driver knows and that is not a recording: ``name`` relative to the volume (as
    :attr:`VolumeFile.name`), ``role`` one of :data:`NON_RECORDING_ROLES` (identity file, device log,
    sidecar, index, thumbnail, other). Ingest stores it like every file; ``volume`` lists it, so every
    file on a volume is accounted for: a segment, a non-recording, skipped noise, or a finding."""

    name: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role}


#: Confidences this close (or closer) are a close call: the runner-up is shown beside the choice.
CLOSE_CONFIDENCE = 0.1


@dataclass(frozen=True)
class DriverChoice:
    """How the driver of a volume was chosen: the one named (``confidence`` None) or the most confident,
    the runner-up when its confidence is within :data:`CLOSE_CONFIDENCE` of the choice, and the drivers
    whose ``recognise`` raised (counted as 0), each with its error."""

    driver: str
    confidence: float | None = None
    runner_up: str | None = None
    runner_up_confidence: float | None = None
    failed: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "confidence": self.confidence,
            "runner_up": None
            if self.runner_up is None
            else {"driver": self.runner_up, "confidence": self.runner_up_confidence},
            "recognise_failed": [{"driver": d, "error": e} for d, e in self.failed],
        }


@dataclass
class VolumeReading:
    """What a driver read from a volume. Mutable: a driver fills its lists, and custodes checks all of it
    (:func:`check_reading`) before using any."""

    driver: str  # the driver's name
    volume: str  # the volume folder
    identity: DeviceIdentity
    segments: list[VolumeSegment] = field(default_factory=list)
    clock_readings: list[ClockReading] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # names of the file-system noise not read (scan_volume's)
    non_recordings: list[NonRecording] = field(default_factory=list)
    choice: DriverChoice | None = None  # set by custodes.volumes.read_volume
    #: The zone device-local times were read in (:func:`device_zone`'s answer); None when the driver read none.
    time_zone: TimeZoneChoice | None = None
    #: Pre-use checks logged on the volume (optional: most devices log none).
    checks: list[DeviceCheck] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "volume": self.volume,
            "time_zone": None if self.time_zone is None else self.time_zone.to_json(),
            "identity": self.identity.to_json(),
            "segments": [s.to_json() for s in self.segments],
            "clock_readings": [c.to_json() for c in self.clock_readings],
            "events": [e.to_json() for e in self.events],
            "findings": [f.to_json() for f in self.findings],
            "skipped": self.skipped,
            "non_recordings": [n.to_json() for n in self.non_recordings],
            "checks": [x.to_json() for x in self.checks],
            "choice": None if self.choice is None else self.choice.to_json(),
        }


class Driver(ABC):
    """What a device driver does. Subclass it and publish it through the
    ``custodes_device_drivers`` hook.

    Class attributes: ``name``, the driver's name (``--driver NAME``, and the reading's ``driver``);
    ``accepted_options``, the ``-o KEY=VALUE`` options it reads beyond :data:`COMMON_OPTIONS` (key -> one-line
    meaning; any other key is refused by :func:`check_options` before the driver reads the volume)."""

    name: str = ""
    #: The ``-o KEY=VALUE`` options this driver reads beyond :data:`COMMON_OPTIONS`: key -> one-line meaning.
    #: Any other key is refused (:func:`check_options`) before the driver reads the volume.
    accepted_options: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def recognise(self, volume: Path) -> float:
        """How sure the driver is that it knows this volume, 0 (not at all) to 1."""

    @abstractmethod
    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        """Read the volume (never writing to it) into a :class:`VolumeReading`."""


#: The keys :func:`identity_from` takes (as found, and as ``-o`` options): every DeviceIdentity field but ``file``.
IDENTITY_FIELDS = frozenset(DeviceIdentity.__dataclass_fields__) - {"file"}

#: The options every driver takes, declared once: the identity fields :func:`identity_from` reads
#: (they override what the volume says: device_id, kind, vendor, model, serial, officer_id, officer_name, unit_id,
#: unit_name), the device time zone (tz) and the name-vs-container tolerance (clock_tolerance, seconds).
COMMON_OPTIONS: Mapping[str, str] = {
    "device_id": "device id (default: what the volume says, else the volume folder's name)",
    "kind": "device kind: body_camera, handheld_terminal, recorder, camera, cctv, drone",
    "vendor": "device vendor",
    "model": "device model",
    "serial": "device serial number",
    "officer_id": "officer the device is issued to",
    "officer_name": "that officer's name",
    "unit_id": "unit the device belongs to",
    "unit_name": "that unit's name",
    "tz": "time zone the device clock shows (Asia/Shanghai, +08:00, UTC), above what the device states",
    "clock_tolerance": "seconds a file name's time may differ from its container's",
}


def known_options(driver: Driver) -> dict[str, str]:
    """Every option ``driver`` takes: :data:`COMMON_OPTIONS` and its own ``accepted_options``."""
    own = getattr(driver, "accepted_options", {})
    return {**COMMON_OPTIONS, **(dict(own) if isinstance(own, Mapping) else {})}


def read_head(path: Path, limit: int) -> bytes:
    """At most the first ``limit`` bytes of a small file on a volume (a driver's metadata: an ``.ini``, an event
    log, a version file), read as such: only a regular file, never more than ``limit`` bytes in memory whatever
    its size (a hostile review: an 8 GB sparse event log was read whole, and the device's identity lost to a
    MemoryError), never waiting on a FIFO. Raises OSError as reading the file would (EINVAL: not a regular file)."""
    try:
        return _durable.read_head(path, limit)
    except ValueError as e:
        raise OSError(errno.EINVAL, str(e), os.fspath(path)) from None


def read_lines_head(path: Path, limit: int) -> tuple[bytes, Finding | None]:
    """The whole lines of a device's text file (an event log, a ``key=value`` file) in its first ``limit`` bytes
    (:func:`read_head`), and, when the file is longer, a ``malformed`` finding saying how much was read: the
    rest was dropped without a word (an event log's newest lines), and the line the limit cut was blamed as not
    understood (a hostile review). Raises OSError as :func:`read_head`."""
    data = read_head(path, limit + 1)
    if len(data) <= limit:
        return data, None
    kept = data[: data.rfind(b"\n", 0, limit) + 1]  # no whole line at all: nothing
    try:
        size = f"{os.stat(path).st_size:,} bytes"
    except OSError:
        size = "longer"
    return kept, Finding(
        "malformed",
        f"file of {size}, over the {limit:,} bytes read of it: only its first {len(kept):,} bytes (whole lines) "
        "were read; what follows is not",
        path=os.fspath(path),
        evidence={"read_bytes": len(kept), "limit": limit},
    )


def check_options(driver: Driver, name: str, options: Mapping[str, str]) -> None:
    """Refuse an option ``driver`` does not declare (a typo must not be ignored in silence)."""
    known = known_options(driver)
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise DriverOptionError(
            f"driver {name} takes no option {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})"
        )


def identity_from(volume: Path, options: Mapping[str, str], **found: str | None) -> DeviceIdentity:
    """The identity a driver found on the volume (``found``: :data:`IDENTITY_FIELDS` and ``file``),
    overridden by the user's ``options``; the device id defaults to the volume folder's name.
    A ``kind`` option outside :data:`IDENTITY_KINDS` is a :class:`DriverOptionError`."""
    if "kind" in options and options["kind"] not in IDENTITY_KINDS:
        raise DriverOptionError(f"unknown device kind {options['kind']!r} (known: {', '.join(IDENTITY_KINDS)})")
    fields = {k: v for k, v in found.items() if v is not None}
    fields.update({k: v for k, v in options.items() if k in IDENTITY_FIELDS})
    fields.setdefault("device_id", name_text(os.path.basename(os.path.abspath(volume))))
    return DeviceIdentity(**fields)


@dataclass(frozen=True)
class _ZonePolicy:
    by_model: Mapping[str, str]
    default: str | None


_ZONE_POLICY: ContextVar[_ZonePolicy | None] = ContextVar("custodes_zone_policy", default=None)


@contextmanager
def zone_policy(by_model: Mapping[str, str], default: str | None) -> Iterator[None]:
    """Inside this block :func:`device_zone` knows the archive policy's zones: ``by_model`` (the
    ``[time_zones]`` table, device model to zone) and ``default`` (``[devices] time_zone``).
    Outside any (``volume`` and ``timeline`` read volumes without an archive) it knows none."""
    token = _ZONE_POLICY.set(_ZonePolicy(dict(by_model), default))
    try:
        yield
    finally:
        _ZONE_POLICY.reset(token)


def _zone_checked(zone: str, what: str) -> str:
    try:
        timeline.zone_info(zone)
    except ValueError as e:
        raise DriverOptionError(f"{what}: {e}") from None
    return zone


def device_zone(
    options: Mapping[str, str], *, stated: str | None = None, model: str | None = None, default: str = "UTC"
) -> TimeZoneChoice:
    """The zone to read a device's local times in, and why: the one order of the module docstring.

    ``options``: the user's driver options (``tz`` is the user's zone); ``stated``: the zone the
    device itself states on the volume (None if it states none); ``model``: the device model (the
    policy's ``[time_zones]`` key); ``default``: the driver's own default. A user's zone that is
    not one is a :class:`DriverOptionError` (a usage error); a device's statement that is not one
    is ignored here (the driver reports it as a finding) and the order goes on."""
    if "tz" in options:
        return TimeZoneChoice(_zone_checked(options["tz"], "option tz"), "option")
    if stated is not None and _is_text(stated):
        try:
            timeline.zone_info(stated)
            return TimeZoneChoice(stated, "device")
        except ValueError:
            pass
    policy = _ZONE_POLICY.get()
    if policy is not None:
        if model is not None and model in policy.by_model:
            return TimeZoneChoice(policy.by_model[model], "policy_model")
        if policy.default is not None:
            return TimeZoneChoice(policy.default, "policy_default")
    return TimeZoneChoice(_zone_checked(default, "driver default zone"), "driver")


# File names. A name on a volume is bytes; Python holds one that is not UTF-8
# as a str with surrogate escapes (os.fsdecode), which neither SQLite TEXT nor
# UTF-8 JSON can carry. The one rule for keeping a name, used by the catalog
# (segments.original_name + original_name_bytes) and the ledger (entry "name"
# + "name_b64"):
#   - name_text: the name as text, one text per name (the catalog's unique key
#     relies on it). A UTF-8 name without a backslash is kept exactly as it is
#     (every name a camera's FAT/exFAT card can hold). Any other name is
#     escaped: each byte that is not UTF-8 as \xNN and each backslash as \\, so
#     its text always holds a backslash and can never be some other file's
#     name ("a<0xff>" is a\xff, the UTF-8 name "a\xff" is a\\xff).
#   - name_bytes: the exact bytes, kept beside the text only when the text is
#     not the name itself (None otherwise, so ordinary names are stored as before).
#   - name_from(text, raw) gives the name back, byte for byte.
# shown_name (in custodes.findings, re-exported here) is for output that is one
# line per file and for every finding message that names a file: it escapes
# control characters as well, so every name reads unambiguously on one line.


def _is_utf8(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def name_text(name: str) -> str:
    """The name as text to store (see above): itself when UTF-8 without a backslash, else escaped."""
    return name if "\\" not in name and _is_utf8(name) else _escaped(name, controls=False)


def name_bytes(name: str) -> bytes | None:
    """The name's exact bytes when :func:`name_text` is not the name itself, else None."""
    return None if name_text(name) == name else os.fsencode(name)


#: The two hex digits :func:`name_text` writes after ``\\x``: a byte that is not UTF-8 on its own.
_NOT_UTF8_BYTE = re.compile(r"[89a-f][0-9a-f]")


def name_from_text(text: str) -> str:
    """The name (surrogate-escaped str) back from :func:`name_text` alone (a volume's path, kept as text only):
    ``\\\\`` a backslash, ``\\xNN`` a byte that is not UTF-8 (80 to ff), the escapes being all it adds. Any other
    ``\\x`` (a catalog edited by hand: ``\\xzz``, ``\\x41``) is kept as it is written, never a crash of the
    command that shows it (verify's pending)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out.append("\\")
            i += 2
        elif text.startswith("\\x", i) and _NOT_UTF8_BYTE.fullmatch(text, i + 2, i + 4):
            out.append(chr(0xDC00 + int(text[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def name_from(text: str, raw: bytes | None) -> str:
    """The name (surrogate-escaped str) back from what :func:`name_text` and :func:`name_bytes` kept."""
    return os.fsdecode(bytes(raw)) if raw is not None else text


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def odd_name(name: str) -> str | None:
    """Why a name cannot be shown as it is (not UTF-8, control characters), or None."""
    if not name.isascii() and not _is_utf8(name):  # ASCII is UTF-8: no encoding per ordinary name
        return "is not valid UTF-8"
    if _CONTROL.search(name):
        return "holds control characters"
    return None


def _is_noise(entry: os.DirEntry[str]) -> bool:
    """A system folder of :data:`NOISE`, or a file named as desktops name theirs whose first bytes are that
    file's format (:data:`NOISE_FILES`, :data:`APPLE_DOUBLE`). Only those few files are opened here."""
    name = entry.name
    if name in NOISE:
        return True
    if name in NOISE_FILES:
        magic: bytes | None = NOISE_FILES[name]
    elif name.startswith("._"):
        magic = APPLE_DOUBLE
    else:
        return False
    try:
        if not entry.is_file(follow_symlinks=False):
            return False
        head = read_head(Path(entry.path), 4096)
    except OSError:
        return False  # read like the rest: what is wrong with it is said there
    return head.startswith(magic) if magic is not None else b"\x00" not in head


_NAME = operator.attrgetter("name")
_Scan = tuple[list[VolumeFile], list[Finding], list[str]]
#: The walks made inside :func:`one_scan_per_volume`, by volume path (None outside one).
_SCANS: ContextVar[dict[str, _Scan] | None] = ContextVar("custodes_volume_scans", default=None)


@contextmanager
def one_scan_per_volume() -> Iterator[None]:
    """Inside this block :func:`scan_volume` walks each volume once: every driver's ``recognise``
    and the chosen driver's ``read`` share that walk, so choosing a driver costs no extra pass over
    10^5 files. Outside it (and in the next block) each call walks the volume afresh. A block
    inside another shares the outer one's walks (a caller that reads the volume and then lists
    its files wraps both)."""
    if _SCANS.get() is not None:
        yield
        return
    token = _SCANS.set({})
    try:
        yield
    finally:
        _SCANS.reset(token)


def scan_volume(volume: Path) -> _Scan:
    """Every regular file on the volume (in byte order of their names), the findings about what
    is not one, and the skipped noise.

    Nothing is followed out of the volume: a symbolic link is a finding (with
    where it points), never a file to read. Each entry is stat'ed once.
    """
    scans = _SCANS.get()
    key = os.fspath(volume)
    if scans is not None and key in scans:
        files, findings, skipped = scans[key]
    else:
        files, findings, skipped = _walk(key)
        if scans is not None:
            scans[key] = (files, findings, skipped)
    return list(files), list(findings), list(skipped)  # copies: a driver may change its lists


def _walk(root: str) -> _Scan:
    files: list[VolumeFile] = []
    findings: list[Finding] = []
    skipped: list[str] = []
    real_root: str | None = None  # resolved once, at the first link
    all_ascii = True  # every name on the volume is ASCII: its byte order is the order of the str
    stack = [(root, "")]  # (folder, its name relative to the volume; "" for the volume itself)
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            findings.append(Finding("unreadable", f"cannot list folder: {e.strerror}", path=folder))
            continue
        if "".join(e.name for e in entries).isascii():
            entries.sort(key=_NAME)
        else:
            entries.sort(key=lambda e: os.fsencode(e.name))
            all_ascii = False
        subfolders = []
        for entry in entries:
            rel = prefix + entry.name  # what os.path.relpath(entry.path, root) gives, without its work per file
            if _is_noise(entry):
                skipped.append(rel)
                continue
            try:
                # lstat, as entry.stat(follow_symlinks=False) is, without keeping the result in the entry: a folder's
                # entries are held until it is listed, and 10^5 cached stat results were some 30 MiB at the peak.
                st = os.lstat(entry.path)
            except OSError as e:
                findings.append(Finding("unreadable", f"cannot stat: {e.strerror}", path=entry.path))
                continue
            odd = odd_name(entry.name)
            if odd is not None:
                findings.append(
                    Finding(
                        "odd_name",
                        f"file name {odd}; kept byte for byte, shown as {shown_name(entry.name)}",
                        path=entry.path,
                        evidence={"name_bytes": os.fsencode(entry.name).hex()},
                    )
                )
            if stat.S_ISLNK(st.st_mode):
                if real_root is None:
                    real_root = os.path.realpath(root) + os.sep
                target = os.readlink(entry.path)
                outside = not os.path.realpath(entry.path).startswith(real_root)
                findings.append(
                    Finding(
                        "symlink",
                        f"symbolic link to {shown_name(target)}"
                        f"{' (outside the volume)' if outside else ''}; not followed",
                        path=entry.path,
                        evidence={"target": target, "outside": outside},
                    )
                )
            elif stat.S_ISDIR(st.st_mode):
                subfolders.append((entry.path, rel + os.sep))
            elif stat.S_ISREG(st.st_mode):
                files.append(VolumeFile(entry.path, rel, st.st_size, st.st_dev, st.st_ino))
            else:
                findings.append(
                    Finding(
                        "not_regular_file", "not a regular file (FIFO, socket or device); not read", path=entry.path
                    )
                )
        stack.extend(reversed(subfolders))
    files.sort(key=_NAME if all_ascii else lambda f: os.fsencode(f.name))
    return files, _volume_bounded(root, findings), skipped


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


def _probe_each(paths: list[str], samples: bool) -> list[MediaInfo | Exception]:
    """probe_many, in one batch; if the batch fails (a parser error on one hostile file), file by
    file, so that file's error is its own result and every other file is still read."""
    try:
        return list(probe_many(paths, samples=samples))
    except Exception as e:  # noqa: BLE001 - one hostile file never costs the others their metadata
        if len(paths) == 1:
            return [e]
    out: list[MediaInfo | Exception] = []
    for p in paths:
        try:
            out += probe_many([p], samples=samples)
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def media_segments(
    files: Iterable[VolumeFile], device: str | None = None, *, samples: bool = False
) -> tuple[list[VolumeSegment], list[Finding], list[VolumeFile]]:
    """Segments for the recordings among ``files`` with times from their containers.

    ``samples`` keeps per-sample times, offsets and sizes in each segment's
    ``media`` (for drivers that read telemetry tracks).

    Returns the segments, the findings of probing them, and the files that
    are not recordings (for a driver to claim as sidecars or report).
    """
    media: list[VolumeFile] = []
    others: list[tuple[VolumeFile, str]] = []  # with the extension, lower case
    for f in files:  # one pass: comparing each file with every media file was quadratic
        ext = os.path.splitext(f.name)[1].lower()
        if ext in MEDIA_EXTENSIONS:
            media.append(f)
        else:
            others.append((f, ext))
    segments: list[VolumeSegment] = []
    findings: list[Finding] = []
    for f, info in zip(media, _probe_each([f.path for f in media], samples), strict=True):
        if isinstance(info, CustodesError):
            findings.append(Finding("unreadable", str(info), device=device, path=f.path))
            continue
        if isinstance(info, Exception):
            findings.append(
                Finding(
                    "malformed",
                    f"the container could not be read ({type(info).__name__}: {info}); "
                    "kept as it is, without container times",
                    device=device,
                    path=f.path,
                )
            )
            segments.append(
                VolumeSegment(f.path, f.name, "video", None, None, None, sequence=timeline.sequence_number(f.name))
            )
            continue
        findings += [Finding(x.kind, x.message, device, x.path, x.start, x.end, x.evidence) for x in info.findings]
        start = info.creation_time if not any(x.kind == "clock_unset" for x in info.findings) else None
        end = start + round(info.duration * NS) if start is not None and info.duration is not None else None
        kind = "video" if any(t.kind == "video" for t in info.tracks) else "audio"
        segments.append(
            VolumeSegment(
                f.path,
                f.name,
                kind,
                start,
                end,
                "container" if start is not None else None,
                sequence=timeline.sequence_number(f.name),
                location=info.location,
                container_time=info.creation_time,
                media=info,
            )
        )
    rest = []
    for f, ext in others:
        if ext in AUDIO_EXTENSIONS:
            seconds = wav_duration(f.path)
            if seconds is None:
                findings.append(Finding("malformed", "not a readable RIFF/WAVE file", device=device, path=f.path))
            segments.append(
                VolumeSegment(
                    f.path,
                    f.name,
                    "audio",
                    None,
                    None,
                    None,
                    sequence=timeline.sequence_number(f.name),
                    extra={"duration": seconds},
                )
            )
        elif ext in PHOTO_EXTENSIONS:
            segments.append(
                VolumeSegment(f.path, f.name, "photo", None, None, None, sequence=timeline.sequence_number(f.name))
            )
        else:
            rest.append(f)
    return segments, findings, rest


# The driver contract, enforced. Everything a driver returns was read from a
# device volume, which may be hostile, and a driver may be third-party code:
# every field of every record is checked for its type and shape here, once,
# before anything (catalog, ledger, timeline, JSON output) uses it. A bad
# field is dropped (set to None, or its default) and becomes a `malformed`
# finding naming the file it came from; a bad record is dropped the same way.
# So no driver can crash ingest, volume or timeline with what it read.

#: Characters in one text field a driver read from a device file (a longer one is a ``malformed`` finding).
TEXT_MAX = 4096


def _int64(v: Any) -> int | None:
    """``v`` as an int when it is an integer (not a bool) that SQLite and numpy can hold, else None."""
    if type(v) is int:  # the common case, without numbers.Integral's slow ABC check
        return v if INT64_MIN <= v <= INT64_MAX else None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        return None
    v = int(v)
    return v if INT64_MIN <= v <= INT64_MAX else None


def _is_text(v: Any) -> bool:
    """Text a catalog column and UTF-8 JSON can hold: a str, not too long, no NUL, no lone surrogates."""
    if not isinstance(v, str) or len(v) > TEXT_MAX or "\x00" in v:
        return False
    if v.isascii():  # no surrogate, without encoding it (a flag CPython keeps on every str)
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_path(v: Any) -> bool:
    """A file name or path: a str without NUL (names that are not UTF-8 are allowed: they are evidence)."""
    return isinstance(v, str) and "\x00" not in v and bool(v)


def _escaped_text(v: str) -> str:
    """Any str as storable text (prose, not a name: backslashes stay): bytes that are not UTF-8
    as ``\\xNN``, NUL as ``\\x00``."""
    if v.isascii():  # UTF-8 as it is: only NUL to escape
        return v.replace("\x00", "\\x00")
    try:
        text = os.fsencode(v).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name has
        text = v.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


_FLAT = frozenset({str, int, bool, type(None)})


def _json_ok(v: Any) -> bool:
    if type(v) is dict and all(type(k) is str and type(x) in _FLAT for k, x in v.items()):
        return True  # flat evidence, the usual kind: JSON as it is, without encoding it per finding
    try:
        json.dumps(v, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _described(v: Any) -> str:
    """The type and a short, bounded repr (a huge list costs no more than a small one)."""
    try:
        text = reprlib.repr(v)
    except Exception:  # noqa: BLE001 - a driver's own object whose repr fails
        text = "?"
    return f"{type(v).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


class _Checker:
    def __init__(self, driver: str, volume: str, device: str | None = None) -> None:
        self.driver, self.volume, self.device = driver, volume, device
        self.findings: list[Finding] = []

    def bad(self, record: str, name: str, value: Any, file: str | None, want: str) -> None:
        self.findings.append(
            Finding(
                "malformed",
                f"driver {self.driver}: {record} field {name!r} is {_described(value)}, not {want}; dropped",
                self.device,
                file if _is_path(file) else self.volume,
                evidence={"driver": self.driver, "record": record, "field": name, "value": _described(value)},
            )
        )

    def text(self, record: str, obj: Any, name: str, file: str | None, *, required: bool = False) -> str | None:
        v = getattr(obj, name, None)
        if v is None and not required:
            return None
        if _is_text(v) and (v or not required):
            return v  # type: ignore[no-any-return]
        self.bad(record, name, v, file, "non-empty text" if required else "text")
        return None

    def one_of(
        self, record: str, obj: Any, name: str, file: str | None, allowed: tuple[str, ...], *, required: bool = False
    ) -> str | None:
        """The field when it is one of ``allowed`` (the module's constants), else None and a finding."""
        v = getattr(obj, name, None)
        if v is None and not required:
            return None
        if isinstance(v, str) and v in allowed:
            return v
        self.bad(record, name, v, file, f"one of {', '.join(allowed)}")
        return None

    def time(self, record: str, obj: Any, name: str, file: str | None, *, required: bool = False) -> int | None:
        v = getattr(obj, name, None)
        if v is None and not required:
            return None
        t = _int64(v)
        if t is None:
            self.bad(record, name, v, file, "a time in integer nanoseconds (64-bit)")
        return t


def check_reading(
    reading: Any, driver: str, volume: str | os.PathLike[str], options: Mapping[str, str]
) -> VolumeReading:
    """What a driver returned, with every field checked against the contract (see above)."""
    vol = os.fspath(volume)
    if not isinstance(reading, VolumeReading):
        c = _Checker(driver, vol)
        c.bad("reading", "(whole)", reading, None, "a VolumeReading")
        return VolumeReading(driver, vol, identity_from(Path(vol), options), findings=c.findings)
    identity = _check_identity(reading.identity, driver, vol, options)
    c = _Checker(driver, vol, identity.findings_device)
    segments = [s for s in (_check_segment(c, s) for s in _items(c, reading.segments, "segments")) if s is not None]
    segments = _files_of_the_volume(c, segments)
    clock = [
        x for x in (_check_clock(c, x) for x in _items(c, reading.clock_readings, "clock_readings")) if x is not None
    ]
    events = [x for x in (_check_event(c, x) for x in _items(c, reading.events, "events")) if x is not None]
    findings = [x for x in (_check_finding(c, x) for x in _items(c, reading.findings, "findings")) if x is not None]
    skipped = []
    for x in _items(c, reading.skipped, "skipped"):
        if _is_path(x):
            skipped.append(x)
        else:
            c.bad("skipped", "(item)", x, None, "a path")
    non_recordings = [
        x for x in (_check_non_recording(c, x) for x in _items(c, reading.non_recordings, "non_recordings")) if x
    ]
    checks = [x for x in (_check_check(c, x) for x in _items(c, reading.checks, "checks")) if x is not None]
    zone = reading.time_zone
    if zone is not None and not _zone_ok(zone):
        c.bad("reading", "time_zone", zone, None, f"a TimeZoneChoice with a zone and a source in {ZONE_SOURCES}")
        zone = None
    return VolumeReading(
        driver,
        vol,
        identity.value,
        segments,
        clock,
        events,
        bounded_findings(identity.findings + findings + c.findings),
        skipped,
        non_recordings,
        time_zone=zone,
        checks=checks,
    )


#: Findings of one kind a reading keeps about one file. A device file of junk made one finding a
#: line: 1 MiB of bad event-log lines was 524,288 `malformed` findings, each a catalog row and a ledger entry's
#: part (a 391 MB catalog from one volume). Past this, one more finding of the kind counts the rest.
FINDINGS_PER_FILE = 100


def bounded_findings(findings: list[Finding]) -> list[Finding]:
    """``findings`` with at most :data:`FINDINGS_PER_FILE` of each kind about one file, in their order, and for
    each that had more, one finding of the same kind after them saying how many were left out. (By kind and file
    only: the contract's checker names the device where the driver did not, and one file got two caps.)"""
    return _capped(
        findings,
        lambda f: (f.kind, f.path),
        FINDINGS_PER_FILE,
        lambda f, left: Finding(
            f.kind,
            f"{left} more {f.kind} findings about this file not listed (at most {FINDINGS_PER_FILE} a file)",
            f.device,
            f.path,
            evidence={"left_out": left},
        ),
    )


#: Findings of one kind the volume scanner keeps about entries of a volume it does not store or names oddly
#: (:data:`_SCANNED_KINDS`). Each cost the one who made the volume an inode only: 20,000 dangling links were
#: 20,000 findings, 35 MB of catalog at every docking of the card (a hostile review).
FINDINGS_PER_VOLUME = 1000
_SCANNED_KINDS = frozenset({"symlink", "not_regular_file", "unreadable", "odd_name"})


def _volume_bounded(root: str, findings: list[Finding]) -> list[Finding]:
    return _capped(
        findings,
        lambda f: f.kind if f.kind in _SCANNED_KINDS else None,
        FINDINGS_PER_VOLUME,
        lambda f, left: Finding(
            f.kind,
            f"{left} more {f.kind} findings on this volume not listed (at most {FINDINGS_PER_VOLUME} a volume)",
            path=root,
            evidence={"left_out": left},
        ),
    )


def _capped(
    findings: list[Finding],
    key_of: Callable[[Finding], Hashable | None],
    limit: int,
    rest: Callable[[Finding, int], Finding],
) -> list[Finding]:
    """``findings`` in their order with at most ``limit`` of each key (None: not counted), and after them, for
    each key that had more, ``rest(first finding of the key, how many were left out)``."""
    said: dict[Hashable, list[Any]] = {}  # key -> [count, first finding]
    kept = []
    for f in findings:
        key = key_of(f)
        if key is None:
            kept.append(f)
            continue
        seen = said.setdefault(key, [0, f])
        seen[0] += 1
        if seen[0] <= limit:
            kept.append(f)
    kept += [rest(first, n - limit) for n, first in said.values() if n > limit]
    return kept


def shared_findings(reading: VolumeReading, options: Mapping[str, str]) -> list[Finding]:
    """The checks every driver's (checked) reading gets, run once by custodes and never by a driver:
    a file name's time against its container's own time (``name_time_mismatch``, beyond the option
    ``clock_tolerance`` seconds, default 2).

    A name's time is the segment's start when the driver read it from the name or a sidecar
    (device-local, the reading's zone applied), else a ``YYYYMMDDhhmmss`` in the name read in the
    reading's zone. A reading without a zone gets :func:`device_zone`'s answer, set on it (its
    names were read in that zone, so the output says so)."""
    if reading.time_zone is None:
        reading.time_zone = device_zone(options, model=reading.identity.model)
    zone = reading.time_zone.zone
    given = options.get("clock_tolerance", "2")
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    # inf overflowed round() (a traceback); a negative tolerance made every file a name_time_mismatch "+0 s apart"
    if not (math.isfinite(seconds) and 0 <= seconds <= 86_400):
        raise DriverOptionError(
            f"option clock_tolerance: {given!r} is not a number of seconds from 0 to 86400"
        ) from None
    tolerance = round(seconds * NS)
    named = []
    for s in reading.segments:
        if s.container_time is None:
            continue
        if s.start_source in ("name", "sidecar"):
            nt = s.start
        else:
            nt = timeline.name_time(s.name, zone)
        if nt is not None and _int64(nt) is not None:  # a name's year 9999 is no time the engine can hold
            named.append((reading.identity.device_id, s.path, nt, s.container_time))
    return timeline.name_time_findings(named, tz=zone, tolerance=tolerance)


def _zone_ok(zone: Any) -> bool:
    if not isinstance(zone, TimeZoneChoice) or zone.source not in ZONE_SOURCES or not _is_text(zone.zone):
        return False
    try:
        timeline.zone_info(zone.zone)
    except ValueError:
        return False
    return True


def _check_non_recording(c: _Checker, x: Any) -> NonRecording | None:
    if not isinstance(x, NonRecording) or not _is_path(x.name):
        c.bad("non_recording", "(whole)", x, None, "a NonRecording with a name")
        return None
    if x.role not in NON_RECORDING_ROLES:
        c.bad(
            "non_recording",
            "role",
            x.role,
            os.path.join(c.volume, x.name),
            f"one of {', '.join(sorted(NON_RECORDING_ROLES))}",
        )
        return NonRecording(x.name, "other")
    return x


def _items(c: _Checker, v: Any, name: str) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return list(v)
    c.bad("reading", name, v, None, "a list")
    return []


@dataclass
class _CheckedIdentity:
    value: DeviceIdentity
    findings: list[Finding]

    @property
    def findings_device(self) -> str:
        return self.value.device_id


def _check_identity(identity: Any, driver: str, vol: str, options: Mapping[str, str]) -> _CheckedIdentity:
    default = identity_from(Path(vol), options)
    c = _Checker(driver, vol)
    if not isinstance(identity, DeviceIdentity):
        c.bad("identity", "(whole)", identity, None, "a DeviceIdentity")
        return _CheckedIdentity(default, c.findings)
    file = identity.file if _is_path(identity.file) else None
    fields: dict[str, Any] = {
        name: c.text("identity", identity, name, file, required=name == "device_id")
        for name in IDENTITY_FIELDS - {"kind"}
    }
    fields["kind"] = c.one_of("identity", identity, "kind", file, IDENTITY_KINDS, required=True)
    fields["device_id"] = fields["device_id"] or default.device_id
    fields["kind"] = fields["kind"] or default.kind
    value = DeviceIdentity(**fields, file=file)
    c.device = value.device_id
    return _CheckedIdentity(value, [replace(f, device=value.device_id) for f in c.findings])


def _check_segment(c: _Checker, s: Any) -> VolumeSegment | None:
    if not isinstance(s, VolumeSegment) or not _is_path(s.path) or not _is_path(s.name):
        c.bad("segment", "(whole)", s, getattr(s, "path", None), "a VolumeSegment with a path and a name")
        return None
    f = s.path
    fixed: dict[str, Any] = {
        "kind": c.one_of("segment", s, "kind", f, SEGMENT_KINDS, required=True) or "file",
        **{n: c.time("segment", s, n, f) for n in ("start", "end", "container_time")},
        "start_source": c.one_of("segment", s, "start_source", f, START_SOURCES),
        **{n: c.text("segment", s, n, f) for n in ("recording", "location", "officer")},
    }
    seq = _int64(s.sequence)
    if seq is None:
        c.bad("segment", "sequence", s.sequence, f, "a 64-bit integer")
    fixed["sequence"] = timeline.NO_SEQUENCE if seq is None else seq
    fixed["important"] = isinstance(s.important, bool) and s.important or _int64(s.important) == 1
    if not isinstance(s.important, bool) and _int64(s.important) not in (0, 1):
        c.bad("segment", "important", s.important, f, "true or false")
    fixed["chapter"] = None if s.chapter is None else _int64(s.chapter)
    if s.chapter is not None and fixed["chapter"] is None:
        c.bad("segment", "chapter", s.chapter, f, "a 64-bit integer")
    if isinstance(s.sidecars, (list, tuple)) and all(_is_path(x) for x in s.sidecars):
        fixed["sidecars"] = tuple(s.sidecars)
    else:
        c.bad("segment", "sidecars", s.sidecars, f, "a list of paths")
        fixed["sidecars"] = ()
    fixed["media"] = s.media if s.media is None or _media_ok(s.media) else None
    if s.media is not None and fixed["media"] is None:
        c.bad("segment", "media", s.media, f, "MediaInfo with times, duration and tracks of their types")
    extra: dict[str, Any] = {}
    if isinstance(s.extra, dict):
        for k, v in s.extra.items():
            if not _is_text(k) or not _json_ok(v) or (k == "officer" and v is not None and not _is_text(v)):
                c.bad("segment", f"extra[{k!r}]", v, f, "a JSON value" + (" (text)" if k == "officer" else ""))
            else:
                extra[k] = v
    else:
        c.bad("segment", "extra", s.extra, f, "a mapping")
    fixed["extra"] = extra
    if fixed["officer"] is None and s.officer is None and isinstance(extra.get("officer"), str):
        fixed["officer"] = extra["officer"]  # a driver from before the field: the one place it is still read
    if isinstance(s.extra, dict) and len(extra) == len(s.extra):
        fixed["extra"] = s.extra  # every value passed: the driver's own mapping (the segment is frozen)
    for k, v in fixed.items():
        if v is not getattr(s, k):
            return replace(s, **fixed)
    return s  # the usual case, a driver that keeps the contract: no copy of 10^5 segments


def _files_of_the_volume(c: _Checker, segments: list[VolumeSegment]) -> list[VolumeSegment]:
    """The segments that each describe a file of the volume (its ``path`` the file's, as :func:`scan_volume`
    lists it under its ``name``), once, with an end not before the start. A hostile review had a driver's bugs
    written down as the device's doing: a segment of a file not on the volume, or read from another file (a path
    outside it, another recording's), made `overlap` ("clock jump or forgery") and `sequence_break` ("a deleted
    file") errors against the device and findings about /etc/passwd; one returned twice, an overlap with itself;
    an end before the start stopped the volume's whole time line; sidecars naming files outside it, another
    recording or the recording itself were listed as what describes it. Each is the driver's `malformed` finding
    now: the segment dropped (its file, if on the volume, stored as it is), or its end, or those sidecars."""
    files = {f.name: f.path for f in scan_volume(Path(c.volume))[0]}
    recordings = {s.name for s in segments}
    kept: list[VolumeSegment] = []
    seen: set[str] = set()
    for s in segments:
        where = files.get(s.name)
        if where != s.path or s.name in seen:
            why = (
                "returned twice"
                if where == s.path
                else ("not a file on the volume" if where is None else f"read from {shown_name(s.path)}, not that file")
            )
            c.findings.append(
                Finding(
                    "malformed",
                    f"driver {c.driver}: segment {shown_name(s.name)} is {why}; dropped (the volume's files are "
                    "stored as they are)",
                    c.device,
                    where if where is not None else c.volume,
                    evidence={"driver": c.driver, "record": "segment", "name": s.name, "path": s.path},
                )
            )
            continue
        seen.add(s.name)
        if s.start is not None and s.end is not None and s.end < s.start:
            # (the start kept, as the driver said it, with the container's time beside it: which one is wrong is
            # for a person to see; without an end the recording is off the time line, as one without times)
            c.bad("segment", "end", s.end, s.path, f"a time not before its start ({s.start})")
            s = replace(s, end=None)
        wrong = [x for n, x in enumerate(s.sidecars) if x not in files or x in recordings or x in s.sidecars[:n]]
        if wrong:  # (listed by `volume` as what describes the recording: /etc/passwd, or the recording itself)
            c.bad("segment", "sidecars", wrong, s.path, "names of files on the volume that are no recording, once")
            s = replace(s, sidecars=tuple(dict.fromkeys(x for x in s.sidecars if x in files and x not in recordings)))
        kept.append(s)
    return kept


def _media_ok(m: Any) -> bool:
    """The container facts ingest records: times, duration (seconds, finite, in ns range), tracks."""
    if not isinstance(m, MediaInfo):
        return False
    if m.creation_time is not None and _int64(m.creation_time) is None:
        return False
    if m.duration is not None and (
        not isinstance(m.duration, (int, float))
        or not math.isfinite(m.duration)
        or _int64(round(m.duration * NS)) is None
    ):
        return False
    if _int64(m.missing_bytes) is None or not isinstance(m.tracks, list):
        return False
    return all(
        _is_text(t.kind) and (t.codec is None or _is_text(t.codec)) and _int64(t.samples) is not None for t in m.tracks
    )


def _check_clock(c: _Checker, x: Any) -> ClockReading | None:
    file = getattr(x, "file", None)
    if not isinstance(x, ClockReading):
        c.bad("clock_reading", "(whole)", x, None, "a ClockReading")
        return None
    device_time = c.time("clock_reading", x, "device_time", file, required=True)
    trusted_time = c.time("clock_reading", x, "trusted_time", file, required=True)
    source = c.one_of("clock_reading", x, "source", file, CLOCK_SOURCES, required=True)
    if device_time is None or trusted_time is None or source is None:
        return None
    return ClockReading(device_time, trusted_time, source, file if _is_path(file) else None)


def _check_event(c: _Checker, x: Any) -> DeviceEvent | None:
    file = getattr(x, "file", None)
    if not isinstance(x, DeviceEvent):
        c.bad("event", "(whole)", x, None, "a DeviceEvent")
        return None
    kind = c.text("event", x, "kind", file, required=True)
    # An event without a time cannot explain a gap or be placed on the time line: the whole
    # event is dropped (its `malformed` finding names the file and the value), never kept timeless.
    when = c.time("event", x, "time", file, required=True)
    detail = c.text("event", x, "detail", file)
    if kind is None or when is None:
        return None
    return DeviceEvent(when, kind, detail or "", file if _is_path(file) else None)


def _check_check(c: _Checker, x: Any) -> DeviceCheck | None:
    """A pre-use check as the contract allows it: a time, and each reading within its range (one that is not is
    dropped alone, with its finding; the check keeps what it did say)."""
    file = getattr(x, "file", None)
    if not isinstance(x, DeviceCheck):
        c.bad("check", "(whole)", x, None, "a DeviceCheck")
        return None
    when = c.time("check", x, "time", file, required=True)
    if when is None:
        return None
    offset = c.time("check", x, "clock_offset", file)
    battery = x.battery_percent
    if battery is not None and not (isinstance(battery, int) and not isinstance(battery, bool) and 0 <= battery <= 100):
        c.bad("check", "battery_percent", battery, file, "a whole percent 0 to 100")
        battery = None
    free = x.free_bytes
    if free is not None and not (isinstance(free, int) and not isinstance(free, bool) and 0 <= free < 2**63):
        c.bad("check", "free_bytes", free, file, "a byte count")
        free = None
    faults: tuple[str, ...] = ()
    if isinstance(x.faults, tuple | list) and all(_is_text(f) and f for f in x.faults):
        faults = tuple(x.faults)
    else:
        c.bad("check", "faults", x.faults, file, "a tuple of non-empty texts")
    return DeviceCheck(when, offset, battery, free, faults, file if _is_path(file) else None)


def _check_finding(c: _Checker, x: Any) -> Finding | None:
    if not isinstance(x, Finding):
        c.bad("finding", "(whole)", x, None, "a Finding")
        return None
    path = x.path if x.path is None or _is_path(x.path) else None
    if path is None and x.path is not None:
        c.bad("finding", "path", x.path, None, "a path")
    kind = c.text("finding", x, "kind", path, required=True)
    if kind is None:
        return None
    evidence = x.evidence if isinstance(x.evidence, dict) and _json_ok(x.evidence) else {}
    if evidence is not x.evidence:
        c.bad("finding", "evidence", x.evidence, path, "a JSON object")
    # A message is the driver's prose and may quote a file name: escaped, never dropped.
    message = _escaped_text(x.message) if isinstance(x.message, str) else c.text("finding", x, "message", path) or ""
    device = c.text("finding", x, "device", path)
    start, end = c.time("finding", x, "start", path), c.time("finding", x, "end", path)
    if (
        type(x) is Finding
        and kind is x.kind
        and device is x.device
        and path is x.path
        and start is x.start
        and end is x.end
        and evidence is x.evidence
        and type(x.message) is str
        and message == x.message
    ):
        return x  # the usual case: kept as the driver made it (frozen), no copy of 10^5 findings
    return Finding(kind, message, device, path, start, end, evidence)
