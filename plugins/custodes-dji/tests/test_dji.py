"""The DJI driver on the real sidecars in tests/data and an ffmpeg-made video."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from custodes.findings import rfc3339
from custodes.volumes import read_volume
from custodes_dji import parse_srt
from footage import make_clip
from helpers import FOOTAGE

DRONES = FOOTAGE / "drones"


def test_three_sidecar_layouts() -> None:
    utc = ZoneInfo("UTC")
    mavic, ok = parse_srt((DRONES / "mavic_air2.srt").read_text(), utc)
    assert ok and len(mavic) == 25
    assert rfc3339(mavic[0].wall) == "2022-05-01T15:01:58.531Z"
    assert (mavic[0].lat, mavic[0].lon, mavic[0].alt) == (41.420684, 2.162162, 27.3)
    p4p, ok = parse_srt((DRONES / "p4p_sample.SRT").read_text(), utc)
    assert ok and len(p4p) == 5 and p4p[0].wall is None
    assert (p4p[0].lat, p4p[0].lon) == (47.4692, 8.2090)  # the SRT says GPS (longitude, latitude, ...)
    cut, ok = parse_srt((DRONES / "broken_incomplete.SRT").read_text(), utc)
    assert not ok and len(cut) == 20
    assert rfc3339(cut[0].wall) == "2017-07-03T10:15:03Z" and (cut[0].lat, cut[0].lon) == (-34.7383, -58.4563)


def test_volume_with_video_and_orphan_sidecars(tmp_path: Path) -> None:
    vol = tmp_path / "MAVIC"
    vol.mkdir()
    shutil.copy(DRONES / "mavic_air2.srt", vol / "DJI_0004.SRT")
    make_clip(vol / "DJI_0004.MP4", datetime(2022, 5, 1, 15, 1, 58, tzinfo=UTC), 1.0)
    shutil.copy(DRONES / "p4p_sample.SRT", vol / "DJI_0002.SRT")
    shutil.copy(DRONES / "broken_incomplete.SRT", vol / "DJI_0003.SRT")
    r = read_volume(vol)
    assert r.driver == "dji" and r.identity.kind == "drone"
    (video,) = r.segments
    assert video.start_source == "sidecar" and rfc3339(video.start) == "2022-05-01T15:01:58.531Z"
    assert video.location == "+41.4207+002.1622+27.300/" and video.sidecars == ("DJI_0004.SRT",)
    kinds = sorted((f.kind, Path(f.path).name) for f in r.findings)
    assert kinds == [
        ("malformed", "DJI_0003.SRT"),
        ("orphan_sidecar", "DJI_0002.SRT"),
        ("orphan_sidecar", "DJI_0003.SRT"),
    ]
    orphan = next(f for f in r.findings if f.kind == "orphan_sidecar" and f.path.endswith("0003.SRT"))
    assert orphan.evidence["first_fix"] == "-34.7383-058.4563+19.000/"


def test_local_time_zone_option(tmp_path: Path) -> None:
    vol = tmp_path / "DRONE"
    vol.mkdir()
    shutil.copy(DRONES / "mavic_air2.srt", vol / "DJI_0001.SRT")
    r = read_volume(vol, options={"tz": "Europe/Madrid"})  # the sample was flown near Barcelona
    (orphan,) = r.findings
    assert rfc3339(orphan.start) == "2022-05-01T13:01:58.531Z"
