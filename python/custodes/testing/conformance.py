"""The driver contract's conformance suite: what a vendor runs in its own CI on its own sample volume.

Three ways in, one set of checks (:data:`CHECKS`):

- :func:`check_driver` ``(driver, volume, options) -> list[Problem]``: every problem found, each naming its
  check, the file and what to change; ``[]`` when the driver keeps the contract.
- :func:`conformance_tests` ``(driver, volume, options)``: a pytest test, one case per check, to assign to a
  name in a test module (``test_acme = conformance_tests("acme", SAMPLE)``).
- ``python -m custodes.testing.conformance --driver NAME [-o KEY=VALUE]... VOLUME``: the problems, one per
  line; exit 0 (none), 1 (problems), 2 (no such driver or volume).

``driver`` is a registered driver's name (as ``--driver`` takes it: the plugin must be installed), a
:class:`~custodes.drivers.Driver` subclass, or an instance. The sample volume is never written to: the
hostile-file check works on a copy. What is checked (see docs/writing-a-driver.md):

``options_declared``
    ``accepted_options`` maps each key to a one-line meaning, and the driver reads no option it does not
    declare (beyond :data:`custodes.drivers.COMMON_OPTIONS`).
``recognise``
    ``recognise`` returns a number from 0 to 1, above 0 on the driver's own sample volume, without raising.
``no_writes``
    Names, modes, sizes, modification times and SHA-256 of everything on the volume are the same after
    ``recognise`` and ``read``.
``contract``
    ``read`` returns a :class:`~custodes.drivers.VolumeReading` named for the driver whose every record
    passes :func:`custodes.drivers.check_reading` (a field of the wrong type or shape is a problem here).
``identity``
    The reading carries a :class:`~custodes.drivers.DeviceIdentity` with a device id and a kind.
``times``
    Every time (segment start and end, event, clock reading) is integer nanoseconds UTC between 1990 and
    tomorrow (seconds or milliseconds fall in 1970), an end is not before its start, and a time the driver
    read from a name or sidecar is not a whole time-zone offset away from the container's UTC time (a local
    time left unconverted). A file a finding names may be out of range: the driver said so.
``accounted``
    Every file on the volume is a segment, a segment's sidecar, a non-recording, skipped noise, or named by
    a finding; every link, FIFO or unreadable entry the scan found is named by a finding; no segment or
    non-recording names a file that is not on the volume, or lies outside it.
``findings``
    Every finding has a snake_case kind, a one-line message, a path (if any) inside the volume, and a start
    not after its end.
``hostile``
    On a copy of the volume with a FIFO, a symbolic link to a file outside the volume, a truncated MP4 and a
    file whose name is not UTF-8 added beside its recordings: ``recognise`` and ``read`` return (no
    exception, no hang on the FIFO), write nothing, read nothing outside, and account for every file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custodes.defaults import NS
from custodes.drivers import (
    Driver,
    DriverOptionError,
    VolumeReading,
    check_options,
    check_reading,
    known_options,
    scan_volume,
)
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339, shown_name
from custodes.media import MEDIA_EXTENSIONS
from custodes.volumes import raised_at

__all__ = ["CHECKS", "Problem", "check_driver", "conformance_tests", "main"]

#: The checks, in the order they run.
CHECKS = (
    "options_declared",
    "recognise",
    "no_writes",
    "contract",
    "identity",
    "times",
    "accounted",
    "findings",
    "hostile",
)
_EARLIEST = 631_152_000 * NS  # 1990-01-01T00:00:00Z: no digital evidence recorder is older
_QUARTER_HOUR = 900 * NS
_KIND = re.compile(r"[a-z][a-z0-9_]*")
#: How long a read of the hostile copy may take before it counts as hung (on the FIFO, most likely).
HOSTILE_SECONDS = 120.0


@dataclass(frozen=True)
class Problem:
    """One way a driver breaks the contract: the check (one of :data:`CHECKS`) and what is wrong."""

    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


def check_driver(
    driver: str | type[Driver] | Driver,
    volume: str | os.PathLike[str],
    options: Mapping[str, str] | None = None,
    *,
    hostile: bool = True,
) -> list[Problem]:
    """Every way ``driver`` breaks the contract on its sample ``volume`` read with ``options`` ([] if none)."""
    drv, name = _driver(driver)
    vol = Path(volume)
    if not vol.is_dir():
        raise CustodesError(f"{volume}: not a folder; the sample volume is the folder the device's files are in")
    opts = dict(options or {})
    problems: list[Problem] = []
    try:
        check_options(drv, name, opts)
    except DriverOptionError as e:
        problems.append(Problem("options_declared", f"the options given to the suite: {e}"))
    problems += _declared(drv)
    before = _tree(vol)
    confidence = _recognise(drv, vol, problems, "recognise")
    if confidence is not None and confidence <= 0:
        problems.append(Problem("recognise", f"{confidence} on its own sample volume {vol}: it must know it (> 0)"))
    seen = _SeenOptions(opts)
    raw = _read(drv, vol, seen, problems, "contract")
    problems += _changes(before, _tree(vol), "no_writes")
    undeclared = sorted(k for k in seen.asked if k not in known_options(drv))
    if undeclared:
        problems.append(
            Problem(
                "options_declared",
                f"read reads option(s) {', '.join(map(repr, undeclared))} not declared in accepted_options",
            )
        )
    if raw is not None:
        reading = _contract(raw, name, vol, opts, problems)
        problems += _identity(raw, reading)
        problems += _times(reading)
        problems += _accounted(vol, reading, "accounted")
        problems += _findings(vol, raw, "findings")
    if hostile:
        problems += _hostile(drv, name, vol, opts)
    return problems


def conformance_tests(
    driver: str | type[Driver] | Driver,
    volume: str | os.PathLike[str] | Callable[[], str | os.PathLike[str]],
    options: Mapping[str, str] | None = None,
    *,
    hostile: bool = True,
) -> Callable[[str], None]:
    """A pytest test, parametrised over :data:`CHECKS`: assign it to a name in a test module.

    ``volume`` may be a function giving the volume (made on first use, e.g. from footage the tests make)."""
    import pytest  # only here: the package itself does not need pytest

    found: list[list[Problem]] = []

    def problems() -> list[Problem]:
        if not found:
            where = volume() if callable(volume) else volume
            found.append(check_driver(driver, where, options, hostile=hostile))
        return found[0]

    @pytest.mark.parametrize("check", CHECKS)
    def test_driver_conformance(check: str) -> None:
        mine = [str(p) for p in problems() if p.check == check]
        assert not mine, "\n".join(mine)

    return test_driver_conformance


def _driver(driver: str | type[Driver] | Driver) -> tuple[Driver, str]:
    if isinstance(driver, str):
        from custodes.plugins import UnknownPluginError, plugin_manager

        pm = plugin_manager()
        try:
            record = pm.drivers.get(driver)
        except UnknownPluginError as e:
            # The vendor's own plugin failing to import is the likeliest reason: say why, as `custodes plugins` does
            broken = "".join(f"; plugin {p.plugin}: {p.message}" for p in pm.driver_problems)
            raise UnknownPluginError(f"{e}{broken}") from None
        from custodes.volumes import made_driver

        return made_driver(record), driver  # refused when it calls itself by another name than it is registered as
    elif isinstance(driver, type):
        made = driver()
    else:
        made = driver
    return made, getattr(made, "name", "") or type(made).__name__


class _SeenOptions(Mapping[str, str]):
    """The options, noting every key the driver asks about (``in``, ``[]``, ``get``)."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _declared(drv: Driver) -> list[Problem]:
    own = getattr(drv, "accepted_options", {})
    if not isinstance(own, Mapping):
        return [Problem("options_declared", f"accepted_options is {type(own).__name__}, not a mapping")]
    return [
        Problem("options_declared", f"accepted_options[{key!r}] must map a key to a one-line meaning, not {text!r}")
        for key, text in own.items()
        if not (isinstance(key, str) and key and isinstance(text, str) and text.strip() and "\n" not in text)
    ]


