"""Pinned keys, key rotation and witnesses (issue 13, item 4), through the real CLI on real archives.

The attack of the issue: move a recording by an hour in the catalog and in its ingest entry, re-sign every
checkpoint with a new key and put that key in keys/checkpoint.vkey. Without a pinned key every check trusts
the archive's own key and says intact; ``--trusted-key`` (the key init printed) and ``--witness`` (checkpoints
published outside before the attack) catch it, the witness even against someone who holds the signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custodes import _core, ledger, merkle
from custodes.archive import open_archive
from custodes.keys import fingerprint, rotation_statement
from custodes.ledger import (
    LedgerError,
    VerifierKey,
    canonical_json,
    load_private_key,
    make_checkpoint,
    parse_checkpoint,
)
from helpers import (
    FOOTAGE,
    as_,
    catalog_edit,
    catalog_rows,
    export_as_carol,
    one_line_error,
    run_cli,
    run_cli_with_faults,
    shared_witness,
)

HOUR = 3_600_000_000_000


def _vkey(arch: Path) -> VerifierKey:
    return VerifierKey.parse((arch / "keys" / "checkpoint.vkey").read_text())


def _kinds(out: subprocess.CompletedProcess[bytes]) -> set[str]:
    return {f["kind"] for f in json.loads(out.stdout)["findings"]}


def _public(private: Ed25519PrivateKey, origin: str) -> VerifierKey:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return VerifierKey(origin, raw)


def _write_checkpoints(arch: Path, c, private: Ed25519PrivateKey, origin: str, sizes: list[int]) -> None:
    """Sign the trees of ``sizes`` with ``private`` into the catalog rows and the checkpoint files (``c``: an open
    catalog edit), as an attacker with write access to the archive folder would."""
    leaves = [bytes(leaf) for (leaf,) in c.execute("SELECT leaf FROM ledger ORDER BY seq")]
    for size in sizes:
        cp = make_checkpoint(private, origin, size, merkle.root(leaves[:size]))
        c.execute(
            "INSERT OR REPLACE INTO checkpoints (size, root, note, created_ns) VALUES (?, ?, ?, 0)",
            (size, cp.root, cp.note),
        )
        (arch / "ledger" / "checkpoints" / str(size)).write_text(cp.note)
        (arch / "ledger" / "checkpoint").write_text(cp.note)


def _move_and_resign(arch: Path, private: Ed25519PrivateKey) -> None:
    """The issue's attack: a recording moved by an hour in its row and its ingest entry, every checkpoint
    re-signed with ``private``, and its verifier key put in keys/checkpoint.vkey."""
    origin = _vkey(arch).name
    with catalog_edit(arch) as c:
        segment, seq = c.execute(
            "SELECT id, ledger_seq FROM segments WHERE start_ns IS NOT NULL ORDER BY id LIMIT 1"
        ).fetchone()
        c.execute(
            "UPDATE segments SET start_ns = start_ns + ?1, end_ns = end_ns + ?1, "
            "corrected_start_ns = corrected_start_ns + ?1, corrected_end_ns = corrected_end_ns + ?1 WHERE id = ?2",
            (HOUR, segment),
        )
        entry = json.loads(c.execute("SELECT entry FROM ledger WHERE seq = ?", (seq,)).fetchone()[0])
        for key in ("start", "end", "corrected_start", "corrected_end"):
            entry[key] += HOUR
        data = canonical_json(entry)
        c.execute("UPDATE ledger SET entry = ?, leaf = ? WHERE seq = ?", (data, merkle.leaf_hash(data), seq))
        sizes = [size for (size,) in c.execute("SELECT size FROM checkpoints ORDER BY size").fetchall()]
        _write_checkpoints(arch, c, private, origin, sizes)
    (arch / "keys" / "checkpoint.vkey").write_text(str(_public(private, origin)) + "\n")


def _hold(arch: Path) -> None:
    """One more act, so one more checkpoint."""
    out = as_("alice", "retention", "hold", arch, "--segment", "1", "--reason", "case C-9")
    assert out.returncode == 0, out.stderr


# ---- the key leaves the archive at init, and travels with reports and bags ----------------------------------


def test_init_prints_the_verifier_key_and_its_fingerprint(tmp_path: Path) -> None:
    out = run_cli("init", tmp_path / "a", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    text = (tmp_path / "a" / "keys" / "checkpoint.vkey").read_text()
    assert info["verifier_key"] == text.strip()
    assert info["verifier_key_fingerprint"] == hashlib.sha256(text.strip().encode()).hexdigest()
    human = run_cli("init", tmp_path / "b")
    assert human.returncode == 0, human.stderr
    key = (tmp_path / "b" / "keys" / "checkpoint.vkey").read_text().strip()
    assert f"verifier key {key}\n" in human.stdout.decode()
    assert f"fingerprint  {hashlib.sha256(key.encode()).hexdigest()} " in human.stdout.decode()


def test_report_and_bag_carry_the_fingerprint(cli_archive: Path, case_bag: tuple[Path, Path], tmp_path: Path) -> None:
    fp = fingerprint(_vkey(cli_archive))
    bag, _iso = case_bag
    assert f"Verifier-Key-Fingerprint: {fp}\n" in (bag / "bag-info.txt").read_text()
    assert (bag / "custody" / "checkpoint.vkey").read_text() == (cli_archive / "keys" / "checkpoint.vkey").read_text()
    report = tmp_path / "report.json"
    out = run_cli("report", cli_archive, "--format", "json", "--out", report)
    assert out.returncode == 0, out.stderr
    assert json.loads(report.read_text())["archive"]["verifier_key_fingerprint"] == fp


# ---- which key a check trusted ------------------------------------------------------------------------------


def test_checks_say_which_key_they_trusted_and_where_it_came_from(cli_archive: Path, tmp_path: Path) -> None:
    key = _vkey(cli_archive)
    fp = fingerprint(key)
    out = run_cli("verify", cli_archive)
    assert out.returncode == 0, out.stderr
    assert f"trusted key {fp} (taken from the archive itself" in out.stdout.decode()
    out = run_cli("ledger", "verify", cli_archive, "--json")
    assert out.returncode == 0, out.stderr
    trust = json.loads(out.stdout)["trust"]
    assert (trust["fingerprint"], trust["source"], trust["key"], trust["rotations"]) == (fp, "archive", str(key), [])
    kept = tmp_path / "kept.vkey"  # the key as init printed it, kept outside the archive
    kept.write_text(str(key) + "\n")
    for given in (str(key), str(kept)):
        out = run_cli("verify", cli_archive, "--trusted-key", given, "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["trust"]["source"] == "trusted-key"
    human = run_cli("ledger", "verify", cli_archive, "--trusted-key", kept)
    assert human.returncode == 0 and f"trusted key {fp} (given with --trusted-key)" in human.stdout.decode()


def test_a_trusted_key_that_is_not_a_key_is_one_line_exit_2(cli_archive: Path, tmp_path: Path) -> None:
    one_line_error(run_cli("verify", cli_archive, "--trusted-key", "not-a-key"), r"--trusted-key .*neither")
    junk = tmp_path / "junk.vkey"
    junk.write_text("custodes.local/x+00000000+AAAA\n")
    one_line_error(run_cli("ledger", "verify", cli_archive, "--trusted-key", junk), r"does not hold a verifier key")


# ---- the re-signing attack -----------------------------------------------------------------------------------


def test_resigned_archive_is_caught_by_the_trusted_key(cli_archive: Path) -> None:
    trusted = str(_vkey(cli_archive))
    attacker = Ed25519PrivateKey.generate()
    _move_and_resign(cli_archive, attacker)
    # Unpinned, every check trusts the attacker's key from the archive, and says intact: the attack works.
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 0, out.stdout
    assert json.loads(out.stdout)["trust"]["fingerprint"] == fingerprint(_vkey(cli_archive))
    assert run_cli("ledger", "verify", cli_archive).returncode == 0
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, cli_archive, "--trusted-key", trusted, "--json")
        assert out.returncode == 1, out.stdout
        assert {"untrusted_key", "checkpoint_mismatch"} <= _kinds(out)
    human = run_cli("verify", cli_archive, "--trusted-key", trusted)
    assert human.returncode == 1
    assert "untrusted_key: keys/checkpoint.vkey (fingerprint " in human.stdout.decode()


def test_resigned_archive_is_caught_by_the_witness_without_a_trusted_key(cli_archive: Path, tmp_path: Path) -> None:
    witness = _witness(tmp_path)
    out = run_cli("ledger", "publish", cli_archive, witness, "--json")
    assert out.returncode == 0, out.stderr
    published = sorted(int(p.name) for p in witness.iterdir())
    assert json.loads(out.stdout)["published"] == published == [s for (s,) in _sizes(cli_archive)]
    before = {p.name: p.read_bytes() for p in witness.iterdir()}
    _move_and_resign(cli_archive, Ed25519PrivateKey.generate())
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, cli_archive, "--witness", witness, "--json")
        assert out.returncode == 1, out.stdout
        assert "witness_mismatch" in _kinds(out)
    # Publishing over the witness is refused: what is published stays as it was, nothing is added.
    out = run_cli("ledger", "publish", cli_archive, witness)
    assert out.returncode == 1, out.stdout
    assert "NOT PUBLISHED" in out.stdout.decode()
    assert {p.name: p.read_bytes() for p in witness.iterdir()} == before


def test_the_witness_catches_a_rewrite_by_whoever_holds_the_signing_key(cli_archive: Path, tmp_path: Path) -> None:
    trusted = str(_vkey(cli_archive))
    witness = _witness(tmp_path)
    assert run_cli("ledger", "publish", cli_archive, witness).returncode == 0
    own_key = load_private_key(cli_archive / "private" / "checkpoint.key")
    _move_and_resign(cli_archive, own_key)  # same key: every signature is genuine
    assert str(_vkey(cli_archive)) == trusted
    assert run_cli("verify", cli_archive, "--trusted-key", trusted).returncode == 0  # a key cannot tell
    out = run_cli("verify", cli_archive, "--trusted-key", trusted, "--witness", witness, "--json")
    assert out.returncode == 1, out.stdout
    findings = json.loads(out.stdout)["findings"]
    assert findings and {f["kind"] for f in findings} == {"witness_mismatch"}
    assert all("is not consistent with the tree of" in f["message"] for f in findings)


def test_the_witness_catches_a_rolled_back_ledger(cli_archive: Path, tmp_path: Path) -> None:
    witness = _witness(tmp_path)
    _hold(cli_archive)
    assert as_("alice", "ledger", "publish", cli_archive, witness).returncode == 0
    (top,) = max(_sizes(cli_archive))
    with catalog_edit(cli_archive) as c:  # the hold, its entry and its checkpoint undone
        c.execute("DELETE FROM holds")
        c.execute("DELETE FROM ledger WHERE seq = ?", (top - 1,))
        c.execute("DELETE FROM checkpoints WHERE size = ?", (top,))
    (cli_archive / "ledger" / "checkpoints" / str(top)).unlink()
    (cli_archive / "ledger" / "checkpoint").write_text(
        (cli_archive / "ledger" / "checkpoints" / str(top - 1)).read_text()
    )
    out = run_cli("ledger", "verify", cli_archive, "--witness", witness, "--json")
    assert out.returncode == 1, out.stdout
    rolled = [f for f in json.loads(out.stdout)["findings"] if f["kind"] == "witness_mismatch"]
    assert (
        len(rolled) == 1 and f"signs {top} entries, the ledger now has {top - 1} (rolled back)" in rolled[0]["message"]
    )


def test_publish_appends_only_new_checkpoints_and_an_honest_archive_stays_consistent(
    cli_archive: Path, tmp_path: Path
) -> None:
    witness = _witness(tmp_path)
    assert as_("alice", "ledger", "publish", cli_archive, witness).returncode == 0
    first = {p.name: (p.stat().st_ino, p.read_bytes()) for p in witness.iterdir()}
    _hold(cli_archive)
    _hold(cli_archive)
    out = run_cli("verify", cli_archive, "--witness", witness)
    assert out.returncode == 0, out.stdout
    assert f"witness {witness}" in out.stdout.decode()
    out = as_("alice", "ledger", "publish", cli_archive, witness, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    new = sorted(int(n) for n in {p.name for p in witness.iterdir()} - set(first))
    assert result["published"] == new == [s for (s,) in _sizes(cli_archive)][-2:]
    assert result["already_published"] == len(first)
    assert {n: (p.stat().st_ino, p.read_bytes()) for n in first for p in [witness / n]} == first  # untouched
    assert not [p for p in witness.iterdir() if p.name.startswith(".")]  # no temp left behind
    assert as_("alice", "ledger", "publish", cli_archive, witness, "--json").stdout.count(b'"published": []') == 1


def test_an_empty_witness_is_one_line_exit_2(cli_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("verify", cli_archive, "--witness", tmp_path / "empty"), r"no checkpoint is published")
    one_line_error(run_cli("ledger", "publish", cli_archive, cli_archive / "ledger" / "w"), r"DIR .*inside the archive")


def _sizes(arch: Path) -> list[tuple[int]]:
    return catalog_rows(arch, "SELECT size FROM checkpoints ORDER BY size")


# ---- the same attack on an exported bag ----------------------------------------------------------------------


def _resign_bag(bag: Path, private: Ed25519PrivateKey) -> None:
    """Replace a recording in the bag, change its ingest entry to match, rebuild the proofs over a tree of the
    same size (the other leaves made up), re-sign the checkpoint with ``private``, replace the verifier key and
    regenerate the manifests, Payload-Oxum and tag manifest: a forged bag consistent in itself."""
    custody = bag / "custody"
    origin = VerifierKey.parse((custody / "checkpoint.vkey").read_text()).name
    victim = sorted((bag / "data").rglob("*.*"))[0]
    old_sha = hashlib.sha256(victim.read_bytes()).hexdigest()
    data = (FOOTAGE / "gopro" / "karma.mp4").read_bytes()
    victim.write_bytes(data)
    lines = [json.loads(line) for line in (custody / "ledger-entries.jsonl").read_text().splitlines()]
    entries = {}
    for line in lines:
        entry = json.loads(base64.b64decode(line["entry"]))
        if entry.get("digests", {}).get("sha256") == old_sha:
            blake3 = _core.hash_bytes(["blake3"], data)[0].hex()
            entry.update(digests={"sha256": hashlib.sha256(data).hexdigest(), "blake3": blake3}, size=len(data))
        entries[line["index"]] = canonical_json(entry)
    size = json.loads((custody / "inclusion-proofs.json").read_text())[0]["tree_size"]
    leaves = [merkle.leaf_hash(entries[i] if i in entries else f"made up {i}".encode()) for i in range(size)]
    (custody / "ledger-entries.jsonl").write_text(
        "".join(json.dumps({"index": i, "entry": base64.b64encode(e).decode()}) + "\n" for i, e in entries.items())
    )
    proofs = [
        {
            "index": i,
            "leaf_hash": leaves[i].hex(),
            "tree_size": size,
            "proof": [h.hex() for h in merkle.inclusion_proof(leaves, i)],
        }
        for i in entries
    ]
    (custody / "inclusion-proofs.json").write_text(json.dumps(proofs))
    (custody / "checkpoint").write_text(make_checkpoint(private, origin, size, merkle.root(leaves)).note)
    forged = _public(private, origin)
    (custody / "checkpoint.vkey").write_text(str(forged) + "\n")
    payload = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
    (bag / "manifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bag).as_posix()}\n" for p in payload)
    )
    info = (bag / "bag-info.txt").read_text().splitlines()
    oxum = f"{sum(p.stat().st_size for p in payload)}.{len(payload)}"
    info = [
        f"Payload-Oxum: {oxum}"
        if line.startswith("Payload-Oxum:")
        else f"Verifier-Key-Fingerprint: {fingerprint(forged)}"
        if line.startswith("Verifier-Key-Fingerprint:")
        else line
        for line in info
    ]
    (bag / "bag-info.txt").write_text("\n".join(info) + "\n")
    tags = sorted(
        p
        for p in bag.rglob("*")
        if p.is_file() and not p.relative_to(bag).as_posix().startswith(("data/", "tagmanifest-"))
    )
    (bag / "tagmanifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bag).as_posix()}\n" for p in tags)
    )


def test_resigned_bag_is_caught_by_the_trusted_key(cli_archive: Path, case_bag: tuple[Path, Path]) -> None:
    bag, _iso = case_bag
    trusted = str(_vkey(cli_archive))
    assert run_cli("bag", "validate", bag, "--trusted-key", trusted).returncode == 0  # the genuine bag
    _resign_bag(bag, Ed25519PrivateKey.generate())
    out = run_cli("bag", "validate", bag, "--json")
    assert out.returncode == 0, out.stdout  # unpinned, the forged bag vouches for itself
    assert json.loads(out.stdout)["trust"]["source"] == "bag"
    out = run_cli("bag", "validate", bag, "--trusted-key", trusted, "--json")
    assert out.returncode == 1, out.stdout
    problems = json.loads(out.stdout)["problems"]
    assert any(p.startswith("custody/checkpoint.vkey: custody/checkpoint.vkey (fingerprint ") for p in problems)
    assert any(p.startswith("custody/checkpoint: ") for p in problems), problems


# ---- the fingerprint people keep -------------------------------------------------------------------------------


def test_the_fingerprint_as_printed_pins_the_key(
    cli_archive: Path, case_bag: tuple[Path, Path], tmp_path: Path
) -> None:
    bag, _iso = case_bag
    key_text = (cli_archive / "keys" / "checkpoint.vkey").read_text().strip()
    fp = hashlib.sha256(key_text.encode()).hexdigest()  # what init printed ("SHA-256 of the verifier key text")
    for given in (fp, fp.upper()):
        for command in (("verify",), ("ledger", "verify")):
            out = run_cli(*command, cli_archive, "--trusted-key", given, "--json")
            assert out.returncode == 0, out.stdout
            trust = json.loads(out.stdout)["trust"]
            assert (trust["source"], trust["fingerprint"], trust["given_fingerprint"], trust["matched"]) == (
                "fingerprint",
                fp,
                fp,
                True,
            )
    human = run_cli("verify", cli_archive, "--trusted-key", fp)
    assert human.returncode == 0, human.stdout
    assert (
        f"trusted key {fp} (its own key, matched by the fingerprint given with --trusted-key)" in human.stdout.decode()
    )
    # Through the service, the fingerprint is a value, not a file for the client to open.
    out = as_("alice", "ledger", "verify", cli_archive, "--trusted-key", fp, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["trust"]["matched"] is True, out.stderr
    bag_out = run_cli("bag", "validate", bag, "--trusted-key", fp, "--json")
    assert bag_out.returncode == 0, bag_out.stdout
    assert json.loads(bag_out.stdout)["trust"]["source"] == "fingerprint"
    # A file whose name is 64 hex digits is still a file, named as ./NAME.
    (tmp_path / fp).write_text(key_text + "\n")
    out = run_cli("ledger", "verify", cli_archive, "--trusted-key", f"./{fp}", "--json", cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["trust"]["source"] == "trusted-key", out.stderr


def test_a_wrong_fingerprint_fails_like_a_wrong_key(cli_archive: Path, case_bag: tuple[Path, Path]) -> None:
    bag, _iso = case_bag
    wrong = hashlib.sha256(b"custodes.local/other+00000000+AAAA").hexdigest()
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, cli_archive, "--trusted-key", wrong, "--json")
        assert out.returncode == 1, out.stdout
        assert "untrusted_key" in _kinds(out)
        assert json.loads(out.stdout)["trust"]["matched"] is False
    human = run_cli("ledger", "verify", cli_archive, "--trusted-key", wrong)
    assert human.returncode == 1
    said = human.stdout.decode()
    assert f"trusted fingerprint {wrong} (given with --trusted-key) does NOT match its own key" in said
    assert f"does not have the trusted fingerprint {wrong}" in said
    out = run_cli("bag", "validate", bag, "--trusted-key", wrong, "--json")
    assert out.returncode == 1, out.stdout
    assert any(p.startswith("custody/checkpoint.vkey: ") and wrong in p for p in json.loads(out.stdout)["problems"]), (
        out.stdout
    )


def test_the_fingerprint_catches_the_resigned_archive_and_bag(cli_archive: Path, case_bag: tuple[Path, Path]) -> None:
    bag, _iso = case_bag
    fp = fingerprint(_vkey(cli_archive))
    _move_and_resign(cli_archive, Ed25519PrivateKey.generate())
    assert run_cli("verify", cli_archive).returncode == 0  # unpinned, the attack works
    out = run_cli("verify", cli_archive, "--trusted-key", fp, "--json")
    assert out.returncode == 1 and "untrusted_key" in _kinds(out), out.stdout
    _resign_bag(bag, Ed25519PrivateKey.generate())
    assert run_cli("bag", "validate", bag).returncode == 0
    assert run_cli("bag", "validate", bag, "--trusted-key", fp).returncode == 1


# ---- key rotation --------------------------------------------------------------------------------------------


def test_a_rotated_key_verifies_across_the_rotation(cli_archive: Path, tmp_path: Path) -> None:
    first = _vkey(cli_archive)
    refused = as_("carol", "ledger", "rotate-key", cli_archive)
    assert refused.returncode == 1 and b"refused: carol may not rotate_key" in refused.stderr
    out = as_("alice", "ledger", "rotate-key", cli_archive, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    new, index = VerifierKey.parse(info["key"]), info["index"]
    assert info["previous_key"] == str(first) and info["fingerprint"] == fingerprint(new)
    assert Path(info["signing_key"]).is_file() and oct(Path(info["signing_key"]).stat().st_mode & 0o777) == "0o600"
    assert _vkey(cli_archive) == first  # the key to pin stays the first one
    # The rotation's own checkpoint is signed by the old key; the next act's by the new one only.
    own = (cli_archive / "ledger" / "checkpoints" / str(index + 1)).read_text()
    assert parse_checkpoint(own, first).size == index + 1
    _hold(cli_archive)
    latest = (cli_archive / "ledger" / "checkpoint").read_text()
    assert parse_checkpoint(latest, new).size == index + 2
    with pytest.raises(LedgerError, match="carries no signature by"):
        parse_checkpoint(latest, first)  # the old key signs nothing after its rotation
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, cli_archive, "--trusted-key", str(first), "--json")
        assert out.returncode == 0, out.stdout
        assert json.loads(out.stdout)["trust"]["rotations"] == [
            {"index": index, "key": str(new), "fingerprint": fingerprint(new)}
        ]
    # The new key is not where trust starts: pinned alone it cannot vouch for the checkpoints before it.
    out = run_cli("ledger", "verify", cli_archive, "--trusted-key", str(new), "--json")
    assert out.returncode == 1 and "untrusted_key" in _kinds(out)
    # A bag exported after the rotation carries the rotation and validates from the first key.
    bag = tmp_path / "bag-C-8"
    out = export_as_carol(cli_archive, "C-8", [1], bag)
    assert out.returncode == 0, out.stderr
    out = run_cli("bag", "validate", bag, "--trusted-key", str(first), "--json")
    assert out.returncode == 0, out.stdout
    assert [r["index"] for r in json.loads(out.stdout)["trust"]["rotations"]] == [index]


def test_a_forged_rotation_signed_by_the_new_key_only_is_caught(cli_archive: Path) -> None:
    first = _vkey(cli_archive)
    forger = Ed25519PrivateKey.generate()
    new = _public(forger, first.name)
    with open_archive(cli_archive) as a, a.transaction() as tx:  # appended through the API, as a forger could
        index = ledger.append(
            tx,
            {
                "type": "key_rotation",
                "key": str(new),
                "previous": str(first),
                "endorsement": base64.b64encode(forger.sign(rotation_statement(first.name, first, new))).decode(),
                "by": "alice",
                "time": 1,
            },
        )
    with catalog_edit(cli_archive) as c:
        _write_checkpoints(cli_archive, c, forger, first.name, [index + 1])
    for trusted in ((), ("--trusted-key", str(first))):
        out = run_cli("ledger", "verify", cli_archive, *trusted, "--json")
        assert out.returncode == 1, out.stdout
        findings = json.loads(out.stdout)["findings"]
        assert [(f["kind"], f["ledger_index"]) for f in findings if f["kind"] == "untrusted_key"] == [
            ("untrusted_key", index)
        ]
        assert "checkpoint_mismatch" in {f["kind"] for f in findings}
        assert json.loads(out.stdout)["trust"]["rotations"] == []


def _witness(tmp_path: Path) -> Path:
    """The outside folder checkpoints are published to, made beforehand: through the archive service it is the
    service's account that appends to it, for a custodian who may write there too (see the README): the
    service's folder, shared with alice's group."""
    return shared_witness(tmp_path / "witness", "alice")


# ---- a crash in the middle of a rotation ----------------------------------------------------------------------


def _crash(arch: Path, phase: str) -> None:
    out = run_cli_with_faults("ledger", "rotate-key", arch, user="alice", crashpoint=phase)
    assert out.returncode == -9, out.stderr  # SIGKILL at the crash point


def test_a_crash_after_the_new_key_file_leaves_the_old_key_in_force(cli_archive: Path) -> None:
    first = _vkey(cli_archive)
    _crash(cli_archive, "rotate_key_file_written")
    assert len(list((cli_archive / "private").glob("checkpoint.key.*"))) == 1  # written, never named
    _hold(cli_archive)
    parse_checkpoint((cli_archive / "ledger" / "checkpoint").read_text(), first)
    assert run_cli("verify", cli_archive, "--trusted-key", str(first)).returncode == 0
    assert as_("alice", "ledger", "rotate-key", cli_archive).returncode == 0  # running it again rotates


def test_a_crash_after_the_rotation_entry_is_finished_by_ledger_checkpoint(cli_archive: Path) -> None:
    first = _vkey(cli_archive)
    _crash(cli_archive, "rotate_key_entry_committed")
    out = run_cli("ledger", "verify", cli_archive, "--json")
    assert out.returncode == 1 and _kinds(out) == {"checkpoint_mismatch"}  # an entry no checkpoint signs
    assert as_("alice", "ledger", "checkpoint", cli_archive).returncode == 0  # signs it, with the old key
    parse_checkpoint((cli_archive / "ledger" / "checkpoint").read_text(), first)
    _hold(cli_archive)
    out = run_cli("verify", cli_archive, "--trusted-key", str(first), "--json")
    assert out.returncode == 0, out.stdout
    assert len(json.loads(out.stdout)["trust"]["rotations"]) == 1
