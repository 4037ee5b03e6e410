"""Hostile volumes: clear findings, nothing read outside, nothing written."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from custodes.volumes import read_volume
from footage import T0, make_clip
from helpers import FOOTAGE


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under root with its mode, mtime and content digest: any write shows."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if os.path.isfile(p) and not os.path.islink(p) and os.access(p, os.R_OK):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            out[p] = (st.st_mode, st.st_mtime_ns, digest)
    return out


@pytest.mark.parametrize("driver", ["generic", "gat947", "gopro", "dji"])
def test_hostile_volume(tmp_path: Path, driver: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes((FOOTAGE / "encoders" / "go-mp4-sample.mp4").read_bytes())
    vol = tmp_path / "vol"
    make_clip(vol / "DCIM" / "001234_BWC0001_20240301180000_0001.MP4", T0)
    (vol / "DCIM" / "escape.mp4").symlink_to(outside / "secret.mp4")
    (vol / "DCIM" / "up").symlink_to("../../outside")
    (vol / "DCIM" / "..hidden..mp4").write_bytes(b"")  # a name full of dots, 0 bytes
    os.mkfifo(vol / "DCIM" / "pipe.mp4")
    raw = os.path.join(os.fsencode(vol / "DCIM"), b"clip-\xff\xfe.mp4")
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", raw)
    (vol / "EMPTY.MP4").write_bytes(b"")
    (vol / "GAT947_ID.TXT").write_bytes(b"\x00\xff garbage \x89PNG\r\n")
    (vol / "._DS_junk").write_bytes(b"\x00\x05\x16\x07appledouble")  # what macOS writes: skipped as noise
    (vol / "System Volume Information").mkdir()
    before = snapshot(tmp_path)
    reading = read_volume(vol, driver)
    assert snapshot(tmp_path) == before  # no file or folder written, renamed, re-moded or added
    assert not any("outside" in s.path and "secret" in s.path for s in reading.segments)
    by_kind: dict[str, list[str]] = {}
    for f in reading.findings:
        by_kind.setdefault(f.kind, []).append(os.path.basename(os.fsencode(f.path or "")).decode("utf-8", "replace"))
    assert sorted(by_kind["symlink"]) == ["escape.mp4", "up"]
    escape = next(f for f in reading.findings if f.kind == "symlink" and f.path.endswith("escape.mp4"))
    assert escape.evidence["outside"] is True
    assert by_kind["not_regular_file"] == ["pipe.mp4"]
    assert "clip-\ufffd\ufffd.mp4" in by_kind["odd_name"]
    assert "EMPTY.MP4" in by_kind["no_moov"] and "..hidden..mp4" in by_kind["no_moov"]
    assert sorted(reading.skipped) == ["._DS_junk", "System Volume Information"]
    names = {os.fsencode(s.path) for s in reading.segments}
    assert os.fsencode(raw) in names  # odd names are still evidence


def test_unreadable_file_on_a_volume_is_a_finding(tmp_path: Path) -> None:
    import subprocess
    import sys

    vol = tmp_path / "vol"
    make_clip(vol / "CLIP0001.mp4", T0)
    shutil.copy(vol / "CLIP0001.mp4", vol / "CLIP0002.mp4")
    (vol / "CLIP0002.mp4").chmod(0)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    out = subprocess.run([*prefix, sys.executable, "-m", "custodes", "volume", "--json", str(vol)], capture_output=True)
    import json

    reading = json.loads(out.stdout)
    assert out.returncode == 1
    (f,) = [f for f in reading["findings"] if f["kind"] == "unreadable"]
    assert f["path"].endswith("CLIP0002.mp4") and "permission denied" in f["message"]


def test_recordings_in_a_trash_or_under_a_noise_name_are_read_like_the_rest(tmp_path: Path) -> None:
    """Deleted recordings in .Trashes or $RECYCLE.BIN, and recordings renamed Thumbs.db or ._FILE.MP4, were
    skipped without a word (a hostile review); files of the desktops' own formats under those names still are."""
    vol = tmp_path / "CARD"
    for folder in ("DCIM/100MEDIA", ".Trashes/501", "DCIM/$RECYCLE.BIN", "System Volume Information"):
        (vol / folder).mkdir(parents=True)
    clip = FOOTAGE / "encoders" / "go-mp4-sample.mp4"
    recordings = [
        "DCIM/100MEDIA/FILE0001.MP4",
        ".Trashes/501/FILE0002.MP4",
        "DCIM/$RECYCLE.BIN/FILE0003.MP4",
        "DCIM/100MEDIA/._FILE0004.MP4",
        "DCIM/100MEDIA/Thumbs.db",
    ]
    for name in recordings:
        shutil.copy(clip, vol / name)
    (vol / "DCIM" / "._FILE0001.MP4").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (vol / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 60)
    (vol / "System Volume Information" / "IndexerVolumeGuid").write_bytes(b"x")
    reading = read_volume(vol, "generic")
    assert sorted(reading.skipped) == [".DS_Store", "DCIM/._FILE0001.MP4", "System Volume Information"]
    read = {os.path.relpath(s.path, vol) for s in reading.segments}
    assert read == set(recordings[:4])  # the four named as footage are recordings
    named = {os.path.relpath(f.path, vol) for f in reading.findings if f.path}
    assert "DCIM/100MEDIA/Thumbs.db" in named  # read, and said what it is (ingest stores it)


def test_entries_a_volume_does_not_store_are_a_bounded_number_of_findings(tmp_path: Path) -> None:
    """20,000 dangling links were 20,000 findings, 35 MB of catalog at every docking of the card, each costing
    whoever made the volume an inode only (a hostile review). The scanner keeps FINDINGS_PER_VOLUME of a kind and
    counts the rest in one more finding; the recordings on the volume are read as ever."""
    from custodes.drivers import FINDINGS_PER_VOLUME

    vol = tmp_path / "BWC0009"
    (vol / "links").mkdir(parents=True)
    for i in range(FINDINGS_PER_VOLUME + 250):
        os.symlink(f"/nonexistent/{i}", vol / "links" / f"l{i:05d}")
    os.mkfifo(vol / "pipe")
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", vol / "clip.mp4")
    r = read_volume(vol, driver="generic")
    links = [f for f in r.findings if f.kind == "symlink"]
    assert len(links) == FINDINGS_PER_VOLUME + 1
    assert links[0].path == str(vol / "links" / "l00000")  # the first ones, in the volume's order
    assert links[-1].evidence == {"left_out": 250} and links[-1].path == str(vol)
    assert links[-1].message.startswith("250 more symlink findings on this volume not listed")
    assert [f.path for f in r.findings if f.kind == "not_regular_file"] == [str(vol / "pipe")]  # under the cap
    assert [s.name for s in r.segments] == ["clip.mp4"]
