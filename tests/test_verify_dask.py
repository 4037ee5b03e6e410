"""Verification on a Dask cluster (issue 16): the same findings as a local verify, workers that die, and
workers whose answers are checked rather than trusted."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import init_archive, open_archive
from custodes.ingest import ingest
from custodes.plugins import Executor, ExecutorOptions, ShardFn
from custodes.verify import Rehashed, Schedule, verify
from helpers import BACKENDS, FOOTAGE, TAMPERS, run_cli, set_policy


def tampered(tmp_path: Path, names: Iterable[str], big: int = 0, storage: dict[str, str] | None = None) -> Path:
    """An archive of real footage and random files (and ``big`` files of 32 MiB), damaged by several rows of the
    tamper matrix at once; on the ``storage`` given (None: local)."""
    arch = tmp_path / "archive"
    a = init_archive(arch, storage=storage)
    vol = tmp_path / "BWC0001" / "DCIM"
    vol.mkdir(parents=True)
    for src in (FOOTAGE / "encoders" / "androidx-sample.mp4", FOOTAGE / "phones" / "bt601.mov"):
        shutil.copy(src, vol / src.name)
    for i in range(30):
        (vol / f"note{i:02}.bin").write_bytes(os.urandom(500 + 131 * i))
    for i in range(big):
        (vol / f"long{i:02}.bin").write_bytes(os.urandom(32 << 20))
    ingest(a, vol.parent, driver="generic")
    for name in names:
        TAMPERS[name][0](a, tmp_path)
    a.close()
    return arch


def findings(report: dict) -> list[tuple[str, str | None, str]]:
    return sorted((f["kind"], f["object"], f["message"]) for f in report["findings"])


def test_a_verify_on_the_cli_cluster_finds_what_a_local_verify_finds(tmp_path: Path, dask_cluster: Any) -> None:
    arch = tampered(tmp_path, ["bit_flip_middle", "stray_file", "catalog_row_edited_to_match"])
    local = run_cli("verify", arch, "--json")
    on_dask = run_cli(
        "verify", arch, "--json", "--executor", "dask", "--scheduler", dask_cluster.address, "--shard-size", "4"
    )
    assert local.returncode == on_dask.returncode == 1, on_dask.stderr
    here, there = json.loads(local.stdout), json.loads(on_dask.stdout)
    assert findings(here) == findings(there)
    # (the catalog edit makes the flipped object's rows match it: the replay finds them, the store walk a miss)
    assert {kind for kind, _, _ in findings(here)} == {"missing", "unexpected", "ledger_mismatch"}
    assert here["checked"] == there["checked"] == 32 and there["run"]["executor"] == "dask"
    # An intact archive is intact on the cluster too, and every object was re-hashed there.
    clean = tampered(tmp_path / "clean", [])
    out = run_cli("verify", clean, "--json", "--executor", "dask", "--scheduler", dask_cluster.address)
    assert out.returncode == 0 and json.loads(out.stdout)["checked"] == 32, out.stderr
    # With --algo the workers re-hash that digest alone, and the spot checks here compare it alone: no fault.
    flipped = tampered(tmp_path / "flipped", ["bit_flip_middle"])
    args = ("--executor", "dask", "--scheduler", dask_cluster.address, "--shard-size", "4", "--algo", "blake3")
    out = run_cli("verify", flipped, "--json", *args)
    there = json.loads(out.stdout)
    assert out.returncode == 1 and there["algorithms"] == ["blake3"], out.stderr
    assert {kind for kind, _, _ in findings(there)} == {"modified"} and there["checked"] == 32


def test_a_worker_killed_mid_verify_has_its_shards_run_again(tmp_path: Path, dask_cluster: Any) -> None:
    import subprocess
    import sys

    from distributed import Client

    arch = tampered(tmp_path, [], big=8)
    victim = dask_cluster.worker_pids[0]
    address = next(a for a, p in dask_cluster.workers.items() if p == victim)
    with Client(dask_cluster.address, timeout=10, set_as_default=False) as client:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "custodes",
                "verify",
                str(arch),
                "--json",
                "--executor",
                "dask",
                "--scheduler",
                dask_cluster.address,
                "--shard-size",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # One shard per object, eight of them 32 MiB: kill the worker as soon as the scheduler has given it a
        # shard, while the verify still runs.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not client.processing().get(address):
            time.sleep(0.01)
        assert proc.poll() is None, "the verify ended before a worker could be killed mid-run"
        dask_cluster.kill_worker(victim)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] and report["checked"] == 40 and report["run"]["run_objects"] == 40


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_a_local_cluster_of_workers_is_started_when_no_scheduler_is_given(
    tmp_path: Path, storage_options: dict[str, str] | None
) -> None:
    # On a bucket, each worker opens the store from the shard's spec (credentials from its environment).
    arch = tampered(tmp_path, ["deleted"], storage=storage_options)
    out = run_cli("verify", arch, "--json", "--executor", "dask", "--workers", "2", "--shard-size", "8")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert [f["kind"] for f in report["findings"]] == ["missing"] and report["checked"] == 32


# ---- remote workers are checked, not trusted (an executor plugin through the public contract) ----------------


def lying(fn: ShardFn, shards: Iterable[Any], options: ExecutorOptions) -> Iterator[tuple[int, Any]]:
    """A remote executor whose worker gets one digest wrong and drops an object from another shard."""
    for index, shard in enumerate(shards):
        result = fn(shard, 1)
        if index == 0:
            first = result[0]
            result[0] = Rehashed(first.sha256, first.size, {**first.digests, "sha256": "0" * 64})
        if index == 1:
            result = result[1:]
        yield index, result


@pytest.fixture
def lying_executor(monkeypatch: pytest.MonkeyPatch) -> str:
    from custodes.plugins import plugin_manager

    registry = plugin_manager().executors
    monkeypatch.setitem(registry._records, "liar", ("test", Executor("liar", "lies", lying, remote=True)))  # noqa: SLF001
    return "liar"


def test_a_worker_that_lies_is_caught_and_the_evidence_is_not_blamed(tmp_path: Path, lying_executor: str) -> None:
    arch = tampered(tmp_path, [])
    with open_archive(arch) as a:
        result = verify(a, schedule=Schedule(executor=lying_executor, shard_objects=5))
    kinds = [f.kind for f in result.findings]
    assert kinds == ["executor_fault", "executor_fault"], result.findings
    # The lie is caught either way: the spot check of a random object of the shard, or the bad digest re-hashed.
    assert re.search("re-hashed here, the object is intact|otherwise than it reads here", result.findings[0].message)
    assert "does not match its shard of 5 objects" in result.findings[1].message
    assert result.checked == 32 and not result.ok  # a faulty worker fails the run, though no object is bad


SEEN: list[int] = []


def counting(fn: ShardFn, shards: Iterable[Any], options: ExecutorOptions) -> Iterator[tuple[int, Any]]:
    """A remote executor that notes how many objects each shard holds."""
    for index, shard in enumerate(shards):
        SEEN.append(len(shard.objects))
        yield index, fn(shard, 1)


def test_a_cluster_gets_shards_of_at_most_256_mib_so_big_files_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from custodes.plugins import plugin_manager

    registry = plugin_manager().executors
    monkeypatch.setitem(registry._records, "counting", ("test", Executor("counting", "", counting)))  # noqa: SLF001
    arch = tampered(tmp_path, [], big=9)  # 9 x 32 MiB beside the small files: more than one cluster shard
    SEEN.clear()
    with open_archive(arch) as a:
        assert verify(a, schedule=Schedule(executor="counting")).ok
    assert len(SEEN) >= 2 and sum(SEEN) == 41
    SEEN.clear()
    with open_archive(arch) as a:  # the local executor keeps them together: its shard runs on all its threads
        assert verify(a, schedule=Schedule(executor="counting", shard_bytes=4 << 30)).ok
    assert SEEN == [41]


def all_good(fn: ShardFn, shards: Iterable[Any], options: ExecutorOptions) -> Iterator[tuple[int, Any]]:
    """A remote executor whose worker reads another, undamaged copy of the store (a stale mount): every object
    comes back with the digests the catalog recorded."""
    from custodes.archive import open_archive as reopen

    for index, shard in enumerate(shards):
        with reopen(shard.store.location) as a:
            rows = {sha: (size, json.loads(d)) for sha, size, d, *_ in a.catalog.objects.walk()}
        yield index, [Rehashed(sha, rows[sha][0], rows[sha][1]) for sha in shard.objects]


def test_a_worker_that_reads_another_copy_is_caught_by_the_spot_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from custodes.plugins import plugin_manager

    registry = plugin_manager().executors
    monkeypatch.setitem(registry._records, "stale", ("test", Executor("stale", "", all_good)))  # noqa: SLF001
    arch = tampered(tmp_path, ["bit_flip_middle"])
    with open_archive(
        arch
    ) as a:  # one object per shard: the first (the lowest digest, the damaged one) is spot-checked
        result = verify(a, schedule=Schedule(executor="stale", shard_objects=1))
    kinds = sorted(f.kind for f in result.findings)
    assert kinds == ["executor_fault", "modified"] and not result.ok


def test_an_older_object_changed_is_modified_on_a_cluster_with_algo_too(tmp_path: Path, dask_cluster: Any) -> None:
    """An object ingested before the policy recorded BLAKE3, changed, verified with --algo blake3 on a cluster:
    re-hashed here with its SHA-256 (it has no BLAKE3 record) and found, then "confirmed" here with BLAKE3 alone,
    which compared nothing: called intact, an executor_fault, and stamped verified (a hostile review)."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch, "--algo", "sha256").returncode == 0
    vol = tmp_path / "CAM7" / "DCIM"
    vol.mkdir(parents=True)
    (vol / "clip.bin").write_bytes(os.urandom(9000))
    assert run_cli("ingest", vol.parent, "--archive", arch, "--driver", "generic").returncode in (0, 1)
    text = (arch / "custodes.toml").read_text()
    assert set_policy(arch, text.replace('    "sha256",\n]', '    "sha256",\n    "blake3",\n]')).returncode == 0
    (obj,) = [p for p in (arch / "objects").rglob("*") if p.is_file()]
    obj.chmod(0o600)
    obj.write_bytes(b"X" + obj.read_bytes()[1:])
    obj.chmod(0o400)
    args = ("--executor", "dask", "--scheduler", dask_cluster.address, "--algo", "blake3")
    out = run_cli("verify", arch, "--json", *args)
    assert out.returncode == 1, out.stderr
    assert [(f["kind"], f["object"]) for f in json.loads(out.stdout)["findings"]] == [("modified", obj.name)]
    assert run_cli("verify", arch, "--older-than", "1").returncode == 1  # not stamped verified: re-hashed, found
