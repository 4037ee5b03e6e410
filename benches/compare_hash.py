#!/usr/bin/env python3
"""Hashing throughput of ``custodes hash`` against its peers, in one run.

Builds (once) a corpus of large random files, warms the page cache, then
times each tool over the same files several times and prints the median
throughput and the ratio to custodes. Peers: ``openssl dgst -sha256`` (the
fastest SHA-256 here: SHA-NI), coreutils ``sha256sum``, the BLAKE3 team's
``b3sum`` (multi-threaded itself), ``hashdeep -c sha256 -j2``,
``bagit.py --validate`` (sha256 manifest), ``openssl dgst -sm3`` and a plain
single-process hashlib loop. Threads are said on both sides: one-process peers
are compared with ``custodes hash -j1``, and also run as ``xargs -P <cores>``
across the files to compare with all-cores custodes. Every run's exit code is
checked and its output must have one line per file. Finally it measures the
peak RSS of ``custodes hash`` over one 4 GiB file.

    .venv/bin/python benches/compare_hash.py [--size-mib 2048] [--repeat 3]

Timings on a shared machine are noisy: compare the ratios, not the MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB, build_corpus  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CUSTODES = str(VENV_BIN / "custodes")
BAGIT = str(VENV_BIN / "bagit.py")


def hashlib_loop(files: list[Path]) -> None:
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(MiB):
                h.update(chunk)
        h.hexdigest()


def command(*args: str, lines: int | None = None) -> Callable[[], None]:
    """A run that must exit 0 and, when ``lines`` is given, print exactly that many lines
    (one digest per file): a tool that silently skipped files would otherwise look fast."""

    def run() -> None:
        out = subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        got = out.count(b"\n")
        if lines is not None and got != lines:
            raise SystemExit(f"{' '.join(args[:3])}...: {got} output lines, expected {lines}")

    return run


def xargs(cores: int, *tool: str, files: list[Path]) -> Callable[[], None]:
    """A one-process tool run on every core, one file per process, as a shell user parallelises it."""

    def run() -> None:
        out = subprocess.run(
            ["xargs", "-0", "-n", "1", "-P", str(cores), *tool],
            input=b"\0".join(str(f).encode() for f in files),
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ).stdout
        got = out.count(b"\n")
        if got != len(files):
            raise SystemExit(f"xargs {' '.join(tool)}: {got} output lines, expected {len(files)}")

    return run


def drop_page_cache() -> None:
    """Make the next run read from the disk (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def median_seconds(fn: Callable[[], None], repeat: int, cold: bool = False) -> float:
    times = []
    for _ in range(repeat):
        if cold:
            drop_page_cache()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_bag(root: Path, files: list[Path]) -> Path:
    """A BagIt bag whose payload hard-links the corpus (no second copy on disk)."""
    import bagit

    bag = root / "bag"
    if (bag / "manifest-sha256.txt").exists():
        return bag
    shutil.rmtree(bag, ignore_errors=True)
    bag.mkdir()
    for f in files:
        os.link(f, bag / f.name)
    bagit.make_bag(str(bag), checksums=["sha256"], processes=2)
    return bag


def peak_rss_mib(args: list[str]) -> float:
    """Peak resident memory of one command, read from the kernel's accounting of a fresh child."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048, help="corpus size (default 2048 MiB)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported")
    ap.add_argument("--dir", type=Path, default=Path("bench-corpus"), help="where the corpus lives")
    ap.add_argument("--rss-file-gib", type=int, default=4, help="size of the file for the RSS check (0 = skip)")
    ap.add_argument(
        "--cold", action="store_true", help="drop the page cache before every run (root): disk speed, not memory speed"
    )
    a = ap.parse_args()

    files = build_corpus(a.dir, a.size_mib)
    data = a.dir / "data"
    total = sum(f.stat().st_size for f in files)
    bag = make_bag(a.dir, files)
    hashlib_loop(files)  # warm the page cache: every tool then reads from memory
    cpus = os.cpu_count()
    cache = "cold cache (dropped before each run)" if a.cold else "warm cache"
    print(f"corpus: {len(files)} files, {total / MiB:.0f} MiB, {cpus} CPUs, median of {a.repeat} runs, {cache}\n")

    rows: list[tuple[str, str, float]] = []

    def measure(algo: str, name: str, fn: Callable[[], None]) -> None:
        s = median_seconds(fn, a.repeat, a.cold)
        rows.append((algo, name, s))
        print(f"  {algo:7} {name:34} {total / MiB / s:9.0f} MiB/s  ({s:.2f} s)", flush=True)

    import custodes

    def api_run(algo: str) -> Callable[[], None]:
        def run() -> None:
            bad = [r for r in custodes.hash_files(files, (algo,)) if not r.ok]
            if bad:
                raise SystemExit(f"custodes.hash_files failed: {bad}")

        return run

    n = len(files)
    paths = [str(f) for f in files]
    # (algorithm, name, threads: "1" or "all", the run)
    plan: list[tuple[str, str, str, Callable[[], None]]] = [
        ("sha256", "custodes.hash_files (API)", "all", api_run("sha256")),
        ("sha256", "custodes hash", "all", command(CUSTODES, "hash", "-q", str(data), lines=n)),
        ("sha256", "custodes hash -j1", "1", command(CUSTODES, "hash", "-q", "-j1", str(data), lines=n)),
        ("sha256", "hashlib loop", "1", lambda: hashlib_loop(files)),
        ("sha256", "openssl dgst -sha256", "1", command("openssl", "dgst", "-sha256", *paths, lines=n)),
        (
            "sha256",
            f"xargs -P{cpus} openssl dgst -sha256",
            "all",
            xargs(cpus, "openssl", "dgst", "-sha256", files=files),
        ),
        ("sha256", "sha256sum", "1", command("sha256sum", *paths, lines=n)),
        ("sha256", f"xargs -P{cpus} sha256sum", "all", xargs(cpus, "sha256sum", files=files)),
        # hashdeep prints a 5-line header; bagit prints nothing on success.
        (
            "sha256",
            "hashdeep -c sha256 -j2",
            "all",
            command("hashdeep", "-c", "sha256", "-j2", "-r", str(data), lines=n + 5),
        ),
        (
            "sha256",
            "bagit.py --validate --processes 2",
            "all",
            command(sys.executable, BAGIT, "--validate", "--processes", "2", str(bag)),
        ),
        ("blake3", "custodes.hash_files (API)", "all", api_run("blake3")),
        (
            "blake3",
            "custodes hash --algo blake3",
            "all",
            command(CUSTODES, "hash", "-q", "--algo", "blake3", str(data), lines=n),
        ),
        (
            "blake3",
            "custodes hash --algo blake3 -j1",
            "1",
            command(CUSTODES, "hash", "-q", "-j1", "--algo", "blake3", str(data), lines=n),
        ),
        ("blake3", "b3sum (multi-threaded)", "all", command("b3sum", *paths, lines=n)),
        ("blake3", "b3sum --num-threads 1", "1", command("b3sum", "--num-threads", "1", *paths, lines=n)),
        (
            "sm3",
            "custodes hash --algo sm3",
            "all",
            command(CUSTODES, "hash", "-q", "--algo", "sm3", str(data), lines=n),
        ),
        (
            "sm3",
            "custodes hash --algo sm3 -j1",
            "1",
            command(CUSTODES, "hash", "-q", "-j1", "--algo", "sm3", str(data), lines=n),
        ),
        ("sm3", "openssl dgst -sm3", "1", command("openssl", "dgst", "-sm3", *paths, lines=n)),
        ("sm3", f"xargs -P{cpus} openssl dgst -sm3", "all", xargs(cpus, "openssl", "dgst", "-sm3", files=files)),
    ]
    threads: dict[tuple[str, str], str] = {}
    for algo, name, th, fn in plan:
        threads[(algo, name)] = th
        measure(algo, f"{name} [{'1 thread' if th == '1' else f'{cpus} cores'}]", fn)

    print("\nratios, like for like (peer time / custodes CLI time; > 1 means custodes is faster):")
    ours = {
        (algo, th): s
        for (algo, name, s), (_, _, th, _) in zip(rows, plan, strict=True)
        if name.startswith("custodes hash")
    }
    for (algo, name, s), (_, _, th, _) in zip(rows, plan, strict=True):
        if not name.startswith("custodes"):
            label = "1 thread " if th == "1" else f"{cpus} cores  "
            print(f"  {algo:7} {label} vs {name:40} {s / ours[(algo, th)]:5.2f}x")

    if a.rss_file_gib:
        big = a.dir / "rss-check.bin"
        with open(big, "wb") as f:
            f.truncate(a.rss_file_gib << 30)  # sparse: the read path is the same, the disk is spared
        rss = peak_rss_mib([CUSTODES, "hash", "-q", str(big)])
        rss_all = peak_rss_mib(
            [CUSTODES, "hash", "-q", "--algo", "sha256", "--algo", "blake3", "--algo", "sm3", "--algo", "md5", str(big)]
        )
        big.unlink()
        print(
            f"\npeak RSS hashing one {a.rss_file_gib} GiB file: sha256 {rss:.0f} MiB; "
            f"all four algorithms {rss_all:.0f} MiB"
        )


if __name__ == "__main__":
    main()
