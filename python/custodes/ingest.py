"""Ingest: footage off a device volume into the archive, crash-safe.

Every file on the volume (recordings, sidecars, files no driver knows) is

1. copied into the store's ``tmp/`` while it is hashed (one read of the source),
2. made durable, then read back and hashed again (the copy must equal the source), where that copy becomes
   the stored object (``local``; a bucket reads back what it stored instead: ``spool_is_object``),
3. linked into the write-once store under its SHA-256 (never replacing),
4. recorded in the catalog and the ledger,

in groups of files (:class:`Groups`, bounded in files, bytes and seconds):
each step is done for the whole group at once (one sync of the store's file
system for the copies and one for the new names, one catalog commit for the
intents and one for the records), because a device volume is mostly small
files and a sync or a commit per file costs more than copying one. A crash
loses at most one group's unrecorded work, which the next run copies again.
Then the timeline findings and ``late_ingest`` are recorded, and a signed
checkpoint closes the ingest. A crash anywhere leaves the volume untouched and
the archive verifiable; running the ingest again finishes the work. A file
already in the archive (same device, name and content) is reported as
already present and not copied again.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from custodes import _core, preuse, retention, timeline
from custodes._durable import dead_temps, disk_full_line, drop_cached_pages, process_tag, sync_together
from custodes._faults import crashpoint, storage_op
from custodes._interrupts import stop_pool
from custodes.archive import Archive, ArchiveError, _claim_places, within
from custodes.catalog import Catalog, replay
from custodes.catalog.devices import DeviceIdentity, FindingRow
from custodes.catalog.evidence import DigestRange
from custodes.defaults import NS, clock_is_set
from custodes.drivers import (
    DriverChoice,
    VolumeFile,
    VolumeReading,
    VolumeSegment,
    name_bytes,
    name_text,
    one_scan_per_volume,
    scan_volume,
    zone_policy,
)
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339, shown_name
from custodes.hashing import clamp_workers, hash_files, max_workers
from custodes.records import IngestedSegment
from custodes.rights import as_checked
from custodes.service import request
from custodes.storage import Listed, ObjectStore, Put, StoredObject
from custodes.volumes import read_volume, timeline_findings

__all__ = ["GROUPS", "Groups", "IngestResult", "ingest"]


@dataclass
class IngestResult:
    """What one ingest did: the files stored, already present, failed or skipped (by name), the findings it
    recorded, the bytes copied, the checkpoint signed after it, and the segment of every file the archive holds
    (``segments``: :class:`custodes.records.IngestedSegment`, as ``ingest --json`` lists them)."""

    ingest_id: int
    volume: str
    driver: str
    device: str
    stored: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    #: Files an interrupted ingest of this volume stored and did not record, gone from the volume since: recorded
    #: by this run from what that ingest read (:func:`_recover`), for that ingest.
    recovered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    bytes: int = 0
    checkpoint: dict[str, Any] | None = None
    #: The zone the device's local times were read in and why (custodes.drivers.device_zone), as the ledger has it.
    time_zone: dict[str, str] | None = None
    #: How the driver was chosen (custodes.drivers.DriverChoice): the confidence, a close runner-up, the drivers
    #: whose ``recognise`` raised; None when ``--driver`` named it.
    choice: DriverChoice | None = None
    #: Every file stored or found already present, in volume order: its segment id, name, digest.
    segments: list[IngestedSegment] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self, *, per_file: bool = True, lazy: bool = False) -> dict[str, Any]:
        """The result as ``custodes ingest --json`` writes it. ``per_file`` False: without ``findings`` and
        ``segments`` (a dict per file each): a summary whose size does not grow with the volume. ``lazy``: those
        two as iterators, each dict made as it is read (the CLI writes them so: at 10^5 files, 2 x 10^5 dicts held
        at once took the run 20 MiB over its 150 MiB bound)."""
        listed: Callable[[Iterator[Any]], Any] = iter if lazy else list
        out: dict[str, Any] = {
            "ok": self.ok,
            "ingest": self.ingest_id,
            "volume": self.volume,
            "driver": self.driver,
            "device": self.device,
            "stored": self.stored,
            "already_present": self.already_present,
            "recovered": self.recovered,
            "failed": self.failed,
            "skipped": self.skipped,
            "bytes": self.bytes,
        }
        if per_file:
            out["findings"] = listed(f.to_json() for f in self.findings)
        out |= {
            "checkpoint": self.checkpoint,
            "time_zone": self.time_zone,
            "choice": None if self.choice is None else self.choice.to_json(),
        }
        if per_file:
            out["segments"] = listed(s.to_json() for s in self.segments)
        return out


def _refuse_overlap(archive: Archive, volume: Path) -> None:
    """A volume that holds the archive (or its signing key), or lies inside it, is refused:
    ingest would copy the archive into itself, private key included."""
    vol = volume.resolve()
    for inner, outer, what in (
        (archive.root.resolve(), vol, "the archive is inside the volume"),
        (archive.signing_key_path.resolve(), vol, "the archive's signing key is inside the volume"),
        (vol, archive.root.resolve(), "the volume is inside the archive"),
    ):
        if within(inner, outer):
            raise ArchiveError(f"{volume}: {what}; ingest a device volume from outside the archive")


def _finding_row(ingest_id: int, segment_id: int | None, f: Finding) -> FindingRow:
    path = None if f.path is None else name_text(f.path)
    return FindingRow(
        ingest_id, segment_id, f.kind, f.severity, f.device, path, f.start, f.end, _json_text(f.to_json())
    )


def _corrected(times: list[int | None], readings: list[tuple[int, int]]) -> list[int | None]:
    known = [t for t in times if t is not None]
    if not readings or not known:
        return times
    fixed = iter(timeline.correct_times(known, [d for d, _ in readings], [t for _, t in readings]).tolist())
    return [None if t is None else next(fixed) for t in times]


def ingest(
    archive: Archive,
    volume: str | os.PathLike[str],
    driver: str | None = None,
    options: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    groups: Groups | None = None,
) -> IngestResult:
    """Ingest a device volume into ``archive``. ``progress(bytes_done, bytes_total)`` is called per file;
    ``workers`` files are copied at once (default: one per core, at most 4); ``groups`` bounds each group of
    files stored together (default :data:`GROUPS`).

    Stages: read the volume (the driver), record the device and the ingest, store every file
    (copy, read back, record), the volume-wide checks, then the findings, a signed checkpoint,
    and last the mark that the ingest finished."""
    _refuse_overlap(archive, Path(volume))
    given = volume
    # The volume read as the catalog names it (resolved): a finding names its file by the path it was read at,
    # and a later ingest of the same card through another spelling (a relative path, another working folder)
    # must name it the same, or the finding is not known as the same fact (custodes.catalog.devices).
    volume = Path(volume).resolve()
    opts = dict(options or {})
    opts.setdefault("clock_tolerance", str(archive.policy.clock_tolerance_seconds))
    # The policy's zones go to the one zone order (custodes.drivers.device_zone), never into the option `tz`:
    # that is the user's alone, and above what the device itself states.
    zones = zone_policy(archive.policy.model_time_zones, archive.policy.device_time_zone)
    with zones, one_scan_per_volume():  # the driver's reading and the files to store come from one walk of the volume
        reading = read_volume(volume, driver, opts, strict=True)  # a driver that fails stores nothing
        files, _, skipped = scan_volume(volume)
    # The system's clock, never the caller's word: when the footage was taken in is a fact of custody that the
    # late_ingest check and the ledger rest on (a hostile review: `now=` let a library caller backdate an ingest
    # to 1970, signed, and verify could not tell).
    started = _clock()
    archive.sweep_spools()
    # The copies' places are this archive's and can keep what is stored (a bucket that cannot lock is refused):
    # a volume refused here records nothing, never half its files stored and the rest failed.
    _claim_places(archive)
    # The first group's new files must fit before the ingest is recorded at all (files seen before may be there
    # already: the group's own check, once they are hashed, counts them if not).
    first = _next_group(files, groups or GROUPS)
    seen = {
        f.path
        for f in first
        if archive.catalog.segments.objects_named(
            reading.identity.device_id, name_text(f.name), name_bytes(f.name), f.size
        )
    }
    short = _short_of_room(archive, [f for f in first if f.path not in seen])
    if short is not None:
        raise ArchiveError(f"{short}; nothing was recorded")
    volume_text = name_text(os.fspath(volume))
    ingest_id, readings = _begin(archive, reading, volume_text, started, dict(options or {}))
    archive.checkpoint()  # the files of the checkpoint its begin was signed with (a crash first: written back later)
    result = IngestResult(ingest_id, os.fspath(given), reading.driver, reading.identity.device_id, skipped=skipped)
    result.time_zone = None if reading.time_zone is None else reading.time_zone.to_json()
    result.choice = reading.choice
    _store_files(archive, files, reading, readings, started, result, progress, workers, groups or GROUPS)
    recovered = _recover(archive, result, volume, volume_text, {f.name for f in files})
    result.findings += reading.findings
    # Every file is stored by now; the volume-wide steps below cannot take that back.
    timed, reread = _as_stored(archive, reading, result)
    result.findings += reread
    result.findings += _volume_checks(archive, volume, timed, readings, started, recovered)
    _finish(archive, volume, volume_text, result)
    return result


def _clock() -> int:
    """When an ingest begins, ns since 1970: the system's clock (tests set another by replacing this)."""
    return time.time_ns()


