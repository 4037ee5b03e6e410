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
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from custodes.archive import init_archive
from custodes.builtin.report_html import render_html, render_pdf
from custodes.builtin.reporters import render_csv, render_json
from custodes.reports import build_report

sys.path.insert(0, str(Path(__file__).parent))
from _catalog_fill import fill  # noqa: E402


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
