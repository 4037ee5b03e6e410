"""Bulk verification: store against catalog against ledger against checkpoints.

- **Ledger**: every entry's leaf hash is recomputed from its bytes; the tree
  is rebuilt in O(log n) memory and its root at each checkpoint's size must
  equal the signed root; each checkpoint's signature must verify with the
  archive's public key; the latest checkpoint must cover the whole ledger.
- **Catalog**: the catalog is a view of the ledger (:mod:`custodes.catalog.replay`): the whole ledger is
  replayed into a fresh in-memory catalog and every fact table compared with the live one, row by row. A
  row the ledger does not explain is ``unexpected``, one that differs from it ``ledger_mismatch``, a
  ledgered fact with no row ``missing``; each names the table, the row and the ledger entry.
- **Store**: every object the catalog names is re-hashed in parallel by the
  Rust engine (``missing``, ``truncated``, ``modified``); every file in the
  store that the catalog does not name is ``unexpected``, unless an ingest
  noted its intent to link it (``ingest_intents``, written before the link):
  then it is ``pending``.
- **Pending** is not a failure of integrity: objects and ledger entries of an
  ingest that is under way, or was interrupted (killed, a power cut) and has
  not been run again. Each ``pending`` finding says which ingest and how to
  finish it; the archive is still intact (``ok``) when only these remain.
  Verify reads the catalog in one snapshot; what an ingest running alongside
  adds after it is checked again through a fresh read, so work in flight is
  never taken for tampering. Running the ingest again finishes the interrupted one: it records what that one
  stored, from the facts it noted with each intent, even when the file is gone from the volume since. An
  object of an ingest that finished without recording it is ``unrecorded``: a failure.

- **Schedule** (custodes.schedule): a run may re-hash only a slice, the least recently verified objects, or as
  much as a budget allows, and resumes where a stopped or killed run was; ``--quick`` re-hashes nothing.
- **Executors**: objects are re-hashed in shards by an executor plugin (``local``, or ``dask`` on a cluster);
  each shard's result is checked against the catalog here, never trusted, and recorded as it arrives.

Memory stays flat: shards are made as the executor takes them, and the store and the catalog are walked side
by side in digest order.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import errno
import functools
import json
import os
import secrets
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from custodes import merkle
from custodes._durable import fsync_dir, fsync_file, key_places, protection_problems, read_small
from custodes.archive import CATALOG_FILE, OWN_FOLDERS, POLICY_FILE, Archive
from custodes.builtin.storage import OWNER_FILE
from custodes.catalog import Catalog, SchemaDiffersError, accounts, codes, copy_file, replay, replay_cache
from custodes.catalog.evidence import EVERY_DIGEST, DigestRange, LedgerView, ObjectFinding, VerifyRun
from custodes.catalog.evidence import StoredObject as CatalogObject
from custodes.errors import CustodesError
from custodes.findings import rfc3339, shell_word, shown_name
from custodes.hashing import ALGORITHMS, HashResult
from custodes.keys import UNTRUSTED_KEY, Fingerprint, KeyChain, archive_chain, load_trusted, untrusted
from custodes.ledger import Checkpoint, LedgerError, VerifierKey
from custodes.policy import POLICY_MISMATCH, mismatch
from custodes.schedule import Budget, Selection, resumable
from custodes.storage import (
    PROBLEMS,
    Listed,
    ObjectStore,
    StoredObject,
    StoreSpec,
    is_digest,
    open_store,
    own_folder,
)
from custodes.witness import check_witness

__all__ = [
    "RebuildResult",
    "Rehashed",
    "Schedule",
    "Shard",
    "VerifyFinding",
    "VerifyResult",
    "hash_shard",
    "rebuild_catalog",
    "standing_findings",
    "verify",
    "verify_ledger_only",
]

#: Objects hashed by one engine job. A job starts its readers and waits for its slowest file at the end, which
#: on 20,000 small objects cost more than hashing them when a job held 256; what a batch holds is a few strings
#: per object (never their bytes), so memory stays flat either way, and progress is reported within a job.
BATCH = 4096
PENDING = "pending"
#: An object an ingest stored and finished without recording (see _stray).
UNRECORDED = "unrecorded"
#: Why a verification run was not recorded (``run["not_recorded"]``, with ``run["id"]`` None): it re-hashed
#: nothing, or the catalog's schema is not the one custodes makes (custodes writes nothing into it,
#: catalog.SchemaDiffersError), though the run re-hashed all the same.
NOT_RECORDED_NOTHING = "nothing re-hashed"
NOT_RECORDED_SCHEMA = "the catalog's schema differs"
#: Or this account cannot write the catalog (catalog.Catalog.read_only): an auditor's copy on a read-only disk.
NOT_RECORDED_READ_ONLY = "the catalog is read-only here"
#: Or its disk is full (catalog.Catalog.disk_full): verified all the same, the run recorded nowhere.
NOT_RECORDED_DISK_FULL = "the disk is full"
#: A worker of a remote executor reported an object bad that is intact when re-hashed here, or returned a result
#: that does not match its shard: the run's machinery is at fault, not the evidence; still a failure to look at.
EXECUTOR_FAULT = "executor_fault"


@dataclass(frozen=True)
class VerifyFinding:
    """One thing verify found: an object, catalog row, ledger entry or checkpoint that is not as recorded."""

    # modified, truncated, missing, unexpected, unrecorded, unprotected, ledger_mismatch, checkpoint_mismatch,
    # purge_incomplete, policy_mismatch, lock_mismatch; pending (not a failure)
    kind: str
    message: str
    segment: int | None = None
    object: str | None = None
    ledger_index: int | None = None
    table: str | None = None  # a catalog row against its replay: the table and the row's key
    row: tuple[Any, ...] | None = None
    copy: str | None = None  # "replica": found in the second copy ([replica] of the policy); None: the first

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "copy": self.copy,
            "message": self.message,
            "segment": self.segment,
            "object": self.object,
            "ledger_index": self.ledger_index,
            "table": self.table,
            # A key an edit made a BLOB (no key custodes writes is one) is shown as SQLite writes its literal:
            # JSON has no bytes, and one such cell stopped every --json verify with a traceback.
            "row": None if self.row is None else [f"x'{v.hex()}'" if isinstance(v, bytes) else v for v in self.row],
        }


@dataclass
class VerifyResult:
    """What a verification checked (objects, bytes) and found; ``ok`` when nothing but pending work."""

    checked: int = 0
    bytes: int = 0
    findings: list[VerifyFinding] = field(default_factory=list)
    trust: dict[str, Any] | None = None  # the key chain checkpoints were checked with, and the witness (keys.py)
    rehashed: bool = True  # False: --quick, sizes only, no object's bytes read
    #: The digests re-hashed and compared (Schedule.algorithms, else every one the policy records); [] after --quick.
    algorithms: list[str] = field(default_factory=list)
    run: dict[str, Any] | None = None  # the verification run (custodes.schedule): resumed, stopped, left
    #: How the ledger was replayed: {"kept": file, "held": n, "replayed": k} with a kept replay (incremental),
    #: {"whole": why} when it was replayed whole although asked to keep one; None: replayed whole as asked.
    replay: dict[str, Any] | None = None
    #: The objects with a finding kept from an earlier run (ObjectFindings), and those of them, or of this run's
    #: findings, this run re-hashed, by (object, copy): what stands is what it did not (standing_findings).
    _kept: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _rehashed: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Intact: no finding but `pending` (work of an unfinished ingest, see the module notes)."""
        return all(f.kind == PENDING for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "findings": [f.to_json() for f in self.findings],
            "trust": self.trust,
            "rehashed": self.rehashed,
            "algorithms": self.algorithms,
            "run": self.run,
            "replay": self.replay,
        }


def verify(
    archive: Archive,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    trusted_key: VerifierKey | Fingerprint | str | os.PathLike[str] | None = None,
    witness: Path | None = None,
    schedule: Schedule | None = None,
    incremental: bool = False,
) -> VerifyResult:
    """``trusted_key``: the key kept outside the archive, or its text, fingerprint or file as ``--trusted-key`` takes
    them (else its own keys/checkpoint.vkey is trusted);
    ``witness``: a folder of published checkpoints the tree must extend (custodes.witness); ``schedule``: which
    objects to re-hash, within what budget, on which executor (default: all of them, here); ``incremental``:
    replay only the ledger entries after the verifier's own kept replay (catalog.replay_cache).

    On a full disk the run reads a copy of the catalog (Archive.read_a_copy_of_the_catalog), and so does
    ``archive`` until it is closed: open the archive again to record anything once the disk has room."""
    result = VerifyResult()
    archive.read_a_copy_of_the_catalog()  # (on a full disk: the catalog let go, not held for the whole run)
    within = (schedule or Schedule()).selection.range
    before = [f for f in standing_findings(archive, "this run", within) if f.kind == "modified"]
    result._kept = frozenset(f.object for f in before if f.object is not None)
    chain = _trust(archive, result, trusted_key, witness)
    _verify_policy(archive, result)
    with archive.catalog.another() as fresh:
        signed = _verify_ledger(archive, result, fresh, chain)
        edited = _verify_catalog_against_ledger(archive, result, _kept_on(result, signed, incremental))
        # After the ledger's checks, which hold a kept replay to a ledger with no other finding: a widened mode
        # turned --incremental's rollback check off (a hostile review).
        _verify_own_entries(archive, result)
        _verify_store(archive, result, workers, progress, fresh, schedule or Schedule(), edited)
    _keep_object_findings(archive, result)
    # What an earlier verify's re-hash found of an object of this run's range, in a copy this run did not re-hash
    # (--quick reads no bytes, a budget stops short), stands: said, so such a run does not call the archive intact
    # (session 13's note: --quick said nothing of a standing `modified`; a hostile review: a finding of another
    # kind of the same object, or a run on a catalog it cannot write, hid it). Only `modified`: the one thing
    # only a re-hash sees; presence, size and mode every run looks at again.
    seen = {(f.object, f.copy, f.kind) for f in result.findings}
    result.findings += [
        f
        for f in before
        if f.object is not None
        and (f.object, f.copy or FIRST_COPY) not in result._rehashed
        and (f.object, f.copy, f.kind) not in seen
    ]
    return result


def standing_findings(archive: Archive, by: str, within: DigestRange = EVERY_DIGEST) -> list[VerifyFinding]:
    """What the latest verify that re-hashed each object ``within`` the range found wrong with it, where it still
    stands (no verify has found it sound since, no repair mended it: catalog.evidence.ObjectFindings); each
    message says when it was found and that ``by`` (this report, this run) did not re-hash it."""
    catalog = archive.catalog
    low, high = within.low or "", within.high
    # The copies the archive keeps: a row of another (made by hand, or of a replica since dropped) is no finding.
    copies = {FIRST_COPY, *(["replica"] if archive.replica is not None else [])}
    return [
        VerifyFinding(
            f.kind,
            f"{f.message} (found by verify at {_when(f.found_ns)}; not re-hashed by {by})",
            catalog.segments.first_for_object(f.sha256),
            f.sha256,
            copy=None if f.copy == FIRST_COPY else f.copy,
        )
        for f in ([] if catalog.lacks("object_findings") or catalog.lacks("objects") else catalog.object_findings.all())
        if f.copy in copies and low <= f.sha256 and (high is None or f.sha256 < high)
    ]


#: ObjectFindings' name of the first copy (a VerifyFinding's ``copy`` is None there).
FIRST_COPY = "first"