def _begin(
    archive: Archive, reading: VolumeReading, volume: str, started: int, options: dict[str, str]
) -> tuple[int, list[tuple[int, int]]]:
    """Record the device as the volume describes it, the ingest (with the driver ``options`` it was given: an
    interrupted ingest is finished by running it again as it was run), the device's own log and clock readings;
    returns the ingest's id and the device's dock readings (device clock, trusted clock)."""
    device = reading.identity.device_id
    ident = reading.identity
    with archive.transaction() as catalog:
        ingest_id = replay.next_id(catalog, "ingests")
        replay.record(
            catalog,
            {
                "type": "ingest_begin",
                "ingest": ingest_id,
                "volume": volume,
                "driver": reading.driver,
                **({"options": options} if options else {}),
                "device": device,
                "identity": {k: getattr(ident, k) for k in DeviceIdentity._fields[1:]},
                "events": [[e.time, e.kind, e.detail] for e in reading.events if e.time is not None],
                "clock_readings": [[c.device_time, c.trusted_time, c.source] for c in reading.clock_readings],
                # the zone the device's local times (events, clock, names) were read in, and why
                "time_zone": None if reading.time_zone is None else reading.time_zone.to_json(),
                # the pre-use checks the volume logged (Art. 10; custodes.preuse), only when it logged any
                **({"checks": [preuse.check_record(x) for x in reading.checks]} if reading.checks else {}),
                "time": started,
            },
        )
        # Signed with it, in this transaction: the ingest's later entries are then work in flight for every other
        # command's checkpoint, which signs them (Archive.sign_within); the checkpoint's files come right after.
        archive.sign_within(catalog)
        readings = catalog.devices.dock_readings(device)
    archive.catalog.ledger.own.ingests.add(ingest_id)  # (committed: the id is this run's)
    return ingest_id, readings


class Groups(NamedTuple):
    """The bounds of a group of files stored together: at most ``files`` files and ``bytes`` bytes (or one
    file, if that is bigger), and no copy started after ``seconds`` of copying. What a crash can cost is
    bounded by them, and the per-group syncs and commits are paid rarely."""

    files: int
    bytes: int
    seconds: float


#: The default bounds: about a second of copying small files, a few seconds of big ones on a local disk.
GROUPS = Groups(files=1000, bytes=512 << 20, seconds=5.0)

#: Free space a group's copies leave on the archive's disk, for what recording them writes (the catalog's log,
#: ledger entries, the checkpoint files): a disk filled by the copies themselves fails the record of them. So
#: much for the group, and so much more per file (a file's rows and entry take 2-3 KiB, written twice with the
#: catalog's log).
ROOM_KEPT = (256 << 10, 8 << 10)


def _short_of_room(archive: Archive, files: list[VolumeFile]) -> str | None:
    """Why ``files`` cannot all be copied into the archive's tmp/ now, or None: their bytes and
    :data:`ROOM_KEPT` are more than its disk has free. Asked before each group's copies start, so a disk that is
    too small is said once, with the numbers, before a copy fails (a hostile review: a full disk was met file by
    file, one "No space left on device" finding each). Nothing to copy needs no room (a volume held whole
    already was refused on a nearly full disk)."""
    if not files:
        return None
    need = sum(f.size for f in files)
    kept = ROOM_KEPT[0] + ROOM_KEPT[1] * len(files)
    # A file each copy, and up to two folders of the store for its object (objects/sha256/ab/cd), and a few for
    # the catalog's and the checkpoint's files: a disk out of inodes fails them as a full one does (a hostile
    # review: a tmpfs of 40 inodes failed 700 files one by one). A file system that counts none says 0.
    inodes = 3 * len(files) + 16
    try:
        st = os.statvfs(archive.spool)
    except OSError:
        return None  # (not this check's to say: the copies meet it)
    free = st.f_bavail * st.f_frsize
    if need + kept > free:
        return (
            f"{disk_full_line(archive.root)}: {_size(free)} free, "
            f"and the next {len(files)} file(s) of the volume need {_size(need)}, with {_size(kept)} kept for "
            "recording them"
        )
    if st.f_files and st.f_favail < inodes:
        return (
            f"{disk_full_line(archive.root)}: it can make "
            f"{st.f_favail} more file(s) (inodes), and the next {len(files)} file(s) of the volume need up to "
            f"{inodes}"
        )
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _next_group(files: list[VolumeFile], bounds: Groups) -> list[VolumeFile]:
    """The first run of ``files`` (in volume order) within the bounds."""
    size = 0
    for i, f in enumerate(files):
        if i and (i == bounds.files or size + f.size > bounds.bytes):
            return files[:i]
        size += f.size
    return files


def _store_files(
    archive: Archive,
    files: list[VolumeFile],
    reading: VolumeReading,
    readings: list[tuple[int, int]],
    started: int,
    result: IngestResult,
    progress: Callable[[int, int], None] | None,
    workers: int | None,
    bounds: Groups,
) -> None:
    """Copy every file not already present into the store and record it, group by group; each outcome
    goes into ``result``, in volume order within each group (a copy deferred past its group's time is
    recorded with the next group)."""
    # What the driver found of each file, noted with its intent: a re-run recovering the file has no reading of it.
    said: dict[str, list[Finding]] = {}
    for finding in reading.findings:
        if finding.path is not None:
            said.setdefault(finding.path, []).append(finding)
    # A recording's officer is its own (VolumeSegment.officer), else whom the device is issued to at this docking.
    issued = reading.identity.officer_id
    segments = {
        s.path: s if s.officer is not None or issued is None else replace(s, officer=issued) for s in reading.segments
    }
    total = sum(f.size for f in files)
    done = 0
    # Copies run in parallel (the Rust copy releases the GIL); the catalog and the
    # ledger are written by this thread alone, in volume order within each group.
    # The one --workers clamp (hashing.clamp_workers); by default one copy per core, at most 4.
    copies = clamp_workers(workers, max(1, len(files))) or min(4, os.cpu_count() or 1)
    served = request()  # read here: the copying threads do not see the request being served
    checked = None if served is None else frozenset(served.checked)
    todo = list(files)
    pool = ThreadPoolExecutor(max_workers=copies)
    cancel = _core.CopyCancel()  # Ctrl-C stops the copies under way at their next buffer, not at their end
    # The copies given to the pool and perhaps not done, for stop_pool to call off or wait for: those of the group
    # started last (a group's copies are all done or called off once _finish_copies returns). Not every copy ever
    # handed: each future keeps its result, which held some 2.6 KiB per file of the volume until the end (10^5
    # files of 1 KiB peaked at 428 MiB).
    handed: Iterable[Future[_Copy | str]] = ()
    no_room: list[VolumeFile] = []  # the files not copied for want of room: one finding for them all
    try:
        group = _next_group(todo, bounds)
        copying = _start_copies(archive, pool, group, result.device, checked, cancel)
        handed = copying.futures
        while group:
            present = copying.present
            copied, deferred = _finish_copies(copying, bounds.seconds)
            todo = deferred + todo[len(group) :]
            if copying.short is not None:
                # No room for this group's copies: its files present already are recorded, the rest of the
                # volume is not copied (said once, below), and nothing more is started.
                no_room = [f for f in group if f.path not in present] + todo
                todo = []
            # The next group copies while this one is synced, read back, linked and recorded: the cores copy while
            # the disk syncs and reads back (a big file's group would otherwise leave one of them idle).
            following = _next_group(todo, bounds)
            short = copying.short
            copying = _start_copies(archive, pool, following, result.device, checked, cancel)
            handed = copying.futures
            names = {f.path: f.name for f in group}
            noted = functools.partial(_intent_entry, result.device, names, segments, said, readings, started)
            stored = {p: c for p, c in copied.items() if isinstance(c, _Copy)}
            copied.update(_settle(archive, result.ingest_id, stored, noted))
            outcomes = _record_group(archive, result, group, copied, segments, readings, started)
            for f in group:
                if f.path not in outcomes:
                    continue  # deferred to the next group (or, short of room, not copied)
                outcome = outcomes[f.path]
                if outcome in ("stored", "present"):
                    copy = copied[f.path]
                    sha = copy.digests["sha256"] if isinstance(copy, _Copy) else present[f.path]
                    result.segments.append(_ingested(archive, result.device, f.name, sha, outcome == "stored"))
                if outcome == "stored":
                    result.stored.append(f.name)
                    result.bytes += f.size
                elif outcome == "present":
                    result.already_present.append(f.name)
                else:
                    result.failed.append(f.name)
                    # What it was: the size the volume listed, and the digest of what was read where the copy was
                    # made. A later ingest's recording of its name is this one only if it is that
                    # (custodes.catalog.devices.FINDING_SEGMENT): not a new one given the name after a format.
                    read = stored.get(f.path)  # (its copy as made: what _settle failed is a reason in copied)
                    what = _what_was_read(f.size, read.digests["sha256"] if isinstance(read, _Copy) else None)
                    result.findings.append(Finding("ingest_failed", outcome, result.device, f.path, evidence=what))
                done += f.size
                if progress is not None:
                    progress(done, total)
            group = following
            if short is not None:
                result.failed += [f.name for f in no_room]
                result.findings.append(
                    Finding(
                        "ingest_failed",
                        f"{len(no_room)} file(s) not copied, the first {no_room[0].name}: {short}; what was "
                        "stored before is recorded, and the re-run copies the rest",
                        result.device,
                    )
                )
    except BaseException:  # Ctrl-C, or an error: no copy is left running behind the command
        stop_pool(pool, handed, cancel.cancel)
        raise
    pool.shutdown(wait=True)


