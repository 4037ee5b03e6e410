"""The storage contract: the one way custodes reaches stored bytes.

Every module (ingest, verify, export, ``access open``, purge, reports) speaks to a store through the methods of
:class:`ObjectStore` and nothing else: no module but the backend knows where bytes live, whether in a folder
(the builtin ``local`` backend), a bucket (the ``s3`` plugin) or anything a plugin adds.

An object is named by its SHA-256 (lower-case hex) and is **write-once**: a backend refuses to replace an
object that exists, keeps it until :meth:`ObjectStore.purge` (which custodes calls only after a ledger
tombstone), and where it can, has the server itself refuse to delete it before its retention date or while a
legal hold is on.

The contract in one view:

- :meth:`ObjectStore.put_many`: new objects from complete local files (the archive's spool), each with every
  digest the caller computed; the backend checks the bytes it stores against them (a server-side checksum
  where it has one, a read-back where it does not) and consumes the file. The files are durable and read back
  from the disk already where the file becomes the object (:attr:`ObjectStore.spool_is_object`).
- :meth:`ObjectStore.put_stream`: one new object from a stream (a repair from a replica).
- :meth:`ObjectStore.open`: a streaming read, whole or a byte range.
- :meth:`ObjectStore.stat`: an object's size, retention and hold, or None.
- :meth:`ObjectStore.list`: every object in digest order, lazily (a listing of millions of objects never sits in
  memory), with anything that is not a sound object (a link, a stray file, an overwritten version) reported
  as :class:`Listed` with its problem.
- :meth:`ObjectStore.hash_objects`: digests of objects as read now (verification); a backend reads them its own
  fastest way, :func:`hash_by_streaming` is the portable one.
- :meth:`ObjectStore.lock`: retention until a date (extended, never shortened) and a legal hold, where the
  backend enforces them.
- :meth:`ObjectStore.purge`: removal after the tombstone.
- :meth:`ObjectStore.guarantees`: what the store really guarantees, probed (``custodes storage check``).
- :meth:`ObjectStore.spec`: how to open the same store elsewhere (a cluster's worker).
"""

from __future__ import annotations

import builtins
import functools
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from custodes import _core
from custodes.catalog.evidence import EVERY_DIGEST, DigestRange
from custodes.errors import CustodesError, EvidenceReadError
from custodes.findings import shown_name
from custodes.hashing import HashResult

__all__ = [
    "CHUNK",
    "Guarantee",
    "Listed",
    "ObjectMissingError",
    "ObjectStore",
    "PROBLEMS",
    "Put",
    "StoreError",
    "StoreSpec",
    "StoredObject",
    "HashedObject",
    "copy_object",
    "spool_stream",
    "write_hashed",
    "hash_by_streaming",
    "hash_stream",
    "is_digest",
    "open_backend",
    "open_store",
    "own_folder",
    "valid_digest",
]

#: Bytes read at a time when streaming an object (hashing, export): large enough that the per-call cost
#: vanishes, small enough that a dozen streams at once stay well under the memory a 4 GiB file would take.
CHUNK = 8 * 2**20

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class StoreError(CustodesError):
    """The object store refused an operation (bad digest, overwrite, early delete, a missing object)."""

    kind = "store"


class ObjectMissingError(StoreError, FileNotFoundError):
    """There is no such object in the store (what :meth:`ObjectStore.open` raises, and the error of a
    :meth:`ObjectStore.hash_objects` result for it: a FileNotFoundError, as a missing file's is)."""

    kind = "missing"


def own_folder(folder: Path, mode: int = 0o700, *, create: bool = True) -> None:
    """A folder of the archive's own (its spool ``tmp/``, a local store's ``objects/`` and ``objects/sha256/``, the
    ledger's folders, ``exports/``, ``run/``), made with ``mode`` where it is not there (``create``; else only
    checked where it is); one that is a symbolic link or not a folder is refused (StoreError): through it, a
    command would write, remove or change files outside the archive. It is made only by the account that owns
    the folder it goes in: another (root reading someone's archive) made it its own, which the archive's account
    could not write into (a fourth hostile review); the write that needs it says so."""
    if create:
        try:
            create = os.geteuid() == os.stat(folder.parent).st_uid
        except FileNotFoundError:  # (its folder gone too: nothing made, and what needs it says so)
            create = False
    if create:
        with suppress(FileExistsError):
            os.mkdir(folder, mode)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        if create:
            raise
        return
    if not stat.S_ISDIR(st.st_mode):
        what = f"a symbolic link to {shown_name(os.readlink(folder))}" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise StoreError(
            f"{shown_name(os.fspath(folder))} is {what}: the archive's folders are its own, never followed "
            "elsewhere; put the folder back (from a backup) before any command uses the archive"
        )


