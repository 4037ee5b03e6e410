"""The store's own path for GetObject and the conditional PutObject (custodes_s3.wire), against the real server:
the same answers as botocore's, the same errors, and botocore taking over a request it gets no answer to."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from custodes.storage import Put
from custodes_s3 import S3Store
from custodes_s3 import store as s3store
from custodes_s3.testing import Seaweed
from custodes_s3.wire import Unanswered, Wire

#: GetObject's fields the store reads, as botocore gives them.
READ = ("ContentLength", "VersionId", "ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus")


def _key(store: S3Store, digest: str) -> str:
    return f"{store.prefix}objects/sha256/{digest}"


def _error(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def _said(e: ClientError) -> tuple[str, int, bool]:
    return s3store._code(e), s3store._status(e), bool(e.response.get("DeleteMarker"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_the_stores_gets_and_puts_take_the_direct_path(
    store: S3Store, spool: Callable[..., Put], raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store._wire is not None
    monkeypatch.setattr(S3Store, "_claim", lambda self: None)  # the owner key and the lock probe: botocore's
    botocore_sent: list[str] = []
    store._s3.meta.events.register("before-call.s3.*", lambda model, **_: botocore_sent.append(model.name))
    data = os.urandom(70_000)
    item = spool(data, retain_until_ns=(datetime.now(UTC) + timedelta(days=1)).timestamp() * 10**9 // 1)
    assert store.put_many([item]) == [True]
    with store.open(item.digest) as f:
        assert f.read() == data
    (result,) = store.hash_objects([item.digest], ["sha256"], None)
    assert result.digests == {"sha256": item.digest}
    # The PUT, its read-back, its retention and the two reads: direct; the sweep's listing through botocore.
    assert store._wire._pool.num_requests == 5
    assert store._wire._pool.num_connections == 1  # each answer read to its end: one connection, kept
    assert sorted(set(botocore_sent)) == ["ListMultipartUploads"]


def test_a_large_file_is_put_by_botocore(
    store: S3Store, spool: Callable[..., Put], raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over DIRECT_PUT_MAX: botocore's PUT, whose Expect: 100-continue learns of an existing key before the bytes."""
    assert store._wire is not None
    monkeypatch.setattr(s3store, "DIRECT_PUT_MAX", 1000)
    puts: list[str] = []
    store._s3.meta.events.register("before-call.s3.PutObject", lambda model, **_: puts.append(model.name))
    small, large = spool(os.urandom(1000)), spool(os.urandom(1001))
    assert store.put_many([small, large]) == [True, True]
    assert puts == ["PutObject"]  # the large one's; the small one's went the direct way
    assert raw.head_object(Bucket=store.bucket, Key=_key(store, large.digest))["ContentLength"] == 1001


