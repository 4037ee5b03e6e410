"""Repairing one copy of the archive's objects from the other (``custodes storage repair``).

Where the policy keeps a second copy (``[replica]``), verify checks both and says which copy of an object is
bad. A repair re-verifies both copies whole, then puts back each object that is missing, modified or
truncated in exactly one copy from the intact one, through the bad store's :meth:`ObjectStore.restore`
(which checks the bytes against the catalog's digests before they take the object's place), and ledgers
each repair (``storage_repair``: the object, the copy, what was wrong, who, when). An object bad in both
copies cannot be repaired from the archive and is reported, never guessed at. An object file that is only
``unprotected`` (its mode widened) is made read-only again in place, in whichever copy, an archive of one copy
included; with one copy, bytes that are bad have nothing to come back from and are reported.

A check of what each copy's storage guarantees (``custodes storage check``, :func:`check_storage`) is ledgered
too (``storage_check``: each guarantee, held or missing, who, when): the compliance report shows the latest.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from custodes._faults import crashpoint
from custodes.access import current_person, require_role
from custodes.archive import Archive, UnsignedEntriesError
from custodes.catalog import replay
from custodes.errors import CustodesError
from custodes.retention import to_store
from custodes.storage import Guarantee, ObjectStore
from custodes.verify import FIRST_COPY, PENDING, verify

__all__ = ["REPAIRABLE", "RepairResult", "StorageCheck", "check_storage", "repair"]

#: What a repair puts right: the object's bytes are gone or wrong in one copy (restored from the other), or its
#: file is no longer read-only for the archive's account alone (made so again, in place).
REPAIRABLE = ("missing", "modified", "truncated", "unprotected")
FIRST, REPLICA = FIRST_COPY, "replica"  # as verify and ObjectFindings name the copies


@dataclass
class RepairResult:
    repaired: list[dict[str, Any]] = field(default_factory=list)  # {object, copy, was}
    unrepairable: list[dict[str, Any]] = field(default_factory=list)  # {object, why}
    failed: list[dict[str, Any]] = field(default_factory=list)  # {object, copy, why}: the restore itself failed
    #: {kind, copy, message}: what verify found that a repair does not put right (a folder's mode, a catalog row,
    #: a stray file): a repair that fixed every object does not call the archive intact while these remain (a
    #: hostile review: "every copy of every object is intact", exit 0, beside verify's NOT INTACT).
    left: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unrepairable and not self.failed and not self.left

    def to_json(self) -> dict[str, Any]:
        return {"repaired": self.repaired, "unrepairable": self.unrepairable, "failed": self.failed, "left": self.left}


@dataclass(frozen=True)
class StorageCheck:
    """What :func:`check_storage` found: per copy (``first``, ``replica``) its store and the guarantees probed,
    and the ledger index of the check's entry."""

    copies: list[tuple[str, ObjectStore, list[Guarantee]]]
    ledger_index: int

    @property
    def missing(self) -> list[tuple[str, Guarantee]]:
        return [(copy, g) for copy, _, found in self.copies for g in found if not g.held]


def check_storage(archive: Archive) -> StorageCheck:
    """Probe what the storage of each copy guarantees (:meth:`ObjectStore.guarantees`) and ledger the result
    (``storage_check``): who checked, when, each guarantee held or missing and what was seen. A check is a fact
    an auditor asks for (was the storage ever shown to refuse a delete?), not only a line on a screen."""
    person = current_person(archive)
    stores = [(FIRST, archive.store)] + ([(REPLICA, archive.replica)] if archive.replica is not None else [])
    copies = [(copy, store, store.guarantees()) for copy, store in stores]
    if archive.replica is not None:
        apart = _copies_apart(archive, archive.store, archive.replica)
        if apart is not None:
            copies[1][2].append(apart)
    entry = {
        "type": "storage_check",
        "by": person,
        "time": time.time_ns(),
        "copies": [
            {
                "copy": copy,
                "storage": store.describe(),
                "backend": store.backend,
                "guarantees": [{"name": g.name, "held": g.held, "detail": g.detail} for g in found],
            }
            for copy, store, found in copies
        ],
    }
    with archive.transaction() as catalog:
        index = replay.record(catalog, entry)
    archive.checkpoint()
    return StorageCheck(copies, index)


#: The guarantee a second copy exists for: what loses the first copy does not lose it too.
APART = "second copy kept apart"


