"""The s3 backend through the ObjectStore contract, with real files, against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import custodes_s3
from custodes.catalog.evidence import DigestRange
from custodes.plugins import PluginManager
from custodes.storage import ObjectStore, Put, StoreError, StoreSpec
from custodes_s3 import S3ObjectError, S3Store
from custodes_s3.testing import Seaweed


def test_the_plugin_provides_the_backend(seaweed: Seaweed, credentials: None, tmp_path: Path) -> None:
    backend = PluginManager(use_entry_points=False, extra=[("s3", custodes_s3)]).storage_backends.get("s3")
    opened = backend.open(tmp_path, {"bucket": "any-bucket", "endpoint": seaweed.endpoint, "algorithm": "sha256"})
    assert isinstance(opened, ObjectStore)
    assert (opened.backend, opened.remote) == ("s3", True)
    assert opened.describe() == "s3://any-bucket/"


def test_put_open_ranged_open_stat(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    datas = [b"", b"x", os.urandom(3 * 2**20 + 17)]
    items = [spool(d) for d in datas]
    assert store.put_many(items) == [True, True, True]
    for item, data in zip(items, datas, strict=True):
        assert not item.file.exists()  # consumed once stored
        key = f"agency/a1/objects/sha256/{item.digest}"
        assert store.describe(item.digest) == f"s3://{store.bucket}/{key}"
        assert raw.head_object(Bucket=store.bucket, Key=key)["ContentLength"] == len(data)
        stat = store.stat(item.digest)
        assert stat is not None and (stat.digest, stat.size, stat.retain_until_ns, stat.legal_hold) == (
            item.digest,
            len(data),
            None,
            False,
        )
        with store.open(item.digest) as f:
            assert f.read() == data
    big, data = items[2], datas[2]
    for offset, length in [(0, 1), (5, 100), (2**20, None), (len(data) - 3, 10), (len(data), None), (7, 0)]:
        with store.open(big.digest, offset, length) as f:
            got = b"".join(iter(lambda f=f: f.read(65536), b""))
        assert got == data[offset : None if length is None else offset + length]
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert store.stat(missing) is None
    with pytest.raises(StoreError, match="not in the store"):
        store.open(missing)
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.open("../" + missing)
    assert store.describe() == f"s3://{store.bucket}/agency/a1/"


def test_write_once(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    first, again = spool(b"evidence"), spool(b"evidence")
    assert store.put_many([first]) == [True]
    assert store.put_many([again]) == [False]
    assert not again.file.exists()  # the same object: the spool file is consumed
    key = f"agency/a1/objects/sha256/{first.digest}"
    with pytest.raises(ClientError) as refused:
        raw.put_object(Bucket=store.bucket, Key=key, Body=b"other bytes", IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    versions = raw.list_object_versions(Bucket=store.bucket, Prefix=key)
    assert len(versions["Versions"]) == 1 and "DeleteMarkers" not in versions


def test_a_name_holding_other_bytes_is_never_replaced(store: S3Store, spool: Callable[..., Put], raw: Any) -> None:
    """A key that exists with other bytes (written through another client before custodes): the put fails and
    leaves both the object and the spool file."""
    item = spool(b"the real footage")
    key = f"agency/a1/objects/sha256/{item.digest}"
    raw.put_object(Bucket=store.bucket, Key=key, Body=b"planted")
    (outcome,) = store.put_many([item])
    assert isinstance(outcome, S3ObjectError) and isinstance(outcome, OSError)
    assert "exists with 7 bytes, not 16: not replaced" in str(outcome)
    assert item.file.exists()
    raw.delete_object(
        Bucket=store.bucket, Key=key, VersionId=raw.head_object(Bucket=store.bucket, Key=key)["VersionId"]
    )
    raw.put_object(Bucket=store.bucket, Key=key, Body=b"planted, 16 bytes")
    (outcome,) = store.put_many([item])
    assert isinstance(outcome, S3ObjectError), outcome
    assert item.file.exists()


def test_a_wrong_checksum_is_refused_by_the_server(store: S3Store, spool: Callable[..., Put]) -> None:
    """The file changed after it was hashed (or on the way): the server refuses the PUT, nothing is stored."""
    item = spool(b"as hashed")
    item.file.write_bytes(b"as STORED")  # same size, other bytes
    (outcome,) = store.put_many([item])
    assert isinstance(outcome, S3ObjectError)
    assert "the server refused the bytes sent" in str(outcome)
    assert store.stat(item.digest) is None
    assert item.file.exists()


def test_list_in_digest_order_across_pages_and_within_a_range(
    store: S3Store, spool: Callable[..., Put], raw: Any
) -> None:
    items = [spool(f"object {i}".encode()) for i in range(40)]
    assert store.put_many(items) == [True] * 40
    digests = sorted(i.digest for i in items)
    # A key of another archive beside this one's (another prefix), and foreign keys in this one's objects/.
    raw.put_object(Bucket=store.bucket, Key=f"agency/a2/objects/sha256/{'0' * 64}", Body=b"not ours")
    raw.put_object(Bucket=store.bucket, Key=f"agency/a1/objects/sha256/{digests[5]}.tmp", Body=b"x")
    raw.put_object(Bucket=store.bucket, Key="agency/a1/objects/notes.txt", Body=b"x")
    raw.put_object(Bucket=store.bucket, Key=f"agency/a1/objects/sha256/ab/cd/{digests[7]}", Body=b"x")
    # A key with versions spread over pages: written three more times through another client.
    for _ in range(3):
        raw.put_object(Bucket=store.bucket, Key=f"agency/a1/objects/sha256/{digests[9]}", Body=b"again")
    store.page_size = 3
    listed = list(store.list())
    objects = [x for x in listed if x.problem is None or x.problem == "versions"]
    assert [x.digest for x in objects] == digests
    assert {x.digest: x.problem for x in objects if x.problem} == {digests[9]: "versions"}
    assert "4 versions" in next(x.detail for x in objects if x.problem)
    others = {(x.name.rsplit("/", 1)[-1], x.problem) for x in listed if x not in objects}
    assert others == {(f"{digests[5]}.tmp", "foreign"), ("notes.txt", "foreign"), (digests[7], "misplaced")}
    sizes = {i.digest: i.size for i in items}
    for x in objects:
        assert x.name == store.describe(x.digest) and x.size == (len(b"again") if x.problem else sizes[x.digest])

    def within(low: str | None, high: str | None) -> list[str]:
        return [x.digest for x in store.list(DigestRange(low, high)) if x.problem in (None, "versions")]

    assert within(digests[10], digests[30]) == digests[10:30]
    assert within(digests[10], None) == digests[10:]
    assert within(None, digests[3]) == digests[:3]
    assert within("8", "c") == [d for d in digests if "8" <= d < "c"]
    assert within(digests[10][:-1] + "0", digests[10]) == [
        d for d in digests if digests[10][:-1] + "0" <= d < digests[10]
    ]
    assert within("g", None) == []
    # What is elsewhere under objects/ is listed whatever the range, as the local backend lists it.
    assert "notes.txt" in {x.name.rsplit("/", 1)[-1] for x in store.list(DigestRange(None, digests[3]))}


def test_hash_objects_reads_several_at_once(store: S3Store, spool: Callable[..., Put]) -> None:
    items = [spool(os.urandom(n)) for n in (0, 1, 1000, 2**20 + 3, 5000, 77, 123456, 9)]
    assert store.put_many(items) == [True] * len(items)
    missing = hashlib.sha256(b"absent").hexdigest()
    digests = [i.digest for i in items] + [missing]
    for threads in (None, 1, 4):
        results = store.hash_objects(digests, ("sha256", "md5"), threads)
        assert [r.path for r in results] == [store.describe(d) for d in digests]
        for r, item in zip(results, items, strict=False):
            assert r.ok and r.size == item.size and r.digests == item.digests
        assert not results[-1].ok and "not in the store" in str(results[-1].error)


def test_put_stream(store: S3Store) -> None:
    data = os.urandom(100_000)
    digests = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert store.put_stream(io.BytesIO(data), len(data), digests) is True
    assert store.put_stream(io.BytesIO(data), len(data), digests) is False
    with store.open(digests["sha256"]) as f:
        assert f.read() == data
    other = {"sha256": hashlib.sha256(b"named").hexdigest()}
    with pytest.raises(StoreError, match="are not the ones named"):
        store.put_stream(io.BytesIO(b"streamed"), 8, other)
    assert store.stat(other["sha256"]) is None
    assert list((store.location / "tmp").iterdir()) == []


def test_spec_opens_the_same_store(store: S3Store, spool: Callable[..., Put]) -> None:
    item = spool(b"anywhere")
    store.put_many([item])
    spec = store.spec()
    assert spec.backend == "s3" and spec.location == str(store.location)
    assert dict(spec.options) == {"bucket": store.bucket, "endpoint": store.options["endpoint"], "prefix": "agency/a1"}
    assert spec == StoreSpec("s3", str(store.location), tuple(sorted(spec.options)))
    again = S3Store.connect(Path(spec.location), dict(spec.options))
    with again.open(item.digest) as f:
        assert f.read() == b"anywhere"


@pytest.mark.parametrize(
    "name",
    ["secret_access_key", "aws_access_key_id", "access_key", "aws_session_token", "password", "credentials", "key"],
)
def test_credentials_in_options_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"{name}: credentials are never an archive option.*AWS_ACCESS_KEY_ID"):
        S3Store.connect(tmp_path, {"bucket": "evidence", name: "AKIA..."})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket": "evidence", "endpont": "https://x"}, "endpont: not an option of the s3 backend"),
        ({}, "needs a bucket name"),
        ({"bucket": "Evidence_1"}, "needs a bucket name"),
        ({"bucket": "evidence", "endpoint": "https://AKIA:s3cret@s3.example.org"}, "credentials are never part"),
        ({"bucket": "evidence", "endpoint": "http://s3.example.org"}, "plain http is for a server on this machine"),
        ({"bucket": "evidence", "endpoint": "ftp://s3.example.org"}, "an URL such as"),
        ({"bucket": "evidence", "retention_mode": "forever"}, "COMPLIANCE or GOVERNANCE"),
        ({"bucket": "evidence", "prefix": "/abs"}, "no leading /"),
        ({"bucket": "evidence", "prefix": "a/../b"}, "no leading /"),
        ({"bucket": "evidence", "algorithm": "md5"}, "named by their sha256"),
    ],
)
def test_options_are_checked(options: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=message):
        S3Store.connect(tmp_path, options)


def test_credentials_come_from_the_environment_or_a_profile_only(
    seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text(
        f"[default]\naws_access_key_id = {seaweed.access_key}\naws_secret_access_key = {seaweed.secret_key}\n"
        "[profile empty]\nregion = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = {"bucket": "evidence", "endpoint": seaweed.endpoint}
    with pytest.raises(StoreError, match="no S3 credentials: set AWS_ACCESS_KEY_ID"):
        S3Store.connect(tmp_path, options)  # the default profile is not taken by chance
    with pytest.raises(StoreError, match="no such AWS profile"):
        S3Store.connect(tmp_path, {**options, "profile": "nobody"})
    with pytest.raises(StoreError, match="gives no credentials of its own"):
        S3Store.connect(tmp_path, {**options, "profile": "empty"})
    assert S3Store.connect(tmp_path, {**options, "profile": "default"}).stat("0" * 64) is None


def test_an_aws_profile_variable_naming_no_profile_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by a hostile user: a traceback from botocore.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(StoreError, match="AWS_PROFILE='no-such-profile' in the environment names no AWS profile"):
        S3Store.connect(tmp_path, {"bucket": "evidence"})
