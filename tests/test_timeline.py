"""The timeline engine: ffmpeg-made device footage through the CLI, and
property tests of the engine against a plain reference implementation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import custodes
from custodes import timeline
from footage import T0, at, make_clip
from helpers import run_cli

NS = 1_000_000_000


def findings_of(*paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, list[dict]]:
    out = run_cli("timeline", "--json", *extra, *paths)
    return out.returncode, json.loads(out.stdout)["findings"]


def test_clean_footage_gives_no_findings(tmp_path: Path) -> None:
    cam = tmp_path / "BWC01"
    for i in range(3):
        make_clip(cam / f"CLIP{i + 1:04d}.mp4", at(2 * i), audio=(i == 0))
    code, found = findings_of(cam)
    assert (code, found) == (0, [])


def test_hole_in_pts_is_an_internal_gap(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "BWC02" / "CLIP0001.mp4", T0, 4.0, hole_at=2.0, hole=1.5)
    info = custodes.probe(clip)
    (video,) = info.tracks
    assert len(video.internal_gaps) == 1
    a, b = video.internal_gaps[0]
    assert a == pytest.approx(2.0, abs=0.11) and b == pytest.approx(3.5, abs=0.11)
    code, found = findings_of(clip.parent)
    assert code == 1 and [f["kind"] for f in found] == ["internal_gap"]
    assert found[0]["start"].startswith("2024-03-01T10:00:02")


def test_chapter_removed_is_a_gap_and_a_sequence_break(tmp_path: Path) -> None:
    cam = tmp_path / "BWC03"
    for i in (0, 1, 3, 4):  # chapter 0003 was deleted
        make_clip(cam / f"CH{i + 1:04d}.mp4", at(2 * i))
    code, found = findings_of(cam)
    assert code == 1
    assert sorted(f["kind"] for f in found) == ["gap", "sequence_break"]
    gap = next(f for f in found if f["kind"] == "gap")
    assert (gap["start"], gap["end"], gap["duration"]) == ("2024-03-01T10:00:04Z", "2024-03-01T10:00:06Z", 2.0)
    brk = next(f for f in found if f["kind"] == "sequence_break")
    assert brk["evidence"]["missing"] == [3] and brk["device"] == "BWC03"


def test_name_time_disagreeing_with_mvhd(tmp_path: Path) -> None:
    cam = tmp_path / "BWC04"
    make_clip(cam / "20240301180000_0001.mp4", T0)  # Beijing 18:00 = 10:00Z: agrees
    make_clip(cam / "20240301180502_0002.mp4", at(2))  # says 10:05:02Z, container 10:00:02Z
    code, found = findings_of(cam, extra=("--tz", "Asia/Shanghai"))
    assert code == 1 and [f["kind"] for f in found] == ["name_time_mismatch"]
    assert found[0]["path"].endswith("_0002.mp4") and found[0]["duration"] == 300.0


def test_overlap_unset_and_future_clocks(tmp_path: Path) -> None:
    cam = tmp_path / "BWC05"
    make_clip(cam / "A0001.mp4", T0, 4.0)
    make_clip(cam / "A0002.mp4", at(3))  # starts before the first ends
    make_clip(cam / "A0003.mp4", T0.replace(year=2000, month=1, day=1))
    make_clip(cam / "A0004.mp4", T0.replace(year=2035))  # mvhd v0 (32-bit) cannot say past 2040
    code, found = findings_of(cam, extra=("--gap-tolerance", "1e9"))
    assert code == 1
    kinds = sorted(f["kind"] for f in found)
    assert kinds == ["clock_future", "clock_unset", "overlap"]
    unset = next(f for f in found if f["kind"] == "clock_unset")
    assert unset["evidence"]["reason"] == "reset_2000-01-01"
    overlap = next(f for f in found if f["kind"] == "overlap")
    assert overlap["duration"] == 1.0


def test_truncated_clip_is_reported(tmp_path: Path) -> None:
    cam = tmp_path / "BWC06"
    clip = make_clip(cam / "CLIP0001.mp4", T0, 3.0)
    data = clip.read_bytes()
    (cam / "CLIP0002.mp4").write_bytes(data[: len(data) // 2])
    code, found = findings_of(cam)
    # ffmpeg writes moov last, so the cut file lost its index and half its mdat.
    assert code == 1 and sorted(f["kind"] for f in found) == ["no_moov", "truncated"]
    assert all(f["path"].endswith("CLIP0002.mp4") for f in found)
    truncated = next(f for f in found if f["kind"] == "truncated")
    assert truncated["evidence"]["missing_bytes"] > 0


def test_usage_errors(tmp_path: Path) -> None:
    assert run_cli("timeline", tmp_path, "--tz", "Mars/Olympus").returncode == 2
    assert run_cli("timeline").returncode == 2


# ---- property tests: the engine against a plain reference -------------------------------


def reference_analysis(dev, start, end, seq, tol):
    gaps, overlaps, breaks = [], [], []
    for d in sorted(set(dev)):
        idx = sorted((i for i in range(len(dev)) if dev[i] == d), key=lambda i: (start[i], end[i]))
        reach = None
        for i in idx:
            if reach is not None:
                if start[i] > reach + tol:
                    gaps.append((d, reach, start[i]))
                elif start[i] < reach:
                    overlaps.append((d, start[i], min(end[i], reach)))
                reach = max(reach, end[i])
            else:
                reach = end[i]
        numbers = sorted(seq[i] for i in idx if seq[i] >= 0)
        breaks += [(d, a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b > a + 1]
    return sorted(gaps), sorted(overlaps), sorted(breaks)


segment_lists = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1000), st.integers(0, 200), st.integers(-1, 30)), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(segment_lists, st.integers(0, 50))
def test_engine_matches_reference(rows, tol) -> None:
    dev = [f"dev{r[0]}" for r in rows]
    start = [r[1] for r in rows]
    end = [r[1] + r[2] for r in rows]
    seq = [r[3] for r in rows]
    out = timeline.analyse(dev, start, end, seq, gap_tolerance=tol)
    got_gaps = sorted(
        zip(out["gaps"]["device"].tolist(), out["gaps"]["start"].tolist(), out["gaps"]["end"].tolist(), strict=True)
    )
    got_over = sorted(
        zip(
            out["overlaps"]["device"].tolist(),
            out["overlaps"]["start"].tolist(),
            out["overlaps"]["end"].tolist(),
            strict=True,
        )
    )
    sb = out["sequence_breaks"]
    got_breaks = sorted(zip(sb["device"].tolist(), sb["last_seen"].tolist(), sb["next_seen"].tolist(), strict=True))
    assert (got_gaps, got_over, got_breaks) == reference_analysis(dev, start, end, seq, tol)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 300), st.integers(0, 80)), max_size=40),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300), st.integers(0, 150)), min_size=1, max_size=8),
)
def test_coverage_matches_reference(segs, tasks) -> None:
    covs = timeline.coverage(
        [s[0] for s in segs],
        [s[1] for s in segs],
        [s[1] + s[2] for s in segs],
        [t[0] for t in tasks],
        [t[1] for t in tasks],
        [t[1] + t[2] for t in tasks],
    )
    for (d, ts, length), cov in zip(tasks, covs, strict=True):
        te = ts + length
        covered = np.zeros(max(te - ts, 0), dtype=bool)
        for sd, ss, sl in segs:
            if sd == d:
                covered[max(ss, ts) - ts : max(min(ss + sl, te) - ts, 0)] = True
        assert cov.covered == int(covered.sum())
        holes, i = [], 0
        while i < len(covered):
            if not covered[i]:
                j = i
                while j < len(covered) and not covered[j]:
                    j += 1
                holes.append((ts + i, ts + j))
                i = j
            else:
                i += 1
        assert cov.uncovered == holes


def test_engine_rejects_bad_columns() -> None:
    with pytest.raises(custodes.TimelineInputError, match="ends before it starts"):
        timeline.analyse(["a"], [10], [5])
    with pytest.raises(custodes.TimelineInputError, match="differ in length"):
        timeline.coverage(["a"], [0], [1, 2], ["a"], [0], [1])


def test_clock_correction_between_dockings() -> None:
    # Device 10 s slow at the first docking, 40 s slow at the second, 3000 s later.
    d0 = int(T0.timestamp()) * NS
    corrected = timeline.correct_times(
        [d0, d0 + 1500 * NS, d0 + 3000 * NS], [d0, d0 + 3000 * NS], [d0 + 10 * NS, d0 + 3040 * NS]
    )
    assert (corrected - np.array([d0, d0 + 1500 * NS, d0 + 3000 * NS])).tolist() == [10 * NS, 25 * NS, 40 * NS]


def test_name_time_and_sequence_number() -> None:
    assert timeline.name_time("001234_BWC9_20240301180000_0007IMP.MP4", "Asia/Shanghai") == int(T0.timestamp()) * NS
    assert timeline.name_time("clip.mp4") is None
    assert timeline.sequence_number("CLIP0007.MP4") == 7
    assert timeline.sequence_number("20240301180000.mp4") == -1
    assert timeline.sequence_number("h265_clip.mp4") == -1


def test_files_given_one_by_one(tmp_path: Path) -> None:
    cam = tmp_path / "BWC07"
    for i in (0, 1, 3):
        make_clip(cam / f"CH{i + 1:04d}.mp4", at(2 * i))
    make_clip(cam / "CH0009.mp4", T0.replace(year=2000, month=1, day=1))  # not asked about
    code, found = findings_of(cam / "CH0001.mp4", cam / "CH0002.mp4", cam / "CH0004.mp4")
    assert code == 1
    assert sorted(f["kind"] for f in found) == ["gap", "sequence_break"]
    assert all(f["device"] == "BWC07" for f in found)
    code, found = findings_of(cam / "CH0001.mp4", cam / "CH0002.mp4")
    assert (code, found) == (0, [])
    assert run_cli("timeline", tmp_path / "nope.mp4").returncode == 2


def test_clock_checks_agree_with_the_engine_at_every_boundary() -> None:
    """A probe checks each file's time through the engine's list binding (timeline.clock_state, clock_ahead: no
    numpy at start-up); they must answer as the engine's clock_unset and clock_future columns do, at each
    floor, each reset epoch and a year after it, and the ends of int64."""
    from custodes import _core

    lo, hi = -(2**63), 2**63 - 1
    year = 366 * 86_400 * NS
    edges = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    for epoch, _ in _core.clock_reset_epochs():
        edges += [epoch - 1, epoch, epoch + 1, epoch + year - 1, epoch + year, epoch + year + 1]
    # The last floor is past 2195, where the engine's t - epoch once wrapped around int64 and named a time near
    # the end of int64 a 1904 reset.
    for floor in (timeline.DEFAULT_CLOCK_FLOOR, 0, 946_684_800 * NS + 100 * 86_400 * NS, lo, 2**62, hi):
        times = sorted({t for t in [*edges, floor - 1, floor, floor + 1] if lo <= t <= hi})
        engine = _core.clock_unset(np.array(times, dtype=np.int64), floor).tolist()
        assert [timeline.clock_state(t, floor) for t in times] == engine, floor
        assert {1, 2, 3, 4} & set(engine) or floor <= 0  # the floors above do reach the reset names
    for reference, tolerance in ((20, 10), (20, 0), (hi - 5, 10), (lo + 5, -10), (0, hi), (hi, hi)):
        times = sorted(
            {
                t
                for t in [*edges, reference + tolerance - 1, reference + tolerance, reference + tolerance + 1]
                if lo <= t <= hi
            }
        )
        engine = _core.clock_future(np.array(times, dtype=np.int64), reference, tolerance).tolist()
        assert [timeline.clock_ahead(t, reference, tolerance) for t in times] == engine, (reference, tolerance)
