"""The ``s3`` backend of :class:`custodes.storage.ObjectStore`: objects in a bucket with Object Lock.

Layout: object ``<digest>`` is the key ``<prefix>objects/sha256/<digest>``; :meth:`S3Store.guarantees` (and an
archive's first claim) writes its probe objects under ``<prefix>probes/``, :meth:`S3Store.claim` the owner key
``<prefix>custodes-archive.txt``; nothing else is written, and :meth:`S3Store.list` reports anything else under
the prefix. The archive's catalog, ledger and spool stay in
its local folder (``location``).

Every call goes through one boto3 client (README.md, "Which client": obstore cannot send the caller's
SHA-256, set a retention or a legal hold, or list versions, and boto3 read faster here than obstore did), but
for GetObject, the conditional PutObject, PutObjectRetention and the ListObjectVersions pages, which take the
store's own path (:mod:`custodes_s3.wire`: botocore's signer and errors, a third of its CPU per request) where
an endpoint is named, and go back to the client for any request that path gets no answer to.

What the server is asked to enforce, and what the store checks itself:

- **write-once**: every create is conditional (``If-None-Match: *``, on the single PUT and on the completion
  of a multipart upload): an existing key is never replaced, whatever another client does at the same time.
- **the bytes named**: a PUT carries the caller's SHA-256 (``x-amz-checksum-sha256``) and each part of a
  multipart upload its own, so the server refuses bytes that changed on the way; then the object is **read back**
  (its version, streamed and hashed again with every digest the caller gave) before it counts as stored.
- **retention and legal hold** come only after the read-back: an object whose bytes are wrong can still be
  removed (unless the bucket's default retention locks it at once; then it stays and the error says so).
- **tampering** through another client shows in :meth:`S3Store.list`: a key written again (``versions``) or
  deleted (``deleted``), and keys that are not objects (``foreign``, ``misplaced``). A lock goes on the
  object's own version only (:meth:`S3Store._evidence`), never on one written over it.
- **a bucket that cannot lock** (none, no Object Lock, a retention refused to this identity) is refused by
  :meth:`S3Store.claim` before anything is written or stored.
"""

from __future__ import annotations

import base64
import email.utils
import errno
import ipaddress
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from botocore.auth import AUTH_TYPE_MAPS
from botocore.exceptions import BotoCoreError, ClientError

from custodes import _core
from custodes._faults import crashpoint
from custodes._interrupts import stop_pool
from custodes.catalog.evidence import EVERY_DIGEST, DigestRange
from custodes.errors import EvidenceReadError
from custodes.hashing import HashResult
from custodes.storage import (
    CHUNK,
    Guarantee,
    HashedObject,
    Listed,
    ObjectMissingError,
    Put,
    StoredObject,
    StoreError,
    StoreSpec,
    hash_stream,
    spool_stream,
    valid_digest,
)
from custodes_s3.wire import KNOWN_SHA256, KnownPayloadSigner, Unanswered, Wire, wire_for

__all__ = ["ABANDONED_AFTER", "MULTIPART_THRESHOLD", "OPTIONS", "S3ObjectError", "S3Store"]

log = logging.getLogger("custodes_s3")

