"""Digests of the real footage equal those of independent tools.

sha256sum (coreutils), b3sum (the BLAKE3 team's tool), md5sum, and OpenSSL's
SM3 for the Chinese national algorithm.
"""

from __future__ import annotations

from pathlib import Path

import custodes
from helpers import peer


def peer_digests(tool: list[str], files: list[Path]) -> dict[str, str]:
    out = peer(*tool, *files)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    if tool[0] == "openssl":  # "SM3(path)= hex"
        return {line.split("(", 1)[1].rsplit(")= ", 1)[0]: line.rsplit("= ", 1)[1] for line in lines}
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def test_footage_digests_match_peer_tools(footage_files: list[Path]) -> None:
    results = custodes.hash_files(footage_files, ("sha256", "blake3", "sm3", "md5"))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    expected = {
        "sha256": peer_digests(["sha256sum"], footage_files),
        "blake3": peer_digests(["b3sum"], footage_files),
        "md5": peer_digests(["md5sum"], footage_files),
        "sm3": peer_digests(["openssl", "dgst", "-sm3"], footage_files),
    }
    for r in results:
        assert r.size == Path(r.path).stat().st_size
        for algo, table in expected.items():
            assert r.digests[algo] == table[r.path], (algo, r.path)


def test_threads_do_not_change_results(footage_files: list[Path]) -> None:
    one = custodes.hash_files(footage_files, ("sha256",), threads=1)
    many = custodes.hash_files(footage_files, ("sha256",), threads=4)
    assert one == many