def _when(ns: object) -> str:
    """A time the catalog keeps, as RFC 3339; one an edit made no time at all is shown as it is (a hostile review:
    a found_ns of 1e30 stopped verify --quick and the report with a traceback)."""
    if type(ns) is int and 0 <= ns < 1 << 63:
        return rfc3339(ns)
    return f"a time the catalog's row does not give ({ns!r})"


#: What verify finds of an object that is not its object's state (work in flight, bytes the catalog does not name).
_NOT_OF_EVIDENCE = (PENDING, "unexpected", "unrecorded")


def _keep_object_findings(archive: Archive, result: VerifyResult) -> None:
    """What this run found wrong with the objects the catalog records, kept until a verify finds them sound or a
    repair mends them (catalog.evidence.ObjectFindings), for a report made without re-hashing (a hostile review:
    it said integrity ok after verify had found an object modified). Not on a catalog this account cannot write or
    whose schema differs (nothing is recorded there: _verify_copy)."""
    catalog = archive.catalog
    if catalog.read_only or catalog.schema_differences():
        return
    now = time.time_ns()
    found = [
        ObjectFinding(f.object, f.copy or FIRST_COPY, f.kind, f.message, now)
        for f in result.findings
        if f.object is not None and f.kind not in _NOT_OF_EVIDENCE and catalog.objects.known(f.object)
    ]
    if found:
        # On a disk that filled: not kept (the run says so); the next verify finds them again.
        with _FullDisk(catalog), catalog.write():
            # What a re-hash found of a copy replaces what was found of it before; what a look without reading its
            # bytes found (a mode, a size, gone) is added (a hostile review: --quick's `unprotected` erased the
            # `modified` a re-hash had found).
            catalog.object_findings.found(found, {(f.sha256, f.copy) for f in found} & result._rehashed)


class _FullDisk:
    """Around a write of verify's own records: one a full disk refuses is left undone, and ``met`` says so, for
    verify checks a full archive all the same (its run then "not recorded: the disk is full"); any other error
    goes up. (SQLite rolls such a transaction back whole: nothing of it stays.)"""

    def __init__(self, catalog: Catalog) -> None:
        self.place = catalog.path.parent
        self.met = False

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, kind: object, e: BaseException | None, tb: object) -> bool:
        if isinstance(e, sqlite3.OperationalError) and codes.full_disk(e, self.place):
            self.met = True
        return self.met


def verify_ledger_only(
    archive: Archive,
    *,
    trusted_key: VerifierKey | Fingerprint | str | os.PathLike[str] | None = None,
    witness: Path | None = None,
    incremental: bool = False,
) -> VerifyResult:
    """The ledger and catalog checks of :func:`verify`, without re-hashing objects."""
    result = VerifyResult(rehashed=False)  # (it said true with 0 objects checked)
    chain = _trust(archive, result, trusted_key, witness)
    with archive.catalog.another() as fresh:
        signed = _verify_ledger(archive, result, fresh, chain)
    _verify_catalog_against_ledger(archive, result, _kept_on(result, signed, incremental))
    return result


def _kept_on(result: VerifyResult, signed: dict[int, bytes] | None, incremental: bool) -> dict[int, bytes] | None:
    """What a kept replay may rest on this run: the signed checkpoints when one was asked for and the ledger's
    own checks found nothing, else None (and, when one was asked for, ``result.replay`` says why not)."""
    if incremental and signed is None:
        result.replay = {"whole": "the ledger's own checks found something: a kept replay is not used"}
    return signed if incremental else None


def _verify_policy(archive: Archive, result: VerifyResult) -> None:
    """custodes.toml must be the ledgered policy (custodes.policy); the rest is verified either way."""
    line = mismatch(archive)
    if line is not None:
        index = archive.ledgered_policy.index if archive.ledgered_policy is not None else None
        result.findings.append(VerifyFinding(POLICY_MISMATCH, line, ledger_index=index))


def _verify_own_entries(archive: Archive, result: VerifyResult) -> None:
    """The archive's own folders and files, its catalog, its keys and its second copy's folders are its account's
    alone to write (the signing key also to read): one another account owns, or that others may write, is
    ``unprotected`` (a hostile review: folders and the catalog made 0777/0666 and the key 0666 were called intact,
    and checkpoints were signed with that key). The account is the archive folder's owner (root may own one too: a
    key kept in a folder of root's, say); a folder others may write that is sticky (as /tmp) lets only an entry's
    owner replace it. Links are followed (an archive named through one, a key kept elsewhere through one: their
    own mode is no one's); the objects' own files are the store's listing's to judge."""
    root = archive.root
    try:
        owner = os.stat(root).st_uid
    except OSError:
        return  # (the archive could not have been opened)
    names = ["", POLICY_FILE, *OWN_FOLDERS]
    names += ["objects", "objects/sha256", "tmp", "keys/checkpoint.vkey", "ledger/checkpoint"]
    # What others may not even read: the catalog (who saw which recording, and why: the access log) and the web's
    # accounts (password and token hashes), with their SQLite logs (a hostile review: both at 0644 in a folder of
    # 0711, read by another account, were called intact).
    private = [db + end for db in (CATALOG_FILE, accounts.ACCOUNTS_FILE) for end in ("", "-wal", "-shm")]
    private.append(accounts.ENDED_FILE)  # (ended sessions' digests, kept aside on a full disk)
    # (path, what it is in words, whether others may not even read it, whose copy): "" is the archive's own
    # entry, its words taken from what it is found to be.
    entries: list[tuple[Path, str, bool, str | None]] = [
        *((root / n, "", False, None) for n in names),
        *((root / n, "", True, None) for n in private),
        *(
            (place, "the signing key" if secret else "a folder on the signing key's path", secret, None)
            for place, secret in key_places(archive.signing_key_path)
        ),
    ]
    second = archive.replica.spec() if archive.replica is not None else None
    if second is not None and second.backend == "local":
        entries += [
            (Path(second.location) / n, "", False, "replica")
            for n in ("", OWNER_FILE, "objects", "objects/sha256", "tmp")
        ]
    for path, what, secret, copy in entries:
        try:
            st = os.stat(path)
        except OSError:
            continue  # not made yet (a folder a command makes on first use), or named missing elsewhere
        # An empty file hides nothing (`sqlite3 accounts.sqlite` with nothing typed leaves one, at the umask's mode).
        secret = secret and (st.st_size > 0 or stat.S_ISDIR(st.st_mode))
        wrong = protection_problems(st, owner, secret, path=path)
        if wrong:
            what = what or "the archive's own " + ("folder" if stat.S_ISDIR(st.st_mode) else "file")
            said = (
                f"{shown_name(os.fspath(path))}: {'; '.join(wrong)}: {what} must be the archive's account's "
                f"alone ({'chmod 600' if secret else 'chmod go-w'}, and chown it back to that account)"
            )
            if copy is not None:  # named as every finding of the second copy is (a hostile review: "copy": null)
                said = f"second copy ({archive.replica.describe() if archive.replica else ''}): {said}"
            result.findings.append(VerifyFinding("unprotected", said, copy=copy))


def _trust(
    archive: Archive,
    result: VerifyResult,
    trusted_key: VerifierKey | Fingerprint | str | os.PathLike[str] | None,
    witness: Path | None,
) -> KeyChain:
    """The key chain checkpoints are checked with (custodes.keys), what is wrong with it, and the witness's findings.
    A key given as text is read as ``--trusted-key`` reads it: the key, its fingerprint, or a file holding the key
    (a hostile review: the text, as init prints it and the README asks to pin, failed with an AttributeError)."""
    if isinstance(trusted_key, (str, os.PathLike)):
        trusted_key = load_trusted(os.fspath(trusted_key))  # (a Path was taken for a key object: a hostile review)
    elif trusted_key is not None and not isinstance(trusted_key, (VerifierKey, Fingerprint)):
        raise TypeError(f"trusted_key: a verifier key, its fingerprint, or their text or file, not {trusted_key!r}")
    chain = archive_chain(archive, trusted_key)
    for message, index in untrusted(chain, archive.verifier_key, "keys/checkpoint.vkey"):
        result.findings.append(VerifyFinding(UNTRUSTED_KEY, message, ledger_index=index))
    result.trust = chain.to_json() | {"witness": None if witness is None else str(witness)}
    if witness is not None:
        result.findings += check_witness(archive, witness, chain)
    return chain


def _ingest_command(archive: Archive, ingest: int, volume: str | None, device: str | None = None) -> str:
    """The command that finishes interrupted ``ingest`` of ``volume`` (the catalog's text of its path): as it was
    run, with its driver and options (its ``ingest_begin`` entry), each word quoted so that it can be pasted as it
    is (custodes.findings.shell_word; a hostile review: the options were left out, and the re-run read another
    device and recorded the footage again under it). With the ``device`` it read, the command for a card wiped
    whole since (its identity file too): the run again must read the same device at the same path
    (custodes.ingest._recover), and an empty card is no device a driver recognises."""
    from custodes.drivers import COMMON_OPTIONS, name_from_text, name_text

    begun: dict[str, Any] = {}
    index = None if archive.catalog.lacks("ledger") else archive.catalog.ledger.ingest_begin_index(ingest)
    with contextlib.suppress(TypeError, ValueError):
        begun = json.loads(archive.catalog.ledger.entry(index) or b"{}") if index is not None else {}
    found = begun.get("options")
    options: dict[str, Any] = found if isinstance(found, dict) else {}
    driver = begun.get("driver") if isinstance(begun.get("driver"), str) else None
    path = name_from_text(volume) if volume else None
    archive_word = shell_word(os.path.abspath(archive.root))
    base = f"custodes ingest {shell_word(path) if path else 'VOLUME'} --archive {archive_word}"

    def given(keep: Callable[[str], bool]) -> str:
        return "".join(f" -o {shell_word(f'{k}={v}')}" for k, v in options.items() if keep(k))

    as_run = f"{base}{f' --driver {shell_word(driver)}' if driver else ''}{given(lambda k: True)}"
    command = f"re-run `{as_run}`"
    if device is not None and path is not None:
        folder_named = device == name_text(os.path.basename(path))  # generic's device when none is given
        pin = "" if folder_named else f" -o {shell_word(f'device_id={device}')}"
        wiped = f"{base} --driver generic{pin}{given(lambda k: k in COMMON_OPTIONS and k != 'device_id')}"
        if wiped != as_run:  # (a run with the generic driver and the folder's name is already that command)
            command += f" (a card wiped whole since, identity file too: `{wiped}`)"
    return command


#: The entries an ingest writes (catalog.replay): until its checkpoint is signed they are its work in flight.
def _verify_ledger(archive: Archive, result: VerifyResult, fresh: Catalog, chain: KeyChain) -> dict[int, bytes] | None:
    """The ledger against its signed checkpoints. Returns the size and root of each signed checkpoint when
    everything so far checked out (no finding but pending work or the policy file's): a kept replay may then
    rest on them (catalog.replay_cache); else None."""
    # One snapshot of the catalog for all of this: an ingest running alongside
    # may append entries and sign checkpoints meanwhile.
    with archive.catalog.snapshot():
        signed = _verify_ledger_snapshot(archive, result, fresh, chain)
    clean = all(f.kind in (PENDING, POLICY_MISMATCH) for f in result.findings)
    return signed if clean else None


def _verify_ledger_snapshot(
    archive: Archive, result: VerifyResult, fresh: Catalog, chain: KeyChain
) -> dict[int, bytes]:
    """Four passes: the signed checkpoints (catalog rows and files), the latest one, the ledger
    walked against them, and whether everything after the last signature is work in flight."""
    latest = _latest_checkpoint(archive, result, chain)
    checkpoints = _signed_checkpoints(archive, result, fresh, chain, latest)
    wanted = {s: r for s, r, _ in sorted(checkpoints)}
    top = max(wanted, default=0)
    walk = _walk_ledger(archive.catalog, result, wanted, top)
    _check_unsigned(archive, result, fresh, latest, top, walk)
    return wanted


