#!/usr/bin/env python3
"""An archive of many segments, built by real ingests: does anything slow down or grow as it fills?

Fills a fresh archive with ``--segments`` segments (default 10^6) by ingesting volumes of ``--per-volume``
files of 1 KiB (random, seeded: every file a new object) through the generic driver, one ``custodes ingest``
process per volume, each volume made just before its ingest and deleted after it, so the disk holds one
volume besides the archive. Prints:

- the ingest rate of the first and of the last 1,000 files (target: within 1.2x of each other);
- ``custodes verify`` at 10 %, 50 % and 100 % of the segments: its time and peak RSS (target: flat RSS);
- the compliance report model over the whole archive (custodes.reports.build_report, as
  benches/bench_report.py times it on a synthetic catalog): time and peak RSS (target: under 30 s, 1 GiB).

Every run is checked: each ingest must store its whole volume (exit 1 only for the ``unknown_file``
findings of files no driver knows), each verify must exit 0 having checked every object so far.
Not part of CI: 10^6 segments take hours on a small machine; ``--segments 100000`` takes minutes.

``--synthetic``: the catalog and ledger of ``--segments`` recordings filled in a minute or two
(benches/_catalog_fill.py, custodes' own replay of ledger entries; no object stored), then ``--rounds`` real
ingests of ``--per-volume`` files into it and into an archive that starts empty, taking turns; prints the median
of each and their ratio. It measures what the catalog's size does to an ingest, not the store's.

    .venv/bin/python benches/bench_scale.py [--segments 1000000] [--per-volume 1000] [--dir bench-scale] [--keep]
    .venv/bin/python benches/bench_scale.py --synthetic [--segments 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _catalog_fill import fill  # noqa: E402
from _measure import as_installed, measure, must, stored_all  # noqa: E402

CUSTODES = [sys.executable, "-m", "custodes"]
#: What the generic driver says of files it cannot read the time of: every file here.
VOLUME_FINDINGS = {"unknown_file"}
#: The report model, in a process of its own so that its peak RSS is its own.
REPORT = """
import sys, time
from custodes.archive import open_archive
from custodes.reports import build_report
archive = open_archive(sys.argv[1])
t = time.perf_counter()
model = build_report(archive)
print(time.perf_counter() - t, len(model["findings"]))
"""


def make_volume(folder: Path, index: int, files: int, size: int) -> None:
    rng = random.Random(index)  # seeded: the same run makes the same archive
    folder.mkdir(parents=True)
    for j in range(files):
        (folder / f"v{index:05d}_{j:05d}.bin").write_bytes(rng.randbytes(size))


def ingest(archive: Path, volume: Path, files: int) -> float:
    run = must(
        measure(*CUSTODES, "ingest", str(volume), "--archive", str(archive), "--driver", "generic", "-q", "--json"),
        f"ingest of {volume}",
        ok=(0, 1),
    )
    return stored_all(run, f"ingest of {volume}", files, VOLUME_FINDINGS).seconds


def verify(archive: Path, objects: int) -> str:
    run = must(measure(*CUSTODES, "verify", str(archive), "-q", "--json"), "verify")
    checked = json.loads(run.stdout)["checked"]
    if checked != objects:
        raise SystemExit(f"verify checked {checked} objects, the archive holds {objects}")
    return f"{run.seconds:7.1f} s  peak RSS {run.rss_mib:6.0f} MiB  ({objects / run.seconds:,.0f} objects/s)"


def rate(volumes: list[tuple[int, float]], want: int = 1000) -> float:
    """Files per second over the first ``want`` files of ``volumes`` (whole volumes: each is one process)."""
    files = seconds = 0.0
    for n, s in volumes:
        files, seconds = files + n, seconds + s
        if files >= want:
            break
    return files / seconds


def synthetic(folder: Path, segments: int, files: int, size: int, rounds: int) -> None:
    """Ingests of ``files`` files into an archive whose catalog holds ``segments`` recordings (filled by
    replayed entries) and into one that starts empty, ``rounds`` each, taking turns (the machine's load falls on
    both alike); the medians and their ratio."""
    from custodes.archive import open_archive

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    as_installed(folder)
    empty, full, volume = folder / "empty", folder / "full", folder / "volume"
    for archive in (empty, full):
        must(measure(*CUSTODES, "init", str(archive), "-q"), "init")
    started = time.perf_counter()
    with open_archive(full) as opened:
        fill(opened, segments)
    print(f"catalog of {full} filled with {segments:,} recordings in {time.perf_counter() - started:.0f} s")
    os.sync()  # the fill's gigabyte written out now, not under the first rounds' fsyncs (they took 1.5x as long)
    times: dict[Path, list[float]] = {empty: [], full: []}
    rss: dict[Path, list[float]] = {empty: [], full: []}
    made = 0
    for r in range(rounds + 1):  # round 0 warms both (byte-code, the page cache): not counted
        for archive in (empty, full) if r % 2 else (full, empty):
            made += 1
            make_volume(volume, made, files, size)  # a seed of its own: every file a new object
            run = must(
                measure(
                    *CUSTODES, "ingest", str(volume), "--archive", str(archive), "--driver", "generic", "-q", "--json"
                ),
                f"ingest into {archive}",
                ok=(0, 1),
            )
            stored_all(run, f"ingest into {archive}", files, VOLUME_FINDINGS)
            shutil.rmtree(volume)
            if r:
                times[archive].append(run.seconds)
                rss[archive].append(run.rss_mib)
    first, last = statistics.median(times[empty]), statistics.median(times[full])
    print(f"ingest of {files:,} files of {size} B, {rounds} rounds, medians (each round's times in brackets):")
    print(
        f"  into an archive of under {(rounds + 1) * files:,} segments {first:6.2f} s  "
        f"({files / first:,.0f} files/s, peak RSS {max(rss[empty]):.0f} MiB)  {[round(t, 2) for t in times[empty]]}"
    )
    print(
        f"  into one of {segments:,} segments           {last:6.2f} s  "
        f"({files / last:,.0f} files/s, peak RSS {max(rss[full]):.0f} MiB)  {[round(t, 2) for t in times[full]]}"
    )
    print(f"  last / first {last / first:.2f}x (target: within 1.2x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--per-volume", type=int, default=1000)
    ap.add_argument("--file-size", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path("bench-scale"))
    ap.add_argument("--keep", action="store_true", help="keep the archive (to time the report model on it again)")
    ap.add_argument("--synthetic", action="store_true", help="fill the catalog by replayed entries, not ingests")
    ap.add_argument("--rounds", type=int, default=5, help="--synthetic: ingests timed into each archive")
    a = ap.parse_args()
    if a.synthetic:
        synthetic(a.dir, a.segments, a.per_volume, a.file_size, a.rounds)
        if not a.keep:
            shutil.rmtree(a.dir)
        return
    count = max(1, a.segments // a.per_volume)
    shutil.rmtree(a.dir, ignore_errors=True)
    a.dir.mkdir(parents=True)
    archive, volume = a.dir / "archive", a.dir / "volume"
    must(measure(*CUSTODES, "init", str(archive), "-q"), "init")
    print(
        f"{count} volumes of {a.per_volume} files of {a.file_size} B, one `custodes ingest` each "
        f"(every core), into one archive\n"
    )
    checks = {max(1, round(count * p / 100)): p for p in (10, 50, 100)}
    timed: list[tuple[int, float]] = []
    started = time.perf_counter()
    for v in range(1, count + 1):
        make_volume(volume, v, a.per_volume, a.file_size)
        timed.append((a.per_volume, ingest(archive, volume, a.per_volume)))
        shutil.rmtree(volume)
        if v in checks:
            line = verify(archive, v * a.per_volume)
            print(f"  verify at {checks[v]:3}% ({v * a.per_volume:>9,} objects) {line}", flush=True)
        elif v % max(1, count // 20) == 0:  # a long run shows it is moving, and how fast, as it goes
            print(
                f"    {v * a.per_volume:>9,} files in, this volume at {a.per_volume / timed[-1][1]:.0f} files/s",
                file=sys.stderr,
                flush=True,
            )
    took = time.perf_counter() - started
    first, last = rate(timed), rate(timed[::-1])
    print(f"\ningest: {count * a.per_volume:,} files in {sum(s for _, s in timed):.0f} s of ingest")
    print(f"  first 1,000 files {first:8.0f} files/s")
    print(f"  last 1,000 files  {last:8.0f} files/s   (first / last {first / last:.2f}x; target within 1.2x)")
    run = must(measure(sys.executable, "-c", REPORT, str(archive)), "report model")
    seconds, findings = run.stdout.split()
    print(
        f"\nreport model over {count * a.per_volume:,} segments: {float(seconds):.1f} s ({int(findings):,} findings), "
        f"process peak RSS {run.rss_mib:.0f} MiB (target: under 30 s and 1 GiB)"
    )
    size = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file()) / (1 << 20)
    print(
        f"\nthe whole bench took {(time.perf_counter() - started) / 60:.1f} min ({took / 60:.1f} min filling); "
        f"the archive holds {size:,.0f} MiB"
    )
    if not a.keep:
        shutil.rmtree(a.dir)


if __name__ == "__main__":
    main()
