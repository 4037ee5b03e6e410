"""The storage contract (custodes.storage.ObjectStore), kept by every backend: the same tests for each, through the
contract's methods only, with real bytes cross-checked by independent tools (sha256sum, b3sum)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from custodes import _core
from custodes.catalog.evidence import DigestRange
from custodes.storage import (
    ObjectMissingError,
    ObjectStore,
    Put,
    StoreError,
    copy_object,
    hash_by_streaming,
    open_store,
)
from helpers import FOOTAGE, run_cli


def _spool_file(spool: Path, data: bytes) -> Put:
    """A complete spool file and its Put, digests computed by hashlib (not by the code under test)."""
    path = spool / f"{os.getpid()}-{os.urandom(6).hex()}-test"
    path.write_bytes(data)
    return Put(path, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ObjectStore, Path]]:
    """(store, spool): a fresh store of each backend (s3: a bucket with Object Lock on a real server), and the
    folder its puts come from."""
    from custodes.archive import init_archive

    storage = request.getfixturevalue("s3_archive_options") if request.param == "s3" else None
    with init_archive(tmp_path / "arch", storage=storage) as a:
        yield a.store, a.spool


def test_put_is_write_once_and_reads_back(store: tuple[ObjectStore, Path]) -> None:
    s, spool = store
    data = os.urandom(300_000)
    item = _spool_file(spool, data)
    assert s.put_many([item]) == [True]
    assert not item.file.exists()  # consumed
    again = _spool_file(spool, data)
    assert s.put_many([again]) == [False]  # there already: never replaced, and the file consumed
    assert not again.file.exists()
    with s.open(item.digest) as f:
        assert f.read() == data
    with s.open(item.digest, 1000, 24) as f:
        assert f.read() == data[1000:1024]
    st = s.stat(item.digest)
    assert st is not None and st.size == len(data)
    assert s.stat("0" * 64) is None
    with pytest.raises(ObjectMissingError):
        s.open("0" * 64)
    with pytest.raises(StoreError, match="not a SHA-256"):
        s.open("../../etc/passwd")


def test_a_spool_file_another_process_consumed_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ingests sweeping one killed ingest's copies: one linked a copy while the other stored it and removed
    the spool file; the first then failed to remove it, a FileNotFoundError traceback (a hostile review). The
    object is stored either way: the put says so. (A bucket's put reads the file into its request and removes
    nothing after.)"""
    import custodes.builtin.storage as local
    from custodes.archive import init_archive

    synced = local.sync_together
    with init_archive(tmp_path / "arch") as a:
        item = _spool_file(a.spool, os.urandom(5000))

        def and_the_other_sweep(folder: Path, files: list[Path]) -> None:
            synced(folder, files)
            item.file.unlink()  # the other's sweep, between this one's link and its removal of the spool file

        monkeypatch.setattr(local, "sync_together", and_the_other_sweep)
        assert a.store.put_many([item]) == [True]
        with a.store.open(item.digest) as f:
            assert hashlib.sha256(f.read()).hexdigest() == item.digest


def test_listing_is_in_digest_order_and_honours_a_range(store: tuple[ObjectStore, Path]) -> None:
    s, spool = store
    items = [_spool_file(spool, os.urandom(100) + bytes([i])) for i in range(40)]
    assert s.put_many(items) == [True] * 40
    digests = sorted(i.digest for i in items)
    listed = [x for x in s.list() if x.problem is None]
    assert [x.digest for x in listed] == digests
    low, high = digests[10], digests[30]
    assert [x.digest for x in s.list(DigestRange(low, high)) if x.problem is None] == digests[10:30]


