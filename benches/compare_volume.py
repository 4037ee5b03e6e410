#!/usr/bin/env python3
"""Reading a device volume of many small files, and probing one file, as whole processes.

1. ``custodes volume --driver generic --json VOL`` on volumes of 10^3, 10^4 and
   10^5 files of 1 KiB (made once under /tmp, deleted at the end): seconds,
   time per file at each size and the ratio of the slowest to the fastest per
   file (target: within 1.5x, so reading is linear in the file count; 10^5
   files under 5 s), peak RSS, and in the same run the floor of listing a
   volume: ``find VOL -type f -printf '%s %p\\n' | sort`` (one stat per file
   and a sort, what any reader must do).
2. ``custodes probe FILE --json`` against ``ffprobe -v error -show_format
   -show_streams -of json FILE`` on one real file from tests/data, whole
   process each, median of ``--probe-rounds`` (target: faster than ffprobe).

A volume is what a device leaves: clips, photos, audio and logs, a thousand
to a folder (``DCIM/100MEDIA`` ...). The files are 1 KiB of filler, so every
clip and recording is a finding; that is the point: the work per file is the
whole path (walk, probe, contract check, findings, JSON) with no file big
enough to hide it. Every run is checked: the exit code (1: the filler files
are findings), and that the JSON names every file exactly once (a segment or
a finding), as ``find`` lists them.

Python runs with byte-code caching on (as an installed package has it), in a
cache folder of its own, warmed before timing.

    .venv/bin/python benches/compare_volume.py [--sizes 1000,10000,100000] [--rounds 3] [--probe-rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_FILE = ROOT / "tests" / "data" / "footage" / "gopro" / "karma.mp4"
#: One of each a device writes, in turn.
NAMES = ("CLIP{:06d}.MP4", "IMG{:06d}.JPG", "REC{:06d}.WAV", "LOG{:06d}.TXT")
PER_FOLDER = 1000
FILLER = bytes(range(256)) * 4  # 1 KiB


def make_volume(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        folder = root / "DCIM" / f"{100 + i // PER_FOLDER}MEDIA"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / NAMES[i % len(NAMES)].format(i)).write_bytes(FILLER)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = str(CACHE)
    return e


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds: what a busy neighbour on a shared machine changes least
    rc: int
    rss: int  # peak, KiB
    out: bytes


def timed(cmd: list[str], **kw: object) -> Run:
    """One whole process."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        rc = os.waitstatus_to_exitcode(status)
        err = p.stderr.read() if p.stderr else b""
        if p.stderr:
            p.stderr.close()
        out.seek(0)
        text = out.read() + (b"" if rc in (0, 1) else err)
        return Run(wall, usage.ru_utime + usage.ru_stime, rc, usage.ru_maxrss, text)


def check_volume(doc: dict, listed: set[str], n: int) -> None:
    """Every file exactly once: as a segment or in a finding, and nothing else."""
    paths = [s["path"] for s in doc["segments"]]
    seen = set(paths)
    paths += [f["path"] for f in doc["findings"] if f["path"] not in seen]
    if len(paths) != n or set(paths) != listed:
        raise SystemExit(f"custodes volume named {len(paths)} files ({len(set(paths))} distinct), find {n}")


@dataclass
class Row:
    files: int
    wall: float  # custodes, median
    cpu: float
    peer: float  # find | sort, median
    rss: int  # KiB, the largest


def bench_volume(base: Path, sizes: list[int], rounds: int) -> list[Row]:
    """One row per size; the first, an empty volume, is the start-up."""
    rows = []
    for n in [0, *sizes]:
        vol = base / f"vol{n}"
        make_volume(vol, n)
        custodes = [sys.executable, "-m", "custodes", "volume", "--driver", "generic", "--json", str(vol)]
        find = ["sh", "-c", 'find "$1" -type f -printf "%s %p\\n" | LC_ALL=C sort', "sh", str(vol)]
        timed(custodes, env=env())  # warm the page cache and the byte-code cache
        ours, peers = [], []
        for _ in range(rounds):
            run = timed(custodes, env=env())
            if run.rc != (1 if n else 0):  # filler files are findings; an empty volume has none
                raise SystemExit(f"custodes volume exit {run.rc} on {n} files: {run.out[-500:]!r}")
            ours.append(run)
            listing = timed(find)
            if listing.rc != 0:
                raise SystemExit(f"find exit {listing.rc}")
            peers.append(listing.wall)
        listed = {line.split(" ", 1)[1] for line in listing.out.decode().splitlines()}
        if len(listed) != n:
            raise SystemExit(f"find listed {len(listed)} files, made {n}")
        check_volume(json.loads(ours[-1].out), listed, n)
        rows.append(
            Row(
                n,
                statistics.median(r.wall for r in ours),
                statistics.median(r.cpu for r in ours),
                statistics.median(peers),
                max(r.rss for r in ours),
            )
        )
        shutil.rmtree(vol)
    return rows


