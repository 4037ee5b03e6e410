#!/usr/bin/env python3
"""``custodes hash`` on many small files and on one large file, against the fastest peer for each figure.

Many small files (default 20,000 x 4 KiB of random bytes in 200 folders): ``custodes hash --algo blake3``
against ``b3sum`` (one process given every path) and ``find | xargs -P<cores> b3sum``; ``custodes hash``
(sha256) against ``openssl dgst -sha256`` (SHA-NI; one process) and ``find | xargs -P<cores> openssl dgst
-sha256``, with Debian's ``sha256sum`` for reference. One large file (default 1 GiB, random): ``custodes
hash --algo blake3`` against ``b3sum`` (which maps the file and hashes it on every core) and sha256 against
``openssl dgst -sha256``, then the peak RSS of each side (the kernel's accounting of a fresh child).

Threads are said on both sides: ``-j1`` runs are compared with one-process peers, all-cores runs with
all-cores peers (``b3sum`` on one file is all-cores by itself). Every run's exit code is checked and its
output must have one line per file. Warm cache (every file is read once before timing); the median of
``--repeat`` rounds (default 5), each round running every tool once in turn, so that a load drifting over
minutes falls on all of them alike. Timings on a shared machine are noisy: compare the ratios. Python
runs with byte-code caching on, as an installed package has it.

    .venv/bin/python benches/compare_small_files.py [--files 20000] [--size 4096] [--big-mib 1024]

Targets (issue 14): >= 1.0x ``b3sum`` and >= 1.0x ``xargs -P2 openssl dgst -sha256`` on the small files;
>= 0.9x ``b3sum`` on the 1 GiB file with peak RSS under 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB  # noqa: E402
from _measure import as_installed  # noqa: E402
from compare_hash import command, peak_rss_mib  # noqa: E402

CUSTODES = [sys.executable, "-m", "custodes"]
PER_FOLDER = 100


def small_corpus(root: Path, files: int, size: int) -> tuple[Path, list[Path]]:
    """``files`` files of ``size`` random bytes, 100 to a folder, made once and reused; in walk order."""
    data = root / "small"
    stamp = root / "small.json"
    spec = {"files": files, "size": size}
    if not (stamp.exists() and json.loads(stamp.read_text()) == spec):
        subprocess.run(["rm", "-rf", str(data)], check=True)
        for k in range(files):
            folder = data / f"{k // PER_FOLDER:04d}"
            if k % PER_FOLDER == 0:
                folder.mkdir(parents=True)
            (folder / f"IMG_{k:06d}.JPG").write_bytes(os.urandom(size))
        stamp.write_text(json.dumps(spec))
    paths = sorted(data.glob("*/*"), key=lambda p: os.fsencode(p))
    if len(paths) != files:
        raise SystemExit(f"{data}: {len(paths)} files, expected {files}")
    return data, paths


def big_file(root: Path, mib: int) -> Path:
    big = root / f"big-{mib}MiB.bin"
    if not big.exists() or big.stat().st_size != mib * MiB:
        with open(big, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
    return big


def find_xargs(folder: Path, cores: int, per_process: int, *tool: str, lines: int) -> Callable[[], None]:
    """``find FOLDER -type f -print0 | xargs -0 -P CORES -n PER_PROCESS TOOL``, as a shell user runs a
    one-file-at-a-time tool on every core; the pipeline's exit status and line count are checked."""
    pipeline = (
        f"set -o pipefail; find {shlex.quote(str(folder))} -type f -print0 "
        f"| xargs -0 -P {cores} -n {per_process} {shlex.join(tool)}"
    )

    def run() -> None:
        out = subprocess.run(["bash", "-c", pipeline], check=True, stdout=subprocess.PIPE).stdout
        got = out.count(b"\n")
        if got != lines:
            raise SystemExit(f"{pipeline}: {got} output lines, expected {lines}")

    return run


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 * MiB):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20_000, help="number of small files (default 20000)")
    ap.add_argument("--size", type=int, default=4096, help="bytes per small file (default 4096)")
    ap.add_argument("--big-mib", type=int, default=1024, help="the large file's size (default 1024 MiB; 0 = skip)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per tool; the median is reported (default 5)")
    ap.add_argument("--dir", type=Path, default=Path("bench-corpus/small-files"), help="where the corpus lives")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")

    cores = os.cpu_count() or 1
    a.dir.mkdir(parents=True, exist_ok=True)
    as_installed(a.dir)
    folder, paths = small_corpus(a.dir, a.files, a.size)
    n = len(paths)
    names = [str(p) for p in paths]
    per_process = -(-n // (2 * cores))  # two batches per core: balanced, and few process starts
    warm(paths)
    print(
        f"{n} files x {a.size} B in {n // PER_FOLDER} folders; {cores} CPUs; median of {a.repeat} runs; "
        f"warm cache; custodes timed as a whole process ({' '.join(CUSTODES[1:])})\n"
    )

    all_cores, one = f"[{cores} cores]", "[1 thread]"
    # (algorithm, threads: "1" or "all", label, run); custodes first in each algorithm.
    small = [
        ("blake3", "all", f"custodes hash --algo blake3 {all_cores}", custodes(n, "--algo", "blake3", folder)),
        ("blake3", "1", f"custodes hash --algo blake3 -j1 {one}", custodes(n, "-j1", "--algo", "blake3", folder)),
        ("blake3", "1", f"b3sum FILES... {one} (one file at a time)", command("b3sum", *names, lines=n)),
        (
            "blake3",
            "all",
            f"find | xargs -P{cores} -n{per_process} b3sum {all_cores}",
            find_xargs(folder, cores, per_process, "b3sum", lines=n),
        ),
        ("sha256", "all", f"custodes hash {all_cores}", custodes(n, folder)),
        ("sha256", "1", f"custodes hash -j1 {one}", custodes(n, "-j1", folder)),
        ("sha256", "1", f"openssl dgst -sha256 FILES... {one}", command("openssl", "dgst", "-sha256", *names, lines=n)),
        (
            "sha256",
            "all",
            f"find | xargs -P{cores} -n{per_process} openssl dgst -sha256 {all_cores}",
            find_xargs(folder, cores, per_process, "openssl", "dgst", "-sha256", lines=n),
        ),
        ("sha256", "1", f"sha256sum FILES... {one} (coreutils, no SHA-NI)", command("sha256sum", *names, lines=n)),
    ]
    report(small, interleaved_medians([(label, fn) for _, _, label, fn in small], a.repeat))

    if a.big_mib:
        big = big_file(a.dir, a.big_mib)
        warm([big])
        print(f"\none file of {a.big_mib} MiB:")
        large = [
            ("blake3", "all", f"custodes hash --algo blake3 {all_cores}", custodes(1, "--algo", "blake3", big)),
            ("blake3", "1", f"custodes hash --algo blake3 -j1 {one}", custodes(1, "-j1", "--algo", "blake3", big)),
            ("blake3", "all", f"b3sum {all_cores} (maps the file)", command("b3sum", str(big), lines=1)),
            ("blake3", "1", f"b3sum --num-threads 1 {one}", command("b3sum", "--num-threads", "1", str(big), lines=1)),
            ("sha256", "1", f"custodes hash {one} (sha256 is serial)", custodes(1, big)),
            ("sha256", "1", f"openssl dgst -sha256 {one}", command("openssl", "dgst", "-sha256", str(big), lines=1)),
        ]
        report(large, interleaved_medians([(label, fn) for _, _, label, fn in large], a.repeat))
        rss = peak_rss_mib([*CUSTODES, "hash", "-q", "--algo", "blake3", str(big)])
        rss_b3 = peak_rss_mib(["b3sum", str(big)])
        print(f"peak RSS: custodes hash --algo blake3 {rss:.0f} MiB; b3sum {rss_b3:.0f} MiB (its mapping counts)")


def custodes(lines: int, *args: str | Path) -> Callable[[], None]:
    return command(*CUSTODES, "hash", "-q", *map(str, args), lines=lines)


def interleaved_medians(plan: list[tuple[str, Callable[[], None]]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each tool. Each round runs every tool once, in turn: on a shared machine
    the load drifts over minutes, and running one tool's repeats back to back would hand that drift to the
    comparison. CPU is the user and system time of the tool's processes (``RUSAGE_CHILDREN``, which counts
    every waited-for descendant): on a loaded machine the wall time measures the other tenants as much as
    the tool, the CPU time only the tool's own work."""
    times: dict[str, list[float]] = {label: [] for label, _ in plan}
    cpus: dict[str, list[float]] = {label: [] for label, _ in plan}
    for _ in range(repeat):
        for label, fn in plan:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[label].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {label: (statistics.median(times[label]), statistics.median(cpus[label])) for label, _ in plan}


def report(plan: list[tuple[str, str, str, Callable[[], None]]], medians: dict[str, tuple[float, float]]) -> None:
    """The medians, then each peer against custodes on the same threads (and b3sum against all cores)."""
    print(f"  {'':62} {'wall':>7}   {'CPU':>7}")
    for _, _, label, _ in plan:
        wall, cpu = medians[label]
        print(f"  {label:62} {wall:7.3f} s {cpu:7.3f} s")
    ours = {(algo, th): medians[label] for algo, th, label, _ in plan if label.startswith("custodes")}
    print("ratios (peer time / custodes time; > 1 means custodes is faster), wall and CPU:")

    def ratio(algo: str, th: str, label: str) -> str:
        (wall, cpu), (our_wall, our_cpu) = medians[label], ours[(algo, th)]
        side = "all cores" if th == "all" else "1 thread "
        return f"  {algo} {side} vs {label:62} {wall / our_wall:5.2f}x {cpu / our_cpu:5.2f}x"

    for algo, th, label, _ in plan:
        if label.startswith("custodes"):
            continue
        print(ratio(algo, th, label))
        if label.startswith("b3sum") and th == "1":
            print(ratio(algo, "all", label))


if __name__ == "__main__":
    main()
