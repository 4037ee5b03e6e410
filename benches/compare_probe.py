#!/usr/bin/env python3
"""Container probing throughput: custodes against ffprobe and PyAV, in one run.

Probes every MP4/MOV file of tests/data/footage (real cameras and phones)
``--rounds`` times over and prints files/s and the ratios. ffprobe runs as a
subprocess per file, as a tool that shells out to it would, one at a time and
as ``xargs -P <cores>`` across the files; PyAV opens each file in-process
(libavformat) and reads the same facts: streams, frame counts, durations,
creation time. Threads are said on both sides: one-thread custodes is
compared with the one-process peers, all-cores custodes with ``xargs -P``.

Every peer run is checked: ffprobe and PyAV must fail on exactly the files
they are known not to read (the ``moov``-less broken file) and on no other,
so a broken peer is never timed unnoticed.

    .venv/bin/python benches/compare_probe.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av

import custodes

FOOTAGE = Path(__file__).parent.parent / "tests" / "data" / "footage"
#: Files libavformat cannot open at all ("moov atom not found"); every other file must probe.
PEER_UNREADABLE = {"sample_malformed_free_box.mp4"}
CORES = os.cpu_count() or 1
FFPROBE = ["ffprobe", "-v", "quiet", "-show_format", "-show_streams", "-of", "json"]


def _expect_failures(peer: str, failed: set[str]) -> None:
    if failed != PEER_UNREADABLE:
        raise SystemExit(
            f"{peer} failed on {sorted(failed)}, expected exactly {sorted(PEER_UNREADABLE)}: "
            "a broken peer must not be timed"
        )


def ffprobe(files: list[Path]) -> None:
    failed = {f.name for f in files if subprocess.run([*FFPROBE, str(f)], stdout=subprocess.DEVNULL).returncode != 0}
    _expect_failures("ffprobe", failed)


def ffprobe_xargs(files: list[Path]) -> None:
    """ffprobe on all cores, as a shell user would parallelise it; prints each failing name."""
    script = f'{" ".join(FFPROBE)} "$1" >/dev/null || echo "${{1##*/}}"'
    r = subprocess.run(
        ["xargs", "-0", "-P", str(CORES), "-n", "1", "sh", "-c", script, "sh"],
        input=b"\0".join(str(f).encode() for f in files),
        capture_output=True,
    )
    _expect_failures("ffprobe (xargs -P)", set(r.stdout.decode().split()))


def pyav(files: list[Path]) -> None:
    failed = set()
    for f in files:
        try:
            with av.open(str(f)) as c:
                _ = [(s.type, s.frames, s.duration) for s in c.streams], c.duration, c.metadata.get("creation_time")
        except av.error.FFmpegError:
            failed.add(f.name)
    _expect_failures("PyAV", failed)


def check_ours(results: list) -> None:
    bad = [r for r in results if not isinstance(r, custodes.MediaInfo)]
    if bad:
        raise SystemExit(f"custodes could not probe {bad}")


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
    print(f"{len(files)} real footage files, {a.rounds} passes, median of 3, {CORES} cores\n")
    parallel = f"custodes.probe_many ({CORES} threads)"
    single = "custodes.probe (1 thread, one by one)"
    rates = {
        parallel: median_rate(lambda fs: check_ours(custodes.probe_many(fs)), files, a.rounds),
        single: median_rate(lambda fs: check_ours([custodes.probe(f) for f in fs]), files, a.rounds),
        "PyAV (1 process)": median_rate(pyav, files, a.rounds),
        "ffprobe (1 process at a time)": median_rate(ffprobe, files, max(1, a.rounds // 10)),
        f"ffprobe (xargs -P {CORES})": median_rate(ffprobe_xargs, files, max(1, a.rounds // 10)),
    }
    for name, r in rates.items():
        print(f"  {name:40} {r:10.0f} files/s")
    print("\nratios, like for like (custodes files/s over peer files/s):")
    for name in ("PyAV (1 process)", "ffprobe (1 process at a time)"):
        print(f"  1 thread:  {single} vs {name:32} {rates[single] / rates[name]:7.1f}x")
    print(
        f"  {CORES} cores:   {parallel} vs ffprobe (xargs -P {CORES}) {' ' * 9}"
        f"{rates[parallel] / rates[f'ffprobe (xargs -P {CORES})']:7.1f}x"
    )


if __name__ == "__main__":
    main()
