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
from dataclasses import replace
from pathlib import Path

from custodes import timeline
from custodes.defaults import clock_is_set
from custodes.drivers import (
    CLOSE_CONFIDENCE,
    Driver,
    DriverChoice,
    VolumeReading,
    VolumeSegment,
    check_options,
    check_reading,
    identity_from,
    one_scan_per_volume,
    shared_findings,
)
from custodes.errors import CustodesError
from custodes.findings import Finding, shown_name
from custodes.plugins import BLOCK_ENV, DeviceDriver, PluginManager, plugin_manager

__all__ = [
    "DriverPluginError",
    "DriverReadError",
    "NoDriverError",
    "choose_driver",
    "cycles_collected_after",
    "raised_at",
    "SURE_ENOUGH",
    "rank_drivers",
    "read_paths",
    "read_volume",
    "timeline_findings",
]


class NoDriverError(CustodesError, LookupError):
    """No driver recognises the volume."""

    kind = "no_driver"


class DriverReadError(CustodesError):
    """The driver raised reading the volume (ingest refuses: the files would be filed without their device)."""

    kind = "driver_read"


class DriverPluginError(CustodesError):
    """A plugin failed to load, so the driver that knows a volume may be missing: no driver is chosen
    for the volume (``--driver`` names one instead)."""

    kind = "driver_plugin"


def made_driver(record: DeviceDriver) -> Driver:
    """The driver a plugin's record makes, refused when it calls itself by another name than the one it is
    registered under: its readings, named by the registration (``--driver``), would say one driver and its own
    findings and logs another (session 13's note: a driver registered as one name filed under another)."""
    driver: Driver = record.factory()
    own = getattr(driver, "name", "")
    if own and own != record.name:
        raise DriverPluginError(
            f"driver {record.name} makes a driver that calls itself {own!r}: register it as {own!r}, or name it "
            f"{record.name!r} (Driver.name is the name it is registered under)"
        )
    return driver


def _refuse_broken_plugins(pm: PluginManager) -> None:
    """A driver plugin that failed to load might be the one that knows the volume: choosing among the
    others would file its footage under the wrong driver in silence."""
    broken = pm.driver_problems
    if broken:
        named = "; ".join(f"plugin {p.plugin}: {p.message}" for p in broken)
        raise DriverPluginError(
            f"{named}; no driver is chosen while a plugin is broken: fix or uninstall it, "
            f"block it with {BLOCK_ENV}={broken[0].plugin}, or name the driver with --driver"
        )


#: A driver at least this confident is chosen even while another's ``recognise`` raised (it knows the volume
#: by its own files); below it, the failed driver might be the volume's, and nothing is chosen.
SURE_ENOUGH = 0.5


def rank_drivers(volume: Path, manager: PluginManager | None = None) -> tuple[Driver, DriverChoice]:
    """The driver most confident it knows ``volume`` (ties: by name), with how it was chosen: the
    runner-up when close (:data:`custodes.drivers.CLOSE_CONFIDENCE`), and the drivers whose
    ``recognise`` raised (each counts as 0, and is named with its error)."""
    pm = manager or plugin_manager()
    _refuse_broken_plugins(pm)
    scored: list[tuple[float, str, Driver]] = []
    failed: list[tuple[str, str]] = []
    for record in pm.drivers:  # by name
        try:
            driver = made_driver(record)
            confidence = float(driver.recognise(volume))
        except Exception as e:  # noqa: BLE001 - third-party code reading a hostile volume
            failed.append((record.name, f"{type(e).__name__}: {e}"[:300]))
            continue
        if math.isfinite(confidence) and confidence > 0:
            scored.append((confidence, record.name, driver))
    if not scored:
        raise NoDriverError(
            f"{shown_name(os.fspath(volume))}: no driver recognises this volume "
            f"(drivers: {', '.join(pm.drivers.names())})"
            + "".join(f"; {d}: recognise failed ({e})" for d, e in failed)
            + "; name one with --driver (generic takes every file of any volume)"
        )
    scored.sort(key=lambda x: -x[0])  # stable: equal confidences stay in name order
    (confidence, name, driver), rest = scored[0], scored[1:]
    if failed and confidence < SURE_ENOUGH:
        # The driver that failed may be the one that knows the volume: a catch-all (generic, 0.1) taking it
        # would file the footage under the folder's name, its identity and log files as unknown files.
        raise DriverPluginError(
            "; ".join(f"driver {d}: recognise failed ({e})" for d, e in failed)
            + f"; the best of the others is {name} with confidence {confidence:.2f}, too unsure to choose while "
            "a driver that may know the volume is broken: fix that driver, or name one with --driver"
        )
    close = rest[0] if rest and confidence - rest[0][0] <= CLOSE_CONFIDENCE + 1e-9 else None
    return driver, DriverChoice(
        name, confidence, close[1] if close else None, close[0] if close else None, tuple(failed)
    )


