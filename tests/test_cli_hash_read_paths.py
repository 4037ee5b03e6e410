"""`custodes hash` agrees with b3sum and sha256sum on both of the engine's fast read paths: a folder of many
small files (one reused buffer per worker, one read per file) and one file of many chunks (hashed on several
cores in BLAKE3 mode, a reader thread feeding it)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from helpers import peer, run_cli

#: BLAKE3's several-cores mode reads 2 MiB at a time (2 x the 1 MiB chunk): this file is several such reads
#: and a ragged end that is neither a BLAKE3 chunk (1 KiB) nor a page.
MULTI_CHUNK = 12 * (2 << 20) + 1_234_567


@pytest.fixture
def many_small_files(tmp_path: Path) -> list[str]:
    """300 files in nested folders, sizes around the page and buffer edges (shuffled, so a short file often
    follows a long one in the same worker's buffer), plus two larger than the 1 MiB buffer; in walk order."""
    rng = random.Random(14)
    sizes = [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2_500_001]
    sizes += [rng.randrange(1, 9000) for _ in range(300 - len(sizes))]
    rng.shuffle(sizes)
    root = tmp_path / "vol"
    for k, size in enumerate(sizes):
        folder = root / f"{k % 7:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{k:04d}.jpg").write_bytes(rng.randbytes(size))
    return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


@pytest.mark.parametrize(("algo", "tool"), [("blake3", "b3sum"), ("sha256", "sha256sum")])
@pytest.mark.parametrize("workers", [[], ["-j1"], ["-j3"]])
def test_many_small_files_match_the_peer_tool(
    many_small_files: list[str], algo: str, tool: str, workers: list[str]
) -> None:
    root = Path(many_small_files[0]).parent.parent
    out = run_cli("hash", "--algo", algo, *workers, root)
    assert out.returncode == 0, out.stderr
    theirs = peer(tool, *many_small_files)
    assert theirs.returncode == 0
    assert out.stdout.count(b"\n") == 300
    assert out.stdout == theirs.stdout


@pytest.fixture
def multi_chunk_file(tmp_path: Path) -> Path:
    big = tmp_path / "long-shift.mp4"
    big.write_bytes(random.Random(3).randbytes(MULTI_CHUNK))
    return big


@pytest.mark.parametrize("workers", [[], ["-j1"], ["-j4"]])
def test_one_multi_chunk_file_matches_b3sum_and_sha256sum(multi_chunk_file: Path, workers: list[str]) -> None:
    # Alone, then with SHA-256 in the same run: every digest gets every byte once.
    alone = run_cli("hash", "--algo", "blake3", *workers, multi_chunk_file)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == peer("b3sum", multi_chunk_file).stdout
    both = run_cli("hash", "--json", "--algo", "sha256", "--algo", "blake3", *workers, multi_chunk_file)
    assert both.returncode == 0, both.stderr
    (entry,) = json.loads(both.stdout)["files"]
    assert entry["size"] == MULTI_CHUNK
    assert entry["digests"] == {
        "sha256": peer("sha256sum", multi_chunk_file).stdout.split()[0].decode(),
        "blake3": peer("b3sum", multi_chunk_file).stdout.split()[0].decode(),
    }


def test_a_multi_chunk_file_checks_against_a_b3sum_list(multi_chunk_file: Path, tmp_path: Path) -> None:
    listing = tmp_path / "b3.txt"
    listing.write_bytes(peer("b3sum", multi_chunk_file).stdout)
    assert run_cli("hash", "--check", listing, "--algo", "blake3").stdout == f"{multi_chunk_file}: OK\n".encode()
    with open(multi_chunk_file, "r+b") as f:  # one bit flipped in the last wide read
        f.seek(MULTI_CHUNK - 10)
        b = f.read(1)
        f.seek(MULTI_CHUNK - 10)
        f.write(bytes([b[0] ^ 1]))
    out = run_cli("hash", "--check", listing, "--algo", "blake3")
    assert out.returncode == 1
    assert out.stdout == f"{multi_chunk_file}: FAILED\n".encode()
