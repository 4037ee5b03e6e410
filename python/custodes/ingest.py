"""Ingest: footage off a device volume into the archive, crash-safe.

Every file on the volume (recordings, sidecars, files no driver knows) is

1. copied into the store's ``tmp/`` while it is hashed (one read of the source),
2. fsynced, then read back and hashed again (the copy must equal the source),
3. linked into the write-once store under its SHA-256 (never replacing),
4. recorded in the catalog and the ledger in one SQLite transaction,

then the timeline findings and ``late_ingest`` are recorded, and a signed
checkpoint closes the ingest. A crash anywhere leaves the volume untouched and
the archive verifiable; running the ingest again finishes the work. A file
already in the archive (same device, name and content) is reported as
already present and not copied again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custodes import timeline
from custodes._durable import fsync_file, process_alive
from custodes._faults import crashpoint, storage_op
from custodes.archive import Archive, ArchiveError
from custodes.catalog import replay
from custodes.catalog.devices import DeviceIdentity, FindingRow
from custodes.defaults import NS, clock_is_set
from custodes.drivers import VolumeFile, VolumeReading, VolumeSegment, name_bytes, name_text, scan_volume
from custodes.errors import CustodesError
from custodes.findings import Finding, rfc3339
from custodes.hashing import clamp_workers, hash_files
from custodes.rights import as_checked
from custodes.service import request
from custodes.volumes import read_volume, timeline_findings

__all__ = ["IngestResult", "ingest"]


@dataclass
class IngestResult:
    ingest_id: int
    volume: str
    driver: str
    device: str
    stored: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    bytes: int = 0
    checkpoint: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ingest": self.ingest_id,
            "volume": self.volume,
            "driver": self.driver,
            "device": self.device,
            "stored": self.stored,
            "already_present": self.already_present,
            "failed": self.failed,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "findings": [f.to_json() for f in self.findings],
            "checkpoint": self.checkpoint,
        }


def _refuse_overlap(archive: Archive, volume: Path) -> None:
    """A volume that holds the archive (or its signing key), or lies inside it, is refused:
    ingest would copy the archive into itself, private key included."""
    vol = volume.resolve()
    for inner, outer, what in (
        (archive.root.resolve(), vol, "the archive is inside the volume"),
        (archive.signing_key_path.resolve(), vol, "the archive's signing key is inside the volume"),
        (vol, archive.root.resolve(), "the volume is inside the archive"),
    ):
        if inner == outer or outer in inner.parents:
            raise ArchiveError(f"{volume}: {what}; ingest a device volume from outside the archive")


def _clean_stale_temps(archive: Archive) -> None:
    """Remove copies left in tmp/ by ingests that died (their pid is gone), and a verify's replay folder."""
    for p in archive.store.tmp.iterdir():
        pid = p.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


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
    now: int | None = None,
    workers: int | None = None,
) -> IngestResult:
    """Ingest a device volume into ``archive``. ``progress(bytes_done, bytes_total)`` is called per file;
    ``workers`` files are copied at once (default: one per core, at most 4).

    Stages: read the volume (the driver), record the device and the ingest, store every file
    (copy, read back, record), the volume-wide checks, then the findings, a signed checkpoint,
    and last the mark that the ingest finished."""
    _refuse_overlap(archive, Path(volume))
    opts = dict(options or {})
    if archive.policy.device_time_zone:
        opts.setdefault("tz", archive.policy.device_time_zone)
    opts.setdefault("clock_tolerance", str(archive.policy.clock_tolerance_seconds))
    reading = read_volume(volume, driver, opts)
    files, _, skipped = scan_volume(Path(volume))
    started = time.time_ns() if now is None else now
    _clean_stale_temps(archive)
    volume_text = name_text(os.fspath(Path(volume).resolve()))
    ingest_id, readings = _begin(archive, reading, volume_text, started)
    result = IngestResult(ingest_id, os.fspath(volume), reading.driver, reading.identity.device_id, skipped=skipped)
    _store_files(archive, files, reading, readings, started, result, progress, workers)
    result.findings += reading.findings
    # Every file is stored by now; the volume-wide steps below cannot take that back.
    result.findings += _volume_checks(archive, volume, reading, readings, started)
    _finish(archive, volume, volume_text, result)
    return result


