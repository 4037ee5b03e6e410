"""Evidence export (Art. 21): a BagIt 1.0 bag that proves itself, and a disc image.

The bag (RFC 8493) holds the copies under ``data/<device>/<original name>``,
``manifest-sha256.txt`` (and ``manifest-sm3.txt`` when the policy records
SM3), ``bag-info.txt`` with the written note Art. 21 asks for (producer,
extractor, extraction time, case), a ``custody/`` folder with the ledger
entries of these recordings, their RFC 9162 inclusion proofs, the signed
checkpoint and the verifier key, and a tag manifest over all of it. Anyone
holding only the bag can check it (:func:`validate_bag`): payload against
manifests, and custody entries against the checkpoint's signed root.

Exports need an approved ``export`` access request that names every
recording of the case; the export itself is a ledger entry, so its proof is
in the bag it produced.
"""

from __future__ import annotations

import base64
import errno
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from custodes import __version__, keys, merkle
from custodes._durable import ascii_digits, fsync_dir, fsync_file, left_by_dead_process, process_tag
from custodes._faults import crashpoint, storage_op, write_cut_short
from custodes.access import current_person, grant_for, if_undelivered
from custodes.archive import Archive, UnsignedEntriesError, exports_folder, refuse_inside_archive, refuse_links
from custodes.bags import BagError, BagReport, payload_path, shown, validate_bag
from custodes.bags import manifest_path as _manifest_path
from custodes.catalog import replay
from custodes.findings import rfc3339
from custodes.hashing import hash_files
from custodes.identity import current_caller
from custodes.storage import copy_object

# validate_bag and BagReport live in custodes.bags (the checked readers of untrusted bags); kept here too.
__all__ = [
    "NEW_BAG",
    "BagReport",
    "ExportError",
    "check_iso_target",
    "export_case",
    "sweep_exports",
    "sweep_undelivered",
    "validate_bag",
    "write_iso",
]


#: The storage errors the CLI turns into its own advice (custodes.cli.environment_error); any other
#: failure becomes one ExportError line.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM})


class ExportError(BagError):
    """An export that cannot be made as asked (no such case, a folder in the way, a failed copy)."""

    kind = "export"


def export_case(
    archive: Archive, case: str, request_id: int, to: str | os.PathLike[str], description: str = ""
) -> Path:
    """Write the bag of a case's recordings to ``to`` (a new or empty folder).

    The order makes the ledger honest at every step: the bag is staged beside ``to`` and validated; only
    then is the export entry appended; the custody files that prove that entry are written and the whole
    bag checked again; then it is moved into place. Any failure after the grant is an ``export_failed``
    entry naming the reason, and its staging folder is removed; a crash leaves the staging folder (a
    hidden ``.partial-`` name), which the next export to ``to`` removes and ledgers as failed."""
    bag = refuse_inside_archive(archive, to, "--to")
    refuse_links(bag, "--to")
    check_destination(bag)
    rows = archive.catalog.segments.of_case(case)
    if not rows:
        raise ExportError(f"case {case!r} has no recordings in this archive")
    segments = [r[0] for r in rows]
    grant_for(archive, request_id, segments, "export", "export")
    # Only once the export is granted: a refused one changes nothing (it removed, and ledgered, what crashed
    # exports to the same place had left, for anyone who asked).
    _clean_stale_staging(archive, bag)
    extractor = current_person(archive)
    now = time.time_ns()
    about: dict[str, Any] = {"case": case, "request": request_id, "segments": segments, "by": extractor}
    final, staging, export_seq = bag, None, None
    try:
        staging = _staging(final, now)
        payload = _stage(archive, staging, rows, about, now, description)
        _check_staged(staging, hash_payload=True)
        with archive.transaction() as tx:
            export_seq = replay.record(tx, {"type": "export", **about, "time": now})
        crashpoint("export_entry_committed")
        checkpoint = archive.checkpoint()
        _write_custody(archive, staging, [p[4] for p in payload] + [export_seq], checkpoint.size, checkpoint.note)
        _write_tag_manifest(staging)
        _check_staged(staging, hash_payload=False)  # the payload was hashed above; now its custody is checked
        refuse_links(final, "--to")  # again: a link planted on the way since the first look is not followed
        _publish(staging, final)
    except BaseException as e:
        why = _reason(e)
        if _record_failure(archive, about, export_seq, why) is None:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS):
            raise  # the CLI names the file and what to do (a full disk, a failing one ...), or stops as Ctrl-C does
        raise ExportError(
            f"export of case {case} failed: {why}; the failure is in the ledger and no bag was left at {final}"
        ) from None
    # Through the service the bag still has to reach the caller: if it does not, the export is ledgered failed.
    # The caller's account goes with it: a service that records it after a crash is not the one who exported.
    if_undelivered(
        {"type": "export_failed", **about, "export": export_seq, "account": current_caller().account}, "reason"
    )
    return final


