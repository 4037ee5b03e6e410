"""The Rust binding's errors: every class it names exists in custodes.errors,
and each core error reaches Python as its class, with a message naming what was wrong."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import custodes
from custodes import _core, errors, merkle

BINDING_SRC = Path(__file__).resolve().parents[1] / "rust" / "custodes-py" / "src"


def binding_class_names() -> set[str]:
    """Every string literal in the binding that names an ``...Error`` class."""
    names: set[str] = set()
    for source in sorted(BINDING_SRC.glob("*.rs")):
        names.update(re.findall(r'"([A-Z][A-Za-z0-9]*Error)"', source.read_text(encoding="utf-8")))
    return names


def test_every_class_the_binding_names_exists_in_custodes_errors() -> None:
    names = binding_class_names()
    # The binding raises at least these; an empty parse would prove nothing.
    assert {"EvidenceReadError", "EvidenceNotFoundError", "MerkleInputError", "UnknownAlgorithmError"} <= names
    for name in sorted(names):
        cls = getattr(errors, name, None)
        assert isinstance(cls, type), f"rust/custodes-py names {name}, which custodes.errors does not define"
        assert issubclass(cls, Exception) and issubclass(cls, errors.CustodesError), name
        assert name in errors.__all__, name


# custodes.errors without one class, then custodes._core imported (the package's own __init__ not run).
WITHOUT_A_CLASS = """
import sys, types
pkg = types.ModuleType("custodes")
pkg.__path__ = [sys.argv[1]]
sys.modules["custodes"] = pkg
import custodes.errors
del custodes.errors.MerkleInputError
import custodes._core
"""


def test_a_missing_class_fails_the_import_of_the_extension() -> None:
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_A_CLASS, custodes.__path__[0]], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "AttributeError" in out.stderr and "MerkleInputError" in out.stderr, out.stderr


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(str(i).encode()) for i in range(n)]


def test_inclusion_proof_of_a_leaf_past_the_end() -> None:
    with pytest.raises(errors.MerkleInputError, match=r"^leaf 5 is not in a tree of 5 leaves$") as caught:
        merkle.inclusion_proof(leaves(5), 5)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working
    assert caught.value.kind == "merkle_input"
    with pytest.raises(errors.MerkleInputError, match="leaf 0 is not in a tree of 0 leaves"):
        merkle.inclusion_proof([], 0)


def test_consistency_proof_from_a_size_the_log_does_not_have() -> None:
    for size1 in (0, 4):
        with pytest.raises(errors.MerkleInputError, match=rf"no consistency proof from size {size1} to 3"):
            merkle.consistency_proof(leaves(3), size1)


def test_malformed_merkle_hashes() -> None:
    with pytest.raises(errors.MerkleInputError, match="multiple of 32 bytes, not 33"):
        merkle.root([bytes(32), b"x"])
    with pytest.raises(errors.MerkleInputError, match="multiple of 32 bytes, not 31"):
        merkle.Accumulator().extend(bytes(31))
    with pytest.raises(errors.MerkleInputError, match="a Merkle hash is 32 bytes, not 5"):
        _core.merkle_verify_inclusion(b"short", 0, 1, [], bytes(32))
    with pytest.raises(errors.MerkleInputError, match="a Merkle hash is 32 bytes, not 0"):
        _core.merkle_verify_consistency(1, 2, [b""], bytes(32), bytes(32))
    # The public verifiers answer False to malformed input rather than raise.
    assert merkle.verify_inclusion(b"short", 0, 1, [], bytes(32)) is False


def test_probing_a_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.NotRegularFileError) as caught:
        custodes.probe(tmp_path)
    e = caught.value
    assert isinstance(e, errors.EvidenceReadError) and not isinstance(e, errors.HashingCancelledError)
    assert e.filename == str(tmp_path) and str(tmp_path) in str(e) and "directory" in str(e)
    assert e.kind == "not_regular_file"


def test_probing_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    with pytest.raises(errors.EvidenceNotFoundError) as caught:
        custodes.probe(missing)
    e = caught.value
    assert isinstance(e, FileNotFoundError) and e.errno == errno.ENOENT
    assert e.filename == str(missing) and str(e).startswith(f"{missing}: ")
    # probe_many returns the same exception in place of the file's facts.
    (result,) = custodes.probe_many([missing])
    assert isinstance(result, errors.EvidenceNotFoundError) and result.filename == str(missing)


def test_hashing_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    (result,) = custodes.hash_files([missing])
    assert isinstance(result.error, errors.EvidenceNotFoundError)
    assert result.error.filename == str(missing) and result.error.errno == errno.ENOENT
    with pytest.raises(errors.EvidenceNotFoundError) as caught:
        _core.copy_and_hash(missing, tmp_path / "copy.mp4", ["sha256"])
    assert caught.value.filename == str(missing) and str(missing) in str(caught.value)
    assert not (tmp_path / "copy.mp4").exists()


def test_hashing_a_directory(tmp_path: Path) -> None:
    (result,) = custodes.hash_files([tmp_path])
    assert isinstance(result.error, errors.NotRegularFileError) and result.error.filename == str(tmp_path)


@pytest.mark.parametrize("algorithms", [["nope"], []])
def test_unknown_algorithm(algorithms: list[str]) -> None:
    with pytest.raises(errors.UnknownAlgorithmError):
        _core.hash_bytes(algorithms, b"")
    with pytest.raises(errors.UnknownAlgorithmError):
        custodes.hash_files([], algorithms)


def test_timeline_columns_of_different_lengths() -> None:
    a, b = np.zeros(3, dtype=np.int64), np.zeros(2, dtype=np.int64)
    with pytest.raises(errors.TimelineInputError, match="differ in length"):
        _core.time_mismatch(a, b, 0)


def test_python_errors_pass_through_unchanged() -> None:
    # Not every failure is ours to class: a wrong argument type stays Python's TypeError.
    with pytest.raises(TypeError):
        _core.merkle_root("not bytes")  # type: ignore[arg-type]
