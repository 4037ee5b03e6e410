"""Reading device volumes through the driver plugins.

:func:`read_volume` picks the driver that recognises a volume with the
highest confidence (or the one named), reads it, and :func:`timeline_findings`
runs the timeline engine over the segments of any number of volumes.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from custodes import timeline
from custodes.defaults import clock_is_set
from custodes.drivers import (
    Driver,
    VolumeReading,
    VolumeSegment,
    check_reading,
    identity_from,
    one_scan_per_volume,
    shared_findings,
)
from custodes.errors import CustodesError
from custodes.findings import Finding
from custodes.plugins import PluginManager, plugin_manager

__all__ = ["NoDriverError", "choose_driver", "cycles_collected_after", "read_paths", "read_volume", "timeline_findings"]


class NoDriverError(CustodesError, LookupError):
    """No driver recognises the volume."""

    kind = "no_driver"


def choose_driver(volume: Path, name: str | None = None, manager: PluginManager | None = None) -> tuple[Driver, float]:
    """The named driver, or the one most confident it knows ``volume`` (ties: by name)."""
    pm = manager or plugin_manager()
    if name is not None:
        driver = pm.drivers.get(name).factory()
        return driver, driver.recognise(volume)
    scored = sorted(((d.factory(), d.name) for d in pm.drivers), key=lambda x: x[1])
    best: tuple[Driver, float] | None = None
    for driver, _ in scored:
        confidence = _confidence(driver, volume)
        if confidence > 0 and (best is None or confidence > best[1]):
            best = (driver, confidence)
    if best is None:
        raise NoDriverError(f"{volume}: no driver recognises this volume (drivers: {', '.join(pm.drivers.names())})")
    return best


def _confidence(driver: Driver, volume: Path) -> float:
    """A driver's recognise(); one that fails on what is on the volume does not know the volume."""
    try:
        confidence = float(driver.recognise(volume))
    except Exception:  # noqa: BLE001 - third-party code reading a hostile volume
        return 0.0
    return confidence if math.isfinite(confidence) else 0.0


@contextmanager
def cycles_collected_after() -> Iterator[None]:
    """The cyclic garbage collector paused while a volume is read (or its reading written out),
    and resumed after.

    A reading is some objects per file (files, segments, findings, container facts), none of them
    garbage until the reading is; each full collection walks every one of them, which cost a third
    of the reading of 10^5 files (benches/compare_volume.py). Nothing is leaked: cycles made
    meanwhile (an exception's traceback) are collected once it is resumed."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def read_volume(
    volume: str | os.PathLike[str],
    driver: str | None = None,
    options: Mapping[str, str] | None = None,
    manager: PluginManager | None = None,
) -> VolumeReading:
    """Read a device volume (a folder) with the best or the named driver.

    What the driver returns is checked against the driver contract
    (:func:`custodes.drivers.check_reading`). A driver that fails on what it
    found (any error but a :class:`CustodesError`, which says what the user
    must change) gives a reading without its metadata and a `malformed`
    finding: the files are still there to ingest, and the failure is named."""
    path = Path(volume)
    if not path.is_dir():
        raise NoDriverError(f"{volume}: not a folder; a device volume is the folder the device's files are in")
    opts = dict(options or {})
    # The drivers' recognise() and the read walk the volume once between them.
    with cycles_collected_after(), one_scan_per_volume():
        chosen, _ = choose_driver(path, driver, manager)
        name = getattr(chosen, "name", "") or type(chosen).__name__
        try:
            reading = chosen.read(path, opts)
        except CustodesError:
            raise
        except Exception as e:  # noqa: BLE001 - third-party code reading a hostile volume
            identity = identity_from(path, opts)
            return VolumeReading(
                name,
                os.fspath(path),
                identity,
                findings=[
                    Finding(
                        "malformed",
                        f"driver {name} failed reading the volume ({type(e).__name__}: {e}); its files are "
                        "kept without the driver's metadata",
                        identity.device_id,
                        os.fspath(path),
                        evidence={"driver": name, "error": type(e).__name__},
                    )
                ],
            )
        checked = check_reading(reading, name, path, opts)
        checked.findings += shared_findings(checked, opts)  # every driver's reading, once (custodes.drivers)
        return checked


def read_paths(
    paths: Sequence[str],
    driver: str | None = None,
    options: Mapping[str, str] | None = None,
    manager: PluginManager | None = None,
) -> list[VolumeReading]:
    """Read folders as volumes, and files through the volume (their folder) they sit in.

    Files given one by one keep only their own segments and findings; the
    driver still reads the folder, so vendor naming and sidecars apply."""
    readings: list[VolumeReading] = []
    files_by_folder: dict[str, set[str]] = {}
    for p in paths:
        if os.path.isdir(p):
            readings.append(read_volume(p, driver, options, manager))
        elif os.path.lexists(p):
            files_by_folder.setdefault(os.path.dirname(os.path.abspath(p)), set()).add(os.path.abspath(p))
        else:
            raise NoDriverError(f"{p}: no such file or folder")
    for folder, wanted in files_by_folder.items():
        r = read_volume(folder, driver, options, manager)
        r.segments = [s for s in r.segments if os.path.abspath(s.path) in wanted]
        r.findings = [f for f in r.findings if f.path is not None and os.path.abspath(f.path) in wanted]
        readings.append(r)
    return readings


def timeline_findings(
    readings: Sequence[VolumeReading], *, gap_tolerance: int = timeline.DEFAULT_GAP_TOLERANCE
) -> list[Finding]:
    """Gaps, overlaps and sequence breaks over the segments of the volumes,
    one device per identity. Photos count for file numbering, not for time
    covered; a segment without a trustworthy time counts only for numbering."""

    def placed(s: VolumeSegment) -> bool:
        return s.kind != "photo" and clock_is_set(s.start)

    segments = [
        timeline.Segment(
            r.identity.device_id, s.path, s.start if placed(s) else None, s.end if placed(s) else None, s.sequence
        )
        for r in readings
        for s in r.segments
    ]
    return timeline.segment_findings(segments, gap_tolerance=gap_tolerance)
