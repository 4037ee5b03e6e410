"""The GoPro driver on the real GoPro samples and on ffmpeg-made chapters."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from custodes.volumes import read_volume
from custodes_gopro import gpmf_items, gps_time
from footage import T0, make_clip
from helpers import FOOTAGE, run_cli


def card(tmp_path: Path) -> Path:
    vol = tmp_path / "GOPRO-CARD"
    (vol / "DCIM" / "100GOPRO").mkdir(parents=True)
    (vol / "MISC").mkdir()
    (vol / "MISC" / "version.txt").write_text('{\n"camera type":"MAX",\n"camera serial number":"C3261325012345",\n}')
    return vol


def test_gps_clock_of_the_real_max_file(tmp_path: Path) -> None:
    vol = card(tmp_path)
    shutil.copy(FOOTAGE / "gopro" / "max-heromode.mp4", vol / "DCIM" / "100GOPRO" / "GH010001.MP4")
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", vol / "DCIM" / "100GOPRO" / "GH010002.MP4")
    r = read_volume(vol)
    assert r.driver == "gopro"
    assert (r.identity.device_id, r.identity.model, r.identity.vendor) == ("C3261325012345", "MAX", "GoPro")
    (reading,) = r.clock_readings  # karma.mp4 has no GPS lock: no reading, no guess
    assert reading.source == "gps"
    # mvhd says 15:45:32 "UTC" (local time, in fact); GPS says 23:45:14 UTC.
    assert reading.offset == -28782.0
    max_seg = r.segments[0]
    assert max_seg.extra["zone_offset_hours"] == -8.0 and max_seg.extra["clock_error_seconds"] == 18.0
    assert max_seg.start_source == "gps" and max_seg.location == "+33.1268-117.3273/"
    assert (max_seg.recording, max_seg.chapter, max_seg.sequence) == ("0001", 1, 1)


def test_gpmf_walk_finds_gpsu_and_survives_garbage() -> None:
    data = (FOOTAGE / "gopro" / "max-heromode.mp4").read_bytes()
    start = data.find(b"DEVC")
    sample = data[start : start + 6188]
    assert gps_time(sample) == 1574120714 * 10**9  # 2019-11-18T23:45:14Z
    assert any(k == b"GPS5" for k, _, _ in gpmf_items(sample))
    assert sample.find(b"GPSU") == 4832
    for cut in (0, 7, 100, 3000, 4840):
        assert gps_time(sample[:cut]) is None  # cut off before (or inside) GPSU: no time, and no exception
    assert gps_time(b"DEVC\x00\x01\xff\xff" + b"\x00" * 16) is None  # a size pointing past the end


def test_chapters_group_into_recordings_and_a_missing_chapter_is_reported(tmp_path: Path) -> None:
    vol = card(tmp_path)
    d = vol / "DCIM" / "100GOPRO"
    for chapter in (1, 2, 4):  # chapter 3 of recording 0007 is gone
        make_clip(d / f"GH{chapter:02d}0007.MP4", T0 + timedelta(seconds=2 * (chapter - 1)))
    make_clip(d / "GH010009.MP4", T0 + timedelta(seconds=60))  # recording 0008 is gone too
    out = run_cli("timeline", "--json", "--option", "tz=UTC", vol)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    segs = [(s["recording"], s["chapter"]) for s in report["segments"]]
    assert segs == [("0007", 1), ("0007", 2), ("0007", 4), ("0009", 1)]
    kinds = sorted(f["kind"] for f in report["findings"])
    assert kinds == ["gap", "gap", "sequence_break", "sequence_break"]
    chapter_break = next(
        f for f in report["findings"] if f["kind"] == "sequence_break" and "recording" in f["evidence"]
    )
    assert chapter_break["evidence"]["missing_chapters"] == [3]
    file_break = next(f for f in report["findings"] if f["kind"] == "sequence_break" and "missing" in f["evidence"])
    assert file_break["evidence"]["missing"] == [8]


def test_sidecars_are_the_files_beside_each_chapter(tmp_path: Path) -> None:
    """A chapter's thumbnail (.THM) and low-resolution copy (.LRV) are its sidecars when they are
    files on the card; a link in their place is a finding, never a sidecar, and a chapter without
    them has none."""
    vol = card(tmp_path)
    d = vol / "DCIM" / "100GOPRO"
    for number in (1, 2, 3):
        make_clip(d / f"GH01000{number}.MP4", T0 + timedelta(seconds=60 * number))
    (d / "GH010001.THM").write_bytes(b"thumbnail")
    (d / "GL010001.LRV").write_bytes(b"low resolution")
    (d / "GH010002.THM").symlink_to(d / "GH010001.THM")
    out = run_cli("volume", "--json", vol)
    assert out.returncode == 1  # the link is a finding
    reading = json.loads(out.stdout)
    assert reading["driver"] == "gopro"
    assert {s["name"]: s["sidecars"] for s in reading["segments"]} == {
        "DCIM/100GOPRO/GH010001.MP4": ["DCIM/100GOPRO/GH010001.THM", "DCIM/100GOPRO/GL010001.LRV"],
        "DCIM/100GOPRO/GH010002.MP4": [],
        "DCIM/100GOPRO/GH010003.MP4": [],
    }
    assert [(f["kind"], Path(f["path"]).name) for f in reading["findings"]] == [("symlink", "GH010002.THM")]