def valid_digest(digest: str) -> str:
    """``digest`` if it is an object's name (64 lower-case hex digits), else StoreError: a name from outside
    never reaches a path or a key unchecked."""
    if not is_digest(digest):
        raise StoreError(f"not a SHA-256 digest: {digest!r}")
    return digest


def is_digest(digest: object) -> bool:
    """Whether ``digest`` is an object's name (64 lower-case hex digits)."""
    return isinstance(digest, str) and _SHA256.match(digest) is not None


@dataclass(frozen=True)
class StoredObject:
    """What a store says of one object. ``retain_until_ns`` and ``legal_hold`` are None where the backend
    keeps no retention of its own (``local``: the catalog's holds and the read-only file are the guard)."""

    digest: str
    size: int
    retain_until_ns: int | None = None
    legal_hold: bool | None = None


@dataclass(frozen=True, slots=True)
class HashedObject(HashResult):
    """What :meth:`ObjectStore.hash_objects` gives for an object whose read also told how the storage keeps
    it (S3's GET answers with the object's retention and legal hold, as a HEAD does): ``stored``, seen at the
    moment the bytes were read. Verify then checks the object's lock without asking the storage again."""

    stored: StoredObject | None = None


#: What a listing found that is not a sound object, each reported by verify with this kind:
PROBLEMS = {
    "link": "modified",  # a symbolic link where the object should be: hashing it would read other bytes
    "misplaced": "unexpected",  # an object's name where it does not belong
    "foreign": "unexpected",  # something that is not an object at all
    "versions": "modified",  # the object was written again (an overwrite as a new version)
    "deleted": "missing",  # the object's latest version is a delete marker
    "special": "modified",  # a FIFO, socket or device where the object should be: no bytes of the object's
    "unreadable": "unreadable",  # a folder of the store that cannot be listed: what is in it cannot be checked
    "unprotected": "unprotected",  # an object's file writable, or readable by others: its bytes are still checked
}


@dataclass(frozen=True)
class Listed:
    """One entry of :meth:`ObjectStore.list`. ``name`` is what findings show (``objects/sha256/ab/cd/<digest>``,
    ``s3://bucket/prefix/<digest>``); ``digest`` the object it is or claims to be (None for a foreign entry);
    ``problem`` None for a sound object, else a key of :data:`PROBLEMS`, and ``detail`` says what was seen.
    ``size`` is None where the listing does not give it (``local`` reads no file's size to list it)."""

    name: str
    digest: str | None
    size: int | None
    problem: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Put:
    """One object to create: ``file`` is a complete, durable local file (the archive's spool) that the store
    consumes (removes) once the object is stored; ``digests`` every digest the caller computed, ``sha256``
    among them (the object's name). ``retain_until_ns`` and ``legal_hold`` are applied where the backend
    enforces them, before the object is reported stored."""

    file: Path
    size: int
    digests: Mapping[str, str]
    retain_until_ns: int | None = None
    legal_hold: bool = False

    @property
    def digest(self) -> str:
        return self.digests["sha256"]


@dataclass(frozen=True)
class Guarantee:
    """One guarantee :meth:`ObjectStore.guarantees` probed: ``held`` or not, and what was seen."""

    name: str
    held: bool
    detail: str


@dataclass(frozen=True)
class StoreSpec:
    """How to open a store anywhere custodes runs (plain data: it pickles to a cluster's worker)."""

    backend: str
    location: str
    options: tuple[tuple[str, str], ...] = field(default=())


