"""The load bench of the review page (benches/bench_web_load.py) still works: run for a few seconds with a handful
of sessions against a small archive it builds by real ingests, served by a real ``custodes serve --http``, it
requests every kind of page, streams ranges, and no request fails. No timing is asserted: CI machines differ,
and the bench's own figures are for benches/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benches" / "bench_web_load.py"
#: The page kinds the bench's browsing sessions request (its PAGES), and the streaming sessions' two.
KINDS = {
    "dashboard",
    "devices",
    "device",
    "recording",
    "tasks",
    "task",
    "access",
    "api_segments",
    "api_segment",
    "api_findings",
    "api_devices",
    "view",
    "range",
}


def test_the_load_bench_requests_every_page_kind_without_an_error(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    args = ["--archive", tmp_path / "archive", "--segments", "40", "--browsers", "3", "--streamers", "2"]
    args += ["--seconds", "6", "--warmup", "0", "--think", "0.05", "--json-out", figures]
    ran = subprocess.run([sys.executable, BENCH, *map(str, args)], capture_output=True, timeout=600)
    assert ran.returncode == 0, (ran.stdout.decode(), ran.stderr.decode())
    f = json.loads(figures.read_text())
    assert f["errors"] == 0 and f["first_errors"] == [] and f["server_exit"] == 0
    requested = {kind for kind, s in f["kinds"].items() if s["requests"] > 0}
    assert requested >= KINDS, KINDS - requested
    assert all(s["errors"] == 0 for s in f["kinds"].values())
    assert f["kinds"]["all pages"]["requests"] == sum(
        s["requests"] for kind, s in f["kinds"].items() if kind not in ("all pages", "view", "range")
    )
    assert f["rss_mib"]["samples"] and min(f["rss_mib"]["samples"]) > 0  # the server's, read while it ran
    assert f["config"]["segments"] == 40 + 5  # the BIG device's files and the five real recordings