def _what_was_read(size: int, sha256: str | None) -> dict[str, Any]:
    """An ``ingest_failed``'s evidence of its file: its size, and its SHA-256 where its bytes were read whole. The
    recording a later ingest stores resolves the failure only if it has these (catalog.devices.FINDING_SEGMENT)."""
    return {"size": size} | ({"sha256": sha256} if sha256 is not None else {})


@dataclass
class _Copy:
    """One file's copy in the store's tmp/, on its way into the store."""

    temp: Path
    size: int
    digests: dict[str, str]  # the policy's algorithms, as recorded
    readback: str  # the READBACK digest computed while copying
    head: str = ""  # head_digest of the copy


class _Copying(NamedTuple):
    """A group's copies under way: the files found present already (with their SHA-256), the copies' futures,
    when they started; ``short``: why none was started, the archive's disk lacking the room for them."""

    present: dict[str, str]
    futures: dict[Future[_Copy | str], VolumeFile]
    started: float
    short: str | None = None


def _start_copies(
    archive: Archive,
    pool: ThreadPoolExecutor,
    group: list[VolumeFile],
    device: str,
    checked: frozenset[tuple[int, int]] | None,
    cancel: _core.CopyCancel,
) -> _Copying:
    """Start copying the group's files that are not in the archive yet, in parallel and largest first (so a big
    file does not start last and leave a worker idle)."""
    present = _already_present(archive, device, group)
    short = _short_of_room(archive, [f for f in group if f.path not in present])
    futures = {
        pool.submit(_copy_one, archive, f, checked, cancel): f
        for f in sorted(group, key=lambda f: -f.size)
        if f.path not in present and short is None
    }
    return _Copying(present, futures, time.monotonic(), short)


def _finish_copies(copying: _Copying, seconds: float) -> tuple[dict[str, _Copy | str], list[VolumeFile]]:
    """Wait for a group's copies; once ``seconds`` from their start are up, the copies not yet started are called
    off and returned (in volume order) for the next group, and those under way are finished. The first copy is
    never called off, so every group stores at least one file.

    Returns, by volume path, each file's copy, "present" or why it failed; and the files called off."""
    futures = copying.futures
    _, running = wait(futures, timeout=max(0.0, copying.started + seconds - time.monotonic()))
    first = next(iter(futures), None)
    called_off = {future for future in running if future is not first and future.cancel()}
    wait(running - called_off)
    outcomes: dict[str, _Copy | str] = dict.fromkeys(copying.present, "present")
    for future, f in futures.items():
        if future not in called_off:
            outcomes[f.path] = _copied(future)
    return outcomes, sorted((futures[future] for future in called_off), key=lambda f: os.fsencode(f.name))


def _copy_one(
    archive: Archive, f: VolumeFile, checked: frozenset[tuple[int, int]] | None, cancel: _core.CopyCancel
) -> _Copy | str:
    """Copy one file into a new temp in the store's tmp/ while hashing it. ``checked``: through the service,
    the files the caller was found to be able to read (custodes.rights.as_checked); ``cancel`` stops it. The copy,
    or why not."""
    temp = archive.new_temp(os.path.basename(f.name)[-40:])
    crashpoint("copy")
    algorithms = archive.policy.algorithms
    computed = algorithms if READBACK in algorithms else (*algorithms, READBACK)
    # The file copied is the one the scan found (through the service: the one found readable by the caller): a
    # link or another file put in its place since, or on the way to it, is refused, never followed.
    held = None
    try:
        with (
            as_checked(f.path, checked)
            if checked is not None
            else as_checked(f.path, {(f.device, f.inode)}, "the file found there when the volume was read")
        ) as source:
            held = source
            size, raw = archive.store_copy(source, temp, computed, cancel)
    except CustodesError as e:
        temp.unlink(missing_ok=True)
        said = str(e)
        if held is not None and held != f.path:  # the file held open is named as the volume names it (a hostile
            said = said.replace(held, shown_name(f.path))  # review: "/proc/self/fd/6: file changed size")
        return f"could not copy: {said}"
    crashpoint("after_copy")
    digests = {a: d.hex() for a, d in zip(computed, raw, strict=True)}
    return _Copy(temp, size, {a: digests[a] for a in algorithms}, digests[READBACK])


def _settle(
    archive: Archive, ingest_id: int, copies: dict[str, _Copy], entry: Callable[[str, _Copy], str | None]
) -> dict[str, _Copy | str]:
    """Make a group's copies durable together, read each back from the disk and compare, note the intents (each
    with the ``entry`` its file would be recorded by), and link the copies into the store. By volume path: the
    linked copy, or why it failed (its temp removed). The copies are synced and read back only where a store
    keeps the spool file as the object (:attr:`~custodes.storage.ObjectStore.spool_is_object`); a bucket reads
    back what it stored, against the digests taken from the volume, which is the check that counts there."""
    outcomes: dict[str, _Copy | str] = dict(copies)
    kept = any(s.spool_is_object for s in (archive.store, archive.replica) if s is not None)

    def fail(path: str, why: str) -> None:
        copies[path].temp.unlink(missing_ok=True)
        outcomes[path] = why

    # The archive's storage failing a file (EIO, ENOSPC at a sync, the read-back or
    # the link) is that file's ingest_failed with the reason; the rest of the volume
    # goes on, and a re-run copies it again. A failed sync fails the whole group:
    # it cannot say which file's write-back failed.
    if kept:
        try:
            sync_together(archive.spool, [c.temp for c in copies.values()])
        except OSError as e:
            for path in copies:
                fail(path, f"could not store the copy: {e}")
            return outcomes
        for path, c in copies.items():
            crashpoint("after_fsync")
            try:
                if archive.policy.readback == "storage":  # the read-back below comes from the storage, not the cache
                    drop_cached_pages(c.temp)
                storage_op("read", c.temp)
            except OSError as e:
                fail(path, f"could not store the copy: {e}")
        _read_back(archive, {p: c for p, c in copies.items() if outcomes[p] is c}, fail)
    else:
        _take_heads({p: c for p, c in copies.items() if outcomes[p] is c}, fail)
    linked = {p: c for p, c in copies.items() if outcomes[p] is c}
    if linked:
        with archive.transaction() as catalog:
            # Written down, durably and before the objects are linked into the store, that this ingest is about
            # to link them: until it records them, verify reports them as `pending`, not `unexpected`.
            for path, c in linked.items():
                catalog.ingests.note_intent(c.digests["sha256"], ingest_id, time.time_ns(), entry(path, c))
        crashpoint("after_intent")
    _put_copies(archive, linked, fail)
    return outcomes


def _put_copies(archive: Archive, copies: dict[str, _Copy], fail: Callable[[str, str], None]) -> None:
    """Store each copy (by key), the second copy first (:func:`_put_replica`); one the storage refuses is
    ``fail``ed with why."""
    if archive.replica is not None:
        copies = _put_replica(archive, copies, fail)
    put = archive.store.put_many([Put(c.temp, c.size, c.digests) for c in copies.values()])
    for key, stored in zip(copies, put, strict=True):
        if isinstance(stored, OSError):
            fail(key, f"could not store the copy: {stored}")
        else:
            crashpoint("after_link")


