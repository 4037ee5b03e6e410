"""Large objects: multipart uploads with memory bounded by a part, and what an interrupted one leaves (nothing
that lasts: the next put aborts it once abandoned)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from custodes.storage import Put
from custodes_s3 import S3ObjectError, S3Store
from custodes_s3 import store as s3store

MiB = 2**20


def _write(path: Path, size: int) -> dict[str, str]:
    """A file of ``size`` random bytes, written a MiB at a time; its sha256 and md5."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("wb") as f:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            sha.update(chunk)
            md5.update(chunk)
            f.write(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _peak_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def _rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def _uploads(raw: Any, bucket: str) -> list[dict]:
    return raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.mark.slow
def test_a_large_file_goes_in_parts_with_memory_bounded(store: S3Store, tmp_path: Path, raw: Any) -> None:
    # A first large put lets the process reach its steady state (the parts' threads and their malloc arenas:
    # 50-90 MiB here); a second, larger one then shows the memory does not grow with the file.
    first = tmp_path / "first"
    assert store.put_many([Put(first, 80 * MiB, _write(first, 80 * MiB))]) == [True]
    size = 240 * MiB  # far more than the parts in flight hold at once (PARTS_IN_FLIGHT of PART_SIZE)
    path = tmp_path / "large"
    digests = _write(path, size)
    item = Put(path, size, digests, retain_until_ns=time.time_ns() + 60 * 10**9)
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    before = _rss_kib()
    assert store.put_many([item]) == [True]
    grown = (_peak_kib() - before) // 1024
    bound = s3store.PARTS_IN_FLIGHT * s3store.PART_SIZE // MiB  # the parts in flight, never the file
    assert grown < bound < size // MiB, f"peak RSS grew by {grown} MiB putting a {size // MiB} MiB file"
    head = raw.head_object(Bucket=store.bucket, Key=f"agency/a1/objects/sha256/{item.digest}", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size and head["ChecksumSHA256"].endswith("-15")  # fifteen 16 MiB parts
    assert head["ObjectLockMode"] == "COMPLIANCE"
    (hashed,) = store.hash_objects([item.digest], ["sha256", "md5"], None)
    assert hashed.digests == digests
    assert _uploads(raw, store.bucket) == []

    # Large files go up MULTIPART_IN_FLIGHT at a time: the memory is still the parts in flight, not the files.
    pair = [tmp_path / "left", tmp_path / "right"]
    items = [Put(p, 120 * MiB, _write(p, 120 * MiB)) for p in pair]
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib()
    assert store.put_many(items) == [True, True]
    grown = (_peak_kib() - before) // 1024
    bound = s3store.MULTIPART_IN_FLIGHT * s3store.PARTS_IN_FLIGHT * s3store.PART_SIZE // MiB
    assert grown < bound < 240, f"peak RSS grew by {grown} MiB putting two files of 120 MiB at once"
    assert [store.stat(i.digest).size for i in items] == [120 * MiB, 120 * MiB]  # type: ignore[union-attr]


def test_multipart_bytes_that_are_not_the_object_are_removed(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each part reaches the server intact (its SHA-256 is checked), but the whole is not the object named: the
    read-back sees it, and the version is deleted before any lock could keep it."""
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    path = tmp_path / "changed"
    digests = _write(path, 11 * MiB)
    with path.open("r+b") as f:  # changed after it was hashed
        f.write(b"tampered")
    item = Put(path, 11 * MiB, digests, retain_until_ns=time.time_ns() + 60 * 10**9)
    (outcome,) = store.put_many([item])
    assert isinstance(outcome, S3ObjectError)
    assert "read back with another md5, sha256 than the object's; it was removed" in str(outcome)
    assert store.stat(item.digest) is None and path.exists()
    assert raw.list_object_versions(Bucket=store.bucket, Prefix="agency/").get("Versions") is None
    assert _uploads(raw, store.bucket) == []


def test_each_part_is_signed_with_its_own_checksum_and_refused_when_its_bytes_changed(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over plain http SigV4 signs each body's SHA-256: a part's is the one custodes computed for its
    ChecksumSHA256 (botocore does not read the part again to hash it), and the server still refuses a part whose
    bytes changed after they were hashed."""
    import botocore.auth

    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    sent: list[tuple[str, str]] = []
    hashed_by_botocore: list[str] = []
    real_payload = botocore.auth.SigV4Auth.payload

    def payload(self: Any, request: Any) -> str:
        if "partNumber=" in request.url:
            hashed_by_botocore.append(request.url)
        return real_payload(self, request)

    def seen(request: Any, **_: Any) -> None:
        signed, checksum = (request.headers[h] for h in ("x-amz-content-sha256", "x-amz-checksum-sha256"))
        sent.append((bytes(signed).decode(), bytes(checksum).decode()))

    monkeypatch.setattr(botocore.auth.SigV4Auth, "payload", payload)
    store._s3.meta.events.register("before-send.s3.UploadPart", seen)
    path = tmp_path / "parts"
    item = Put(path, 12 * MiB, _write(path, 12 * MiB))
    assert store.put_many([item]) == [True]
    assert len(sent) == 3 and hashed_by_botocore == []
    assert all(signed == base64.b64decode(checksum).hex() for signed, checksum in sent)

    # The second part's bytes changed once their SHA-256 was taken: the server refuses the part.
    real_sha256 = s3store._part_sha256

    def changed_after(fd: int, offset: int, length: int) -> str:
        checksum = real_sha256(fd, offset, length)
        if offset:
            os.pwrite(tampered.fileno(), b"changed", offset)
        return checksum

    other = tmp_path / "changed"
    digests = _write(other, 11 * MiB)
    with other.open("r+b") as tampered:
        monkeypatch.setattr(s3store, "_part_sha256", changed_after)
        (outcome,) = store.put_many([Put(other, 11 * MiB, digests)])
    assert isinstance(outcome, S3ObjectError) and "the server refused the bytes sent" in str(outcome)
    assert store.stat(digests["sha256"]) is None and other.exists()
    assert _uploads(raw, store.bucket) == []


def test_an_upload_interrupted_in_the_process_is_aborted_at_once(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    path = tmp_path / "interrupted"
    item = Put(path, 12 * MiB, _write(path, 12 * MiB))
    real = s3store._Slice.read

    def read(self: Any, n: int = -1) -> bytes:
        if self._offset:  # the second part
            raise KeyboardInterrupt
        return real(self, n)

    monkeypatch.setattr(s3store._Slice, "read", read)
    with pytest.raises(KeyboardInterrupt):
        store.put_many([item])
    assert _uploads(raw, store.bucket) == [] and path.exists()
    assert store.stat(item.digest) is None


def test_an_interrupt_while_large_objects_go_up_aborts_them_at_once(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches the thread that called put_many while its worker threads send two large objects at once
    (MULTIPART_IN_FLIGHT): no more parts are sent, both uploads are aborted, and the files stay for the re-run;
    the parts still to send are not sent first (a 4 GiB object would have gone up whole before the interrupt).
    Pressed again and again while the uploads are aborted, it waits for them all the same (a hostile review: the
    process left with its threads still sending, uploads open at the server and a traceback of its exit)."""
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    monkeypatch.setattr(s3store, "PARTS_IN_FLIGHT", 1)
    items = []
    for name in ("one", "two"):
        path = tmp_path / name
        items.append(Put(path, 30 * MiB, _write(path, 30 * MiB)))
    main = threading.get_ident()
    sent: list[int] = []
    real = s3store._Slice.read
    heard = threading.Semaphore(0)  # each press handled by the main thread (none left pending after the test)

    def read(self: Any, n: int = -1) -> bytes:
        if self._pos == 0:
            sent.append(self._offset)
            if len(sent) == 3:  # both objects under way: the user presses Ctrl-C, then again, and again
                for _ in range(4):
                    signal.pthread_kill(main, signal.SIGINT)
                    assert heard.acquire(timeout=30)
                    time.sleep(0.05)
                assert store._interrupted.is_set()
        return real(self, n)

    def pressed(signum: int, frame: object) -> None:
        heard.release()
        raise KeyboardInterrupt

    monkeypatch.setattr(s3store._Slice, "read", read)
    default = signal.signal(signal.SIGINT, pressed)
    try:
        with pytest.raises(KeyboardInterrupt):
            store.put_many(items)
    finally:
        signal.signal(signal.SIGINT, default)
    assert not [t for t in threading.enumerate() if t.name.startswith("custodes-s3-part")]  # none still sending
    for idle in [t for t in threading.enumerate() if t.name.startswith("custodes-s3")]:
        idle.join(5)  # the put threads, with nothing left to do, end at once
        assert not idle.is_alive()
    assert len(sent) <= 4  # of twelve parts: those in flight when it came, and none after
    assert _uploads(raw, store.bucket) == []
    assert all(store.stat(item.digest) is None and item.file.exists() for item in items)
    monkeypatch.setattr(s3store._Slice, "read", real)
    assert store.put_many(items) == [True, True]  # the re-run: nothing left over stops it


def test_an_interrupt_during_a_read_back_leaves_the_object_for_the_re_run(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a large object is read back: the reading stops (a 3 GiB read-back ran on for 5 s), the object
    stays as stored, unlocked and unrecorded, as after a crash there; the re-run reads it back and locks it."""
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    path = tmp_path / "read-back"
    item = Put(path, 20 * MiB, _write(path, 20 * MiB), retain_until_ns=time.time_ns() + 60 * 10**9)
    main = threading.get_ident()
    real = s3store.S3Store._get

    def get(self: S3Store, key: str, version: str | None, **ranged: str) -> Any:
        body = real(self, key, version, **ranged)
        signal.pthread_kill(main, signal.SIGINT)  # the read-back begins: the user presses Ctrl-C
        assert self._interrupted.wait(30)
        return body

    monkeypatch.setattr(s3store.S3Store, "_get", get)
    default = signal.signal(signal.SIGINT, signal.default_int_handler)  # (as a library caller has it)
    try:
        with pytest.raises(KeyboardInterrupt):
            store.put_many([item])
    finally:
        signal.signal(signal.SIGINT, default)
    stored = store.stat(item.digest)
    assert stored is not None and stored.retain_until_ns is None and path.exists()  # not removed, not locked
    monkeypatch.setattr(s3store.S3Store, "_get", real)
    assert store.put_many([item]) == [False]  # there already: read back and locked now, the file consumed
    locked = store.stat(item.digest)
    assert locked is not None and locked.retain_until_ns is not None and not path.exists()
    assert _uploads(raw, store.bucket) == []


_KILLED_MID_UPLOAD = """
import pathlib, sys, time
from custodes.storage import Put
from custodes_s3 import store as s3store
s3store.MULTIPART_THRESHOLD = s3store.PART_SIZE = 5 * 2**20
real = s3store._Slice.read
def read(self, n=-1):
    if self._offset:  # the second part: say so, and wait for the SIGKILL
        pathlib.Path(sys.argv[1] + ".sending").touch()
        time.sleep(600)
    return real(self, n)
s3store._Slice.read = read
options = {"bucket": sys.argv[3], "endpoint": sys.argv[4], "prefix": "agency/a1"}
store = s3store.S3Store.connect(pathlib.Path(sys.argv[2]), options)
store.put_many([Put(pathlib.Path(sys.argv[1]), int(sys.argv[5]), {"sha256": sys.argv[6]})])
"""


def test_an_upload_a_killed_process_left_is_aborted_by_the_next_put_once_abandoned(
    open_store: Callable[..., S3Store],
    spool: Callable[..., Put],
    tmp_path: Path,
    raw: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_store(prefix="agency/a1")
    path = tmp_path / "killed"
    digests = _write(path, 12 * MiB)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    args = [str(path), str(store.location), store.bucket, store.options["endpoint"], str(12 * MiB), digests["sha256"]]
    child = subprocess.Popen([sys.executable, "-c", _KILLED_MID_UPLOAD, *args], env=env)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{path}.sending").exists():
            assert child.poll() is None and time.monotonic() < deadline, "the put never reached its second part"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (left,) = _uploads(raw, store.bucket)
    assert left["Key"] == f"agency/a1/objects/sha256/{digests['sha256']}"
    # Another archive's upload (another prefix) is not this store's to abort.
    elsewhere = raw.create_multipart_upload(Bucket=store.bucket, Key=f"agency/a2/objects/sha256/{'a' * 64}")
    assert store.put_many([spool(b"an ordinary put")]) == [True]  # by default an upload is abandoned after an hour
    assert len(_uploads(raw, store.bucket)) == 2

    time.sleep(3.2)  # the server counts whole seconds
    # Nor is one a running process has just started.
    running = raw.create_multipart_upload(Bucket=store.bucket, Key=f"agency/a1/objects/sha256/{'b' * 64}")
    monkeypatch.setattr(s3store, "ABANDONED_AFTER", timedelta(seconds=2))
    assert store.put_many([]) == []
    assert {u["UploadId"] for u in _uploads(raw, store.bucket)} == {elsewhere["UploadId"], running["UploadId"]}
    item = Put(path, 12 * MiB, digests)
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    assert store.put_many([item]) == [True]  # the re-run stores it


def test_a_large_object_already_stored_is_not_sent_again(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    first, again = tmp_path / "first", tmp_path / "again"
    digests = _write(first, 11 * MiB)
    again.write_bytes(first.read_bytes())
    assert store.put_many([Put(first, 11 * MiB, digests)]) == [True]
    started: list[str] = []
    real = store._s3.create_multipart_upload
    monkeypatch.setattr(store._s3, "create_multipart_upload", lambda **kw: started.append(kw["Key"]) or real(**kw))
    assert store.put_many([Put(again, 11 * MiB, digests)]) == [False]
    assert started == [] and not again.exists()


def test_an_upload_another_put_of_the_object_aborted_is_reported_there_not_failed(
    store: S3Store, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile review: two ingests of one volume at once; the one that stored a key first aborted the uploads
    still open for it (what it does for a killed put's), the other's among them, and the other then said the file
    had failed (NoSuchUpload), exit 1, though it was stored. Here the other put is played while this one's first
    part is sent: the object is stored whole (a plain conditional PUT) and this upload aborted."""
    monkeypatch.setattr(s3store, "MULTIPART_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3store, "PART_SIZE", 5 * MiB)
    monkeypatch.setattr(s3store, "PARTS_IN_FLIGHT", 1)
    path = tmp_path / "raced"
    digests = _write(path, 12 * MiB)
    item = Put(path, 12 * MiB, digests)
    key = f"agency/a1/objects/sha256/{item.digest}"
    real_upload_part = store._s3.upload_part
    raced: list[str] = []

    def upload_part(**kw: Any) -> Any:
        if not raced:  # the other ingest: stores the key, then aborts what is open for it
            raced.append(kw["UploadId"])
            raw.put_object(Bucket=store.bucket, Key=key, Body=path.read_bytes(), IfNoneMatch="*")
            for upload in raw.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", []):
                raw.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"])
        return real_upload_part(**kw)

    monkeypatch.setattr(store._s3, "upload_part", upload_part)
    assert store.put_many([item]) == [False]  # there already: not stored by this put, and no failure
    assert raced and _uploads(raw, store.bucket) == []
    (hashed,) = store.hash_objects([item.digest], ["sha256"], None)
    assert hashed.digests["sha256"] == digests["sha256"]
