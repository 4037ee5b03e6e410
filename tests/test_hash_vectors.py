"""Published test vectors, through the public API with real files on disk.

The Rust crate checks the same vectors in memory; here each message is a file
hashed by ``custodes.hash_files``, so reading, chunking, threading and the
numpy boundary are all exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import custodes
from helpers import DATA

VECTORS = DATA / "vectors"


def cavp(name: str) -> list[tuple[bytes, str]]:
    out, length, msg = [], 0, b""
    for line in (VECTORS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("Len = "):
            length = int(line[6:]) // 8
        elif line.startswith("Msg = "):
            msg = bytes.fromhex(line[6:])[:length]  # "Msg = 00" stands for the empty message
        elif line.startswith("MD = "):
            out.append((msg, line[5:]))
    return out


def hash_messages(tmp_path: Path, messages: list[bytes], algorithm: str) -> list[str]:
    paths = []
    for i, m in enumerate(messages):
        p = tmp_path / f"m{i:04d}"
        p.write_bytes(m)
        paths.append(p)
    results = custodes.hash_files(paths, (algorithm,))
    assert all(r.ok for r in results)
    assert [r.size for r in results] == [len(m) for m in messages]
    return [r.digests[algorithm] for r in results]


@pytest.mark.parametrize(("name", "count"), [("SHA256ShortMsg.rsp", 65), ("SHA256LongMsg.rsp", 64)])
def test_nist_sha256(tmp_path: Path, name: str, count: int) -> None:
    vectors = cavp(name)
    assert len(vectors) == count
    assert hash_messages(tmp_path, [m for m, _ in vectors], "sha256") == [md for _, md in vectors]


def test_blake3_official(tmp_path: Path) -> None:
    cases = json.loads((VECTORS / "blake3_test_vectors.json").read_text())["cases"]
    assert len(cases) == 35
    messages = [bytes(i % 251 for i in range(c["input_len"])) for c in cases]
    assert hash_messages(tmp_path, messages, "blake3") == [c["hash"][:64] for c in cases]


def test_sm3_gbt32905(tmp_path: Path) -> None:
    # GB/T 32905-2016 Appendix A, examples 1 and 2.
    assert hash_messages(tmp_path, [b"abc", b"abcd" * 16], "sm3") == [
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
    ]


def test_md5_rfc1321(tmp_path: Path) -> None:
    assert hash_messages(tmp_path, [b"", b"abc", b"message digest"], "md5") == [
        "d41d8cd98f00b204e9800998ecf8427e",
        "900150983cd24fb0d6963f7d28e17f72",
        "f96b697d7cb7938d525a2f31aaf161d0",
    ]


def test_unknown_algorithm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(custodes.UnknownAlgorithmError, match="sha1") as e:
        custodes.hash_files([tmp_path], ("sha1",))
    assert isinstance(e.value, ValueError) and isinstance(e.value, custodes.CustodesError)
