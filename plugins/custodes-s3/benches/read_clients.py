"""Streaming GETs through boto3 (the backend's client) and obstore, side by side, against a SeaweedFS started for
the run: throughput and the client's CPU per GiB, one reader and four. Why the backend reads with boto3 (README.md).

    PYTHONPATH=python:plugins/custodes-s3/src python plugins/custodes-s3/benches/read_clients.py [OBJECTS] [MiB]

Needs obstore (``pip install obstore``); prints one line per client and reader count, then the ratios.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
from obstore.store import S3Store as ObStore

from custodes_s3 import testing

CHUNK = 8 * 2**20


def main(objects: int = 4, mib: int = 32, rounds: int = 2) -> None:
    with tempfile.TemporaryDirectory(prefix="custodes-s3-bench-") as tmp, testing.seaweed_server(Path(tmp)) as server:
        testing.make_bucket(server, "bench", lock=False)
        s3 = testing.client(server)
        data = os.urandom(mib * 2**20)
        keys = [f"o{i}" for i in range(objects)]
        for key in keys:
            s3.put_object(Bucket="bench", Key=key, Body=data)
        ob = ObStore(
            "bench",
            endpoint=server.endpoint,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

        def boto3_read(key: str) -> int:
            body, n = s3.get_object(Bucket="bench", Key=key)["Body"], 0
            while chunk := body.read(CHUNK):
                n += len(chunk)
            return n

        def obstore_read(key: str) -> int:
            return sum(len(chunk) for chunk in obstore.get(ob, key).stream(CHUNK))

        clients: dict[str, Callable[[str], int]] = {"boto3": boto3_read, "obstore": obstore_read}
        best: dict[tuple[str, int], tuple[float, float]] = {}
        for _ in range(rounds):
            for name, read in clients.items():
                for readers in (1, 4):
                    wall, cpu = time.perf_counter(), time.process_time()
                    with ThreadPoolExecutor(readers) as pool:
                        total = sum(pool.map(read, keys * 2))
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    gib = total / 2**30
                    rate, cost = total / 2**20 / wall, cpu / gib
                    previous = best.get((name, readers))
                    if previous is None or rate > previous[0]:
                        best[(name, readers)] = (rate, cost)
        for (name, readers), (rate, cost) in sorted(best.items()):
            print(f"{name:8} {readers} reader(s): {rate:7.0f} MiB/s, client CPU {cost:.2f} s/GiB")
        for readers in (1, 4):
            b, o = best[("boto3", readers)], best[("obstore", readers)]
            print(f"{readers} reader(s): boto3/obstore throughput {b[0] / o[0]:.2f}x, CPU per GiB {b[1] / o[1]:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
