"""What a hostile user of the s3 backend found (issue 15's last review), each reproduced against the real SeaweedFS
through the CLI or the store's public API: a lock never kept on a forgery, a bucket that cannot lock refused up
front, prefixes S3 cannot hold refused, keys outside objects/ reported, a failed init's claim given back."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from custodes.storage import StoreError
from custodes_s3 import S3Store, testing
from custodes_s3.store import MAX_KEY_BYTES, OWNER_KEY, check_options
from custodes_s3.testing import Seaweed
from footage import make_clip
from helpers import catalog_rows, policy_text, run_cli, set_policy


def _init(seaweed: Seaweed, arch: Path, bucket: str, *more: str) -> Any:
    return run_cli("init", arch, "--storage", "s3", "--bucket", bucket, "--endpoint", seaweed.endpoint, *more)


def _keys(raw: Any, bucket: str, prefix: str = "") -> list[str]:
    page = raw.list_object_versions(Bucket=bucket, Prefix=prefix)
    return sorted({v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])})


def _ingest_one(arch: Path, tmp_path: Path) -> str:
    card = tmp_path / "card"
    make_clip(card / "CLIP0000.mp4", datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    out = run_cli("ingest", card, "--archive", arch, "--driver", "generic", "--json")
    assert out.returncode == 0, out.stderr.decode()
    ((sha,),) = catalog_rows(arch, "SELECT sha256 FROM segments")
    return str(sha)


def _findings(arch: Path) -> tuple[int, set[tuple[str, str | None]]]:
    out = run_cli("verify", arch, "--json")
    assert out.stdout, out.stderr.decode()
    return out.returncode, {(f["kind"], f["object"]) for f in json.loads(out.stdout)["findings"]}


def _store(arch: Path) -> S3Store:
    """The archive's first copy, opened as custodes opens it (the public API)."""
    from custodes.archive import Archive

    with Archive(arch) as archive:
        store = archive.store
    assert isinstance(store, S3Store)
    return store


# ---- 1. a lock on the recorded version, never on a forgery ---------------------------------------------------