#: The ``[storage]`` options the backend reads (``algorithm`` is custodes' own, always sha256 here).
OPTIONS = ("algorithm", "bucket", "endpoint", "owner", "prefix", "profile", "region", "retention_mode")
#: The key, under the prefix, naming the archive (and which of its copies) the prefix belongs to.
OWNER_KEY = "custodes-archive.txt"
#: The folders an archive writes below its prefix: no other archive's prefix lies inside them.
_OWN_FOLDERS = ("objects", "probes")
#: An option named like one of these is a credential: refused, whatever its value.
_SECRET_NAME = re.compile(r"secret|passw|token|credential|access|(^|[_.-])key($|[_.-])|key_?id", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
#: S3's longest key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
#: The longest key the backend writes under its prefix: an object's (a probe's and the owner key are shorter).
LONGEST_NAME = "objects/sha256/" + "0" * 64

#: Files larger than this are sent as a multipart upload: parts read from the file one at a time.
MULTIPART_THRESHOLD = 64 * 2**20
#: A part's size (or more, for a file that would need more than S3's 10,000 parts).
PART_SIZE = 16 * 2**20
_MAX_PARTS = 10_000
#: A multipart upload under ``objects/`` whose last part (or start) is older than this, by the server's clock, is
#: abandoned: the next :meth:`S3Store.put_many` aborts it. A live upload sends a part every few seconds; one
#: aborted by mistake fails its completion, and its put keeps the file to be tried again: nothing is lost.
ABANDONED_AFTER = timedelta(hours=1)
#: GETs in flight in :meth:`S3Store.hash_objects` when the caller does not say: a small object's GET is mostly
#: waiting on the server (2,000 objects of 20-200 KiB: verify 2.42 -> 2.13 s from 8 to 16), and
#: :data:`LARGE_READERS` of them at most read a large object ahead (memory: three chunks each).
READERS = 16
LARGE_READERS = 8
#: Connections kept open to the server, by the client and by the store's own path (:mod:`custodes_s3.wire`):
#: more than the threads that send at once (puts, parts, locks, GETs), so none waits for one or opens its own.
CONNECTIONS = 32
#: Files up to this size are PUT through the store's direct path. A larger one goes through botocore, which sends
#: ``Expect: 100-continue`` (urllib3 cannot): a key that exists already (a re-run) is refused before its bytes
#: are sent, and 1 ms of CPU is nothing beside the transfer.
DIRECT_PUT_MAX = 2**20
#: An object larger than this is read a chunk of this size ahead of its hashing (:class:`_ReadAhead`).
READ_AHEAD = 4 * 2**20
_NOT_FRESH = object()
#: Objects sent whole that :meth:`S3Store.put_many` sends at once, multipart objects it sends at once, and parts
#: of one multipart upload in flight. Two large objects at once: SeaweedFS took one object's parts no faster with
#: 8 or 16 in flight than with 4 (about 120 MB/s here, half its cores idle), but two objects went at 1.3x that,
#: and one object's read-back then overlaps the other's upload (4 x 256 MiB: 12.1 -> 9.2 s; rclone sends four
#: files at once).
PUTS_IN_FLIGHT = 8
MULTIPART_IN_FLIGHT = 2
PARTS_IN_FLIGHT = 4
#: Bytes read at a time to take a part's SHA-256 (each part thread holds one such buffer while it hashes).
PART_READ = 2**20
#: How long :meth:`S3Store.guarantees` locks its probe (COMPLIANCE): long enough to try the delete and the
#: shortening under a few seconds of clock skew, short enough that the next check can remove it.
PROBE_RETENTION = timedelta(seconds=30)

# The class has a method named ``list`` (the contract's): its annotations name these instead of ``list[...]``.
Entries = list[dict[str, Any]]  # a key's versions and delete markers, as ListObjectVersions gives them
Outcomes = list[bool | OSError]
Hashes = list[HashResult]
Guarantees = list[Guarantee]
Names = list[str]

_EXISTS = object()  # what a conditional create answers when the key is there already
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
#: What a server answers (400) to bytes that do not have the checksum sent with them: AWS and SeaweedFS say
#: BadDigest, others one of the rest.
_BAD_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"}


class S3ObjectError(StoreError, OSError):
    """One object's operation failed at the bucket; the message names the object and the reason. An OSError too,
    as :meth:`S3Store.put_many` reports a failed item with one."""

    kind = "store"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _reason(e: Exception) -> str:
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return f"{error.get('Code', _status(e))}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(e).__name__}: {e}"


def _missing(e: ClientError) -> bool:
    return _code(e) in _MISSING or _status(e) == 404


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _ns(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _date(ns: int) -> datetime:
    """A retention date for ``ns``, rounded up to the second: rounding never shortens what was asked."""
    seconds = -(-ns // 10**9)
    return datetime.fromtimestamp(seconds, UTC)


def _iso(ns: int | None) -> str:
    return "never" if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    """The backend's options, checked and completed with their defaults; StoreError saying what to change."""
    for name in options:
        if name not in OPTIONS:
            if _SECRET_NAME.search(name):
                raise StoreError(
                    f"[storage] {name}: credentials are never an archive option (the policy is in the ledger, "
                    "which every auditor reads): give the s3 backend AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(and AWS_SESSION_TOKEN) in its environment, or name an AWS profile with [storage] profile"
                )
            raise StoreError(f"[storage] {name}: not an option of the s3 backend (it reads {', '.join(OPTIONS)})")
    bucket = options.get("bucket", "")
    if not _BUCKET.match(bucket):
        raise StoreError(f"[storage] bucket = {bucket!r}: the s3 backend needs a bucket name (3-63 of a-z 0-9 . -)")
    if options.get("algorithm", "sha256") != "sha256":
        raise StoreError(f"[storage] algorithm = {options['algorithm']!r}: s3 objects are named by their sha256")
    mode = options.get("retention_mode", "COMPLIANCE").upper()
    if mode not in ("COMPLIANCE", "GOVERNANCE"):
        raise StoreError(f"[storage] retention_mode = {options['retention_mode']!r}: COMPLIANCE or GOVERNANCE")
    prefix = _check_prefix(options.get("prefix", ""))
    return {
        "bucket": bucket,
        "endpoint": _check_endpoint(options.get("endpoint", "")),
        "prefix": prefix,
        "region": options.get("region", "") or "us-east-1",
        "retention_mode": mode,
        "profile": options.get("profile", ""),
        "owner": options.get("owner", ""),
    }


def _check_prefix(prefix: str) -> str:
    """The key prefix, ending in "/" (one is added): every key the archive writes under it must be a key S3 takes
    and that names one place (no empty, "." or ".." segment, nothing a console would show otherwise)."""
    if prefix.startswith("/") or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise StoreError(
            f"[storage] prefix = {prefix!r}: a key prefix such as 'agency/archive/' (no leading /, no empty, "
            "'.' or '..' segment)"
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in prefix):
        raise StoreError(f"[storage] prefix = {prefix!r}: control characters are no part of a key prefix")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    try:
        size = len((prefix + LONGEST_NAME).encode())
    except UnicodeEncodeError:
        raise StoreError(f"[storage] prefix = {prefix!r}: not UTF-8 text (S3 keys are)") from None
    if size > MAX_KEY_BYTES:
        longest = MAX_KEY_BYTES - len(LONGEST_NAME)
        raise StoreError(
            f"[storage] prefix: {len(prefix.encode())} bytes (UTF-8) is too long: the archive's keys "
            f"(<prefix>{LONGEST_NAME.replace('0' * 64, '<64 hex digits>')}) must fit S3's {MAX_KEY_BYTES} "
            f"bytes, so the prefix (with its closing /) takes {longest} at most"
        )
    return prefix


def _check_endpoint(endpoint: str) -> str:
    if not endpoint:
        return ""
    url = urlsplit(endpoint)
    if url.username is not None or url.password is not None:
        raise StoreError("[storage] endpoint: credentials are never part of the endpoint URL (see [storage] profile)")
    if url.scheme not in ("https", "http") or not url.hostname or url.query or url.fragment:
        raise StoreError(f"[storage] endpoint = {endpoint!r}: an URL such as https://s3.example.org")
    if url.scheme == "http" and not _loopback(url.hostname):
        # Footage and the requests' signatures would cross the network in clear.
        raise StoreError(
            f"[storage] endpoint = {endpoint!r}: plain http is for a server on this machine only; use https"
        )
    return endpoint


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _session(profile: str) -> Any:
    """A boto3 session whose credentials are the environment's or the named profile's, and nothing else's (no
    instance or container metadata, no default profile picked up by chance)."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    if profile:
        try:
            session = boto3.session.Session(profile_name=profile)
        except ProfileNotFound:
            raise StoreError(f"[storage] profile = {profile!r}: no such AWS profile on this machine") from None
        credentials = session.get_credentials()
        if credentials is None or credentials.method in ("env", "iam-role", "container-role"):
            raise StoreError(f"[storage] profile = {profile!r}: the AWS profile gives no credentials of its own")
        return session
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not key or not secret:
        raise StoreError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for "
            "temporary ones) in custodes' environment, or name an AWS profile with [storage] profile"
        )
    try:
        return boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        )
    except ProfileNotFound:  # botocore reads AWS_PROFILE from the environment whatever the keys given
        raise StoreError(
            f"AWS_PROFILE={os.environ.get('AWS_PROFILE')!r} in the environment names no AWS profile on this "
            "machine: unset it (the keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or name a "
            "profile with [storage] profile"
        ) from None


def _client(options: Mapping[str, str], session: Any) -> Any:
    from botocore.config import Config

    config = Config(
        region_name=options["region"],
        signature_version="s3v4",
        # A server of one's own (SeaweedFS, MinIO, Ceph) rarely has a DNS name per bucket.
        s3={"addressing_style": "path" if options["endpoint"] else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
        max_pool_connections=CONNECTIONS,
        # Checksums are custodes' own (the caller's SHA-256, the read-back): no CRC32 computed over every body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # The endpoint is the archive's option, never an AWS_ENDPOINT_URL* variable or a profile's setting.
        ignore_configured_endpoint_urls=True,
    )
    client = session.client("s3", endpoint_url=options["endpoint"] or None, config=config)
    _sign_parts_with_their_checksum(client)
    return client


#: The name botocore knows :class:`~custodes_s3.wire.KnownPayloadSigner` by, for the parts it signs.
_PART_SIGNER = "custodes-s3v4-part"


def _sign_parts_with_their_checksum(client: Any) -> None:
    """Each UploadPart signed with the SHA-256 custodes computed of the part (its ``ChecksumSHA256``) as the
    SigV4 payload hash, where botocore would read the part from the file again and hash it (over plain http; a
    second SHA-256 of every byte of a large ingest, 0.8 s of 3.7 s for a 256 MiB object here). The server checks
    the bytes it receives against both, as before: nothing it refused is accepted now. A PutObject through the
    client keeps botocore's own hash: ``storage check`` probes whether the server honours a wrong checksum on
    it, which a payload hash taken from that checksum would hide (the store's own PUT, :meth:`Wire.put`, signs
    its known SHA-256: a wrong one is then refused by the signature's check as well)."""
    AUTH_TYPE_MAPS.setdefault(_PART_SIGNER, KnownPayloadSigner)

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        checksum = params.get("ChecksumSHA256")
        if checksum:
            context[KNOWN_SHA256] = base64.b64decode(checksum).hex()

    def choose(signature_version: Any, context: dict[str, Any], **_: Any) -> str | None:
        return _PART_SIGNER if signature_version == "s3v4" and KNOWN_SHA256 in context else None

    client.meta.events.register("before-parameter-build.s3.UploadPart", remember)
    client.meta.events.register_first("choose-signer.s3.UploadPart", choose)


class _Slice:
    """Bytes ``offset`` to ``offset + length`` of an open file, as the seekable body of one part: read with
    pread, so a part is never held in memory whole and botocore can rewind it for a retry."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._offset, self._length, self._pos = fd, offset, length, 0

    def read(self, n: int = -1) -> bytes:
        left = self._length - self._pos
        n = left if n is None or n < 0 else min(n, left)
        data = os.pread(self._fd, n, self._offset + self._pos) if n else b""
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        return self._pos

    def tell(self) -> int:
        return self._pos


class _Body:
    """An object's bytes as a binary stream (``read(n)``, ``close``, ``with``): errors while reading are
    EvidenceReadError (an OSError) naming the object, never botocore's own. ``head``: the rest of the GET's
    answer (the version, its retention and legal hold), as a HEAD would give it."""

    def __init__(self, body: Any, where: str, head: Mapping[str, Any] | None = None) -> None:
        self._body, self._where, self.head = body, where, head or {}

    def read(self, n: int = -1) -> bytes:
        if self._body is None:
            return b""
        try:
            return bytes(self._body.read(None if n is None or n < 0 else n))
        except (BotoCoreError, OSError, ValueError) as e:
            raise EvidenceReadError(errno.EIO, f"reading {self._where}: {_reason(e)}", self._where) from e

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReadAhead:
    """A large object's body read by a thread of its own, one chunk (:data:`READ_AHEAD`) ahead of the reader:
    the next chunk comes off the network while the one before is hashed (the core's hasher lets the GIL go),
    where one thread doing both left the connection idle while it hashed. At most three chunks are held (one
    arriving, one waiting, one being hashed); ``read`` gives one chunk at a time, whatever it is asked for, and
    b"" at the end. An error while reading is raised by the ``read`` that reaches it; ``close`` stops the thread
    and closes the body."""

    def __init__(self, body: _Body, done: Callable[[], None] = lambda: None) -> None:
        self._body, self._done = body, done  # ``done``: called once, when closed
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._fill, name="custodes-s3-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._body.read(READ_AHEAD)
                self._hand(chunk)
                if not chunk:
                    return
        except BaseException as e:  # the reader's to raise, naming the object (an EvidenceReadError)
            self._hand(e)

    def _hand(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():  # a reader that stopped reading (closed) must not leave the thread blocked
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        if self._ended:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._ended = not item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._body.close()
        done, self._done = self._done, lambda: None
        done()

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Store:
    """Objects in an S3 bucket, each under its SHA-256, write-once and locked by the server."""

    backend = "s3"
    remote = True
    enforces_retention = True
    spool_is_object = False  # sent, then read back from the bucket (_read_back): the spool copy is thrown away
    #: Keys asked for per ListObjectVersions page (S3's most); a test lowers it to cross pages with few objects.
    page_size = 1000

    def __init__(self, location: Path, options: Mapping[str, str], client: Any, wire: Wire | None = None) -> None:
        checked = check_options(options)
        self.location = Path(location)
        self.options = dict(options)
        self.bucket = checked["bucket"]
        self.prefix = checked["prefix"]
        self.mode = checked["retention_mode"]
        self._s3 = client
        # GetObject and the store's conditional PutObject, sent without botocore's machinery where it can (an
        # endpoint named): a third of its CPU per request; any other request, and one this path gets no answer
        # to, goes through the client.
        self._wire = wire
        self._objects = self.prefix + "objects/"
        self._base = self.prefix + "objects/sha256/"
        self.owner = checked["owner"]
        self._claimed = threading.Lock()
        self._claim_checked = False
        self._claim_version: tuple[str | None] | None = None  # the owner key's version claim() wrote, if it did
        self._unlockable: str | None = None  # why the bucket cannot lock (claim() found it): no put, no restore
        # Versions this store created and has not locked yet, by digest: the lock the catalog asks right after
        # (custodes.retention.to_store) needs neither a listing nor a HEAD for them (5 requests a small file
        # became 3). Another client's version written over one in those seconds is not locked with it, and
        # verify reports it written again all the same.
        self._fresh: dict[str, str | None] = {}
        # Set when the caller of put_many is interrupted (Ctrl-C): the uploads on its threads send no more parts
        # and are aborted, rather than running on to the end of a large object before the interrupt is seen.
        self._interrupted = threading.Event()
        self._large_reads = threading.BoundedSemaphore(LARGE_READERS)  # (hash_objects: large objects read ahead)

    @classmethod
    def connect(cls, location: Path, options: Mapping[str, str]) -> S3Store:
        """The store of the archive at ``location`` (the plugin's ``StorageBackend.open``; not named ``open``,
        which is the contract's read). Nothing is sent to the server yet: a wrong bucket or refused credentials
        show on the first call, naming the bucket."""
        checked = check_options(options)
        session = _session(checked["profile"])
        client = _client(checked, session)
        return cls(
            location, options, client, wire_for(client, session, checked["bucket"], checked["endpoint"], CONNECTIONS)
        )

    def spec(self) -> StoreSpec:
        return StoreSpec(self.backend, os.fspath(self.location), tuple(sorted(self.options.items())))

    def key(self, digest: str) -> str:
        return self._base + valid_digest(digest)

    def describe(self, digest: str | None = None) -> str:
        return f"s3://{self.bucket}/{self.prefix if digest is None else self.key(digest)}"

    # ---- put ----------------------------------------------------------------------------------------------

    def claim(self) -> None:
        """The prefix is this archive's (this copy's), and the bucket can keep evidence locked: what init and an
        ingest ask before they record anything, and every write here (see :meth:`_claim`)."""
        self._claim()
        self._refuse_unless(self._unlockable)

    def _claim(self) -> None:
        """The prefix is this archive's (this copy's): its owner key says so, written with a conditional create
        by the first archive to use it; another archive's (or this archive's other copy's) is refused before
        anything is written, listed or deleted here. A purge or a probe of one archive must never touch
        another's evidence, and two "copies" in one place are one copy."""
        if not self.owner or self._claim_checked:
            return
        with self._claimed:
            if self._claim_checked:
                return
            from custodes_s3.probes import cannot_lock

            # A bucket that cannot lock is refused before anything is written (init) or stored (each process):
            # evidence there could be deleted or overwritten by anyone with write access, and every put would
            # fail only after its upload, at its lock, one file after the other. An archive of its own there
            # (a bucket made again without Object Lock) may still be listed, verified and purged: verify is
            # what tells what is left.
            key = self.prefix + OWNER_KEY
            why = cannot_lock(self, try_retention=False)
            if why is not None:
                if self._owner_found(key) != self.owner:
                    self._refuse_unless(why)
                self._unlockable, self._claim_checked = why, True
                return
            try:
                try:  # an established archive's claim: this one request
                    found: str | None = (
                        self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode(errors="replace")
                    )
                except ClientError as e:
                    if _status(e) != 404:  # (a refusal or a fault is said as that, not taken for "no claim")
                        raise
                    found = None
                if found is None:
                    self._first_claim_is_alone()
                    try:
                        made = self._s3.put_object(
                            Bucket=self.bucket, Key=key, Body=self.owner.encode(), IfNoneMatch="*"
                        )
                        self._claim_version = (made.get("VersionId"),)
                    except ClientError as e:
                        if _status(e) != 412:
                            raise
                        # Another init took it between the two requests: whose it is now decides.
                        found = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode(errors="replace")
                if found is not None and found != self.owner:
                    raise StoreError(
                        f"{self.describe()} belongs to archive {found!r} ({key}), not to {self.owner!r}: a "
                        "bucket prefix holds one archive's objects (and one of its copies): give this one a "
                        "prefix of its own"
                    ) from None
            except (ClientError, BotoCoreError) as e:
                raise StoreError(f"{self.describe()}: whose prefix this is could not be found: {_reason(e)}") from None
            if self._claim_version is not None:  # the prefix's first claim (init): may this identity lock at all?
                why = cannot_lock(self, try_retention=True)
                if why is not None:
                    try:
                        self.release()
                    except StoreError as e:
                        # Said once, with why the init was refused: the mark stays, and a second release (the
                        # init's own undoing) would only repeat this (a hostile review: "X; and X", the why lost).
                        self._claim_version = None
                        raise StoreError(f"{_refusal(self, why)}; and {e}") from None
                    self._refuse_unless(why)
            self._claim_checked = True

    def _first_claim_is_alone(self) -> None:
        """A prefix no archive has claimed yet lies in no archive's own folders (``objects/``, ``probes/``) and
        holds nothing but other archives' places and the probes of an init of its own that failed (a hostile
        review: a prefix inside another archive's ``objects/`` was taken, the owner key written among its
        evidence, and each archive then called the other's objects its strays or passed over them). Archives may
        nest beside each other's folders: each passes over a folder holding another's owner key."""
        parts = self.prefix.split("/")[:-1]  # "a/b/" -> ["a", "b"]: the prefixes above are "" and "a/"
        for depth in range(len(parts)):
            above = "".join(p + "/" for p in parts[:depth])
            if parts[depth] not in _OWN_FOLDERS:
                continue
            found = self._owner_found(above + OWNER_KEY)
            if found is not None:
                raise StoreError(
                    f"{self.describe()} lies inside archive {found!r}'s own {parts[depth]}/ folder "
                    f"(s3://{self.bucket}/{above}{parts[depth]}/): give this one a prefix of its own, beside it"
                )
        page = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
        held = [o["Key"] for o in page.get("Contents", [])]
        for folder in (p["Prefix"] for p in page.get("CommonPrefixes", [])):
            if folder != self.prefix + "probes/" and self._owner_found(folder + OWNER_KEY) is None:
                held.append(folder)
        if held:
            raise StoreError(
                f"{self.describe()} holds {held[0]} and is no archive's yet ({OWNER_KEY} is not there): a new "
                "archive's prefix must be empty but for other archives' prefixes; give this one a prefix of its "
                f"own, or, if this is the archive whose {OWNER_KEY} was lost, put it back holding {self.owner!r}"
            )

    def _owner_found(self, key: str) -> str | None:
        """Whose the prefix is by its owner key, without writing it (None: no key, or it cannot be read)."""
        try:
            return str(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode(errors="replace"))
        except (ClientError, BotoCoreError):
            return None

    def _refuse_unless(self, why: str | None) -> None:
        if why is not None:
            raise StoreError(_refusal(self, why))

    def release(self) -> None:
        """The owner key's version this store wrote, deleted (a failed init's; see
        :meth:`custodes.storage.ObjectStore.release`): a key only found here, another archive's or not, stays."""
        if self._claim_version is None:
            return
        (version,) = self._claim_version
        key = self.prefix + OWNER_KEY
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key, **_version(version))
        except (ClientError, BotoCoreError) as e:
            raise StoreError(
                f"{self.describe()} stays claimed by archive {self.owner!r}: its mark s3://{self.bucket}/{key} "
                f"(version {version}) could not be deleted ({_reason(e)}: a default retention of the bucket?)"
            ) from None
        self._claim_version = None
        self._claim_checked = False

    def put_many(self, items: Sequence[Put]) -> Outcomes:
        """Create each object, write-once (see the module's docstring). Objects sent whole go
        :data:`PUTS_IN_FLIGHT` at a time: each is a few requests that mostly wait on the server (one after the
        other, 300 small files took 6x as long as rclone's four at a time). Multipart objects go
        :data:`MULTIPART_IN_FLIGHT` at a time, each :data:`PARTS_IN_FLIGHT` parts at a time, so memory stays at a
        few parts' worth whatever the objects' sizes. Multipart uploads an earlier run left open are aborted first
        (:data:`ABANDONED_AFTER`)."""
        self.claim()
        self._abort_abandoned_uploads()
        self._interrupted.clear()
        outcomes: list[bool | OSError] = [False] * len(items)
        whole = [i for i, item in enumerate(items) if item.size <= MULTIPART_THRESHOLD]
        parts = [i for i, item in enumerate(items) if item.size > MULTIPART_THRESHOLD]
        for chosen, at_once, name in ((whole, PUTS_IN_FLIGHT, "put"), (parts, MULTIPART_IN_FLIGHT, "multipart")):
            if not chosen:
                continue
            pool = ThreadPoolExecutor(min(at_once, len(chosen)), thread_name_prefix=f"custodes-s3-{name}")
            puts = [pool.submit(self._put_one, items[i]) for i in chosen]
            try:
                for i, put in zip(chosen, puts, strict=True):
                    outcomes[i] = put.result()
            except BaseException:
                # Interrupted here (Ctrl-C) or on a thread: nothing more starts, an upload in flight sends no more
                # parts and is aborted (its parts in flight end first), a read-back stops; each file stays for the
                # re-run. Another Ctrl-C meanwhile waits for that too (seconds): the process leaving with threads
                # still sending left their uploads open, and a traceback of the interpreter's own exit.
                self._interrupted.set()
                stop_pool(pool, puts)
                raise
            pool.shutdown(wait=True)
        return outcomes

    def _put_one(self, item: Put) -> bool | OSError:
        try:
            return self._put(item)
        except _Stopped as e:
            return S3ObjectError(f"{self._where(item)}: interrupted {e}; the re-run finishes it")
        except S3ObjectError as e:
            return e
        except (StoreError, OSError, BotoCoreError, ClientError) as e:
            return S3ObjectError(f"{self._where(item)}: not stored: {_reason(e)}")

    def _where(self, item: Put) -> str:
        try:
            return self.describe(item.digest)
        except StoreError:
            return f"s3://{self.bucket}/{self._base}{item.digest!r}"

    def _put(self, item: Put) -> bool:
        key, where = self.key(item.digest), self.describe(item.digest)
        with open(item.file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != item.size:
                raise S3ObjectError(f"{where}: {item.file} holds {size} bytes, not {item.size}: not stored")
            # A crash while sending leaves nothing (a PUT is stored whole or not at all) or an open multipart
            # upload; the re-run sends the file again and, the key there, aborts the uploads left open for it.
            if size > MULTIPART_THRESHOLD:
                version = self._create_multipart(f.fileno(), key, item)
                self._abort_uploads_of(key)
            else:
                version = self._create(f, key, item)
        if version is _EXISTS:
            return self._complete_existing(key, item)
        # A crash from here on leaves the object unread and unlocked: the re-run's create answers "exists", and
        # _complete_existing reads it back and locks it then.
        failed = self._read_back(key, version, item)
        if failed:
            # Never locked yet, so it can go (only this version: the one this call created).
            raise S3ObjectError(f"{where}: {failed}; {self._discard(key, version)}")
        # A crash while locking: the re-run reads it back again and sets what is missing (extended, never
        # shortened). A crash before the unlink: the re-run finds it locked as asked and removes the file.
        self._lock(key, version, item, None)
        if item.retain_until_ns is None and not item.legal_hold:
            self._fresh[item.digest] = version  # for the lock the catalog asks next (:meth:`lock`)
        os.unlink(item.file)
        return True

    def _create(self, f: IO[bytes], key: str, item: Put) -> Any:
        """One conditional PUT carrying the caller's SHA-256: the new version's id, or _EXISTS."""
        try:
            if self._wire is not None and item.size <= DIRECT_PUT_MAX:
                try:
                    return self._wire.put(key, f, item.size, item.digest, _b64(item.digest))
                except Unanswered:
                    # No answer (or a server error): botocore sends it again, with its retries. Were the first
                    # stored after all, this one gets 412, and the object is checked as any found is.
                    f.seek(0)
            r = self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=f,
                ContentLength=item.size,
                ContentType="application/octet-stream",
                ChecksumSHA256=_b64(item.digest),
                IfNoneMatch="*",
            )
        except ClientError as e:
            # 412: the key exists. A retried PUT whose first attempt was stored and whose answer was lost gets 412
            # too: _complete_existing checks that object like any other, and the put reports False.
            if _status(e) == 412:
                return _EXISTS
            raise self._refused(key, item, e) from None
        return r.get("VersionId")

    def _refused(self, key: str, item: Put, e: ClientError) -> S3ObjectError:
        where = self.describe(item.digest)
        if _code(e) in _BAD_CHECKSUM and _status(e) == 400:
            return S3ObjectError(
                f"{where}: the server refused the bytes sent: they do not have the SHA-256 the object is named by "
                f"(was {item.file} changed after it was hashed?); nothing stored ({_reason(e)})"
            )
        return S3ObjectError(f"{where}: not stored: {_reason(e)}")

    def _create_multipart(self, fd: int, key: str, item: Put) -> Any:
        """A multipart upload, each part read from the file as it is sent with its own SHA-256, completed on the
        condition that the key still does not exist: the new version's id, or _EXISTS."""
        part = max(PART_SIZE, -(-item.size // _MAX_PARTS))
        if self._head(key, None) is not None:
            return _EXISTS  # not gigabytes sent to learn it at the completion (which still checks, for a race)
        try:
            upload = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType="application/octet-stream", ChecksumAlgorithm="SHA256"
            )["UploadId"]
        except ClientError as e:
            raise self._refused(key, item, e) from None

        def send(number: int, offset: int) -> dict[str, Any]:
            self._stop_if_interrupted("before it was sent whole")
            length = min(part, item.size - offset)
            checksum = _part_sha256(fd, offset, length)
            self._stop_if_interrupted("before it was sent whole")
            r = self._s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                Body=_Slice(fd, offset, length),
                ContentLength=length,
                ChecksumSHA256=checksum,
            )
            return {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": checksum}

        try:
            parts = []
            # A few parts in flight: one stream waits on each part's round trip (75 MiB/s here, against
            # rclone's four at a time); each part is read from the file with pread, never held whole.
            with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="custodes-s3-part") as pool:
                sent = [pool.submit(send, n, o) for n, o in enumerate(range(0, item.size, part), start=1)]
                for future in as_completed(sent):
                    parts.append(future.result())
                    crashpoint("s3_part_sent")  # the tests' SIGKILL with the upload open at the server
            parts.sort(key=lambda p: p["PartNumber"])
            r = self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
            )
        except ClientError as e:
            self._abort(key, upload)
            # 412: another put stored the key first. NoSuchUpload with the key there: another put stored it and,
            # as every put that stores a key does, aborted the uploads still open for it, this one among them (a
            # hostile review: two ingests of one volume, and the slower one said each file had failed).
            if _status(e) == 412 or (_code(e) == "NoSuchUpload" and self._head(key, None) is not None):
                return _EXISTS
            raise self._refused(key, item, e) from None
        except BaseException:
            self._abort(key, upload)  # a crash instead leaves it to the sweep
            raise
        return r.get("VersionId")

    def _abort_uploads_of(self, key: str) -> None:
        """Abort every multipart upload still open for ``key``, which exists now: none can ever complete (a
        completion is a conditional create), so each is what a killed put of this object left (the re-run that
        stored it is the one that knows it is dead, long before :data:`ABANDONED_AFTER`), or a put of it running
        elsewhere at this moment, which then finds the key stored and reports it there (:meth:`_create_multipart`).
        Failing stops no put."""
        try:
            for page in self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=key):
                for upload in page.get("Uploads", []):
                    if upload["Key"] == key:
                        self._abort(key, upload["UploadId"])
        except (ClientError, BotoCoreError) as e:
            log.warning("s3://%s/%s: open multipart uploads not listed (%s)", self.bucket, key, _reason(e))

    def _abort(self, key: str, upload: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except (ClientError, BotoCoreError) as e:
            log.warning("s3://%s/%s: multipart upload %s not aborted (%s)", self.bucket, key, upload, _reason(e))

    def _read_back(self, key: str, version: str | None, item: Put) -> str | None:
        """Why the stored version is not the object named (None: it is, by every digest the caller gave)."""
        algorithms = sorted(item.digests)
        hasher = _core.StreamHasher(algorithms)
        try:
            got = self._get(key, version)
            # A large object read a chunk ahead of its hashing (a 256 MiB read-back took 0.8 s one step at a time).
            with _ReadAhead(got) if item.size > READ_AHEAD else got as body:
                while chunk := body.read(CHUNK):
                    self._stop_if_interrupted("before it was read back (stored, not locked)")
                    hasher.update(chunk)
        except (OSError, StoreError) as e:
            return f"could not be read back ({e})"
        size, raw = hasher.finish()
        if size != item.size:
            return f"read back {size} bytes, not {item.size}"
        differ = [a for a, d in zip(algorithms, raw, strict=True) if d.hex() != item.digests[a].lower()]
        if differ:
            return f"read back with another {', '.join(differ)} than the object's"
        return None

    def _stop_if_interrupted(self, when: str) -> None:
        """Raise :class:`_Stopped` once put_many's caller was interrupted (Ctrl-C): what this thread does for a
        large object (its parts, its read-back) stops there, and the re-run does the rest (a stored object not yet
        read back is read back and locked then, as after a crash)."""
        if self._interrupted.is_set():
            raise _Stopped(when)

    def _get(self, key: str, version: str | None, **ranged: str) -> _Body:
        where = f"s3://{self.bucket}/{key}"
        try:
            if self._wire is not None:
                try:
                    body, head = self._wire.get(key, version, ranged.get("Range"))
                    return _Body(body, where, head)
                except Unanswered:
                    pass  # botocore asks again, with its retries
            r = self._s3.get_object(Bucket=self.bucket, Key=key, **_version(version), **ranged)
        except ClientError as e:
            if _missing(e):
                raise StoreError(f"{where}: no such object") from None
            if _status(e) == 416:  # a range starting at or past the end: no bytes, as a file read there gives
                return _Body(None, where)
            raise EvidenceReadError(errno.EIO, f"reading {where}: {_reason(e)}", where) from None
        except BotoCoreError as e:
            raise EvidenceReadError(errno.EIO, f"reading {where}: {_reason(e)}", where) from None
        return _Body(r["Body"], where, {k: v for k, v in r.items() if k != "Body"})

    def _discard(self, key: str, version: str | None) -> str:
        """Delete the version this put created, after a failed read-back; says what became of it."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key, **_version(version))
        except (ClientError, BotoCoreError) as e:
            return f"it could not be removed ({_reason(e)}: a default retention of the bucket?) and stays for verify"
        return "it was removed"

    def _complete_existing(self, key: str, item: Put) -> bool:
        """The key exists: never replaced. It is this object if its size (and its SHA-256, where the server kept
        a whole-object one) agree; then whatever an interrupted put of it left undone is done (read back,
        locked), the file is removed, and the put reports False. An object that disagrees is left as it is
        (it is evidence of something: verify reports it) and the put fails."""
        where = self.describe(item.digest)
        head = self._head(key, None, checksums=True)
        if head is None:
            raise S3ObjectError(f"{where}: the server said it exists, then that it does not (deleted meanwhile?)")
        if head["ContentLength"] != item.size:
            raise S3ObjectError(f"{where}: exists with {head['ContentLength']} bytes, not {item.size}: not replaced")
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum and checksum != _b64(item.digest):  # "-N": a multipart upload's
            raise S3ObjectError(f"{where}: exists with another SHA-256 checksum than its name: not replaced")
        version = head.get("VersionId")
        if not _locked_as_asked(head, item):
            # Not locked as asked: a put that stopped before its lock (or one that asks for none, where nothing
            # tells): read back before anything is locked or the file removed. On failure nothing is deleted:
            # this object may be one an earlier ingest recorded.
            failed = self._read_back(key, version, item)
            if failed:
                raise S3ObjectError(f"{where}: exists, but {failed}: not replaced, left for verify")
            self._lock(key, version, item, head)
        os.unlink(item.file)
        return False

    def _lock(self, key: str, version: str | None, item: Put, head: Mapping[str, Any] | None) -> None:
        where = f"s3://{self.bucket}/{key}"
        try:
            if item.retain_until_ns is not None:
                self._retain_version(key, version, item.retain_until_ns, head)
            if item.legal_hold and (head is None or head.get("ObjectLockLegalHoldStatus") != "ON"):
                self._s3.put_object_legal_hold(
                    Bucket=self.bucket, Key=key, LegalHold={"Status": "ON"}, **_version(version)
                )
        except (ClientError, BotoCoreError) as e:
            raise S3ObjectError(f"{where}: stored and read back, but not locked as asked: {_reason(e)}") from None

    def _retain_version(self, key: str, version: str | None, until_ns: int, head: Mapping[str, Any] | None) -> None:
        """Retention of one version until ``until_ns``, if it is not kept that long already (never shortened: a
        shorter date is left alone, and COMPLIANCE stays COMPLIANCE)."""
        current = _ns(head.get("ObjectLockRetainUntilDate")) if head else None
        if current is not None and current >= until_ns:
            return
        if current is None and until_ns <= time.time_ns():
            return  # a date already past keeps nothing, and the server refuses it
        mode = "COMPLIANCE" if "COMPLIANCE" in (self.mode, (head or {}).get("ObjectLockMode")) else self.mode
        try:
            if self._wire is not None:
                try:
                    self._wire.put_retention(key, version, mode, _date(until_ns))
                    return
                except Unanswered:
                    pass  # no answer: botocore sends it again, with its retries
            self._s3.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={"Mode": mode, "RetainUntilDate": _date(until_ns)},
                **_version(version),
            )
        except ClientError:
            # Refused as a shortening: a new version the bucket's default retention locked already, for longer.
            now = self._head(key, version) if head is None else None
            if now is None or (_ns(now.get("ObjectLockRetainUntilDate")) or 0) < until_ns:
                raise

    def put_stream(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> bool:
        """One object from a stream: written to the archive's spool while hashed, checked against ``digests``,
        then stored as :meth:`put_many` stores a file (a PUT needs its length and its bytes twice: for the
        signature over plain http, and again for a retry)."""
        valid_digest(digests.get("sha256", ""))
        spool = self.location / "tmp"
        spool.mkdir(mode=0o700, exist_ok=True)
        # Not synced: the bucket, not the spool, is where it must last (the read-back checks what it keeps).
        temp = spool_stream(spool, stream, size, digests, durable=False)
        try:
            (outcome,) = self.put_many([Put(temp, size, dict(digests))])
            if isinstance(outcome, OSError):
                raise outcome
            return outcome
        finally:
            temp.unlink(missing_ok=True)

    def _abort_abandoned_uploads(self) -> None:
        """Abort the multipart uploads under ``objects/`` that nobody has sent a part to for
        :data:`ABANDONED_AFTER` (by the server's clock: its Date header). A sweep that fails stops no put."""
        try:
            pages = self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._objects)
            for page in pages:
                now = _server_time(page)
                for upload in page.get("Uploads", []):
                    if (
                        now - upload["Initiated"] >= ABANDONED_AFTER
                        and now - self._last_part(upload) >= ABANDONED_AFTER
                    ):
                        self._abort(upload["Key"], upload["UploadId"])
        except (ClientError, BotoCoreError) as e:
            log.warning("%s: open multipart uploads not listed (%s)", self.describe(), _reason(e))

    def _last_part(self, upload: Mapping[str, Any]) -> datetime:
        last: datetime = upload["Initiated"]
        pages = self._s3.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        for page in pages:
            for part in page.get("Parts", []):
                last = max(last, part["LastModified"])
        return last

    # ---- read ---------------------------------------------------------------------------------------------

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> IO[bytes]:
        """The object's bytes, streamed (a ranged GET for ``offset``/``length``); StoreError if there is none."""
        key = self.key(digest)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"offset {offset} and length {length} must not be negative")
        if length == 0:
            return _Body(None, self.describe(digest))  # type: ignore[return-value]
        ranged = {} if offset == 0 and length is None else {"Range": _range(offset, length)}
        try:
            return self._get(key, None, **ranged)  # type: ignore[return-value]
        except StoreError:
            raise ObjectMissingError(f"object {digest} is not in the store ({self.describe(digest)})") from None

    def stat(self, digest: str) -> StoredObject | None:
        head = self._head(self.key(digest), None)
        return None if head is None else _stored(digest, head)

    def _head(self, key: str, version: str | None, checksums: bool = False) -> dict[str, Any] | None:
        extra = {"ChecksumMode": "ENABLED"} if checksums else {}
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=key, **_version(version), **extra)
        except ClientError as e:
            if _missing(e) or _status(e) == 405:  # 405: the version is a delete marker
                return None
            raise S3ObjectError(f"s3://{self.bucket}/{key}: {_reason(e)}") from None
        except BotoCoreError as e:
            raise S3ObjectError(f"s3://{self.bucket}/{key}: {_reason(e)}") from None
        return head

    def hash_objects(self, digests: Sequence[str], algorithms: Sequence[str], threads: int | None) -> Hashes:
        """Each object streamed through the core's hasher, ``threads`` GETs in flight (default :data:`READERS`):
        a GET waits on the network far longer than its bytes take to hash. Each result is a
        :class:`~custodes.storage.HashedObject` carrying the retention and legal hold the GET answered with, so
        verify checks the object's lock without a HEAD of its own (half the requests of a small object)."""
        workers = max(1, min(threads or READERS, len(digests)))
        if workers == 1:
            return [self._hash_one(d, algorithms) for d in digests]
        with ThreadPoolExecutor(workers, thread_name_prefix="custodes-s3") as pool:
            return list(pool.map(lambda d: self._hash_one(d, algorithms), digests))

    def _hash_one(self, digest: str, algorithms: Sequence[str]) -> HashResult:
        bodies: list[_Body] = []

        def opened() -> IO[bytes]:
            body: Any = self.open(digest)
            bodies.append(body)
            if body.head.get("ContentLength", 0) <= READ_AHEAD:
                return body  # type: ignore[no-any-return]
            self._large_reads.acquire()
            return _ReadAhead(body, self._large_reads.release)  # type: ignore[return-value]

        r = hash_stream(self.describe(digest), opened, algorithms)
        if r.error is not None or not bodies or not bodies[0].head:
            return r
        return HashedObject(r.path, r.size, r.digests, stored=_stored(digest, bodies[0].head))

    # ---- list ---------------------------------------------------------------------------------------------

    def list(self, within: DigestRange = EVERY_DIGEST) -> Iterator[Listed]:
        """Every key under ``objects/sha256/`` within the range, in digest order, page by page
        (ListObjectVersions: a key written again or deleted through another client shows there), then every
        key elsewhere under ``objects/`` (foreign, whatever the range, as the local backend lists them)."""
        self._claim()  # listed, whatever the bucket can lock: verify tells what is left
        low, high = within.low, within.high
        # S3 lists the keys after the marker: one just below the first key of the range (its last character one
        # lower, then "~", above every hex digit). A key between the two is not an object's and is skipped below.
        marker = self._base + low[:-1] + chr(max(ord(low[-1]) - 1, 0)) + "~" if low else ""
        for key, entries in self._versions(self._base, marker):
            name = key[len(self._base) :]
            if low is not None and name < low:
                continue
            if high is not None and name >= high:
                break
            yield self._listed(key, name, entries)
        yield from self._elsewhere()

    def _versions(self, prefix: str, marker: str = "", delimiter: str = "") -> Iterator[tuple[str, Entries]]:
        """``(key, its versions and delete markers)`` in key order, lazily: one page in memory, and a key whose
        versions straddle two pages is given once, whole."""
        key: str | None = None
        entries: Entries = []
        try:
            for page in self._version_pages(prefix, marker, delimiter):
                found = page.get("Versions", []) + [{**m, "DeleteMarker": True} for m in page.get("DeleteMarkers", [])]
                for entry in sorted(found, key=lambda e: e["Key"]):
                    if entry["Key"] != key:
                        if key is not None:
                            yield key, entries
                        key, entries = entry["Key"], []
                    entries.append(entry)
        except (ClientError, BotoCoreError) as e:
            raise StoreError(f"{self.describe()}: the bucket could not be listed: {_reason(e)}") from None
        if key is not None:
            yield key, entries

    def _version_pages(self, prefix: str, marker: str = "", delimiter: str = "") -> Iterator[dict[str, Any]]:
        """ListObjectVersions pages under ``prefix`` from the key after ``marker``: through the store's direct
        path where it has one (botocore's parsing of a page of 1,000 versions took 0.4 s of CPU), through
        botocore's paginator otherwise, and from where the direct path got no answer."""
        version_marker = ""
        if self._wire is not None:
            try:
                yield from self._wire.list_versions(prefix, marker, delimiter, self.page_size)
                return
            except Unanswered as e:
                marker, version_marker = e.markers
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        args |= {"KeyMarker": marker} if marker else {}
        args |= {"VersionIdMarker": version_marker} if version_marker else {}
        args |= {"Delimiter": delimiter} if delimiter else {}
        yield from self._s3.get_paginator("list_object_versions").paginate(
            **args, PaginationConfig={"PageSize": self.page_size}
        )

    def _listed(self, key: str, name: str, entries: Entries) -> Listed:
        where = f"s3://{self.bucket}/{key}"
        versions = [e for e in entries if not e.get("DeleteMarker")]
        markers = len(entries) - len(versions)
        newest = max(versions, key=lambda v: v["LastModified"], default=None)
        size = 0 if newest is None else int(newest["Size"])
        if not _SHA256_NAME.match(name):
            return self._stray(key, entries)
        if any(e.get("IsLatest") and e.get("DeleteMarker") for e in entries):
            return Listed(where, name, size, "deleted", f"its latest version is a delete marker ({len(versions)} kept)")
        if len(entries) > 1:
            return Listed(
                where, name, size, "versions", f"{len(versions)} versions and {markers} delete markers: written again"
            )
        return Listed(where, name, size)

    def _stray(self, key: str, entries: Entries) -> Listed:
        """A key under the prefix that is not an object's: misplaced (an object's name elsewhere) or foreign."""
        where, last = f"s3://{self.bucket}/{key}", key.rsplit("/", 1)[-1]
        size = int(
            max(
                (e for e in entries if not e.get("DeleteMarker")), key=lambda v: v["LastModified"], default={"Size": 0}
            )["Size"]
        )
        if _SHA256_NAME.match(last):
            return Listed(where, last, size, "misplaced", f"an object's name, not at {self._base}{last}")
        return Listed(where, None, size, "foreign", "not an object's key")

    def _elsewhere(self) -> Iterator[Listed]:
        """Every key under the prefix but not under ``objects/sha256/``, as foreign (or misplaced objects), but
        for the backend's own: its owner key and what ``storage check`` writes under ``probes/``. Whatever else
        lies there was not written by custodes (as the local backend reports a stray file in its folder). A
        folder below holding an owner key of its own is another archive's place, not looked into (archives
        may share a bucket, one at its top)."""
        from custodes_s3.probes import is_probe_key

        for key, entries in self._versions(self.prefix, delimiter="/"):
            if key != self.prefix + OWNER_KEY:
                yield self._stray(key, entries)
        for folder in self._folders(self.prefix):
            if folder == self._objects:
                for key, entries in self._versions(folder, delimiter="/"):
                    yield self._stray(key, entries)
                for below in self._folders(folder):
                    if below != self._base:
                        yield from self._strays(below)
            elif folder == self.prefix + "probes/":
                for key, entries in self._versions(folder, delimiter="/"):
                    if not is_probe_key(key[len(folder) :]):
                        yield self._stray(key, entries)
                for below in self._folders(folder):
                    yield from self._strays(below)
            else:
                yield from self._strays(folder)

    def _folders(self, prefix: str) -> Iterator[str]:
        """The "folders" right below ``prefix`` (its keys' common prefixes up to the next "/")."""
        try:
            for page in self._version_pages(prefix, delimiter="/"):
                yield from (p["Prefix"] for p in page.get("CommonPrefixes", []))
        except (ClientError, BotoCoreError) as e:
            raise StoreError(f"{self.describe()}: the bucket could not be listed: {_reason(e)}") from None

    def _strays(self, folder: str) -> Iterator[Listed]:
        """Every key under ``folder``, none an object where it should be, unless the folder is another
        archive's place (its owner key)."""
        if self._head(folder + OWNER_KEY, None) is not None:
            return
        for key, entries in self._versions(folder, delimiter="/"):
            yield self._stray(key, entries)
        for below in self._folders(folder):
            yield from self._strays(below)

    # ---- retention, hold, purge ---------------------------------------------------------------------------

    def _key_entries(self, key: str) -> Entries:
        """Every version and delete marker of exactly ``key``."""
        return next((entries for k, entries in self._versions(key) if k == key), [])

    def _evidence(self, digest: str) -> tuple[str, str | None, dict[str, Any]]:
        """The key, the version and the HEAD of the object's own version: the one holding the bytes the catalog
        recorded, which a lock must keep, never whatever version is latest. A key has one version unless
        someone wrote it again through another client (custodes' create is conditional): then it is the oldest
        version whose bytes are the object's, told by the whole-object SHA-256 the server checked on upload,
        else read back. A version whose SHA-256 is another (a forgery) is never it. The one version of a key
        with no whole-object checksum (a multipart upload's is of its parts) is taken unread: reading gigabytes
        for each hold is verify's work, and verify reports such a version as modified."""
        key, where = self.key(digest), self.describe(digest)
        versions = [e for e in self._key_entries(key) if not e.get("DeleteMarker")]
        if not versions:
            raise ObjectMissingError(f"object {digest} is not in the store ({where})")
        unread: list[tuple[str | None, dict[str, Any]]] = []
        for entry in sorted(versions, key=lambda e: (e["LastModified"], not e.get("IsLatest"))):
            version = entry.get("VersionId")
            head = self._head(key, version, checksums=True)
            if head is None:
                continue
            checksum = head.get("ChecksumSHA256")
            if checksum and "-" not in checksum:
                if checksum == _b64(digest):
                    return key, version, head
                continue  # bytes of another SHA-256: written over the object, never what it keeps
            unread.append((version, head))
        if len(versions) == 1 and unread:
            return key, *unread[0]
        for version, head in unread:
            wanted = Put(Path(os.devnull), int(head["ContentLength"]), {"sha256": digest})
            if self._read_back(key, version, wanted) is None:
                return key, version, head
        raise StoreError(
            f"{where}: none of its {len(versions)} version(s) holds the object's bytes (written over through "
            "another client): not locked, so that no forgery is kept in its place; `custodes verify` reports it, "
            "`custodes storage repair` restores it from a second copy"
        )

    def lock(self, digest: str, retain_until_ns: int | None, hold: bool | None) -> None:
        """The object's own version (:meth:`_evidence`: never a version written over it through another client,
        which verify reports and a repair removes) kept until ``retain_until_ns`` at least (extended, never
        shortened; None: left as it is) and its legal hold set to ``hold`` (None: left as it is). A request is
        sent only for what must change. An object this store created moments ago is neither listed nor looked
        at: its version is the one the create answered, and the retention alone is sent (and the hold, if
        asked)."""
        fresh = self._fresh.pop(digest, _NOT_FRESH)
        if fresh is not _NOT_FRESH:  # created by this store moments ago: no hold, no retention but a default's
            key, version, head = self.key(digest), cast(str | None, fresh), None
        else:
            key, version, head = self._evidence(digest)
        self._lock_version(digest, key, version, head, retain_until_ns, hold)

    def _lock_version(
        self,
        digest: str,
        key: str,
        version: str | None,
        head: Mapping[str, Any] | None,
        retain_until_ns: int | None,
        hold: bool | None,
    ) -> None:
        try:
            if retain_until_ns is not None:
                self._retain_version(key, version, retain_until_ns, head)
            if hold is not None and (head or {}).get("ObjectLockLegalHoldStatus", "OFF") != ("ON" if hold else "OFF"):
                self._s3.put_object_legal_hold(
                    Bucket=self.bucket, Key=key, LegalHold={"Status": "ON" if hold else "OFF"}, **_version(version)
                )
        except (ClientError, BotoCoreError) as e:
            asked = [] if retain_until_ns is None else [f"retained until {_iso(retain_until_ns)}"]
            asked += [] if hold is None else [f"legal hold {'on' if hold else 'off'}"]
            raise S3ObjectError(
                f"{self.describe(digest)}: not locked as asked ({', '.join(asked)}): {_reason(e)}"
            ) from None

    def retain(self, digest: str, until_ns: int) -> None:
        """:meth:`lock` of the retention alone, the legal hold as it is."""
        key, version, head = self._evidence(digest)
        self._lock_version(digest, key, version, head, until_ns, None)

    def hold(self, digest: str, on: bool) -> None:
        """:meth:`lock` of the legal hold alone, the retention as it is."""
        self.lock(digest, None, on)

    def purge(self, digest: str) -> None:
        """Every version and delete marker of the key deleted, once no retention or hold of any is in force
        (checked first, so a locked object is refused whole, not half deleted). Nothing there: done already."""
        self._claim()
        key, where = self.key(digest), self.describe(digest)
        entries = self._key_entries(key)
        now = time.time_ns()
        for v in entries:
            if v.get("DeleteMarker"):
                continue
            head = self._head(key, v.get("VersionId")) or {}
            until = _ns(head.get("ObjectLockRetainUntilDate"))
            # Any version's lock refuses the purge whole (a version written over the object by another client
            # and locked by it too: named, for whoever must look into it).
            which = "" if len(entries) == 1 else f" (version {v.get('VersionId')} of {len(entries)})"
            if head.get("ObjectLockLegalHoldStatus") == "ON":
                raise StoreError(f"{where}{which}: under a legal hold: not purged (the hold must be released first)")
            if until is not None and until > now:
                raise StoreError(
                    f"{where}{which}: retained until {_iso(until)} ({head.get('ObjectLockMode')}): not purged"
                )
        for v in entries:
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=key, **_version(v.get("VersionId")))
            except (ClientError, BotoCoreError) as e:
                raise StoreError(
                    f"{where}: the server refused to delete a version ({_reason(e)}): not purged"
                ) from None

    def protect(self, digest: str) -> Names:
        """A bucket's objects have no file mode to widen (``list`` never names one ``unprotected``): Object Lock
        is what protects them (:meth:`lock`, ``custodes storage sync``)."""
        raise StoreError(
            f"object {valid_digest(digest)}: a bucket keeps no file mode to put back; its lock is set by "
            "`custodes storage sync`"
        )

    def restore(self, stream: IO[bytes], size: int, digests: Mapping[str, str]) -> Names:
        """Put back an object verify found damaged or gone (``custodes storage repair``). A version of a key is
        never changed, so the object's own version is usually still there under what was written after it:
        the oldest version that reads back as the object becomes the current one again, every other version
        and delete marker deleted. With no such version the bytes from the other copy (``stream``,
        checked against ``digests``) are stored anew, after the versions that are not the object, where the
        server lets them go. A version the server keeps (a lock of its own) is named, and the object is left
        as verify found it but for what was deleted."""
        self.claim()
        digest = valid_digest(digests.get("sha256", ""))
        key, where = self.key(digest), self.describe(digest)
        wanted = Put(Path(os.devnull), size, dict(digests))  # what the read-back compares with
        entries = self._key_entries(key)
        # The object's own version: the oldest that reads back as the object (a conditional create made it the
        # key's first; a version of a key never changes, so it is usually still there under what came after).
        oldest_first = sorted(
            (e for e in entries if not e.get("DeleteMarker")), key=lambda e: (e["LastModified"], not e.get("IsLatest"))
        )
        own = next(
            (
                e
                for e in oldest_first
                if e.get("Size") == size and self._read_back(key, e.get("VersionId"), wanted) is None
            ),
            None,
        )
        kept, removed = [], []
        for e in entries:  # every other version and delete marker: what was written over or deleted it
            if e is own:
                continue
            # What it was, for the repair's ledger entry: the tampering's evidence is gone from the bucket after.
            what = (
                f"delete marker {e.get('VersionId')} of {e['LastModified'].isoformat()}"
                if e.get("DeleteMarker")
                else f"version {e.get('VersionId')} of {e['LastModified'].isoformat()}, {e.get('Size')} bytes, "
                f"ETag {e.get('ETag')}"
            )
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=key, **_version(e.get("VersionId")))
            except (ClientError, BotoCoreError) as err:
                kept.append(f"version {e.get('VersionId')} ({_reason(err)})")
            else:
                removed.append(what)
        if kept:
            raise StoreError(f"{where}: not restored: the server keeps {'; '.join(kept)}")
        if own is None:
            self.put_stream(stream, size, digests)
            removed.append("no version of the object was left: its bytes were stored again from the other copy")
        return removed

    # ---- guarantees ---------------------------------------------------------------------------------------

    def guarantees(self) -> Guarantees:
        """What the bucket really does, probed with small objects under ``probes/`` (see custodes_s3.probes)."""
        from custodes_s3.probes import probe

        return probe(self)


