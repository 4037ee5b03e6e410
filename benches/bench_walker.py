"""The box walker on hostile files of growing size: time and memory must grow no
faster than the bytes (issue 10: two million empty `trak` boxes once took 55 s
and 5.6 GB).

    python benches/bench_walker.py [--rounds 5] [--scale 1.0]

Builds, in a temporary folder, two shapes at 1x, 1/10x and 1/100x of two
million boxes (16 MB at 1x):

* ``traks``: the issue's file, ``moov`` holding N empty ``trak`` boxes. The
  walker reads the whole ``moov`` and stops at its caps (1024 tracks, 100,000
  boxes per parent) with findings.
* ``walked``: N empty ``free`` boxes inside 40 tracks, under every cap, so the
  walker visits every box: this row shows the walk itself is linear.

Times ``custodes probe --json`` per file (median of ``--rounds``, a fresh
process each, so interpreter start is included) and the peak RSS of that
process, next to ``ffprobe`` on the same file; and the walker alone
(``custodes._core.probe_files`` in this process, median), whose time per MB
is the linearity to look at: the CLI figure is mostly interpreter start. The RSS comes from GNU
``/usr/bin/time``: a child's own ``wait4`` figure would include this script's
memory, which Linux carries into the child's peak across fork and exec. Exits non-zero when
a probe's exit code is not the expected 1 (findings) or the expected finding
is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from custodes import _core

CUSTODES = [sys.executable, "-m", "custodes"]
FTYP = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 0, b"isom")


def box(typ: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def traks_file(path: Path, n: int) -> str:
    path.write_bytes(FTYP + box(b"moov", box(b"trak") * n))
    return "too_many_tracks"


def walked_file(path: Path, n: int) -> str:
    per = n // 40
    trak = box(b"trak", box(b"free") * per)
    path.write_bytes(FTYP + box(b"moov", trak * 40))
    return "clock_unset"  # no malformed finding: 40 tracks of no samples and no time


GNU_TIME = "/usr/bin/time"


def run(cmd: list[str]) -> tuple[float, int, int, bytes]:
    """Wall seconds, peak RSS (KiB), exit code and stdout of one process."""
    with tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        p = subprocess.run(
            [GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        secs = time.perf_counter() - t
        return secs, int(rss.read().split()[-1]), p.returncode, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the box counts (2e6 at 1.0)")
    args = ap.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} (GNU time) is needed for the peak RSS of each run: apt-get install time")
    ffprobe = shutil.which("ffprobe")
    ok = True
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for shape, make in (("traks", traks_file), ("walked", walked_file)):
            for div in (100, 10, 1):
                n = int(2_000_000 * args.scale) // div
                f = Path(d) / f"{shape}-{n}.mp4"
                expected = make(f, n)
                mb = f.stat().st_size / 1e6
                times, rss = [], 0
                for _ in range(args.rounds):
                    secs, kib, code, out = run([*CUSTODES, "probe", "--json", str(f)])
                    times.append(secs)
                    rss = max(rss, kib)
                    kinds = {x.get("evidence", {}).get("problem", x["kind"]) for x in json.loads(out)["findings"]}
                    if code != 1 or expected not in kinds:
                        print(
                            f"FAIL {f.name}: exit {code}, findings {sorted(kinds)} (expected 1 with {expected})",
                            file=sys.stderr,
                        )
                        ok = False
                walker = []
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    _core.probe_files([str(f)])
                    walker.append(time.perf_counter() - t)
                wmed = statistics.median(walker)
                peer = ""
                if ffprobe:
                    secs, kib, code, _ = run([ffprobe, "-v", "error", "-show_format", str(f)])
                    peer = f"{secs:.2f} s / {kib / 1024:.0f} MiB / exit {code}"
                med = statistics.median(times)
                rows.append((shape, n, mb, med, rss / 1024, wmed, peer))
    print(
        f"{'shape':<7} {'boxes':>9} {'MB':>6} {'CLI s':>7} {'CLI RSS MiB':>12} {'walker ms':>10} "
        f"{'walker ms/MB':>13}   ffprobe"
    )
    for shape, n, mb, med, rss_mib, wmed, peer in rows:
        print(
            f"{shape:<7} {n:>9} {mb:>6.2f} {med:>7.3f} {rss_mib:>12.1f} {wmed * 1e3:>10.1f} "
            f"{wmed * 1e3 / mb:>13.2f}   {peer}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
