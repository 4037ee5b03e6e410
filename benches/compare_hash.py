#!/usr/bin/env python3
"""Hashing throughput of ``custodes hash`` against its peers, in one run.

Builds (once) a corpus of large random files, warms the page cache, then
times each tool over the same files several times and prints the median
throughput and the ratio to custodes. Peers: coreutils ``sha256sum``, the
BLAKE3 team's ``b3sum``, ``hashdeep -c sha256 -j2``, ``bagit.py --validate``
(sha256 manifest), and a plain single-process hashlib loop. Finally it
measures the peak RSS of ``custodes hash`` over one 4 GiB file.

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


def command(*args: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

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
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every run (root): disk speed, not memory speed")
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

    measure("sha256", "custodes.hash_files (API)", lambda: custodes.hash_files(files))
    measure("sha256", "custodes hash", command(CUSTODES, "hash", "-q", str(data)))
    measure("sha256", "custodes hash -j1", command(CUSTODES, "hash", "-q", "-j1", str(data)))
    measure("sha256", "hashlib loop (1 process)", lambda: hashlib_loop(files))
    measure("sha256", "sha256sum", command("sha256sum", *map(str, files)))
    measure("sha256", "hashdeep -c sha256 -j2", command("hashdeep", "-c", "sha256", "-j2", "-r", str(data)))
    measure("sha256", "bagit.py --validate", command(sys.executable, BAGIT, "--validate", "--processes", "2", str(bag)))
    measure("blake3", "custodes.hash_files (API)", lambda: custodes.hash_files(files, ("blake3",)))
    measure("blake3", "custodes hash --algo blake3", command(CUSTODES, "hash", "-q", "--algo", "blake3", str(data)))
    measure("blake3", "b3sum", command("b3sum", *map(str, files)))
    measure("sm3", "custodes hash --algo sm3", command(CUSTODES, "hash", "-q", "--algo", "sm3", str(data)))
    measure("sm3", "openssl dgst -sm3", command("openssl", "dgst", "-sm3", *map(str, files)))

    print("\nratios (peer time / custodes time; > 1 means custodes is faster):")
    cli = {algo: s for algo, name, s in rows if name.startswith("custodes hash") and "-j1" not in name}
    api = {algo: s for algo, name, s in rows if name.endswith("(API)")}
    for algo, name, s in rows:
        if not name.startswith("custodes"):
            via_api = f"   API {s / api[algo]:5.2f}x" if algo in api else ""
            print(f"  {algo:7} vs {name:30} CLI {s / cli[algo]:5.2f}x{via_api}")

    if a.rss_file_gib:
        big = a.dir / "rss-check.bin"
        with open(big, "wb") as f:
            f.truncate(a.rss_file_gib << 30)  # sparse: the read path is the same, the disk is spared
        rss = peak_rss_mib([CUSTODES, "hash", "-q", str(big)])
        rss_all = peak_rss_mib([CUSTODES, "hash", "-q", "--algo", "sha256", "--algo", "blake3",
                                "--algo", "sm3", "--algo", "md5", str(big)])
        big.unlink()
        print(f"\npeak RSS hashing one {a.rss_file_gib} GiB file: sha256 {rss:.0f} MiB; all four algorithms {rss_all:.0f} MiB")


if __name__ == "__main__":
    main()
