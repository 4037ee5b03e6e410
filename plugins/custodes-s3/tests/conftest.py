"""The S3 server the backend's tests run against: one real SeaweedFS (``weed mini``) for the session, started and
stopped by pid by custodes_s3.testing, a fresh bucket per test, and spool files to put."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from custodes.storage import Put
from custodes_s3 import S3Store, testing
from custodes_s3.testing import Seaweed

_names = itertools.count()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with testing.seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def bucket(seaweed: Seaweed, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new bucket with Object Lock, named after the test's module, dropped after the test (what its objects'
    locks allow)."""
    name = f"{request.module.__name__.removeprefix('test_s3_').replace('_', '-')}-{os.urandom(4).hex()}"
    testing.make_bucket(seaweed, name)
    yield name
    testing.drop_bucket(seaweed, name)


@pytest.fixture
def raw(seaweed: Seaweed) -> Any:
    """A plain boto3 client of the same identity: another client, as a tamperer would use."""
    return testing.client(seaweed)


@pytest.fixture
def credentials(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's identity in the environment, the one place (with a profile) the backend takes it from."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweed.environ().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def open_store(seaweed: Seaweed, credentials: None, tmp_path: Path) -> Callable[..., S3Store]:
    """``open_store(lock=True, **options)``: a store on a new bucket (with Object Lock unless ``lock`` is False)
    of its own archive folder; ``bucket=`` opens one on an existing bucket instead."""

    def opened(lock: bool = True, bucket: str | None = None, **options: str) -> S3Store:
        if bucket is None:
            bucket = f"evidence-{next(_names)}"
            testing.make_bucket(seaweed, bucket, lock=lock)
        archive = tmp_path / f"archive-{bucket}"
        archive.mkdir(exist_ok=True)
        return S3Store.connect(archive, {"bucket": bucket, "endpoint": seaweed.endpoint, **options})

    return opened


@pytest.fixture
def store(open_store: Callable[..., S3Store]) -> S3Store:
    return open_store(prefix="agency/a1")


@pytest.fixture
def spool(tmp_path: Path) -> Callable[..., Put]:
    """``spool(data, **put)``: a spool file holding ``data``, as the Put that stores it (its digests computed
    here: sha256 and md5)."""
    folder = tmp_path / "spool"
    folder.mkdir()

    def made(data: bytes, **put: Any) -> Put:
        path = folder / os.urandom(6).hex()
        path.write_bytes(data)
        digests = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
        return Put(path, len(data), digests, **put)

    return made
