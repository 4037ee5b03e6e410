"""Bench corpora: large files of random bytes, written once and reused."""

from __future__ import annotations

import json
import os
from pathlib import Path

MiB = 1 << 20


def corpus_sizes(total_mib: int) -> list[int]:
    """File sizes (MiB) from 64 MiB up to 1 GiB summing to about ``total_mib``."""
    sizes, size = [], 64
    while sum(sizes) + size <= total_mib:
        sizes.append(size)
        size = min(size * 2, 1024)
    if not sizes:
        sizes = [total_mib]
    return sizes


def build_corpus(root: Path, total_mib: int) -> list[Path]:
    """Random-content files under ``root/data`` (random, so no file system compresses them)."""
    data = root / "data"
    spec = corpus_sizes(total_mib)
    stamp = root / "corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return sorted(data.iterdir())
    data.mkdir(parents=True, exist_ok=True)
    for old in data.iterdir():
        old.unlink()
    for i, size in enumerate(spec):
        with open(data / f"clip{i:02d}_{size}MiB.mp4", "wb") as f:
            for _ in range(size):
                f.write(os.urandom(MiB))
    stamp.write_text(json.dumps(spec))
    return sorted(data.iterdir())
