"""A deliberately broken Acme driver: what the conformance suite must catch (never registered as a plugin).

Each mistake is one a first driver often makes:

- it caches its work in a file on the volume (a write to evidence);
- it reads the names' local time as if it were UTC (times off by the device's zone);
- it forgets the event log (a file neither a segment, a non-recording nor a finding);
- it reads an option it never declared (``fast``);
- it encodes every file name as UTF-8 (raises on a name that is not).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from custodes.drivers import VolumeReading
from custodes_acme import EVENT_LOG, NAME, NS, AcmeDriver


class BrokenAcmeDriver(AcmeDriver):
    name = "acme-broken"

    def read(self, volume: Path, options: Mapping[str, str]) -> VolumeReading:
        if options.get("fast") != "yes":
            (volume / ".acme-cache").write_text("indexed\n")
        reading = super().read(volume, options)
        for f in os.listdir(volume / "DCIM") if (volume / "DCIM").is_dir() else []:
            f.encode("utf-8")  # a name that is not UTF-8 is a surrogate-escaped str: UnicodeEncodeError
        segments = []
        for s in reading.segments:
            m = NAME.match(os.path.basename(s.name))
            if m:  # the device's local time, taken for UTC
                utc = datetime.strptime(m["time"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
                s = replace(s, start=int(utc.timestamp()) * NS)
            segments.append(s)
        reading.segments = segments
        reading.non_recordings = [n for n in reading.non_recordings if n.name != EVENT_LOG]
        reading.driver = self.name
        return reading