def _copies_apart(archive: Archive, first: ObjectStore, second: ObjectStore) -> Guarantee | None:
    """Whether the second copy is kept where the first's loss is not its loss (a hostile review: a second copy on
    the first's disk, even made of hard links to its files, was two copies by every check). Local folders: another
    file system (a second copy on the first's cannot outlive its disk, and only there can its files be the
    first's own, counted); buckets: another bucket or server. None where this cannot be told (a backend of a
    plugin's): nothing is claimed either way."""
    a, b = first.spec(), second.spec()
    if a.backend != b.backend:
        return Guarantee(APART, True, f"the copies are kept by different backends ({a.backend}, {b.backend})")
    if a.backend == "s3":
        where_a, where_b = (
            (dict(s.options).get("endpoint") or "AWS", dict(s.options).get("bucket", "")) for s in (a, b)
        )
        if where_a == where_b:
            return Guarantee(
                APART,
                False,
                f"both copies are in bucket {where_a[1]} ({where_a[0]}): the bucket's loss, or one account or "
                "lifecycle rule deleting in it, loses both; keep the second copy in another bucket, on another "
                "server or account",
            )
        return Guarantee(
            APART,
            True,
            f"the second copy is in bucket {where_b[1]} ({where_b[0]}), the first in {where_a[1]} ({where_a[0]}); "
            "whether their disks differ is the servers' to say",
        )
    if a.backend != "local":
        return None
    try:
        device_a, device_b = os.stat(a.location).st_dev, os.stat(b.location).st_dev
    except OSError as e:
        return Guarantee(APART, False, f"the copies' folders cannot be looked at ({e})")
    if device_a != device_b:
        return Guarantee(
            APART, True, f"the second copy is on another file system (device {device_b}, the first {device_a})"
        )
    shared = _shared_files(archive, first, second)
    return Guarantee(
        APART,
        False,
        f"the second copy is on the first copy's file system (device {device_a}): one disk's failure loses both"
        + (
            f", and {shared:,} of its objects are the first copy's own files (hard links: one file, two names)"
            if shared
            else ""
        )
        + "; keep it on another disk",
    )


