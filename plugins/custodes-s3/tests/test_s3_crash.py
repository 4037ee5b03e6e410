"""Issue 15's crash test on an archive in a bucket, through the real CLI: an ingest killed with SIGKILL while a
multipart upload is open at the server, or between an object's upload and its catalog commit, then run again.
Nothing lost (every file of the volume recorded once), nothing doubled (one version per key, one catalog row per
file), every object locked as the catalog keeps it, no multipart upload left open, `custodes verify` clean; and
before the re-run, an object a killed run left without a catalog row is `pending`, never `unexpected`."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from custodes_s3.store import MULTIPART_THRESHOLD
from custodes_s3.testing import Seaweed
from footage import make_clip
from helpers import catalog_rows, ingest_cmd, run_cli

MiB = 2**20
#: The volume's big file: over the multipart threshold, five parts (four of 16 MiB and one of 2 MiB).
BIG = MULTIPART_THRESHOLD + 2 * MiB
CLIPS = ("DCIM/CLIP0000.mp4", "DCIM/CLIP0001.mp4", "DCIM/CLIP0002.mp4")


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A body camera's volume, only ever read: three clips from an hour ago and a big device log."""
    vol = tmp_path_factory.mktemp("cards") / "BWC0015"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i, name in enumerate(CLIPS):
        make_clip(vol / name, start + timedelta(seconds=3 * i))
    (vol / "DEVICE.LOG").write_bytes(random.Random(15).randbytes(BIG))
    return vol


