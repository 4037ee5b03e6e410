"""Object Lock through custodes, on an archive in a bucket, with the real CLI: the server keeps each recording's
object as the catalog says (its retention date from the policy, a legal hold while a recording is held), so no
one, custodes' own identity included, deletes it, changes it, or shortens its retention; what another client can
do (a new version over it, a delete marker) verify reports. A held recording outlives its retention date until an
approver releases it; then `custodes retention purge` removes every version, the ledger keeps the tombstone, and
verify is clean. The retention runs out in seconds because the recordings are backdated (retention runs from a
recording's end, custodes.retention.status), never because a test sleeps for minutes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from custodes_s3.testing import Seaweed
from footage import make_clip
from helpers import PEOPLE, SERVICES, as_, catalog_rows, policy_text, request, run_cli, set_policy, stop_service

NS = 10**9
DAY = timedelta(days=1)


@pytest.fixture
def services() -> Iterator[None]:
    """The archive services a test started (helpers.serve), stopped by their pid when it ends."""
    yield
    for arch in list(SERVICES):
        stop_service(arch)


def archive_in_bucket(seaweed: Seaweed, tmp_path: Path, bucket: str, policy: str | Callable[[str], str] = "") -> Path:
    """A new archive in ``bucket``; ``policy`` added to its policy by its owner (or, a function, the policy it
    makes of the one ``init`` wrote)."""
    arch = tmp_path / "archive"
    made = run_cli("init", arch, "--storage", "s3", "--bucket", bucket, "--endpoint", seaweed.endpoint)
    assert made.returncode == 0, made.stderr.decode()
    if policy:
        changed = set_policy(arch, policy(policy_text(arch)) if callable(policy) else policy_text(arch) + policy)
        assert changed.returncode == 0, changed.stderr.decode()
    return arch


def ingest(arch: Path, card: Path, code: int) -> dict[str, tuple[int, str]]:
    """Ingest ``card`` (exit ``code``); each recording's name and (segment, object key)."""
    out = run_cli("ingest", card, "--archive", arch, "--driver", "generic", "--json")
    assert out.returncode == code, out.stderr.decode()
    rows = catalog_rows(arch, "SELECT original_name, id, sha256 FROM segments")
    return {name: (seg, f"objects/sha256/{sha}") for name, seg, sha in rows}


def keep_until(arch: Path, user: str | None = None) -> dict[int, int]:
    """Each recording's keep-until, as `custodes retention status` says, in ns."""
    out = run_cli("retention", "status", arch, "--json", user=user)
    assert out.returncode == 0, out.stderr.decode()
    return {
        s["segment"]: int(datetime.fromisoformat(s["keep_until"]).timestamp() * NS)
        for s in json.loads(out.stdout)["segments"]
    }


def ns(when: datetime) -> int:
    return int(when.timestamp()) * NS


def refused(call: Any, **kw: Any) -> str:
    """The server's refusal of a request (its error code)."""
    with pytest.raises(ClientError) as e:
        call(**kw)
    return str(e.value.response["Error"]["Code"])


def verified(arch: Path) -> tuple[int, set[tuple[str, str | None]]]:
    out = run_cli("verify", arch, "--json")
    assert out.stdout, out.stderr.decode()
    return out.returncode, {(f["kind"], f["object"]) for f in json.loads(out.stdout)["findings"]}