def test_a_hold_and_a_retention_go_on_the_recorded_version_never_on_a_forgery(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    sha = _ingest_one(arch, tmp_path)
    key = f"objects/sha256/{sha}"
    original = raw.head_object(Bucket=bucket, Key=key)
    # Someone with write access puts a new version over the evidence: the key's latest is now the forgery.
    forged = raw.put_object(Bucket=bucket, Key=key, Body=b"forged footage")["VersionId"]
    store = _store(arch)
    store.hold(sha, True)
    store.retain(sha, int((original["ObjectLockRetainUntilDate"] + timedelta(days=30)).timestamp()) * 10**9)
    kept = raw.head_object(Bucket=bucket, Key=key, VersionId=original["VersionId"])
    assert kept["ObjectLockLegalHoldStatus"] == "ON"
    assert kept["ObjectLockRetainUntilDate"] == original["ObjectLockRetainUntilDate"] + timedelta(days=30)
    forgery = raw.head_object(Bucket=bucket, Key=key, VersionId=forged)
    assert forgery.get("ObjectLockLegalHoldStatus", "OFF") == "OFF" and "ObjectLockRetainUntilDate" not in forgery
    assert store.stat(sha) is not None
    # The forgery stays visible: verify reports the object written again.
    assert _findings(arch) == (1, {("modified", sha)})


def test_a_key_with_only_forged_versions_is_not_locked(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """An object the catalog names whose every version holds other bytes (its own removed before any lock): no
    lock keeps a forgery in the evidence's place; the error names the object."""
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    store = _store(arch)
    sha = hashlib.sha256(b"the real recording").hexdigest()
    raw.put_object(Bucket=bucket, Key=f"objects/sha256/{sha}", Body=b"forged, no checksum")
    raw.put_object(
        Bucket=bucket, Key=f"objects/sha256/{sha}", Body=b"forged", ChecksumAlgorithm="SHA256"
    )  # a whole-object SHA-256 of other bytes
    with pytest.raises(StoreError, match=rf"{sha}: none of its 2 version\(s\) holds the object's bytes"):
        store.hold(sha, True)
    for v in raw.list_object_versions(Bucket=bucket, Prefix=f"objects/sha256/{sha}")["Versions"]:
        head = raw.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        assert head.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"


# ---- 2. a bucket that cannot lock ----------------------------------------------------------------------------


def test_a_bucket_without_object_lock_is_refused_at_init_naming_it(
    seaweed: Seaweed, credentials: None, raw: Any, tmp_path: Path
) -> None:
    name = f"unlocked-{os.urandom(4).hex()}"
    testing.make_bucket(seaweed, name, lock=False)
    arch = tmp_path / "archive"
    made = _init(seaweed, arch, name, "--prefix", "station1")
    error = made.stderr.decode()
    assert made.returncode != 0 and "Traceback" not in error
    assert f"s3://{name}/station1/: the bucket cannot keep evidence locked" in error
    assert "Object Lock" in error
    assert not arch.exists() and _keys(raw, name) == []  # nothing kept, nothing written to the bucket


def test_an_init_refused_on_a_bucket_whose_default_retention_keeps_its_mark_says_why_once(
    seaweed: Seaweed, credentials: None, raw: Any, tmp_path: Path
) -> None:
    """A bucket with a GOVERNANCE default retention, on which this identity cannot set COMPLIANCE: the init
    is refused, and its owner key, locked the moment it was written, cannot be deleted. The refusal said the
    failed delete twice ("X; and X") and not why the init was refused. It says why, then that the mark stays."""
    name = f"default-{os.urandom(4).hex()}"
    testing.make_bucket(seaweed, name)
    raw.put_object_lock_configuration(
        Bucket=name,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    arch = tmp_path / "archive"
    made = _init(seaweed, arch, name, "--prefix", "station1")
    error = made.stderr.decode()
    assert made.returncode == 2 and "Traceback" not in error and len(error.splitlines()) == 1, error
    said = error.split("; and ")
    assert len(said) == 2, error
    assert "the bucket cannot keep evidence locked: a COMPLIANCE retention could not be set" in said[0], error
    assert f"s3://{name}/station1/ stays claimed by archive" in said[1], error
    assert error.count("could not be deleted") == 1, error
    assert not arch.exists()


def test_a_bucket_that_lost_its_lock_is_refused_before_the_first_put(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    """An archive whose bucket was made again without Object Lock (same name): an ingest is refused whole, before
    any upload, not file after file at each lock."""
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    testing.drop_bucket(seaweed, bucket)
    testing.make_bucket(seaweed, bucket, lock=False)
    card = tmp_path / "card"
    make_clip(card / "CLIP0000.mp4", datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    out = run_cli("ingest", card, "--archive", arch, "--driver", "generic")
    assert out.returncode != 0 and "Traceback" not in out.stderr.decode()
    assert f"s3://{bucket}/: the bucket cannot keep evidence locked" in out.stderr.decode()
    assert _keys(raw, bucket, "objects/") == []
    # Its own archive's prefix there (the owner key put back): still verified and listed, never written to.
    owner = tomllib.loads(policy_text(arch))["archive"]["id"]
    raw.put_object(Bucket=bucket, Key=OWNER_KEY, Body=owner.encode())
    raw.put_object(Bucket=bucket, Key="objects/notes.txt", Body=b"stray")
    assert _findings(arch) == (1, {("unexpected", None)})  # the refused ingest recorded nothing
    again = run_cli("ingest", card, "--archive", arch, "--driver", "generic")
    assert again.returncode != 0 and "cannot keep evidence locked" in again.stderr.decode()
    assert _keys(raw, bucket, "objects/") == ["objects/notes.txt"]
    assert catalog_rows(arch, "SELECT COUNT(*) FROM ingests") == [(0,)]


def test_a_bucket_not_reached_is_said_as_that_not_as_a_bucket_without_object_lock(
    seaweed: Seaweed, credentials: None, bucket: str, tmp_path: Path
) -> None:
    """A hostile review: a wrong secret key and a dead endpoint were both said as "the bucket cannot keep evidence
    locked ... S3 Object Lock: a bucket made with --object-lock-enabled-for-bucket", sending the user to the
    bucket's settings."""
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    out = run_cli("verify", arch, env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    error = out.stderr.decode()
    assert out.returncode == 2 and error.count("\n") == 1 and "Object Lock" not in error, error
    assert f"s3://{bucket}/: the bucket cannot be reached (403" in error and "the credentials" in error
    assert run_cli("verify", arch).returncode == 0


# ---- 3. prefixes S3 cannot hold ------------------------------------------------------------------------------

LONGEST = MAX_KEY_BYTES - len("objects/sha256/") - 64  # bytes of a prefix, its closing "/" included


def test_the_longest_prefix_fits_s3_and_one_byte_more_is_refused(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    fits = "p" * (LONGEST - 1)  # the "/" added makes it LONGEST bytes
    assert check_options({"bucket": bucket, "prefix": fits})["prefix"] == fits + "/"
    arch = tmp_path / "archive"
    made = _init(seaweed, arch, bucket, "--prefix", fits)
    assert made.returncode == 0, made.stderr.decode()
    sha = _ingest_one(arch, tmp_path)
    key = f"{fits}/objects/sha256/{sha}"
    assert len(key.encode()) == MAX_KEY_BYTES and raw.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    for too_long in ("p" * LONGEST, "é" * (LONGEST // 2 + 1)):  # "é": 2 bytes in UTF-8
        other = tmp_path / f"other-{len(too_long)}"
        refused = _init(seaweed, other, bucket, "--prefix", too_long)
        error = refused.stderr.decode()
        assert refused.returncode != 0 and "Traceback" not in error, error
        assert "prefix" in error and f"S3's {MAX_KEY_BYTES} bytes" in error and not other.exists()


@pytest.mark.parametrize(
    ("prefix", "said"),
    [
        ("/agency/", "no leading /"),
        ("agency//a1", "no empty"),
        ("agency/../a1", "'..'"),
        ("agency/./a1", "'.'"),
        ("agency/\x01a1", "control character"),  # refused by the CLI's own rule for a line of text
        ("agency/a1\x7f", "control character"),
    ],
)
def test_an_odd_prefix_is_refused_at_init(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path, prefix: str, said: str
) -> None:
    arch = tmp_path / "archive"
    refused = _init(seaweed, arch, bucket, "--storage-option", f"prefix={prefix}")
    error = refused.stderr.decode()
    assert refused.returncode != 0 and "Traceback" not in error and "prefix" in error and said in error
    assert not arch.exists() and _keys(raw, bucket) == []


@pytest.mark.parametrize(("prefix", "said"), [("c" * LONGEST, "too long"), ("copy\\u0001", "control characters")])
def test_policy_set_refuses_a_second_copy_whose_prefix_s3_cannot_hold(
    seaweed: Seaweed, credentials: None, bucket: str, tmp_path: Path, prefix: str, said: str
) -> None:
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    text = policy_text(arch) + (
        f'\n[replica]\nbackend = "s3"\nbucket = "{bucket}"\nendpoint = "{seaweed.endpoint}"\nprefix = "{prefix}"\n'
    )
    changed = set_policy(arch, text)
    error = changed.stderr.decode()
    assert changed.returncode != 0 and "Traceback" not in error and "[replica] prefix" in error and said in error
    assert run_cli("verify", arch).returncode == 0  # the archive still opens: the policy was not kept


# ---- 4. keys under the prefix but outside objects/sha256/ -----------------------------------------------------


def test_keys_outside_objects_are_reported_but_the_backends_own_and_another_archives_are_not(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket, "--prefix", "station1").returncode == 0
    assert run_cli("storage", "check", arch).returncode == 1  # probes under station1/probes/ (one hold missing)
    sha = _ingest_one(arch, tmp_path)
    # Another archive nested below this one's prefix (a place of its own, its owner key says so).
    nested = tmp_path / "nested"
    assert _init(seaweed, nested, bucket, "--prefix", "station1/nested").returncode == 0
    _ingest_one(nested, tmp_path / "n")
    assert _findings(arch) == (0, set())
    strays = ["station1/notes.txt", "station1/extra/deep/file.bin", f"station1/{sha}", "station1/probes/mine.txt"]
    for key in strays:
        raw.put_object(Bucket=bucket, Key=key, Body=b"not custodes'")
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1, out.stderr.decode()
    findings = json.loads(out.stdout)["findings"]
    assert sorted(f["kind"] for f in findings) == ["unexpected"] * len(strays)
    details = " ".join(f["message"] for f in findings)
    for key in strays:
        assert f"s3://{bucket}/{key}" in details, (key, details)
    assert OWNER_KEY not in details and "nested" not in details and "probes/2" not in details


# ---- 6. a failed init gives its claim back -------------------------------------------------------------------


def test_a_failed_init_gives_back_its_prefix_and_its_retry_takes_it(
    seaweed: Seaweed, credentials: None, raw: Any, bucket: str, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    assert _init(seaweed, first, bucket, "--prefix", "station1").returncode == 0
    owner = raw.get_object(Bucket=bucket, Key=f"station1/{OWNER_KEY}")["Body"].read()
    arch = tmp_path / "second"
    copy = (
        "--replica",
        "s3",
        "--replica-option",
        f"bucket={bucket}",
        "--replica-option",
        f"endpoint={seaweed.endpoint}",
    )
    # The second copy's prefix is the first archive's: refused, after the first copy's prefix was claimed.
    failed = _init(seaweed, arch, bucket, "--prefix", "station2", *copy, "--replica-option", "prefix=station1")
    assert failed.returncode != 0 and "belongs to archive" in failed.stderr.decode()
    assert not arch.exists() and f"station2/{OWNER_KEY}" not in _keys(raw, bucket, "station2/")  # given back
    retried = _init(seaweed, arch, bucket, "--prefix", "station2", *copy, "--replica-option", "prefix=station2-copy")
    assert retried.returncode == 0, retried.stderr.decode()
    assert raw.get_object(Bucket=bucket, Key=f"station1/{OWNER_KEY}")["Body"].read() == owner  # never taken
    assert _findings(arch) == (0, set())


# ---- 5. a storage check is ledgered and reported -------------------------------------------------------------


def _report(arch: Path, out: Path, form: str = "json") -> str:
    done = run_cli("report", arch, "--format", form, "--out", out, "--lang", "en")
    assert done.returncode == 0, done.stderr.decode()
    return out.read_text()


def test_a_storage_check_is_a_ledger_entry_and_the_report_shows_the_latest(
    seaweed: Seaweed, credentials: None, bucket: str, tmp_path: Path
) -> None:
    arch = tmp_path / "archive"
    assert _init(seaweed, arch, bucket).returncode == 0
    never = json.loads(_report(arch, tmp_path / "never.json"))
    assert never["integrity"]["storage_check"] is None
    assert "the storage was never checked" in _report(arch, tmp_path / "never.html", "html")

    checked = run_cli("storage", "check", arch, "--json")
    assert checked.returncode == 1  # one guarantee missing on this server (the archive's identity lifts a hold)
    said = json.loads(checked.stdout)
    (entries,) = catalog_rows(arch, "SELECT seq, entry FROM ledger WHERE type = 'storage_check'")
    entry = json.loads(entries[1])
    assert entries[0] == said["ledger_index"] and isinstance(entry["by"], str) and entry["by"]
    ((copy,),) = [entry["copies"]]
    assert copy["storage"] == f"s3://{bucket}/" and copy["backend"] == "s3"
    assert [g["name"] for g in copy["guarantees"] if not g["held"]] == said["missing"]
    assert said["missing"] == ["legal hold kept from the archive's own identity"]

    report = json.loads(_report(arch, tmp_path / "checked.json"))
    shown = report["integrity"]["storage_check"]
    assert shown["ledger_index"] == said["ledger_index"] and shown["by"] == entry["by"]
    assert shown["copies"] == [
        {"copy": "first", "storage": f"s3://{bucket}/", "backend": "s3", "missing": said["missing"]}
    ]
    page = _report(arch, tmp_path / "checked.html", "html")
    assert "Latest storage check" in page and "missing legal hold kept from the archive" in page
    assert _findings(arch) == (0, set())  # the ledger with its new entry verifies, the catalog replays


def test_a_purge_is_refused_whole_naming_a_forged_version_its_forger_locked(
    open_store: Any, spool: Any, raw: Any
) -> None:
    """The evidence's retention is over, but someone wrote a version over it and locked that one: nothing is
    deleted, and the refusal names the version that stops it."""
    store = open_store(owner="archive-p")
    item = spool(b"evidence", retain_until_ns=time.time_ns() + 2 * 10**9)
    assert store.put_many([item]) == [True]
    key = store.key(item.digest)
    forged = raw.put_object(Bucket=store.bucket, Key=key, Body=b"forged")["VersionId"]
    raw.put_object_retention(
        Bucket=store.bucket,
        Key=key,
        VersionId=forged,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(minutes=5)},
    )
    time.sleep(2.5)
    with pytest.raises(StoreError, match=rf"\(version {forged} of 2\): retained until .*: not purged"):
        store.purge(item.digest)
    assert len(raw.list_object_versions(Bucket=store.bucket, Prefix=key)["Versions"]) == 2  # nothing deleted


def test_a_failed_init_gives_back_a_second_copys_folder_too(
    seaweed: Seaweed, credentials: None, bucket: str, tmp_path: Path
) -> None:
    assert _init(seaweed, tmp_path / "first", bucket, "--prefix", "taken").returncode == 0
    copy = tmp_path / "disk2" / "copy"
    arch = tmp_path / "second"
    local = ("--replica", "local", "--replica-option", f"location={copy}")
    failed = _init(seaweed, arch, bucket, "--prefix", "taken", *local)  # the first copy's prefix is another's
    assert failed.returncode != 0 and "belongs to archive" in failed.stderr.decode()
    assert not (copy / "custodes-archive.txt").exists() and not arch.exists()
    retried = _init(seaweed, arch, bucket, "--prefix", "mine", *local)
    assert retried.returncode == 0, retried.stderr.decode()
    assert (copy / "custodes-archive.txt").read_text().endswith("/replica")
