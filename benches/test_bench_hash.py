"""pytest-benchmark suite for the hashing engine (off in the test run).

    .venv/bin/python -m pytest benches --benchmark-enable

Each algorithm is measured through the public API next to hashlib (OpenSSL)
on the same 256 MiB file, so the table shows the ratio.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import custodes

SIZE = 256 << 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("bench") / "clip.mp4"
    with open(p, "wb") as f:
        for _ in range(SIZE >> 20):
            f.write(os.urandom(1 << 20))
    return p


@pytest.mark.parametrize("algo", ["sha256", "blake3", "sm3", "md5"])
def test_custodes_hash_files(benchmark, clip: Path, algo: str) -> None:
    (r,) = benchmark(custodes.hash_files, [clip], (algo,))
    assert r.ok


def test_custodes_all_algorithms_one_pass(benchmark, clip: Path) -> None:
    (r,) = benchmark(custodes.hash_files, [clip], ("sha256", "blake3", "sm3", "md5"))
    assert len(r.digests) == 4


@pytest.mark.parametrize("algo", ["sha256", "sm3", "md5"])
def test_hashlib_peer(benchmark, clip: Path, algo: str) -> None:
    def run() -> str:
        h = hashlib.new(algo)
        with open(clip, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    assert benchmark(run) == custodes.hash_files([clip], (algo,))[0].digests[algo]