def keep_noted_copies(archive: Archive) -> dict[str, str]:
    """Store the copies a killed ingest left complete in the spool, of the objects it had noted it would link
    (killed after its intents and before the link): once its card is wiped they are the archive's only copy of
    those bytes, and the spool's sweep used to remove them (a review: the re-run then called the files lost). A
    copy is taken only when it is a file of the archive's own, with no name outside the spool (a hard link would
    share the evidence with a file elsewhere), and its bytes, read again, are those a note names (size and every
    digest). It goes into each copy of the store that lacks the object, each on its own (one sound copy is enough
    to record it, and repair restores the other); the next ingest of its volume records it from the note, as a file
    the killed ingest stored (:func:`_recover`). Asked by :meth:`~custodes.archive.Archive.sweep_spools` before it
    sweeps; costs one listing of the spool when no dead process left a file there.

    Returns the spool files the sweep must keep, each with its object: those a copy of the store refused now, and
    those whose object's place holds other bytes (put there by hand: write-once, it is not replaced, and these
    may be the only copy of what the card held), and those that are not the archive's own, never stored, for the
    next run or a person to take; the failure of their files names them (:func:`_recover`)."""
    own, others = _dead_copies(archive)
    noted = _noted_among(archive, own + others)  # (an object's own copy first, where it has both)
    mine = {path for path, _ in own}
    found = {sha: c for sha, c in noted.items() if c.temp in mine}
    # Never stored, never swept either: a copy of another account's (a killed `sudo` ingest into a service's
    # archive), or one with a name outside tmp/, may be all that is left of a wiped card (a hostile review: a copy
    # chowned after the failure named it was then swept). The failure names it; a person takes it.
    held = {sha: c for sha, c in noted.items() if sha not in found and not _is_its_object(archive, sha, c.temp)}
    if not found:
        return {os.fspath(c.temp): sha for sha, c in held.items()}
    _claim_places(archive)
    keep: set[str] = set()
    for store in (archive.replica, archive.store):  # the second first: the first consumes the spool file
        if store is not None:
            keep |= _into_store(store, found, second_name=store is archive.replica)
    kept = {os.fspath(c.temp): sha for sha, c in found.items() if os.fspath(c.temp) in keep}
    return kept | {os.fspath(c.temp): sha for sha, c in held.items()}


def _is_its_object(archive: Archive, sha: str, temp: Path) -> bool:
    """Whether the spool file is its object's file in a local store (a kill between an ingest's link and its
    removal of the spool name leaves one file with both names: the object is stored, the spool name is the sweep's;
    a hostile review saw it kept and its file failed for ever)."""
    for store in (archive.store, archive.replica):
        place = getattr(store, "local_file", lambda _: None)(sha)
        with contextlib.suppress(OSError):
            if place is not None and os.path.samefile(place, temp):
                return True
    return False


def _dead_copies(archive: Archive) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(path, size) of each file dead processes left in the spool: those that are the archive's own (its account's,
    or this process's) with no name outside the spool (its names there are a copy and, where a kill left both,
    :func:`_second_name`'s; one name of each), and the others."""
    owners = {os.geteuid(), os.stat(archive.root).st_uid}
    names: dict[tuple[int, int], list[os.stat_result]] = {}
    paths: dict[tuple[int, int], Path] = {}
    for entry in dead_temps(archive.spool):
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                names.setdefault((st.st_dev, st.st_ino), []).append(st)
                paths.setdefault((st.st_dev, st.st_ino), Path(entry.path))
    own: list[tuple[Path, int]] = []
    others: list[tuple[Path, int]] = []
    for inode, seen in names.items():
        ours = seen[0].st_nlink == len(seen) and seen[0].st_uid in owners
        (own if ours else others).append((paths[inode], seen[0].st_size))
    return own, others


def _noted_among(archive: Archive, dead: list[tuple[Path, int]]) -> dict[str, _Copy]:
    """By object, a spool file among ``dead`` whose bytes, read again, are those a note of an unrecorded object
    names (its size and every digest)."""
    if not dead:
        return {}
    noted: dict[int, dict[str, dict[str, str]]] = {}  # size: {object: its digests}
    for sha, entry_text in archive.catalog.ingests.unrecorded_notes():
        facts = json.loads(entry_text)["facts"]
        noted.setdefault(facts["size"], {})[sha] = facts["digests"]
    candidates = [(path, size) for path, size in dead if size in noted]
    if not candidates:
        return {}
    algorithms = sorted({a for by_object in noted.values() for digests in by_object.values() for a in digests})
    found: dict[str, _Copy] = {}
    for (path, size), read in zip(candidates, hash_files([p for p, _ in candidates], algorithms), strict=True):
        for sha, digests in noted[size].items():
            if sha not in found and read.size == size and all(read.digests.get(a) == d for a, d in digests.items()):
                found[sha] = _Copy(path, size, dict(digests), readback="")
    return found


def _into_store(store: ObjectStore, found: dict[str, _Copy], *, second_name: bool) -> set[str]:
    """Each copy put into ``store`` where it lacks the object (``second_name``: a second name of each file put,
    which the store consumes); the spool files to keep: those the store refused, and those whose object's place
    holds other bytes (put there by hand: never replaced, and the spool's may be the only copy of the card's)."""
    keep: set[str] = set()
    there = [sha for sha in found if store.stat(sha) is not None]
    # Kept unless the place holds a sound object of those bytes, as the store lists it: a link there to a file
    # elsewhere read as the bytes, and the copy was swept, the archive's only one (a hostile review).
    problems = {sha: _listed_problems(store, sha) for sha in there}
    listed = [sha for sha in there if problems[sha] in ([None], ["unprotected"])]
    algorithms = sorted({a for c in found.values() for a in c.digests})
    held = dict(zip(listed, store.hash_objects(listed, algorithms, None) if listed else [], strict=True))
    for sha in there:
        c, h = found[sha], held.get(sha)
        if h is None or not h.ok or h.size != c.size or any(h.digests.get(a) != d for a, d in c.digests.items()):
            keep.add(os.fspath(c.temp))
        elif problems[sha] != [None] and not _taken_in_place_of(store, c):
            keep.add(os.fspath(c.temp))
    missing = []
    items = []
    for sha, c in found.items():
        if sha in there:
            continue
        try:  # (another process sweeping the same dead ingest's copies may have taken this one meanwhile)
            items.append(_second_name(c) if second_name else c)
            missing.append(c)
        except FileNotFoundError:
            continue
    for c, item, outcome in zip(
        missing, items, store.put_many([Put(i.temp, i.size, i.digests) for i in items]), strict=True
    ):
        if isinstance(outcome, OSError):
            if item is not c:
                item.temp.unlink(missing_ok=True)  # the second name the store refused
            keep.add(os.fspath(c.temp))
    return keep


def _taken_in_place_of(store: ObjectStore, c: _Copy) -> bool:
    """The copy, the archive's own, put in place of the file at its object's place that holds the same bytes but
    is not the store's (a hard link from a `cp -al` restore, another account's, writable): recorded from that
    file, the copy swept, an edit through its other name changed the evidence (a hostile review). Never a
    change of that file (a protect would chown a file outside, a bind mount's); whether it was done."""
    try:
        with open(c.temp, "rb") as stream:
            store.restore(stream, c.size, c.digests)
    except (OSError, CustodesError):
        return False  # (a mount point at the place refuses the unlink: kept, and its failure says why)
    return True


def _listed_at(store: ObjectStore, sha: str) -> list[Listed]:
    """What the store lists at the object's place (the object, or what holds its place)."""
    return [x for x in store.list(DigestRange(sha, sha + "0")) if x.digest == sha]


def _listed_problems(store: ObjectStore, sha: str) -> list[str | None]:
    """What the store's listing says of each entry at the object's place (None: a sound object file)."""
    return [x.problem for x in _listed_at(store, sha)]


def _second_name(c: _Copy) -> _Copy:
    """The copy under a second name in the spool, for the replica's store to consume: the first store then
    consumes the first name."""
    second = c.temp.with_name(c.temp.name + "-2")
    second.unlink(missing_ok=True)
    os.link(c.temp, second)
    return replace(c, temp=second)


