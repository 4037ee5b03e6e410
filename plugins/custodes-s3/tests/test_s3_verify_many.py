"""Verify of many objects in a bucket at once: each object gets its own finding, whichever shard, batch or GET in
flight it went through. The lock check takes the retention and legal hold each object's GET answered with (no
HEAD of its own: half the requests of a small object), and asks the server (a HEAD) for the objects this run
does not read: those a budget left. A large object is read a chunk ahead of its hashing, and hashed whole."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from custodes import verify as verifying
from custodes.archive import open_archive
from custodes.schedule import Budget
from custodes.storage import HashedObject, Put
from custodes_s3 import store as store_module
from custodes_s3.store import S3Store
from custodes_s3.testing import Seaweed
from helpers import catalog_rows, run_cli

FILES = 14


def many_objects(seaweed: Seaweed, tmp_path: Path, bucket: str) -> tuple[Path, list[str]]:
    """An archive in ``bucket`` holding :data:`FILES` objects of a few KiB each; their digests in order."""
    arch = tmp_path / "archive"
    made = run_cli("init", arch, "--storage", "s3", "--bucket", bucket, "--endpoint", seaweed.endpoint)
    assert made.returncode == 0, made.stderr.decode()
    card = tmp_path / "card"
    card.mkdir()
    for i in range(FILES):
        (card / f"FILE{i:04d}.bin").write_bytes(os.urandom(3000 + 97 * i))
    # Exit 1: files the generic driver knows no recording in are findings (unknown_file); each is stored all the same.
    out = run_cli("ingest", card, "--archive", arch, "--driver", "generic", "--json")
    assert out.returncode in (0, 1), out.stderr.decode()
    digests = sorted(sha for (sha,) in catalog_rows(arch, "SELECT sha256 FROM objects"))
    assert len(digests) == FILES
    return arch, digests


def requests_counted(archive: Any) -> dict[str, int]:
    """The S3 requests for objects (keys under ``objects/sha256/``) the archive's store sends from now on, by
    operation."""
    sent: dict[str, int] = {}

    # before-send: every request sent, botocore's and the store's own GETs (custodes_s3.wire) alike, retries too.
    def count(request: Any, event_name: str, **_: Any) -> None:
        if "/objects/sha256/" in urlsplit(request.url).path:
            operation = event_name.rsplit(".", 1)[-1]
            sent[operation] = sent.get(operation, 0) + 1

    archive.store._s3.meta.events.register("before-send.s3.*", count)
    return sent


def test_many_objects_verified_at_once_each_get_their_own_finding(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch, digests = many_objects(seaweed, tmp_path, bucket)
    key = {d: f"objects/sha256/{d}" for d in digests}
    deleted, held, rewritten = digests[2], digests[6], digests[11]
    raw.delete_object(Bucket=bucket, Key=key[deleted])  # a delete marker over it
    raw.put_object_legal_hold(Bucket=bucket, Key=key[held], LegalHold={"Status": "ON"})  # a hold nobody recorded
    raw.put_object(Bucket=bucket, Key=key[rewritten], Body=b"other bytes")  # a new version over it

    # Shards of 3 objects and lock batches of 4: an object's lock finding must stay with that object across both.
    monkeypatch.setattr(verifying, "LOCK_BATCH", 4)
    with open_archive(arch) as archive:
        sent = requests_counted(archive)
        result = verifying.verify(archive, workers=8, schedule=verifying.Schedule(shard_objects=3))
    found = {(f.kind, f.object) for f in result.findings}
    assert found == {("missing", deleted), ("lock_mismatch", held), ("modified", rewritten)}
    (lock,) = [f for f in result.findings if f.kind == "lock_mismatch"]
    assert "a legal hold in the storage that no recording of it has" in lock.message
    assert lock.segment == catalog_rows(arch, "SELECT id FROM segments WHERE sha256 = ?", (held,))[0][0]
    assert result.checked == FILES
    # Every object still there read once, and its lock checked from that read: no HEAD per object.
    assert sent.get("GetObject") == FILES - 2 and sent.get("HeadObject", 0) == 0


def test_a_lock_mismatch_is_found_in_objects_a_budget_left_unread(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch, digests = many_objects(seaweed, tmp_path, bucket)
    first, last = digests[0], digests[-1]
    for d in (first, last):
        raw.put_object_legal_hold(Bucket=bucket, Key=f"objects/sha256/{d}", LegalHold={"Status": "ON"})
    monkeypatch.setattr(verifying, "LOCK_BATCH", 4)
    with open_archive(arch) as archive:
        sent = requests_counted(archive)
        # One byte of budget: the first object is re-hashed (a run always takes one), the rest left for the next.
        schedule = verifying.Schedule(budget=Budget(bytes=1), shard_objects=1)
        result = verifying.verify(archive, schedule=schedule)
    assert result.run is not None and result.run["left"]["objects"] == FILES - 1
    assert {(f.kind, f.object) for f in result.findings} == {("lock_mismatch", first), ("lock_mismatch", last)}
    # The one read carried its lock; each object left unread was asked for its own (one HEAD each).
    assert sent.get("GetObject") == 1 and sent.get("HeadObject") == FILES - 1

    # The oldest first (--older-than) and --quick check every lock in a pass of their own: the same findings.
    for extra in (("--older-than", "0"), ("--quick",)):
        out = run_cli("verify", arch, "--json", *extra)
        assert out.returncode == 1, out.stderr.decode()
        assert {(f["kind"], f["object"]) for f in json.loads(out.stdout)["findings"]} == {
            ("lock_mismatch", first),
            ("lock_mismatch", last),
        }


def test_a_large_object_is_hashed_whole_while_read_ahead(
    store: S3Store, spool: Callable[..., Put], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 1 KiB: a 200 KiB object goes through the read-ahead thread in 200 of them, in order.
    monkeypatch.setattr(store_module, "READ_AHEAD", 1024)
    data = os.urandom(200 * 1024 + 17)
    small = b"a small object, read as it comes"
    items = [spool(data, retain_until_ns=time.time_ns() + 3600 * 10**9), spool(small)]
    assert store.put_many(items) == [True, True]
    gone = "0" * 64
    big, little, missing = store.hash_objects([items[0].digest, items[1].digest, gone], ["sha256", "md5"], 4)
    assert (big.size, big.digests) == (len(data), dict(items[0].digests))
    assert (little.size, little.digests) == (len(small), dict(items[1].digests))
    assert isinstance(big, HashedObject) and big.stored is not None
    assert big.stored.retain_until_ns is not None and big.stored.retain_until_ns >= items[0].retain_until_ns
    assert missing.size is None and isinstance(missing.error, FileNotFoundError)

    # A reader that stops early (an error of its own) leaves no thread behind.
    body = store_module._ReadAhead(store.open(items[0].digest))  # type: ignore[arg-type]
    assert body.read() == data[:1024]
    body.close()
    assert not body._thread.is_alive()


def test_large_objects_are_read_ahead_a_few_at_a_time_among_many_readers(
    store: S3Store, spool: Callable[..., Put], monkeypatch: pytest.MonkeyPatch
) -> None:
    """hash_objects runs READERS GETs at once (small objects mostly wait on the server), but holds at most
    LARGE_READERS large objects' read-ahead chunks: memory stays that of LARGE_READERS, whatever READERS is."""
    monkeypatch.setattr(store_module, "READ_AHEAD", 1024)
    monkeypatch.setattr(store, "_large_reads", threading.BoundedSemaphore(2))
    reading, most = [0], [0]
    lock = threading.Lock()

    class Counted(store_module._ReadAhead):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any) -> None:
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            super().__init__(*args)

        def read(self, n: int = -1) -> bytes:
            time.sleep(0.002)  # slow enough that the six would overlap if nothing held them back
            return super().read(n)

        def close(self) -> None:
            with lock:
                reading[0] -= 1
            super().close()

    monkeypatch.setattr(store_module, "_ReadAhead", Counted)
    items = [spool(os.urandom(64 * 1024 + k)) for k in range(6)]
    assert store.put_many(items) == [True] * 6
    most[0] = 0  # (the puts' read-backs read ahead too, on threads of their own)
    hashed = store.hash_objects([i.digest for i in items], ["sha256"], 6)
    assert [(h.size, h.digests["sha256"]) for h in hashed] == [(i.size, i.digest) for i in items]
    assert most[0] == 2, most  # two at once, never more
    assert all(store._large_reads.acquire(blocking=False) for _ in range(2))  # every slot given back
