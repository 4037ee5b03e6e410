#!/usr/bin/env python3
"""Ingest and verify throughput against their peers, in one run.

Ingest (copy + hash + fsync + read back + re-hash + link + catalog + ledger)
against ``cp -r`` of the same volume, plain and followed by ``sync`` (a
durable copy, which is what ingest delivers). Verify (re-hash every object
and check catalog, ledger, checkpoints) against ``sha256sum -c`` of a
manifest of the same objects, ``hashdeep -a -j2`` with known hashes, and
``bagit.py --validate`` of a bag with the same payload. The corpus is the
one benches/compare_hash.py builds (default 2 GiB), in the page cache.

    .venv/bin/python benches/compare_archive.py [--size-mib 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB, build_corpus  # noqa: E402
from compare_hash import hashlib_loop, make_bag  # noqa: E402

BIN = Path(sys.executable).parent


def run(*args: str, **kw) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def median(fn: Callable[[], None], repeat: int, setup: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("bench-corpus"))
    a = ap.parse_args()
    files = build_corpus(a.dir, a.size_mib)
    volume = a.dir / "data"
    total = sum(f.stat().st_size for f in files) / MiB
    bag = make_bag(a.dir, files)
    hashlib_loop(files)
    work = Path(tempfile.mkdtemp(dir=a.dir))
    print(f"volume: {len(files)} files, {total:.0f} MiB, median of {a.repeat} runs, warm cache\n")

    def fresh(readback: str = "storage") -> None:
        shutil.rmtree(work / "archive", ignore_errors=True)
        shutil.rmtree(work / "copy", ignore_errors=True)
        run("sync")  # start every run with no dirty pages from the last one
        run(str(BIN / "custodes"), "init", str(work / "archive"), "--algo", "sha256")
        policy = work / "archive" / "custodes.toml"
        policy.write_text(policy.read_text().replace('readback = "storage"', f'readback = "{readback}"'))

    def ingest_run() -> None:
        subprocess.run([str(BIN / "custodes"), "ingest", str(volume), "--archive", str(work / "archive"), "--driver", "generic", "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    rows = {}
    rows["custodes ingest"] = median(ingest_run, a.repeat, fresh)
    rows["custodes ingest (readback=cache)"] = median(ingest_run, a.repeat, lambda: fresh("cache"))
    rows["cp -r"] = median(lambda: run("cp", "-r", str(volume), str(work / "copy")), a.repeat, fresh)
    rows["cp -r && sync"] = median(lambda: (run("cp", "-r", str(volume), str(work / "copy")), run("sync")), a.repeat, fresh)
    print("ingest:")
    for name, s in rows.items():
        print(f"  {name:30} {total / s:8.0f} MiB/s  ({s:.2f} s)")
    for ours in ("custodes ingest", "custodes ingest (readback=cache)"):
        print(f"  ratio {ours} vs cp -r:          {rows['cp -r'] / rows[ours]:.2f}x")
        print(f"  ratio {ours} vs cp -r && sync:  {rows['cp -r && sync'] / rows[ours]:.2f}x")

    archive = work / "archive"
    fresh()  # the cp timings reset the archive: fill it once more for the verify timings
    subprocess.run([str(BIN / "custodes"), "ingest", str(volume), "--archive", str(archive), "--driver", "generic", "-q"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    objects = archive / "objects"
    manifest = work / "objects.sha256"
    object_files = [str(p) for p in sorted(objects.rglob("*")) if p.is_file()]
    manifest.write_bytes(subprocess.run(["sha256sum", *object_files], capture_output=True, check=True).stdout)
    known = work / "known.hashdeep"
    known.write_bytes(subprocess.run(["hashdeep", "-c", "sha256", "-r", str(objects)], capture_output=True).stdout)
    verify_rows = {
        "custodes verify": median(lambda: run(str(BIN / "custodes"), "verify", str(archive), "-q"), a.repeat),
        "sha256sum -c": median(lambda: run("sha256sum", "-c", "--quiet", str(manifest)), a.repeat),
        "hashdeep -a -j2": median(lambda: run("hashdeep", "-c", "sha256", "-a", "-j2", "-k", str(known), "-r", str(objects)), a.repeat),
        "bagit.py --validate": median(lambda: run(sys.executable, str(BIN / "bagit.py"), "--validate", "--processes", "2", str(bag)), a.repeat),
    }
    print("\nverify:")
    for name, s in verify_rows.items():
        print(f"  {name:30} {total / s:8.0f} MiB/s  ({s:.2f} s)")
    for name, s in verify_rows.items():
        if name != "custodes verify":
            print(f"  ratio custodes vs {name:22} {s / verify_rows['custodes verify']:.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
