"""Fixed boundary examples beside the random property tests: each rule's
edge, exactly at it and one nanosecond past it. A comparison turned from
``>`` into ``>=`` (or back) fails here every time, not by chance of a seed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import custodes.ingest
from custodes import merkle, timeline
from custodes.archive import init_archive
from custodes.ingest import ingest
from custodes.volumes import read_volume
from footage import T0, make_clip

NS = 1_000_000_000
S = 10 * NS  # a segment start well after the epoch


def gaps_and_overlaps(
    starts: list[int], ends: list[int], tolerance: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    r = timeline.analyse(["cam"] * len(starts), starts, ends, gap_tolerance=tolerance)
    gaps = [(int(a), int(b)) for a, b in zip(r["gaps"]["start"], r["gaps"]["end"], strict=True)]
    overlaps = [(int(a), int(b)) for a, b in zip(r["overlaps"]["start"], r["overlaps"]["end"], strict=True)]
    return gaps, overlaps


@pytest.mark.parametrize("tolerance", [0, 1, NS, 5 * NS])
def test_a_gap_exactly_at_the_tolerance_is_no_gap_one_ns_more_is(tolerance: int) -> None:
    end = S + 2 * NS
    assert gaps_and_overlaps([S, end + tolerance], [end, end + tolerance + NS], tolerance) == ([], [])
    assert gaps_and_overlaps([S, end + tolerance + 1], [end, end + tolerance + NS], tolerance) == (
        [(end, end + tolerance + 1)],
        [],
    )


def test_touching_segments_at_tolerance_zero_are_neither_gap_nor_overlap() -> None:
    a, b, c = S, S + NS, S + 2 * NS
    assert gaps_and_overlaps([a, b], [b, c], 0) == ([], [])
    # One nanosecond apart is a gap of one nanosecond; one nanosecond over is an overlap of one.
    assert gaps_and_overlaps([a, b + 1], [b, c], 0) == ([(b, b + 1)], [])
    assert gaps_and_overlaps([a, b - 1], [b, c], 0) == ([], [(b - 1, b)])


def test_segment_findings_use_the_same_edge() -> None:
    segs = [timeline.Segment("cam", "1.mp4", S, S + NS), timeline.Segment("cam", "2.mp4", S + 2 * NS, S + 3 * NS)]
    assert timeline.segment_findings(segs, gap_tolerance=NS) == []
    (gap,) = timeline.segment_findings(segs, gap_tolerance=NS - 1)
    assert (gap.kind, gap.start, gap.end) == ("gap", S + NS, S + 2 * NS)


def test_coverage_of_a_window_covered_exactly_to_its_edges() -> None:
    (cov,) = timeline.coverage(["cam"], [S], [S + 10 * NS], ["cam"], [S], [S + 10 * NS])
    assert cov.covered == 10 * NS and cov.uncovered == []
    (cov,) = timeline.coverage(["cam"], [S + 1], [S + 10 * NS - 1], ["cam"], [S], [S + 10 * NS])
    assert cov.covered == 10 * NS - 2 and cov.uncovered == [(S, S + 1), (S + 10 * NS - 1, S + 10 * NS)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13])
def test_inclusion_proof_holds_only_at_its_own_index(n: int) -> None:
    leaves = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]
    root = merkle.root(leaves)
    for i in range(n):
        proof = merkle.inclusion_proof(leaves, i)
        assert merkle.verify_inclusion(leaves[i], i, n, proof, root)
        # The right leaf and the right proof at any other in-range index is refused.
        assert [j for j in range(n) if j != i and merkle.verify_inclusion(leaves[i], j, n, proof, root)] == []


def _volume_and_end(tmp_path: Path) -> tuple[Path, int]:
    vol = tmp_path / "BWC0007"
    make_clip(vol / "CLIP0001.mp4", T0, 2.0)
    reading = read_volume(vol, None, {})
    (seg,) = [s for s in reading.segments if s.end is not None]
    return vol, seg.end


@pytest.mark.parametrize("past_deadline_ns, late", [(0, False), (1, True)])
def test_late_ingest_at_the_deadline_and_one_ns_past_it(
    tmp_path: Path, past_deadline_ns: int, late: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol, end = _volume_and_end(tmp_path)
    archive = init_archive(tmp_path / "archive")
    try:
        deadline = round(archive.policy.ingest_deadline_hours * 3600 * NS)
        monkeypatch.setattr(custodes.ingest, "_clock", lambda: end + deadline + past_deadline_ns)
        result = ingest(archive, vol)
        kinds = [f.kind for f in result.findings]
        assert kinds.count("late_ingest") == (1 if late else 0), kinds
        assert result.stored == ["CLIP0001.mp4"]
    finally:
        archive.close()


def test_an_hour_early_is_not_late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol, end = _volume_and_end(tmp_path)
    archive = init_archive(tmp_path / "archive")
    try:
        monkeypatch.setattr(custodes.ingest, "_clock", lambda: end + int(timedelta(hours=1).total_seconds()) * NS)
        result = ingest(archive, vol)
        assert [f.kind for f in result.findings] == []
    finally:
        archive.close()
