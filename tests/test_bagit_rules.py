"""BagIt in full (issue 10): `custodes bag validate` agrees with RFC 8493 / the 0.97 draft, as bagit-python does,
and a malformed bag is INVALID with a reason naming the file and line, never a traceback.

Bags come from bagit-python (``bagit.make_bag``) or are made by hand here, one per rule; custody cases start from
a real export (the ``case_bag`` fixture of conftest.py).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bagit
import pytest

from helpers import FOOTAGE, PEOPLE, as_, person_folder, request, run_cli

SECRET = b"the secret outside the bag\n"
FIRST = hashlib.sha256(b"first\n").hexdigest()


def validate(bag: Path) -> tuple[int, str]:
    """`custodes bag validate BAG`: exit code and stdout; never a traceback."""
    out = run_cli("bag", "validate", bag)
    assert b"Traceback" not in out.stderr and b"Traceback" not in out.stdout, out.stderr.decode()
    return out.returncode, out.stdout.decode()


def validate_json(bag: Path) -> tuple[int, dict]:
    out = run_cli("bag", "validate", bag, "--json")
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    return out.returncode, json.loads(out.stdout)


def bagit_python_valid(bag: Path) -> bool:
    out = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bag)], capture_output=True, timeout=120)
    return out.returncode == 0


def hand_bag(
    root: Path,
    payload: dict[str, bytes],
    algos: tuple[str, ...] = ("sha256",),
    version: str = "1.0",
    encoding: str = "utf-8",
    prefix: str = "",
) -> Path:
    """A bag written by hand, byte by byte, as the spec reads: payload under data/, one manifest per algorithm
    (paths percent-encoded, ``prefix`` before each), bagit.txt, bag-info.txt with Payload-Oxum, tag manifests."""
    root.mkdir()
    for rel, data in payload.items():
        (root / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / rel).write_bytes(data)
    for algo in algos:
        lines = "".join(
            f"{hashlib.new(algo, data).hexdigest()}  {prefix}data/{encode(rel)}\n"
            for rel, data in sorted(payload.items())
        )
        (root / f"manifest-{algo}.txt").write_bytes(lines.encode(encoding))
    (root / "bagit.txt").write_bytes(
        f"BagIt-Version: {version}\nTag-File-Character-Encoding: {encoding.upper()}\n".encode()
    )
    oxum = f"{sum(len(d) for d in payload.values())}.{len(payload)}"
    (root / "bag-info.txt").write_bytes(f"Source-Organization: Hand\nPayload-Oxum: {oxum}\n".encode(encoding))
    retag(root, algos, encoding)
    return root


def encode(rel: str) -> str:
    return rel.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def retag(root: Path, algos: tuple[str, ...] = ("sha256",), encoding: str = "utf-8") -> None:
    """Rewrite the tag manifests over every tag file (so a test can change one and keep the bag consistent)."""
    for old in root.glob("tagmanifest-*.txt"):
        old.unlink()
    tags = sorted(
        p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] != "data"
    )
    for algo in algos:
        lines = "".join(
            f"{hashlib.new(algo, p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n" for p in tags
        )
        (root / f"tagmanifest-{algo}.txt").write_bytes(lines.encode(encoding))


def outside_fifo(tmp_path: Path) -> Path:
    """A FIFO outside the bag: opening it would hang the validator, so a finished run proves it was never read."""
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    return fifo


# --- bags written by bagit-python ---------------------------------------------------------------------------------


def test_bagit_python_bags_with_every_hashlib_algorithm(tmp_path: Path) -> None:
    algos = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]
    bag = tmp_path / "bag"
    (bag / "sub").mkdir(parents=True)
    (bag / "statement.txt").write_bytes(b"witness statement\n")
    (bag / "sub" / "notes.txt").write_bytes(b"officer notes\n")
    bagit.make_bag(str(bag), {"Contact-Name": "Custodian"}, checksums=algos)
    assert bagit_python_valid(bag)
    rc, report = validate_json(bag)
    assert (rc, report["valid"], report["version"], report["files"]) == (0, True, "0.97", 2), report
    (bag / "data" / "sub" / "notes.txt").write_bytes(b"officer notez\n")  # same size: only the digests can tell
    rc, out = validate(bag)
    assert rc == 1 and not bagit_python_valid(bag)
    for algo in algos:
        assert f"invalid: data/sub/notes.txt: {algo} does not match manifest-{algo}.txt" in out
    assert "statement.txt" not in out


def test_bagit_python_utf16_manifests_declared_utf8_are_invalid(tmp_path: Path) -> None:
    # bagit.make_bag(encoding="utf-16") writes UTF-16 manifests under a bagit.txt that declares UTF-8
    # (bagit-python itself then dies with UnicodeDecodeError): an invalid bag, and custodes says why.
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "statement.txt").write_bytes(b"witness statement\n")
    with pytest.raises(UnicodeDecodeError):
        bagit.make_bag(str(bag), checksums=["sha256", "sha512"], encoding="utf-16")
    assert (bag / "manifest-sha256.txt").read_bytes().startswith(codecs.BOM_UTF16_LE)
    rc, out = validate(bag)
    assert rc == 1
    for name in ("manifest-sha256.txt", "manifest-sha512.txt"):
        assert f"invalid: {name} line 1: is not valid UTF-8 (byte 0), the encoding bagit.txt declares" in out


def test_utf16_tag_files_with_byte_order_mark(tmp_path: Path) -> None:
    bag = hand_bag(
        tmp_path / "bag", {"a.txt": b"first\n", "dir/b.txt": b"second\n"}, ("sha256", "sha512"), encoding="utf-16"
    )
    assert (bag / "manifest-sha256.txt").read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    assert (bag / "bagit.txt").read_bytes().endswith(b"Tag-File-Character-Encoding: UTF-16\n")
    assert bagit_python_valid(bag)
    rc, report = validate_json(bag)
    assert (rc, report["valid"], report["files"]) == (0, True, 2), report
    (bag / "data" / "a.txt").write_bytes(b"First\n")
    rc, out = validate(bag)
    assert rc == 1 and "invalid: data/a.txt: sha256 does not match manifest-sha256.txt" in out


def test_utf8_byte_order_mark_tolerated_in_tag_files_but_not_in_bagit_txt(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n"})
    info = bag / "bag-info.txt"
    info.write_bytes(codecs.BOM_UTF8 + info.read_bytes())  # bagit-python warns and accepts; so does custodes
    retag(bag)
    assert bagit_python_valid(bag)
    assert validate(bag)[0] == 0
    decl = bag / "bagit.txt"
    decl.write_bytes(codecs.BOM_UTF8 + decl.read_bytes())  # RFC 8493 §2.1.1: the declaration never has one
    retag(bag)
    assert not bagit_python_valid(bag)
    rc, out = validate(bag)
    assert rc == 1 and "invalid: bagit.txt: starts with a byte-order mark" in out


def test_manifest_paths_with_leading_dot_slash(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n", "dir/b.txt": b"second\n"}, ("sha256",), prefix="./")
    assert b"  ./data/dir/b.txt\n" in (bag / "manifest-sha256.txt").read_bytes()
    assert bagit_python_valid(bag)
    rc, report = validate_json(bag)
    assert (rc, report["valid"], report["files"]) == (0, True, 2), report


def test_percent_encoded_cr_lf_and_percent_in_paths(tmp_path: Path) -> None:
    names = {
        "line\nbreak.txt": b"lf\n",
        "carriage\rreturn.txt": b"cr\n",
        "100%.txt": b"pct\n",
        "literal%0A.txt": b"the name holds the three characters %0A\n",
    }
    bag = hand_bag(tmp_path / "bag", names, ("sha256",))
    manifest = (bag / "manifest-sha256.txt").read_text()
    for written in ("data/line%0Abreak.txt", "data/carriage%0Dreturn.txt", "data/100%25.txt", "data/literal%250A.txt"):
        assert f"  {written}\n" in manifest
    rc, report = validate_json(bag)
    assert (rc, report["valid"], report["files"]) == (0, True, 4), report
    # percent-decoding is one pass: %250A is "%0A" in the name, never a line feed
    (bag / "data" / "literal%0A.txt").rename(bag / "data" / "literal\n.txt")
    rc, out = validate(bag)
    assert rc == 1 and "invalid: data/literal%0A.txt: listed in manifest-sha256.txt but missing" in out
    assert "invalid: data/literal\\n.txt: in data/ but not in manifest-sha256.txt" in out


def test_every_payload_file_in_every_manifest_in_1_0_at_least_one_in_0_97(tmp_path: Path) -> None:
    for version, expected in (("1.0", 1), ("0.97", 0)):
        bag = hand_bag(
            tmp_path / version, {"a.txt": b"first\n", "b.txt": b"second\n"}, ("sha256", "sha512"), version=version
        )
        manifest = bag / "manifest-sha512.txt"
        manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines() if "b.txt" not in line))
        retag(bag, ("sha256", "sha512"))
        rc, out = validate(bag)
        assert rc == expected, out
        assert ("invalid: data/b.txt: in data/ but not in manifest-sha512.txt" in out) == (version == "1.0")


# --- paths that leave the bag are errors and never read -------------------------------------------------------------


def test_fetch_entries_leaving_the_payload_are_invalid(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n"})
    (bag / "fetch.txt").write_text("https://example.org/a.txt 6 data/a.txt\n")
    retag(bag)
    assert bagit_python_valid(bag)
    assert validate(bag)[0] == 0
    (bag / "fetch.txt").write_text(
        "https://example.org/a.txt 6 data/a.txt\n"
        "https://example.org/p 10 /etc/passwd\n"
        "https://example.org/q 10 data/../../outside.txt\n"
        "https://example.org/r - ~/.bashrc\n"
        "https://example.org/s 10 ./data/../bagit.txt\n"
    )
    retag(bag)
    assert not bagit_python_valid(bag)
    rc, out = validate(bag)
    assert rc == 1
    assert "invalid: fetch.txt line 2: path '/etc/passwd' is an absolute path, which leaves the bag" in out
    assert "invalid: fetch.txt line 3: path 'data/../../outside.txt' climbs out with .., which leaves the bag" in out
    assert "invalid: fetch.txt line 4: path '~/.bashrc' starts with ~ (a home folder), which leaves the bag" in out
    assert "invalid: fetch.txt line 5: path './data/../bagit.txt' climbs out with .." in out
    assert "line 1" not in out
    (bag / "fetch.txt").write_text("https://example.org/a.txt 6 data/a.txt\nhttps://example.org/c.txt 6 data/c.txt\n")
    retag(bag)
    rc, out = validate(bag)
    assert (
        rc == 1
        and out.count("invalid: ") == 1
        and "invalid: fetch.txt: data/c.txt is not in manifest-sha256.txt" in out
    )


def test_fetch_entry_not_yet_fetched_names_fetch_txt(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n", "big.mp4": b"later\n"})
    (bag / "data" / "big.mp4").unlink()
    (bag / "fetch.txt").write_text("https://example.org/big.mp4 6 data/big.mp4\n")
    retag(bag)
    rc, out = validate(bag)
    assert rc == 1
    assert "invalid: data/big.mp4: listed in manifest-sha256.txt but missing: listed in fetch.txt, fetch it" in out


def test_tag_manifest_path_outside_the_bag_is_an_error_and_never_read(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n"})
    fifo = outside_fifo(tmp_path)  # opening it for reading would block the validator for ever
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    (bag / "escape").symlink_to(secret)  # a link inside the bag that leads out of it
    digest = hashlib.sha256(SECRET).hexdigest()
    tag = bag / "tagmanifest-sha256.txt"
    tag.write_text(
        tag.read_text() + f"{digest}  ../secret.fifo\n{digest}  {fifo}\n{digest}  escape\n{digest}  ../secret.txt\n"
    )
    rc, out = validate(bag)
    assert rc == 1
    assert (
        "invalid: tagmanifest-sha256.txt line 4: path '../secret.fifo' climbs out with .., "
        "which leaves the bag; not read" in out
    )
    assert (
        f"invalid: tagmanifest-sha256.txt line 5: path '{fifo}' is an absolute path, which leaves the bag; not read"
        in out
    )
    assert "invalid: escape: tag file leads outside the bag (a symbolic link); not read (tagmanifest-sha256.txt)" in out
    assert "invalid: tagmanifest-sha256.txt line 7: path '../secret.txt' climbs out" in out
    assert digest not in out


def test_payload_manifest_path_outside_the_bag_is_an_error_and_never_read(tmp_path: Path) -> None:
    bag = hand_bag(tmp_path / "bag", {"a.txt": b"first\n"})
    fifo = outside_fifo(tmp_path)
    (bag / "data" / "leak.mp4").symlink_to(fifo)
    (bag / "data" / "pipe").mkdir()
    os.mkfifo(bag / "data" / "pipe" / "inside.fifo")  # a FIFO in the payload is not read either
    manifest = bag / "manifest-sha256.txt"
    manifest.write_text(manifest.read_text() + f"{'0' * 64}  data/../../secret.fifo\n{'0' * 64}  data/leak.mp4\n")
    retag(bag)
    rc, out = validate(bag)
    assert rc == 1
    assert "invalid: manifest-sha256.txt line 2: path 'data/../../secret.fifo' climbs out with .." in out
    assert "invalid: data/leak.mp4: leads outside the bag (a symbolic link); not read" in out
    assert "invalid: data/pipe/inside.fifo: is not a regular file (a FIFO, socket or device); not read" in out


# --- every other malformed shape: a problem with file and line -----------------------------------------------------


def test_malformed_tag_files_are_invalid_with_file_and_line(tmp_path: Path) -> None:
    cases: list[tuple[str, bytes, str]] = [
        (
            "bagit.txt",
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: KLINGON\n",
            "invalid: bagit.txt line 2: Tag-File-Character-Encoding 'KLINGON' is not a character encoding",
        ),
        (
            "bagit.txt",
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: base64\n",
            "invalid: bagit.txt line 2: Tag-File-Character-Encoding 'base64' is not a character encoding",
        ),
        (
            "bagit.txt",
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8 \xff\n",
            "invalid: bagit.txt line 2: is not UTF-8 (byte 54); the bag declaration must be",
        ),
        (
            "bagit.txt",
            b"BagIt-Version: 9.9\nTag-File-Character-Encoding: UTF-8\n",
            "invalid: bagit.txt: BagIt-Version '9.9' is not 0.97 or 1.0",
        ),
        (
            "bag-info.txt",
            b"Source-Organization: Hand\nno colon on this line\n",
            "invalid: bag-info.txt line 2: not a 'Label: value' line: 'no colon on this line'",
        ),
        (
            "bag-info.txt",
            b"Source-Organization: H\xe4nd\nPayload-Oxum: 6.1\n",
            "invalid: bag-info.txt line 1: is not valid UTF-8 (byte 22), the encoding bagit.txt declares",
        ),
        ("bag-info.txt", b"Payload-Oxum: six.one\n", "invalid: bag-info.txt line 1: Payload-Oxum 'six.one' is not"),
        (
            "bag-info.txt",
            b"Payload-Oxum: " + b"9" * 5000 + b".1\n",
            "invalid: bag-info.txt line 1: Payload-Oxum says 99999",
        ),
        (
            "manifest-sha256.txt",
            b"abc123  data/a.txt\n",
            "invalid: manifest-sha256.txt line 1: 'abc123' is not a sha256 digest",
        ),
        ("manifest-sha256.txt", b"justonefield\n", "invalid: manifest-sha256.txt line 1: not 'digest path'"),
        (
            "manifest-sha256.txt",
            (f"{hashlib.sha256(b'first').hexdigest()}  bagit.txt\n").encode(),
            "invalid: manifest-sha256.txt line 1: bagit.txt is not in the payload (data/)",
        ),
        (
            "manifest-sha256.txt",
            (f"{FIRST}  data/a.txt\n" * 2).encode(),
            "invalid: manifest-sha256.txt line 2: lists data/a.txt more than once",
        ),
        (
            "manifest-sha256.txt",
            b"\xff\xfe\x00garbage\n",
            "invalid: manifest-sha256.txt line 1: is not valid UTF-8 (byte 0), the encoding bagit.txt declares",
        ),
        (
            "manifest-whirlpool.txt",
            b"00  data/a.txt\n",
            "invalid: manifest-whirlpool.txt: algorithm 'whirlpool' is not one custodes can check",
        ),
    ]
    for n, (name, content, expected) in enumerate(cases):
        bag = hand_bag(tmp_path / f"bag{n}", {"a.txt": b"first\n"})
        (bag / name).write_bytes(content)
        if name != "bagit.txt":
            retag(bag)
        rc, out = validate(bag)
        assert rc == 1 and expected in out, (name, content, out)


def test_payload_oxum_is_checked(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    info = bag / "bag-info.txt"
    text = info.read_text()
    oxum = next(line for line in text.splitlines() if line.startswith("Payload-Oxum: ")).split(": ")[1]
    octets, files = oxum.split(".")
    info.write_text(text.replace(f"Payload-Oxum: {oxum}", f"Payload-Oxum: {int(octets) + 1}.{files}"))
    tag = bag / "tagmanifest-sha256.txt"  # fix up its digest: only the Oxum itself can now tell
    old = hashlib.sha256(text.encode()).hexdigest()
    tag.write_text(tag.read_text().replace(old, hashlib.sha256(info.read_bytes()).hexdigest()))
    rc, out = validate(bag)
    assert rc == 1
    assert out.count("invalid: ") == 1, out
    assert f"invalid: bag-info.txt line 8: Payload-Oxum says {int(octets) + 1}.{files}, the payload is {oxum}" in out


# --- custody folders of the wrong shape ----------------------------------------------------------------------------


def test_malformed_custody_is_invalid_and_says_why(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    custody = bag / "custody"
    entries = custody / "ledger-entries.jsonl"
    first = json.loads(entries.read_text().splitlines()[0])
    cases: list[tuple[str, bytes, str]] = [
        (
            "ledger-entries.jsonl",
            b"[1, 2]\n",
            "custody/ledger-entries.jsonl line 1: not a JSON object with index and entry",
        ),
        (
            "ledger-entries.jsonl",
            b'{"index": "zero", "entry": "e30="}\n',
            "custody/ledger-entries.jsonl line 1: index is missing or not a whole number",
        ),
        (
            "ledger-entries.jsonl",
            b'\n{"index": 0, "entry": "not base64!"}\n',
            "custody/ledger-entries.jsonl line 2: entry 0 is missing or not base64",
        ),
        (
            "ledger-entries.jsonl",
            b'{"index": 0, "entry": 7}\n',
            "custody/ledger-entries.jsonl line 1: entry 0 is missing or not base64",
        ),
        ("ledger-entries.jsonl", b"{\n", "custody/ledger-entries.jsonl line 1: not JSON"),
        (
            "ledger-entries.jsonl",
            b'{"index": 0}\n{"entry": "\xff\xfe"}\n',
            "custody/ledger-entries.jsonl line 2: is not valid UTF-8 (byte 24), the encoding bagit.txt declares",
        ),
        (
            "ledger-entries.jsonl",
            b"[" * 100_000 + b"\n",
            "custody/ledger-entries.jsonl line 1: JSON nested deeper than 64 levels",
        ),
        (
            "ledger-entries.jsonl",
            json.dumps({"index": first["index"], "entry": "e30="}).encode() + b"\n",
            f"custody/ledger-entries.jsonl line 1: ledger entry {first['index']} "
            "is not proven in the signed checkpoint",
        ),
        ("inclusion-proofs.json", b'{"index": 0}', "custody/inclusion-proofs.json: not a JSON list of proofs"),
        (
            "inclusion-proofs.json",
            b'[{"index": 0}, 5]',
            "custody/inclusion-proofs.json: proof 0 has no valid leaf_hash, tree_size, proof",
        ),
        (
            "inclusion-proofs.json",
            b'[{"index": 0, "leaf_hash": "zz", "tree_size": -1, "proof": ["00"]}]',
            "custody/inclusion-proofs.json: proof 0 has no valid leaf_hash, tree_size, proof",
        ),
        ("inclusion-proofs.json", b"[5]", "custody/inclusion-proofs.json: proof 0 is not a JSON object"),
        ("inclusion-proofs.json", b"\x00\x01 not json", "custody/inclusion-proofs.json: not JSON"),
        ("checkpoint", b"\xc3\x28 origin\n", "custody/checkpoint line 1: is not valid UTF-8 (byte 0)"),
        ("checkpoint", b"origin\n12\nroot\n", "custody/checkpoint: checkpoint has no signature block"),
        ("checkpoint.vkey", b"garbage", "custody/checkpoint.vkey: not a verifier key: 'garbage'"),
        ("checkpoint.vkey", b"a+b+@@@", "custody/checkpoint.vkey: not a verifier key"),
    ]
    for name, content, expected in cases:
        target = custody / name
        saved = target.read_bytes()
        target.write_bytes(content)
        rc, out = validate(bag)
        assert rc == 1 and f"invalid: {expected}" in out, (name, content, out)
        target.write_bytes(saved)
    (custody / "checkpoint").unlink()
    rc, out = validate(bag)
    assert rc == 1 and "invalid: custody/checkpoint: missing" in out
    os.mkfifo(custody / "checkpoint")  # never opened, so never a hang
    rc, out = validate(bag)
    assert rc == 1 and "invalid: custody/checkpoint: is not a regular file (a FIFO, socket or device); not read" in out


# --- export --to: never onto a file, never into another bag ---------------------------------------------------------


def test_export_to_a_file_or_a_non_empty_folder_is_refused_before_logging(cli_archive: Path, tmp_path: Path) -> None:
    assert as_("alice", "retention", "case", cli_archive, "--case", "C-7", "--segment", "1").returncode == 0
    rid = request(cli_archive, "carol", 1, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0

    def logged() -> list[str]:
        """The types of the ledger entries: an export (and its access) is logged only when the bag is written."""
        db = sqlite3.connect(f"file:{cli_archive / 'catalog.sqlite'}?mode=ro", uri=True)
        try:
            return [json.loads(bytes(e))["type"] for (e,) in db.execute("SELECT entry FROM ledger ORDER BY seq")]
        finally:
            db.close()

    before = logged()
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"someone's notes\n")
    earlier_bag = hand_bag(tmp_path / "earlier-bag", {"a.txt": b"first\n"})
    listing = sorted(p.relative_to(earlier_bag) for p in earlier_bag.rglob("*"))
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for to, expected in (
        (a_file, "exists and is not a folder; give --to a new folder for the bag"),
        (earlier_bag, "folder is not empty; a bag is written to a new or empty folder"),
        (
            dangling,
            f"{dangling} is a symbolic link; name the real folder (custodes never writes evidence through a link)",
        ),
        (a_file / "bag", f"{a_file} is not a folder; give --to a new folder in a writable place"),
    ):
        out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", to)
        assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
        assert f"{to}: {expected}".encode() in out.stderr
    assert a_file.read_bytes() == b"someone's notes\n"
    assert sorted(p.relative_to(earlier_bag) for p in earlier_bag.rglob("*")) == listing
    assert validate(earlier_bag)[0] == 0 and not (tmp_path / "nowhere").exists()
    assert logged() == before  # nothing was logged: the refusals come before the access check and the export
    empty = person_folder(tmp_path / "empty", "carol")
    out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", empty)
    assert out.returncode == 0, out.stderr
    assert validate(empty)[0] == 0 and logged() == [*before, "access_export", "export"]


def test_random_damage_to_any_tag_file_is_a_problem_never_a_crash(case_bag: tuple[Path, Path]) -> None:
    """A seeded sweep of flipped, inserted and cut bytes over every tag file of a real export, validated in
    process (the CLI cases above show the exit codes): never an exception, and since the tag manifest covers
    every other tag file, every damaged bag is invalid."""
    import random

    from custodes.bags import validate_bag

    bag, _ = case_bag
    rng = random.Random(10)
    tags = sorted(p for p in bag.rglob("*") if p.is_file() and p.relative_to(bag).parts[0] != "data")
    inserts = [b"\xff", b"\n", b"\r", b"%", b"%0A", b"../", b"[", b"{", b'"', b"\x00", codecs.BOM_UTF8, b"-1", b"1e999"]
    for _ in range(120):
        target = rng.choice(tags)
        saved = target.read_bytes()
        data = bytearray(saved)
        for _ in range(rng.randrange(1, 4)):
            k = rng.randrange(len(data) + 1)
            op = rng.randrange(3)
            if op == 0 and k < len(data):
                data[k] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[k:k] = rng.choice(inserts)
            else:
                del data[k : k + rng.randrange(1, 40)]
        target.write_bytes(bytes(data))
        report = validate_bag(bag)  # raises on any crash
        assert bytes(data) == saved or target.name.startswith("tagmanifest-") or not report.valid, (target, bytes(data))
        target.write_bytes(saved)
    assert validate_bag(bag).valid


def test_export_of_a_recording_whose_name_is_not_utf8(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    """A file name that is not UTF-8 is evidence like any other (issue 10): its bag path is UTF-8 (the
    manifest is text), its bytes are the recording's, and the bag is valid to custodes and bagit-python."""
    arch = make_cli_archive(people=PEOPLE)
    vol = tmp_path / "BWC0003"
    vol.mkdir()
    source = FOOTAGE / "encoders" / "androidx-sample.mp4"
    odd = os.fsencode(vol) + b"/clip\xff\xfe.mp4"
    with open(odd, "wb") as f:
        f.write(source.read_bytes())
    assert run_cli("ingest", vol, "--archive", arch, "--driver", "generic").returncode == 1  # odd_name, late_ingest
    assert as_("alice", "retention", "case", arch, "--case", "C-10", "--segment", "1").returncode == 0
    rid = request(arch, "carol", 1, purpose="export")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    bag = tmp_path / "bag"
    out = as_("carol", "export", arch, "--case", "C-10", "--request", rid, "--to", bag)
    assert out.returncode == 0 and b"Traceback" not in out.stderr, out.stderr
    copies = [p for p in (bag / "data").rglob("*") if p.is_file()]
    assert len(copies) == 1 and copies[0].read_bytes() == source.read_bytes()
    manifest = (bag / "manifest-sha256.txt").read_bytes()
    assert manifest.isascii() and manifest.count(b"\n") == 1
    rc, report = validate_json(bag)
    assert (rc, report["valid"], report["custody_entries_checked"]) == (0, True, 2), report
    assert bagit_python_valid(bag)


def test_a_device_name_cannot_climb_out_of_the_payload() -> None:
    from custodes.bags import bag_path, safe_part

    assert [safe_part(p) for p in ("..", ".", "", "a/b", "x\udcffy")] == ["_..", "_.", "_", "a_b", "x%FFy"]
    assert bag_path("./data//a/./b.txt") == ("data/a/b.txt", "")
    assert bag_path("data/a%250A%0d%0A")[0] == "data/a%0A\r\n"
