"""The typed records the library hands agency tools: what the query API (:meth:`custodes.archive.Archive.segments`,
``findings``, ``events``, ``devices``) yields and what an ingest lists (:class:`IngestedSegment`).

Every record is a frozen dataclass: read its fields, never change them (build a new one with
:func:`dataclasses.replace` when you must). Units, everywhere: times are int nanoseconds since the Unix epoch,
UTC (None: not known); sizes are bytes; digests are lower-case hex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Device", "DeviceEvent", "IngestedSegment", "RecordedFinding", "Segment"]


@dataclass(frozen=True, slots=True)
class Segment:
    """One recorded file as the catalog holds it.

    ``start``/``end``: when it was recorded, ns UTC, corrected by the device's dock clock readings where a
    correction is known (else as the device said); ``device_start``/``device_end``: as the device's own clock
    said. ``kind``: ``video``, ``audio``, ``photo`` or ``file`` (not a recording a driver knew).
    ``start_source``: where the driver took the start from (e.g. ``container``, ``name``), None when unknown.
    ``officer``: the officer the recording was attributed to when it was ingested (None: none named);
    ``responsible``: the officer its device was assigned to at its time in the registry (custodes.devices; None:
    nobody), who answers for it (Art. 9).
    ``ledger_index``: the index of its ingest entry in the ledger (``custodes ledger proof --entry``).
    ``purged``: when its bytes were purged (ns UTC), None while kept."""

    id: int
    device: str
    name: str
    kind: str
    sha256: str
    size: int
    start: int | None
    end: int | None
    device_start: int | None
    device_end: int | None
    start_source: str | None
    sequence: int | None
    important: bool
    recording: str | None
    chapter: int | None
    officer: str | None
    ingest: int
    ingested: int
    ledger_index: int
    purged: int | None
    responsible: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedFinding:
    """A finding as the archive holds it: one an ingest recorded (``id`` its catalog id, ``ingest`` the
    ingest), a ``gap_unexplained`` of a task's coverage (``id`` and ``ingest`` None, ``task`` the task), or one
    the device registry gives a recording (custodes.devices: ``id``, ``ingest`` and ``task`` None).

    ``kind``, ``severity`` (``error`` or ``warning``), ``article`` and ``message`` are those of
    :class:`custodes.findings.Finding`; ``start``/``end`` ns UTC (None: not a span); ``segment``: the
    recording it concerns (None: a device or a volume); ``evidence``: the numbers behind it."""

    id: int | None
    kind: str
    severity: str
    article: int | None
    message: str
    device: str | None
    path: str | None
    start: int | None
    end: int | None
    segment: int | None
    ingest: int | None
    task: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One entry of a device's own log (``battery_low``, ``storage_full``, ``device_fault`` ...), read by its
    driver: ``time`` ns UTC, ``detail`` the device's own words, ``ingest`` the ingest that first read it."""

    id: int
    device: str
    time: int
    kind: str
    detail: str
    ingest: int | None


@dataclass(frozen=True, slots=True)
class Device:
    """A device as its volumes described it (the latest statement of each field kept): ``officer`` is the
    officer it is issued to now, not necessarily the one of each recording (see :attr:`Segment.officer`);
    ``updated`` ns UTC of the last ingest that described it."""

    id: str
    kind: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    officer: str | None
    officer_name: str | None
    unit: str | None
    unit_name: str | None
    updated: int | None


@dataclass(frozen=True, slots=True)
class IngestedSegment:
    """A file of an ingested volume that the archive holds: its ``segment`` id, its ``name`` on the volume (as
    the catalog keeps it), its ``sha256`` and whether this ingest ``stored`` it (False: already present)."""

    segment: int
    name: str
    sha256: str
    stored: bool

    def to_json(self) -> dict[str, Any]:
        return {"segment": self.segment, "name": self.name, "sha256": self.sha256, "stored": self.stored}
