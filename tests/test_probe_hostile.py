"""Hostile containers through the real CLI (issue 10): every one a finding, never a
traceback, a hang or a machine's worth of memory.

Each file is either a real recording with one field damaged the way a bit flip
or a forger would (a version byte, a date) or a box structure the walker must
cap (many tracks, many boxes, deep nesting, counts far beyond the bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FOOTAGE, run_cli

ANDROIDX = FOOTAGE / "encoders" / "androidx-sample.mp4"
IPHONE = FOOTAGE / "phones" / "dolbyVision-hdr.MOV"
MEDIA = sorted(p for p in FOOTAGE.rglob("*") if p.suffix.lower() in (".mp4", ".mov", ".m4b"))
#: The walker's caps (rust/custodes-core/src/media.rs), as the findings state them.
MAX_TRACKS = 1024
MAX_CHILDREN = 100_000
MAX_PROBLEMS = 100


def box(typ: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def full_box(typ: bytes, version: int, payload: bytes) -> bytes:
    return box(typ, bytes([version, 0, 0, 0]) + payload)


FTYP = box(b"ftyp", b"isom\0\0\0\0isom")


def flip_version(src: Path, dst: Path, fourcc: bytes) -> Path:
    """A copy of ``src`` with the version byte of its first ``fourcc`` box set to 1 (it was 0)."""
    data = bytearray(src.read_bytes())
    at = data.index(fourcc) + 4
    assert data[at] == 0
    data[at] = 1
    dst.write_bytes(bytes(data))
    return dst


def probe_json(path: Path) -> tuple[int, dict, bytes]:
    r = run_cli("probe", "--json", path)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    return r.returncode, json.loads(r.stdout), r.stderr


def problems(doc: dict) -> list[str]:
    """The walker problems behind the `malformed` findings, in order."""
    return [f["evidence"]["problem"] for f in doc["findings"] if f["kind"] == "malformed"]


@pytest.mark.parametrize("fourcc", [b"mvhd", b"tkhd", b"mdhd"])
def test_version_byte_flipped_to_1_is_a_malformed_finding(tmp_path: Path, fourcc: bytes) -> None:
    bad = flip_version(ANDROIDX, tmp_path / "flipped.mp4", fourcc)
    code, doc, _ = probe_json(bad)
    assert code == 1
    name = fourcc.decode()
    out_of_range = [f for f in doc["findings"] if f["evidence"].get("problem") == "time_out_of_range"]
    assert out_of_range, doc["findings"]
    assert all(f["kind"] == "malformed" and f["path"] == str(bad) for f in out_of_range)
    assert f"'{name}' creation time of " in out_of_range[0]["message"]
    assert "treated as absent" in out_of_range[0]["message"]
    # The bad time is absent, not turned into some date: every time left is the real one
    # (the second track's headers are intact).
    assert doc["creation_times"] and {c["time"] for c in doc["creation_times"]} == {"2016-05-31T17:01:35Z"}
    if fourcc == b"mvhd":
        assert doc["creation_time"] is None
        assert "clock_unset" in [f["kind"] for f in doc["findings"]]
    _, good, _ = probe_json(ANDROIDX)
    assert [t["samples"] for t in good["tracks"]] == [30, 45]
    if fourcc == b"mdhd":
        # A version 0 mdhd is too short to be read as version 1: the time problem is
        # said first, then the video track is malformed (the audio track is intact).
        assert problems(doc) == ["time_out_of_range", "time_out_of_range", "malformed_track"]
        assert [t["samples"] for t in doc["tracks"]] == [45]
    else:
        # The samples are read as before: the damage is one header field.
        assert [t["samples"] for t in doc["tracks"]] == [30, 45]


def test_flipped_mvhd_through_volume_and_timeline(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    flip_version(ANDROIDX, vol / "flipped.mp4", b"mvhd")
    shutil.copy(ANDROIDX, vol / "good.mp4")
    for command in ("volume", "timeline"):
        r = run_cli(command, "--json", vol)
        assert b"Traceback" not in r.stderr, r.stderr.decode()
        assert r.returncode == 1, (command, r.stderr.decode())
        doc = json.loads(r.stdout)
        findings = doc["findings"]
        bad = [f for f in findings if f["kind"] == "malformed"]
        assert bad and {f["path"] for f in bad} == {str(vol / "flipped.mp4")}, (command, findings)
        assert {f["evidence"]["problem"] for f in bad} == {"time_out_of_range"}
        # The good recording beside it is read and placed as ever.
        assert not [f for f in findings if f["path"] == str(vol / "good.mp4") and f["kind"] == "malformed"]
    r = run_cli("volume", "--json", vol)
    segments = {Path(s["path"]).name: s for s in json.loads(r.stdout)["segments"]}
    assert segments["good.mp4"]["start"] == "2016-05-31T17:01:35Z"
    assert segments["flipped.mp4"]["start"] is None


def test_creation_date_in_year_9999_is_absent_and_a_finding(tmp_path: Path) -> None:
    data = IPHONE.read_bytes()
    assert data.count(b"2023-05-09T12:41:46+0100") == 1
    bad = tmp_path / "year9999.MOV"
    bad.write_bytes(data.replace(b"2023-05-09T12:41:46+0100", b"9999-05-09T12:41:46+0100"))
    code, doc, _ = probe_json(bad)
    assert code == 1
    (finding,) = [f for f in doc["findings"] if f["evidence"].get("problem") == "time_out_of_range"]
    assert finding["kind"] == "malformed" and finding["path"] == str(bad)
    assert finding["evidence"]["key"] == "com.apple.quicktime.creationdate"
    assert "'9999-05-09T12:41:46+0100'" in finding["message"]
    # The container's own clocks stand; only the bad text is absent.
    _, good, _ = probe_json(IPHONE)
    assert [c["source"] for c in good["creation_times"]][-1] == "com.apple.quicktime.creationdate"
    assert doc["creation_times"] == good["creation_times"][:-1]
    assert doc["creation_time"] == good["creation_time"] == "2023-05-09T11:48:30Z"


def test_fifo_is_not_a_regular_file_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    for args in (["probe", fifo], ["probe", "--json", fifo]):
        # A blocking open of a FIFO waits for a writer for ever: the timeout is the test.
        r = subprocess.run([sys.executable, "-m", "custodes", *map(str, args)], capture_output=True, timeout=60)
        assert r.returncode == 1
        assert b"Traceback" not in r.stderr
        if "--json" in args:
            doc = json.loads(r.stdout)
            assert doc["path"] == str(fifo) and doc["error"]["kind"] == "not_regular_file"
            assert doc["error"]["message"] == f"{fifo}: not a regular file: named pipe (FIFO)"
        else:
            assert r.stderr.decode() == f"custodes: {fifo}: not a regular file: named pipe (FIFO)\n"


def many_traks(path: Path, n: int) -> Path:
    """``n`` empty `trak` boxes in one `moov`: 8 bytes each (the issue's file has two million)."""
    body = box(b"trak") * n
    path.write_bytes(FTYP + struct.pack(">I4s", 8 + len(body), b"moov") + body)
    return path


def test_many_tracks_are_capped_with_findings(tmp_path: Path) -> None:
    f = many_traks(tmp_path / "traks.mp4", 200_000)
    code, doc, _ = probe_json(f)
    assert code == 1
    assert len(doc["tracks"]) == MAX_TRACKS
    assert problems(doc) == ["too_many_tracks", "malformed_moov"]
    messages = [x["message"] for x in doc["findings"] if x["kind"] == "malformed"]
    assert messages[0].startswith(
        f"too_many_tracks: {MAX_CHILDREN} 'trak' boxes (or more); custodes reads the first {MAX_TRACKS}"
    )
    assert messages[1] == f"malformed_moov: more than {MAX_CHILDREN} boxes inside 'moov'; the rest not read"
    assert all(x["path"] == str(f) for x in doc["findings"])


def test_deep_nesting_is_a_malformed_track(tmp_path: Path) -> None:
    inner = full_box(b"stts", 0, struct.pack(">I", 0))
    for _ in range(5000):
        inner = box(b"minf", inner)
    f = tmp_path / "deep.mp4"
    f.write_bytes(FTYP + box(b"moov", box(b"trak", box(b"mdia", inner))))
    code, doc, _ = probe_json(f)
    assert code == 1
    assert problems(doc) == ["malformed_track"]
    assert "boxes nested too deep" in doc["findings"][0]["message"]
    assert doc["tracks"] == []


def test_sample_counts_far_beyond_the_bytes_are_counted_not_expanded(tmp_path: Path) -> None:
    """1024 tracks, each a 16-byte `stts` declaring 2^32-1 samples: one budget per file."""
    stts = full_box(b"stts", 0, struct.pack(">III", 1, 0xFFFF_FFFF, 1))
    mdhd = full_box(b"mdhd", 0, struct.pack(">IIII", 0, 0, 1000, 0) + bytes(4))
    trak = box(
        b"trak",
        full_box(b"tkhd", 0, struct.pack(">III", 0, 0, 1) + bytes(80))
        + box(b"mdia", mdhd + box(b"minf", box(b"stbl", stts))),
    )
    f = tmp_path / "counts.mp4"
    f.write_bytes(FTYP + box(b"moov", trak * MAX_TRACKS))
    code, doc, _ = probe_json(f)
    assert code == 1
    assert problems(doc) == ["too_many_samples"]
    assert all(t["samples"] == 0xFFFF_FFFF for t in doc["tracks"])
    total = MAX_TRACKS * 0xFFFF_FFFF
    assert (
        doc["findings"][0]["message"]
        == f"too_many_samples: timing of {total - 10_000_000} samples not read: custodes reads 10000000 per file"
    )


def test_a_flood_of_bad_boxes_gives_a_bounded_list_of_findings(tmp_path: Path) -> None:
    """20,000 fragments for a track the movie does not declare: 100 findings and a count."""
    traf = box(b"traf", full_box(b"tfhd", 0, struct.pack(">I", 99)))
    f = tmp_path / "flood.mp4"
    f.write_bytes(FTYP + box(b"moov") + box(b"moof", traf * 20) * 1000)
    code, doc, _ = probe_json(f)
    assert code == 1
    assert problems(doc) == ["unknown_track"] * MAX_PROBLEMS + ["too_many_problems"]
    assert (
        doc["findings"][MAX_PROBLEMS]["message"]
        == f"too_many_problems: {20 * 1000 - MAX_PROBLEMS} more problems not listed"
    )


def test_real_footage_meets_no_cap_and_no_range_rule() -> None:
    """The caps and time ranges are far from anything a camera writes."""
    r = run_cli("probe", "--json", *MEDIA)
    assert b"Traceback" not in r.stderr
    new_rules = {
        "time_out_of_range",
        "too_many_tracks",
        "too_many_boxes",
        "too_many_samples",
        "too_many_problems",
        "malformed_offset",
        "malformed_metadata",
    }
    for doc in json.loads(r.stdout):
        hit = [f for f in doc["findings"] if f["evidence"].get("problem") in new_rules]
        assert hit == [], (doc["path"], hit)
