#!/usr/bin/env python3
"""The compliance report with the device registry in use (issue 18): 10^5 segments on 2,000 devices, 20,000
assignments (target: the report under 30 s).

Fills a fresh archive as benches/bench_report.py does (``_catalog_fill.fill``: ingest entries replayed by custodes' own
code), on 2,000 devices, then ledgers the registry the same way: 1,990 devices registered (10 left out:
``unregistered_device``), 20 of them lost half-way, and 10 assignments per registered device (back to back with
short holes: ``unassigned_device``; 20,000 in all; every other one to another officer than the footage names:
``device_lent``).
Times the report model, the devices section alone, and the JSON render.

    .venv/bin/python benches/bench_devices.py [--segments 100000] [--devices 2000] [--assignments 20000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _catalog_fill import NS, fill  # noqa: E402
from custodes.archive import init_archive  # noqa: E402
from custodes.builtin.reporters import render_json  # noqa: E402
from custodes.catalog import replay  # noqa: E402
from custodes.reports import build_report  # noqa: E402

T0 = 1_709_280_000 * NS


def register(archive, devices: int, assignments: int) -> None:
    """The registry's entries, in one transaction, each recorded and its rows made by catalog.replay."""
    per, extra = divmod(assignments, devices - 10)  # the first ``extra`` devices get one more
    with archive.transaction() as catalog:
        for d in range(devices - 10):
            lost = d < 20
            replay.record(
                catalog,
                {"type": "device", "device": f"D{d:03d}", "kind": "body_camera", "vendor": "Acme", "model": "X",
                 "serial": f"SN{d}", "unit": f"U{d % 50}", "status": "in_service", "since": T0 - 86_400 * NS,
                 "by": "bench", "time": T0},
            )  # fmt: skip
            if lost:
                replay.record(
                    catalog,
                    {"type": "device", "device": f"D{d:03d}", "kind": "body_camera", "vendor": "Acme", "model": "X",
                     "serial": f"SN{d}", "unit": f"U{d % 50}", "status": "lost", "since": T0 + 3 * 3600 * NS,
                     "by": "bench", "time": T0},
                )  # fmt: skip
            mine = per + (d < extra)
            span = 6 * 3600 * NS // mine  # bench_report's recordings of one device span about 5 hours
            for k in range(mine):
                officer = f"{d:06d}" if k % 2 == 0 else f"{(d + 1) % devices:06d}"
                start = T0 + k * span
                replay.record(
                    catalog,
                    {"type": "device_assign", "device": f"D{d:03d}", "officer": officer, "start": start,
                     "end": start + span - 120 * NS, "by": "bench", "time": T0},
                )  # fmt: skip
    archive.checkpoint()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=2_000)
    ap.add_argument("--assignments", type=int, default=20_000)
    a = ap.parse_args()
    archive = init_archive(tempfile.mkdtemp() + "/archive")
    t = time.perf_counter()
    fill(archive, a.segments, devices=a.devices)
    register(archive, a.devices, a.assignments)
    rows = archive.catalog.registry.assignments()
    print(f"filled: {a.segments:,} segments, {a.devices:,} devices, {len(rows):,} assignments "
          f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
    t = time.perf_counter()
    section = build_report(archive, sections=("devices",))["devices"]
    devices_s = time.perf_counter() - t
    counts = {k: sum(u[k]["count"] for u in section["units"]) for k in ("lent", "unassigned", "lost", "unregistered")}
    print(f"  devices section alone   {devices_s:6.2f} s  {counts}")
    t = time.perf_counter()
    model = build_report(archive)
    model_s = time.perf_counter() - t
    print(f"  report model            {model_s:6.2f} s  ({len(model['findings']):,} findings)")
    t = time.perf_counter()
    buf = io.BytesIO()
    render_json(model, buf)
    json_s = time.perf_counter() - t
    print(f"  render json             {json_s:6.2f} s  ({len(buf.getvalue()) / 1e6:.1f} MB)")
    print(f"  total                   {model_s + json_s:6.2f} s  (target: under 30 s)")


if __name__ == "__main__":
    main()