def _raised(e: BaseException) -> str:
    """The exception and where in the driver it was raised."""
    where = raised_at(e)
    return f"{type(e).__name__}: {e}{f' at {where}' if where else ''}"


def _recognise(drv: Driver, vol: Path, problems: list[Problem], check: str) -> float | None:
    try:
        value = drv.recognise(vol)
    except Exception as e:  # noqa: BLE001 - what is being tested
        problems.append(Problem(check, f"recognise raised {_raised(e)} on {vol}"))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        problems.append(Problem(check, f"recognise returned {value!r} on {vol}, not a number from 0 to 1"))
        return None
    return float(value)


def _read(drv: Driver, vol: Path, options: Mapping[str, str], problems: list[Problem], check: str) -> Any:
    try:
        return drv.read(vol, options)
    except Exception as e:  # noqa: BLE001 - what is being tested
        problems.append(Problem(check, f"read raised {_raised(e)} on {vol}"))
        return None


def _tree(root: Path) -> dict[bytes, tuple[int, int, int, str]]:
    """Every entry under ``root`` (the root too), by name: mode, size, mtime and SHA-256 of a regular file."""
    out: dict[bytes, tuple[int, int, int, str]] = {}
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        for name in [b"", *dirs, *files] if folder == base else [*dirs, *files]:
            path = os.path.join(folder, name) if name else folder
            try:
                st = os.lstat(path)
            except OSError:
                continue
            digest = ""
            if stat.S_ISREG(st.st_mode):
                try:
                    with open(path, "rb") as f:
                        digest = hashlib.file_digest(f, "sha256").hexdigest()
                except OSError as e:
                    digest = f"unreadable: {e.strerror}"
            out[os.path.relpath(path, base)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def _changes(before: Mapping[bytes, Any], after: Mapping[bytes, Any], check: str) -> list[Problem]:
    def shown(names: set[bytes]) -> str:
        return ", ".join("(the volume folder)" if n == b"." else shown_name(os.fsdecode(n)) for n in sorted(names)[:10])

    out = []
    if added := set(after) - set(before):
        out.append(Problem(check, f"the driver added {len(added)} entr(ies) to the volume: {shown(added)}"))
    if removed := set(before) - set(after):
        out.append(Problem(check, f"the driver removed {len(removed)} entr(ies) from the volume: {shown(removed)}"))
    if changed := {n for n in set(before) & set(after) if before[n] != after[n]}:
        out.append(
            Problem(
                check,
                f"the driver changed {len(changed)} entr(ies) on the volume (mode, size, mtime or content): "
                f"{shown(changed)}",
            )
        )
    return out


def _contract(raw: Any, name: str, vol: Path, opts: Mapping[str, str], problems: list[Problem]) -> VolumeReading:
    if isinstance(raw, VolumeReading) and raw.driver != name:
        problems.append(Problem("contract", f"the reading says driver {raw.driver!r}, not the driver's name {name!r}"))
    reading = check_reading(raw, name, vol, opts)
    for f in reading.findings:
        if f.kind == "malformed" and f.evidence.get("driver") == name and "record" in f.evidence:
            problems.append(Problem("contract", f.message))
    return reading


def _identity(raw: Any, reading: VolumeReading) -> list[Problem]:
    from custodes.drivers import DeviceIdentity

    if not isinstance(getattr(raw, "identity", None), DeviceIdentity):
        return [Problem("identity", "the reading has no DeviceIdentity (build it with custodes.drivers.identity_from)")]
    if not reading.identity.device_id or not reading.identity.kind:
        return [Problem("identity", "the identity has no device id or no kind")]
    return []


def _rel(vol: Path, path: str | None) -> str | None:
    """``path`` (as a driver gives it: the volume joined with a name) as the name relative to the volume."""
    return None if path is None else os.path.relpath(path, vol)


def _lexically_inside(vol: Path, path: str) -> bool:
    """``path`` names an entry of the volume (a link on it too, wherever it points)."""
    rel = os.path.relpath(path, vol)
    return rel == "." or not (rel == ".." or rel.startswith(".." + os.sep))


def _times(reading: VolumeReading) -> list[Problem]:
    vol = Path(reading.volume)
    latest = time.time_ns() + 86_400 * NS
    named = {_rel(vol, f.path) for f in reading.findings}
    out = []

    def check(what: str, file: str | None, t: int | None) -> None:
        if t is not None and not _EARLIEST <= t <= latest and file not in named:
            out.append(
                Problem(
                    "times",
                    f"{what} is {t} ({rfc3339(t)}): not nanoseconds UTC between 1990 and now "
                    "(seconds or milliseconds?), and no finding says the device clock was off",
                )
            )

    for s in reading.segments:
        shown = shown_name(s.name)
        check(f"{shown}: start", s.name, s.start)
        check(f"{shown}: end", s.name, s.end)
        if s.start is not None and s.end is not None and s.end < s.start:
            out.append(Problem("times", f"{shown}: end {rfc3339(s.end)} is before start {rfc3339(s.start)}"))
        if s.start is not None and s.container_time is not None and s.start_source in ("name", "sidecar"):
            off = s.start - s.container_time
            whole = round(off / _QUARTER_HOUR) * _QUARTER_HOUR
            if off and 30 * 60 * NS <= abs(off) <= 14 * 3600 * NS and abs(off - whole) <= 5 * NS:
                hours, minutes = divmod(abs(whole) // (60 * NS), 60)
                out.append(
                    Problem(
                        "times",
                        f"{shown}: start {rfc3339(s.start)} (from the {s.start_source}) is "
                        f"{'+' if off > 0 else '-'}{hours:02d}:{minutes:02d} from the container's UTC time "
                        f"{rfc3339(s.container_time)}: a local time not converted to UTC? (read it in the "
                        "device's zone, option tz)",
                    )
                )
    for e in reading.events:
        check(f"event {e.kind}", _rel(vol, e.file), e.time)
    for c in reading.clock_readings:
        check(f"clock reading ({c.source}): trusted time", _rel(vol, c.file), c.trusted_time)
    return out


def _inside(vol: Path, path: str) -> bool:
    real = os.path.realpath(os.path.join(vol, path))
    root = os.path.realpath(vol)
    return real == root or real.startswith(root + os.sep)


def _accounted(vol: Path, reading: VolumeReading, check: str) -> list[Problem]:
    files, scan_findings, _ = scan_volume(vol)
    on_volume = {f.name for f in files}
    named = {_rel(vol, f.path) for f in reading.findings if f.path is not None}
    kept = {s.name for s in reading.segments}
    kept |= {x for s in reading.segments for x in s.sidecars}
    kept |= {n.name for n in reading.non_recordings}
    kept |= set(reading.skipped)
    out = []
    forgotten = sorted(on_volume - kept - named, key=os.fsencode)
    if forgotten:
        out.append(
            Problem(
                check,
                f"{len(forgotten)} file(s) neither a segment, a sidecar, a non-recording, skipped noise nor named "
                f"by a finding: {', '.join(map(shown_name, forgotten[:10]))} (list them in non_recordings, or "
                "report them as unknown_file)",
            )
        )
    dropped = sorted({_rel(vol, f.path) or "" for f in scan_findings if f.path is not None} - named, key=os.fsencode)
    if dropped:
        out.append(
            Problem(
                check,
                f"the scan's findings about {', '.join(map(shown_name, dropped[:10]))} (links, FIFOs, unreadable "
                "entries) are not in the reading: pass scan_volume's findings on",
            )
        )
    listed = (
        [("segment", s.name) for s in reading.segments]
        + [("sidecar", x) for s in reading.segments for x in s.sidecars]
        + [("non-recording", n.name) for n in reading.non_recordings]
    )
    for what, n in listed:
        if n not in on_volume:
            where = "outside the volume" if not _inside(vol, n) else "not a file on the volume"
            out.append(Problem(check, f"{what} {shown_name(n)} is {where}"))
    for s in reading.segments:
        if not _inside(vol, s.path):
            out.append(Problem(check, f"segment {shown_name(s.name)} is read from {s.path}, outside the volume"))
    return out


def _findings(vol: Path, raw: Any, check: str) -> list[Problem]:
    out = []
    for f in getattr(raw, "findings", None) or []:
        if not isinstance(f, Finding):
            continue  # the contract check names it
        what = f"finding {f.kind!r} ({shown_name(f.path) if isinstance(f.path, str) else 'no file'})"
        if not isinstance(f.kind, str) or not _KIND.fullmatch(f.kind):
            out.append(Problem(check, f"{what}: the kind must be snake_case text"))
        if not isinstance(f.message, str) or not f.message.strip() or "\n" in f.message:
            out.append(Problem(check, f"{what}: the message must be one non-empty line"))
        if isinstance(f.path, str) and not _lexically_inside(vol, f.path):
            out.append(Problem(check, f"{what}: the path must be the volume's path joined with a name on it"))
        if isinstance(f.start, int) and isinstance(f.end, int) and f.end < f.start:
            out.append(Problem(check, f"{what}: end before start"))
    return out


#: What the hostile check adds beside the sample's recordings (names under the first recording's folder).
HOSTILE_FIFO = "conformance-pipe.mp4"
HOSTILE_LINK = "conformance-escape.mp4"
HOSTILE_CUT = "conformance-cut.mp4"
HOSTILE_ODD = b"conformance-\xff.mp4"


def _hostile(drv: Driver, name: str, vol: Path, opts: Mapping[str, str]) -> list[Problem]:
    with tempfile.TemporaryDirectory(prefix="custodes-conformance-") as tmp:
        copy = Path(tmp) / vol.name
        shutil.copytree(vol, copy, symlinks=True, ignore=_specials)
        outside = Path(tmp) / "outside-secret.mp4"
        scanned, _, _ = scan_volume(copy)  # never follows a link the sample may hold
        media = [Path(f.path) for f in scanned if os.path.splitext(f.name)[1].lower() in MEDIA_EXTENSIONS]
        folder = media[0].parent if media else copy
        if media:  # copies of the sample's first recording, whatever its size
            shutil.copyfile(media[0], outside)
        else:
            outside.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64))
        shutil.copyfile(outside, folder / HOSTILE_CUT)
        os.truncate(folder / HOSTILE_CUT, outside.stat().st_size * 6 // 10)  # power lost mid-write
        shutil.copyfile(outside, os.path.join(os.fsencode(folder), HOSTILE_ODD))
        (folder / HOSTILE_LINK).symlink_to(outside)
        fifo = folder / HOSTILE_FIFO
        os.mkfifo(fifo)
        added = f"with a FIFO, a link out of the volume, a truncated MP4 and a non-UTF-8 name in {folder}"
        before = _tree(copy)
        problems: list[Problem] = []
        done: list[Any] = []

        def run() -> None:
            _recognise(drv, copy, problems, "hostile")
            done.append(_read(drv, copy, _SeenOptions(opts), problems, "hostile"))

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(HOSTILE_SECONDS)
        if worker.is_alive():  # blocked opening the FIFO for reading: a writer that closes at once frees it
            problems.append(
                Problem("hostile", f"read did not return within {HOSTILE_SECONDS:.0f} s on a volume {added}")
            )
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            worker.join(10)
        problems = [Problem(p.check, f"{p.message} ({added})") if "raised" in p.message else p for p in problems]
        problems += _changes(before, _tree(copy), "hostile")
        raw = done[0] if done else None
        if raw is not None:
            reading = check_reading(raw, name, copy, opts)
            problems += [Problem("hostile", p.message) for p in _accounted(copy, reading, "hostile")]
            problems += [Problem("hostile", p.message) for p in _findings(copy, raw, "hostile")]
            if outside.exists() and any(os.path.realpath(s.path) == str(outside.resolve()) for s in reading.segments):
                problems.append(Problem("hostile", "a segment is the file the link points to, outside the volume"))
        return problems


def _specials(folder: str, names: list[str]) -> list[str]:
    """Entries of the sample that are neither files, folders nor links: not copied (a FIFO would block)."""
    out = []
    for n in names:
        try:
            mode = os.lstat(os.path.join(folder, n)).st_mode
        except OSError:
            out.append(n)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            out.append(n)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m custodes.testing.conformance --driver NAME [-o KEY=VALUE]... VOLUME``."""
    parser = argparse.ArgumentParser(
        prog="python -m custodes.testing.conformance", description="Check a driver against the driver contract."
    )
    parser.add_argument("volume", help="the driver's sample volume (never written to)")
    parser.add_argument("--driver", required=True, help="the registered driver's name")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="driver option")
    parser.add_argument("--no-hostile", action="store_true", help="skip the hostile-file check")
    args = parser.parse_args(argv)
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"custodes: {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        options[key] = value
    try:
        problems = check_driver(args.driver, args.volume, options, hostile=not args.no_hostile)
    except CustodesError as e:
        print(f"custodes: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    print(f"{args.driver}: {len(problems)} problem(s) in {len(CHECKS)} checks", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
