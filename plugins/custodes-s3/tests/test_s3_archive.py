"""An archive on the s3 backend, used through the real CLI as a custodian would: init with --storage s3, storage
check, ingest, verify, and verify again after someone tampered with the bucket."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from custodes_s3 import testing
from custodes_s3.testing import Seaweed
from footage import make_clip
from helpers import run_cli


@pytest.fixture
def environ(seaweed: Seaweed, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: the server's identity, and the plugin found through its entry point as an installed
    distribution's would be (a dist-info ahead on the path; where the plugin is installed, the same name)."""
    dist = tmp_path / "site" / "custodes_s3-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: custodes-s3\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[custodes]\ns3 = custodes_s3\n")
    path = os.pathsep.join([str(dist.parent), *(p for p in sys.path if p)])
    return {**seaweed.environ(), "PYTHONPATH": path}


def _json(result: Any) -> Any:
    assert result.stdout, result.stderr.decode()
    return json.loads(result.stdout)


def _bucket_and_card(seaweed: Seaweed, bucket: str, tmp_path: Path, clips: int) -> tuple[Path, Path]:
    """A new Object Lock bucket, and a card of ``clips`` real recordings an hour old: (archive to be, card)."""
    testing.make_bucket(seaweed, bucket)
    archive, card = tmp_path / "archive", tmp_path / "card"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(clips):
        make_clip(card / f"CLIP000{i}.mp4", start + timedelta(seconds=3 * i))
    return archive, card


def test_an_archive_in_a_bucket(seaweed: Seaweed, environ: dict[str, str], raw: Any, tmp_path: Path) -> None:
    archive, card = _bucket_and_card(seaweed, "station-evidence", tmp_path, 3)
    made = run_cli(
        "init", "--storage", "s3", "--bucket", "station-evidence", "--endpoint", seaweed.endpoint,
        "--prefix", "station1", archive, env=environ,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    checked = _json(run_cli("storage", "check", "--json", archive, env=environ))
    assert checked["storage"] == "s3://station-evidence/station1/" and checked["missing"] == [
        "legal hold kept from the archive's own identity"
    ]

    ingested = run_cli("ingest", card, "--archive", archive, "--json", env=environ)
    assert _json(ingested)["stored"] == ["CLIP0000.mp4", "CLIP0001.mp4", "CLIP0002.mp4"]
    listed = raw.list_objects_v2(Bucket="station-evidence", Prefix="station1/objects/")["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert len(keys) == 3 and all(k.startswith("station1/objects/sha256/") for k in keys)
    head = raw.head_object(Bucket="station-evidence", Key=keys[0])
    assert head["ObjectLockMode"] == "COMPLIANCE"  # kept by the server as long as the policy keeps the recording
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=700)
    assert not list((archive / "tmp").iterdir())  # the spool's copies were consumed

    verified = run_cli("verify", "--json", archive, env=environ)
    assert verified.returncode == 0 and _json(verified)["checked"] == 3

    raw.put_object(Bucket="station-evidence", Key=keys[0], Body=b"forged")
    raw.delete_object(Bucket="station-evidence", Key=keys[1])
    tampered = run_cli("verify", "--json", archive, env=environ)
    assert tampered.returncode == 1
    found = {(f["kind"], f["object"]) for f in _json(tampered)["findings"]}
    assert found == {("modified", keys[0].rsplit("/", 1)[1]), ("missing", keys[1].rsplit("/", 1)[1])}


def test_a_spool_copy_that_changed_before_it_was_sent_is_never_stored(
    seaweed: Seaweed, environ: dict[str, str], raw: Any, tmp_path: Path
) -> None:
    """On a bucket the spool copy is not the object (``spool_is_object``): it is neither synced nor read back from
    the disk. What checks it is the store's read-back against the card's digests and, for a file sent whole as
    here, the server's checksum (the card's SHA-256; a multipart object's parts carry the spool's, and its
    read-back removes it: test_s3_multipart): a copy that lost a bit after it was hashed is refused, nothing is
    recorded for it, and a re-run stores it."""
    archive, card = _bucket_and_card(seaweed, "spool-bit", tmp_path, 2)
    made = run_cli(
        "init", "--storage", "s3", "--bucket", "spool-bit", "--endpoint", seaweed.endpoint, archive, env=environ
    )
    assert made.returncode == 0, made.stderr.decode()
    # The first read of an archive file is the first copy's head, taken from the spool before it is sent.
    out = run_cli("ingest", card, "--archive", archive, "--json", env={**environ, "CUSTODES_FAULT": "read:1:corrupt"})
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    report = _json(out)
    assert len(report["stored"]) == 1 and len(report["failed"]) == 1
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert failed["path"].endswith(report["failed"][0])
    assert "the server refused the bytes sent" in failed["message"]
    listed = raw.list_object_versions(Bucket="spool-bit", Prefix="objects/").get("Versions", [])
    assert len(listed) == 1  # the refused bytes left nothing in the bucket
    verified = run_cli("verify", "--json", archive, env=environ)
    assert verified.returncode == 0 and _json(verified)["checked"] == 1
    again = _json(run_cli("ingest", card, "--archive", archive, "--json", env=environ))
    assert again["stored"] == report["failed"] and again["already_present"] == report["stored"]
    verified = run_cli("verify", "--json", archive, env=environ)
    assert verified.returncode == 0 and _json(verified)["checked"] == 2
    assert not list((archive / "tmp").iterdir())


def test_init_refuses_a_bucket_without_object_lock(seaweed: Seaweed, environ: dict[str, str], tmp_path: Path) -> None:
    """Nothing is stored where the server would not keep it (what such a bucket lacks, `storage check` on the
    store names: test_s3_lock)."""
    testing.make_bucket(seaweed, "unlocked-evidence", lock=False)
    archive = tmp_path / "archive"
    made = run_cli(
        "init", "--storage", "s3", "--bucket", "unlocked-evidence", "--endpoint", seaweed.endpoint, archive,
        env=environ,
    )  # fmt: skip
    assert made.returncode != 0 and "s3://unlocked-evidence/: the bucket cannot keep evidence locked" in (
        made.stderr.decode()
    )
    assert not archive.exists()
