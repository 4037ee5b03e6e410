"""A second copy with a bucket on either side, through the CLI: ingest stores both copies (the bucket's locked by the
server), verify names the copy another client damaged, `custodes storage repair` brings back the object's own
version (or its bytes from the other copy) and verify is clean again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from custodes_s3 import testing
from custodes_s3.testing import Seaweed
from footage import make_clip
from helpers import policy_text, run_cli, set_policy

CUSTODIAN = '\n[people]\nroot = "custodian"\n'


def _archive(tmp_path: Path, *init: str) -> tuple[Path, list[str]]:
    """An archive made with ``init``, the test's account its custodian, and three fresh clips ingested."""
    arch, card = tmp_path / "archive", tmp_path / "card"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(3):
        make_clip(card / f"CLIP000{i}.mp4", start + timedelta(seconds=3 * i))
    made = run_cli("init", arch, *init)
    assert made.returncode == 0, made.stderr.decode()
    assert set_policy(arch, policy_text(arch) + CUSTODIAN).returncode == 0
    ingested = run_cli("ingest", card, "--archive", arch, "--json")
    stored = json.loads(ingested.stdout)["stored"]
    assert len(stored) == 3, ingested.stderr.decode()
    return arch, stored


def _findings(arch: Path) -> tuple[int, set[tuple[str, str | None, str]]]:
    r = run_cli("verify", arch, "--json")
    return r.returncode, {(f["kind"], f["copy"], f["object"]) for f in json.loads(r.stdout)["findings"]}


def _keys(raw: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in raw.list_objects_v2(Bucket=bucket, Prefix="objects/")["Contents"])


def test_a_bucket_as_the_second_copy(seaweed: Seaweed, credentials: None, raw: Any, tmp_path: Path) -> None:
    testing.make_bucket(seaweed, "second-copy")
    arch, _ = _archive(
        tmp_path,
        "--replica", "s3", "--replica-option", "bucket=second-copy", "--replica-option", f"endpoint={seaweed.endpoint}",
    )  # fmt: skip
    keys = _keys(raw, "second-copy")
    first = {p.name for p in (arch / "objects" / "sha256").rglob("*") if p.is_file()}
    assert {k.rsplit("/", 1)[1] for k in keys} == first  # both copies of every object
    head = raw.head_object(Bucket="second-copy", Key=keys[0])
    assert head["ObjectLockMode"] == "COMPLIANCE"  # the second copy is locked as the catalog keeps it too
    assert _findings(arch) == (0, set())
    checked = json.loads(run_cli("storage", "check", arch, "--json").stdout)
    apart = {g["name"]: g for g in checked["replica"]["guarantees"]}["second copy kept apart"]
    assert apart["held"] and apart["detail"] == "the copies are kept by different backends (local, s3)", apart

    raw.put_object(Bucket="second-copy", Key=keys[0], Body=b"forged")  # written again by another client
    raw.delete_object(Bucket="second-copy", Key=keys[1])  # a delete marker
    names = [k.rsplit("/", 1)[1] for k in keys]
    assert _findings(arch) == (1, {("modified", "replica", names[0]), ("missing", "replica", names[1])})

    repaired = run_cli("storage", "repair", arch, "--json")
    assert repaired.returncode == 0, repaired.stderr.decode()
    done = {r["object"]: (r["copy"], r["done"]) for r in json.loads(repaired.stdout)["repaired"]}
    assert set(done) == {names[0], names[1]} and {c for c, _ in done.values()} == {"replica"}
    # What the repair deleted is named for its ledger entry: the forged version, the delete marker.
    assert len(done[names[0]][1]) == 1 and "6 bytes, ETag" in done[names[0]][1][0]  # b"forged"
    assert len(done[names[1]][1]) == 1 and done[names[1]][1][0].startswith("delete marker")
    assert _findings(arch) == (0, set())
    for key in keys[:2]:  # the object's own version is current again, and the only one left
        versions = raw.list_object_versions(Bucket="second-copy", Prefix=key)
        assert len(versions.get("Versions", [])) == 1 and not versions.get("DeleteMarkers")