def _signed_checkpoints(
    archive: Archive, result: VerifyResult, fresh: Catalog, chain: KeyChain, latest: Checkpoint | None
) -> list[tuple[int, bytes, str]]:
    """Every checkpoint the catalog records or ledger/checkpoints/ holds, each checked against its signature."""
    checkpoints: list[tuple[int, bytes, str]] = []
    gone = archive.catalog.lacks("checkpoints")  # dropped by hand: every file is then one the catalog lacks
    rows = [] if gone else archive.catalog.checkpoints.all()
    recorded = {size for size, _, _ in rows}  # by the row's size: a row given another's note still needs its file
    for size, root, note in rows:
        try:
            cp = chain.parse(note)
        except LedgerError as e:
            result.findings.append(VerifyFinding("checkpoint_mismatch", f"checkpoint at size {size}: {e}"))
            continue
        if cp.size != size or cp.root != root:
            result.findings.append(
                VerifyFinding("checkpoint_mismatch", f"checkpoint row {size} differs from its signed note")
            )
        checkpoints.append((cp.size, cp.root, note))
    folder = archive.root / "ledger" / "checkpoints"
    files = sorted(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else []
    if not folder.is_dir():
        result.findings.append(VerifyFinding("checkpoint_mismatch", "ledger/checkpoints/ is gone"))
    newest = max(recorded, default=None)
    for path in files:
        text = _note_file(path, result)
        if text is None:
            continue
        try:
            cp = chain.parse(text)
        except LedgerError as e:
            result.findings.append(
                VerifyFinding(
                    "checkpoint_mismatch",
                    f"ledger/checkpoints/{path.name} is not a checkpoint this archive signed ({e}): move it out of "
                    "ledger/checkpoints/ and keep it; the next checkpoint writes back the note the catalog holds",
                )
            )
            continue
        if path.name != str(cp.size):
            # A file is named by the size it signs: another checkpoint's note under this name (copied over it,
            # or a copy under a new name) hides that this one's is gone. Never written over: it is evidence.
            result.findings.append(
                VerifyFinding(
                    "checkpoint_mismatch",
                    f"checkpoint file {path.name} holds the signed note of checkpoint {cp.size} (copied or "
                    "renamed): move it out of ledger/checkpoints/ and keep it; the next checkpoint writes back the "
                    "files that are missing",
                )
            )
            continue
        # Signed by an ingest running alongside after this verify's snapshot was taken: not a stray.
        if (cp.size, cp.root) not in {(s, r) for s, r, _ in checkpoints} and (
            gone or not fresh.checkpoints.has(cp.size, cp.root)
        ):
            result.findings.append(
                VerifyFinding("checkpoint_mismatch", f"checkpoint file {path.name} is not in the catalog")
            )
            checkpoints.append((cp.size, cp.root, cp.note))
    # Every signed checkpoint the catalog records has its file, the copy that outlives the catalog. Its signer
    # writes the file first and then ledger/checkpoint; a crash in between is mended by the next checkpoint
    # (Archive.checkpoint writes back what is missing). So only the newest may lack its file, and only while
    # ledger/checkpoint does not hold it yet (the latest-checkpoint check reports that state: work in flight,
    # or a command stopped before it wrote the file out). A file that is there but not its note is named above.
    present = {path.name for path in files}
    writing = newest is not None and latest is not None and latest.size < newest
    for size in sorted(recorded) if folder.is_dir() else []:
        if str(size) in present or (size == newest and writing):
            continue
        result.findings.append(
            VerifyFinding(
                "checkpoint_mismatch",
                f"ledger/checkpoints/{size} is gone (the catalog still holds its signed note): find out who removed "
                "it; `custodes ledger checkpoint` writes the missing files back from the catalog's signed notes (an "
                "ingest's or an act's checkpoint does too, when it sees the folder changed)",
            )
        )
    return checkpoints


#: The most a checkpoint note's file is read of: a note is a few hundred bytes; anything larger is not one.
NOTE_MAX_BYTES = 64 * 1024


def _read_note(path: Path) -> str:
    """The text of a checkpoint note's file: at most NOTE_MAX_BYTES of a regular file, a link not followed
    (custodes._durable.read_small); raises OSError or ValueError."""
    try:
        data = read_small(path, NOTE_MAX_BYTES)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        raise ValueError("not a regular file (a link, a folder, a FIFO or a device)") from None
    except ValueError as e:
        too_big = str(e).startswith("over ")
        raise ValueError(
            f"over {NOTE_MAX_BYTES} bytes: not a checkpoint note"
            if too_big
            else "not a regular file (a link, a folder, a FIFO or a device)"
        ) from None
    return data.decode("utf-8")  # UnicodeDecodeError is a ValueError


def _unreadable(e: OSError | ValueError) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _note_file(path: Path, result: VerifyResult) -> str | None:
    """The text of a file in ledger/checkpoints/, or None with a finding when it is not a note's file."""
    try:
        return _read_note(path)
    except (OSError, ValueError) as e:
        result.findings.append(
            VerifyFinding(
                "checkpoint_mismatch",
                f"ledger/checkpoints/{path.name} cannot be read as a checkpoint note: {_unreadable(e)}: move it out "
                "of ledger/checkpoints/ and keep it; the next checkpoint writes back the note the catalog holds",
            )
        )
        return None


def _latest_checkpoint(archive: Archive, result: VerifyResult, chain: KeyChain) -> Checkpoint | None:
    try:
        text = _read_note(archive.root / "ledger" / "checkpoint")
        return chain.parse(text)
    except FileNotFoundError:
        result.findings.append(
            VerifyFinding(
                "checkpoint_mismatch",
                "ledger/checkpoint (the copy of the latest signed checkpoint) is gone: find out who removed it; "
                "the next checkpoint (an ingest, or `custodes ledger checkpoint`) writes it again",
            )
        )
        return None
    except LedgerError as e:  # garbage in the file is a finding, not a crash
        result.findings.append(VerifyFinding("checkpoint_mismatch", f"latest checkpoint: {e}"))
        return None
    except (OSError, ValueError) as e:
        result.findings.append(VerifyFinding("checkpoint_mismatch", f"latest checkpoint: {_unreadable(e)}"))
        return None


@dataclass
class _LedgerWalk:
    """What walking the ledger found beyond the findings: its size, and who wrote what no checkpoint signs."""

    size: int = 0
    unsigned_by: dict[int, int] = field(default_factory=dict)  # ingest -> its unsigned entries
    unsigned_other: bool = False  # an unsigned entry that no ingest wrote
    last_signed_by: int | None = None  # the ingest of the last signed entry


def _walk_ledger(catalog: Catalog, result: VerifyResult, wanted: dict[int, bytes], top: int) -> _LedgerWalk:
    """Every entry against its leaf hash, and every signed size against the root of that many leaves."""
    walk = _LedgerWalk()
    acc = merkle.Accumulator()
    expected_index = 0
    if 0 in wanted and acc.root() != wanted[0]:
        result.findings.append(VerifyFinding("checkpoint_mismatch", "the empty-tree checkpoint has a wrong root"))
    for index, entry, leaf in catalog.ledger.walk():
        if type(index) is not int or index < expected_index:  # (rows sort by index: a lower one is below 0)
            result.findings.append(
                VerifyFinding(
                    "ledger_mismatch",
                    f"a ledger row at index {index!r}, which no entry custodes appends has (not a whole number, or "
                    "below 0): the ledger table was re-made or written by hand",
                )
            )
            continue
        if index != expected_index:
            result.findings.append(
                VerifyFinding(
                    "ledger_mismatch",
                    f"ledger entries {expected_index}..{index - 1} are gone",
                    ledger_index=expected_index,
                )
            )
            expected_index = index
        recomputed = merkle.leaf_hash(entry)
        if recomputed != leaf:
            result.findings.append(
                VerifyFinding(
                    "ledger_mismatch", f"ledger entry {index} does not match its leaf hash (edited)", ledger_index=index
                )
            )
        if index >= top:
            by = replay.entry_ingest(entry)
            if by is None:
                walk.unsigned_other = True
            else:
                walk.unsigned_by[by] = walk.unsigned_by.get(by, 0) + 1
        elif index == top - 1:
            walk.last_signed_by = replay.entry_ingest(entry)
        acc.extend(recomputed)
        expected_index += 1
        if acc.size in wanted and acc.root() != wanted[acc.size]:
            result.findings.append(
                VerifyFinding(
                    "checkpoint_mismatch",
                    f"the ledger's first {acc.size} entries no longer have the signed root "
                    "(an entry was edited, removed, inserted or reordered)",
                    ledger_index=acc.size - 1,
                )
            )
    walk.size = acc.size
    for index, filed, own in catalog.ledger.misfiled():
        result.findings.append(
            VerifyFinding(
                "ledger_mismatch",
                f"ledger entry {index} is a {own or 'malformed'} entry but is filed as {filed or 'nothing'} in the "
                "ledger's type index (an edited index: a hidden policy entry would put an older policy in force)",
                ledger_index=index,
            )
        )
    beyond = [s for s in wanted if s > walk.size]
    if beyond:
        result.findings.append(
            VerifyFinding(
                "checkpoint_mismatch",
                f"checkpoints sign {max(beyond)} entries; the ledger has {walk.size} (entries removed)",
            )
        )
    return walk


def _check_unsigned(
    archive: Archive, result: VerifyResult, fresh: Catalog, latest: Checkpoint | None, top: int, walk: _LedgerWalk
) -> None:
    """The latest checkpoint and the entries past the last signed one: work in flight, or a rollback."""
    # An ingest is finished once its checkpoint is signed and written (ingest sets finished_ns
    # last): entries and checkpoints of an unfinished one are work in flight, not a rollback.
    # A table dropped or re-made by hand (a finding of its own, _schema_findings) is read as empty: no ingest under
    # way, no checkpoint recorded, so nothing is excused as work in flight.
    unfinished = {} if archive.catalog.lacks("ingests") else archive.catalog.ingests.unfinished()
    signed_meanwhile = (
        latest is not None
        and latest.size > top
        and not fresh.lacks("checkpoints")
        and fresh.checkpoints.has(latest.size, latest.root)
    )
    # The unfinished ingests a pending finding names, or will: that of the last signed entry is the one at work
    # now (its objects linked and not yet recorded are pending in the store's pass), not one left open.
    named: set[int | None] = {walk.last_signed_by}
    if latest is not None and latest.size != top and not signed_meanwhile:
        if latest.size < top and walk.last_signed_by in unfinished:
            result.findings.append(
                VerifyFinding(
                    PENDING,
                    f"ingest {walk.last_signed_by} signed a checkpoint of {top} entries but has not written it out "
                    f"yet (under way, or interrupted): "
                    f"{_ingest_command(archive, walk.last_signed_by, *unfinished[walk.last_signed_by])}",
                )
            )
        else:
            result.findings.append(
                VerifyFinding(
                    "checkpoint_mismatch",
                    f"ledger/checkpoint is at size {latest.size}, "
                    f"but a checkpoint of size {top} exists (rolled back, or the command that "
                    "signed it was stopped before writing it out): find out which first (compare with a backup "
                    'and the checkpoints held elsewhere; a command that said "what this command recorded stands" '
                    f"was stopped so, and `custodes ledger checkpoint {shell_word(os.path.abspath(archive.root))}` "
                    "writes its file out); sign a new checkpoint only over a ledger known to be intact, else "
                    "restore catalog.sqlite from a backup",
                )
            )
    in_flight = walk.unsigned_by and not walk.unsigned_other and set(walk.unsigned_by) <= set(unfinished)
    if walk.size > top and in_flight:
        for ingest, count in sorted(walk.unsigned_by.items()):
            named.add(ingest)
            result.findings.append(
                VerifyFinding(
                    PENDING,
                    f"{count} ledger entries of ingest {ingest} are not signed yet: the ingest is under way or "
                    f"was interrupted; {_ingest_command(archive, ingest, *unfinished[ingest])}",
                )
            )
    elif walk.size > top:
        # Named one by one: anyone who can write catalog.sqlite can append an entry with a correct leaf hash (an
        # approval, a purge); no command signs it (custodes.archive: each refuses to act while it is there), but
        # `ledger checkpoint` would, so the person must see what they would be signing.
        shown = replay.named_entries(archive.catalog, range(top, walk.size))
        result.findings.append(
            VerifyFinding(
                "checkpoint_mismatch",
                # The ledger's rows no checkpoint covers, first and end: what `ledger checkpoint` would sign.
                table="ledger",
                row=(top, walk.size),
                message=f"{walk.size - top} ledger entries are not covered by any signed checkpoint (rolled back, a "
                f"command stopped before its checkpoint, or written into the ledger table by hand): entries {shown}. "
                "Investigate first (the command's output, a backup, who could write catalog.sqlite): custodes "
                "records nothing more while they are there; sign them with `custodes ledger checkpoint` only once "
                "each is known to be custodes' own, else restore catalog.sqlite from a backup",
            )
        )

    for ingest in sorted(set(unfinished) - named):
        # Begun, every entry it wrote signed (a later command signed them as work in flight), and never ended: a
        # run killed whose re-run of the same volume and device never came (one under another device id does not
        # finish it; a second review: verify said intact, and its later entries would pass for work in flight).
        result.findings.append(
            VerifyFinding(
                PENDING,
                f"ingest {ingest} began and has not ended (under way, or interrupted); "
                f"{_ingest_command(archive, ingest, *unfinished[ingest])}",
            )
        )


#: What an ingest entry records of its segment beyond the identity checked above: entry key -> catalog row.
_LEDGERED_FACTS = {
    "kind": lambda row: row.kind,
    "start": lambda row: row.start_ns,
    "end": lambda row: row.end_ns,
    "corrected_start": lambda row: row.corrected_start_ns,
    "corrected_end": lambda row: row.corrected_end_ns,
    "important": lambda row: bool(row.important),
    "ingest": lambda row: row.ingest_id,
    "time": lambda row: row.ingested_ns,
}


#: What the stored bytes are judged against where the catalog's objects row was edited: the row as the ledger
#: has it (sha256 -> size, digests, head_sha256), from the catalog-against-ledger pass of the same run.
Ledgered = Mapping[str, tuple[Any, Any, Any]]
#: The columns of an objects row the store pass judges the bytes by.
_JUDGED_BY = ("size", "digests", "head_sha256")


def _verify_catalog_against_ledger(
    archive: Archive, result: VerifyResult, signed: dict[int, bytes] | None = None
) -> Ledgered:
    """The live catalog against the ledger replayed into a fresh one (catalog.replay), every fact table row by
    row. An archive written before this custodes whose first write has not yet adopted its older rows
    (replay.adopt_pending) is held to what its ingest entries record, as it was then. Returns the ledger's
    (size, digests, head_sha256) of each object whose catalog row differs in them: the store pass judges those
    objects' bytes by the ledger, so an edited row is not blamed on intact evidence.

    ``signed``: the signed checkpoints this run checked (:func:`_verify_ledger`), given when the verifier asked
    for its kept replay (``--incremental``): only the entries after it are replayed (catalog.replay_cache)."""
    result.findings += _schema_findings(archive.catalog) + _accounts_schema_findings(archive)
    compared = _compared_with_kept(archive, result, signed) if signed is not None else None
    if compared is not None:
        made, found = compared
        result.findings += _replay_findings(made, found)
        return _ledgered(found)
    # One snapshot: an ingest running alongside commits a row and its entry together. Taken inside the
    # scratch, which is attached to the catalog's connection before it (catalog.replay.scratch).
    with replay.scratch(archive.catalog) as fresh, archive.catalog.snapshot():
        if replay.adopt_pending(archive.catalog):
            # Said every run: the flag is the catalog's own (a hostile review set it by hand on an archive that
            # was always ledgered, and verify then compared only the ingest entries' facts).
            result.findings.append(
                VerifyFinding(
                    PENDING,
                    "the catalog says it was migrated from before it was a view of the ledger and awaits adopting "
                    "its older rows (the first write does it): until then only what ingest entries record is "
                    "compared. On an archive no custodes from before that change ever wrote, the flag was set by "
                    "hand: investigate before any write, which would sign the catalog's rows as they are",
                )
            )
            _verify_segments_against_ingests(archive, result)
            return {}
        made, found = replay.compare(archive.catalog, fresh)
    result.findings += _replay_findings(made, found)
    return _ledgered(found)


def _ledgered(found: list[replay.Difference]) -> Ledgered:
    return {
        str(d.key[0]): tuple(d.values.get(c) for c in _JUDGED_BY)  # type: ignore[misc]
        for d in found
        if d.table == "objects" and d.kind == "ledger_mismatch" and set(d.columns) & set(_JUDGED_BY)
    }


def _compared_with_kept(
    archive: Archive, result: VerifyResult, signed: dict[int, bytes]
) -> tuple[replay.Replay, list[replay.Difference]] | None:
    """The comparison made with the verifier's kept replay, or None (said in ``result.replay``) when it cannot
    be used this run and the ledger is replayed whole."""
    if replay.adopt_pending(archive.catalog):  # held to its ingest entries only: the whole path says why
        result.replay = {"whole": "the catalog awaits adopting its older rows"}
        return None
    from custodes import identity

    if identity.served():
        # The service runs as the archive's account: a replay kept there would be the account's whose edits it
        # is to catch, not the caller's (a hostile review: the caller's own cache was never used).
        result.replay = {
            "whole": "through the archive service a kept replay would be the archive's account's, not yours: run "
            "`custodes verify --incremental` as yourself on a copy you can read, or without --incremental"
        }
        return None
    try:
        compared = replay_cache.compare_kept(archive.catalog, archive.policy.archive_id, signed)
    except replay_cache.RolledBack as e:
        # What the verifier saw signed is gone from the ledger: found, as a monitor finds a log that shrank.
        result.findings.append(VerifyFinding("checkpoint_mismatch", str(e)))
        result.replay = {"whole": "the ledger does not extend your kept replay (the checkpoint_mismatch finding)"}
        return None
    except replay_cache.Rewritten as e:
        # An entry the verifier replayed, which nothing signs yet, changed or went: it saw the entry, so it knows.
        result.findings.append(VerifyFinding("ledger_mismatch", str(e), ledger_index=e.index))
        result.replay = {"whole": "an entry your kept replay replayed is not in the ledger as it was (the "
                         "ledger_mismatch finding)"}  # fmt: skip
        return None
    except replay_cache.ReplayCacheError as e:
        result.replay = {"whole": str(e)}
        return None
    if compared is None:
        result.replay = {"whole": "the kept replay does not fit this ledger (the ledger no longer extends it): "
                         "it is removed, and made again by the next --incremental run"}  # fmt: skip
        return None
    made, found, kept = compared
    result.replay = kept.to_json()
    return made, found


def _schema_findings(catalog: Catalog) -> list[VerifyFinding]:
    """The catalog's schema against the one custodes makes (Catalog.schema_differences): a table dropped is
    ``missing`` (an empty one leaves no row to miss), anything else made otherwise (an index dropped or made over
    other columns, a column dropped, a trigger or view added) ``ledger_mismatch``; each names the object as its
    ``table``. Rows are still compared table by table: a dropped table that held facts also has them ``missing``."""
    out = []
    for d in catalog.schema_differences():
        kind = "missing" if d.kind == "missing" and d.type == "table" else "ledger_mismatch"
        fix = "`custodes ledger rebuild-catalog --replace` makes the catalog again from the ledger"
        out.append(VerifyFinding(kind, f"catalog schema: {d.message()} ({fix})", table=d.name))
    return out


def _accounts_schema_findings(archive: Archive) -> list[VerifyFinding]:
    """The web front end's accounts.sqlite holds no fact, but its rules (a lock after ten wrong passwords) are
    custodes' too: a schema made otherwise there is named as the catalog's is (and refuses its writes,
    AccountStore). Not the rebuild's: rebuilding the catalog changes nothing there."""
    out = []
    for d in accounts.schema_differences_at(archive.root) or ():
        fix = f"drop what was added by hand, or move {accounts.ACCOUNTS_FILE} aside and add the accounts again"
        message = f"{accounts.ACCOUNTS_FILE} schema: {d.message(of=accounts.ACCOUNTS_FILE)} ({fix})"
        out.append(VerifyFinding("ledger_mismatch", message, table=d.name))
    return out


def _replay_findings(made: replay.Replay, found: list[replay.Difference]) -> list[VerifyFinding]:
    """Verify's findings for what replaying the ledger could not apply and for each row that differs."""
    out = [VerifyFinding("ledger_mismatch", f"ledger entry {i} {why}", ledger_index=i) for i, why in made.failed]
    for d in found:
        segment = d.key[0] if d.table == "segments" else d.values.get("segment_id")
        sha = d.values.get("sha256")
        out.append(
            VerifyFinding(
                d.kind,
                d.message(),
                segment=segment if isinstance(segment, int) else None,
                object=sha if isinstance(sha, str) else None,
                ledger_index=d.entry,
                table=d.table,
                row=d.key,
            )
        )
    return out


@dataclass
class RebuildResult:
    """``custodes ledger rebuild-catalog``: how the catalog rebuilt from the ledger differs from the live one
    (``findings``), the entry types it made no rows for, and where the old catalog was kept when replaced."""

    findings: list[VerifyFinding]
    unknown: dict[str, int]
    replaced: bool = False
    kept: str | None = None

    @property
    def equal(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "findings": [f.to_json() for f in self.findings],
            "unknown_entry_types": self.unknown,
            "replaced": self.replaced,
            "kept": self.kept,
        }


def rebuild_catalog(archive: Archive, *, replace: bool = False) -> RebuildResult:
    """Rebuild the catalog from the ledger alone into a new file (catalog.replay.rebuild) and compare it with
    the live one. With ``replace``, the new file takes catalog.sqlite's place atomically (a rename), the old
    file kept beside it as ``catalog.sqlite.before-rebuild-<ns>`` (a hard link, made first: at every moment
    one of the two names holds each catalog). For an archive whose fact tables were lost or damaged: the ledger
    table itself is what is replayed, so it must be intact (``ledger verify`` says). An archive written before
    the catalog was a view of the ledger adopts its older rows first (catalog.replay.adopt), as its first
    write would: a rebuild without them would lose them."""
    if replace:
        archive.require_its_account()  # (the new catalog file would be this process's account's)
    live = archive.catalog.path
    temps = archive.root / "tmp"
    own_folder(temps)  # (made only by the archive's account)
    if not replace and not (temps.is_dir() and temps.stat().st_uid == os.geteuid()):
        # Compared only, by another account (root reading the archive through the library): not written into the
        # archive, whose tmp/ it made its own (a hostile review).
        temps = Path(tempfile.gettempdir())
    now = time.time_ns()
    if replay.adopt_pending(archive.catalog):
        with archive.transaction() as tx:
            adopted = replay.adopt(tx, now)
        if adopted is not None:
            archive.checkpoint()
    new = copy_file(temps, "rebuilt")  # (owner-only; one a kill left is swept: it is the whole catalog)
    try:
        with archive.catalog.snapshot():
            made, found = replay.rebuild(archive.catalog, new)
        # The schema too: a rebuilt catalog has every table and index custodes makes, and nothing else.
        result = RebuildResult(_schema_findings(archive.catalog) + _replay_findings(made, found), made.unknown)
        if not replace:
            return result
        os.chmod(new, 0o600)
        fsync_file(new)
        archive.catalog.flush_wal()
        archive.catalog.close()  # nothing of this process may write the old file once it is renamed
        kept = live.with_name(f"{live.name}.before-rebuild-{now}")
        os.link(live, kept)
        os.replace(new, live)
        fsync_dir(live.parent)
        result.replaced, result.kept = True, str(kept)
        return result
    finally:
        for leftover in (new, new.with_name(new.name + "-wal"), new.with_name(new.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _verify_segments_against_ingests(archive: Archive, result: VerifyResult) -> None:
    """Every segment row against the ingest entry it was recorded with (its identity, content and every fact
    the entry holds), and every ingest entry against a segment row: one the catalog lost is ``missing``."""
    # One snapshot for both: an ingest running alongside commits a row and its entry together.
    with archive.catalog.snapshot():
        for row in archive.catalog.segments.beside_ledger():
            finding = _row_against_entry(row)
            if finding is not None:
                result.findings.append(finding)
        lost = archive.catalog.ledger.ingests_without_segment()
    for index, name, sha, segment in lost:
        result.findings.append(
            VerifyFinding(
                "missing",
                f"segment {segment} ({shown_name(str(name))}) is in the ledger (entry {index}) but not in the catalog",
                segment=segment,
                object=sha if isinstance(sha, str) else None,
                ledger_index=index,
            )
        )


def _entry_json(data: bytes | None) -> dict[str, Any]:
    try:
        e = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return e if isinstance(e, dict) else {}


def _row_against_entry(row: LedgerView) -> VerifyFinding | None:
    seg_id, name, sha, seq = row.id, row.original_name, row.sha256, row.ledger_seq
    if row.entry is None:
        return VerifyFinding(
            "ledger_mismatch",
            f"segment {seg_id} ({name}) has no ledger entry",
            segment=seg_id,
            object=sha,
            ledger_index=seq,
        )
    e = _entry_json(row.entry)
    recorded = (
        e.get("segment"),
        e.get("device"),
        e.get("name"),
        e.get("name_b64"),
        (e.get("digests") or {}).get("sha256") if isinstance(e.get("digests"), dict) else None,
        e.get("size"),
    )
    name_b64 = None if row.original_name_bytes is None else base64.b64encode(row.original_name_bytes).decode("ascii")
    if recorded != (seg_id, row.device_id, name, name_b64, sha, row.size):
        return VerifyFinding(
            "ledger_mismatch",
            f"catalog row of segment {seg_id} ({name}) differs from what the ledger recorded at ingest",
            segment=seg_id,
            object=sha,
            ledger_index=seq,
        )
    # Only the facts the entry holds: an entry written by an older custodes may hold fewer.
    differ = [key for key, of_row in _LEDGERED_FACTS.items() if key in e and e[key] != of_row(row)]
    if differ:
        return VerifyFinding(
            "ledger_mismatch",
            f"catalog row of segment {seg_id} ({name}): {', '.join(differ)} differ from what the ledger recorded "
            "at ingest",
            segment=seg_id,
            object=sha,
            ledger_index=seq,
        )
    return None


def _tombstoned(catalog: Catalog, sha: str) -> bool:
    data = catalog.ledger.tombstone_entry(sha)
    if data is None:
        return False
    try:
        entry = json.loads(data)
    except ValueError:
        return False
    return entry.get("type") == "purge" and entry.get("sha256") == sha


def _listed_finding(archive: Archive, listed: Listed) -> VerifyFinding:
    """Something the store's listing found that is not a sound object at its own name: never evidence custodes
    stored as it is (a stray file, a link, an object overwritten or deleted through another client)."""
    kind = PROBLEMS[listed.problem or "foreign"]
    digest = listed.digest
    segment = None if digest is None else archive.catalog.segments.first_for_object(digest)
    name = shown_name(listed.name)  # on one line, whatever a stray was named (a newline in it faked a summary)
    if listed.problem == "misplaced":
        detail = f"{name} is not where object {digest} belongs"
    elif listed.problem == "link":
        detail = f"object is a symbolic link (to {shown_name(listed.detail)}), not the file the archive stored"
    elif listed.problem in ("versions", "deleted"):
        detail = f"{name}: {listed.detail}"
    elif listed.problem == "special":
        detail = f"object is {listed.detail}, not the file the archive stored ({name})"
    elif listed.problem == "unprotected" and digest is None:  # a folder of the store's digest tree
        detail = (
            f"folder of the store {name}: {listed.detail}: others could replace the objects in it; it must be the "
            "archive's account's alone (chmod 700, and chown it back to that account)"
        )
    elif listed.problem == "unprotected":
        detail = (
            f"object file is {listed.detail}, not read-only for the archive's account alone ({name}): others, or "
            "the archive's own programs, could change or read it; `custodes storage repair` makes it so again "
            "and records it"
        )
    elif listed.problem == "unreadable":
        detail = (
            f"folder of the store that cannot be listed: {name} ({listed.detail}); the objects in it cannot be checked"
        )
    else:
        detail = f"file in the store that is not an object: {name}"
    return VerifyFinding(kind, detail, segment if kind != "unexpected" else None, digest)


def _stray(archive: Archive, fresh: Catalog, digest: str, where: str) -> VerifyFinding:
    """An object in the store that this verify's snapshot of the catalog does not know: `pending` when an
    ingest noted its intent to store it (or recorded it after the snapshot), otherwise `unexpected`."""
    where = shown_name(where)
    if fresh.objects.known(digest):
        return VerifyFinding(
            PENDING, f"{where} was recorded by an ingest while this verify ran; not checked this time", object=digest
        )
    row = fresh.ingests.intent_for(digest)
    if row is None:
        return VerifyFinding("unexpected", f"file in the store that the catalog does not know: {where}", object=digest)
    ingest, volume, finished, device = row
    # Read here (such objects are few: work in flight, or a crash's): bytes that are not their name's are said as
    # such, whether the ingest is finished or not (hostile reviews: they were called a recording's possible only
    # copy; and bytes put at an interrupted ingest's object's place were `pending`, the archive ok, never read).
    read = archive.store.hash_objects([digest], ("sha256",), 1)[0]
    got = read.digests.get("sha256") if read.ok else None
    if got is not None and got != digest:
        how = "and finished without recording it" if finished is not None else "which is under way or was interrupted"
        return VerifyFinding(
            "modified",
            f"{where} is not what its name says (its SHA-256 is {got}); nothing records it (ingest {ingest} noted "
            f"it, {how}): it holds the place of that object, which an ingest of the file cannot store while it is "
            "there",
            object=digest,
        )
    if finished is None:
        # The run again must read the same device at the same path (custodes.ingest._recover); a card wiped of its
        # identity file too reads as another device unless told which (a hostile review).
        return VerifyFinding(
            PENDING,
            f"{where} was linked by ingest {ingest} of device {shown_name(device)}, which is under way or was "
            f"interrupted; {_ingest_command(archive, ingest, volume, device)}",
            object=digest,
        )
    # Finished, yet never recorded: no ingest will record it now (a run again records what the interrupted one
    # stored from the facts it noted: custodes.ingest._recover), so the archive holds bytes of the device that
    # its catalog does not account for. Not work in flight: a failure, until an ingest of the file records it.
    return VerifyFinding(
        UNRECORDED,
        f"{where} was noted by ingest {ingest}, which finished without recording it (the file failed, or was "
        f"gone from the volume when the ingest was run again and could not be recovered from what it noted: "
        f"that run's ingest_failed says why): these bytes may be the only copy of a recording the catalog does "
        f"not name; keep them, and {_ingest_command(archive, ingest, volume)} if the file is on the volume",
        object=digest,
    )


#: Bounds of one shard, the unit an executor runs and a run records: a few thousand objects, so a shard's job
#: starts its readers once for many small objects, and a killed run loses at most a shard per worker. In bytes:
#: the local executor runs one shard at a time on all its threads, which a large shard keeps busy; a cluster's
#: workers each take a shard on one thread, so shards of a few seconds' reading spread big files over all of
#: them (with 4 GiB, a bench's 1 GiB of 64 MiB files was one shard for one worker of sixteen).
SHARD_OBJECTS = BATCH
#: At most this share of what a cluster re-hashes is re-hashed here again as a spot check (_Hashing).
SPOT_CHECK_SHARE = 0.02
SHARD_BYTES = {"local": 4 * 2**30, "remote": 256 * 2**20}


@dataclass(frozen=True)
class Shard:
    """Objects one executor task re-hashes: plain data, so it pickles to a cluster's worker, which opens the
    store ``store`` names (custodes.storage.open_store: a local archive as that worker mounts it, a bucket),
    reads each object and returns digests, never bytes."""

    index: int
    algorithms: tuple[str, ...]
    store: StoreSpec
    objects: tuple[str, ...]  # digests


@dataclass(frozen=True)
class Rehashed:
    """What a worker read of one object: its size and digests, or why it could not read it."""

    sha256: str
    size: int | None
    digests: dict[str, str]
    error: str | None = None
    missing: bool = False  # the error is that no file is there
    stored: StoredObject | None = None  # its retention and hold, where the read told them (HashedObject)


def hash_shard(shard: Shard, threads: int | None) -> list[Rehashed]:
    """An executor's work function (custodes.plugins.Executor): re-hash a shard's objects where it runs."""
    hashed = _opened(shard.store).hash_objects(shard.objects, shard.algorithms, threads)
    return [_rehashed(sha, r) for sha, r in zip(shard.objects, hashed, strict=True)]


#: The store a run of the local executor reads through, its shards' work running on this thread: the archive's
#: own, already open (opening an S3 store again makes a client, 0.1-0.4 s of a verify of a few seconds).
_IN_HAND: contextvars.ContextVar[ObjectStore | None] = contextvars.ContextVar("custodes_verify_store", default=None)


def _opened(spec: StoreSpec) -> ObjectStore:
    held = _IN_HAND.get()
    if held is not None and held.spec() == spec:
        return held
    return _opened_once(spec)


@functools.lru_cache(maxsize=8)
def _opened_once(spec: StoreSpec) -> ObjectStore:
    """A worker opens each store once, not once per shard."""
    return open_store(spec)


def _rehashed(sha: str, r: HashResult) -> Rehashed:
    if r.error is None:
        return Rehashed(sha, r.size, r.digests, stored=getattr(r, "stored", None))
    return Rehashed(sha, None, {}, str(r.error), isinstance(r.error, FileNotFoundError))


@dataclass(frozen=True)
class _Due:
    """An object the run re-hashes, with what the catalog says it is."""

    sha256: str
    size: int
    digests: dict[str, str]  # the row's JSON, read once (_digest_map) when the object was found due
    head: str
    last_verified_ns: int | None


#: Why md5 is never one of the digests a run compares alone: bytes made to match a recorded md5 are a matter of
#: seconds (without --algo every recorded digest is compared, md5 among them, beside a collision-resistant one).
MD5_ALONE = "md5 is not collision-resistant: a run that compares only some digests compares sha256, blake3 or sm3"


@dataclass
class Schedule:
    """How a verify run is made: what it selects (custodes.schedule), how much it may do, and who re-hashes."""

    selection: Selection = field(default_factory=Selection)
    budget: Budget = field(default_factory=Budget)
    executor: str = "local"
    scheduler: str | None = None
    shard_objects: int = SHARD_OBJECTS  # at most this many objects per shard
    shard_bytes: int | None = None  # and at most this many bytes (None: SHARD_BYTES for the executor's kind)
    resume: bool = False  # go on with the latest unfinished run of this selection (custodes.schedule)
    #: The recorded digests to re-hash and compare, a part of the policy's (None: all of them). Any one of them
    #: read from every byte finds a change (each is collision-resistant, each was recorded by ingest and ledgered);
    #: BLAKE3 alone costs a fraction of SHA-256's CPU, which decides a verify of large objects where reading is
    #: fast (an S3 server close by: 1 GiB 1.24 -> 0.97 s, benches/README.md). An object recorded without any of
    #: them (ingested under an older policy) is re-hashed with every digest it has.
    algorithms: tuple[str, ...] | None = None

    def rehashing(self, policy: tuple[str, ...]) -> tuple[str, ...]:
        """The algorithms this run re-hashes with, under a policy recording ``policy``; CustodesError, starting
        with the algorithms it is about (the CLI puts ``--algo`` before it), when one asked for cannot be."""
        if self.algorithms is None:
            return policy
        if not self.algorithms:
            raise CustodesError("re-hashing needs at least one algorithm")
        if "md5" in self.algorithms:
            raise CustodesError(f"md5: {MD5_ALONE}")
        unknown = [a for a in self.algorithms if a not in policy]
        if unknown:
            raise CustodesError(
                f"{', '.join(unknown)}: the policy records no such digest; it records {', '.join(policy)}"
            )
        return tuple(dict.fromkeys(self.algorithms))


def _verify_store(
    archive: Archive,
    result: VerifyResult,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    fresh: Catalog,
    schedule: Schedule,
    edited: Ledgered,
) -> None:
    """Check the store, then the second copy where the policy keeps one: each finding says which copy. Objects
    whose catalog row was edited are judged by the ledger's ``edited`` rows."""
    if archive.catalog.lacks("objects"):
        # Without the objects' rows there is nothing to check the store against (the rows the ledger records are
        # each `missing`, and the table is named by the schema check).
        result.findings.append(
            VerifyFinding(
                "missing",
                "the store was not checked: the catalog's objects table is gone or lacks its columns; "
                "`custodes ledger rebuild-catalog --replace` makes it again from the ledger, then verify again",
                table="objects",
            )
        )
        return
    _verify_copy(archive, result, workers, progress, fresh, schedule, edited)
    if archive.replica is None:
        return
    first = (result.run, result.checked, result.bytes, len(result.findings))
    # The same selection, all of it now: the budget and --resume are the first copy's (its run is recorded).
    second = Schedule(
        selection=schedule.selection,
        executor=schedule.executor,
        scheduler=schedule.scheduler,
        algorithms=schedule.algorithms,
    )
    _verify_copy(cast(Archive, _SecondCopy(archive)), result, workers, None, fresh, second, edited, record=False)
    where = archive.replica.describe()
    result.findings[first[3] :] = [
        dataclasses.replace(f, copy="replica", message=f"second copy ({where}): {f.message}")
        for f in result.findings[first[3] :]
    ]
    replica = {"checked": result.checked - first[1], "bytes": result.bytes - first[2]}
    result.run, result.checked, result.bytes = first[0], first[1], first[2]
    if result.run is not None:
        result.run["replica"] = replica


#: Objects whose storage lock :class:`_LockCheck` looks at together: their catalog facts read at once, the
#: stats of those not seen by a read sent :data:`LOCK_STATS_IN_FLIGHT` at a time.
LOCK_BATCH = 1000
LOCK_STATS_IN_FLIGHT = 8
LOCK_MISMATCH = "lock_mismatch"


class _LockCheck:
    """Where the storage enforces retention itself (S3 Object Lock), every live object must be locked as the
    catalog keeps it (custodes.retention.storage_locks): retained until its date, under a legal hold exactly
    while a recording of it is held or kept for ever. An object left unlocked (an ingest or a retention change
    killed before its lock, a hold lifted through another client) reads back intact, yet the storage would
    let it be deleted: ``lock_mismatch``, which ``custodes storage sync`` puts right.

    Objects are added as the run meets them, with what the store said of them when their bytes were read
    (:class:`~custodes.storage.HashedObject`: an S3 GET answers with the retention and hold) or nothing, and then
    their stat is asked; they are checked :data:`LOCK_BATCH` at a time, so memory stays flat whatever the
    archive holds. A store that enforces nothing is never asked."""

    def __init__(self, archive: Archive, result: VerifyResult) -> None:
        self.archive, self.result = archive, result
        self.enforced = archive.store.enforces_retention
        self._batch: dict[str, StoredObject | None] = {}
        self._unseen: list[str] = []

    def add(self, digest: str, seen: StoredObject | None = None) -> None:
        if not self.enforced:
            return
        self._batch[digest] = seen
        if seen is None:
            self._unseen.append(digest)
        if len(self._batch) >= LOCK_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        from custodes.retention import storage_locks

        batch, unseen, store = self._batch, self._unseen, self.archive.store
        self._batch, self._unseen = {}, []
        if unseen:
            workers = min(LOCK_STATS_IN_FLIGHT, len(unseen))
            with ThreadPoolExecutor(workers, thread_name_prefix="custodes-verify-lock") as pool:
                batch.update(zip(unseen, pool.map(store.stat, unseen), strict=True))
        now = time.time_ns()
        for digest, lock in storage_locks(self.archive, list(batch)).items():
            finding = _lock_finding(self.archive, digest, batch[digest], lock, now)
            if finding is not None:
                self.result.findings.append(finding)


def _lock_finding(
    archive: Archive, digest: str, got: StoredObject | None, lock: tuple[int | None, bool], now: int
) -> VerifyFinding | None:
    """``lock_mismatch`` for an object the storage keeps (``got``) otherwise than the catalog says (``lock``);
    None when it keeps it as said, or has no such object (the listing and the re-hash report that)."""
    from custodes.retention import locked_as_recorded

    until, held = lock
    if got is None or locked_as_recorded(got, lock, now):
        return None
    wrong = []
    if until is not None and until > now and (got.retain_until_ns or 0) < until:
        kept = "no retention" if got.retain_until_ns is None else f"retention until {rfc3339(got.retain_until_ns)}"
        wrong.append(f"the storage has {kept}, the catalog keeps it until {rfc3339(until)}")
    if bool(got.legal_hold) != held:
        wrong.append(
            "no legal hold in the storage, but a recording of it is held or kept for ever"
            if held
            else "a legal hold in the storage that no recording of it has"
        )
    detail = "; ".join(wrong) + " (`custodes storage sync` sets what the catalog says)"
    return VerifyFinding(LOCK_MISMATCH, detail, archive.catalog.segments.first_for_object(digest), digest)


def _verify_locks(archive: Archive, result: VerifyResult, within: DigestRange, reported: set[str]) -> None:
    """The lock of every live object in the range (:class:`_LockCheck`) but those the listing reported already
    (gone, written over): the pass of a run that does not meet each object in digest order (--quick, the
    oldest first)."""
    locks = _LockCheck(archive, result)
    if not locks.enforced:
        return
    for o in archive.catalog.objects.walk(within):
        if o.purged_ns is None and o.sha256 not in reported:
            locks.add(o.sha256)
    locks.flush()


class _SecondCopy:
    """The archive as verify sees it for the second copy: the same catalog and policy, the replica's store."""

    def __init__(self, archive: Archive) -> None:
        self._archive, self.store = archive, archive.replica

    def __getattr__(self, name: str) -> Any:
        return getattr(self._archive, name)


def _verify_copy(
    archive: Archive,
    result: VerifyResult,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    fresh: Catalog,
    schedule: Schedule,
    edited: Ledgered,
    record: bool = True,
) -> None:
    """Walk the catalog's objects and the store's files side by side, both in digest order (strays, links,
    purges), and re-hash the objects the schedule selects on its executor, shard by shard. ``record``: stamp
    what was found intact and record the run (the first copy's pass)."""
    selection = schedule.selection
    result.rehashed = not selection.quick
    result.algorithms = [] if selection.quick else list(schedule.rehashing(tuple(archive.policy.algorithms)))
    if selection.quick:
        quick = _StoreWalk(archive, result, fresh, selection.range, edited)
        for d in quick:
            _check_size(archive, result, d)
        quick.finish()
        _verify_locks(archive, result, selection.range, quick.reported)
        return
    catalog = archive.catalog
    # Only read here: the run's row is written with its first shard's stamps (_Hashing._record), so a verify
    # that has nothing to stamp never waits for the catalog's write lock (an ingest holds it while it records).
    now = time.time_ns()
    window = archive.policy.verification_window_days
    # A catalog whose schema is not as custodes makes it (a table dropped or re-made, a trigger added: the ledger
    # pass's finding names it) gets no write from verify (Catalog.write): this run is neither resumed nor
    # recorded, stamps nothing, and verifies all the same.
    schema_differs = record and bool(catalog.schema_differences())
    # Nor into a catalog this account cannot write (a copy on a read-only disk): verified all the same.
    read_only = record and catalog.read_only
    record = record and not schema_differs and not read_only
    runs = record
    earlier = resumable(catalog, selection, window, now) if schedule.resume and runs else None
    started = now if earlier is None else earlier.started_ns
    # Resuming: what this run re-hashed and found intact before it stopped is checked for presence and size
    # (a deletion or truncation since is found), not re-hashed again.
    cutoff = selection.cutoff_ns(started)
    # In digest order every live object the walk meets has its lock checked as it goes: by what its re-hash's
    # read saw (no request of its own), else by a stat. The oldest first meets only some: a pass of its own.
    locks = _LockCheck(archive, result) if cutoff is None else None
    walk = _StoreWalk(archive, result, fresh, selection.range, edited, None if earlier is None else started, locks)
    if cutoff is None:
        due: Iterator[_Due] = iter(walk)
    else:  # the oldest first: the listing is checked first (links found there are not re-hashed)
        walk.finish()
        due = walk.least_recently_verified(cutoff)
    hashing = _Hashing(archive, result, schedule, workers, progress, earlier, started, record, locks, runs)
    hashing.run(due)
    left, left_bytes = len(hashing.left), sum(hashing.left)  # handed out and not finished, or taken and not handed
    for d in due:  # what the budget left, counted only (and the listing finished as it goes): two numbers
        left, left_bytes = left + 1, left_bytes + d.size
        if locks is not None:
            locks.add(d.sha256)
    walk.finish()
    if locks is None:
        _verify_locks(archive, result, selection.range, walk.reported)
    else:
        locks.flush()
    run = hashing.run_id
    full = _FullDisk(catalog)
    if run is not None and hashing.record:
        # The schema changed during the run (as in _record), or the disk filled: left as a killed run is.
        with full, contextlib.suppress(SchemaDiffersError), catalog.write():
            if hashing.stopped is None:
                catalog.verify_runs.finish(run, time.time_ns())
            else:
                catalog.verify_runs.stop(run, hashing.stopped)
    if hashing.disk_full or full.met:
        run = None  # (its row, if an earlier shard wrote one, is a run the full disk cut short, as a kill would)
    got = None if run is None else catalog.verify_runs.get(run)
    if run is None and (schema_differs or hashing.schema_changed):
        not_recorded: str | None = NOT_RECORDED_SCHEMA
    elif run is None and (hashing.disk_full or full.met or catalog.disk_full):
        not_recorded = NOT_RECORDED_DISK_FULL
    elif run is None and read_only:
        not_recorded = NOT_RECORDED_READ_ONLY
    elif run is None:
        not_recorded = NOT_RECORDED_NOTHING
    else:
        not_recorded = None
    result.run = {
        "id": run,  # None: not recorded, for the reason "not_recorded" gives
        "not_recorded": not_recorded,
        "resumed": earlier is not None,
        "selection": selection.to_json(),
        "budget": str(schedule.budget),
        "executor": schedule.executor,
        "stopped": hashing.stopped,
        "left": {"objects": left, "bytes": left_bytes},
        "run_objects": None if got is None else got.objects,
        "run_bytes": None if got is None else got.bytes,
        "verified_before": 0 if earlier is None else earlier.objects,  # by this run before: not again
    }


class _StoreWalk:
    """The catalog's objects (in a digest range) and the store's files, merged in digest order.

    Iterating yields the live objects that are regular files (or not there: re-hashing says missing); strays,
    foreign files, links and purged objects become findings on the way. :meth:`finish` walks the rest."""

    def __init__(
        self,
        archive: Archive,
        result: VerifyResult,
        fresh: Catalog,
        within: DigestRange,
        edited: Ledgered,
        verified_since: int | None = None,
        locks: _LockCheck | None = None,
    ) -> None:
        """``edited``: the ledger's size and digests of each object whose catalog row was edited in them
        (:func:`_verify_catalog_against_ledger`). ``verified_since``: objects stamped verified since then (by
        the run being resumed) are checked for presence and size, not yielded to be re-hashed. ``locks``: where
        the lock of each object not yielded but live and listed sound is checked (those yielded are the
        re-hash's to add)."""
        self.archive, self.result, self.fresh, self.within, self.edited = archive, result, fresh, within, edited
        self.locks = locks
        self.verified_since = verified_since
        self.foreign: list[Listed] = []
        # Objects the listing found to be links or gone: reported already, not for --older-than to re-hash.
        self.reported: set[str] = set()
        self._objects = archive.catalog.objects.walk(within)
        self._rows = self._merge()

    def __iter__(self) -> Iterator[_Due]:
        return self._rows

    def finish(self) -> None:
        for _ in self._rows:
            pass
        self.result.findings += [_listed_finding(self.archive, x) for x in self.foreign]
        self.foreign = []

    def least_recently_verified(self, cutoff: int) -> Iterator[_Due]:
        for o in self.archive.catalog.objects.least_recently_verified(cutoff, self.within):
            due = self._due(o) if o.sha256 not in self.reported and not self._unnamed(o) else None
            if due is not None:
                yield due

    def _unnamed(self, o: CatalogObject) -> bool:
        """Whether the row's key is not an object's name (a SHA-256 digest): only an edit of the catalog writes one
        (a NULL, which the rowid table's TEXT PRIMARY KEY lets in, other text). Reported once; nothing in the store is
        looked for under it (a path made of it would be no object's, and stopped the run with a traceback)."""
        if is_digest(o.sha256):
            return False
        if o.sha256 not in self.reported:
            self._edited_row(
                o.sha256,
                f"the catalog's objects table holds a row named {o.sha256!r}, which is not a SHA-256 digest (the "
                "catalog was edited); no object is looked for under it",
                is_object=False,
            )
        return True

    def _edited_row(self, key: str, message: str, segment: int | None = None, is_object: bool = True) -> None:
        """An objects row verify cannot judge the store by (the catalog was edited): reported once, counted as
        checked, its object not re-hashed; the finding names the object where ``key`` is one."""
        self.reported.add(key)
        self.result.checked += 1
        self.result.findings.append(VerifyFinding("ledger_mismatch", message, segment, key if is_object else None))

    def _due(self, o: CatalogObject) -> _Due | None:
        """What object ``o``'s bytes are judged by: the ledger's size and digests where the catalog's row was
        edited in them (the replay names the edit; the evidence is not blamed for it), else the row's; None
        when neither can be checked against (reported: its bytes are not re-hashed)."""
        size, digests, head = self.edited.get(o.sha256, (o.size, o.digests, o.head_sha256))
        # SQLite keeps whatever an edit put in a column: a size that is not a whole number, digests that are not
        # ingest's JSON (_digest_map) or a head that is not text would end the run with a traceback. Such a row is
        # reported and its object is not re-hashed (the replay names the edit too).
        parsed = _digest_map(digests)
        if parsed is not None and type(size) is int and isinstance(head, str):
            return _Due(o.sha256, size, parsed, head, o.last_verified_ns)
        self._edited_row(
            o.sha256,
            f"the catalog's row of object {o.sha256} holds a size of {o.size!r} or digests that cannot be checked "
            "against (the catalog was edited); its bytes were not re-hashed",
            self.archive.catalog.segments.first_for_object(o.sha256),
        )
        return None

    def _listing(self) -> Iterator[Listed]:
        """The store's objects within the range, in digest order; what is not an object at all is set aside
        (reported at the end: among the objects it would break the order the merge relies on)."""
        for listed in self.archive.store.list(self.within):
            if listed.digest is None or listed.problem in ("misplaced", "foreign"):
                self.foreign.append(listed)
            else:
                yield listed

    def _merge(self) -> Iterator[_Due]:
        archive, result, catalog = self.archive, self.result, self.archive.catalog
        in_store = self._listing()
        current = next(in_store, None)
        for o in self._objects:
            if self._unnamed(o):
                continue
            sha = o.sha256
            while current is not None and current.digest < sha:  # type: ignore[operator]
                result.findings.append(_stray(archive, self.fresh, current.digest, current.name))  # type: ignore[arg-type]
                current = next(in_store, None)
            found = current if current is not None and current.digest == sha else None
            if found is not None:
                current = next(in_store, None)
            if o.purged_ns is not None:
                result.findings += _purged_object(archive, sha, found is not None and found.problem != "deleted")
                continue
            if found is None:
                # Gone: found by the listing every run makes, whatever it re-hashes (a slice, the oldest, a
                # budget), not left to a re-hash this run may never reach.
                self.reported.add(sha)
                result.checked += 1
                result.findings.append(
                    VerifyFinding("missing", _not_in_store(archive, sha), catalog.segments.first_for_object(sha), sha)
                )
                continue
            if found.problem == "unprotected":
                result.findings.append(_listed_finding(archive, found))  # and its bytes re-hashed all the same
            elif found.problem is not None:
                # A link (hashing would follow it: the bytes checked would not be the archive's own), an object
                # written again or deleted through another client: reported as the listing saw it.
                self.reported.add(sha)
                result.checked += 1
                result.findings.append(_listed_finding(archive, found))
                continue
            due = self._due(o)
            if due is None:
                continue
            since = self.verified_since
            if since is not None and o.last_verified_ns is not None and o.last_verified_ns >= since:
                _check_size(archive, result, due)  # (and --older-than's query no longer takes it)
                if self.locks is not None:
                    self.locks.add(sha)
                continue
            yield due
        while current is not None:
            result.findings.append(_stray(archive, self.fresh, current.digest, current.name))  # type: ignore[arg-type]
            current = next(in_store, None)


def _check_size(archive: Archive, result: VerifyResult, due: _Due) -> None:
    """--quick: the object is there, a regular file of its recorded size; its bytes are not read."""
    result.checked += 1
    found: tuple[str, str] | None
    try:
        st = archive.store.stat(due.sha256)
    except OSError as e:
        st, found = None, ("modified", f"object cannot be looked at: {e.strerror or e}")
    else:
        found = None if st is not None else ("missing", _not_in_store(archive, due.sha256))
    if st is not None:
        if st.size < due.size:
            # Judged as a whole verify judges it, by the first bytes too, read of this damaged object alone (a
            # hostile review: the same object was truncated by --quick and modified by a whole verify).
            kind, detail = _shorter(archive.store, due, st.size)
            found = (kind, f"{detail} (--quick read only its first bytes)")
        elif st.size != due.size:
            found = ("modified", f"object is {st.size} bytes, expected {due.size} (sizes only)")
    if found is not None:
        kind, detail = found
        result.findings.append(
            VerifyFinding(kind, detail, archive.catalog.segments.first_for_object(due.sha256), due.sha256)
        )


class _Hashing:
    """Shards of due objects handed to the executor, their results checked against the catalog and recorded
    shard by shard (objects found intact stamped verified, the run's counts), within the budget."""

    def __init__(
        self,
        archive: Archive,
        result: VerifyResult,
        schedule: Schedule,
        workers: int | None,
        progress: Callable[[int, int], None] | None,
        earlier: VerifyRun | None,
        started: int,
        record: bool = True,
        locks: _LockCheck | None = None,
        runs: bool = True,
    ) -> None:
        """``locks``: where each object handed out has its storage lock checked (with what its read saw of
        it), None where the run checks the locks apart (_verify_locks); ``runs``: record the run (verify_runs)
        with the stamps."""
        from custodes.plugins import ExecutorOptions, plugin_manager

        self.record, self.locks, self.runs = record, locks, runs
        self.copy = "replica" if isinstance(archive, _SecondCopy) else FIRST_COPY
        self.schema_changed = False  # the catalog's schema came to differ during the run: no more recorded
        self.disk_full = False  # the disk filled during the run: no more recorded
        self.archive, self.result, self.budget, self.progress = archive, result, schedule.budget, progress
        self.run_id = None if earlier is None else earlier.id
        self.selection, self.started_ns = schedule.selection.key, started
        self.algorithms = schedule.rehashing(tuple(archive.policy.algorithms))
        self.shard_objects = max(1, schedule.shard_objects)
        self.executor = plugin_manager().executors.get(schedule.executor)
        kind = "remote" if self.executor.remote else "local"
        self.shard_bytes = max(1, schedule.shard_bytes or SHARD_BYTES[kind])
        self.options = ExecutorOptions(workers=workers, scheduler=schedule.scheduler)
        self.workers = workers
        self.in_flight: dict[int, list[_Due]] = {}
        self.remote_bytes = self.spot_bytes = 0  # re-hashed by the cluster, and spot-checked here
        self.stopped: str | None = None
        self.left: list[int] = []  # sizes of the due objects the budget left for the next run
        self.handed_bytes = 0
        self.done = 0
        self.total = archive.catalog.objects.total_size(schedule.selection.range)
        self.started = time.monotonic()
        # Stamps go through a second connection (WAL lets it write while the digest-ordered read is open).
        self.stamper = archive.catalog.another()

    def run(self, due: Iterator[_Due]) -> None:
        token = None if self.executor.remote else _IN_HAND.set(self.archive.store)
        results = self.executor.run(hash_shard, self._shards(due), self.options)
        try:
            for index, hashed in results:
                self._record(self.in_flight.pop(index), hashed)
                if self._out_of_time():
                    break
        finally:
            close = getattr(results, "close", None)  # a generator: cancels what is still in flight (a budget
            if close is not None:  # spent, an error); a plain iterator has nothing running to cancel
                close()
            self.stamper.close()
            if token is not None:
                _IN_HAND.reset(token)
        for shard in self.in_flight.values():  # handed out, not finished: left for the next run
            self.left += [d.size for d in shard]
            if self.locks is not None:  # its lock is checked all the same
                for d in shard:
                    self.locks.add(d.sha256)
        self.in_flight.clear()

    def _out_of_time(self) -> bool:
        seconds = self.budget.seconds
        if seconds is None or time.monotonic() - self.started < seconds:
            return False
        self.stopped = self.stopped or f"time budget of {seconds:g} s spent"
        return True

    def _shards(self, due: Iterator[_Due]) -> Iterator[Shard]:
        algorithms = self.algorithms
        index, size = 0, 0
        shard: list[_Due] = []
        limit = self.budget.bytes
        for d in due:
            # At least one object per run, however large: a budget smaller than an object, or a time budget spent
            # before the first object was found (a listing of many folders), must not stall the next runs.
            first = not (shard or self.handed_bytes)
            if limit is not None and self.handed_bytes + size + d.size > limit and not first:
                self.stopped = f"byte budget of {limit:,} bytes spent"
            if self.stopped is not None or (not first and self._out_of_time()):
                self.left.append(d.size)
                if self.locks is not None:  # taken from the walk, not re-hashed: its lock is checked all the same
                    self.locks.add(d.sha256)
                break
            shard.append(d)
            size += d.size
            if len(shard) >= self.shard_objects or size >= self.shard_bytes:
                yield self._hand_out(index, shard, algorithms, size)
                index, shard, size = index + 1, [], 0
        else:
            if shard:
                yield self._hand_out(index, shard, algorithms, size)
            return
        # The budget stopped it: what is in hand is within it; the rest is counted by the caller.
        if shard:
            yield self._hand_out(index, shard, algorithms, size)

    def _hand_out(self, index: int, shard: list[_Due], algorithms: tuple[str, ...], size: int) -> Shard:
        self.in_flight[index] = shard
        self.handed_bytes += size
        return Shard(index, algorithms, self.archive.store.spec(), tuple(d.sha256 for d in shard))

    def _record(self, shard: list[_Due], hashed: Any) -> None:
        result, catalog = self.result, self.archive.catalog
        hashed = self._trusted(shard, hashed)
        if self.executor.remote:
            hashed = self._spot_checked(shard, hashed)
        verified: list[str] = []
        size = 0
        for d, r in zip(shard, hashed, strict=True):
            here = False
            if r.error is None and not any(a in r.digests for a in d.digests):
                # Recorded without any digest this run re-hashes (ingested under an older policy): nothing would
                # be compared, so it is re-hashed here with every one it has, never passed unread.
                (r,) = self._here([d], 1, self._algorithms_for(d))
                here = True
            result.checked += 1
            if self.locks is not None:
                # A remote worker's word on the lock is not taken (its digests are spot-checked; a lock it
                # says it saw could not be): the object's stat is asked here instead.
                self.locks.add(d.sha256, None if self.executor.remote else r.stored)
            if r.error is None:  # a file that could not be read counts no bytes towards the progress
                result.bytes += r.size or 0
            found = _compare(self.archive.store, r, d)
            if found is not None and self.executor.remote and not here:  # (a worker's word, not this process's)
                found = self._confirm(d, found)
            if found is not None or d.sha256 in result._kept:  # (what stands is what was not: verify's end)
                result._rehashed.add((d.sha256, self.copy))
            if found is None:
                verified.append(d.sha256)
                size += d.size
            else:
                kind, detail = found
                result.findings.append(
                    VerifyFinding(kind, detail, catalog.segments.first_for_object(d.sha256), d.sha256)
                )
        self.done += sum(d.size for d in shard)
        if self.record:
            self._stamp(verified, size)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _stamp(self, verified: list[str], size: int) -> None:
        """Record a shard: when its intact objects were verified, and the run's count (started with the first)."""
        full, started = _FullDisk(self.stamper), False
        try:
            with full, self.stamper.write():
                started = self.runs and self.run_id is None
                if started:
                    self.run_id = self.stamper.verify_runs.start(self.selection, self.started_ns).id
                self.stamper.objects.stamp_verified(verified, time.time_ns())
                self.stamper.object_findings.sound(verified)
                if self.run_id is not None:
                    self.stamper.verify_runs.add(self.run_id, len(verified), size)
        except SchemaDiffersError:
            # The schema changed during the run: nothing more is written; the next verify names the change.
            self.record = self.runs = False
            self.schema_changed = True
        if full.met:
            # The disk filled (the catalog opened, its -shm there already): verified all the same, recorded no
            # further. A run this shard started was rolled back with it (a hostile review: its id was printed).
            self.record = self.runs = False
            self.disk_full = True
            if started:
                self.run_id = None

    def _trusted(self, shard: list[_Due], hashed: Any) -> list[Rehashed]:
        """A result must be one Rehashed per object of its shard, in order; anything else (a plugin's bug, a
        worker of another custodes version) is not taken: the shard is re-hashed here and the fault reported."""
        if (
            isinstance(hashed, list)
            and len(hashed) == len(shard)
            and all(isinstance(r, Rehashed) and r.sha256 == d.sha256 for r, d in zip(hashed, shard, strict=True))
        ):
            return hashed
        self.result.findings.append(
            VerifyFinding(
                EXECUTOR_FAULT,
                f"executor {self.executor.name!r} returned a result that does not match its shard of "
                f"{len(shard)} objects; the shard was re-hashed here",
            )
        )
        return self._here(shard, self.workers)

    def _spot_checked(self, shard: list[_Due], hashed: list[Rehashed]) -> list[Rehashed]:
        """A remote worker that reads another copy of the store (a stale mount) calls damaged objects good: one
        object of a shard, chosen at random, is re-hashed here too, the first shard always and then as long as
        what is re-hashed here stays within SPOT_CHECK_SHARE of what the cluster re-hashed (one object of every
        one-object shard would re-hash everything twice: a bench's 2 workers ran slower than 1). Any
        difference: the shard's results are not taken, the whole shard is re-hashed here, and the worker's fault
        is reported."""
        pick = secrets.randbelow(len(shard))
        self.remote_bytes += sum(d.size for d in shard)
        if self.spot_bytes and self.spot_bytes + shard[pick].size > SPOT_CHECK_SHARE * self.remote_bytes:
            return hashed
        self.spot_bytes += shard[pick].size
        (mine,) = self._here([shard[pick]], 1)
        theirs = hashed[pick]
        if (mine.size, mine.digests, mine.error is None) == (theirs.size, theirs.digests, theirs.error is None):
            return hashed
        self.result.findings.append(
            VerifyFinding(
                EXECUTOR_FAULT,
                f"a worker of executor {self.executor.name!r} read object {shard[pick].sha256} otherwise than it "
                f"reads here (a stale or other copy of the store?); its shard of {len(shard)} objects was re-hashed "
                "here",
            )
        )
        return self._here(shard, self.workers)

    def _here(
        self, shard: list[_Due], threads: int | None, algorithms: tuple[str, ...] | None = None
    ) -> list[Rehashed]:
        """``shard`` re-hashed in this process, with the run's algorithms (a remote worker's are compared with
        these) or with ``algorithms``."""
        chosen = algorithms or self.algorithms
        return hash_shard(Shard(-1, chosen, self.archive.store.spec(), tuple(d.sha256 for d in shard)), threads)

    def _algorithms_for(self, d: _Due) -> tuple[str, ...]:
        """What object ``d`` is re-hashed with here: the run's algorithms, or, for one recorded with none of them,
        every one it has (a hostile review: a worker's `modified` was confirmed here with the run's BLAKE3 alone,
        which such an object has no record of, so it was called intact and stamped verified)."""
        if any(a in d.digests for a in self.algorithms):
            return self.algorithms
        return tuple(a for a in d.digests if a in ALGORITHMS) or ("sha256",)

    def _confirm(self, d: _Due, found: tuple[str, str]) -> tuple[str, str] | None:
        """A remote worker says an object is bad: re-hashed here before it is reported. Intact here: the worker
        is what is wrong (a fault of its machine or its mount), and that is reported instead."""
        (mine,) = self._here([d], 1, self._algorithms_for(d))
        again = _compare(self.archive.store, mine, d)
        if again is None:
            self.result.findings.append(
                VerifyFinding(
                    EXECUTOR_FAULT,
                    f"a worker of executor {self.executor.name!r} said: {found[1]}; re-hashed here, the object is "
                    "intact (check that worker's machine and its view of the store)",
                    self.archive.catalog.segments.first_for_object(d.sha256),
                    d.sha256,
                )
            )
        return again


def _compare(store: ObjectStore, r: Rehashed, d: _Due) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with object ``d`` re-hashed as ``r``; None when it is intact."""
    size = d.size
    if r.error is not None:
        return ("missing" if r.missing else "modified"), r.error
    if r.size is not None and r.size < size:
        return _shorter(store, d, r.size)
    if r.size != size:
        return "modified", f"object is {r.size} bytes, expected {size} (extended or replaced)"
    compared = [a for a in d.digests if a in r.digests]
    if any(r.digests[a] != d.digests[a] for a in compared):
        return "modified", "object content differs from its digest"
    if not compared and r.digests.get("sha256", d.sha256) != d.sha256:  # no recorded digest: its name, then
        return "modified", "object content differs from its name (its SHA-256)"
    return None


def _not_in_store(archive: Archive, sha: str) -> str:
    """What a missing object's finding says: where it should be (its path, or its s3:// key)."""
    return f"object is not in the store ({shown_name(archive.store.describe(sha))})"


def _shorter(store: ObjectStore, d: _Due, found: int) -> tuple[str, str]:
    """(kind, detail) of object ``d`` found ``found`` bytes long, shorter than recorded: truncated when its first
    bytes are the recorded ones, else modified (replaced, or too short to tell)."""
    # Only here: ingest brings the drivers and the timeline (numpy) with it, which verify needs for nothing
    # else, and which cost more start-up time than checking a few thousand small objects.
    from custodes.ingest import HEAD_BYTES, head_digest

    size = d.size
    if found >= HEAD_BYTES and head_digest(store, d.sha256) == d.head:
        return "truncated", f"object is {found} bytes, {size - found} short of {size}"
    if found < HEAD_BYTES:  # too little left to compare with the recorded first bytes
        return "modified", f"object is {found} bytes instead of {size} (truncated or replaced)"
    return "modified", f"object is {found} bytes instead of {size} and its first bytes differ (replaced)"


def _digest_map(text: object) -> dict[str, str] | None:
    """An objects row's digests, where they are what ingest writes (a JSON object of algorithm to hex text);
    None where not."""
    try:
        digests = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values()):
        return digests
    return None


def _purged_object(archive: Archive, sha: str, in_store: bool) -> list[VerifyFinding]:
    """A lawful purge leaves a tombstone in the ledger; without one, the object is missing."""
    catalog = archive.catalog
    if not _tombstoned(catalog, sha):
        return [
            VerifyFinding(
                "missing",
                "object marked purged, but the ledger has no tombstone for it",
                catalog.segments.first_for_object(sha),
                sha,
            )
        ]
    if not in_store:
        return []
    segment = catalog.segments.first_for_object(sha)
    done = catalog.ledger.purge_done_index(sha)
    if done is not None:  # the removal was recorded: bytes back afterwards are nobody's lawful act
        return [
            VerifyFinding(
                "unexpected",
                f"object {sha} was purged (its removal is ledger entry {done}) but its bytes are in the store again",
                segment,
                sha,
                done,
            )
        ]
    # Tombstone in the ledger, bytes still in the store: a purge stopped between its two phases (a storage
    # error, a crash). The footage is still readable although its destruction was decided: a failure, not
    # work in flight, until a purge run finishes it.
    return [
        VerifyFinding(
            "purge_incomplete",
            f"object {sha} is purged in the ledger (request {catalog.retention.tombstone_request(sha)}) but its "
            f"bytes are still in the store (the purge was interrupted): run "
            f"`custodes retention purge {shell_word(os.path.abspath(archive.root))} --resume`",
            segment,
            sha,
        )
    ]
