"""`custodes probe` against ffprobe and the androidx/media extractor dumps."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

import custodes
from custodes.findings import rfc3339
from footage import T0, make_clip
from helpers import DATA, FOOTAGE, run_cli

MEDIA = sorted(p for p in FOOTAGE.rglob("*") if p.suffix.lower() in (".mp4", ".mov", ".m4b"))
KIND = {"video": "video", "audio": "audio"}  # ffprobe calls everything else "data"


def ffprobe(path: Path) -> dict | None:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout or "{}")
    return data if "format" in data else None


@pytest.mark.parametrize("path", MEDIA, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_agrees_with_ffprobe(path: Path) -> None:
    info = custodes.probe(path)
    theirs = ffprobe(path)
    if theirs is None:  # ffprobe: "moov atom not found"
        assert not info.complete and any(f.kind == "no_moov" for f in info.findings)
        return
    fmt = theirs["format"]
    if "creation_time" in fmt.get("tags", {}):
        expected = datetime.fromisoformat(fmt["tags"]["creation_time"].replace("Z", "+00:00"))
        assert rfc3339(info.creation_time) == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        assert info.creation_time is None
    assert info.duration == pytest.approx(float(fmt["duration"]), abs=1e-3)
    assert len(info.tracks) == len(theirs["streams"])
    for ours, st in zip(info.tracks, theirs["streams"], strict=True):
        assert KIND.get(ours.kind, "data") == st["codec_type"]
        frames = st.get("nb_frames")
        expected_samples = int(frames) if frames not in (None, "N/A") else int(st["nb_read_packets"])
        assert ours.samples == expected_samples, (ours.id, ours.kind)
        if st.get("codec_tag_string") and not st["codec_tag_string"].startswith("[0]"):
            assert ours.codec == st["codec_tag_string"]
        if "timecode" in st.get("tags", {}) and ours.kind == "timecode":
            assert ours.timecode == st["tags"]["timecode"]


def test_fragmented_clip_made_by_ffmpeg(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "frag.mp4", T0, 3.0, audio=True, fragmented=True)
    info = custodes.probe(clip)
    theirs = ffprobe(clip)
    assert info.fragmented and info.complete and info.findings == []
    assert [t.samples for t in info.tracks] == [int(s["nb_read_packets"]) for s in theirs["streams"]]
    assert info.duration == pytest.approx(float(theirs["format"]["duration"]), abs=1e-3)
    for ours, st in zip(info.tracks, theirs["streams"], strict=True):
        assert ours.end == pytest.approx(float(st["start_time"]) + float(st["duration"]), abs=1e-3)
    assert info.tracks[0].frame_duration == pytest.approx(0.1)


def androidx_dump(name: str) -> list[tuple[int, list[int]]]:
    """(sample count, per-sample times in µs) per track of an androidx extractor dump."""
    tracks: list[tuple[int, list[int]]] = []
    for line in (DATA / "oracles" / "androidx-dumps" / f"{name}.0.dump").read_text().splitlines():
        if re.match(r"^track \d+:", line):
            tracks.append((0, []))
        elif (m := re.match(r"^\s+sample count = (\d+)", line)) and tracks:
            tracks[-1] = (int(m.group(1)), tracks[-1][1])
        elif (m := re.match(r"^\s+time = (-?\d+)", line)) and tracks:
            tracks[-1][1].append(int(m.group(1)))
    return tracks


@pytest.mark.parametrize(
    ("dump", "path"),
    [
        ("sample.mp4", FOOTAGE / "encoders" / "androidx-sample.mp4"),
        ("bt601.mov", FOOTAGE / "phones" / "bt601.mov"),
        ("sample_mdat_too_long.mp4", FOOTAGE / "broken" / "sample_mdat_too_long.mp4"),
    ],
)
def test_per_sample_times_agree_with_androidx(dump: str, path: Path) -> None:
    info = custodes.probe(path, samples=True)
    raw = custodes._core.probe_files([str(path)])[0]
    movie_ts = raw["movie"]["timescale"]
    expected = androidx_dump(dump)
    assert len(expected) == len(info.tracks)
    for track, raw_track, (count, times) in zip(info.tracks, raw["tracks"], expected, strict=True):
        delay, media_start = raw_track["edit_shift"]
        # Presentation time in µs, as the extractor computes it (edit list applied, floored).
        ours = [
            (delay * 1_000_000) // movie_ts + ((int(p) - media_start) * 1_000_000) // track.timescale for p in track.pts
        ]
        edit_end = next(((delay + d) * 1_000_000 // movie_ts for d, mt in raw_track["edits"] if mt >= 0), None)
        if edit_end is not None:  # samples the edit list does not present are dropped
            ours = [t for t in ours if t < edit_end]
        assert len(ours) == count == len(times)
        assert all(abs(a - b) <= 1 for a, b in zip(ours, times, strict=True)), (track.id, ours[:5], times[:5])


def test_broken_files_give_findings_never_exceptions() -> None:
    by_name = {p.name: custodes.probe(p) for p in (FOOTAGE / "broken").iterdir()}
    kinds = {n: {f.kind for f in i.findings} for n, i in by_name.items()}
    # Exactly these findings, no more: each one is what ffprobe says (or fails to say) about the file.
    assert kinds == {
        "go-mp4-sample_qt.mp4": {"truncated", "clock_unset"},  # ffprobe: decode errors; declares 596 s
        "large_stbl_truncated_after_moov.m4b": {"truncated", "clock_unset"},  # ffprobe: "partial file"
        "sample_malformed_free_box.mp4": {"malformed", "no_moov"},  # ffprobe cannot read it: "moov atom not found"
        "sample_mdat_too_long.mp4": {"truncated"},
        "sample_missing_stsd.mp4": set(),  # ffprobe reads it; only the audio codec is unknown
    }
    assert by_name["go-mp4-sample_qt.mp4"].missing_bytes > 38_000_000
    free_box = by_name["sample_malformed_free_box.mp4"]
    assert (
        free_box.tracks == []
        and free_box.duration is None
        and free_box.size == (FOOTAGE / "broken" / "sample_malformed_free_box.mp4").stat().st_size
    )
    assert [f.evidence.get("problem") for f in free_box.findings if f.kind == "malformed"] == ["malformed_box"]
    assert by_name["sample_missing_stsd.mp4"].tracks[1].codec is None
    assert not any(i.complete for n, i in by_name.items() if n != "sample_missing_stsd.mp4")


def test_two_clocks_in_one_iphone_file() -> None:
    info = custodes.probe(FOOTAGE / "phones" / "dolbyVision-hdr.MOV")
    sources = {c.source: rfc3339(c.time) for c in info.creation_times}
    assert sources["mvhd"] == "2023-05-09T11:48:30Z"
    assert sources["com.apple.quicktime.creationdate"] == "2023-05-09T11:41:46Z"


def test_gopro_timecode_location_and_av_offset() -> None:
    info = custodes.probe(FOOTAGE / "gopro" / "max-heromode.mp4")
    assert info.location == "+33.1268-117.3273/"
    assert [t.timecode for t in info.tracks if t.kind == "timecode"] == ["15:44:35:10"]
    assert info.av_offset_start == pytest.approx(0.0)
    assert info.av_offset_end == pytest.approx(10.5105 - 10.517333, abs=1e-4)


def test_slow_motion_decode_clumps_are_not_gaps() -> None:
    info = custodes.probe(FOOTAGE / "phones" / "sample_sef_slow_motion.mp4", samples=True)
    video = next(t for t in info.tracks if t.kind == "video")
    dts_steps = sorted(set(int(b) - int(a) for a, b in zip(video.pts, video.pts[1:], strict=False)))
    assert video.internal_gaps == [] and not [f for f in info.findings if f.kind == "internal_gap"]
    assert video.frame_duration == pytest.approx(1 / 30, rel=1e-3)
    assert len(dts_steps) > 1  # decode order really is irregular


def test_cli_probe_json_shape_and_exit_codes(tmp_path: Path) -> None:
    out = run_cli("probe", "--json", FOOTAGE / "encoders" / "androidx-sample.mp4")
    assert out.returncode == 0, out.stdout
    obj = json.loads(out.stdout)
    assert obj["creation_time"] == "2016-05-31T17:01:35Z" and obj["complete"] is True
    assert obj["duration"] == pytest.approx(1.024)
    assert [(t["kind"], t["codec"], t["samples"]) for t in obj["tracks"]] == [
        ("video", "avc1", 30),
        ("audio", "mp4a", 45),
    ]
    assert obj["findings"] == []
    broken = run_cli("probe", "--json", FOOTAGE / "broken" / "go-mp4-sample_qt.mp4", tmp_path / "missing.mp4", FOOTAGE)
    assert broken.returncode == 1
    objs = json.loads(broken.stdout)
    assert {f["kind"] for f in objs[0]["findings"]} == {"truncated", "clock_unset"}
    assert objs[1]["error"]["kind"] == "not_found" and objs[2]["error"]["kind"] == "not_regular_file"


def test_hostile_bytes_never_crash(tmp_path: Path) -> None:
    """Every truncation point and a sprinkle of corrupted bytes of a real file."""
    good = (FOOTAGE / "encoders" / "androidx-sample.mp4").read_bytes()
    moov = good.find(b"moov") - 4
    variants = [good[:n] for n in range(0, len(good), 997)]
    variants += [
        good[:moov] + good[moov : moov + 8] + bytes(b ^ 0xFF for b in good[moov + 8 : moov + 400]) + good[moov + 400 :]
    ]
    variants += [good[:moov] + b"\xff\xff\xff\xff" + good[moov + 4 :]]
    paths = []
    for i, v in enumerate(variants):
        p = tmp_path / f"v{i}.mp4"
        p.write_bytes(v)
        paths.append(p)
    results = custodes.probe_many(paths)
    assert len(results) == len(variants)
    assert all(isinstance(r, custodes.MediaInfo) for r in results)
    assert all(not r.complete for r in results[1:-3])  # every cut loses bytes or the index
    # ... and says so with a finding, never silently.
    assert all({f.kind for f in r.findings} & {"truncated", "no_moov", "malformed"} for r in results[:-3])
    assert {f.kind for f in results[0].findings} == {"no_moov"}  # the empty file
