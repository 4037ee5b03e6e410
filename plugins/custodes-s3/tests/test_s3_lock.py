"""Object Lock as the s3 backend uses it, on a real server: what a locked or held object survives, tampering through
other clients as the listing and the hashes show it, and the guarantees probed."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from custodes.storage import Put, StoreError
from custodes_s3 import S3ObjectError, S3Store
from custodes_s3 import store as s3store
from custodes_s3.probes import NAMES
from custodes_s3.testing import Seaweed

SECOND = 10**9


def _key(store: S3Store, digest: str) -> str:
    return f"{store.prefix}objects/sha256/{digest}"


def _versions(raw: Any, bucket: str, key: str) -> list[dict]:
    page = raw.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]


def _refused(call: Callable[[], Any], code: str = "AccessDenied") -> None:
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == code


def test_a_locked_object_survives_everything_until_its_retention_and_hold_end(
    store: S3Store, spool: Callable[..., Put], raw: Any
) -> None:
    until = time.time_ns() + 4 * SECOND
    item = spool(b"footage", retain_until_ns=until)
    assert store.put_many([item]) == [True]
    stat = store.stat(item.digest)
    assert stat is not None and until <= stat.retain_until_ns < until + SECOND and stat.legal_hold is False
    key, bucket = _key(store, item.digest), store.bucket
    version = raw.head_object(Bucket=bucket, Key=key)["VersionId"]
    assert raw.head_object(Bucket=bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"

    # Not deleted, not overwritten: a write through another client is a new version, the locked one stays as is.
    _refused(lambda: raw.delete_object(Bucket=bucket, Key=key, VersionId=version))
    raw.put_object(Bucket=bucket, Key=key, Body=b"forged")
    assert raw.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == b"footage"
    _refused(lambda: raw.delete_object(Bucket=bucket, Key=key, VersionId=version))

    # Never shortened: by the server, and by the store (a shorter date is left alone).
    shorter = s3store._date(until - 2 * SECOND)
    _refused(
        lambda: raw.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": shorter}
        )
    )
    store.retain(item.digest, until - 2 * SECOND)
    assert raw.head_object(Bucket=bucket, Key=key, VersionId=version)["ObjectLockRetainUntilDate"] == s3store._date(
        until
    )
    store.retain(item.digest, until + SECOND)  # extended: the object's own version, never the forgery over it
    for v in _versions(raw, bucket, key):
        head = raw.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
        assert head.get("ObjectLockRetainUntilDate") == (
            s3store._date(until + SECOND) if v["VersionId"] == version else None
        )
    with pytest.raises(StoreError, match=r"retained until .* \(COMPLIANCE\): not purged"):
        store.purge(item.digest)

    # A hold outlives the retention date, until it is released.
    store.hold(item.digest, True)  # on the object's own version; the forgery over it is not kept
    assert raw.head_object(Bucket=bucket, Key=key, VersionId=version)["ObjectLockLegalHoldStatus"] == "ON"
    assert store.stat(item.digest).legal_hold is False  # type: ignore[union-attr]
    time.sleep(max(0.0, (until + 2 * SECOND - time.time_ns()) / SECOND) + 0.2)
    with pytest.raises(StoreError, match="under a legal hold: not purged"):
        store.purge(item.digest)
    _refused(lambda: raw.delete_object(Bucket=bucket, Key=key, VersionId=version))
    assert raw.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == b"footage"

    store.hold(item.digest, False)
    store.purge(item.digest)
    assert _versions(raw, bucket, key) == []
    assert store.stat(item.digest) is None and list(store.list()) == []
    store.purge(item.digest)  # again (a re-run after a crash): nothing left to do


def test_governance_mode_is_set_and_named_weaker(open_store: Callable[..., S3Store], spool: Callable[..., Put]) -> None:
    store = open_store(retention_mode="governance")
    item = spool(b"governed", retain_until_ns=time.time_ns() + 60 * SECOND, legal_hold=True)
    assert store.put_many([item]) == [True]
    head = store._s3.head_object(Bucket=store.bucket, Key=_key(store, item.digest))
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    mode = next(g for g in store.guarantees() if g.name == "retention mode")
    assert not mode.held and "s3:BypassGovernanceRetention" in mode.detail


def test_tampering_through_other_clients(store: S3Store, spool: Callable[..., Put], raw: Any, seaweed: Seaweed) -> None:
    """Five locked objects; four are tampered with as another client can: the listing names each problem, and
    the hashes show the bytes a reader gets now."""
    datas = [b"again, same bytes", b"deleted", b"changed bytes", b"changed in place", b"untouched"]
    items = [spool(d, retain_until_ns=time.time_ns() + 600 * SECOND) for d in datas]
    assert store.put_many(items) == [True] * 5
    same, deleted, changed, in_place, untouched = (i.digest for i in items)
    bucket = store.bucket
    raw.put_object(Bucket=bucket, Key=_key(store, same), Body=b"again, same bytes")
    raw.delete_object(Bucket=bucket, Key=_key(store, deleted))
    raw.put_object(Bucket=bucket, Key=_key(store, changed), Body=b"CHANGED bytes")
    # Through the filer's own HTTP API, which SeaweedFS's Object Lock does not guard (its S3 gateway does):
    # the locked version's bytes are replaced where they lie, no new version made.
    version = raw.head_object(Bucket=bucket, Key=_key(store, in_place))["VersionId"]
    path = f"/buckets/{bucket}/{_key(store, in_place)}.versions/v_{version}"
    urllib.request.urlopen(urllib.request.Request(seaweed.filer_url + path, data=b"CHANGED in place", method="PUT"))

    listed = {x.digest: x for x in store.list()}
    assert (listed[same].problem, listed[same].detail) == ("versions", "2 versions and 0 delete markers: written again")
    assert listed[deleted].problem == "deleted" and "delete marker (1 kept)" in listed[deleted].detail
    assert listed[changed].problem == "versions"
    assert listed[untouched].problem is None
    assert in_place not in listed or listed[in_place].problem is not None  # SeaweedFS loses it from the listing

    digests = [i.digest for i in items]
    hashed = dict(zip(digests, store.hash_objects(digests, ["sha256"], 3), strict=True))
    assert hashed[same].digests == {"sha256": same}
    assert not hashed[deleted].ok and "not in the store" in str(hashed[deleted].error)
    assert hashed[changed].ok and hashed[changed].digests != {"sha256": changed}
    assert hashed[in_place].ok and hashed[in_place].digests != {"sha256": in_place}
    assert hashed[untouched].digests == {"sha256": untouched}
    with store.open(changed) as f:
        assert f.read() == b"CHANGED bytes"  # what any reader gets now: verify reports it as modified


def test_an_interrupted_put_is_finished_by_the_next(
    open_store: Callable[..., S3Store], spool: Callable[..., Put], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the PUT, before the read-back and the lock: the re-run finds the key, reads it back,
    locks it as asked, removes the spool file, and reports False (it was there)."""
    store = open_store()
    until = time.time_ns() + 60 * SECOND
    item = spool(b"half stored", retain_until_ns=until, legal_hold=True)

    class Crash(BaseException):
        pass

    def crash(*args: object) -> None:
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(S3Store, "_read_back", crash)
        with pytest.raises(Crash):
            store.put_many([item])
    stat = store.stat(item.digest)
    assert stat is not None and stat.retain_until_ns is None and stat.legal_hold is False and item.file.exists()

    reads: list[str] = []
    real = S3Store._read_back
    monkeypatch.setattr(S3Store, "_read_back", lambda self, *a: reads.append(a[0]) or real(self, *a))
    again = open_store(bucket=store.bucket)
    assert again.put_many([item]) == [False]
    assert reads == [_key(store, item.digest)]
    stat = again.stat(item.digest)
    assert stat is not None and stat.retain_until_ns >= until and stat.legal_hold is True  # type: ignore[operator]
    assert not item.file.exists()
    twice = spool(b"half stored", retain_until_ns=until, legal_hold=True)
    assert again.put_many([twice]) == [False] and reads == [_key(store, item.digest)]  # locked as asked: no re-read


