"""A catalog and ledger as 10^5-10^6 ingested recordings would leave them, filled in a minute or two through
custodes' own replay of ledger entries (benches/bench_report.py, benches/bench_scale.py --synthetic); no
object is stored, so it is the catalog at that size, not the store, that a bench then measures."""

from __future__ import annotations

import hashlib
import json
import random

from custodes.catalog import replay

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