def _put_replica(archive: Archive, copies: dict[str, _Copy], fail: Callable[[str, str], None]) -> dict[str, _Copy]:
    """Store the second copy of each (before the first: the catalog records a file only once both copies are
    stored). The replica consumes a second name of each spool file, so the first copy's file stays for the
    first store. The copies the replica stored; the others failed, with why."""
    assert archive.replica is not None
    items = [Put(second.temp, second.size, second.digests) for second in map(_second_name, copies.values())]
    outcomes = archive.replica.put_many(items)
    stored = {}
    for (path, c), item, outcome in zip(copies.items(), items, outcomes, strict=True):
        if isinstance(outcome, OSError):
            item.file.unlink(missing_ok=True)
            fail(path, f"could not store the second copy ({archive.replica.describe()}): {outcome}")
        else:
            stored[path] = c
    return stored


def _read_back(archive: Archive, copies: dict[str, _Copy], fail: Callable[[str, str], None]) -> None:
    """Hash the group's copies again as read back (one batch for the group), and take their head digests."""
    paths = list(copies)
    # Reading back from the storage waits on the disk, not the cores: more reads in flight keep its queue full
    # (5,000 small copies: 1.0 s with one reader per core, 0.6 s with four; a spinning disk still gets one).
    # Never more readers than copies: with fewer files than threads the engine spreads each file over several
    # cores, and five big copies (2 GiB) read back in 1.8 s that way against 1.0 s with one reader each.
    readers = min(max_workers(), len(paths))
    backs = hash_files([copies[p].temp for p in paths], (READBACK,), threads=readers)
    for path, back in zip(paths, backs, strict=True):
        c = copies[path]
        if not back.ok:
            fail(path, f"could not read the copy back: {back.error}")
        elif back.digests[READBACK] != c.readback:
            fail(path, "the copy read back differs from what was read from the volume (storage fault?)")
        else:
            crashpoint("after_readback")
            _take_heads({path: c}, fail)


def _take_heads(copies: dict[str, _Copy], fail: Callable[[str, str], None]) -> None:
    """The head digest of each copy (its first bytes), read from the spool file."""
    for path, c in copies.items():
        try:
            storage_op("read", c.temp)
            c.head = head_digest(None, c.temp)
        except OSError as e:
            fail(path, f"could not store the copy: {e}")


def _record_group(
    archive: Archive,
    result: IngestResult,
    group: list[VolumeFile],
    outcomes: dict[str, _Copy | str],
    segments: dict[str, VolumeSegment],
    readings: list[tuple[int, int]],
    now: int,
) -> dict[str, str]:
    """Record the group's stored files in one transaction, in volume order: by volume path, 'stored',
    'present' or why not (the outcomes that are not copies pass through)."""
    recorded: dict[str, str] = {}
    with archive.transaction() as catalog:
        for f in group:
            copied = outcomes.get(f.path)
            if isinstance(copied, _Copy):
                recorded[f.path] = _record_file(catalog, result, f, segments.get(f.path), readings, copied, now)
                crashpoint("in_transaction")
            elif copied is not None:
                recorded[f.path] = copied
    for outcome in recorded.values():
        if outcome == "stored":
            crashpoint("after_commit")
    # The storage's own lock on what was stored (S3 Object Lock), now that the catalog says how long it is kept.
    stored = [c.digests["sha256"] for p, c in outcomes.items() if isinstance(c, _Copy) and recorded.get(p) == "stored"]
    retention.to_store(archive, stored)
    return recorded


#: An object's notes (ingest, note; None: an intent noted without one) of files nothing records.
_Notes = list[tuple[int, dict[str, Any] | None]]
_Noted = dict[str, _Notes]


def _notes_to_finish(
    archive: Archive, result: IngestResult, volume_text: str, on_volume: set[str]
) -> tuple[_Noted, list[tuple[str, dict[str, Any]]], _Noted]:
    """What :func:`_recover` has to finish: by object, the notes (ingest, note; None: an intent without one) of
    the files nothing records; and (object, note) of the files the killed ingest recorded, gone from the volume.
    With them, ``later``: by object, the notes of files gone from the volume whose ingest was finished without
    recording them (its object not sound in the store then: a copy kept in tmp/ while its place held other bytes;
    since stored by the sweep, or by another card of the same bytes), for :func:`_recover` to record once it is
    sound, and to leave alone, already failed, while it is not."""
    noted: _Noted = {}
    finished: list[tuple[str, dict[str, Any]]] = []  # recorded by the killed ingest: (object, note)
    for sha, ingest, entry in archive.catalog.ingests.interrupted_intents(result.ingest_id, volume_text, result.device):
        if entry is None:  # noted by an older custodes, without its facts: unless the object is recorded since
            if not archive.catalog.objects.known(sha):
                noted.setdefault(sha, []).append((ingest, None))
            continue
        note = json.loads(entry)
        facts = note["facts"]
        if archive.catalog.segments.find(result.device, facts["name"], _raw(facts), sha) is None:
            noted.setdefault(sha, []).append((ingest, note))
        elif _noted_name(facts) not in on_volume:
            finished.append((sha, note))
    later: _Noted = {}
    for sha, ingest, entry in archive.catalog.ingests.finished_notes(result.ingest_id, volume_text, result.device):
        note = json.loads(entry)
        facts = note["facts"]
        if _noted_name(facts) in on_volume:
            continue  # a file of that name on the card is this run's to read
        if archive.catalog.segments.find(result.device, facts["name"], _raw(facts), sha) is None:
            later.setdefault(sha, []).append((ingest, note))
    return noted, finished, later


def _recover(
    archive: Archive, result: IngestResult, volume: Path, volume_text: str, on_volume: set[str]
) -> list[tuple[VolumeSegment, int]]:
    """Finish, for the interrupted ingests of this volume, the files they stored that are not on the volume any
    more (a card wiped before this run; ``on_volume``: the names this run read): the bytes in the store are all
    the archive has of each, and what the killed ingest noted with its intent (_intent_entry: what its driver
    read then) all it knows of it. A file the killed ingest had not recorded is recorded for it, from those
    facts, once a copy in the store (every copy: a damaged one is then verify's and repair's) is a sound object
    whose bytes, read again, are those the facts name; one it had recorded (killed after its commit) was not
    locked in the storage nor had its findings recorded. Either way the driver's findings of it are this run's,
    the storage's lock is set, and the file is listed as recovered; the finish of this run marks the ingest
    finished. A file that cannot be recorded so is this run's ``ingest_failed``, saying why, and its bytes stay
    for verify to name (``unrecorded``). A file still on the volume is this run's to store and read.

    Returns each recovered file's segment, as the volume's timeline checks take it, with when its ingest began."""
    noted, finished, later = _notes_to_finish(archive, result, volume_text, on_volume)
    later = {sha: notes for sha, notes in later.items() if sha not in noted}
    if not noted and not finished and not later:
        return []
    with_facts = {sha: notes for sha, notes in noted.items() if any(n for _, n in notes)}
    kept = {sha: path for path, sha in archive.kept_in_spool.items()}
    why = _not_recoverable(archive, with_facts | later, kept)
    sizes = {sha: n["facts"]["size"] for sha in why if sha not in kept for _, n in noted.get(sha, []) if n}
    unjudged = _left_alive(archive, sizes)
    recovered: list[tuple[VolumeSegment, int]] = []
    done: dict[str, str] = {}  # name: object

    def take(sha: str, note: dict[str, Any]) -> None:
        name = _noted_name(note["facts"])
        path = os.path.join(volume, name)
        result.recovered.append(name)
        if name in on_volume and name in result.failed:
            # Still on the card, and this run could not store it (its copy failed: a full disk), so it is
            # recorded from the killed ingest's sound object instead: not this run's failure, and this run's
            # reading of it (its findings, its place on the time line) already stands. A hostile review: it was
            # called failed too, and drawn twice, an `overlap` of the file with itself.
            result.failed.remove(name)
            result.findings = [f for f in result.findings if not (f.kind == "ingest_failed" and f.path == path)]
        else:
            result.findings += [Finding(**f) for f in note["findings"]]
            recovered.append((_noted_segment(note["facts"], path), note["started"]))
        done[name] = sha

    for sha, recorded in finished:
        take(sha, recorded)
    # The bytes this run read under each name (stored, present, or failed with what it read): a noted file this
    # run read the same bytes of is this run's to store, and its outcome stands (a hostile review: a file whose
    # object's place held other bytes failed twice, the second time said to be "not on the volume" while it was).
    read_here = {s.name: s.sha256 for s in result.segments}
    read_here |= {
        name_text(os.path.relpath(f.path, volume)): f.evidence["sha256"]
        for f in result.findings
        if f.kind == "ingest_failed" and f.path and isinstance(f.evidence, dict) and "sha256" in f.evidence
    }
    failed_here: set[tuple[str, str]] = set()
    with archive.transaction() as catalog:
        now = time.time_ns()
        # The interrupted ingests' notes, then the finished ones' (their files failed before: not failed again).
        to_finish = [(sha, notes, False) for sha, notes in noted.items()]
        to_finish += [(sha, notes, True) for sha, notes in later.items()]
        for sha, notes, failed_before in to_finish:
            for ingest, note in notes:
                name = f"object {sha}" if note is None else _noted_name(note["facts"])
                if note is not None and name in on_volume and read_here.get(name_text(name)) == sha:
                    continue
                path = None if note is None else os.path.join(volume, name)
                cause = f"its ingest noted no facts to record object {sha} by" if note is None else why.get(sha)
                if cause is not None and failed_before:
                    continue  # its ingest finished with it failed; still not sound, it is not failed again
                if note is not None and cause is None:
                    try:
                        with catalog.savepoint():
                            if _record_entry(catalog, note["facts"], ingest, now) == "stored":
                                take(sha, note)
                        continue
                    except Exception as e:  # noqa: BLE001 - as _record_file: one file never stops the volume
                        if _environment(e):
                            raise
                        cause = f"it could not be recorded: {type(e).__name__}: {e}"
                assert cause is not None  # recorded (continue above), or why not
                said = _not_recovered(ingest, cause, kept.get(sha), unjudged.get(sha), volume)
                if (name, sha) in failed_here:
                    continue  # noted by two interrupted ingests of the card: one failure (a hostile review: "2 failed")
                failed_here.add((name, sha))
                result.failed.append(name)
                # What that ingest read, as any failure gives it: only a recording of those bytes resolves this one
                # (a new file given its name after the card was wiped was taken for it: a hostile review).
                what = {} if note is None else _what_was_read(note["facts"]["size"], sha)
                result.findings.append(Finding("ingest_failed", said, result.device, path, evidence=what))
    result.segments += [_ingested(archive, result.device, name, sha, True) for name, sha in done.items()]
    # The storage's own lock, as for every file an ingest records (_record_group).
    retention.to_store(archive, sorted(set(done.values())))
    return recovered