def test_hash_objects_agrees_with_sha256sum_and_b3sum(store: tuple[ObjectStore, Path], tmp_path: Path) -> None:
    s, spool = store
    data = max((p for p in FOOTAGE.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size).read_bytes()
    item = _spool_file(spool, data)
    s.put_many([item])
    (r,) = s.hash_objects([item.digest], ("sha256", "blake3"), None)
    (streamed,) = hash_by_streaming(s, [item.digest], ("sha256", "blake3"))
    copy = tmp_path / "copy.mp4"
    assert copy_object(s, item.digest, copy, ("sha256", "blake3")) == r.digests == streamed.digests
    sha = subprocess.run(["sha256sum", str(copy)], capture_output=True, text=True, check=True).stdout.split()[0]
    b3 = subprocess.run(["b3sum", str(copy)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert r.digests == {"sha256": sha, "blake3": b3} and r.size == streamed.size == len(data)
    (gone,) = s.hash_objects(["1" * 64], ("sha256",), None)
    assert gone.error is not None and isinstance(gone.error, FileNotFoundError)


def test_put_stream_refuses_bytes_that_are_not_the_ones_named(store: tuple[ObjectStore, Path]) -> None:
    s, _ = store
    data = os.urandom(50_000)
    digests = {"sha256": hashlib.sha256(data).hexdigest()}
    with pytest.raises(StoreError, match="not the ones named"):
        s.put_stream(io.BytesIO(data[:-1] + b"!"), len(data), digests)
    assert s.stat(digests["sha256"]) is None  # nothing left behind
    assert s.put_stream(io.BytesIO(data), len(data), digests) is True
    assert s.put_stream(io.BytesIO(data), len(data), digests) is False


def test_the_store_reopens_from_its_spec(store: tuple[ObjectStore, Path]) -> None:
    s, spool = store
    item = _spool_file(spool, b"spec")
    s.put_many([item])
    again = open_store(s.spec())
    with again.open(item.digest) as f:
        assert f.read() == b"spec"


def test_local_listing_names_links_and_strays(tmp_path: Path) -> None:
    from custodes.archive import init_archive

    with init_archive(tmp_path / "arch") as a:
        s = a.store
        item = _spool_file(a.spool, b"linked")
        s.put_many([item])
        path = s.path_for(item.digest)  # type: ignore[attr-defined]
        outside = tmp_path / "elsewhere"
        outside.write_bytes(b"linked")
        path.chmod(0o600)
        path.unlink()
        path.symlink_to(outside)
        (path.parent / "notes.txt").write_text("x")
        problems = {(x.problem, x.digest) for x in s.list()}
        assert problems == {("link", item.digest), ("foreign", None)}
        with pytest.raises(OSError):
            s.open(item.digest)  # never read through the link


def test_local_listing_is_what_find_sees(tmp_path: Path) -> None:
    """The digest tree is read by the core (_core.list_digest_tree): every entry that is not a folder, as `find`
    lists them, each once, objects in digest order, whatever else is there named as it is; a digest range lists
    its own objects and leaves whole folders outside it unread."""
    from custodes.archive import init_archive

    with init_archive(tmp_path / "arch") as a:
        s = a.store
        items = [_spool_file(a.spool, f"object {i}".encode()) for i in range(40)]
        s.put_many(items)
        digests = sorted(i.digest for i in items)
        tree = a.root / "objects" / "sha256"
        wrong_folder = tree / digests[0][:2] / "00" / digests[1]  # an object's name under another's folder
        wrong_folder.parent.mkdir(exist_ok=True)
        wrong_folder.write_bytes(b"x")
        (tree / digests[2]).write_bytes(b"x")  # an object's name at the top of the tree
        deep = tree / digests[3][:2] / digests[3][2:4] / "more"
        deep.mkdir()
        (deep / "x.txt").write_bytes(b"x")  # a folder inside a leaf folder
        (tree / "zz" / "not hex").mkdir(parents=True)
        (tree / "zz" / "not hex" / digests[4]).write_bytes(b"x")
        (tree / digests[5][:2] / digests[5][2:4] / "loop").symlink_to(tree)  # never followed
        (a.root / "objects" / "beside").write_bytes(b"x")
        (tree / os.fsdecode(b"\xffnot utf-8")).write_bytes(b"x")  # named as os.fsdecode names it
        (a.root / "objects" / "md5").mkdir()
        (a.root / "objects" / "md5" / "old").write_bytes(b"x")
        found = subprocess.run(
            ["find", "objects", "-not", "-type", "d", "-print0"], cwd=a.root, capture_output=True, check=True
        ).stdout.split(b"\0")[:-1]
        listed = list(s.list())
        assert sorted(x.name for x in listed) == sorted(os.fsdecode(f) for f in found)
        walk = s.list()
        assert next(walk).name == "objects/beside"  # a listing left after its first entry neither hangs nor leaks
        walk.close()
        sound = [x.digest for x in listed if x.problem is None]
        assert sound == digests  # each object once, in digest order, none of the strays among them
        kinds = {x.name: (x.problem, x.digest) for x in listed if x.problem is not None}
        assert kinds == {
            os.path.relpath(wrong_folder, a.root): ("misplaced", digests[1]),
            f"objects/sha256/{digests[2]}": ("misplaced", digests[2]),
            os.path.relpath(deep / "x.txt", a.root): ("foreign", None),
            f"objects/sha256/zz/not hex/{digests[4]}": ("misplaced", digests[4]),
            f"objects/sha256/{digests[5][:2]}/{digests[5][2:4]}/loop": ("foreign", None),
            "objects/beside": ("foreign", None),
            os.fsdecode(b"objects/sha256/\xffnot utf-8"): ("foreign", None),
            "objects/md5/old": ("foreign", None),
        }
        low, high = digests[10], digests[30]
        ranged = list(s.list(DigestRange(low, high)))
        assert [x.digest for x in ranged if x.problem is None] == digests[10:30]
        # Strays in folders the range reaches are listed; folders wholly outside it are not read.
        inside = {x.name for x in ranged if x.problem is not None}
        assert "objects/beside" in inside and f"objects/sha256/zz/not hex/{digests[4]}" in inside
        assert os.path.relpath(wrong_folder, a.root) not in inside  # its folder holds no digest of the range
        assert all(x.digest is None or x.problem is not None or low <= x.digest < high for x in ranged), (
            "an object outside the range was listed"
        )


def test_stream_hasher_matches_published_vectors() -> None:
    # FIPS 180-2 "abc", BLAKE3's reference empty-input hash, GB/T 32905 "abc", RFC 1321 "abc".
    h = _core.StreamHasher(["sha256", "blake3", "sm3", "md5"])
    for b in (b"a", b"", b"bc"):
        h.update(b)
    size, (sha, _b3, sm3, md5) = h.finish()
    assert size == 3
    assert sha.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sm3.hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert md5.hex() == "900150983cd24fb0d6963f7d28e17f72"
    empty = _core.StreamHasher(["blake3"])
    assert empty.finish()[1][0].hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    with pytest.raises(ValueError, match="finished"):
        h.update(b"more")


def test_storage_check_names_what_a_local_disk_cannot_guarantee(cli_archive: Path) -> None:
    """Read-only objects are probed: a file's 0400 does not stop root (it said so as a constant: a hostile
    review), and does stop an account without CAP_DAC_OVERRIDE."""
    import json

    r = run_cli("storage", "check", str(cli_archive), "--json", obey_permissions=True)  # root without the override
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["backend"] == "local"
    assert set(report["missing"]) == {"retention enforced by the storage", "legal hold enforced by the storage"}
    assert {g["name"] for g in report["guarantees"] if g["held"]} == {"write-once", "read-only objects"}
    if os.geteuid() == 0:
        r = run_cli("storage", "check", str(cli_archive), "--json")
        (read_only,) = [g for g in json.loads(r.stdout)["guarantees"] if g["name"] == "read-only objects"]
        assert read_only["held"] is False and "CAP_DAC_OVERRIDE" in read_only["detail"], read_only
    assert not [p for p in (cli_archive / "tmp").iterdir() if "probe" in p.name]  # the probe file is gone


def test_init_refuses_an_unknown_backend_and_a_bad_option(tmp_path: Path) -> None:
    r = run_cli("init", str(tmp_path / "a"), "--storage", "tape-robot")
    assert r.returncode == 2 and b"tape-robot" in r.stderr and not (tmp_path / "a").exists()
    r = run_cli("init", str(tmp_path / "b"), "--storage-option", "noequals")
    assert r.returncode == 2 and b"KEY=VALUE" in r.stderr and not (tmp_path / "b").exists()


def test_the_local_backend_refuses_a_bucket_s_options_rather_than_ignoring_them(tmp_path: Path) -> None:
    # Hostile review (issue 15): `--storage local --bucket B` made a local archive and said nothing, so a user
    # who mistyped the backend believed the objects were going to the bucket.
    for args in (["--bucket", "evidence"], ["--storage-option", "endpoint=http://127.0.0.1:1"]):
        target = tmp_path / args[-1].split("=")[0].strip("-:/.")
        r = run_cli("init", str(target), "--storage", "local", *args)
        assert r.returncode == 2, r.stderr
        assert b"not an option of the local backend" in r.stderr and not target.exists()
    replica = tmp_path / "second"
    r = run_cli(
        "init",
        str(tmp_path / "r"),
        "--replica",
        "local",
        "--replica-option",
        f"location={replica}",
        "--replica-option",
        "prefix=p/",
    )
    assert r.returncode == 2 and b"[storage] prefix" in r.stderr and not (tmp_path / "r").exists()


def test_an_object_no_longer_read_only_is_listed_so_and_protected_again(store: tuple[ObjectStore, Path]) -> None:
    """`protect` is the contract's: on a disk the listing names an object whose file's mode was widened and
    `protect` makes it 0400 again; a bucket names none and refuses it (its objects' guard is Object Lock)."""
    s, spool = store
    item = _spool_file(spool, os.urandom(1000))
    assert s.put_many([item]) == [True]
    assert [x.problem for x in s.list()] == [None]
    if s.backend == "s3":
        with pytest.raises(StoreError, match="no file mode"):
            s.protect(item.digest)
        return
    path = s.file_of(item.digest)  # type: ignore[attr-defined]
    os.chmod(path, 0o644)
    (listed,) = s.list()
    assert (listed.problem, listed.detail) == ("unprotected", "mode 0644")
    assert s.protect(item.digest) == ["set mode 0644 back to 0400"]
    assert os.stat(path).st_mode & 0o7777 == 0o400
    assert [x.problem for x in s.list()] == [None]