def _begin(archive: Archive, reading: VolumeReading, volume: str, started: int) -> tuple[int, list[tuple[int, int]]]:
    """Record the device as the volume describes it, the ingest, the device's own log and clock readings;
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
                "device": device,
                "identity": {k: getattr(ident, k) for k in DeviceIdentity._fields[1:]},
                "events": [[e.time, e.kind, e.detail] for e in reading.events if e.time is not None],
                "clock_readings": [[c.device_time, c.trusted_time, c.source] for c in reading.clock_readings],
                "time": started,
            },
        )
        return ingest_id, catalog.devices.dock_readings(device)


def _store_files(
    archive: Archive,
    files: list[VolumeFile],
    reading: VolumeReading,
    readings: list[tuple[int, int]],
    started: int,
    result: IngestResult,
    progress: Callable[[int, int], None] | None,
    workers: int | None,
) -> None:
    """Copy every file not already present into the store and record it; each outcome goes into ``result``."""
    device = result.device
    segments = {s.path: s for s in reading.segments}
    total = sum(f.size for f in files)
    done = 0
    # Copies run in parallel (the Rust copy releases the GIL, and one file's
    # fsync overlaps the next one's copy); the catalog and ledger are written
    # by this thread alone, in volume order.
    # The one --workers clamp (hashing.clamp_workers); by default one copy per core, at most 4.
    copies = clamp_workers(workers, max(1, len(files))) or min(4, os.cpu_count() or 1)
    served = request()  # read here: the copying threads do not see the request being served
    checked = None if served is None else frozenset(served.checked)
    with ThreadPoolExecutor(max_workers=copies) as pool:
        # Largest first, so a big file does not start last and leave a worker idle at the end.
        futures = {}
        for f in sorted(files, key=lambda f: -f.size):
            if not _already_present(archive, device, f.path, f.name):
                futures[f.path] = pool.submit(
                    _copy_into_store, archive, f.path, f.name, archive.policy.algorithms, result.ingest_id, checked
                )
        for f in files:
            future = futures.get(f.path)
            copied = "present" if future is None else _copied(future)
            if isinstance(copied, tuple):
                outcome = _record_file(
                    archive, result.ingest_id, device, f, segments.get(f.path), readings, copied, started, result
                )
            else:
                outcome = copied
            if outcome == "stored":
                result.stored.append(f.name)
                result.bytes += f.size
            elif outcome == "present":
                result.already_present.append(f.name)
            else:
                result.failed.append(f.name)
                result.findings.append(Finding("ingest_failed", outcome, device, f.path))
            done += f.size
            if progress is not None:
                progress(done, total)


def _volume_checks(
    archive: Archive,
    volume: str | os.PathLike[str],
    reading: VolumeReading,
    readings: list[tuple[int, int]],
    started: int,
) -> list[Finding]:
    """The checks over the whole volume: its timeline (gaps, overlaps, clocks) and late ingest."""
    device = reading.identity.device_id
    gap_tolerance = round(archive.policy.gap_tolerance_seconds * NS)
    return _volume_step(
        "timeline", volume, device, lambda: timeline_findings([reading], gap_tolerance=gap_tolerance)
    ) + _volume_step(
        "late_ingest",
        volume,
        device,
        lambda: _late(reading.segments, readings, archive.policy.ingest_deadline_hours, started, device),
    )


def _finish(archive: Archive, volume: str | os.PathLike[str], volume_text: str, result: IngestResult) -> None:
    """Record the findings and the result, sign a checkpoint, then mark the ingest finished."""
    with archive.transaction() as catalog:
        seg_ids = catalog.segments.ids_by_name(result.ingest_id)
        findings = []
        for finding in result.findings:
            name = name_text(os.path.relpath(finding.path, volume)) if finding.path else None
            findings.append(_finding_row(result.ingest_id, seg_ids.get(name), finding)._asdict())
        replay.record(
            catalog,
            {
                "type": "ingest_end",
                "ingest": result.ingest_id,
                "findings": [{k: v for k, v in f.items() if k != "ingest_id"} for f in findings],
                "result": _json_text({k: v for k, v in result.to_json().items() if k != "findings"}),
                "time": time.time_ns(),
            },
        )
    crashpoint("before_checkpoint")
    result.checkpoint = archive.checkpoint().to_json()
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


def _copied(future: Any) -> tuple[int, dict[str, str], str] | str:
    """The copy's result; an unexpected error copying one file is that file's failure."""
    try:
        return future.result()  # type: ignore[no-any-return]
    except Exception as e:  # noqa: BLE001 - one file's trouble never stops the volume
        if _environment(e):
            raise
        return f"could not copy: {type(e).__name__}: {e}"


def _record_file(
    archive: Archive,
    ingest_id: int,
    device: str,
    f: VolumeFile,
    seg: VolumeSegment | None,
    readings: list[tuple[int, int]],
    copied: tuple[int, dict[str, str], str],
    now: int,
    result: IngestResult,
) -> str:
    """Record one stored file; when what the driver said about it cannot be recorded, record the
    file as it is (its bytes are evidence) with a `malformed` finding. 'stored', 'present' or why not."""
    try:
        with _CATALOG_WRITES:
            return _record(archive, ingest_id, device, f.name, seg, readings, *copied, now)
    except Exception as e:  # noqa: BLE001 - one file's metadata never stops the volume
        if _environment(e):
            raise
        if seg is None:
            return f"stored, but could not be recorded: {type(e).__name__}: {e}"
        result.findings.append(
            Finding(
                "malformed",
                f"what the driver read from this file could not be recorded "
                f"({type(e).__name__}: {e}); recorded as a plain file",
                device,
                f.path,
            )
        )
    try:
        with _CATALOG_WRITES:
            return _record(archive, ingest_id, device, f.name, None, readings, *copied, now)
    except Exception as e:  # noqa: BLE001
        if _environment(e):
            raise
        return f"stored, but could not be recorded: {type(e).__name__}: {e}"


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


def head_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's first 4 KiB: lets verify tell a truncated object
    (same head, shorter) from a replaced one."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()


def _already_present(archive: Archive, device: str, path: str, name: str) -> bool:
    """The same device, name, size and content is in the archive already: stored, or lawfully purged
    (its tombstone is in the ledger, and the card that still holds it must not bring the bytes back).
    An object recorded but gone from the store without a tombstone is copied again.

    Only a file seen before is read here (hashed, not copied), to tell "the
    same file" from "a new file with the same name"."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False  # gone or unreadable since the scan: the copy will say exactly why
    known = archive.catalog.segments.objects_named(device, name_text(name), name_bytes(name), size)
    if not known:
        return False
    (r,) = hash_files([path], ("sha256",))
    if not r.ok or r.digests["sha256"] not in known:
        return False
    sha = r.digests["sha256"]
    return archive.store.stat(sha) is not None or archive.catalog.objects.due_for_removal(sha)


