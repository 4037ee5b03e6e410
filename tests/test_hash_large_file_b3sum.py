"""One file hashed alone on several threads equals ``b3sum``.

A batch of fewer files than threads hashes a large file in BLAKE3 as the
subtrees of its tree, each read apart (``pread``) and merged in order. These
sizes sit on every boundary that scheme has: empty, one BLAKE3 chunk (1 KiB)
and either side of it, the size under which a file is read in one go (two
chunks of the engine's 1 MiB reads), its 1 MiB leaves, whole subtrees of
4 and 8 leaves and one byte past them, and a few MiB and one byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import custodes
from helpers import peer

KiB, MiB = 1024, 1 << 20
SIZES = [
    0,
    1,
    1023,
    1024,
    1025,
    2 * MiB - 1,
    2 * MiB,
    2 * MiB + 1,
    2 * MiB + 1023,
    2 * MiB + 1024,
    2 * MiB + 1025,
    2 * MiB + 256 * KiB,
    3 * MiB - 1,
    3 * MiB,
    4 * MiB,
    4 * MiB + 1,
    4 * MiB + 255 * KiB,
    5 * MiB + 1,
    7 * MiB + 1023,
    8 * MiB,
    8 * MiB + 1,
]


def pattern(n: int, seed: int) -> bytes:
    """Bytes that differ along the file, so a leaf hashed at the wrong offset or twice changes the digest."""
    block = bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(65_521))  # a prime: no alignment
    return (block * (n // len(block) + 1))[:n]


@pytest.mark.parametrize("threads", [2, 4])
def test_one_file_on_several_threads_equals_b3sum(tmp_path: Path, threads: int) -> None:
    files = []
    for i, n in enumerate(SIZES):
        p = tmp_path / f"f{i:02d}-{n}"
        p.write_bytes(pattern(n, i))
        files.append(p)
    out = peer("b3sum", *files)
    assert out.returncode == 0, out.stderr
    expected = {path: digest for digest, path in (line.split("  ", 1) for line in out.stdout.decode().splitlines())}
    for p in files:
        # One file per batch: fewer files than threads, the several-threads mode.
        (r,) = custodes.hash_files([p], ("blake3",), threads=threads)
        assert r.ok, r.error
        assert r.size == p.stat().st_size
        assert r.digests["blake3"] == expected[str(p)], p.name