@pytest.fixture(scope="module")
def small_card(card: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same clips without the big file."""
    vol = tmp_path_factory.mktemp("small") / "BWC0016"
    for name in CLIPS:
        (vol / name).parent.mkdir(parents=True, exist_ok=True)
        (vol / name).write_bytes((card / name).read_bytes())
    return vol


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def make_archive(seaweed: Seaweed, tmp_path: Path, bucket: str) -> Path:
    arch = tmp_path / "archive"
    made = run_cli("init", arch, "--storage", "s3", "--bucket", bucket, "--endpoint", seaweed.endpoint)
    assert made.returncode == 0, made.stderr.decode()
    return arch


def uploads(raw: Any, bucket: str) -> list[dict[str, Any]]:
    return raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def bucket_objects(raw: Any, bucket: str) -> dict[str, list[dict[str, Any]]]:
    """Every key under objects/ with its versions and delete markers."""
    listed = raw.list_object_versions(Bucket=bucket, Prefix="objects/")
    keys: dict[str, list[dict[str, Any]]] = {}
    for entry in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
        keys.setdefault(entry["Key"].rsplit("/", 1)[1], []).append(entry)
    return keys


def verified(arch: Path) -> tuple[int, list[tuple[str, str]]]:
    """verify's exit code and its findings' (kind, object): "" for a finding of no object (a ledger entry)."""
    out = run_cli("verify", arch, "--json")
    assert out.stdout, out.stderr.decode()
    return out.returncode, sorted((f["kind"], f["object"] or "") for f in json.loads(out.stdout)["findings"])


def recorded(arch: Path) -> dict[str, str]:
    return dict(catalog_rows(arch, "SELECT original_name, sha256 FROM segments"))


def check_killed(arch: Path, bucket: str, raw: Any, vol: Path, before: dict[str, str]) -> None:
    """What a killed ingest left: the volume untouched, the ingest unfinished, and verify calling every object in
    the bucket that the catalog does not record `pending` (an intent noted before its upload), never `unexpected`,
    and every object it recorded but had not locked yet `lock_mismatch` (the storage would let it go)."""
    assert digest_tree(vol) == before
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ingests WHERE finished_ns IS NULL")[0][0] == 1
    unrecorded = set(bucket_objects(raw, bucket)) - set(recorded(arch).values())
    unlocked = {
        sha
        for sha in recorded(arch).values()
        if raw.head_object(Bucket=bucket, Key=f"objects/sha256/{sha}").get("ObjectLockMode") is None
    }
    code, found = verified(arch)
    assert {(kind, obj) for kind, obj in found if kind != "pending"} == {("lock_mismatch", sha) for sha in unlocked}
    assert code == (1 if unlocked else 0), found
    assert unrecorded <= {obj for kind, obj in found if kind == "pending"}, (unrecorded, found)


def check_finished(
    arch: Path, bucket: str, raw: Any, vol: Path, before: dict[str, str], rerun: Any, gone: str | None = None
) -> None:
    """The re-run finished the ingest: every file once, every object once and locked, nothing open, verify clean.
    ``gone``: a file taken off the volume before the re-run, which the re-run recovers."""
    report = json.loads(rerun.stdout)
    assert report["failed"] == [], report
    # Exit 1 for the big card: DEVICE.LOG is no recording the driver knows, kept as it is (unknown_file).
    assert {f["kind"] for f in report["findings"]} <= {"unknown_file"}, report["findings"]
    assert rerun.returncode == ("DEVICE.LOG" in before), rerun.stderr.decode()[-800:]
    assert report["recovered"] == ([] if gone is None else [gone]), report
    assert sorted(report["stored"] + report["already_present"] + report["recovered"]) == sorted(before)
    assert digest_tree(vol) == {name: sha for name, sha in before.items() if name != gone}
    rows = catalog_rows(arch, "SELECT original_name, sha256 FROM segments")
    assert sorted(rows) == sorted(before.items())  # every file of the volume recorded, once
    ingested = "SELECT COUNT(*) FROM ledger WHERE json_extract(entry, '$.type') = 'ingest'"
    assert catalog_rows(arch, ingested)[0][0] == len(before)
    stored = bucket_objects(raw, bucket)
    assert set(stored) == set(before.values())
    assert {sha: len(entries) for sha, entries in stored.items()} == dict.fromkeys(stored, 1)  # one version each
    for sha in stored:  # each kept by the server as the catalog keeps its recording
        head = raw.head_object(Bucket=bucket, Key=f"objects/sha256/{sha}")
        assert head.get("ObjectLockMode") == "COMPLIANCE", (sha, head.get("ObjectLockMode"))
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=700)
    assert list((arch / "tmp").iterdir()) == []  # the spool's copies consumed
    assert verified(arch) == (0, [])
    assert uploads(raw, bucket) == []  # no multipart upload left open (verify cannot see one: not an object)


@pytest.mark.parametrize("point", ["after_link:1", "in_transaction:1", "in_transaction:2", "after_commit:1"])
def test_killed_between_upload_and_commit_then_rerun(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, small_card: Path, tmp_path: Path, point: str
) -> None:
    """Every object is in the bucket (uploaded, read back) when the ingest dies: before its transaction
    (after_link), inside it (rolled back), or just after it (recorded, not yet locked)."""
    arch = make_archive(seaweed, tmp_path, bucket)
    before = digest_tree(small_card)
    env = {**os.environ, "CUSTODES_CRASHPOINT": point}
    crashed = subprocess.run(ingest_cmd(small_card, arch), capture_output=True, env=env, timeout=120)
    assert crashed.returncode == -9, crashed.stderr.decode()[-800:]
    assert set(bucket_objects(raw, bucket)) == set(before.values())  # uploaded before the kill
    check_killed(arch, bucket, raw, small_card, before)
    rerun = subprocess.run(ingest_cmd(small_card, arch), capture_output=True, timeout=120)
    check_finished(arch, bucket, raw, small_card, before, rerun)


@pytest.mark.parametrize("point", ["after_intent:1", "after_link:1", "after_commit:1"])
def test_a_file_gone_from_the_volume_after_the_kill_is_recorded_and_locked_by_the_rerun(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, small_card: Path, tmp_path: Path, point: str
) -> None:
    """Killed with every object uploaded and none recorded or locked (or recorded, not locked), or with none
    uploaded yet, its copies noted and left in the spool; one clip then gone from the card (wiped, lost). The
    re-run records it from the killed ingest's intent and locks it: it stayed `pending`, unlocked (deletable by
    any client with the right), and no record named it; recorded, it stayed unlocked, and the re-run said all was
    well (two hostile reviews); never uploaded, its spool copy was swept and the clip called lost (a review)."""
    vol = tmp_path / "BWC0016"
    shutil.copytree(small_card, vol)
    arch = make_archive(seaweed, tmp_path, bucket)
    before = digest_tree(vol)
    crashed = subprocess.run(
        ingest_cmd(vol, arch),
        capture_output=True,
        env={**os.environ, "CUSTODES_CRASHPOINT": point},
        timeout=120,
    )
    assert crashed.returncode == -9, crashed.stderr.decode()[-800:]
    check_killed(arch, bucket, raw, vol, before)
    (vol / CLIPS[0]).unlink()
    rerun = subprocess.run(ingest_cmd(vol, arch), capture_output=True, timeout=120)
    check_finished(arch, bucket, raw, vol, before, rerun, gone=CLIPS[0])


def test_killed_after_a_multipart_upload_completed_then_rerun(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, card: Path, tmp_path: Path
) -> None:
    """The big object whole in the bucket (completed, read back), no catalog row: `pending`, then recorded."""
    arch = make_archive(seaweed, tmp_path, bucket)
    before = digest_tree(card)
    env = {**os.environ, "CUSTODES_CRASHPOINT": "after_link:1"}
    crashed = subprocess.run(ingest_cmd(card, arch), capture_output=True, env=env, timeout=120)
    assert crashed.returncode == -9, crashed.stderr.decode()[-800:]
    assert before["DEVICE.LOG"] in bucket_objects(raw, bucket)
    check_killed(arch, bucket, raw, card, before)
    rerun = subprocess.run(ingest_cmd(card, arch), capture_output=True, timeout=120)
    check_finished(arch, bucket, raw, card, before, rerun)


@pytest.mark.parametrize("how", ["crashpoint", "timed"])
def test_killed_during_a_multipart_upload_then_rerun(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, card: Path, tmp_path: Path, how: str
) -> None:
    """SIGKILL while the big file's multipart upload is open at the server: after its second part (a crash point
    in the backend), or from outside, as soon as the server lists the upload with a part sent."""
    arch = make_archive(seaweed, tmp_path, bucket)
    before = digest_tree(card)
    if how == "crashpoint":
        env = {**os.environ, "CUSTODES_CRASHPOINT": "s3_part_sent:2"}
        crashed = subprocess.run(ingest_cmd(card, arch), capture_output=True, env=env, timeout=120)
        assert crashed.returncode == -9, crashed.stderr.decode()[-800:]
    else:
        proc = subprocess.Popen(ingest_cmd(card, arch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, "no multipart upload seen under way"
                opened = uploads(raw, bucket)
                if opened and raw.list_parts(Bucket=bucket, Key=opened[0]["Key"], UploadId=opened[0]["UploadId"]).get(
                    "Parts"
                ):
                    break
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.wait(60)
    (left,) = uploads(raw, bucket)  # the killed run's upload, open at the server
    assert left["Key"] == f"objects/sha256/{before['DEVICE.LOG']}"
    assert before["DEVICE.LOG"] not in bucket_objects(raw, bucket)  # never completed
    check_killed(arch, bucket, raw, card, before)
    rerun = subprocess.run(ingest_cmd(card, arch), capture_output=True, timeout=120)
    check_finished(arch, bucket, raw, card, before, rerun)
