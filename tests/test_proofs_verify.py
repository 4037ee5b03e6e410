"""custodes.proofs.verify: the JSON `custodes ledger proof` prints, checked offline with the trusted key alone.
A good proof is accepted and says what it proved; each way of altering it (the entry, the key, the signature,
the index, an element of the audit path, the consistency part) is refused with its own message."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from custodes import proofs
from custodes.ledger import VerifierKey, canonical_json
from custodes.proofs import ProofError, VerifiedProof
from helpers import THREE_RECORDINGS, build_cli_archive, catalog_rows, run_cli


@pytest.fixture(scope="module")
def cli_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One archive for the module (the tests only read it): three recordings, segments 1-3."""
    return build_cli_archive(tmp_path_factory.mktemp("proofs") / "archive", recordings=THREE_RECORDINGS)


def proof_of(arch: Path, *args: str) -> dict[str, Any]:
    out = run_cli("ledger", "proof", arch, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def key_text(arch: Path) -> str:
    return (arch / "keys" / "checkpoint.vkey").read_text().strip()


def test_a_good_proof_is_accepted_and_says_what_it_proved(cli_archive: Path) -> None:
    proof = proof_of(cli_archive, "--segment", "2", "--from-size", "1")
    (ledger_index,) = catalog_rows(cli_archive, "SELECT ledger_seq FROM segments WHERE id = 2")[0]
    (size, root) = catalog_rows(cli_archive, "SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    (entry,) = catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE seq = ?", (ledger_index,))[0]
    key = key_text(cli_archive)
    for given, trusted in ((json.dumps(proof), key), (proof, VerifierKey.parse(key))):  # text or dict; key or text
        proven = proofs.verify(given, trusted_key=trusted)
        assert isinstance(proven, VerifiedProof)
        assert (proven.index, proven.tree_size, proven.root, proven.entry_bytes) == (ledger_index, size, root, entry)
        assert (proven.entry or {})["type"] == "ingest" and (proven.entry or {})["segment"] == 2
        assert (proven.extends_size, proven.extends_root) == (1, bytes.fromhex(proof["consistency"]["root1"]))
    only_root = proofs.verify(proof_of(cli_archive, "--from-size", "2"), trusted_key=key)
    assert (only_root.index, only_root.entry, only_root.tree_size, only_root.extends_size) == (None, None, size, 2)


def _retyped_entry(p: dict[str, Any]) -> None:
    entry = dict(p["inclusion"]["entry"], size=1)  # the recording said to be 1 byte long
    p["inclusion"]["entry"] = entry
    p["inclusion"]["entry_base64"] = base64.b64encode(canonical_json(entry)).decode()


def _shown_entry(p: dict[str, Any]) -> None:
    p["inclusion"]["entry"]["name"] = "other.mp4"  # what a reader sees, not what is proven


def _forged_signature(p: dict[str, Any]) -> None:
    body, _, sig = p["checkpoint"].partition("\n\n")
    dash, name, blob = sig.strip().split(" ")
    raw = base64.b64decode(blob)
    forged = raw[:4] + bytes(b ^ 0x55 for b in raw[4:])  # the right key id, another signature
    p["checkpoint"] = f"{body}\n\n{dash} {name} {base64.b64encode(forged).decode()}\n"


def _index_past_the_tree(p: dict[str, Any]) -> None:
    p["inclusion"]["index"] = p["tree_size"]


def _another_index(p: dict[str, Any]) -> None:
    p["inclusion"]["index"] -= 1


def _path_element(p: dict[str, Any]) -> None:
    h = p["inclusion"]["proof"][0]
    p["inclusion"]["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]


def _consistency(p: dict[str, Any]) -> None:
    p["consistency"]["root1"] = "00" * 32


def _root(p: dict[str, Any]) -> None:
    p["root"] = "00" * 32


PATH = "the audit path does not lead from the entry at index {index} to the signed root: an element of the path "
PATH += "was altered, or the path is of another tree"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            _retyped_entry,
            "the entry does not hash to the proof's leaf hash: the entry or the leaf hash was altered",
        ),
        (_shown_entry, "the entry shown (inclusion entry) is not the entry proven (inclusion entry_base64)"),
        (
            _forged_signature,
            "checkpoint: checkpoint signature does not verify: the note was altered or signed by another key",
        ),
        (_index_past_the_tree, "inclusion index {size} is not in the signed tree of {size} entries"),
        (
            _another_index,
            "the audit path proves the entry at index {index}, not at index {other}: the index was altered",
        ),
        (_path_element, PATH),
        (
            _consistency,
            "the consistency proof does not show the signed tree of {size} entries extends the tree of 1 entries "
            "with root1",
        ),
        (_root, "the proof's tree_size or root is not the signed checkpoint's"),
    ],
    ids=lambda x: x.__name__.strip("_") if callable(x) else "",
)
def test_an_altered_proof_is_refused_saying_what_failed(cli_archive: Path, tamper: Any, message: str) -> None:
    proof = proof_of(cli_archive, "--segment", "2", "--from-size", "1")
    proofs.verify(proof, trusted_key=key_text(cli_archive))  # as printed: good
    index, size = proof["inclusion"]["index"], proof["tree_size"]
    tamper(proof)
    with pytest.raises(ProofError) as e:
        proofs.verify(json.dumps(proof), trusted_key=key_text(cli_archive))
    assert str(e.value) == message.format(index=index, size=size, other=index - 1)


