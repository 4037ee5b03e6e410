"""Device footage made with ffmpeg for tests: short clips with chosen clocks."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

T0 = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)


def make_clip(
    path: Path,
    start: datetime,
    seconds: float = 2.0,
    *,
    audio: bool = False,
    hole_at: float | None = None,
    hole: float = 1.0,
    fragmented: bool = False,
) -> Path:
    """An H.264 clip (10 fps) whose mvhd creation time is ``start``.

    ``hole_at``: from that second on, frames are shifted ``hole`` seconds
    later, leaving a hole in presentation time inside the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if hole_at is not None:
        args += ["-vf", f"setpts='if(gte(T,{hole_at}),PTS+{hole}/TB,PTS)'", "-fps_mode", "passthrough"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    if fragmented:  # fragments as live-streaming cameras write them: timing in moof/traf, defaults in trex
        args += ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]
    args += ["-metadata", f"creation_time={start.strftime('%Y-%m-%dT%H:%M:%S.000000Z')}", str(path)]
    subprocess.run(args, check=True, capture_output=True)
    return path


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
