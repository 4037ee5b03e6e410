"""Client CPU per S3 request: the s3 backend's GET and conditional PUT through botocore, and through its own
path (custodes_s3.wire: botocore's SigV4 signer, a urllib3 pool), on one real SeaweedFS of its own.

    PYTHONPATH=python:plugins/custodes-s3/src .venv/bin/python benches/s3_request_cpu.py [--objects 600]
        [--size-kib 100] [--threads 1,8] [--rounds 3]

Both paths are the store's own code (``S3Store._get`` read to its end, ``S3Store._create``,
``S3Store._retain_version``: PutObjectRetention, each later than the last), one store with the
direct path and one without (``wire=None``: every request through the boto3 client), on the same bucket; the
paths take turns, round after round, and the medians are printed. CPU is this process's (every thread's), so
the server's own work is not in it (that is the last column, from /proc); wall time is per request, divided by
the threads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from custodes.storage import Put
from custodes_s3 import S3Store, testing
from custodes_s3.store import _EXISTS


def server_cpu(pid: int) -> float:
    """The server process's CPU seconds so far (Linux: /proc), NaN where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(work: Any, jobs: list[Any], threads: int, server: int) -> tuple[float, float, float]:
    """Wall, client CPU and server CPU milliseconds per job."""
    t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu(server)
    if threads == 1:
        for job in jobs:
            work(job)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, jobs))
    wall, cpu, served = time.perf_counter() - t0, time.process_time() - c0, server_cpu(server) - s0
    return wall / len(jobs) * 1e3, cpu / len(jobs) * 1e3, served / len(jobs) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=600)
    parser.add_argument("--size-kib", type=int, default=100)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    thread_counts = [int(t) for t in a.threads.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="s3-request-cpu-") as folder,
        testing.seaweed_server(Path(folder) / "s3") as server,
    ):
        os.environ.update(server.environ())
        testing.make_bucket(server, "request-cpu")
        archive = Path(folder) / "archive"
        archive.mkdir()
        options = {"bucket": "request-cpu", "endpoint": server.endpoint, "prefix": "bench"}
        direct = S3Store.connect(archive, options)
        botocore = S3Store(archive, options, direct._s3)  # the same client, no direct path
        assert direct._wire is not None
        spool = Path(folder) / "spool"
        spool.mkdir()
        made = 0

        def new_items(n: int) -> list[Put]:
            nonlocal made
            items = []
            for _ in range(n):
                data = os.urandom(a.size_kib * 1024)
                path = spool / f"{made}"
                path.write_bytes(data)
                items.append(Put(path, len(data), {"sha256": hashlib.sha256(data).hexdigest()}))
                made += 1
            return items

        stored = new_items(a.objects)
        keys = [direct.key(item.digest) for item in stored]

        def create(item: Put) -> None:
            with open(item.file, "rb") as f:
                direct._create(f, direct.key(item.digest), item)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, stored))

        def get(store: S3Store) -> Any:
            def one(key: str) -> None:
                with store._get(key, None) as body:
                    while body.read(8 * 2**20):
                        pass

            return one

        def put(store: S3Store) -> Any:
            def one(item: Put) -> None:
                with open(item.file, "rb") as f:
                    assert store._create(f, store.key(item.digest), item) is not _EXISTS

            return one

        later = iter(range(time.time_ns() + 86400 * 10**9, 2**63, 10**9))  # each retention later than the last

        def retain(store: S3Store) -> Any:
            until = next(later)
            return lambda key: store._retain_version(key, None, until, None)

        results: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
        for r in range(a.rounds):
            order = [("direct", direct), ("botocore", botocore)]
            for name, store in order if r % 2 == 0 else order[::-1]:
                for threads in thread_counts:
                    got = measure(get(store), keys, threads, server.pid)
                    results.setdefault(("GET", name, threads), []).append(got)
                    fresh = new_items(a.objects)
                    got = measure(retain(store), keys, threads, server.pid)
                    results.setdefault(("RETAIN", name, threads), []).append(got)
                    results.setdefault(("PUT", name, threads), []).append(
                        measure(put(store), fresh, threads, server.pid)
                    )
                    for item in fresh:
                        item.file.unlink()
        print(f"{a.objects} objects of {a.size_kib} KiB, {a.rounds} rounds, medians; load {os.getloadavg()[0]:.1f}")
        print(f"{'request':<7} {'path':<9} {'threads':>7} {'wall ms/req':>12} {'CPU ms/req':>11} {'server CPU':>11}")
        for (what, name, threads), runs in sorted(results.items()):
            wall, cpu, served = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"{what:<7} {name:<9} {threads:>7} {wall:>12.3f} {cpu:>11.3f} {served:>11.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