def _stored(digest: str, head: Mapping[str, Any]) -> StoredObject:
    """What a HEAD or a GET of the object's current version says of it."""
    return StoredObject(
        digest,
        head["ContentLength"],
        _ns(head.get("ObjectLockRetainUntilDate")),
        head.get("ObjectLockLegalHoldStatus") == "ON",
    )


def _refusal(store: S3Store, why: str) -> str:
    """What the backend says refusing a bucket that cannot keep evidence locked, and ``why``."""
    return (
        f"{store.describe()}: the bucket cannot keep evidence locked: {why}. custodes stores evidence only where "
        "the server itself refuses its deletion (S3 Object Lock: a bucket made with --object-lock-enabled-for-bucket, "
        "and an identity allowed s3:PutObjectRetention and s3:PutObjectLegalHold); see `custodes storage check` "
        "for every guarantee"
    )


def _version(version: str | None) -> dict[str, str]:
    return {} if version is None else {"VersionId": version}


def _range(offset: int, length: int | None) -> str:
    return f"bytes={offset}-" if length is None else f"bytes={offset}-{offset + length - 1}"


class _Stopped(Exception):
    """A put stopped because its caller was interrupted (:meth:`S3Store._stop_if_interrupted`): not an OSError or
    a StoreError, so no handler on the way takes it for the object's own failure (a read-back that failed
    removes the version; one that was stopped leaves it for the re-run)."""


