"""A volume of thousands of files, read through the real CLI: every file exactly once, in byte order
of its name, each classified as what it is. At this size a file lost or listed twice by the walk,
the media split or a shared scan would show; speed itself is measured in benches/compare_volume.py."""

from __future__ import annotations

import json
import os
import shutil
import wave
from pathlib import Path

from footage import T0, make_clip
from helpers import run_cli

FOLDERS = 6
PER_FOLDER = 500  # 3,000 files


def make_volume(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A volume of clips, photos, recordings and logs spread over folders, with names that are not
    ASCII (UTF-8, and one that is not UTF-8) so byte order is not the order of the names as text.
    Returns the volume and each file's name relative to it with the kind it must be read as."""
    vol = tmp_path / "vol"
    clip = tmp_path / "clip.mp4"
    make_clip(clip, T0, 0.5)
    wav = tmp_path / "rec.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    kinds: dict[str, str] = {}
    for d in range(FOLDERS):
        folder = vol / "DCIM" / f"{100 + d}MEDIA"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            n = d * PER_FOLDER + i
            stem = ("Zé" if n % 7 == 0 else "CLIP") + f"{n:05d}"
            name, kind = [
                (f"{stem}.MP4", "video"),
                (f"{stem}.JPG", "photo"),
                (f"{stem}.wav", "audio"),
                (f"{stem}.TXT", None),
            ][n % 4]
            path = folder / name
            if kind == "video":
                os.link(clip, path)  # one clip's bytes under many names: the reading is per name
            elif kind == "audio":
                shutil.copyfile(wav, path)
            else:
                path.write_bytes(b"x" * (n % 50))
            kinds[str(path.relative_to(vol))] = kind or "unknown_file"
    # As text U+DCFF (the escaped byte 0xff) sorts before U+FF01; as bytes 0xff sorts after EF BC 81.
    odd, wide = os.fsdecode(b"DCIM/103MEDIA/CLIP\xff.JPG"), "DCIM/103MEDIA/CLIP\uff01.JPG"
    for name in (odd, wide):
        (vol / name).write_bytes(b"")
        kinds[name] = "photo"
    return vol, kinds


def byte_order(names: list[str]) -> list[str]:
    return sorted(names, key=os.fsencode)


def test_every_file_once_in_byte_order_classified(tmp_path: Path) -> None:
    vol, kinds = make_volume(tmp_path)
    out = run_cli("volume", "--driver", "generic", "--json", vol)
    assert out.returncode == 1, out.stderr  # the logs are unknown files: findings
    doc = json.loads(out.stdout)
    segments = doc["segments"]
    names = [s["name"] for s in segments]
    assert len(names) == len(set(names))  # nothing listed twice
    assert {s["name"]: s["kind"] for s in segments} == {n: k for n, k in kinds.items() if k != "unknown_file"}
    assert all(s["path"] == os.path.join(vol, s["name"]) for s in segments)
    # The recordings come first, then photos and audio, each group in byte order of the names.
    videos = [s["name"] for s in segments if s["kind"] == "video"]
    assert names[: len(videos)] == videos == byte_order(videos)
    assert names[len(videos) :] == byte_order(names[len(videos) :])
    assert all(s["start"] == "2024-03-01T10:00:00Z" for s in segments if s["kind"] == "video")
    assert all(s["extra"]["duration"] == 0.1 for s in segments if s["kind"] == "audio")
    unknown = [f["path"] for f in doc["findings"] if f["kind"] == "unknown_file"]
    assert unknown == byte_order(unknown)
    assert sorted(unknown) == sorted(str(vol / n) for n, k in kinds.items() if k == "unknown_file")
    # Every file is named exactly once between the segments and the unknown files; the only other
    # findings are about the one name that is not UTF-8.
    assert len(names) + len(unknown) == len(kinds) == FOLDERS * PER_FOLDER + 2
    others = [f for f in doc["findings"] if f["kind"] != "unknown_file"]
    assert [(f["kind"], f["path"]) for f in others] == [
        ("odd_name", os.fsdecode(os.fsencode(vol) + b"/DCIM/103MEDIA/CLIP\xff.JPG"))
    ]