def bench_probe(file: Path, rounds: int) -> tuple[list[Run], list[Run]]:
    custodes = [sys.executable, "-m", "custodes", "probe", str(file), "--json"]
    ffprobe = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(file)]
    ours, peers = [], []
    for cmd in (custodes, ffprobe):  # warm
        timed(cmd, env=env())
    for _ in range(rounds):
        run = timed(custodes, env=env())
        if run.rc != 0 or json.loads(run.out)["path"] != str(file):
            raise SystemExit(f"custodes probe exit {run.rc}: {run.out[-500:]!r}")
        ours.append(run)
        run = timed(ffprobe)
        if run.rc != 0 or not json.loads(run.out)["streams"]:
            raise SystemExit(f"ffprobe exit {run.rc}")
        peers.append(run)
    return ours, peers


def report(start: Row, rows: list[Row]) -> None:
    print(f"start-up (an empty volume): {start.wall:.3f} s wall, {start.cpu:.3f} s CPU, {start.rss // 1024} MiB")
    print("us/file: whole process, and net of the start-up; CPU: user + system of the whole process")
    print(
        f"\n{'files':>8} {'custodes s':>11} {'us/file':>8} {'net':>6} {'CPU s':>7} {'CPU net us/file':>15} "
        f"{'find|sort s':>12} {'ratio':>6} {'peak RSS':>9}"
    )
    for r in rows:
        print(
            f"{r.files:>8} {r.wall:>11.3f} {r.wall / r.files * 1e6:>8.1f} "
            f"{(r.wall - start.wall) / r.files * 1e6:>6.1f} "
            f"{r.cpu:>7.2f} {(r.cpu - start.cpu) / r.files * 1e6:>15.1f} {r.peer:>12.3f} {r.wall / r.peer:>5.1f}x "
            f"{r.rss // 1024:>6} MiB"
        )
    for what, per_file in (
        ("whole process", [r.wall / r.files for r in rows]),
        ("net of start-up", [(r.wall - start.wall) / r.files for r in rows]),
        ("CPU net of start-up", [(r.cpu - start.cpu) / r.files for r in rows]),
    ):
        print(f"time per file, slowest / fastest ({what}): {max(per_file) / min(per_file):.2f}x (target <= 1.5x)")
    print(f"largest volume ({rows[-1].files} files): {rows[-1].wall:.2f} s wall (target for 10^5: < 5 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="file counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="runs per size (median)")
    ap.add_argument("--probe-rounds", type=int, default=15, help="runs of each probe (median; at least 10)")
    ap.add_argument("--probe-file", type=Path, default=PROBE_FILE)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    global CACHE
    base = Path(tempfile.mkdtemp(prefix="custodes-bench-volume-", dir="/tmp"))
    CACHE = base / "pycache"
    try:
        print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; medians of {args.rounds}")
        start, *rows = bench_volume(base, sizes, args.rounds)
        report(start, rows)
        rounds = max(args.probe_rounds, 10)
        ours, peers = bench_probe(args.probe_file, rounds)
        print(f"\nprobe {args.probe_file.name}, whole process, median of {rounds}:")
        for what, unit in (("wall", "wall"), ("CPU", "cpu")):
            a = statistics.median(getattr(r, unit) for r in ours)
            b = statistics.median(getattr(r, unit) for r in peers)
            print(
                f"  {what:>4}: custodes probe --json {a * 1000:.0f} ms, ffprobe {b * 1000:.0f} ms: {b / a:.2f}x ffprobe"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


CACHE = Path()

if __name__ == "__main__":
    main()