def _part_sha256(fd: int, offset: int, length: int) -> str:
    """A part's SHA-256 (base64, as S3 wants it), read in chunks."""
    hasher = _core.StreamHasher(["sha256"])
    done = 0
    while done < length:
        chunk = os.pread(fd, min(PART_READ, length - done), offset + done)
        if not chunk:
            raise S3ObjectError(f"the file ended at {offset + done} bytes, before its part did")
        hasher.update(chunk)
        done += len(chunk)
    return base64.b64encode(hasher.finish()[1][0]).decode()


def _locked_as_asked(head: Mapping[str, Any], item: Put) -> bool:
    """Whether an existing object already carries the retention and hold ``item`` asks for: set only after a
    read-back, so it tells that an earlier put finished. A put asking for neither is never taken as finished."""
    if item.retain_until_ns is None and not item.legal_hold:
        return False
    until = _ns(head.get("ObjectLockRetainUntilDate"))
    retained = item.retain_until_ns is None or (until is not None and until >= item.retain_until_ns)
    held = not item.legal_hold or head.get("ObjectLockLegalHoldStatus") == "ON"
    return retained and held


def _server_time(page: Mapping[str, Any]) -> datetime:
    """The server's clock, from a response's Date header (ours, when it has none)."""
    date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return email.utils.parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)
