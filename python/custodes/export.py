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
import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from custodes import __version__, ledger, merkle
from custodes._durable import fsync_dir, fsync_file, process_alive
from custodes._faults import storage_op, write_cut_short
from custodes.access import current_person, grant_for
from custodes.archive import Archive, refuse_inside_archive
from custodes.bags import BagError, BagReport, payload_path, validate_bag
from custodes.bags import manifest_path as _manifest_path
from custodes.findings import rfc3339
from custodes.hashing import hash_files

# validate_bag and BagReport live in custodes.bags (the checked readers of untrusted bags); kept here too.
__all__ = ["BagReport", "ExportError", "check_iso_target", "export_case", "validate_bag", "write_iso"]


class ExportError(BagError):
    """An export that cannot be made as asked (no such case, a folder in the way, a failed copy)."""

    kind = "export"


def export_case(
    archive: Archive, case: str, request_id: int, to: str | os.PathLike[str], description: str = ""
) -> Path:
    """Write the bag of a case's recordings to ``to`` (a new or empty folder)."""
    bag = refuse_inside_archive(archive, to, "--to")
    _clean_stale_staging(bag)  # what a crashed export left must not make --to look taken
    check_destination(bag)
    rows = archive.catalog.segments.of_case(case)
    if not rows:
        raise ExportError(f"case {case!r} has no recordings in this archive")
    grant_for(archive, request_id, [r[0] for r in rows], "export", "export")
    extractor = current_person(archive)
    # The bag is written in a staging folder and moved into place whole once
    # every byte is fsynced: a storage error or a crash part way never leaves
    # a half bag at --to, and running the export again finishes it.
    final = bag
    try:  # made before the export is logged; data/ is new, so nothing else can be mixed into the bag
        bag = _staging(final)
        (bag / "data").mkdir()
    except OSError as e:
        raise ExportError(
            f"{final}: cannot create the bag folder ({e.strerror}); give --to a new folder in a writable place"
        ) from e
    try:
        now = time.time_ns()
        with archive.transaction() as tx:
            ledger.append(
                tx,
                {
                    "type": "export",
                    "case": case,
                    "request": request_id,
                    "segments": [r[0] for r in rows],
                    "by": extractor,
                    "time": now,
                },
            )
        checkpoint = archive.checkpoint()
        payload: list[tuple[str, Path, dict[str, str], int, int, int]] = []
        taken: set[str] = set()
        for seg, device, name, sha, size, seq, _officer, digests in rows:  # in segment order, as payload_path wants
            rel = Path(payload_path(device, name, seg, taken))
            target = bag / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.store.get(sha)
            storage_op("read", source)
            write_cut_short(target, functools.partial(shutil.copyfile, source, target))
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
            ("Extractor", extractor),
            ("Extraction-Date", rfc3339(now)),
            ("Case-Number", case),
            (
                "External-Description",
                description or f"Evidence of case {case}, exported under access request {request_id}",
            ),
            ("Bagging-Date", datetime.fromtimestamp(now / 1e9, tz=UTC).strftime("%Y-%m-%d")),
            ("Payload-Oxum", oxum),
            ("Bag-Software-Agent", f"custodes {__version__}"),
        ]
        _write_text(bag / "bag-info.txt", "".join(f"{k}: {v}\n" for k, v in info))
        _write_custody(archive, bag, [p[4] for p in payload], checkpoint.size, checkpoint.note)
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
        _publish(bag, final)
    except BaseException:
        shutil.rmtree(bag, ignore_errors=True)
        raise
    return final


def check_destination(bag: Path) -> None:
    """``--to`` names a new folder or an empty one: a bag never lands on a file or mixes into other files
    (another bag above all). Checked before anything is logged or written."""
    if (bag.is_symlink() and not bag.exists()) or (bag.exists() and not bag.is_dir()):
        raise ExportError(f"{bag}: exists and is not a folder; give --to a new folder for the bag")
    if bag.is_dir():
        try:
            empty = not any(bag.iterdir())
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
    custody = bag / "custody"
    custody.mkdir()
    leaves = archive.leaves(size)
    export_seq = size - 1  # the export entry just written is the last one the checkpoint covers
    wanted = sorted(set(seqs) | {export_seq})
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


def _write_text(path: Path, text: str) -> None:
    storage_op("write", path)
    path.write_text(text, encoding="utf-8")


def _staging_place(final: Path) -> tuple[Path, str]:
    """Where the bag is written before it is published: beside ``final`` (so one rename publishes it), or
    inside it when ``final`` is a mount point (a rename cannot replace one); (folder, name prefix)."""
    if final.is_dir() and os.path.ismount(final):
        return final, ".custodes-partial-"
    return final.parent, f".{final.name}.partial-"


def _clean_stale_staging(final: Path) -> None:
    """Remove the staging folders of exports to ``final`` whose process is gone (killed, a power cut)."""
    parent, prefix = _staging_place(final)
    for old in parent.glob(f"{glob.escape(prefix)}*") if parent.is_dir() else ():
        pid = old.name[len(prefix) :]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _staging(final: Path) -> Path:
    """A new staging folder for the bag of ``final``."""
    parent, prefix = _staging_place(final)
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f"{prefix}{os.getpid()}"
    staging.mkdir()
    return staging


def _publish(staging: Path, final: Path) -> None:
    """fsync every file and folder of the bag, then move it to ``final`` (a new or empty folder)."""
    for folder, _dirs, files in os.walk(staging, topdown=False):
        for name in files:
            fsync_file(Path(folder) / name)
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
    target = refuse_inside_archive(archive, iso, "--iso")
    resolved, bag_dir = target.resolve(), Path(bag).resolve()
    if resolved == bag_dir or bag_dir in resolved.parents:
        raise ExportError(f"--iso {target}: that is inside the bag it would image; write the disc image beside the bag")
    if os.path.lexists(target):
        raise ExportError(f"--iso {target}: a file is already there; name a new file (a disc image never replaces one)")
    if not target.parent.is_dir():
        raise ExportError(f"--iso {target}: the folder {target.parent} does not exist")
    return target


def write_iso(bag: Path, iso: Path, label: str) -> None:
    """A disc image of the bag, ready to burn (ISO 9660 level 3: files over 4 GiB; Joliet and Rock Ridge names).

    xorriso writes a temporary name beside ``iso``; the image is then linked
    into place, which refuses to replace a file that appeared meanwhile."""
    volid = "".join(c if c.isalnum() or c == "_" else "_" for c in label.upper())[:32] or "CUSTODES"
    temp = iso.with_name(f".{iso.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
    try:
        out = subprocess.run(
            [
                "xorriso",
                "-as",
                "mkisofs",
                "-iso-level",
                "3",
                "-J",
                "-joliet-long",
                "-R",
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