def _reason(e: BaseException) -> str:
    """One line for the ledger: what failed (an OSError names its file)."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    if isinstance(e, OSError):
        where = f" ({os.fsdecode(e.filename)})" if e.filename is not None else ""
        return f"{e.strerror or e}{where}"
    if isinstance(e, UnsignedEntriesError):  # (its own words say the act stands: this one does not)
        return (
            f"entries no checkpoint covers that no custodes command under way wrote ({e.foreign}) came into the "
            "ledger while it ran, and nothing is signed past them (`custodes verify` names them; `custodes ledger "
            "checkpoint` signs them once each is known to be custodes' own)"
        )
    return str(e) or type(e).__name__


def _record_failure(archive: Archive, about: dict[str, Any], export_seq: int | None, why: str) -> str | None:
    """Append ``export_failed`` (naming the export entry when one was appended, so no reader takes that
    entry for a bag that exists) and sign a checkpoint. What failed when even that failed: the staging folder
    is then kept for the next export to ``--to`` to ledger (see :func:`_clean_stale_staging`)."""
    try:
        with archive.transaction() as tx:
            replay.record(
                tx, {"type": "export_failed", **about, "export": export_seq, "reason": why, "time": time.time_ns()}
            )
        archive.checkpoint()
    except UnsignedEntriesError:
        return None  # recorded, and left unsigned beside those entries as the export's own: the staging goes
    except Exception as e:  # the first error is the one the person sees (the caller's)
        return str(e)
    return None


def _stage(
    archive: Archive, bag: Path, rows: list[Any], about: dict[str, Any], now: int, description: str
) -> list[tuple[str, Path, dict[str, str], int, int, int]]:
    """The payload copies (each re-hashed against the archive's digests), the manifests, bagit.txt and
    bag-info.txt, in the staging folder ``bag``; returns (bag path, copy, digests, size, ledger seq, segment)."""
    (bag / "data").mkdir()  # new, so nothing else can be mixed into the bag
    payload: list[tuple[str, Path, dict[str, str], int, int, int]] = []
    taken: set[str] = set()
    for seg, device, name, sha, size, seq, _officer, digests in rows:  # in segment order, as payload_path wants
        rel = Path(payload_path(device, name, seg, taken))
        target = bag / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # The exporter's alone (BAG_FILE_MODE), whatever the umask: a copy of evidence is not for every account.
        write_cut_short(target, functools.partial(copy_object, archive.store, sha, target, mode=BAG_FILE_MODE))
        payload.append((rel.as_posix(), target, json.loads(digests), size, seq, seg))
    algorithms = ["sha256"] + (["sm3"] if "sm3" in archive.policy.algorithms else [])
    for _, p, *_ in payload:
        storage_op("read", p)
    copies = hash_files([p for _, p, *_ in payload], algorithms)
    for (written, _, digests, size, _, _), r in zip(payload, copies, strict=True):
        if not r.ok or r.digests["sha256"] != digests["sha256"] or r.size != size:
            raise ExportError(
                f"the copy of {written} differs from the archive's object; nothing exported is to be trusted"
            )
    for algo in algorithms:
        lines = "".join(
            f"{r.digests[algo]}  {_manifest_path(rel)}\n" for (rel, *_), r in zip(payload, copies, strict=True)
        )
        _write_text(bag / f"manifest-{algo}.txt", lines)
    _write_text(bag / "bagit.txt", "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    producers = sorted({f"{officer or 'unknown officer'} ({device})" for _, device, _, _, _, _, officer, _ in rows})
    oxum = f"{sum(p[3] for p in payload)}.{len(payload)}"
    info = [
        ("Source-Organization", archive.policy.origin),
        ("Producer", "; ".join(producers)),
        ("Extractor", about["by"]),
        ("Extraction-Date", rfc3339(now)),
        ("Case-Number", about["case"]),
        (
            "External-Description",
            description or f"Evidence of case {about['case']}, exported under access request {about['request']}",
        ),
        ("Bagging-Date", datetime.fromtimestamp(now / 1e9, tz=UTC).strftime("%Y-%m-%d")),
        ("Payload-Oxum", oxum),
        ("Bag-Software-Agent", f"custodes {__version__}"),
        ("Verifier-Key-Fingerprint", keys.fingerprint(archive.verifier_key)),  # custody/checkpoint.vkey's
    ]
    # A device id or officer comes from a device file: shown() keeps it on its line (a newline would add a field)
    _write_text(bag / "bag-info.txt", "".join(f"{k}: {shown(str(v))}\n" for k, v in info))
    return payload


def check_destination(bag: Path) -> None:
    """``--to`` names a new folder or an empty one: a bag never lands on a file or mixes into other files
    (another bag above all). Checked before anything is logged or written. What a crashed export to ``bag`` left
    inside it (its staging folder, when ``bag`` is a mount point) does not count: the export removes it."""
    if (bag.is_symlink() and not bag.exists()) or (bag.exists() and not bag.is_dir()):
        raise ExportError(f"{bag}: exists and is not a folder; give --to a new folder for the bag")
    if bag.is_dir():
        try:
            stale = set(_stale_staging(bag))
            empty = not any(p not in stale for p in bag.iterdir())
        except OSError as e:
            raise ExportError(f"{bag}: cannot be listed ({e.strerror}); give --to a new folder for the bag") from e
        if not empty:
            raise ExportError(f"{bag}: folder is not empty; a bag is written to a new or empty folder")
        return
    above = bag.absolute().parent  # the folder will be made: its nearest existing ancestor must take it
    while not os.path.lexists(above) and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ExportError(f"{bag}: {above} is not a folder; give --to a new folder in a writable place")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ExportError(f"{bag}: {above} is not writable; give --to a new folder in a writable place")


def _write_custody(archive: Archive, bag: Path, seqs: list[int], size: int, note: str) -> None:
    """custody/: the ledger entries ``seqs`` (the recordings' ingests and the export), each with its
    inclusion proof in the checkpoint of ``size`` (signed after the export entry), the note and the key."""
    custody = bag / "custody"
    custody.mkdir()
    leaves = archive.leaves(size)
    # The key rotations too: they lead from the first key (checkpoint.vkey) to the one that signed (custodes.keys).
    rotations = {i for i, _ in archive.catalog.ledger.of_type(keys.ROTATION) if i < size}
    wanted = sorted(set(seqs) | rotations)
    entries, proofs = [], []
    for seq in wanted:
        data = archive.catalog.ledger.entry(seq)
        assert data is not None  # seq < size, which the export's own checkpoint covers
        entries.append(json.dumps({"index": seq, "entry": base64.b64encode(data).decode()}))
        proofs.append(
            {
                "index": seq,
                "leaf_hash": leaves[seq].hex(),
                "tree_size": size,
                "proof": [h.hex() for h in merkle.inclusion_proof(leaves, seq)],
            }
        )
    _write_text(custody / "ledger-entries.jsonl", "\n".join(entries) + "\n")
    _write_text(custody / "inclusion-proofs.json", json.dumps(proofs, indent=1) + "\n")
    _write_text(custody / "checkpoint", note)
    _write_text(custody / "checkpoint.vkey", str(archive.verifier_key) + "\n")


def _write_tag_manifest(bag: Path) -> None:
    """tagmanifest-sha256.txt over every file outside data/ (custody/ included), written last."""
    tag_files = sorted(
        p
        for p in bag.rglob("*")
        if p.is_file()
        and not p.relative_to(bag).as_posix().startswith("data/")
        and not p.name.startswith("tagmanifest-")
    )
    _write_text(
        bag / "tagmanifest-sha256.txt",
        "".join(
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {_manifest_path(p.relative_to(bag).as_posix())}\n"
            for p in tag_files
        ),
    )


def _check_staged(bag: Path, hash_payload: bool) -> None:
    """The staged bag as ``bag validate`` reads it: any problem stops the export before it is published."""
    report = validate_bag(bag, hash_payload=hash_payload)
    if not report.valid:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise ExportError(f"the staged bag is not valid: {report.problems[0]}{more}")


def _write_text(path: Path, text: str) -> None:
    storage_op("write", path)
    path.write_text(text, encoding="utf-8")


def _staging_place(final: Path) -> tuple[Path, str]:
    """Where the bag is written before it is published: beside ``final`` (so one rename publishes it), or
    inside it when ``final`` is a mount point (a rename cannot replace one); (folder, name prefix)."""
    if final.is_dir() and os.path.ismount(final):
        return final, ".custodes-partial-"
    return final.parent, f".{final.name}.partial-"


def _clean_stale_staging(archive: Archive, final: Path) -> None:
    """Remove the staging folders of exports to ``final`` whose process is gone (killed, a power cut).
    One whose export entry is in the ledger with no outcome is ledgered as failed first: its bag never
    reached ``final``, and the ledger must not read as if it had."""
    _, prefix = _staging_place(final)
    for old in _stale_staging(final):
        started = old.name[len(prefix) :].partition("-")[2]
        # The export entry comes after the bag was staged and checked: a folder without a staged bag in it
        # (a crash right after it was made, or one made by hand) stands for no entry.
        if ascii_digits(started) and (old / "data").is_dir() and (old / "bagit.txt").is_file():
            _ledger_interrupted(archive, int(started), old)
        shutil.rmtree(old, ignore_errors=True)


#: What a staging folder holds at any moment of an export: the payload, the custody files and the tag files.
_STAGED = re.compile(r"data|custody|bagit\.txt|bag-info\.txt|(tag)?manifest-[a-z0-9]+\.txt")


def _stale_staging(final: Path) -> list[Path]:
    """The staging folders of exports to ``final`` whose process is gone: folders of this account (not links)
    holding nothing but what an export stages. Anything else with such a name is left as it is (a hostile review:
    a folder of notes named like one was removed with its files, and a link or an empty folder named after a
    delivered export's time had it ledgered as failed)."""
    parent, prefix = _staging_place(final)
    stale = []
    for old in parent.glob(f"{glob.escape(prefix)}*") if parent.is_dir() else ():
        try:
            st = os.lstat(old)
        except OSError:
            continue
        if not left_by_dead_process(old.name[len(prefix) :], st.st_mtime_ns):
            continue
        try:
            ours = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            if ours and all(_STAGED.fullmatch(name) for name in os.listdir(old)):
                stale.append(old)
        except OSError:  # gone meanwhile, or not ours to read: not ours to remove
            continue
    return stale


def sweep_undelivered(archive: Archive, final: Path) -> None:
    """What an export left at ``final`` in an outbox of an archive service that died (custodes.service): the
    staging folder of a crash before the bag was published, handled as after any crash, or a published bag
    that never reached the caller, whose export entry (found in the bag's own custody entries) is then
    ledgered failed too. The caller removes ``final``'s folder afterwards."""
    _clean_stale_staging(archive, final)
    entries = final / "custody" / "ledger-entries.jsonl"
    if final.is_symlink() or not entries.is_file():
        return
    for line in entries.read_text(encoding="utf-8").splitlines():
        entry = json.loads(base64.b64decode(json.loads(line)["entry"]))
        if entry.get("type") == "export" and isinstance(entry.get("time"), int):
            why = "the archive service stopped before the caller had the bag; the bag was removed"
            _ledger_interrupted(archive, entry["time"], final, why)


def _ledger_interrupted(archive: Archive, started: int, staging: Path, why: str | None = None) -> None:
    """``export_failed`` for the export entry of time ``started`` (the staging folder's name carries it)
    unless the ledger already holds its outcome; nothing when the crash came before that entry."""
    export_seq, about = None, None
    for row in archive.catalog.ledger.walk():  # rare (after a crash only), so a plain walk
        entry = json.loads(row.entry)
        if entry.get("type") == "export" and entry.get("time") == started:
            export_seq, about = row.seq, {k: entry.get(k) for k in ("case", "request", "segments", "by")}
        elif entry.get("type") == "export_failed" and export_seq is not None and entry.get("export") == export_seq:
            return
    if about is not None:
        why = why or f"interrupted before its bag was published; its partial bag {staging.name} is removed"
        failed = _record_failure(archive, about, export_seq, why)
        if failed is not None:
            raise ExportError(f"{staging}: an interrupted export could not be ledgered as failed ({failed}); run again")


def _staging(final: Path, started: int) -> Path:
    """A new staging folder for the bag of ``final``, named by this process and the export's time."""
    parent, prefix = _staging_place(final)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f"{prefix}{process_tag()}-{started}"
        staging.mkdir()
    except OSError as e:
        raise ExportError(
            f"{final}: cannot create the bag folder ({e.strerror}); give --to a new folder in a writable place"
        ) from e
    return staging


#: A bag's files and folders are the exporter's alone, embedded or through the archive service alike: with a
#: umask of 022 an embedded export left copies of the footage readable by every account (a hostile review; the
#: service's were 0600/0700, and `access open --to` writes 0400). The exporter widens them to hand the bag over;
#: the disc image records every file readable (write_iso).
BAG_FILE_MODE, BAG_FOLDER_MODE = 0o600, 0o700


def _publish(staging: Path, final: Path) -> None:
    """Make every file and folder of the bag the exporter's alone and durable, then move it to ``final`` (a new or
    empty folder)."""
    for folder, _dirs, files in os.walk(staging, topdown=False):
        for name in files:
            os.chmod(os.path.join(folder, name), BAG_FILE_MODE, follow_symlinks=False)
            fsync_file(Path(folder) / name)
        os.chmod(folder, BAG_FOLDER_MODE)
        fsync_dir(Path(folder))
    if staging.parent == final:  # a mount point: move the entries up, the bag declaration last
        moved: list[str] = []
        try:
            for entry in sorted(staging.iterdir(), key=lambda p: p.name == "bagit.txt"):
                storage_op("write", final / entry.name)
                os.rename(entry, final / entry.name)
                moved.append(entry.name)
            fsync_dir(final)
        except OSError:
            for name in moved:  # not durable, so not exported: back for the caller to remove
                os.rename(final / name, staging / name)
            raise
        staging.rmdir()
        return
    was_folder = final.is_dir()
    storage_op("write", final)
    os.rename(staging, final)  # replaces an empty folder at --to; never a non-empty one
    try:
        fsync_dir(final.parent)
    except OSError:
        # Not durable, so not exported: moved back for the caller to remove, and a re-run writes it again.
        os.rename(final, staging)
        if was_folder:
            final.mkdir()
        raise


def check_iso_target(archive: Archive, iso: str | os.PathLike[str], bag: str | os.PathLike[str]) -> Path:
    """Refuse a disc-image path before anything is exported (and logged): it must be a
    new file in an existing folder, outside the archive and outside the bag it images.
    An image written over an existing file could destroy evidence, a catalog or a key."""
    return check_iso_path(refuse_links(refuse_inside_archive(archive, iso, "--iso"), "--iso"), bag)


def check_iso_path(iso: str | os.PathLike[str], bag: str | os.PathLike[str]) -> Path:
    """The checks of :func:`check_iso_target` that need no archive: also made by the CLI on the caller's own
    paths when the export runs in the archive service (which sees only its outbox)."""
    target = Path(iso)
    resolved, bag_dir = target.resolve(), Path(bag).resolve()
    if resolved == bag_dir or bag_dir in resolved.parents:
        raise ExportError(f"--iso {target}: that is inside the bag it would image; write the disc image beside the bag")
    if os.path.lexists(target):
        raise ExportError(f"--iso {target}: a file is already there; name a new file (a disc image never replaces one)")
    if not target.absolute().parent.is_dir():
        raise ExportError(f"--iso {target}: the folder {target.absolute().parent} does not exist")
    return target


def write_iso(bag: Path, iso: Path, label: str) -> None:
    """A disc image of the bag, ready to burn (ISO 9660 level 3: files over 4 GiB; Joliet and Rock Ridge names).

    xorriso writes a temporary name beside ``iso``, made first as the exporter's alone (as the bag's files); the
    image is then linked into place, which refuses to replace a file that appeared meanwhile. Inside it every file
    is readable by all and owned by no one in particular (Rock Ridge rationalized, ``-r``): a disc handed to a
    court is read by other accounts on other machines."""
    volid = "".join(c if c.isalnum() or c == "_" else "_" for c in label.upper())[:32] or "CUSTODES"
    temp = iso.with_name(f".{iso.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, BAG_FILE_MODE))
        out = subprocess.run(
            [
                "xorriso",
                "-as",
                "mkisofs",
                "-iso-level",
                "3",
                "-J",
                "-joliet-long",
                "-r",
                "-V",
                volid,
                "-o",
                str(temp),
                str(bag),
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise ExportError(f"--iso {iso}: xorriso failed: {out.stderr.strip()[-400:]}")
        fsync_file(temp)
        try:
            os.link(temp, iso)
        except FileExistsError:
            raise ExportError(
                f"--iso {iso}: a file appeared there while the image was written; it was left alone"
            ) from None
    finally:
        temp.unlink(missing_ok=True)


#: The name a bag exported for download (custodes.web) has in ``ARCHIVE/exports/`` until it is named by its
#: export entry.
NEW_BAG = "new-"


def sweep_exports(archive: Archive, keep: int | None = None) -> list[str]:
    """Remove from ``exports/`` the bags that may no longer be downloaded, and what a crash left; returns the
    names removed. Run (under the write lock) before each export and download on the review page, and by a
    purge once its objects are gone (custodes.retention): a bag holding a purged recording is not kept a moment
    longer for the next download to find.

    - A bag whose export request's window has closed, or one of whose recordings was purged since: it is a
      copy of the footage, kept only for the download the window allows (``keep``: the export being asked
      for now, left for its refusal to be logged first; the next sweep removes it).
    - A ``new-*`` bag (a crash came after the bag was published, before it was named by its entry): its
      requester never had it, so its export is ledgered failed (custodes.export.sweep_undelivered, the
      service's rule for a bag that never reached its caller) and it is removed; a staging folder of a dead
      export is ledgered and removed by the same rule."""
    folder = exports_folder(archive)
    removed: list[str] = []
    now = time.time_ns()
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        name = path.name
        if ascii_digits(name) and int(name) != keep and not _downloadable(archive, int(name), now):
            _remove(path)
        elif name.startswith(NEW_BAG):
            sweep_undelivered(archive, path)
            _remove(path)
        elif name.startswith(f".{NEW_BAG}") and ".partial-" in name:
            sweep_undelivered(archive, folder / name[1 : name.index(".partial-")])
            if path.exists():
                continue  # the staging folder of a live export: not this sweep's
        else:
            continue
        removed.append(name)
    return removed


def _remove(path: Path) -> None:
    """A bag's folder removed; a link or a file in its place removed itself, never what a link points to (a
    hostile review: a purge's sweep removed folders outside the archive through a link, or ended in a traceback)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _downloadable(archive: Archive, export: int, now: int) -> bool:
    """Whether the bag of ``export`` may still be downloaded by someone: its request approved and unexpired,
    and none of its recordings purged."""
    data = archive.catalog.ledger.entry(export)
    entry: dict[str, Any] = json.loads(data) if data is not None else {}
    row = archive.catalog.access.get(int(entry.get("request", -1))) if entry.get("type") == "export" else None
    if row is None or row.status != "approved" or row.valid_until_ns is None or row.valid_until_ns <= now:
        return False
    segments = [int(s) for s in entry.get("segments", [])]
    return all(purged is None for _s, _level, purged in archive.catalog.segments.access_facts(segments))