def _not_recovered(ingest: int, cause: str, kept: str | None, unjudged: str | None, volume: Path) -> str:
    """The failure of a file an interrupted ingest copied and this run could not record (``cause``), naming the
    spool file that holds its bytes where one does: ``kept`` for the archive (keep_noted_copies), or ``unjudged``,
    another process's (_left_alive)."""
    said = (
        f"copied by ingest {ingest}, which was interrupted before it recorded it, and not on the volume "
        f"as that ingest read it when it was run again; not recovered from what it noted: {cause}"
    )
    docked = f"an ingest of {shown_name(os.fspath(volume))} as docked here"
    if kept is not None:  # (keep_noted_copies: the only copy of what the card held, maybe)
        said += (
            f"; a copy of the bytes it read is kept at {shown_name(kept)}: once the store can take it (what holds "
            "the object's place moved aside or repaired; the copy the archive's account's, with no name outside "
            f"tmp/), {docked} records the file"
        )
    elif unjudged is not None:
        said += (
            f"; a copy of the bytes it read lies at {shown_name(unjudged)}, left by a process this run cannot call "
            "ended (one that runs still, or a container's, whose end only root on the host sees): once it has "
            f"ended, {docked} records the file, run by root on the host where the archive lets root write it, "
            "else after the machine has restarted (which ends every process)"
        )
    return said


def _left_alive(archive: Archive, sizes: Mapping[str, int]) -> dict[str, str]:
    """By object (``sizes``: each one's size, by SHA-256), a file in the spool holding its bytes that this process
    did not write and cannot call left by a dead one (a copy a running ingest is making, or a killed one's in a pid
    namespace it cannot judge: _durable.left_by_dead_process), so that its file's failure says where the bytes
    are (session 14's note: a killed ingest in a container, the host's re-run failed the files without a word of
    the copies). Read only, never taken: its writer may be at work."""
    if not sizes:
        return {}
    dead = {e.path for e in dead_temps(archive.spool)}
    ours = process_tag() + "-"
    same_size, wanted = [], set(sizes.values())
    with contextlib.suppress(OSError), os.scandir(archive.spool) as it:
        for e in it:
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                if e.path not in dead and not e.name.startswith(ours) and stat.S_ISREG(st.st_mode):
                    if st.st_size in wanted:
                        same_size.append(e.path)
    read = hash_files(same_size, ("sha256",))
    return {r.digests["sha256"]: r.path for r in read if r.ok and r.digests["sha256"] in sizes}


def _raw(facts: Mapping[str, Any]) -> bytes | None:
    """A noted file's exact name bytes, where its name is not UTF-8 (_entry_facts: ``name_b64``)."""
    return base64.b64decode(facts["name_b64"]) if "name_b64" in facts else None


def _noted_name(facts: Mapping[str, Any]) -> str:
    """A noted file's name as the volume's own names are given (``stored``, ``already_present``): its bytes,
    surrogate-escaped where they are not UTF-8, not the catalog's escaped text."""
    raw = _raw(facts)
    return facts["name"] if raw is None else os.fsdecode(raw)


def _noted_segment(facts: Mapping[str, Any], path: str) -> VolumeSegment:
    """The segment a noted file's facts describe, as the volume's timeline checks take it (times, kind, number)."""
    return VolumeSegment(
        path,
        _noted_name(facts),
        facts["kind"],
        facts["start"],
        facts["end"],
        facts["start_source"],
        timeline.NO_SEQUENCE if facts["sequence"] is None else facts["sequence"],
        facts["important"],
        facts["recording"],
        facts["chapter"],
        officer=facts["officer"],
    )


def _seen(x: Listed) -> str:
    """What the store's listing says is wrong at an object's place, with its detail."""
    return f"{x.problem}: {x.detail}" if x.detail else str(x.problem)


def _not_recoverable(archive: Archive, noted: Mapping[str, _Notes], kept: Container[str]) -> dict[str, str]:
    """Why each object whose files :func:`_recover` would record may not be, by object: no copy holds it sound,
    by the store's listing (as verify's: a link, a FIFO, a version written over, gone) and its bytes read again
    against every noted file's size and digests. One sound copy is enough: the file is then recorded, and the
    other copy is verify's ``missing`` or ``modified`` and ``storage repair``'s to restore from it."""
    copies = [(archive.store, "")]
    if archive.replica is not None:
        copies = [(archive.store, "the first copy: "), (archive.replica, "the second copy: ")]
    wrong: dict[str, list[str]] = {sha: [] for sha in noted}
    sound: set[str] = set()
    # Read again with the algorithms the intents recorded (the policy may have changed since): every digest must agree.
    algorithms = sorted({a for notes in noted.values() for _, note in notes if note for a in note["facts"]["digests"]})
    for store, copy in copies:
        listed_sound = []
        unprotected: dict[str, Listed] = {}
        for sha in noted:
            listed = _listed_at(store, sha)
            if not listed:
                wrong[sha].append(f"{copy}it is not in the store ({store.describe()})")
            elif all(x.problem not in (None, "unprotected") for x in listed):
                wrong[sha].append(f"{copy}the store holds no sound object there ({_seen(listed[0])})")
            else:
                if sha in kept and all(x.problem is not None for x in listed):
                    unprotected[sha] = listed[0]  # its bytes read all the same: other bytes are what to say then
                listed_sound.append(sha)
        if not listed_sound:
            continue
        for sha, r in zip(listed_sound, store.hash_objects(listed_sound, algorithms, None), strict=True):
            facts = [note["facts"] for _, note in noted[sha] if note is not None]
            if not r.ok:
                wrong[sha].append(f"{copy}it cannot be read from the store: {r.error}")
            elif any(r.size != f["size"] or any(r.digests.get(a) != d for a, d in f["digests"].items()) for f in facts):
                wrong[sha].append(
                    f"{copy}its bytes in the store are not those the ingest read ({r.size} bytes, SHA-256 "
                    f"{r.digests.get('sha256')}; it read {facts[0]['size']} bytes, SHA-256 {sha})"
                )
            elif sha in unprotected:
                # Its file shared with a name elsewhere, or another's to change: recorded so, the spool's copy
                # (then no note's) was swept, and the object changed through that other name (a hostile review).
                wrong[sha].append(
                    f"{copy}its object there is not protected ({_seen(unprotected[sha])}) and could not be made so"
                )
            else:
                sound.add(sha)
    return {sha: "; ".join(said) for sha, said in wrong.items() if sha not in sound}