#: Not held on SeaweedFS with Object Lock and one identity: S3 lets whoever may set a legal hold lift it.
LIFTABLE = ["legal hold kept from the archive's own identity"]


def test_guarantees_all_held_with_object_lock(store: S3Store, raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3store, "PROBE_RETENTION", timedelta(seconds=2))
    found = store.guarantees()
    assert [g.name for g in found] == list(NAMES)
    assert [g.name for g in found if not g.held] == LIFTABLE, found
    assert "took a legal hold off" in found[-1].detail
    details = {g.name: g.detail for g in found}
    assert "refused (412)" in details["write-once"]
    assert "deleting a locked version was refused (AccessDenied" in details["retention enforced by the storage"]
    probes = {v["Key"] for v in _versions_under(raw, store.bucket, f"{store.prefix}probes/")}
    assert probes and all("-write-once" in k for k in probes)  # the locked probe waits; the others are gone
    time.sleep(2.5)
    assert [g.name for g in store.guarantees() if not g.held] == LIFTABLE
    later = {v["Key"] for v in _versions_under(raw, store.bucket, f"{store.prefix}probes/")}
    assert later and not later & probes  # the first check's probe, unlocked by now, was removed by the second


def test_guarantees_named_missing_without_object_lock(open_store: Callable[..., S3Store], raw: Any) -> None:
    store = open_store(lock=False)
    found = {g.name: g for g in store.guarantees()}
    assert list(found) == list(NAMES)
    assert {n for n, g in found.items() if g.held} == {"write-once", "checksums enforced", "retention mode"}
    assert "the bucket has no Object Lock" in found["object lock enabled"].detail
    assert "could not be set" in found["retention enforced by the storage"].detail
    assert _versions_under(raw, store.bucket, "probes/") == []  # nothing locked, nothing left