#: Computed during every copy, recorded or not, so the read-back can check the copy fast.
READBACK = "blake3"


def _note_intent(archive: Archive, ingest_id: int, sha256: str) -> None:
    """Write down, durably and before the object is linked into the store, that this ingest is
    about to link it: until the ingest records it, verify reports it as `pending`, not `unexpected`.

    Runs in a copy worker, so through a connection of its own (the archive's is the main thread's).
    Its cost is one catalog commit (an fsync) per file: a few ms, nothing beside copying a
    recording, but measurable on a volume of many tiny files (300 x 20 KB: about 2x)."""
    with archive.catalog.another() as catalog, _CATALOG_WRITES, catalog.transaction():
        catalog.ingests.note_intent(sha256, ingest_id, time.time_ns())


#: Catalog writes of this process's ingest threads (intents from copy workers, records from the
#: main thread) take turns here: a thread waiting on SQLite's own lock polls it with sleeps of up
#: to 100 ms; this wakes the next writer as soon as the last commits. Other processes still meet
#: SQLite's lock.
_CATALOG_WRITES = threading.Lock()


def _copy_into_store(
    archive: Archive,
    path: str,
    name: str,
    algorithms: tuple[str, ...],
    ingest_id: int,
    checked: frozenset[tuple[int, int]] | None = None,
) -> tuple[int, dict[str, str], str] | str:
    """Copy, fsync, read back from the disk and compare, note the intent, link into the store. ``checked``:
    through the service, the files the caller was found to be able to read (custodes.rights.as_checked).

    Returns (size, digests, head digest), or the reason it failed."""
    temp = archive.store.new_temp(os.path.basename(name)[-40:])
    crashpoint("copy")
    computed = algorithms if READBACK in algorithms else (*algorithms, READBACK)
    try:
        with as_checked(path, checked) as source:
            size, raw = archive.store_copy(source, temp, computed)
    except CustodesError as e:
        temp.unlink(missing_ok=True)
        return f"could not copy: {e}"
    digests = {a: d.hex() for a, d in zip(computed, raw, strict=True)}
    crashpoint("after_copy")
    try:
        # With readback = "storage", the read-back below comes from the storage itself, not the page cache.
        fsync_file(temp, drop_cache=archive.policy.readback == "storage")
        crashpoint("after_fsync")
        storage_op("read", temp)
        (back,) = hash_files([temp], (READBACK,))
        if not back.ok:
            temp.unlink(missing_ok=True)
            return f"could not read the copy back: {back.error}"
        if back.digests[READBACK] != digests[READBACK]:
            temp.unlink(missing_ok=True)
            return "the copy read back differs from what was read from the volume (storage fault?)"
        crashpoint("after_readback")
        storage_op("read", temp)
        head = head_digest(temp)
        _note_intent(archive, ingest_id, digests["sha256"])
        archive.store.put(temp, digests["sha256"])
    except OSError as e:
        # The archive's storage failed this file (EIO, ENOSPC at an fsync,
        # read-back or link): its copy goes, the file is reported
        # ingest_failed with the reason, the rest of the volume goes on, and
        # a re-run copies it again. put() leaves no half-made object.
        temp.unlink(missing_ok=True)
        return f"could not store the copy: {e}"
    crashpoint("after_link")
    return size, {a: digests[a] for a in algorithms}, head


