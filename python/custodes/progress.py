"""Progress on stderr: throughput and time left, for people at a terminal.

One wrapper for every command. It stays silent when stderr is not a terminal
(pipes, CI, cron) or with ``--quiet``, and shows nothing for runs shorter than
``delay`` seconds, so quick commands print only their result.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from custodes.hashing import HashProgress

__all__ = ["ProgressLine", "human_bytes"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ProgressLine:
    """A self-overwriting status line; call it with each :class:`HashProgress`."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.delay = delay
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, p: HashProgress) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        if elapsed < self.delay:
            return
        rate = p.bytes_done / elapsed if elapsed > 0 else 0.0
        left = f"ETA {_clock((p.bytes_total - p.bytes_done) / rate)}" if rate > 0 and p.bytes_total else "ETA --"
        line = (
            f"{human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)}  "
            f"{human_bytes(rate)}/s  {left}  ({p.files_done}/{p.files_total} files)"
        )
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