@runtime_checkable
class ObjectStore(Protocol):
    """The contract every storage backend keeps. See the module's docstring for the whole picture."""

    #: The backend's name (``local``, ``s3``).
    backend: str
    #: True where reading an object crosses a network: verify sizes its shards for it.
    remote: bool
    #: True where the storage itself enforces :meth:`lock` (S3 Object Lock); False where it is a no-op
    #: (``local``), and custodes does not spend time working out the dates.
    enforces_retention: bool
    #: True where :meth:`put_many` makes the spool file itself the object (``local`` links it into place): ingest
    #: then makes the spool copies durable and reads them back from the disk before handing them over, as that
    #: file is the evidence from then on. False where the bytes are sent elsewhere and read back from there by
    #: :meth:`put_many` itself (``s3``): the spool copy is only what is sent, a crash leaves it to be copied again,
    #: and syncing and re-reading it would check a file that is thrown away (0.6 s a GiB, a tenth of an S3 ingest).
    spool_is_object: bool

    def describe(self, digest: str | None = None) -> str:
        """Where the store is (no digest) or where one object lives, as findings and messages show it."""
        ...

    def claim(self) -> None:
        """Make the store's place (a bucket prefix, a folder) this archive's, or this copy's, or refuse with
        StoreError when another's it is: ``init`` calls it, and a backend before it writes, lists or deletes
        anything. Two archives in one place would purge each other's evidence; two copies in one are one."""
        ...

    def release(self) -> None:
        """Undo the claim this store object made itself (:meth:`claim` wrote the mark): a failed ``init`` leaves
        the place free for its retry, which is a new archive. Another's claim, or one this store only found,
        is never touched; StoreError when the storage keeps the mark (the message names it)."""
        ...

    def put_many(self, items: Sequence[Put]) -> builtins.list[bool | OSError]:
        """Create objects, write-once. Per item: True (stored now), False (an object of that name was there
        already: never replaced; the file is removed) or the OSError that stopped it (its file left for the
        caller; a backend that can see the object there is not the one named, by its size or checksum, says
        so this way).
        An object is reported stored only once it is durable and its bytes were checked against its digests;
        one that could not be made so is not left behind."""
        ...

    def put_stream(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> bool:
        """Create one object from a stream (same rules as :meth:`put_many`); raises what stopped it."""
        ...

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> IO[bytes]:
        """A binary stream of the object's bytes from ``offset`` (``length`` of them, or to the end);
        :class:`ObjectMissingError` when there is no such object."""
        ...

    def stat(self, digest: str) -> StoredObject | None: ...

    def list(self, within: DigestRange = EVERY_DIGEST) -> Iterator[Listed]:
        """Every object whose digest is ``within`` the range, in digest order, lazily; entries that are not
        sound objects are listed too (verify reports them), foreign ones in any order."""
        ...

    def hash_objects(
        self, digests: Sequence[str], algorithms: Sequence[str], threads: int | None
    ) -> builtins.list[HashResult]:
        """Each object's size and digests as read now, one :class:`HashResult` per digest in order (``path``:
        :meth:`describe`); an object that cannot be read is a result with an error, never an exception. A
        backend whose read tells the object's retention and hold gives a :class:`HashedObject` with them."""
        ...

    def lock(self, digest: str, retain_until_ns: int | None, hold: bool | None) -> None:
        """Have the storage keep the object (every version of it) until ``retain_until_ns`` at least (extended,
        never shortened; None: the date is left as it is) and under a legal hold or not (None: left as it is).
        One call for both: on a bucket each is a request per version, and the object's versions are listed
        once."""
        ...

    def purge(self, digest: str) -> None:
        """Remove the object for good. Only the retention workflow calls this, after its tombstone."""
        ...

    def restore(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> builtins.list[str]:
        """Put back an object that verify found damaged or gone in this store, from the intact copy of the
        other store (``custodes storage repair``, which ledgers each). The bytes are checked against
        ``digests`` before they take the object's place; what was there (damaged bytes, a link, an overwriting
        version) is removed where the storage allows it, and StoreError says why where it does not. Returns
        what it removed or did, one line each, for the repair's ledger entry (the damage is evidence too)."""
        ...

    def protect(self, digest: str) -> builtins.list[str]:
        """Make the object read-only for the archive's account alone again where the storage keeps that as its
        file's mode and :meth:`list` named it ``unprotected`` (``custodes storage repair``, which ledgers it); a
        store that never names one (a bucket: what protects its objects is Object Lock, which :meth:`lock` sets)
        raises StoreError. Returns what it did, one line each, for the repair's ledger entry."""
        ...

    def guarantees(self) -> builtins.list[Guarantee]:
        """Probe what the store guarantees (write-once, retention, holds, checksums) and say what was seen."""
        ...

    def spec(self) -> StoreSpec: ...


def open_store(spec: StoreSpec) -> ObjectStore:
    """The store ``spec`` names, opened through its backend's plugin."""
    return open_backend(spec.backend, Path(spec.location), dict(spec.options))


def open_backend(name: str, location: Path, options: Mapping[str, str]) -> ObjectStore:
    """The store backend ``name`` opens at ``location`` with ``options``: the one way a store is opened. StoreError
    when the backend's plugin fails to open one (anything but custodes' own errors, which say what they say), or
    gives one lacking a name of the contract (:class:`ObjectStore`) or a method it cannot call: a plugin written to
    an older contract (one without ``spool_is_object``) failed ingest with an AttributeError, and a plugin's own
    exception was a traceback."""
    from custodes.plugins import plugin_manager

    manager = plugin_manager()
    backend, provider = manager.storage_backends.get(name), manager.storage_backends.provider(name)
    plugin = f"storage backend {name!r} (plugin {provider!r})"
    try:
        store = backend.open(location, options)
        if store is None:
            raise StoreError(f"{plugin} gave no store: upgrade or remove the plugin")
        gaps = [n for n in _CONTRACT_DATA if not hasattr(store, n)]
        gaps += [
            f"{n} (not callable)" if hasattr(store, n) else n for n in _CONTRACT_METHODS if not _callable(store, n)
        ]
    except CustodesError:
        raise
    except Exception as e:  # a plugin's own failure, named as its, never a traceback of the command
        if isinstance(e, OSError) and manager.is_builtin(provider):
            raise  # custodes' own backend: the command says what the disk said (cli.environment_error)
        raise StoreError(f"{plugin} could not open the store at {location}: {type(e).__name__}: {e}") from e
    if gaps:
        raise StoreError(
            f"{plugin} gave a store without {', '.join(gaps)} of the storage contract (custodes.storage.ObjectStore): "
            "upgrade the plugin"
        )
    return store  # type: ignore[no-any-return]


def _callable(store: object, name: str) -> bool:
    return callable(getattr(store, name, None))


def write_hashed(
    stream: IO[bytes], target: Path, algorithms: Sequence[str], mode: int = 0o600
) -> tuple[int, dict[str, str]]:
    """Write ``stream`` to the new file ``target`` (never replacing one, never through a link), hashing the bytes
    on the way: ``(size, digests)`` of what was written. Not synced: the caller decides when it must be. The one
    copy loop of the storage layer (an object to a person's folder, a stream into a spool)."""
    import os

    hasher = _core.StreamHasher(list(algorithms))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    size, raw = hasher.finish()
    return size, {a: d.hex() for a, d in zip(algorithms, raw, strict=True)}


def spool_stream(spool: Path, stream: IO[bytes], size: int, digests: Mapping[str, str], durable: bool) -> Path:
    """A new spool file of the stream's bytes (synced when ``durable``), refused with StoreError and removed
    unless they are ``size`` bytes with ``digests``: what a backend's ``put_stream`` and ``restore`` store."""
    import os

    from custodes._durable import process_tag

    temp = spool / f"{process_tag()}-{os.urandom(6).hex()}-stream"
    try:
        got_size, got = write_hashed(stream, temp, sorted(digests))
        if got_size != size or got != {a: d.lower() for a, d in digests.items()}:
            raise StoreError(f"the bytes streamed for object {digests.get('sha256')} are not the ones named")
        if durable:
            from custodes._durable import fsync_file

            fsync_file(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def copy_object(
    store: ObjectStore, digest: str, target: Path, algorithms: Sequence[str] = ("sha256",), mode: int = 0o600
) -> dict[str, str]:
    """Write object ``digest`` to the new file ``target`` (see :func:`write_hashed`): the digests of what was
    written."""
    with store.open(digest) as stream:
        return write_hashed(stream, target, algorithms, mode)[1]


def hash_by_streaming(store: ObjectStore, digests: Sequence[str], algorithms: Sequence[str]) -> list[HashResult]:
    """:meth:`ObjectStore.hash_objects` for any store: each object streamed through the core's incremental
    hasher (every algorithm in one pass, the GIL let go while it hashes a chunk)."""
    return [hash_stream(store.describe(d), functools.partial(store.open, d), algorithms) for d in digests]


def hash_stream(where: str, opened: Callable[[], IO[bytes]], algorithms: Sequence[str]) -> HashResult:
    """The size and digests of the stream ``opened()`` gives, read to its end, for ``where`` (what the result's
    ``path`` says); a stream that cannot be opened or read is a result with the error, never an exception."""
    try:
        hasher = _core.StreamHasher(list(algorithms))
        with opened() as stream:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
        size, raw = hasher.finish()
    except CustodesError as e:
        return HashResult(where, None, error=e)
    except OSError as e:
        return HashResult(where, None, error=EvidenceReadError(e.errno, f"reading {where}: {e}", where))
    return HashResult(where, size, {a: d.hex() for a, d in zip(algorithms, raw, strict=True)})


#: The names every store has (:class:`ObjectStore`'s attributes, and its methods), checked by :func:`open_backend`.
_CONTRACT_DATA = tuple(ObjectStore.__annotations__)
_CONTRACT_METHODS = tuple(n for n in vars(ObjectStore) if not n.startswith("_") and n not in _CONTRACT_DATA)