def _record(
    archive: Archive,
    ingest_id: int,
    device: str,
    name: str,
    seg: VolumeSegment | None,
    readings: list[tuple[int, int]],
    size: int,
    digests: dict[str, str],
    head: str,
    now: int,
) -> str:
    """Catalog row and ledger entry for one stored file, in one transaction: 'stored' or 'present'.

    The name is kept as :func:`~custodes.drivers.name_text` (``original_name``, ledger ``name``) and,
    when it is not UTF-8, its exact bytes too (``original_name_bytes``, ledger ``name_b64``)."""
    sha = digests["sha256"]
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
    with archive.transaction() as catalog:
        if catalog.segments.find(device, text, raw, sha) is not None:
            return "present"
        # Every fact of the segment and its object is in the entry: the rows are made from it (catalog.replay).
        entry = {
            "type": "ingest",
            "segment": replay.next_id(catalog, "segments"),
            "device": device,
            "name": text,
            "size": size,
            "digests": digests,
            "head_sha256": head,
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
            "officer": seg.extra.get("officer") if seg else None,
            "container": container,
            "ingest": ingest_id,
            "time": now,
        }
        if raw is not None:
            entry["name_b64"] = base64.b64encode(raw).decode("ascii")
        replay.record(catalog, entry)
        crashpoint("in_transaction")
    crashpoint("after_commit")
    return "stored"