def test_a_get_answers_as_botocores_does(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    assert store._wire is not None
    item = spool(os.urandom(5000))
    assert store.put_many([item]) == [True]
    key = _key(store, item.digest)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    raw.put_object_retention(Bucket=store.bucket, Key=key, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    raw.put_object_legal_hold(Bucket=store.bucket, Key=key, LegalHold={"Status": "ON"})
    version = raw.head_object(Bucket=store.bucket, Key=key)["VersionId"]
    for asked in (None, version):
        body, head = store._wire.get(key, asked)
        got = raw.get_object(Bucket=store.bucket, Key=key, **s3store._version(asked))
        assert body.read() == got["Body"].read()
        body.close()
        assert {k: head.get(k) for k in READ} == {k: got.get(k) for k in READ}
        assert head["ObjectLockRetainUntilDate"] == until and head["ObjectLockLegalHoldStatus"] == "ON"
    body, head = store._wire.get(key, None, "bytes=10-19")
    assert len(body.read()) == head["ContentLength"] == 10
    body.close()


def test_its_errors_are_botocores(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    wire, item, key, version = _one_stored(store, spool, raw, 3000)
    missing = _key(store, hashlib.sha256(b"never stored").hexdigest())

    def both(**asked: Any) -> None:
        ours = _error(lambda: wire.get(asked["Key"], asked.get("VersionId"), asked.get("Range")))
        theirs = _error(lambda: raw.get_object(Bucket=store.bucket, **asked))
        assert _said(ours) == _said(theirs) and s3store._reason(ours) == s3store._reason(theirs)

    both(Key=missing)  # 404 NoSuchKey
    both(Key=key, VersionId="not-a-version")
    both(Key=key, Range="bytes=999999-")  # 416: the store reads it as no bytes
    raw.delete_object(Bucket=store.bucket, Key=key)  # a delete marker over it
    both(Key=key)
    marker = raw.list_object_versions(Bucket=store.bucket, Prefix=key)["DeleteMarkers"][0]["VersionId"]
    both(Key=key, VersionId=marker)
    body, _ = wire.get(key, version)  # its own version still reads
    assert len(body.read()) == 3000
    body.close()

    data = os.urandom(2000)
    path = item.file.with_name("again")
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    b64 = base64.b64encode(bytes.fromhex(sha)).decode()
    other = _key(store, sha)
    with open(path, "rb") as f:
        assert wire.put(other, f, len(data), sha, b64)
    with open(path, "rb") as f:  # write-once: 412
        e = _error(lambda: wire.put(other, f, len(data), sha, b64))
    assert s3store._status(e) == 412
    # Bytes that are not the SHA-256 sent with them (a file changed after it was hashed): refused, nothing stored.
    changed = os.urandom(2000)
    path.write_bytes(changed)
    fresh = _key(store, hashlib.sha256(b"fresh").hexdigest())
    for signed in (sha, hashlib.sha256(changed).hexdigest()):  # the payload hash wrong too, or right
        with open(path, "rb") as f:
            e = _error(lambda f=f, signed=signed: wire.put(fresh, f, len(changed), signed, b64))
        assert s3store._status(e) == 400 and s3store._code(e) in s3store._BAD_CHECKSUM, s3store._reason(e)
    assert "Versions" not in raw.list_object_versions(Bucket=store.bucket, Prefix=fresh)


def _one_stored(store: S3Store, spool: Callable[..., Put], raw: Any, size: int) -> tuple[Any, Put, str, str]:
    """The store's direct request path, and one object of ``size`` random bytes put through the store: the
    spooled item, its key and the version the server gave it."""
    wire = store._wire
    assert wire is not None
    item = spool(os.urandom(size))
    assert store.put_many([item]) == [True]
    key = _key(store, item.digest)
    return wire, item, key, raw.head_object(Bucket=store.bucket, Key=key)["VersionId"]


def test_a_retention_is_set_and_refused_as_botocores_is(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    wire, _item, key, version = _one_stored(store, spool, raw, 1000)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    wire.put_retention(key, version, "GOVERNANCE", later)
    got = raw.get_object_retention(Bucket=store.bucket, Key=key, VersionId=version)["Retention"]
    assert (got["Mode"], got["RetainUntilDate"]) == ("GOVERNANCE", later)
    wire.put_retention(key, None, "GOVERNANCE", later + timedelta(days=1))  # the latest version, no id named
    got = raw.get_object_retention(Bucket=store.bucket, Key=key)["Retention"]
    assert (got["Mode"], got["RetainUntilDate"]) == ("GOVERNANCE", later + timedelta(days=1))
    # Refused: a shortening, a date past, GOVERNANCE made COMPLIANCE without the right to bypass it (SeaweedFS).
    for mode, until in (
        ("GOVERNANCE", later),
        ("GOVERNANCE", datetime.now(UTC) - timedelta(days=1)),
        ("COMPLIANCE", later + timedelta(days=2)),
    ):
        asked = {"Mode": mode, "RetainUntilDate": until}
        ours = _error(lambda asked=asked: wire.put_retention(key, version, asked["Mode"], asked["RetainUntilDate"]))
        theirs = _error(
            lambda asked=asked: raw.put_object_retention(
                Bucket=store.bucket, Key=key, VersionId=version, Retention=asked
            )
        )
        assert _said(ours) == _said(theirs) and s3store._reason(ours) == s3store._reason(theirs)
    got = raw.get_object_retention(Bucket=store.bucket, Key=key)["Retention"]
    assert got["RetainUntilDate"] == later + timedelta(days=1)  # never shortened


def test_a_listing_is_botocores_page_for_page(store: S3Store, raw: Any) -> None:
    wire = store._wire
    assert wire is not None
    top = store.prefix
    # Keys XML and URLs treat apart (a space, +, %, &, <, non-ASCII), versions, a delete marker, folders.
    names = ["a b", "a+b", "a%2Fb", "x&y<z", "é/ü", "f/1", "f/2", "g/h/i", "z"]
    for name in names:
        raw.put_object(Bucket=store.bucket, Key=top + name, Body=name.encode())
    raw.put_object(Bucket=store.bucket, Key=top + "f/1", Body=b"again")
    raw.delete_object(Bucket=store.bucket, Key=top + "z")
    fields = ("Key", "VersionId", "IsLatest", "LastModified", "Size", "ETag")

    def pages_of(pages: Any) -> list[Any]:
        return [
            (
                [{k: v.get(k) for k in fields} for v in page.get("Versions", [])],
                [{k: m.get(k) for k in fields} for m in page.get("DeleteMarkers", [])],
                page.get("CommonPrefixes", []),
                page.get("IsTruncated"),
            )
            for page in pages
        ]

    for marker, delimiter, size in (("", "", 1000), ("", "", 2), (top + "a+b", "", 3), ("", "/", 2), ("", "/", 1000)):
        args: dict[str, Any] = {"Bucket": store.bucket, "Prefix": top}
        args |= {"KeyMarker": marker} if marker else {}
        args |= {"Delimiter": delimiter} if delimiter else {}
        theirs = raw.get_paginator("list_object_versions").paginate(**args, PaginationConfig={"PageSize": size})
        ours = pages_of(wire.list_versions(top, marker, delimiter, size))
        assert ours == pages_of(theirs), (marker, delimiter, size)
        if not marker and not delimiter:  # every version and the delete marker, whatever the page size
            assert sum(len(v) + len(m) for v, m, _, _ in ours) == len(names) + 2


def test_a_request_it_gets_no_answer_to_is_botocores(
    seaweed: Seaweed, store: S3Store, spool: Callable[..., Put], tmp_path: Path
) -> None:
    assert store._wire is not None
    nowhere = Wire(store._s3, _session(), store.bucket, f"http://127.0.0.1:{_closed_port()}", 2)
    with pytest.raises(Unanswered):
        nowhere.get(_key(store, "0" * 64))
    with pytest.raises(Unanswered) as caught:
        next(nowhere.list_versions(store.prefix, "from-here"))
    assert caught.value.markers == ("from-here", "")
    unanswered = S3Store(store.location, store.options, store._s3, nowhere)
    datas = [os.urandom(n) for n in (0, 10, 80_000)]
    assert unanswered.put_many([spool(d) for d in datas]) == [True, True, True]
    for data in datas:
        digest = hashlib.sha256(data).hexdigest()
        (result,) = unanswered.hash_objects([digest], ["sha256"], None)
        assert result.digests == {"sha256": digest} and result.stored is not None
        with unanswered.open(digest, 1, 5) as f:
            assert f.read() == data[1:6]
    assert unanswered.put_many([spool(datas[1])]) == [False]  # the botocore PUT's 412, as before
    later = int((datetime.now(UTC) + timedelta(days=1)).timestamp()) * 10**9
    unanswered.retain(hashlib.sha256(datas[2]).hexdigest(), later)
    stat = unanswered.stat(hashlib.sha256(datas[2]).hexdigest())
    assert stat is not None and stat.retain_until_ns == later
    listed = [entry.digest for entry in unanswered.list()]
    assert listed == sorted(hashlib.sha256(d).hexdigest() for d in datas)


def _session() -> Any:
    return s3store._session("")
