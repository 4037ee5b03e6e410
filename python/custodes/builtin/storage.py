"""The ``local`` storage backend: a write-once, content-addressed object store
in a directory.

Objects live at ``objects/<algorithm>/ab/cd/<digest>`` as read-only files. A
new object is written to ``tmp/`` first, made durable, then linked into place
with ``link(2)``, which refuses to replace anything already there (rename would
silently overwrite), and the new names are synced so they survive a power cut.
Nothing in this class deletes an object except :meth:`LocalStore.purge`,
which the retention workflow calls only after writing a ledger tombstone.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, cast

from custodes import _core
from custodes._durable import file_kind, fsync_dir, process_tag, protection_problems, read_small, sync_together
from custodes._faults import storage_op
from custodes.catalog.evidence import EVERY_DIGEST, DigestRange
from custodes.findings import shown_name
from custodes.hashing import HashResult, hash_files
from custodes.hookspecs import hookimpl
from custodes.plugins import StorageBackend
from custodes.storage import (
    Guarantee,
    Listed,
    ObjectMissingError,
    Put,
    StoredObject,
    StoreError,
    StoreSpec,
    own_folder,
    spool_stream,
    valid_digest,
)

__all__ = ["LocalStore", "StoreError"]

#: An object's file name (its SHA-256).
_DIGEST_NAME = re.compile(r"^[0-9a-f]{64}$")
#: The options the local backend reads: both are custodes' own (the archive sets them), none is the user's. An option
#: it does not read is refused, so that `--storage local --bucket B` is not accepted and silently ignored.
OPTIONS = ("algorithm", "owner")


class LocalStore:
    """The ``local`` backend of :class:`custodes.storage.ObjectStore`. ``spool`` is the archive's tmp/
    folder, on the same file system as the objects, so the copies ingest writes there are linked into
    place, never copied again."""

    backend = "local"
    remote = False
    enforces_retention = False
    spool_is_object = True  # linked into place: ingest syncs the spool copies and reads them back first

    def __init__(self, root: Path, algorithm: str = "sha256") -> None:
        self.root = Path(root)
        self.algorithm = algorithm
        self.objects = self.root / "objects" / algorithm
        self._objects = os.fspath(self.objects)
        self._under_root = os.path.join(os.fspath(self.root), "")  # the listing's paths start with it
        self.spool = self.root / "tmp"
        self.account: int | None = None  # the account its files belong to, where it is not its folder's owner
        self.owner = ""
        self._claimed_now = False  # this object wrote the owner file (release removes it)

    @classmethod
    def connect(cls, location: Path, options: Mapping[str, str]) -> LocalStore:
        """The store of the archive at ``location`` (the plugin's ``StorageBackend.open``)."""
        unread = sorted(set(options) - set(OPTIONS))
        if unread:
            raise StoreError(
                f"[storage] {', '.join(unread)}: not an option of the local backend (it takes none: its objects "
                "live in the archive's folder, a replica's in [replica] location); bucket, endpoint and prefix "
                "are options of a bucket's backend such as s3"
            )
        store = cls(Path(location), options.get("algorithm", "sha256"))
        if options.get("owner", "").endswith("/replica") and store.root.is_symlink():
            # A second copy's place that is a link was followed wherever it pointed, and repair filled that (a
            # hostile review). (The archive's own folder is named by whoever runs the command, links and all.)
            raise StoreError(
                f"{shown_name(os.fspath(store.root))} is a symbolic link to "
                f"{shown_name(os.readlink(store.root))}: a copy's folder is its own, never followed elsewhere; "
                "mount the disk there, or name the folder itself in the policy"
            )
        if options.get("owner", "").endswith("/replica"):
            _unclaimed_is_empty(store.root, options["owner"])
        store.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # a replica's own folder, made on first use
        for folder in (store.objects.parent, store.objects, store.spool):
            own_folder(folder)
        store.owner = options.get("owner", "")
        store.claim()
        return store

    def claim(self) -> None:
        """A second copy's folder is claimed (the archive's own folder is the archive's by being it): its owner
        file written, by the folder's own account only (root reading the archive wrote one that the archive's
        account could not read, and every command of it failed: a hostile review), or checked where it is."""
        if not self.owner.endswith("/replica"):
            return
        if _claim(self.root / OWNER_FILE, self.owner, write=os.geteuid() == os.stat(self.root).st_uid):
            self._claimed_now = True

    def release(self) -> None:
        """The owner file this store wrote, removed (a failed init's): see :meth:`ObjectStore.release`."""
        if self._claimed_now:
            (self.root / OWNER_FILE).unlink(missing_ok=True)
            fsync_dir(self.root)
            self._claimed_now = False

    def spec(self) -> StoreSpec:
        return StoreSpec(self.backend, os.fspath(self.root), (("algorithm", self.algorithm),))

    def describe(self, digest: str | None = None) -> str:
        return os.fspath(self.root if digest is None else self.path_for(digest))

    def path_for(self, digest: str) -> Path:
        return Path(self.file_of(digest))

    def file_of(self, digest: str) -> str:
        """:meth:`path_for` as a string (joined by hand: verify asks it of every object)."""
        d = valid_digest(digest)
        return f"{self._objects}{os.sep}{d[:2]}{os.sep}{d[2:4]}{os.sep}{d}"

    def folder_of(self, digest: str) -> str:
        """The folder ``digest``'s object belongs in, as a string: the listing asks it of every file in the
        store, where building a Path each time would cost more than the rest of the check."""
        return os.path.join(self._objects, digest[:2], digest[2:4])

    @contextmanager
    def _object_folder(self, digest: str, create: bool = False) -> Iterator[int]:
        """The folder of ``digest``'s object (``objects/sha256/ab/cd``), open, reached from the store's root
        without following a link at any step: every write into the store goes through it, so none lands outside
        the archive whatever was put in the tree (:func:`_open_folder`)."""
        d = valid_digest(digest)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            shown = os.fspath(self.root)
            for name in ("objects", self.algorithm, d[:2], d[2:4]):
                shown = os.path.join(shown, name)
                below = _open_folder(name, fd, create, shown)
                os.close(fd)
                fd = below
            yield fd
        finally:
            os.close(fd)

    def local_file(self, digest: str) -> Path | None:
        """The object as the read-only file it is (``access open`` without a folder hands out its path)."""
        try:
            with self._object_folder(digest) as folder:
                st = os.stat(digest, dir_fd=folder, follow_symlinks=False)
        except (OSError, StoreError):
            return None
        return self.path_for(digest) if stat.S_ISREG(st.st_mode) else None

    def put_many(self, items: Sequence[Put]) -> builtins.list[bool | OSError]:
        """Link fully written, durable spool files into place, each under its digest, and make the new names
        durable together: one sync for the whole group (custodes._durable.sync_together), not two folder
        fsyncs per object. link(2) refuses to replace a name (rename would silently overwrite).

        A file in this store's own spool (ingest's copies) is the object: linking it moves no byte, so the
        bytes stored are the bytes the caller hashed and read back. A file from elsewhere (the first copy's
        spool, when this store keeps the second copy on another disk) is first copied into the spool while
        hashed, and refused unless it has the digests named.

        All or nothing per name: a name this call created is removed again when it cannot be made durable,
        so a failed put never leaves an object that no catalog row will ever name (verify would call it
        unexpected)."""
        self._require_account()
        spooled = self._into_spool(items)
        outcomes = self._link_many(spooled)
        for item, own, outcome in zip(items, spooled, outcomes, strict=True):
            if isinstance(own, Put) and own.file != item.file:
                if isinstance(outcome, bool):
                    # stored from its copy: consumed, as a file of the spool would be (another process sweeping the
                    # same dead ingest's copies may have consumed it first: a hostile review's traceback)
                    Path(item.file).unlink(missing_ok=True)
                else:
                    own.file.unlink(missing_ok=True)  # the copy goes, the caller's file stays theirs

        return outcomes

    def _into_spool(self, items: Sequence[Put]) -> builtins.list[Put | OSError]:
        """Each item as a file of this store's spool: as it is, or a durable copy whose digests were checked."""
        from custodes import _core

        out: list[Put | OSError] = []
        copies: list[Path] = []
        for item in items:
            if os.path.dirname(os.path.abspath(item.file)) == os.fspath(self.spool.absolute()):
                out.append(item)
                continue
            temp = self.spool / f"{process_tag()}-{os.urandom(6).hex()}-copy"
            algorithms = sorted(item.digests)
            try:
                storage_op("write", temp)
                size, raw = _core.copy_and_hash(os.fspath(item.file), os.fspath(temp), algorithms)
                if size != item.size or {a: d.hex() for a, d in zip(algorithms, raw, strict=True)} != item.digests:
                    temp.unlink(missing_ok=True)
                    raise OSError(0, f"{item.file}: its bytes are not the ones named for object {item.digest}")
            except OSError as e:
                temp.unlink(missing_ok=True)
                out.append(e)
                continue
            copies.append(temp)
            out.append(Put(temp, item.size, item.digests, item.retain_until_ns, item.legal_hold))
        if copies:
            try:
                sync_together(self.spool, copies)
            except OSError as e:
                for temp in copies:
                    temp.unlink(missing_ok=True)
                return [e if isinstance(x, Put) and x.file in copies else x for x in out]
        return out

    def _link_many(self, items: Sequence[Put | OSError]) -> builtins.list[bool | OSError]:
        outcomes: list[bool | OSError] = []
        created: list[str] = []
        folders: dict[str, None] = {}
        for item in items:
            if isinstance(item, OSError):
                outcomes.append(item)
                continue
            try:
                final = self.file_of(item.digest)
                os.chmod(item.file, OBJECT_MODE)  # read-only, and for the archive's account alone
                storage_op("write", final)
                with self._object_folder(item.digest, create=True) as folder:
                    try:
                        os.link(item.file, item.digest, dst_dir_fd=folder)
                        created.append(item.digest)
                        outcomes.append(True)
                    except FileExistsError:
                        self._already_there(item, folder)
                        outcomes.append(False)
                # Also when the name was there already, its folders are synced: it may be
                # the link of an earlier run that died before its sync, and the catalog is
                # about to rely on it surviving a power cut.
                folders[os.path.dirname(final)] = None
            except (OSError, StoreError) as e:
                outcomes.append(e if isinstance(e, OSError) else OSError(0, str(e)))
        try:
            sync_together(self.objects, [Path(f) for f in folders])
        except OSError as e:
            for digest in created:
                self._unlink(digest)
            return [e if isinstance(o, bool) else o for o in outcomes]
        # The spool files' removal is not synced: the objects are durable now, and one
        # that a power cut brings back is cleaned by the next ingest.
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(item, Put) and isinstance(outcome, bool):
                # (another ingest's sweep may have stored and removed it meanwhile: a hostile review's traceback)
                Path(item.file).unlink(missing_ok=True)
        return outcomes

    def _already_there(self, item: Put, folder: int) -> None:
        """A name that is there already (an earlier run's link that died before its catalog row, or something
        planted) is taken for the object only where it is a regular file of the object's size and digests; else
        an OSError naming what is there: the file is not stored (ingest's ingest_failed: the card keeps it). A
        hostile review: a FIFO, a link or garbage at the object's place was taken as stored and the copy thrown
        away."""
        path = self.file_of(item.digest)
        st = os.stat(item.digest, dir_fd=folder, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_size == item.size:
            (held,) = hash_files([path], tuple(sorted(item.digests)))
            if held.ok and held.digests == dict(item.digests):
                return
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        if stat.S_ISREG(st.st_mode):
            what = "a file with other bytes"
        raise OSError(
            errno.EEXIST,
            f"{shown_name(path)} is there already and is {what}, not this object: "
            "nothing was stored over it (verify names it; see the README on a damaged store)",
        )

    def put_stream(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> bool:
        """One object from a stream: written to the spool while hashed, checked against ``digests``, made
        durable, then linked like :meth:`put_many`'s."""
        self._require_account()
        temp = spool_stream(self.spool, stream, size, digests, durable=True)
        try:
            (outcome,) = self.put_many([Put(temp, size, dict(digests))])
            if isinstance(outcome, OSError):
                raise outcome
            return outcome
        finally:
            temp.unlink(missing_ok=True)

    def restore(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> builtins.list[str]:
        """The checked bytes take the damaged object's place: what is there (a damaged file, a link) is removed
        and the new file linked in, its folder synced; between the two a crash leaves the object missing, which
        the next verify reports and the next repair restores."""
        self._require_account()
        digest = valid_digest(digests["sha256"])
        temp = spool_stream(self.spool, stream, size, digests, durable=True)
        try:
            with self._object_folder(digest, create=True) as folder:
                done = ["the object was missing"]
                try:
                    st = os.stat(digest, dir_fd=folder, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISDIR(st.st_mode):
                    # Only an empty folder goes: what a folder holds is not the archive's to throw away unseen
                    # (the unlink failed with a bare "[Errno 21] Is a directory").
                    storage_op("write", self.file_of(digest))
                    try:
                        os.rmdir(digest, dir_fd=folder)
                    except OSError as e:
                        raise StoreError(
                            f"object {digest}: a folder that is not empty is at its place "
                            f"({shown_name(str(self.path_for(digest)))}; {e.strerror}): it is left as it is; "
                            "move it away, then run storage repair again"
                        ) from None
                    done = ["removed an empty folder"]
                elif st is not None:
                    if stat.S_ISLNK(st.st_mode):
                        done = [f"removed a symbolic link to {shown_name(os.readlink(digest, dir_fd=folder))}"]
                    elif stat.S_ISREG(st.st_mode):
                        done = [f"removed a damaged file of {st.st_size} bytes"]
                    else:  # the ledger said "a damaged file of 0 bytes" of a FIFO (a hostile review)
                        done = [f"removed {file_kind(st.st_mode)} (not a file)"]
                    storage_op("write", self.file_of(digest))
                    os.unlink(digest, dir_fd=folder)  # the name only: never what a link points to
                os.chmod(temp, OBJECT_MODE)
                os.link(temp, digest, dst_dir_fd=folder)
                self._fsync_folder(digest, folder)
        finally:
            temp.unlink(missing_ok=True)
        return done

    def protect(self, digest: str) -> builtins.list[str]:
        """The object's file made read-only for the archive's account alone again (:data:`OBJECT_MODE`, owned by
        the store's account), through its folder and never through a link; what was done, for the ledger."""
        done = []
        account = self._account()
        with self._object_folder(digest) as folder:
            fd = os.open(digest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"object {digest} is {file_kind(st.st_mode)}, not a file: not changed")
                if st.st_nlink > 1:
                    # Another name (a hard link) shares the object's file: a mode or owner set here would be set on
                    # that file too, wherever it is (a hostile review: repair made a card's own file read-only, and
                    # verify then called the object intact while the card's bytes were the archive's). The object
                    # gets a file of its own, copied from these bytes once they are checked against its name; the
                    # other name keeps the old file, unchanged.
                    with os.fdopen(os.dup(fd), "rb") as stream:
                        self.restore(stream, st.st_size, {"sha256": digest})
                    return [f"gave it a file of its own: it was one file with {st.st_nlink - 1} other name(s)"]
                storage_op("write", self.file_of(digest))
                if st.st_uid != account:
                    try:
                        os.fchown(fd, account, -1)
                    except PermissionError:
                        raise StoreError(
                            f"object {digest} is owned by account {st.st_uid}, not the archive's ({account}): only "
                            "root can give it back (chown); not changed"
                        ) from None
                    done.append(f"gave it back to account {account} from {st.st_uid}")
                if stat.S_IMODE(st.st_mode) != OBJECT_MODE:
                    os.fchmod(fd, OBJECT_MODE)
                    done.append(f"set mode {stat.S_IMODE(st.st_mode):04o} back to {_OBJECT_MODE_TEXT}")
                os.fsync(fd)
            finally:
                os.close(fd)
        return done

    def _account(self) -> int:
        """The store's account: the archive's (set by the archive on a second copy's store: a hostile review gave
        a copy's folder to another account, and repair then handed that account the evidence files), else the
        owner of the store's folder (the archive's own)."""
        return self.account if self.account is not None else os.stat(self.root).st_uid

    def _require_account(self) -> None:
        """StoreError unless this process runs as the store's account (:meth:`_account`), asked before any write:
        an object (and a digest folder, 0700) another account wrote is one the archive's own account cannot
        remove or read through (root put one through the library: a fourth hostile review). The archive asks the
        same of every act (Archive.require_its_account); this is the storage contract's own rule, for a caller
        of the store itself."""
        from custodes.identity import account_name

        account = self._account()
        if os.geteuid() != account:
            raise StoreError(
                f"{self.root}: this process runs as {account_name(os.geteuid())} and the store's files belong to "
                f"{account_name(account)}: nothing was stored; store objects as {account_name(account)}"
            )

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> IO[bytes]:
        path = self.path_for(digest)
        storage_op("read", path)
        try:
            # Never through a link, the object's nor a folder's: the bytes read are the archive's own file's, or
            # none (a digest folder that is a link is a StoreError naming it).
            with self._object_folder(digest) as folder:
                fd = os.open(digest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissingError(f"object {digest} is not in the store") from None
        # Never waiting on a FIFO or reading a device planted at the object's place (access open and export hung).
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"object {digest} is not a regular file in the store ({shown_name(str(path))}): not read")
        f = os.fdopen(fd, "rb")
        if offset:
            f.seek(offset)
        return f if length is None else cast(IO[bytes], _Limited(f, length))

    def stat(self, digest: str) -> StoredObject | None:
        try:
            st = os.lstat(self.path_for(digest))
        except (FileNotFoundError, NotADirectoryError):  # a file where a digest folder belongs holds no object
            return None
        if stat.S_ISDIR(st.st_mode):  # a folder where the object belongs is not it (a purge traced back on one)
            return None
        return StoredObject(digest, st.st_size)

    def list(self, within: DigestRange = EVERY_DIGEST) -> Iterator[Listed]:
        """Every object file at its own place (``objects/sha256/ab/cd/<digest>``) whose digest is ``within``
        the range (folders wholly outside it are not listed), in digest order; anything else under
        ``objects/`` is listed as ``misplaced`` or ``foreign``, and an object that is a symbolic link as
        ``link``.

        The digest tree is read by the core (``_core.DigestTreeWalk``: its folders in parallel, no system call
        per file, streamed; in Python one ``scandir`` and sort per folder cost more than re-hashing a small
        object), the rest of ``objects/`` here."""
        top_folder = os.fspath(self.objects.parent)
        try:
            with os.scandir(top_folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.path == self._objects and e.is_dir(follow_symlinks=False):
                yield from self._digest_tree(within)
            elif e.is_dir(follow_symlinks=False):
                yield from self._all_foreign(e.path)
            else:
                yield self._listed(e.path, None)  # a file (or a link) beside objects/sha256

    def _digest_tree(self, within: DigestRange) -> Iterator[Listed]:
        """The tree under ``objects/sha256``, as the core reads it ahead of this loop a first-level folder at a
        time: a bounded share of the listing in memory, however many objects the store holds."""
        under = os.path.join(os.path.relpath(self._objects, self.root), "")  # objects/sha256/, as findings name it
        expected = f"{_OBJECT_MODE_TEXT} {self._account()}"
        for part in _core.DigestTreeWalk(self._objects, within.low or "", within.high):
            for found, kind, detail in part:
                if kind == "object":
                    # detail: the file's permission bits and owner as the core read them, "0400 1000" ("" when it
                    # could not): an object made writable, readable by others, or given to another account (which
                    # can then make it writable) is still hashed, and named (hostile reviews).
                    wrong = detail and detail != expected
                    yield Listed(
                        f"{under}{found[:2]}/{found[2:4]}/{found}",
                        found,
                        None,
                        "unprotected" if wrong else None,
                        _protection_said(detail, expected) if wrong else "",
                    )
                elif kind == "elsewhere":  # not an object at its own place: named as what it is, where it is
                    yield self._misplaced(found)
                elif kind == "folder":
                    yield from self._folder_unprotected(found)
                else:
                    yield self._odd(self._objects, found, kind, detail)

    def _folder_unprotected(self, below: str) -> Iterator[Listed]:
        """A folder of the digest tree unlike the tree's own (the core lists those; the store makes each 0700):
        ``unprotected`` when another account owns it or others may write it (they could replace the objects in
        it), by the archive's one rule for that (_durable.protection_problems); nothing when it is only
        different (a store made under another umask)."""
        path = os.path.join(self._objects, below)
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return  # gone since it was listed: what it held is missing, and named so
        wrong = protection_problems(st, self._account(), whose="the store's", path=path)
        if wrong:
            yield Listed(self._listed(path, None).name, None, None, "unprotected", "; ".join(wrong))

    def _odd(self, folder: str, found: str, kind: str, detail: str) -> Listed:
        """A link or a FIFO, socket or device at an object's place (``found`` its digest), or a folder the listing
        could not read (``found`` its path below ``folder``)."""
        if kind == "unreadable":
            return Listed(self._listed(os.path.join(folder, found), None).name, None, None, "unreadable", detail)
        path = os.path.join(folder, found[:2], found[2:4], found)
        if kind == "link":
            return self._listed(path, found, "link")
        return Listed(self._listed(path, None).name, found, None, "special", detail)

    def _misplaced(self, below: str) -> Listed:
        """A file at ``below`` in the tree that is not an object at its own place: misplaced where it is named
        as one, else foreign."""
        name = os.path.basename(below)
        return self._listed(os.path.join(self._objects, below), name if _DIGEST_NAME.match(name) else None, "misplaced")

    def _listed(self, path: str, digest: str | None, problem: str | None = "foreign") -> Listed:
        # The listing's paths are the root's own string and names joined to it: cut, not os.path.relpath, which
        # made both absolute for every file (a fifth of a verify of 20,000 small objects).
        under = self._under_root
        name = path[len(under) :] if path.startswith(under) else os.path.relpath(path, self.root)
        if digest is None:
            return Listed(name, None, None, "foreign")
        return Listed(name, digest, None, problem, os.readlink(path) if problem == "link" else "")

    def _all_foreign(self, folder: str) -> Iterator[Listed]:
        """Everything in a folder beside objects/sha256: foreign, however it is named (read by the core as the
        digest tree is: never follows links, so a loop cannot hang it, and no depth can exhaust Python's stack);
        a folder in it that cannot be read is named."""
        for part in _core.DigestTreeWalk(folder):
            for found, kind, detail in part:
                if kind == "folder":
                    continue  # a folder's mode: everything in it is foreign all the same
                if kind == "unreadable":
                    yield self._odd(folder, found, kind, detail)
                elif kind == "elsewhere":
                    yield self._listed(os.path.join(folder, found), None)
                else:  # named like an object at its place: still not one of this store's
                    yield self._listed(os.path.join(folder, found[:2], found[2:4], found), None)

    def hash_objects(
        self, digests: Sequence[str], algorithms: Sequence[str], threads: int | None
    ) -> builtins.list[HashResult]:
        # The core's batch hasher reads the files in parallel at the disk's speed: a stream per object
        # (custodes.storage.hash_by_streaming) would give that up for nothing.
        # Paths as strings: a Path per object cost as much as the engine's hashing of a 4 KiB object.
        return hash_files([self.file_of(d) for d in digests], tuple(algorithms), threads=threads)

    def lock(self, digest: str, retain_until_ns: int | None, hold: bool | None) -> None:
        """A local disk cannot refuse its owner a delete: the catalog's retention and holds, the read-only
        file and the ledger are the guard (``guarantees`` says so)."""
        valid_digest(digest)

    def purge(self, digest: str) -> None:
        """Remove an object. Only the retention workflow calls this, after its tombstone is in the ledger."""
        storage_op("write", self.file_of(digest))
        with self._object_folder(digest) as folder:
            os.unlink(digest, dir_fd=folder)  # the name only: never what a link points to
            self._fsync_folder(digest, folder)

    def _fsync_folder(self, digest: str, folder: int) -> None:
        """The object's folder, open as ``folder``, made durable (fsync_dir's, through the descriptor held)."""
        storage_op("fsync", Path(os.path.dirname(self.file_of(digest))))
        os.fsync(folder)

    def _unlink(self, digest: str) -> None:
        """A name this store just linked, removed again (its group could not be made durable)."""
        with suppress(OSError, StoreError), self._object_folder(digest) as folder:
            os.unlink(digest, dir_fd=folder)

    def guarantees(self) -> builtins.list[Guarantee]:
        return [
            Guarantee("write-once", True, "objects are linked into place with link(2), which never replaces a name"),
            self._read_only_probed(),
            Guarantee(
                "retention enforced by the storage",
                False,
                "a local disk lets its owner (and root) delete any file: only custodes' holds and the ledger's "
                "tombstones guard retention, and verify finds what went missing",
            ),
            Guarantee("legal hold enforced by the storage", False, "as for retention: custodes' holds only"),
        ]

    def _read_only_probed(self) -> Guarantee:
        """Whether an object's mode (0400) stops this account writing it, probed on a file of the store's spool:
        it does not stop root (CAP_DAC_OVERRIDE), which the check said it did (a hostile review: a constant)."""
        folder = self.spool if self.spool.is_dir() else self.root
        fd, name = tempfile.mkstemp(prefix=".custodes-probe-read-only-", dir=folder)
        try:
            os.fchmod(fd, OBJECT_MODE)
            os.close(fd)
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC))
            except PermissionError:
                return Guarantee(
                    "read-only objects",
                    True,
                    "objects are read-only files of the archive's account (0400): a write to one was refused (probed)",
                )
            return Guarantee(
                "read-only objects",
                False,
                "objects are read-only files (0400), but this account opened one for writing all the same (probed: "
                "root, or CAP_DAC_OVERRIDE): their mode does not stop it; keep the archive under an account of its "
                "own without that privilege (custodes serve)",
            )
        finally:
            os.unlink(name)


class _Limited:
    """A file read up to ``length`` bytes (a ranged read)."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self._f, self._left = f, length

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: In a second copy's folder: the archive (and copy) the folder belongs to.
OWNER_FILE = "custodes-archive.txt"
#: An object's file: read-only, and for the archive's account alone.
OBJECT_MODE = stat.S_IRUSR
_OBJECT_MODE_TEXT = f"{OBJECT_MODE:04o}"


def _protection_said(detail: str, expected: str) -> str:
    """What is wrong with an object file's protection, from the listing's "MODE UID" (and its number of names
    after them where it has more than one, "MODE UID NAMES") and the "MODE UID" expected."""
    mode, uid, *names = detail.split(" ")
    want_mode, _, want_uid = expected.partition(" ")
    said = [f"mode {mode}"] if mode != want_mode else []
    if uid != want_uid:
        said.append(f"owned by account {uid}, not the store's ({want_uid})")
    if names:
        said.append(
            f"{names[0]} names: its bytes are one file with a name elsewhere (a hard link), through which they can "
            "be changed"
        )
    return "; ".join(said)


def _unclaimed_is_empty(root: Path, owner: str) -> None:
    """A second copy's folder not claimed yet holds nothing but what a claim cut short made (empty ``objects/sha256``
    and ``tmp``): a hostile review named another archive's own folder as a second copy, and the two archives then
    shared one store (each calling the other's objects unexpected); a folder of other things is no copy's."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return  # made new
    except NotADirectoryError:
        raise StoreError(f"{shown_name(os.fspath(root))} is not a folder: a second copy needs a folder") from None
    if OWNER_FILE in names:
        return  # claimed: _claim says whose
    made = {"objects": ["sha256"], "tmp": []}
    other = [n for n in names if n not in made or _listing(root / n) not in ([], made[n])]
    other += [f"objects/sha256/{n}" for n in _listing(root / "objects" / "sha256")]
    if other:
        shown = ", ".join(shown_name(n) for n in other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        raise StoreError(
            f"{shown_name(os.fspath(root))} holds {shown} and is no copy's yet ({OWNER_FILE} is not there): a "
            "second copy's folder must be new or empty (custodes storage repair fills it); name another, or, if "
            f"this is the copy whose {OWNER_FILE} was lost, put it back holding {owner!r}"
        )


def _listing(folder: Path) -> builtins.list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _claim(path: Path, owner: str, *, write: bool = True) -> bool:
    """The folder is ``owner``'s: written once (O_EXCL) by the first archive to use it, refused to any other (two
    archives in one folder would purge each other's evidence). True when this call wrote it; ``write`` False:
    only checked where it is."""
    try:
        if not write and not os.path.lexists(path):
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    except FileExistsError:
        try:  # never through a link, nor waiting on a FIFO (a hostile review: both hung or leaked every command)
            found = read_small(path, 4096).decode(errors="replace")
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise StoreError(
                f"{path}: the folder's owner file is not one custodes wrote ({why}): put it back or give this copy a "
                "folder of its own"
            ) from None
        if found != owner:
            raise StoreError(
                f"{path.parent} belongs to archive {found!r} ({path.name}), not to {owner!r}: a folder holds one "
                "archive's copy: give this one a folder of its own"
            ) from None
        return False
    with os.fdopen(fd, "w") as f:
        f.write(owner)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return True


def _open_folder(name: str, parent: int, create: bool, shown: str) -> int:
    """The folder ``name`` in the folder open as ``parent`` (made 0700 first with ``create``), opened without
    following a link: a digest folder that is a link or a file is refused (StoreError naming it), never written
    through."""
    try:
        if create:
            with suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            # Named by its whole path: relative to ``parent``, the error said "Permission denied: '6a'" (a
            # hostile review), which names no folder anyone can find.
            raise OSError(e.errno, e.strerror, shown) from None
        raise StoreError(
            f"{shown_name(shown)} is a symbolic link or not a folder: nothing is written through it (verify names "
            "it; put the folder back from a backup)"
        ) from None


@hookimpl
def custodes_storage_backends() -> builtins.list[StorageBackend]:
    return [StorageBackend("local", "write-once content-addressed objects in a local directory", LocalStore.connect)]