def test_a_check_deletes_its_own_probes_only_and_writes_nothing_to_a_missing_bucket(
    open_store: Callable[..., S3Store], spool: Callable[..., Put], raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by a hostile user: an archive whose prefix was "probes/" lost every object to a check of an archive
    # at the top of the same bucket, and a check of a bucket not made yet made it, without Object Lock.
    monkeypatch.setattr(s3store, "PROBE_RETENTION", timedelta(seconds=1))
    top = open_store(prefix="")
    below = open_store(bucket=top.bucket, prefix="probes/")
    item = spool(b"evidence below")
    assert below.put_many([item]) == [True]
    top.guarantees()
    time.sleep(1.5)
    top.guarantees()  # clears the first check's probes, now unlocked: only those
    with below.open(item.digest) as f:
        assert f.read() == b"evidence below"
    missing = open_store(bucket="not-made-yet")
    assert [(g.name, g.held) for g in missing.guarantees()] == [("bucket exists", False)]
    assert "not-made-yet" not in {b["Name"] for b in raw.list_buckets()["Buckets"]}


def _versions_under(raw: Any, bucket: str, prefix: str) -> list[dict]:
    page = raw.list_object_versions(Bucket=bucket, Prefix=prefix)
    return page.get("Versions", []) + page.get("DeleteMarkers", [])


def test_a_bucket_default_retention_locks_at_once(
    open_store: Callable[..., S3Store], spool: Callable[..., Put], raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a default retention on the bucket, every new version is locked the moment it is written: a put asking
    for less is not refused for it, and a version whose read-back failed cannot be removed (the error says so)."""
    store = open_store()
    raw.put_object_lock_configuration(
        Bucket=store.bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    item = spool(b"locked by default", retain_until_ns=time.time_ns() + 60 * SECOND)
    assert store.put_many([item]) == [True]
    stat = store.stat(item.digest)
    assert stat is not None and stat.retain_until_ns > time.time_ns() + 3600 * SECOND  # type: ignore[operator]

    monkeypatch.setattr(S3Store, "_read_back", lambda *a: "read back with another sha256 than the object's")
    bad = spool(b"read back wrong")
    (outcome,) = store.put_many([bad])
    assert isinstance(outcome, S3ObjectError) and bad.file.exists()
    assert "could not be removed (AccessDenied" in str(outcome) and "stays for verify" in str(outcome)
