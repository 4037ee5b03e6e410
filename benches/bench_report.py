#!/usr/bin/env python3
"""Report generation on an archive of 10^5 segments (target: under 30 s).

Fills a fresh archive's catalog with synthetic segments (200 devices, gaps,
late ingests, clock readings, tasks, access events) straight through SQL,
which is what 10^5 ingests would leave, then times the report model and each
format.

    .venv/bin/python benches/bench_report.py [--segments 100000]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from custodes import merkle
from custodes.archive import init_archive
from custodes.builtin.report_html import render_html, render_pdf
from custodes.builtin.reporters import render_csv, render_json
from custodes.reports import build_report

NS = 1_000_000_000


@contextmanager
def seeding(archive) -> Iterator[sqlite3.Connection]:
    """The bench writes a large synthetic catalog straight into the database file, in one
    transaction: fixture data at a scale no ingest could make in a bench run, not custodes' own path."""
    conn = sqlite3.connect(archive.root / "catalog.sqlite", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def fill(archive, n: int, devices: int = 200) -> None:
    rng = random.Random(7)
    t0 = 1_709_280_000 * NS
    with seeding(archive) as tx:
        tx.executemany(
            "INSERT INTO devices (device_id, kind, officer_id, unit_id, updated_ns) "
            "VALUES (?, 'body_camera', ?, 'U1', 0)",
            [(f"D{d:03d}", f"{d:06d}") for d in range(devices)],
        )
        tx.execute(
            "INSERT INTO ingests (id, volume, driver, device_id, started_ns) VALUES (1, 'bench', 'generic', 'D000', ?)",
            (t0,),
        )
        objects, segments, ledger, findings = [], [], [], []
        clock = {d: t0 for d in range(devices)}
        for i in range(n):
            d = i % devices
            start = clock[d] + rng.choice([0, 0, 0, 5, 600]) * NS
            end = start + rng.randint(60, 600) * NS
            clock[d] = end
            sha = f"{i:064x}"
            entry = json.dumps(
                {
                    "type": "ingest",
                    "segment": i + 1,
                    "device": f"D{d:03d}",
                    "name": f"CLIP{i:06d}.MP4",
                    "digests": {"sha256": sha},
                    "size": 1000,
                },
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
            objects.append((sha, 1000, json.dumps({"sha256": sha}), sha, t0))
            segments.append(
                (
                    i + 1,
                    f"D{d:03d}",
                    f"CLIP{i:06d}.MP4",
                    "video",
                    sha,
                    1000,
                    start,
                    end,
                    "container",
                    start,
                    end,
                    i // devices,
                    0,
                    f"{d:06d}",
                    1,
                    end + rng.choice([1, 30]) * 3600 * NS,
                    i,
                )
            )
            ledger.append((i, entry, merkle.leaf_hash(entry)))
            if rng.random() < 0.1:
                findings.append(
                    (
                        1,
                        i + 1,
                        "late_ingest",
                        "warning",
                        f"D{d:03d}",
                        f"CLIP{i:06d}.MP4",
                        end,
                        end + 30 * 3600 * NS,
                        json.dumps({"kind": "late_ingest", "message": "late", "article": 16}),
                    )
                )
        tx.executemany(
            "INSERT INTO objects (sha256, size, digests, head_sha256, stored_ns) VALUES (?, ?, ?, ?, ?)", objects
        )
        tx.executemany(
            "INSERT INTO segments (id, device_id, original_name, kind, sha256, size, start_ns, end_ns, start_source, "
            "corrected_start_ns, corrected_end_ns, sequence, important, officer_id, ingest_id, ingested_ns, "
            "ledger_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            segments,
        )
        tx.executemany("INSERT INTO ledger (seq, entry, leaf) VALUES (?, ?, ?)", ledger)
        tx.executemany(
            "INSERT INTO findings (ingest_id, segment_id, kind, severity, device_id, path, start_ns, end_ns, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            findings,
        )
        tx.executemany(
            "INSERT INTO tasks (id, type, start_ns, end_ns, officers, devices, imported_ns, ledger_seq) "
            "VALUES (?, 'stop', ?, ?, '[]', ?, 0, 0)",
            [
                (f"T{k}", t0 + k * 3600 * NS, t0 + k * 3600 * NS + 1800 * NS, json.dumps([f"D{k % devices:03d}"]))
                for k in range(500)
            ],
        )
    archive.checkpoint()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--pdf", action="store_true", help="also time the PDF (slow: font loading and layout)")
    a = ap.parse_args()
    archive = init_archive(tempfile.mkdtemp() + "/archive")
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


if __name__ == "__main__":
    main()