def _as_stored(archive: Archive, reading: VolumeReading, result: IngestResult) -> tuple[VolumeReading, list[Finding]]:
    """The reading with each recording already in the archive at the times it was stored with, and a
    ``time_reread`` finding when this docking read other times for them (another time zone, a changed name
    rule). The stored times stay the evidence; the time line of this docking is drawn with them, or a card read
    an hour off would show every gap again, an hour off, as a new and unexplained one."""
    present = {s.name: s.segment for s in result.segments if not s.stored}
    if not present:
        return reading, []
    stored = archive.catalog.segments.device_times(sorted(set(present.values())))
    moved: list[tuple[VolumeSegment, int | None]] = []
    segments = []
    for seg in reading.segments:
        then = stored.get(present.get(name_text(seg.name), -1))
        if then is not None and then != (seg.start, seg.end):
            moved.append((seg, then[0]))
            seg = replace(seg, start=then[0], end=then[1])
        segments.append(seg)
    if not moved:
        return reading, []
    seg, was = moved[0]
    shift = f"{(seg.start - was) / NS:+.0f} s" if seg.start is not None and was is not None else "a time"
    zone = f" in zone {reading.time_zone.zone} ({reading.time_zone.source})" if reading.time_zone else ""
    finding = Finding(
        "time_reread",
        f"{len(moved)} recording(s) already in the archive were read{zone} at other times than they were stored "
        f"with (e.g. {shown_name(seg.name)}: {shift}); the stored times are kept and this docking's time line "
        "uses them: check the device's time zone and the policy's [time_zones]",
        reading.identity.device_id,
        seg.path,
        evidence={
            "recordings": len(moved),
            "first": seg.name,
            "read_start": rfc3339(seg.start),
            "stored_start": rfc3339(was),
        },
    )
    return replace(reading, segments=segments), [finding]


def _volume_checks(
    archive: Archive,
    volume: str | os.PathLike[str],
    reading: VolumeReading,
    readings: list[tuple[int, int]],
    started: int,
    recovered: Sequence[tuple[VolumeSegment, int]] = (),
) -> list[Finding]:
    """The checks over the whole volume: its timeline (gaps, overlaps, clocks) and late ingest. ``recovered``:
    the files :func:`_recover` recorded, each with the start of the ingest that stored it (its handing in)."""
    device = reading.identity.device_id
    gap_tolerance = round(archive.policy.gap_tolerance_seconds * NS)
    whole = reading
    if recovered:  # in name order, as a driver reads a whole card: a tie in time falls as it would there
        merged = sorted([*reading.segments, *(s for s, _ in recovered)], key=lambda s: os.fsencode(s.name))
        whole = replace(reading, segments=merged)
    deadline = archive.policy.ingest_deadline_hours

    def late() -> list[Finding]:
        found = _late(reading.segments, readings, deadline, started, device)
        for handed_in in sorted({t for _, t in recovered}):
            found += _late([s for s, t in recovered if t == handed_in], readings, deadline, handed_in, device)
        return found

    return _volume_step(
        "timeline", volume, device, lambda: timeline_findings([whole], gap_tolerance=gap_tolerance)
    ) + _volume_step("late_ingest", volume, device, late)


#: Findings per ``ingest_findings`` entry: a volume of 10^5 files the driver does not know has 10^5 findings,
#: and one entry holding them all (48 MB) would be built, parsed and hashed whole by ingest and every verify.
FINDINGS_PER_ENTRY = 1000


def _ingested(archive: Archive, device: str, name: str, sha256: str, stored: bool) -> IngestedSegment:
    """The file's segment, as the catalog keeps it (found by device, name and content, as ingest records it)."""
    text = name_text(name)
    segment = archive.catalog.segments.find(device, text, name_bytes(name), sha256)
    assert segment is not None  # stored or present: recorded under this device, name and content
    return IngestedSegment(segment, text, sha256, stored)


def _finish(archive: Archive, volume: str | os.PathLike[str], volume_text: str, result: IngestResult) -> None:
    """Record the findings (in entries of at most FINDINGS_PER_ENTRY) and the result, sign a checkpoint,
    then mark the ingest finished."""

    def name(finding: Finding) -> str | None:  # the file's name on the volume, asked one entry at a time
        return name_text(os.path.relpath(finding.path, volume)) if finding.path else None

    # A file this run could not store is one finding, ingest_failed, which says why (a hostile review: the probe's
    # "unreadable" said it again in other words). What else was found of it (late_ingest, clock_unset,
    # truncated ...) is found again, with its recording and its times, by the run that stores it; recorded now,
    # it named no recording, and was taken for another one given its name later (a second hostile review).
    if result.failed:
        failed = set(result.failed)
        result.findings = [f for f in result.findings if f.kind == "ingest_failed" or name(f) not in failed]
    with archive.transaction() as catalog:
        # Each file of the volume recorded or found present, and each recovered for the interrupted ingest that
        # stored it (_recover: names not on the volume), once. Not a query by ingest: segments has no index on
        # it, and the scan of 10^6 segments was a fifth of an ingest of 1,000 files into such an archive.
        seg_ids = {held.name: held.segment for held in result.segments}
        for first in range(0, len(result.findings), FINDINGS_PER_ENTRY):
            rows = []
            for finding in result.findings[first : first + FINDINGS_PER_ENTRY]:
                named = name(finding)
                row = _finding_row(result.ingest_id, None if named is None else seg_ids.get(named), finding)._asdict()
                del row["ingest_id"]  # the entry's own
                rows.append(row)
            entry = {"type": "ingest_findings", "ingest": result.ingest_id, "findings": rows, "time": time.time_ns()}
            replay.record(catalog, entry)
        end: dict[str, Any] = {
            "type": "ingest_end",
            "ingest": result.ingest_id,
            # The segments are the ingest entries' own facts, the findings the ingest_findings entries': not
            # repeated here, nor built to be dropped (18 MiB at 30,000 files).
            "result": _json_text(result.to_json(per_file=False)),
            "time": time.time_ns(),
        }
        # The interrupted ingests of this volume this run finishes, said where the ledger ends them: until a
        # signed end does, an ingest is under way, and its entries past the latest checkpoint are work in flight
        # that any command signs (custodes.archive); one finished only in the catalog stayed so for good.
        if finishes := catalog.ingests.finished_with(result.ingest_id, volume_text, result.device):
            end["finishes"] = finishes
        replay.record(catalog, end)
    crashpoint("before_checkpoint")
    try:
        result.checkpoint = archive.checkpoint().to_json()
    except CustodesError as e:
        # Recorded, not signed (entries another hand put in between, the checkpoint's file not written): the
        # ingest stands, and a caller is still told what it stored (--json wrote nothing, a hostile review).
        e.done = result
        raise
    # Finished only once signed: until then verify calls this ingest's objects and
    # unsigned ledger entries `pending` (under way, or interrupted: run it again).
    # Running it again is how an interrupted ingest of this volume is finished, so
    # those are marked finished too (their entries are under this checkpoint), and
    # a later rollback of it cannot pass for work in flight.
    with archive.transaction() as catalog:
        catalog.ingests.finish(result.ingest_id, volume_text, result.device, time.time_ns())


