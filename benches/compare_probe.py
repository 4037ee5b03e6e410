#!/usr/bin/env python3
"""Container probing throughput: custodes against ffprobe and PyAV, in one run.

Probes every MP4/MOV file of tests/data/footage (real cameras and phones)
``--rounds`` times over and prints files/s and the ratios. ffprobe runs as a
subprocess per file, as a tool that shells out to it would; PyAV opens each
file in-process (libavformat) and reads the same facts: streams, frame
counts, durations, creation time.

    .venv/bin/python benches/compare_probe.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av

import custodes

FOOTAGE = Path(__file__).parent.parent / "tests" / "data" / "footage"


def ffprobe(files: list[Path]) -> None:
    for f in files:
        subprocess.run(["ffprobe", "-v", "quiet", "-show_format", "-show_streams", "-of", "json", str(f)],
                       stdout=subprocess.DEVNULL, check=False)


def pyav(files: list[Path]) -> None:
    for f in files:
        try:
            with av.open(str(f)) as c:
                _ = [(s.type, s.frames, s.duration) for s in c.streams], c.duration, c.metadata.get("creation_time")
        except av.error.FFmpegError:
            pass  # the broken files: ffmpeg refuses some of them


def median_rate(fn: Callable[[list[Path]], None], files: list[Path], rounds: int, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn(files)
        times.append(time.perf_counter() - t0)
    return len(files) * rounds / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="passes over the footage per timing")
    a = ap.parse_args()
    files = sorted(p for p in FOOTAGE.rglob("*") if p.suffix.lower() in (".mp4", ".mov", ".m4b"))
    print(f"{len(files)} real footage files, {a.rounds} passes, median of 3\n")
    rates = {
        "custodes.probe_many (parallel)": median_rate(lambda fs: custodes.probe_many(fs), files, a.rounds),
        "custodes.probe (one by one)": median_rate(lambda fs: [custodes.probe(f) for f in fs], files, a.rounds),
        "PyAV (in-process libavformat)": median_rate(pyav, files, a.rounds),
        "ffprobe (subprocess)": median_rate(ffprobe, files, max(1, a.rounds // 10)),
    }
    for name, r in rates.items():
        print(f"  {name:34} {r:10.0f} files/s")
    ours = rates["custodes.probe_many (parallel)"]
    single = rates["custodes.probe (one by one)"]
    print("\nratios (custodes files/s over peer files/s):")
    for name in ("PyAV (in-process libavformat)", "ffprobe (subprocess)"):
        print(f"  vs {name:32} parallel {ours / rates[name]:7.1f}x   one by one {single / rates[name]:7.1f}x")


if __name__ == "__main__":
    main()