def _shared_files(archive: Archive, first: ObjectStore, second: ObjectStore) -> int:
    """Objects whose two copies are one file (the same device and inode), over the catalog's objects, streamed."""
    file_a, file_b = getattr(first, "local_file", None), getattr(second, "local_file", None)
    if file_a is None or file_b is None:
        return 0
    shared = 0
    for o in archive.catalog.objects.walk():
        pa, pb = file_a(o.sha256), file_b(o.sha256)
        if pa is None or pb is None:
            continue  # missing or not a file in one copy: verify names it
        with suppress(OSError):
            sa, sb = os.stat(pa, follow_symlinks=False), os.stat(pb, follow_symlinks=False)
            shared += (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    return shared


def repair(archive: Archive) -> RepairResult:
    """Verify every copy and restore each object bad in one of them from the other (custodians). An object that
    is only ``unprotected`` is made read-only again in place, in an archive of one copy too (its bytes are
    sound: nothing is needed from another copy); one whose bytes are bad in every copy it has is reported."""
    person = require_role(archive, ("custodian",), "storage_repair")
    archive.catalog.require_own_schema()  # a restore replaces what a copy holds before its entry is written
    archive.sweep_spools()  # a repair cut short left its half-restored copies there
    result = RepairResult()
    bad, unprotected, edited = _what_verify_found(archive, result.left)
    stores: dict[str, ObjectStore] = {FIRST: archive.store}
    if archive.replica is not None:
        stores[REPLICA] = archive.replica
    for digest, copies in sorted(bad.items()):
        recorded = archive.catalog.objects.get(digest)
        assert recorded is not None  # (only objects the catalog keeps are in ``bad``: _what_verify_found)
        # A copy restored whole from the other below is a new read-only file: protecting it first in place is
        # nothing, or a failure (a hard-linked copy whose bytes changed too cannot be given its own file from them:
        # a hostile review saw it both failed and repaired).
        restored = set(copies) if len(copies) == 1 and len(stores) == 2 and digest not in edited else set()
        for copy in unprotected.get(digest, []):  # its mode and owner, in place
            if copy in restored:
                continue
            try:
                done = stores[copy].protect(digest)
            except (OSError, CustodesError) as e:
                result.failed.append({"object": digest, "copy": copy, "why": str(e)})
                continue
            if done:  # (nothing to do: the two copies were one file, split when the first was protected)
                _record(archive, result, person, digest, copy, "unprotected", done)
        if not copies:
            continue
        if digest in edited:
            # A restore checks the bytes it puts back against the catalog's digests: an edited row would refuse
            # the good copy's bytes (a hostile review: "the bytes streamed are not the ones named"), or take a
            # forger's. The ledger's record is put back first.
            result.unrepairable.append(
                {
                    "object": digest,
                    "why": "the catalog's row of this object is not the ledger's (verify's ledger_mismatch): "
                    "rebuild the catalog from the ledger first (`custodes ledger rebuild-catalog ARCHIVE "
                    "--replace`), then repair again",
                }
            )
            continue
        if len(copies) == len(stores) == 1:
            result.unrepairable.append(
                {
                    "object": digest,
                    "why": f"it is {copies[FIRST]} and the archive keeps one copy: there is nothing to restore it "
                    "from (a [replica] table in the policy names a second copy)",
                }
            )
            continue
        if len(copies) == 2:
            said = ", ".join(f"the {copy} copy is {was}" for copy, was in sorted(copies.items()))
            result.unrepairable.append({"object": digest, "why": f"both copies are bad: {said}"})
            continue
        ((copy, was),) = copies.items()
        source = stores[REPLICA if copy == FIRST else FIRST]
        try:
            with source.open(digest) as stream:
                done = stores[copy].restore(stream, recorded.size, json.loads(recorded.digests))
        except (OSError, CustodesError) as e:
            result.failed.append({"object": digest, "copy": copy, "why": str(e)})
            continue
        to_store(archive, [digest])  # the restored version locked as the catalog keeps it
        _record(archive, result, person, digest, copy, was, done)
    return result


def _what_verify_found(
    archive: Archive, left: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]], set[str]]:
    """Verify of every copy, as a repair needs it: per object, what is wrong with its bytes in each copy (an
    object only ``unprotected`` has an empty entry), the copies whose file's mode or owner is wrong, and the
    objects whose catalog row is not the ledger's; what no repair puts right is added to ``left``."""
    bad: dict[str, dict[str, str]] = {}
    unprotected: dict[str, list[str]] = {}
    edited: set[str] = set()
    kept: dict[str, bool] = {}  # object -> the catalog keeps it as evidence (recorded, not purged)
    for f in verify(archive).findings:
        if f.kind == "ledger_mismatch" and f.table == "objects" and f.row:
            edited.add(str(f.row[0]))
        if f.object is not None and f.object not in kept:
            recorded = archive.catalog.objects.get(f.object)
            kept[f.object] = recorded is not None and recorded.purged_ns is None
        if f.object is None or f.kind not in REPAIRABLE or not kept[f.object]:
            # Nothing a repair restores: a stray, a purged object without its tombstone, a folder, a row.
            if f.kind != PENDING:
                left.append({"kind": f.kind, "copy": f.copy, "message": f.message})
        else:
            # Kept apart: a file both widened and changed is made read-only whatever becomes of its bytes (a
            # hostile review: the second finding hid the first, and a changed object in an archive of one copy
            # stayed writable).
            if f.kind == "unprotected":
                unprotected.setdefault(f.object, []).append(f.copy or FIRST)
                bad.setdefault(f.object, {})
            else:
                bad.setdefault(f.object, {})[f.copy or FIRST] = f.kind
    return bad, unprotected, edited


def _record(
    archive: Archive, result: RepairResult, person: str, digest: str, copy: str, was: str, done: list[str]
) -> None:
    """A repair made: its ledger entry (``done``: what it removed or changed, the damage's record) and its line."""
    entry = {
        "type": "storage_repair",
        "sha256": digest,
        "copy": copy,
        "was": was,
        "done": done,
        "by": person,
        "time": time.time_ns(),
    }
    with archive.transaction() as catalog:
        replay.record(catalog, entry)
        # What verify found of it, kept for reports: a mode set back mends that alone; bytes restored, all of it.
        catalog.object_findings.mended(digest, copy, "unprotected" if was == "unprotected" else None)
    result.repaired.append({"object": digest, "copy": copy, "was": was, "done": done})
    # Signed at once, each: the next object's restore may take minutes, and another command waits only seconds
    # for entries no checkpoint covers before it takes them for another hand's (Archive.checkpoint; a hostile
    # review: a long repair stopped every other command). Entries another hand put in the ledger are signed by no
    # repair, as by no command (two hostile reviews: a forged approval, then forged repairs and a policy filed as
    # one, signed with exit 0): the repair refused before it began (Archive.ready_to_record), and one put there
    # while it ran leaves this entry unsigned, for a person to look at and sign.
    crashpoint("before_checkpoint")
    try:
        archive.checkpoint()
    except UnsignedEntriesError as e:
        result.left.append({"kind": "checkpoint_mismatch", "copy": None, "message": str(e)})