def _json_text(obj: Any) -> str:
    """JSON as text SQLite can hold: a name that is not UTF-8 (a lone surrogate in Python)
    becomes its JSON escape (``\\udcff``), so json.loads gives the exact name back."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def _environment(e: BaseException) -> bool:
    """An error of the archive's own storage or catalog (disk full, I/O error, locked, corrupt):
    the ingest cannot go on for any file, so it stops the ingest (and the CLI says so). Any other
    error (a value SQLite or JSON cannot hold, a name already taken) concerns one file only."""
    return isinstance(e, (OSError, sqlite3.OperationalError)) or type(e) is sqlite3.DatabaseError


def _copied(future: Future[_Copy | str]) -> _Copy | str:
    """The copy's result; an unexpected error copying one file is that file's failure."""
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - one file's trouble never stops the volume
        if _environment(e):
            raise
        return f"could not copy: {type(e).__name__}: {e}"


def _record_file(
    catalog: Catalog,
    result: IngestResult,
    f: VolumeFile,
    seg: VolumeSegment | None,
    readings: list[tuple[int, int]],
    copied: _Copy,
    now: int,
) -> str:
    """Record one stored file inside the group's transaction; when what the driver said about it cannot be
    recorded, record the file as it is (its bytes are evidence) with a `malformed` finding. Each attempt is
    its own savepoint, so a failed one leaves nothing of itself. 'stored', 'present' or why not."""
    for attempt in (seg, None) if seg is not None else (None,):
        try:
            with catalog.savepoint():
                return _record(catalog, result.ingest_id, result.device, f.name, attempt, readings, copied, now)
        except Exception as e:  # noqa: BLE001 - one file's metadata never stops the volume
            if _environment(e):
                raise
            if attempt is None:
                return f"stored, but could not be recorded: {type(e).__name__}: {e}"
            result.findings.append(
                Finding(
                    "malformed",
                    f"what the driver read from this file could not be recorded "
                    f"({type(e).__name__}: {e}); recorded as a plain file",
                    result.device,
                    f.path,
                )
            )
    raise AssertionError("unreachable: the last attempt returns")


def _volume_step(
    step: str, volume: str | os.PathLike[str], device: str, run: Callable[[], list[Finding]]
) -> list[Finding]:
    """Findings of a step over the whole volume; if it fails, a finding saying so (the files stay stored)."""
    try:
        return run()
    except Exception as e:  # noqa: BLE001 - a volume-wide check never un-stores the volume
        if _environment(e):
            raise
        return [
            Finding(
                "malformed",
                f"{step} could not be worked out from what the driver read "
                f"({type(e).__name__}: {e}); the files are stored",
                device,
                os.fspath(volume),
            )
        ]


def _late(
    segments: list[VolumeSegment], readings: list[tuple[int, int]], deadline_hours: float, ingest_ns: int, device: str
) -> list[Finding]:
    """Art. 16: footage must be handed in within the deadline after it ends."""
    ends = _corrected([s.end for s in segments], readings)
    deadline = round(deadline_hours * 3600 * NS)
    return [
        Finding(
            "late_ingest",
            f"ingested {(ingest_ns - end) / 3600 / NS:.1f} h after the recording ended (deadline {deadline_hours:g} h)",
            device,
            s.path,
            end,
            ingest_ns,
            evidence={"deadline_hours": deadline_hours, "recording_end": rfc3339(end)},
        )
        for s, end in zip(segments, ends, strict=True)
        # An unset clock is already a clock_unset finding, not a delay.
        if end is not None and clock_is_set(s.start) and ingest_ns - end > deadline
    ]


HEAD_BYTES = 4096


def head_digest(store: ObjectStore | None, name: str | os.PathLike[str]) -> str:
    """SHA-256 of the first 4 KiB of a spool file (``store`` None) or of the object ``name`` in ``store``: lets
    verify tell a truncated object (same head, shorter) from a replaced one."""
    with open(name, "rb") if store is None else store.open(os.fspath(name), 0, HEAD_BYTES) as f:
        return hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()


def _already_present(archive: Archive, device: str, group: list[VolumeFile]) -> dict[str, str]:
    """The volume paths (each with its SHA-256) of the group's files whose device, name, size and content are in
    the archive already: stored, or lawfully purged (its tombstone is in the ledger, and the card that still holds
    it must not bring the bytes back). An object recorded but gone from the store without a tombstone is copied again.

    Only a file seen before is read here (hashed, not copied; all of the group's in one batch), to tell "the
    same file" from "a new file with the same name"."""
    known = {}
    for f in group:
        shas = archive.catalog.segments.objects_named(device, name_text(f.name), name_bytes(f.name), f.size)
        if shas:
            known[f.path] = shas
    present: dict[str, str] = {}
    if not known:  # a volume seen for the first time: no hashing job at all
        return present
    stored: dict[str, StoredObject] = {}
    for r in hash_files(list(known), ("sha256",)):
        sha = r.digests.get("sha256")
        if sha is None or sha not in known[r.path]:
            continue
        found = archive.store.stat(sha)
        if found is not None:
            stored[sha] = found
            present[r.path] = sha
        elif archive.catalog.objects.due_for_removal(sha):
            present[r.path] = sha
    _lock_as_recorded(archive, stored)
    return present


def _lock_as_recorded(archive: Archive, stored: dict[str, StoredObject]) -> None:
    """The storage lock (S3 Object Lock) of objects found present, completed where it is not what the catalog
    says: an ingest killed after recording a group and before locking it (:func:`_record_group`) left them
    recorded and unlocked, and running it again, which finds them present, is what finishes it. Objects the
    storage keeps as recorded cost nothing more here (the first copy's stat is the one taken above)."""
    stores = retention.enforcing_stores(archive)
    if not stored or not stores:
        return
    now = time.time_ns()
    locks = retention.storage_locks(archive, list(stored))
    unlocked = []
    for sha, lock in locks.items():
        for store in stores:
            seen = stored[sha] if store is archive.store else store.stat(sha)
            if seen is not None and not retention.locked_as_recorded(seen, lock, now):
                unlocked.append(sha)
                break
    retention.to_store(archive, unlocked)


#: Computed during every copy, recorded or not, so the read-back can check the copy fast.
READBACK = "blake3"


def _record(
    catalog: Catalog,
    ingest_id: int,
    device: str,
    name: str,
    seg: VolumeSegment | None,
    readings: list[tuple[int, int]],
    copied: _Copy,
    now: int,
) -> str:
    """Catalog row and ledger entry for one stored file, inside the caller's transaction: 'stored' or 'present'."""
    return _record_entry(catalog, _entry_facts(device, name, seg, readings, copied), ingest_id, now)


def _entry_facts(
    device: str, name: str, seg: VolumeSegment | None, readings: list[tuple[int, int]], copied: _Copy
) -> dict[str, Any]:
    """Every fact of one stored file's `ingest` entry but its segment id, ingest and time: what the catalog's
    rows are made from (catalog.replay), and what the ingest's intent keeps so that a re-run can record the file
    although it is gone from the volume (:func:`_recover`).

    The name is kept as :func:`~custodes.drivers.name_text` (``original_name``, ledger ``name``) and,
    when it is not UTF-8, its exact bytes too (``original_name_bytes``, ledger ``name_b64``)."""
    text, raw = name_text(name), name_bytes(name)
    start, end = (seg.start, seg.end) if seg else (None, None)
    c_start, c_end = _corrected([start, end], readings)
    container = None
    if seg is not None and seg.media is not None:
        m = seg.media
        container = json.dumps(
            {
                "creation_time": rfc3339(m.creation_time),
                "duration_ns": None if m.duration is None else round(m.duration * NS),
                "complete": m.complete,
                "missing_bytes": m.missing_bytes,
                "tracks": [{"kind": t.kind, "codec": t.codec, "samples": t.samples} for t in m.tracks],
            }
        )
    facts: dict[str, Any] = {
        "device": device,
        "name": text,
        "size": copied.size,
        "digests": copied.digests,
        "head_sha256": copied.head,
        "kind": seg.kind if seg else "file",
        "start": start,
        "end": end,
        "start_source": seg.start_source if seg else None,
        "corrected_start": c_start,
        "corrected_end": c_end,
        "sequence": seg.sequence if seg and seg.sequence >= 0 else None,
        "important": bool(seg and seg.important),
        "recording": seg.recording if seg else None,
        "chapter": seg.chapter if seg else None,
        "officer": seg.officer if seg else None,
        "container": container,
    }
    if raw is not None:
        facts["name_b64"] = base64.b64encode(raw).decode("ascii")
    return facts


_FINDING_FIELDS = tuple(f.name for f in dataclasses.fields(Finding))


def _intent_entry(
    device: str,
    names: Mapping[str, str],
    segments: Mapping[str, VolumeSegment],
    said: Mapping[str, list[Finding]],
    readings: list[tuple[int, int]],
    started: int,
    path: str,
    copied: _Copy,
) -> str | None:
    """What an intent keeps of the file at volume ``path`` (its name in ``names``), JSON: its ``facts``, as
    :func:`_record_file` would record it (with what the driver read, or as a plain file when that cannot be
    written down), the ``findings`` the driver made of it, and when the ingest ``started``; None when neither
    can be written down. All :func:`_recover` needs to record the file as this ingest would have."""
    seg = segments.get(path)
    # Finding's own fields, as Finding(**f) takes them back (dataclasses.asdict copies deeply: 26 us a finding)
    found = [{k: getattr(f, k) for k in _FINDING_FIELDS} for f in said.get(path, [])]
    for attempt in (seg, None) if seg is not None else (None,):
        try:
            facts = _entry_facts(device, names[path], attempt, readings, copied)
            return _json_text({"facts": facts, "findings": found, "started": started})
        except Exception as e:  # noqa: BLE001 - one file's metadata never stops the volume (as _record_file)
            if _environment(e):
                raise
    return None


def _record_entry(catalog: Catalog, facts: dict[str, Any], ingest_id: int, now: int) -> str:
    """Record the file the ``facts`` (:func:`_entry_facts`) describe, for ingest ``ingest_id``: 'stored', or
    'present' when the archive holds it already (this device, name and content)."""
    raw = base64.b64decode(facts["name_b64"]) if "name_b64" in facts else None
    if catalog.segments.find(facts["device"], facts["name"], raw, facts["digests"]["sha256"]) is not None:
        return "present"
    # Every fact of the segment and its object is in the entry: the rows are made from it (catalog.replay).
    segment = replay.next_id(catalog, "segments")
    replay.record(catalog, {"type": "ingest", "segment": segment, **facts, "ingest": ingest_id, "time": now})
    return "stored"