def test_a_recordings_object_cannot_be_deleted_overwritten_or_kept_shorter(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    arch = archive_in_bucket(seaweed, tmp_path, bucket)
    card = tmp_path / "BWC0021"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(3):
        make_clip(card / f"CLIP000{i}.mp4", start + timedelta(seconds=3 * i))
    recorded = ingest(arch, card, 0)
    kept = keep_until(arch)
    a, b, c = (recorded[f"CLIP000{i}.mp4"][1] for i in range(3))
    heads = {key: raw.head_object(Bucket=bucket, Key=key) for key in (a, b, c)}
    for seg, key in recorded.values():  # locked by the server until the catalog's date (two years on)
        assert (heads[key]["ObjectLockMode"], ns(heads[key]["ObjectLockRetainUntilDate"])) == ("COMPLIANCE", kept[seg])
        assert kept[seg] > time.time_ns() + 729 * 86400 * NS
    version = heads[a]["VersionId"]

    # Its one version cannot be deleted, by custodes' own identity through another client, bypass or not.
    assert refused(raw.delete_object, Bucket=bucket, Key=a, VersionId=version) == "AccessDenied"
    assert (
        refused(raw.delete_object, Bucket=bucket, Key=a, VersionId=version, BypassGovernanceRetention=True)
        == "AccessDenied"
    )
    # Nor its retention shortened, or weakened to GOVERNANCE (which a bypass could then delete).
    until = heads[a]["ObjectLockRetainUntilDate"]
    for mode, date in (("COMPLIANCE", until - DAY), ("GOVERNANCE", until), ("GOVERNANCE", until - DAY)):
        retention = {"Mode": mode, "RetainUntilDate": date}
        assert refused(raw.put_object_retention, Bucket=bucket, Key=a, VersionId=version, Retention=retention)
    assert refused(
        raw.put_object_retention,
        Bucket=bucket,
        Key=a,
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - DAY},
        BypassGovernanceRetention=True,
    )
    now = raw.head_object(Bucket=bucket, Key=a, VersionId=version)
    assert (now["ObjectLockMode"], now["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
    assert verified(arch) == (0, set())

    # What S3 lets anyone with write access do: a new version over it, a delete marker. Neither touches the
    # locked version, and verify reports both.
    forged = raw.put_object(Bucket=bucket, Key=b, Body=b"forged")
    assert forged["VersionId"] != heads[b]["VersionId"]
    raw.delete_object(Bucket=bucket, Key=c)
    for key in (b, c):
        original = raw.get_object(Bucket=bucket, Key=key, VersionId=heads[key]["VersionId"])["Body"].read()
        assert hashlib.sha256(original).hexdigest() == key.rsplit("/", 1)[1]
    assert verified(arch) == (1, {("modified", b.rsplit("/", 1)[1]), ("missing", c.rsplit("/", 1)[1])})
    # Each finding says what the listing saw on the key.
    said = {f["object"]: f["message"] for f in json.loads(run_cli("verify", arch, "--json").stdout)["findings"]}
    assert said[b.rsplit("/", 1)[1]].endswith(": 2 versions and 0 delete markers: written again")
    assert said[c.rsplit("/", 1)[1]].endswith(": its latest version is a delete marker (1 kept)")


def test_a_fraction_of_a_day_of_retention_is_kept_not_rounded_down(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """``minimum_days = 0.5`` keeps a recording half a day after it ends (the policy loader once made it 0)."""
    arch = archive_in_bucket(
        seaweed, tmp_path, bucket, lambda text: text.replace("minimum_days = 730", "minimum_days = 0.5")
    )
    card = tmp_path / "BWC0022"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    make_clip(card / "CLIP0000.mp4", start)
    ((seg, key),) = ingest(arch, card, 0).values()
    end = ns(start) + 2 * NS  # the clip's two seconds
    assert keep_until(arch) == {seg: end + 12 * 3600 * NS}
    status = json.loads(run_cli("retention", "status", arch, "--json").stdout)["segments"][0]
    assert status["reasons"] == ["minimum 0.5 days"] and status["due"] is False
    head = raw.head_object(Bucket=bucket, Key=key)
    assert (head["ObjectLockMode"], ns(head["ObjectLockRetainUntilDate"])) == ("COMPLIANCE", end + 12 * 3600 * NS)


#: Seconds from making the backdated clips to the end of the first one's retention: time to ingest them (their
#: retention is set only while its date is ahead) and place the hold (4 s here), and all the test waits for.
LEFT = 10


def test_a_held_recording_outlives_its_retention_until_released_then_purge_removes_every_version(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, services: None
) -> None:
    arch = archive_in_bucket(seaweed, tmp_path, bucket, PEOPLE)  # 730 days; alice custodian, bob approver
    # Two recordings that ended 730 days ago, less LEFT seconds: their retention runs out in LEFT seconds.
    card = tmp_path / "BWC0023"
    start = datetime.now(UTC).replace(microsecond=0) - 730 * DAY + timedelta(seconds=LEFT - 2)
    make_clip(card / "CLIP0000.mp4", start)
    make_clip(card / "CLIP0001.mp4", start + timedelta(seconds=2))
    recorded = ingest(arch, card, 1)  # 1: both are late_ingest, handed in two years after they ended
    (a_seg, a), (b_seg, b) = recorded["CLIP0000.mp4"], recorded["CLIP0001.mp4"]
    kept = keep_until(arch)
    assert kept == {a_seg: ns(start) + 2 * NS + 730 * 86400 * NS, b_seg: ns(start) + 4 * NS + 730 * 86400 * NS}
    for seg, key in recorded.values():
        head = raw.head_object(Bucket=bucket, Key=key)
        assert (head["ObjectLockMode"], ns(head["ObjectLockRetainUntilDate"])) == ("COMPLIANCE", kept[seg])
        assert head.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"

    held = as_("alice", "retention", "hold", arch, "--segment", b_seg, "--reason", "complaint 2025-31", "--json")
    assert held.returncode == 0, held.stderr.decode()
    hold_id = json.loads(held.stdout)["hold"]
    assert raw.head_object(Bucket=bucket, Key=b)["ObjectLockLegalHoldStatus"] == "ON"
    a_version = raw.head_object(Bucket=bucket, Key=a)["VersionId"]
    raw.put_object(Bucket=bucket, Key=a, Body=b"written over")  # a second version of a's object
    assert verified(arch) == (1, {("modified", a.rsplit("/", 1)[1])})

    time.sleep(max(0.0, (kept[b_seg] - time.time_ns()) / NS + 1.5))  # both retention dates passed, to the second
    b_head = raw.head_object(Bucket=bucket, Key=b)
    assert b_head["ObjectLockRetainUntilDate"] < datetime.now(UTC)
    assert b_head["ObjectLockLegalHoldStatus"] == "ON"  # the hold still keeps it, at the server
    assert refused(raw.delete_object, Bucket=bucket, Key=b, VersionId=b_head["VersionId"]) == "AccessDenied"
    due = json.loads(as_("alice", "retention", "due", arch, "--json").stdout)["due"]
    assert [d["segment"] for d in due] == [a_seg]  # a is due; b is held

    rid = request(arch, "alice", a_seg, b_seg, purpose="purge")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    purge = ("retention", "purge", arch, "--request", rid, "--json")
    stopped = as_("alice", *purge)
    assert stopped.returncode == 1 and f"segment {b_seg} is under hold [{hold_id}]" in stopped.stderr.decode()
    assert len(raw.list_object_versions(Bucket=bucket, Prefix="objects/")["Versions"]) == 3  # nothing removed

    released = as_("bob", "retention", "release", arch, "--hold", hold_id)
    assert released.returncode == 0, released.stderr.decode()
    assert raw.head_object(Bucket=bucket, Key=b)["ObjectLockLegalHoldStatus"] == "OFF"
    done = as_("alice", *purge)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"request": rid, "purged": [a_seg, b_seg], "finished": [], "already": []}

    left = raw.list_object_versions(Bucket=bucket, Prefix="objects/")
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []  # every version of both
    assert refused(raw.head_object, Bucket=bucket, Key=a, VersionId=a_version) in ("404", "NoSuchVersion")
    entries = [json.loads(e) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]
    tombs = {e["segment"]: e["sha256"] for e in entries if e["type"] == "purge"}
    assert tombs == {a_seg: a.rsplit("/", 1)[1], b_seg: b.rsplit("/", 1)[1]}  # the tombstones, signed first
    removed = [(e["sha256"], e["removed"], e["request"]) for e in entries if e["type"] == "purge_done"]
    assert sorted(removed) == sorted((sha, True, rid) for sha in tombs.values())
    assert verified(arch) == (0, set())


def test_verify_finds_an_object_the_storage_does_not_keep_as_the_catalog_says(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, services: None
) -> None:
    # A lock lifted or added through another client (the archive's own identity may lift a legal hold: S3's
    # rule) reads back intact, yet the storage would let the object go, or keep it from a lawful purge.
    arch = archive_in_bucket(seaweed, tmp_path, bucket, PEOPLE)
    card = tmp_path / "card"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(2):
        make_clip(card / f"CLIP000{i}.mp4", start + timedelta(seconds=3 * i))
    recorded = ingest(arch, card, 0)
    (held_seg, held_key), (other_seg, other_key) = recorded["CLIP0000.mp4"], recorded["CLIP0001.mp4"]
    assert as_("alice", "retention", "hold", arch, "--segment", held_seg, "--reason", "case 7").returncode == 0
    assert raw.head_object(Bucket=bucket, Key=held_key)["ObjectLockLegalHoldStatus"] == "ON"
    assert run_cli("verify", arch).returncode == 0

    raw.put_object_legal_hold(Bucket=bucket, Key=held_key, LegalHold={"Status": "OFF"})  # lifted behind its back
    raw.put_object_legal_hold(Bucket=bucket, Key=other_key, LegalHold={"Status": "ON"})  # and one added
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1
    found = {(f["kind"], f["segment"]): f["message"] for f in json.loads(out.stdout)["findings"]}
    assert set(found) == {("lock_mismatch", held_seg), ("lock_mismatch", other_seg)}
    assert "no legal hold in the storage" in found[("lock_mismatch", held_seg)]
    assert "a legal hold in the storage that no recording of it has" in found[("lock_mismatch", other_seg)]
    assert {f["kind"] for f in json.loads(run_cli("verify", arch, "--quick", "--json").stdout)["findings"]} == {
        "lock_mismatch"
    }  # sizes only, the locks all the same

    synced = as_("alice", "storage", "sync", arch)
    assert synced.returncode == 0, synced.stderr
    assert raw.head_object(Bucket=bucket, Key=held_key)["ObjectLockLegalHoldStatus"] == "ON"
    assert raw.head_object(Bucket=bucket, Key=other_key)["ObjectLockLegalHoldStatus"] == "OFF"
    assert run_cli("verify", arch).returncode == 0

    # Footage past its minimum retention when ingested gets no date: another client can delete its version for
    # good. Sync sets every other object and names the one gone, exit 1 (the evidence, not the storage, is what
    # is wrong: a hostile review had exit 2 and one line).
    old = tmp_path / "old"
    make_clip(old / "OLD0.mp4", datetime(2016, 1, 1, tzinfo=UTC))
    stored = as_("alice", "ingest", old, "--archive", arch, "--driver", "generic")
    assert stored.returncode == 1, stored.stderr  # (a late ingest)
    ((sha,),) = catalog_rows(arch, "SELECT sha256 FROM segments WHERE original_name = 'OLD0.mp4'")
    old_key = f"objects/sha256/{sha}"
    version = raw.head_object(Bucket=bucket, Key=old_key)["VersionId"]
    raw.delete_object(Bucket=bucket, Key=old_key, VersionId=version)
    synced = as_("alice", "storage", "sync", arch, "--json")
    said = json.loads(synced.stdout)
    assert synced.returncode == 1 and said["objects"] == 2 and len(said["missing"]) == 1, synced.stderr
    assert old_key.rsplit("/", 1)[1] in said["missing"][0] and "is not in the store" in said["missing"][0]


def test_a_hold_whose_checkpoint_file_cannot_be_written_is_kept_by_the_storage_all_the_same(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold recorded, then its checkpoint's file refused (a full disk): the act stands (the review page says so)
    but the storage was never asked for its legal hold, which came after the checkpoint (a hostile review)."""
    import errno

    import custodes.archive
    from custodes import retention
    from custodes.archive import CheckpointFileError, open_archive

    custodian_root = PEOPLE.replace('root = "auditor"', 'root = "custodian"')
    arch = archive_in_bucket(seaweed, tmp_path, bucket, custodian_root)
    card = tmp_path / "BWC0023"
    make_clip(card / "CLIP0000.mp4", datetime.now(UTC).replace(microsecond=0) - DAY)
    ((seg, key),) = ingest(arch, card, 0).values()

    def full(path: Path, *_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(custodes.archive, "write_once", full)
    with open_archive(arch) as a, pytest.raises(CheckpointFileError):
        retention.hold(a, seg, "court order 12")
    assert raw.head_object(Bucket=bucket, Key=key)["ObjectLockLegalHoldStatus"] == "ON"
