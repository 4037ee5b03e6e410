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
``--repeat`` runs (default 5). Timings on a shared machine are noisy: compare the ratios.

    .venv/bin/python benches/compare_small_files.py [--files 20000] [--size 4096] [--big-mib 1024]

Targets (issue 14): >= 1.0x ``b3sum`` and >= 1.0x ``xargs -P2 openssl dgst -sha256`` on the small files;
>= 0.9x ``b3sum`` on the 1 GiB file with peak RSS under 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB  # noqa: E402
from compare_hash import command, median_seconds, peak_rss_mib  # noqa: E402

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
    folder, paths = small_corpus(a.dir, a.files, a.size)
    n = len(paths)
    names = [str(p) for p in paths]
    per_process = -(-n // (2 * cores))  # two batches per core: balanced, and few process starts
    warm(paths)
    print(
        f"{n} files x {a.size} B in {n // PER_FOLDER} folders; {cores} CPUs; median of {a.repeat} runs; "
        f"warm cache; custodes timed as a whole process ({' '.join(CUSTODES[1:])})\n"
    )

    rows: dict[str, float] = {}

    def measure(label: str, fn: Callable[[], None]) -> float:
        s = median_seconds(fn, a.repeat)
        rows[label] = s
        print(f"  {label:58} {s:7.3f} s", flush=True)
        return s

    all_cores, one = f"[{cores} cores]", "[1 thread]"
    ours = {
        ("blake3", "all"): measure(
            f"custodes hash --algo blake3 {all_cores}",
            command(*CUSTODES, "hash", "-q", "--algo", "blake3", str(folder), lines=n),
        ),
        ("blake3", "1"): measure(
            f"custodes hash --algo blake3 -j1 {one}",
            command(*CUSTODES, "hash", "-q", "-j1", "--algo", "blake3", str(folder), lines=n),
        ),
        ("sha256", "all"): measure(
            f"custodes hash {all_cores}", command(*CUSTODES, "hash", "-q", str(folder), lines=n)
        ),
        ("sha256", "1"): measure(
            f"custodes hash -j1 {one}", command(*CUSTODES, "hash", "-q", "-j1", str(folder), lines=n)
        ),
    }
    peers = [
        ("blake3", "1", f"b3sum FILES... {one} (one file at a time)", command("b3sum", *names, lines=n)),
        (
            "blake3",
            "all",
            f"find | xargs -P{cores} -n{per_process} b3sum {all_cores}",
            find_xargs(folder, cores, per_process, "b3sum", lines=n),
        ),
        ("sha256", "1", f"openssl dgst -sha256 FILES... {one}", command("openssl", "dgst", "-sha256", *names, lines=n)),
        (
            "sha256",
            "all",
            f"find | xargs -P{cores} -n{per_process} openssl dgst -sha256 {all_cores}",
            find_xargs(folder, cores, per_process, "openssl", "dgst", "-sha256", lines=n),
        ),
        ("sha256", "1", f"sha256sum FILES... {one} (coreutils, no SHA-NI)", command("sha256sum", *names, lines=n)),
    ]
    ratios = []
    for algo, threads, label, fn in peers:
        s = measure(label, fn)
        ratios.append(
            (f"{algo} {'all cores' if threads == 'all' else '1 thread '} vs {label}", s / ours[(algo, threads)])
        )
    # b3sum is the BLAKE3 team's own tool: compare all-cores custodes with it too, whatever its threading.
    ratios.append(("blake3 all cores vs b3sum FILES... (one process)", rows[peers[0][2]] / ours[("blake3", "all")]))

    print("\nratios (peer time / custodes time; > 1 means custodes is faster):")
    for label, r in ratios:
        print(f"  {label:86} {r:5.2f}x")

    if a.big_mib:
        big = big_file(a.dir, a.big_mib)
        warm([big])
        print(f"\none file of {a.big_mib} MiB:")
        b3 = measure(
            f"custodes hash --algo blake3 {all_cores}",
            command(*CUSTODES, "hash", "-q", "--algo", "blake3", str(big), lines=1),
        )
        b3_1 = measure(
            f"custodes hash --algo blake3 -j1 {one}",
            command(*CUSTODES, "hash", "-q", "-j1", "--algo", "blake3", str(big), lines=1),
        )
        peer_b3 = measure(f"b3sum {all_cores} (maps the file)", command("b3sum", str(big), lines=1))
        peer_b3_1 = measure(f"b3sum --num-threads 1 {one}", command("b3sum", "--num-threads", "1", str(big), lines=1))
        sha = measure(f"custodes hash {one} (sha256 is serial)", command(*CUSTODES, "hash", "-q", str(big), lines=1))
        peer_sha = measure(f"openssl dgst -sha256 {one}", command("openssl", "dgst", "-sha256", str(big), lines=1))
        rss = peak_rss_mib([*CUSTODES, "hash", "-q", "--algo", "blake3", str(big)])
        rss_b3 = peak_rss_mib(["b3sum", str(big)])
        print("\nratios (peer time / custodes time):")
        print(f"  blake3 {all_cores} vs b3sum                     {peer_b3 / b3:5.2f}x")
        print(f"  blake3 {one} vs b3sum --num-threads 1     {peer_b3_1 / b3_1:5.2f}x")
        print(f"  sha256 {one} vs openssl dgst -sha256      {peer_sha / sha:5.2f}x")
        print(f"peak RSS: custodes hash --algo blake3 {rss:.0f} MiB; b3sum {rss_b3:.0f} MiB (its mapping counts)")


if __name__ == "__main__":
    main()
