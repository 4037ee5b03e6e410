#!/usr/bin/env python3
"""Ingest and verify throughput against their peers, in one run.

Ingest (copy + hash + fsync + read back + re-hash + link + catalog + ledger)
against ``cp -r`` of the same volume, plain and followed by ``sync`` (a
durable copy, which is what ingest delivers). Verify (re-hash every object
and check catalog, ledger, checkpoints) against ``sha256sum -c`` of a
manifest of the same objects, ``hashdeep -a -j2`` with known hashes, and
``bagit.py --validate`` of a bag with the same payload. The corpus is the
one benches/compare_hash.py builds (default 2 GiB), in the page cache.

Threads are said on both sides: ingest and verify run on every core and with
``--workers 1``; one-process peers (``cp``, ``sha256sum -c``) are compared with
the one-worker figure, and ``sha256sum -c`` also runs as ``xargs -P <cores>``
over per-file manifests. Every run is checked: ingest must store every file
(exit 1 only for the findings random bytes named .mp4 must raise), verify and
the peers must exit 0.

    .venv/bin/python benches/compare_archive.py [--size-mib 2048] [--repeat 3]
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB, build_corpus  # noqa: E402
from compare_hash import hashlib_loop, make_bag  # noqa: E402

BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
#: What ingest must say of the corpus: random bytes named .mp4 have no sample index.
CORPUS_FINDINGS = {"no_moov", "malformed", "late_ingest", "clock_unset"}


def run(*args: str, stdin_files: list[str] | None = None) -> None:
    """A run that must exit 0; ``stdin_files`` are fed one per line (for xargs)."""
    feed = None if stdin_files is None else "\n".join(stdin_files).encode()
    subprocess.run(args, input=feed, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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

    def ingest(*extra: str) -> Callable[[], None]:
        def go() -> None:
            out = subprocess.run(
                [
                    str(BIN / "custodes"),
                    "ingest",
                    str(volume),
                    "--archive",
                    str(work / "archive"),
                    "--driver",
                    "generic",
                    "-q",
                    "--json",
                    *extra,
                ],
                capture_output=True,
            )
            report = json.loads(out.stdout) if out.stdout else {}
            kinds = {f["kind"] for f in report.get("findings", [])}
            if (
                out.returncode not in (0, 1)
                or len(report.get("stored", [])) != len(files)
                or report.get("failed")
                or not kinds <= CORPUS_FINDINGS
            ):
                raise SystemExit(
                    f"ingest went wrong (exit {out.returncode}): stored {len(report.get('stored', []))} "
                    f"of {len(files)}, failed {report.get('failed')}, findings {sorted(kinds)}; "
                    f"{out.stderr.decode()[-500:]}"
                )

        return go

    rows = {}
    rows[f"custodes ingest [{CORES} cores]"] = median(ingest(), a.repeat, fresh)
    rows["custodes ingest --workers 1 [1 thread]"] = median(ingest("--workers", "1"), a.repeat, fresh)
    rows[f"custodes ingest readback=cache [{CORES} cores]"] = median(ingest(), a.repeat, lambda: fresh("cache"))
    rows["cp -r [1 thread]"] = median(lambda: run("cp", "-r", str(volume), str(work / "copy")), a.repeat, fresh)
    rows["cp -r && sync [1 thread]"] = median(
        lambda: (run("cp", "-r", str(volume), str(work / "copy")), run("sync")), a.repeat, fresh
    )
    print("ingest:")
    for name, s in rows.items():
        print(f"  {name:44} {total / s:8.0f} MiB/s  ({s:.2f} s)")
    print("ratios (peer time / custodes time):")
    for ours in (
        f"custodes ingest [{CORES} cores]",
        "custodes ingest --workers 1 [1 thread]",
        f"custodes ingest readback=cache [{CORES} cores]",
    ):
        for peer in ("cp -r [1 thread]", "cp -r && sync [1 thread]"):
            print(f"  {ours:44} vs {peer:26} {rows[peer] / rows[ours]:.2f}x")

    archive = work / "archive"
    fresh()  # the cp timings reset the archive: fill it once more for the verify timings
    ingest()()
    objects = archive / "objects"
    manifest = work / "objects.sha256"
    object_files = [str(p) for p in sorted(objects.rglob("*")) if p.is_file()]
    manifest.write_bytes(subprocess.run(["sha256sum", *object_files], capture_output=True, check=True).stdout)
    if len(object_files) != len(files):
        raise SystemExit(f"the store holds {len(object_files)} objects, expected {len(files)}")
    per_file = work / "per-file"
    per_file.mkdir()
    for i, line in enumerate(manifest.read_bytes().splitlines()):
        (per_file / f"{i}.sha256").write_bytes(line + b"\n")
    known = work / "known.hashdeep"
    known.write_bytes(subprocess.run(["hashdeep", "-c", "sha256", "-r", str(objects)], capture_output=True).stdout)
    manifests = [str(p) for p in sorted(per_file.iterdir())]
    # (name, threads "1" or "all", time); run() raises on any non-zero exit.
    verify_rows = [
        ("custodes verify", "all", median(lambda: run(str(BIN / "custodes"), "verify", str(archive), "-q"), a.repeat)),
        (
            "custodes verify --workers 1",
            "1",
            median(lambda: run(str(BIN / "custodes"), "verify", str(archive), "-q", "--workers", "1"), a.repeat),
        ),
        ("sha256sum -c", "1", median(lambda: run("sha256sum", "-c", "--quiet", str(manifest)), a.repeat)),
        (
            f"xargs -P{CORES} sha256sum -c",
            "all",
            median(
                lambda: run("xargs", "-n", "1", "-P", str(CORES), "sha256sum", "-c", "--quiet", stdin_files=manifests),
                a.repeat,
            ),
        ),
        (
            "hashdeep -a -j2",
            "all",
            median(
                lambda: run("hashdeep", "-c", "sha256", "-a", "-j2", "-k", str(known), "-r", str(objects)), a.repeat
            ),
        ),
        (
            "bagit.py --validate --processes 2",
            "all",
            median(
                lambda: run(sys.executable, str(BIN / "bagit.py"), "--validate", "--processes", "2", str(bag)), a.repeat
            ),
        ),
    ]
    print("\nverify:")
    for name, th, s in verify_rows:
        print(f"  {name:36} [{'1 thread' if th == '1' else f'{CORES} cores'}] {total / s:8.0f} MiB/s  ({s:.2f} s)")
    ours = {th: s for name, th, s in verify_rows if name.startswith("custodes")}
    print("ratios, like for like (peer time / custodes time):")
    for name, th, s in verify_rows:
        if not name.startswith("custodes"):
            print(f"  {'1 thread' if th == '1' else f'{CORES} cores':9} custodes vs {name:36} {s / ours[th]:.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
