"""The ``generic`` driver: any folder of MP4/MOV/WAV/JPG files.

Identity comes from options (``device_id``, ``kind``, ``vendor``, ``model``,
``serial``, ``officer_id``, ``unit_id``) or the folder's name; times come from
the containers; a ``YYYYMMDDhhmmss`` in a name is checked against the
container by the check every driver gets (custodes.drivers.shared_findings). Files that are not
recordings are reported as ``unknown_file``. It recognises any folder with a
recording in it, with the lowest confidence, so a vendor driver always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from custodes.drivers import Driver, VolumeReading, identity_from, media_segments, scan_volume
from custodes.findings import Finding
from custodes.hookspecs import hookimpl
from custodes.media import MEDIA_EXTENSIONS
from custodes.plugins import DeviceDriver

RECORDING_EXTENSIONS = MEDIA_EXTENSIONS | {".wav", ".jpg", ".jpeg"}


class GenericDriver(Driver):
    name = "generic"

    def recognise(self, volume: Path) -> float:
        files, _, _ = scan_volume(volume)
        return 0.1 if any(os.path.splitext(f.name)[1].lower() in RECORDING_EXTENSIONS for f in files) else 0.0

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        identity = identity_from(volume, options)
        files, findings, skipped = scan_volume(volume)
        segments, probe_findings, rest = media_segments(files, identity.device_id)
        findings = [
            Finding(f.kind, f.message, identity.device_id, f.path, f.start, f.end, f.evidence) for f in findings
        ]
        findings += probe_findings
        findings += [
            Finding("unknown_file", "not a recording this driver knows; kept as it is", identity.device_id, f.path)
            for f in rest
        ]
        return VolumeReading(self.name, os.fspath(volume), identity, segments, findings=findings, skipped=skipped)


@hookimpl
def custodes_device_drivers() -> list[DeviceDriver]:
    return [
        DeviceDriver("generic", "any folder of MP4/MOV/WAV/JPG recordings; times from the containers", GenericDriver)
    ]
