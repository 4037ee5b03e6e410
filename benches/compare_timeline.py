#!/usr/bin/env python3
"""The timeline engine on 10^7 segments over 10^4 devices, against pandas.

Generates a realistic fleet (each device records back to back with random
pauses, a few overlaps and missing file numbers), then times
``custodes.timeline.analyse`` and a vectorised pandas implementation of the
same gaps/overlaps/sequence-break rules, checks that both find the same
counts, and prints the ratio.

    .venv/bin/python benches/compare_timeline.py [--segments 10000000] [--devices 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from custodes import _core

NS = 1_000_000_000


def fleet(n: int, devices: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    device = np.sort(rng.integers(0, devices, n)).astype(np.int64)
    length = rng.integers(60, 600, n).astype(np.int64) * NS
    pause = rng.choice([0, 0, 0, 0, 2, 30, 600], n).astype(np.int64) * NS
    pause[rng.random(n) < 0.001] = -30 * NS  # a clock jump now and then: overlaps
    step = length + pause
    first = np.r_[True, device[1:] != device[:-1]]
    start = np.cumsum(step) - step
    start -= np.maximum.accumulate(np.where(first, start, 0))  # restart each device's clock
    start += 1_700_000_000 * NS
    end = start + length
    seq = np.cumsum(np.where(rng.random(n) < 0.0005, 2, 1)).astype(np.int64)
    shuffle = rng.permutation(n)  # arrive in no particular order
    return device[shuffle], start[shuffle], end[shuffle], seq[shuffle]


def pandas_analyse(device, start, end, seq, tol):
    df = pd.DataFrame({"device": device, "start": start, "end": end}).sort_values(
        ["device", "start", "end"], kind="stable"
    )
    reach = df.groupby("device", sort=False)["end"].cummax()
    prev_reach = reach.groupby(df["device"], sort=False).shift(1)
    has_prev = prev_reach.notna()
    gaps = int((has_prev & (df["start"] > prev_reach + tol)).sum())
    overlaps = int((has_prev & (df["start"] < prev_reach)).sum())
    s = pd.DataFrame({"device": device, "seq": seq}).sort_values(["device", "seq"], kind="stable")
    same = s["device"].eq(s["device"].shift(-1))
    breaks = int((same & (s["seq"].shift(-1) > s["seq"] + 1)).sum())
    return gaps, overlaps, breaks


def custodes_analyse(device, start, end, seq, tol):
    out = _core.analyse(device, start, end, seq, tol)
    return len(out["gaps"]["start"]), len(out["overlaps"]["start"]), len(out["sequence_breaks"]["device"])


def median_seconds(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=10_000_000)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cols = fleet(a.segments, a.devices)
    tol = 1 * NS
    ours_s, ours = median_seconds(lambda: custodes_analyse(*cols, tol), a.repeat)
    theirs_s, theirs = median_seconds(lambda: pandas_analyse(*cols, tol), a.repeat)
    assert ours == theirs, (ours, theirs)
    print(
        f"{a.segments:,} segments over {a.devices:,} devices: {ours[0]:,} gaps, {ours[1]:,} overlaps, "
        f"{ours[2]:,} sequence breaks"
    )
    print(f"  custodes timeline engine   {ours_s:7.2f} s")
    print(f"  pandas (vectorised)        {theirs_s:7.2f} s")
    print(f"  ratio                      {theirs_s / ours_s:7.1f}x")


if __name__ == "__main__":
    main()
