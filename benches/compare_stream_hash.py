"""The core's incremental hasher (``custodes._core.StreamHasher``, what verify and ingest's read-back use for an
object read from any backend as a stream) against the batch hasher on the same file (what they use for a local
file) and against the peers on that file: ``openssl dgst -sha256`` (SHA-NI) and ``b3sum``.

    python benches/compare_stream_hash.py [--size-mib 1024] [--repeat 5] [--chunk-mib 8]

The file is written once and read from the page cache every time (warm), so the figures compare hashing, not the
disk. Medians of ``--repeat``; the ratio is the stream's throughput over the batch hasher's and over the peer's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from custodes import _core
from custodes.hashing import hash_files


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stream(path: Path, algorithms: list[str], chunk: int) -> str:
    hasher = _core.StreamHasher(algorithms)
    with open(path, "rb", buffering=0) as f:
        while data := f.read(chunk):
            hasher.update(data)
    return hasher.finish()[1][0].hex()


def _in_memory(chunks: list[bytes], algorithms: list[str]) -> None:
    hasher = _core.StreamHasher(algorithms)
    for data in chunks:
        hasher.update(data)
    hasher.finish()


def _batch(path: Path, algorithms: list[str]) -> str:
    (r,) = hash_files([path], tuple(algorithms))
    return r.digests[algorithms[0]]


def _peer(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.split("= ")[-1].strip() if "= " in out else out.split()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk-mib", type=int, default=8)
    args = ap.parse_args()
    chunk = args.chunk_mib << 20
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.bin"
        with open(path, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        mib = args.size_mib
        rows = []
        for algorithms, peer in (
            (["sha256"], ["openssl", "dgst", "-sha256", str(path)]),
            (["blake3"], ["b3sum", "--no-names", str(path)]),
            (["sha256", "blake3", "sm3", "md5"], None),
        ):
            streamed = _stream(path, algorithms, chunk)
            assert streamed == _batch(path, algorithms), "the stream and the batch hasher disagree"
            if peer is not None:
                assert streamed == _peer(peer), f"{peer[0]} disagrees"
            s = _median_seconds(lambda a=algorithms: _stream(path, a, chunk), args.repeat)
            chunks = [os.urandom(chunk)] * max(1, (mib << 20) // chunk)  # the same bytes, no read in the way
            m = _median_seconds(lambda a=algorithms, c=chunks: _in_memory(c, a), args.repeat)
            b = _median_seconds(lambda a=algorithms: _batch(path, a), args.repeat)
            p = None if peer is None else _median_seconds(lambda argv=peer: _peer(argv), args.repeat)
            rows.append(("+".join(algorithms), mib / s, mib / m, mib / b, None if p is None else mib / p))
        name = "openssl/b3sum"
        print(f"{mib} MiB, warm, chunks of {args.chunk_mib} MiB, median of {args.repeat}")
        # "stream": read() of the file in chunks, each hashed (one after the other, as a GET's body is);
        # "in memory": the same hasher on chunks already in memory, the hashing alone.
        print(f"{'algorithms':<26}{'stream MiB/s':>14}{'in memory':>11}{'batch MiB/s':>13}{name + ' MiB/s':>20}"
              f"{'stream/batch':>14}{'memory/batch':>14}{'stream/peer':>13}")  # fmt: skip
        for algo, s, m, b, p in rows:
            peer_text = "" if p is None else f"{p:.0f}"
            ratio = "" if p is None else f"{s / p:.2f}x"
            print(f"{algo:<26}{s:>14.0f}{m:>11.0f}{b:>13.0f}{peer_text:>20}{s / b:>13.2f}x{m / b:>13.2f}x{ratio:>13}")


if __name__ == "__main__":
    main()