def choose_driver(volume: Path, name: str | None = None, manager: PluginManager | None = None) -> tuple[Driver, float]:
    """The named driver (its confidence not asked: 0.0), or the one most confident it knows ``volume``
    (ties: by name) with its confidence."""
    driver, choice = _chosen(volume, name, manager)
    return driver, choice.confidence if choice.confidence is not None else 0.0


def _chosen(volume: Path, name: str | None, manager: PluginManager | None) -> tuple[Driver, DriverChoice]:
    if name is None:
        return rank_drivers(volume, manager)
    record = (manager or plugin_manager()).drivers.get(name)
    try:
        driver = made_driver(record)
    except CustodesError:
        raise
    except Exception as e:  # noqa: BLE001 - third-party code
        raise DriverPluginError(f"driver {name} could not be made ({type(e).__name__}: {e})") from None
    return driver, DriverChoice(name)


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
    *,
    strict: bool = False,
) -> VolumeReading:
    """Read a device volume (a folder) with the best or the named driver.

    What the driver returns is checked against the driver contract
    (:func:`custodes.drivers.check_reading`). A driver that fails on what it
    found (any error but a :class:`CustodesError`, which says what the user
    must change) gives a reading without its metadata and a `malformed`
    finding: the files are still there to look at, and the failure is named. ``strict`` (ingest): such a
    failure is a :class:`DriverReadError` instead, and nothing is stored."""
    path = Path(volume)
    if not path.is_dir():
        if not os.path.lexists(path):  # (a hostile review: a card taken out mid-ingest was "not a folder")
            raise NoDriverError(f"{volume}: no such folder (a card taken out, or unmounted?); nothing was read")
        raise NoDriverError(f"{volume}: not a folder; a device volume is the folder the device's files are in")
    opts = dict(options or {})
    # The drivers' recognise() and the read walk the volume once between them.
    with cycles_collected_after(), one_scan_per_volume():
        chosen, choice = _chosen(path, driver, manager)
        name = choice.driver  # as registered (made_driver: the driver's own name, where it gives one)
        check_options(chosen, name, opts)
        try:
            reading = chosen.read(path, opts)
        except CustodesError:
            raise
        except Exception as e:  # noqa: BLE001 - third-party code reading a hostile volume
            identity = identity_from(path, opts)
            where = raised_at(e)
            if strict:
                # Stored without the driver, the files would be filed under the folder's name as a device: the
                # same footage counted twice once the driver is fixed. The volume is untouched: nothing is lost.
                raise DriverReadError(
                    f"{volume}: driver {name} failed reading the volume ({type(e).__name__}: {e}"
                    f"{f', at {where}' if where else ''}); nothing was stored: fix the driver, or store the files "
                    "without its metadata with --driver generic -o device_id=ID"
                ) from None
            return VolumeReading(
                name,
                os.fspath(path),
                identity,
                findings=[
                    Finding(
                        "malformed",
                        f"driver {name} failed reading the volume ({type(e).__name__}: {e}"
                        f"{f', at {where}' if where else ''}); its files are kept without the driver's metadata",
                        identity.device_id,
                        os.fspath(path),
                        evidence={"driver": name, "error": type(e).__name__, "at": where},
                    )
                ],
                choice=choice,
            )
        if strict and not isinstance(reading, VolumeReading):
            # As a driver that raised: what it returned says nothing of the device, and the files stored without
            # it would be filed under the folder's name as one (a hostile review: `None` did so).
            raise DriverReadError(
                f"{volume}: driver {name} returned {type(reading).__name__}, not a VolumeReading; nothing was stored: "
                "fix the driver, or store the files without its metadata with --driver generic -o device_id=ID"
            )
        checked = check_reading(reading, name, path, opts)
        checked.findings += shared_findings(checked, opts)  # every driver's reading, once (custodes.drivers)
        # A driver's finding that names no device is about this volume's device (a query by device finds it).
        device = checked.identity.device_id
        checked.findings = [f if f.device is not None else replace(f, device=device) for f in checked.findings]
        checked.choice = choice
        return checked


def raised_at(e: BaseException) -> str | None:
    """Where in the driver's code ``e`` was raised (file:line of the innermost frame), for its vendor; None
    for an exception without a traceback."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return None if tb is None else f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


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
        r.non_recordings = [n for n in r.non_recordings if os.path.abspath(os.path.join(folder, n.name)) in wanted]
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