def test_a_local_second_copy_repairs_the_bucket(seaweed: Seaweed, credentials: None, raw: Any, tmp_path: Path) -> None:
    testing.make_bucket(seaweed, "first-copy")
    second = tmp_path / "disk2" / "copy"
    arch, _ = _archive(
        tmp_path,
        "--storage", "s3", "--bucket", "first-copy", "--endpoint", seaweed.endpoint,
        "--replica", "local", "--replica-option", f"location={second}",
    )  # fmt: skip
    keys = _keys(raw, "first-copy")
    names = [k.rsplit("/", 1)[1] for k in keys]
    raw.put_object(Bucket="first-copy", Key=keys[0], Body=b"forged")  # the bucket's copy written again
    lost = next(p for p in (second / "objects").rglob(names[1]))  # and the disk's copy of another lost
    lost.chmod(0o600)
    lost.unlink()
    assert _findings(arch) == (1, {("modified", None, names[0]), ("missing", "replica", names[1])})
    repaired = run_cli("storage", "repair", arch, "--json")
    assert repaired.returncode == 0, repaired.stderr.decode()
    assert _findings(arch) == (0, set())
    assert next(p for p in (second / "objects").rglob(names[1])).stat().st_mode & 0o222 == 0


def test_one_prefix_holds_one_archive_and_one_copy(
    seaweed: Seaweed, credentials: None, raw: Any, tmp_path: Path
) -> None:
    # Found by a hostile user: two archives on one bucket and prefix each took the other's objects for its own,
    # and a lawful purge in one left the other's recording missing; a "second copy" in the first copy's own
    # place was one copy.
    testing.make_bucket(seaweed, "shared-prefix")
    first = ("--storage", "s3", "--bucket", "shared-prefix", "--endpoint", seaweed.endpoint, "--prefix", "station")
    made = run_cli("init", tmp_path / "a", *first)
    assert made.returncode == 0, made.stderr.decode()
    r = run_cli("init", tmp_path / "b", *first)
    assert r.returncode == 2 and b"belongs to archive" in r.stderr and not (tmp_path / "b").exists()
    same = ("--replica", "s3", "--replica-option", "bucket=shared-prefix", "--replica-option", "prefix=mirror")
    endpoint = ("--replica-option", f"endpoint={seaweed.endpoint}")
    r = run_cli("init", tmp_path / "c", *first[:-1], "mirror", *same, *endpoint)
    assert r.returncode == 2 and b"place of its own" in r.stderr and not (tmp_path / "c").exists()
    r = run_cli("init", tmp_path / "d", *first[:-1], "d1", "--replica", "s3", "--replica-option",
                "bucket=shared-prefix", "--replica-option", "prefix=station", *endpoint)  # fmt: skip
    assert r.returncode == 2 and b"belongs to archive" in r.stderr  # another archive's first copy
    # A prefix inside another archive's (among its evidence), or above it (the bucket's root), is refused before
    # anything is written (a hostile review: the owner key went in among archive a's objects).
    for prefix, said in (
        ("station/objects", b"lies inside archive"),
        ("station/probes/x", b"own probes/ folder"),
    ):
        r = run_cli("init", tmp_path / "f", *first[:-1], prefix)
        assert r.returncode == 2 and said in r.stderr and not (tmp_path / "f").exists(), r.stderr
    assert _findings(tmp_path / "a") == (0, set())  # nothing planted among a's objects
    raw.put_object(Bucket="shared-prefix", Key="loose/notes.txt", Body=b"x")  # a prefix of things, no archive's
    r = run_cli("init", tmp_path / "f", *first[:-1], "loose")
    assert r.returncode == 2 and b"holds loose/notes.txt and is no archive's yet" in r.stderr, r.stderr
    # Another prefix of the first copy's bucket is a place of its own, and not a copy kept apart: a storage check
    # says so (one bucket lost, or one account deleting in it, loses both).
    r = run_cli("init", tmp_path / "e", *first[:-1], "e1", "--replica", "s3", "--replica-option",
                "bucket=shared-prefix", "--replica-option", "prefix=e2", *endpoint)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    checked = run_cli("storage", "check", tmp_path / "e", "--json")
    apart = {g["name"]: g for g in json.loads(checked.stdout)["replica"]["guarantees"]}["second copy kept apart"]
    assert (
        checked.returncode == 1 and not apart["held"] and "both copies are in bucket shared-prefix" in apart["detail"]
    )
