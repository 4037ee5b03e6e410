#!/usr/bin/env python3
"""Report generation on an archive of 10^5 segments (target: under 30 s).

Fills a fresh archive's ledger and catalog with synthetic recordings (200
devices, gaps, late ingests, tasks) through custodes' own replay of ledger
entries, which is what 10^5 ingests would leave, then times the report model
and each format.

    .venv/bin/python benches/bench_report.py [--segments 100000]

Then the model again with ``--incremental`` (the verifier's kept replay of the ledger), twice: the first run
replays the whole ledger and keeps it, the second replays only what was appended since.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import tempfile
import time

from custodes.archive import init_archive
from custodes.builtin.report_html import render_html, render_pdf
from custodes.builtin.reporters import render_csv, render_json
from custodes.catalog import replay
from custodes.reports import build_report

NS = 1_000_000_000


def fill(archive, n: int, devices: int = 200) -> None:
    """Ledger what ``n`` ingested recordings on ``devices`` devices would: an ``ingest_begin`` per device, an
    ``ingest`` entry per recording (every 10th with a ``late_ingest`` finding, in ``ingest_findings`` entries of
    1,000), 500 ``task`` entries; each entry recorded and its rows made by custodes' own code (catalog.replay),
    in one transaction, so the catalog is one the report's verification finds nothing wrong with."""
    rng = random.Random(7)
    t0 = 1_709_280_000 * NS
    with archive.transaction() as catalog:
        for d in range(devices):
            identity = {"kind": "body_camera", "officer_id": f"{d:06d}", "unit_id": "U1"}
            replay.record(
                catalog,
                {"type": "ingest_begin", "ingest": d + 1, "device": f"D{d:03d}", "driver": "generic",
                 "volume": f"bench/D{d:03d}", "identity": identity, "events": [], "clock_readings": [], "time": t0},
            )  # fmt: skip
        clock = {d: t0 for d in range(devices)}
        late: list[dict] = []
        for i in range(n):
            d = i % devices
            start = clock[d] + rng.choice([0, 0, 0, 5, 600]) * NS
            end = start + rng.randint(60, 600) * NS
            clock[d] = end
            # A real digest is random: the catalog's indexes on it grow in random order, as an agency's do.
            sha = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
            ingested = end + rng.choice([1, 30]) * 3600 * NS
            replay.record(
                catalog,
                {"type": "ingest", "ingest": d + 1, "segment": i + 1, "device": f"D{d:03d}", "name": f"CLIP{i:06d}.MP4",
                 "kind": "video", "digests": {"sha256": sha}, "head_sha256": sha, "size": 1000, "start": start,
                 "end": end, "start_source": "container", "corrected_start": start, "corrected_end": end,
                 "sequence": i // devices, "important": False, "recording": None, "chapter": None,
                 "officer": f"{d:06d}", "container": None, "time": ingested},
            )  # fmt: skip
            if rng.random() < 0.1:
                detail = json.dumps({"kind": "late_ingest", "message": "late", "article": 16})
                late.append(
                    {"segment_id": i + 1, "kind": "late_ingest", "severity": "warning", "device_id": f"D{d:03d}",
                     "path": f"CLIP{i:06d}.MP4", "start_ns": end, "end_ns": end + 30 * 3600 * NS, "detail": detail},
                )  # fmt: skip
            if len(late) == 1000 or (i == n - 1 and late):
                replay.record(catalog, {"type": "ingest_findings", "ingest": 1, "findings": late, "time": t0})
                late = []
        for k in range(500):
            replay.record(
                catalog,
                {"type": "task", "task": f"T{k}", "task_type": "stop", "start": t0 + k * 3600 * NS,
                 "end": t0 + k * 3600 * NS + 1800 * NS, "officers": [], "devices": [f"D{k % devices:03d}"],
                 "time": t0},
            )  # fmt: skip
    archive.checkpoint()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--pdf", action="store_true", help="also time the PDF (slow: font loading and layout)")
    ap.add_argument("--keep", metavar="FOLDER", help="fill the archive at FOLDER (new) and keep it, to time again")
    a = ap.parse_args()
    archive = init_archive(a.keep or tempfile.mkdtemp() + "/archive")
    t = time.perf_counter()
    fill(archive, a.segments)
    print(f"catalog filled with {a.segments:,} segments in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    model = build_report(archive)
    model_s = time.perf_counter() - t
    print(
        f"  report model            {model_s:6.2f} s  ({len(model['findings']):,} findings, "
        f"{len(model['completeness']['tasks'])} tasks)"
    )
    renders = [("json", render_json), ("csv", render_csv), ("html", render_html)] + (
        [("pdf", render_pdf)] if a.pdf else []
    )
    total = model_s
    for name, fn in renders:
        t = time.perf_counter()
        buf = io.BytesIO()
        fn(model, buf)
        s = time.perf_counter() - t
        total += s
        print(f"  render {name:5}            {s:6.2f} s  ({len(buf.getvalue()) / 1e6:.1f} MB)")
    print(f"  total                   {total:6.2f} s  (target: under 30 s)")
    # The same model with the verifier's kept replay (verify --incremental, custodes.catalog.replay_cache): the
    # first run replays the whole ledger and keeps it, the next replays only what was appended since (nothing).
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-report-cache-")
    for label in ("first (keeps the replay)", "again (kept replay)"):
        t = time.perf_counter()
        model = build_report(archive, incremental=True)
        replayed = model["integrity"]["replay"]
        print(f"  report model --incremental, {label:25} {time.perf_counter() - t:6.2f} s  {replayed}")


if __name__ == "__main__":
    main()