def test_a_proof_checked_with_another_archives_key_is_refused(cli_archive: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert run_cli("init", other).returncode == 0
    proof = proof_of(cli_archive, "--segment", "1")
    wrong = VerifierKey.parse(key_text(other))
    with pytest.raises(ProofError) as e:
        proofs.verify(proof, trusted_key=wrong)
    assert str(e.value) == f"checkpoint: checkpoint carries no signature by {wrong.name}"
    with pytest.raises(ProofError) as e:  # the same name, another key: the key id does not match
        proofs.verify(proof, trusted_key=VerifierKey(VerifierKey.parse(key_text(cli_archive)).name, wrong.public))
    assert str(e.value) == f"checkpoint: checkpoint carries no signature by {proof['checkpoint'].split(chr(10))[0]}"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "{not json",
            "the proof is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[]", "not a proof from `custodes ledger proof`: no signed checkpoint in it"),
        ({"checkpoint": 5}, "not a proof from `custodes ledger proof`: no signed checkpoint in it"),
    ],
)
def test_what_is_not_a_proof_is_refused(cli_archive: Path, given: Any, message: str) -> None:
    with pytest.raises(ProofError) as e:
        proofs.verify(given, trusted_key=key_text(cli_archive))
    assert str(e.value) == message


def test_the_library_takes_the_key_as_text_and_refuses_a_negative_entry(cli_archive: Path, tmp_path: Path) -> None:
    """Through the library, as an agency tool pins the key the README asks it to keep: verify and
    verify_ledger_only took only the internal key types (its text, as init printed it, failed with an
    AttributeError), and ledger_proof(entry=-1) ended in a bare AssertionError (a hostile review)."""
    from custodes.archive import open_archive
    from custodes.ledger import LedgerError
    from custodes.verify import verify, verify_ledger_only

    good, wrong = key_text(cli_archive), key_text(build_cli_archive(tmp_path / "other"))
    fingerprint = json.loads(run_cli("ledger", "verify", cli_archive, "--json").stdout)["trust"]["fingerprint"]
    with open_archive(cli_archive) as a:
        vkey = cli_archive / "keys" / "checkpoint.vkey"
        for key in (good, fingerprint, str(vkey), vkey):  # (a Path was taken for a key object: "untrusted")
            assert verify_ledger_only(a, trusted_key=key).ok, key
        with pytest.raises(TypeError):
            verify_ledger_only(a, trusted_key=good.encode())  # type: ignore[arg-type]
        assert verify(a, trusted_key=good).trust is not None
        assert "untrusted_key" in {f.kind for f in verify_ledger_only(a, trusted_key=wrong).findings}
        with pytest.raises(LedgerError, match="an entry is its index in the ledger, 0 or more"):
            proofs.ledger_proof(a, entry=-1)
