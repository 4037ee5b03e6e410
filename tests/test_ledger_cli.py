"""The ledger commands as an auditor uses them: ``ledger verify`` on every
ledger tamper, ``ledger proof`` checked independently with custodes.merkle and
the verifier key, ``ledger checkpoint``, and ``report --verify``."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from custodes import merkle
from custodes.archive import init_archive, open_archive
from custodes.ingest import ingest
from custodes.ledger import LedgerError, VerifierKey, parse_checkpoint
from helpers import BACKENDS, TAMPERS, catalog_edit, catalog_rows, run_cli

LEDGER_TAMPERS = [name for name, (_, kind) in TAMPERS.items() if kind in ("checkpoint_mismatch", "ledger_mismatch")]
OBJECT_TAMPERS = ["bit_flip_middle", "truncated", "deleted"]


@pytest.fixture
def three_checkpoints(tmp_path: Path, dcim_volume: Path, storage_options: dict[str, str] | None) -> Path:
    """An archive of three recordings, one ingest (and checkpoint) each, on the test's archive_backend."""
    arch = tmp_path / "archive"
    a = init_archive(arch, storage=storage_options)
    try:
        for i, f in enumerate(sorted((dcim_volume / "DCIM").iterdir())):
            single = tmp_path / f"vol{i}" / "BWC0001"
            single.mkdir(parents=True)
            shutil.copy(f, single / f.name)
            assert ingest(a, single).stored == [f.name]
    finally:
        a.close()
    return arch


def tampered(arch: Path, tmp_path: Path, name: str) -> str:
    """Apply one case of the tamper matrix to the archive; the finding kind it must raise."""
    from custodes.archive import open_archive

    tamper, kind = TAMPERS[name]
    with open_archive(arch) as a:
        tamper(a, tmp_path)
    return kind


def _json(out) -> dict:
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    return json.loads(out.stdout)


def test_ledger_verify_is_clean_on_a_clean_archive(three_checkpoints: Path) -> None:
    out = run_cli("ledger", "verify", three_checkpoints, "--json")
    assert (out.returncode, _json(out)["ok"], _json(out)["findings"]) == (0, True, [])


@pytest.mark.parametrize("name", LEDGER_TAMPERS)
def test_ledger_verify_catches_every_ledger_tamper(three_checkpoints: Path, tmp_path: Path, name: str) -> None:
    kind = tampered(three_checkpoints, tmp_path, name)
    out = run_cli("ledger", "verify", three_checkpoints, "--json")
    report = _json(out)
    assert out.returncode == 1 and report["ok"] is False
    assert kind in {f["kind"] for f in report["findings"]}, report["findings"]
    text = run_cli("ledger", "verify", three_checkpoints)
    assert text.returncode == 1 and b"NOT CONSISTENT" in text.stdout


@pytest.mark.parametrize("name", OBJECT_TAMPERS)
def test_ledger_verify_does_not_read_objects_but_verify_does(
    three_checkpoints: Path, tmp_path: Path, name: str
) -> None:
    """`ledger verify` is the cheap check of the ledger alone (documented): object damage needs `verify`."""
    kind = tampered(three_checkpoints, tmp_path, name)
    assert run_cli("ledger", "verify", three_checkpoints).returncode == 0
    out = run_cli("verify", three_checkpoints, "--json")
    assert out.returncode == 1 and kind in {f["kind"] for f in _json(out)["findings"]}


def test_ledger_proof_checks_out_with_merkle_and_the_verifier_key(three_checkpoints: Path) -> None:
    for segment in (1, 2, 3):
        out = run_cli("ledger", "proof", three_checkpoints, "--segment", str(segment), "--from-size", "1")
        assert out.returncode == 0, out.stderr
        proof = _json(out)
        key = VerifierKey.parse(proof["verifier_key"])
        # The signed note is the archive's own, and its root is the proof's root.
        cp = parse_checkpoint(proof["checkpoint"], key)
        # init's policy entry; three ingests, each ingest_begin, ingest, ingest_findings (its late_ingest) and
        # ingest_end (catalog.replay): thirteen entries.
        assert (cp.size, cp.root.hex()) == (proof["tree_size"], proof["root"]) == (13, proof["root"])
        inc = proof["inclusion"]
        entry = base64.b64decode(inc["entry_base64"])
        assert json.loads(entry) == inc["entry"] and inc["entry"]["segment"] == segment
        leaf = merkle.leaf_hash(entry)
        assert leaf.hex() == inc["leaf_hash"]
        path = [bytes.fromhex(h) for h in inc["proof"]]
        assert merkle.verify_inclusion(leaf, inc["index"], cp.size, path, cp.root)
        for wrong in set(range(cp.size)) - {inc["index"]}:
            assert not merkle.verify_inclusion(leaf, wrong, cp.size, path, cp.root)
        # An entry changed by one byte no longer proves.
        assert not merkle.verify_inclusion(merkle.leaf_hash(entry + b" "), inc["index"], cp.size, path, cp.root)
        con = proof["consistency"]
        assert merkle.verify_consistency(
            1, cp.size, [bytes.fromhex(h) for h in con["proof"]], bytes.fromhex(con["root1"]), cp.root
        )
    # A key that is not the archive's does not verify the note.
    other = init_archive(three_checkpoints.parent / "other")
    try:
        with pytest.raises(LedgerError):
            parse_checkpoint(proof["checkpoint"], other.verifier_key)
    finally:
        other.close()


def test_ledger_proof_refuses_what_it_cannot_prove(three_checkpoints: Path) -> None:
    out = run_cli("ledger", "proof", three_checkpoints, "--entry", "13")  # the policy entry and 3 ingests of 4: 0..12
    assert out.returncode == 2 and b"not covered by the latest checkpoint" in out.stderr
    out = run_cli("ledger", "proof", three_checkpoints, "--segment", "99")
    assert out.returncode == 2 and b"no segment 99" in out.stderr
    out = run_cli("ledger", "proof", three_checkpoints)
    assert out.returncode == 2 and b"--entry" in out.stderr
    assert b"Traceback" not in out.stderr


def test_ledger_checkpoint_signs_the_ledger_as_it_is(three_checkpoints: Path) -> None:
    from custodes.archive import open_archive
    from custodes.catalog import replay

    a = open_archive(three_checkpoints)
    try:
        size_before = a.ledger_size()
        # An entry appended (with its row) but not yet signed, as a crash before a checkpoint leaves it.
        with a.transaction() as tx:
            entry = {"type": "annotation", "annotation": 1, "device": "BWC0001", "start": 1, "end": 2}
            entry |= {"cause": "other", "note": "left unsigned", "segment": 1, "offset": None, "by": "x", "time": 1}
            replay.record(tx, entry)
        assert a.ledger_size() == size_before + 1
        key = a.verifier_key
    finally:
        a.close()
    out = run_cli("ledger", "checkpoint", three_checkpoints, "--json")
    assert out.returncode == 0
    cp = _json(out)
    assert cp["size"] == size_before + 1
    signed = parse_checkpoint(cp["note"], key)
    assert (signed.size, signed.root.hex()) == (cp["size"], cp["root"])
    assert cp == {"origin": key.name, "size": signed.size, "root": signed.root.hex(), "note": cp["note"]}
    assert (three_checkpoints / "ledger" / "checkpoint").read_text() == cp["note"]
    assert run_cli("ledger", "verify", three_checkpoints).returncode == 0


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_report_verify_rehashes_and_reports_damage(three_checkpoints: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    out = run_cli("report", three_checkpoints, "--verify", "--out", out_file)
    assert out.returncode == 0, out.stderr
    integrity = json.loads(out_file.read_text())["integrity"]
    assert integrity == {**integrity, "full_verify": True, "ok": True, "checked": 3, "findings": 0}
    # Without --verify the integrity section is the ledger check alone and misses object damage.
    from custodes.archive import open_archive

    a = open_archive(three_checkpoints)
    try:
        TAMPERS["bit_flip_end"][0](a, tmp_path)
    finally:
        a.close()
    assert run_cli("report", three_checkpoints, "--out", out_file).returncode == 0
    assert json.loads(out_file.read_text())["integrity"]["ok"] is True
    assert run_cli("report", three_checkpoints, "--verify", "--out", out_file).returncode == 1  # written, not intact
    integrity = json.loads(out_file.read_text())["integrity"]
    assert (integrity["full_verify"], integrity["ok"], integrity["findings"]) == (True, False, 1)


def test_hand_edits_of_the_wrong_type_are_findings_not_tracebacks(cli_archive: Path) -> None:
    # Found by a hostile user: an entry rewritten as TEXT and garbage in ledger/checkpoint crashed verify.
    with catalog_edit(cli_archive) as c:
        # seq 2: the first ingest entry (0 and 1 are the policy of init and the one with the people)
        c.execute("UPDATE ledger SET entry = replace(CAST(entry AS TEXT), 'ingest', 'ingesT') WHERE seq = 2")
    assert catalog_rows(cli_archive, "SELECT typeof(entry) FROM ledger WHERE seq = 2") == [("text",)]
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    found = {(f["kind"], f.get("ledger_index")) for f in json.loads(out.stdout)["findings"]}
    assert ("ledger_mismatch", 2) in found
    assert run_cli("ledger", "verify", cli_archive).returncode == 1

    (cli_archive / "ledger" / "checkpoint").write_bytes(b"\xff\xfe garbage \x00")
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert any(
        f["kind"] == "checkpoint_mismatch" and f["message"].startswith("latest checkpoint:")
        for f in json.loads(out.stdout)["findings"]
    )
    out = run_cli("ledger", "proof", cli_archive, "--entry", "0")
    assert out.returncode != 0 and b"Traceback" not in out.stderr
    assert b"not a signed checkpoint (not UTF-8 text)" in out.stderr


def test_consistency_from_the_empty_tree_needs_the_empty_root() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(3)]
    root = merkle.root(leaves)
    assert merkle.verify_consistency(0, 3, [], merkle.root([]), root)
    assert not merkle.verify_consistency(0, 3, [], b"\0" * 32, root)


def test_an_object_cut_below_its_recorded_head_is_not_called_replaced(cli_archive: Path) -> None:
    # Found by a hostile user: 100 bytes left of a recording were said to have "first bytes that differ".
    (sha,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 1")[0]
    obj = next((cli_archive / "objects").rglob(sha))
    obj.chmod(0o644)
    with open(obj, "r+b") as f:
        f.truncate(100)
    obj.chmod(0o400)  # the protection put back: the bytes are what is tested
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1
    (finding,) = [f for f in json.loads(out.stdout)["findings"] if f.get("object") == sha]
    assert finding["kind"] == "modified"
    assert finding["message"].startswith("object is 100 bytes instead of ")
    assert finding["message"].endswith(" (truncated or replaced)")


def test_lost_checkpoint_files_are_found_and_written_back(cli_archive: Path) -> None:
    # Found by a hostile user: deleting every file in ledger/checkpoints/ left `ledger verify` at exit 0.
    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    assert len(sizes) >= 2
    for p in folder.iterdir():
        p.unlink()
    out = run_cli("ledger", "verify", cli_archive, "--json")
    assert out.returncode == 1
    gone = [f["message"] for f in json.loads(out.stdout)["findings"] if "is gone" in f["message"]]
    assert gone == [f"ledger/checkpoints/{s} is gone {GONE_TAIL}" for s in sizes]
    checkpoint = run_cli("ledger", "checkpoint", cli_archive)
    assert checkpoint.returncode == 0
    assert f"wrote back lost checkpoint files from their signed notes: {', '.join(map(str, sizes))}" in (
        checkpoint.stderr.decode()
    )
    assert sorted(int(p.name) for p in folder.iterdir()) == sizes  # the same signed notes, written back
    assert run_cli("verify", cli_archive).returncode == 0


def test_one_lost_older_checkpoint_file_is_found_and_the_next_checkpoint_writes_it_back(cli_archive: Path) -> None:
    # Found by a hostile user: with one older file deleted and the newest in place, verify said nothing (its
    # rule skipped the newest of the *missing* files, meant for a checkpoint an ingest alongside is writing).
    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    assert len(sizes) >= 2
    note = (folder / str(sizes[0])).read_text(encoding="utf-8")
    (folder / str(sizes[0])).unlink()
    for command in (["ledger", "verify"], ["verify"]):
        out = run_cli(*command, cli_archive, "--json")
        assert out.returncode == 1, out.stderr
        gone = [f["message"] for f in json.loads(out.stdout)["findings"] if "is gone" in f["message"]]
        assert gone == [f"ledger/checkpoints/{sizes[0]} is gone {GONE_TAIL}"]
    # Any checkpoint writes it back (an ingest's too): the same signed text.
    open_archive(cli_archive).checkpoint()
    assert (folder / str(sizes[0])).read_text(encoding="utf-8") == note
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_checkpoint_lists_the_checkpoint_files_only_when_their_folder_changed(
    cli_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command's checkpoint (each ingest, each act) listed ledger/checkpoints/ and read every recorded size
    to write back lost files: 0.11 s a checkpoint at 10^5 of them, and growing. It lists them only when the
    folder's ctime moved since the catalog recorded it, once the newest checkpoint's file was in; `ledger
    checkpoint` always does. A hostile review of a first version, which compared the folder's ctime with the
    newest file's: a chmod of that file, a backup's hard link of it or a copy put back moved the file's time and
    hid a deletion from every later checkpoint."""
    import time

    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    listed: list[str] = []
    listdir = os.listdir

    def watched(path: str | os.PathLike[str] = ".") -> list[str]:
        listed.append(os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", watched)
    with open_archive(cli_archive) as archive:
        archive.checkpoint()
        newest = folder / str(max(int(p) for p in listdir(folder)))
        os.chmod(newest, 0o600)  # the files' own times move: nothing was lost, nothing to look for
        os.link(newest, tmp_path / "backup-link")
        listed.clear()
        archive.checkpoint()
        assert str(folder) not in listed
        for hide in ("chmod", "link", "copy back"):
            time.sleep(0.05)  # past the file system's clock tick
            (folder / str(sizes[0])).unlink()
            newest = folder / str(max(int(p) for p in listdir(folder)))
            if hide == "chmod":
                os.chmod(newest, 0o600)
            elif hide == "link":
                os.link(newest, tmp_path / f"link-{hide}")
            else:
                kept = newest.read_bytes()
                newest.unlink()
                newest.write_bytes(kept)
            listed.clear()
            archive.checkpoint()
            assert str(folder) in listed, hide
            assert (folder / str(sizes[0])).is_file(), hide  # written back
    # A loss the folder's time cannot show (within the clock tick of the newest file's link: here the recorded
    # time set to the folder's after the loss): the next checkpoint leaves it; verify names it, and `ledger
    # checkpoint`, which looks for every file, writes it back.
    (folder / str(sizes[0])).unlink()
    with catalog_edit(cli_archive) as tx:
        tx.execute("UPDATE checkpoints SET folder_ctime_ns = ?", (os.stat(folder).st_ctime_ns,))
    with open_archive(cli_archive) as archive:
        listed.clear()
        archive.checkpoint()
        assert str(folder) not in listed and not (folder / str(sizes[0])).exists()
    out = run_cli("ledger", "verify", cli_archive, "--json")
    gone = [f["message"] for f in json.loads(out.stdout)["findings"] if "is gone" in f["message"]]
    assert out.returncode == 1 and gone == [f"ledger/checkpoints/{sizes[0]} is gone {GONE_TAIL}"], out.stdout
    out = run_cli("ledger", "checkpoint", cli_archive)
    assert out.returncode == 0 and f"from their signed notes: {sizes[0]}" in out.stderr.decode(), out.stderr
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_file_lost_while_a_checkpoint_is_signed_is_looked_for_by_the_next(
    cli_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second hostile review: a file removed after a checkpoint looked (or saw it need not look) and before its
    own file was linked in passed for seen, the folder's time then recorded with the loss in it, and no later
    checkpoint wrote it back. Nothing is recorded then, and the next checkpoint looks. And the folder's time is
    a cache: a catalog busy when it is recorded never turns the command's complete checkpoint into an error."""
    import sqlite3

    import custodes.archive
    from custodes.catalog.ledger import Checkpoints

    folder = cli_archive / "ledger" / "checkpoints"
    oldest = min(int(p.name) for p in folder.iterdir())
    write_once = custodes.archive.write_once

    def lost_meanwhile(path: Path, *args: object, **kwargs: object) -> None:
        (folder / str(oldest)).unlink(missing_ok=True)
        write_once(path, *args, **kwargs)  # type: ignore[arg-type]

    with open_archive(cli_archive) as archive:
        archive.checkpoint()  # the folder's time recorded: the next would not look
        with monkeypatch.context() as m:
            m.setattr(custodes.archive, "write_once", lost_meanwhile)
            archive.checkpoint()
        assert not (folder / str(oldest)).exists()
        archive.checkpoint()
        assert (folder / str(oldest)).is_file()  # looked, and wrote it back

        def busy(*_args: object) -> None:
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(Checkpoints, "folder_seen", busy)
        cp = archive.checkpoint()  # no error; the checkpoint is whole
        assert (folder / str(cp.size)).is_file()
        assert (cli_archive / "ledger" / "checkpoint").read_text(encoding="utf-8") == cp.note
    assert run_cli("verify", cli_archive).returncode == 0


def test_any_command_whose_checkpoint_writes_a_lost_file_back_says_so(two_clip_archive: Path) -> None:
    """A hold's checkpoint (any command's) mends a deleted checkpoint file: it used to do so unseen, only
    `ledger checkpoint` said it."""
    folder = two_clip_archive / "ledger" / "checkpoints"
    oldest = min(int(p.name) for p in folder.iterdir())
    (folder / str(oldest)).unlink()
    out = run_cli("retention", "hold", two_clip_archive, "--segment", "1", "--reason", "court order 12")
    assert out.returncode == 0, out.stderr.decode()
    assert f"custodes: wrote back lost checkpoint files from their signed notes: {oldest}\n" in out.stderr.decode()
    assert (folder / str(oldest)).is_file()


def test_a_checkpoint_the_catalog_lost_is_found_from_its_file(three_checkpoints: Path) -> None:
    # A signed note deleted from the catalog (to hide a later rollback) is still in ledger/checkpoints/: both
    # `ledger verify` (the report's integrity pass) and `verify` name the file the catalog no longer holds.
    sizes = [s for (s,) in catalog_rows(three_checkpoints, "SELECT size FROM checkpoints ORDER BY size")]
    assert len(sizes) == 7  # init's and two per ingest (its begin's, since 2026-12-01, and its end's)
    with catalog_edit(three_checkpoints) as tx:
        tx.execute("DELETE FROM checkpoints WHERE size = ?", (sizes[1],))
    for command in (["ledger", "verify"], ["verify"]):
        out = run_cli(*command, three_checkpoints, "--json")
        assert out.returncode == 1, out.stderr
        lost = [f for f in _json(out)["findings"] if f["kind"] == "checkpoint_mismatch"]
        assert [f["message"] for f in lost] == [f"checkpoint file {sizes[1]} is not in the catalog"], lost


def _checkpoint_findings(arch: Path, *command: str) -> list[str]:
    out = run_cli(*command, arch, "--json")
    assert out.returncode in (0, 1), out.stderr
    return [f["message"] for f in json.loads(out.stdout)["findings"] if f["kind"] == "checkpoint_mismatch"]


def test_the_newest_checkpoint_file_may_be_missing_only_while_it_is_written(cli_archive: Path) -> None:
    # Found by hostile users: the newest file deleted was never reported, though the README says a signed
    # checkpoint whose file is gone is a checkpoint_mismatch; then a grace rule hid it behind catalog-only times.
    # Its signer writes the file, then ledger/checkpoint: once ledger/checkpoint holds it, its file must be there.
    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    newest, before = sizes[-1], sizes[-2]
    (folder / str(newest)).unlink()
    for command in (["verify"], ["ledger", "verify"]):
        assert _checkpoint_findings(cli_archive, *command) == [f"ledger/checkpoints/{newest} is gone {GONE_TAIL}"]
    # The signer stopped between recording it and writing it out: ledger/checkpoint still holds the one before.
    # That state is named by the latest-checkpoint check (no ingest is under way), not as a lost file.
    (cli_archive / "ledger" / "checkpoint").write_text(
        (folder / str(before)).read_text(encoding="utf-8"), encoding="utf-8"
    )
    (found,) = _checkpoint_findings(cli_archive, "verify")
    assert found.startswith(f"ledger/checkpoint is at size {before}, but a checkpoint of size {newest} exists"), found
    assert run_cli("ledger", "checkpoint", cli_archive).returncode == 0
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_checkpoint_file_holding_another_note_is_named_not_called_gone(cli_archive: Path) -> None:
    # Found by a hostile user: checkpoint 1's valid note copied over file 5 was reported as "5 is gone" and the
    # remedy it named (the next checkpoint) could not mend it; junk over a file was both unreadable and gone; a
    # valid note copied under a new name was not reported at all.
    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    assert len(sizes) >= 3
    first, second, third = sizes[0], sizes[1], sizes[2]
    (folder / str(second)).write_text((folder / str(first)).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / str(third)).write_text("junk\n", encoding="utf-8")
    (folder / "999999").write_text((folder / str(first)).read_text(encoding="utf-8"), encoding="utf-8")
    held = (
        "(copied or renamed): move it out of ledger/checkpoints/ and keep it; the next checkpoint writes back the "
        "files that are missing"
    )
    for command in (["verify"], ["ledger", "verify"]):
        found = _checkpoint_findings(cli_archive, *command)
        assert f"checkpoint file {second} holds the signed note of checkpoint {first} {held}" in found
        assert f"checkpoint file 999999 holds the signed note of checkpoint {first} {held}" in found
        assert [m for m in found if m.startswith(f"ledger/checkpoints/{third} is not a checkpoint this archive signed")]
        assert not [m for m in found if "is gone" in m], found


def test_the_latest_checkpoint_copy_gone_is_said_plainly(cli_archive: Path) -> None:
    # Found by a hostile user: a raw "[Errno 2] No such file or directory: '.../ledger/checkpoint'".
    (cli_archive / "ledger" / "checkpoint").unlink()
    assert _checkpoint_findings(cli_archive, "verify") == [
        "ledger/checkpoint (the copy of the latest signed checkpoint) is gone: find out who removed it; the next "
        "checkpoint (an ingest, or `custodes ledger checkpoint`) writes it again"
    ]
    assert run_cli("ledger", "checkpoint", cli_archive).returncode == 0
    assert run_cli("verify", cli_archive).returncode == 0


@pytest.mark.parametrize("special", ["fifo", "device", "folder", "link"])
def test_a_checkpoint_file_that_is_not_a_regular_file_is_named_never_read(cli_archive: Path, special: str) -> None:
    # Found by a hostile user: a FIFO in ledger/checkpoints/ hung verify, a link to /dev/zero ran it out of memory.
    folder = cli_archive / "ledger" / "checkpoints"
    first = min(int(p.name) for p in folder.iterdir())
    odd = folder / str(first)
    odd.unlink()
    if special == "fifo":
        os.mkfifo(odd)
    elif special == "device":
        odd.symlink_to("/dev/zero")
    elif special == "folder":
        odd.mkdir()
    else:
        odd.symlink_to(folder / str(max(int(p.name) for p in folder.iterdir() if p.name != str(first))))
    out = run_cli("verify", cli_archive, "--json", timeout=120)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    found = [f["message"] for f in json.loads(out.stdout)["findings"] if f["kind"] == "checkpoint_mismatch"]
    assert found == [
        f"ledger/checkpoints/{first} cannot be read as a checkpoint note: not a regular file (a link, a folder, a "
        "FIFO or a device): move it out of ledger/checkpoints/ and keep it; the next checkpoint writes back the "
        "note the catalog holds"
    ], found


def test_a_catalog_row_given_another_note_is_named_and_never_written_out(cli_archive: Path) -> None:
    # Found by a hostile user: with checkpoint 1's row given checkpoint 5's note and file 1 deleted, the write-back
    # put 5's note under the name 1, which then could never be mended.
    folder = cli_archive / "ledger" / "checkpoints"
    sizes = sorted(int(p.name) for p in folder.iterdir())
    first, other = sizes[0], sizes[1]
    with catalog_edit(cli_archive) as tx:
        tx.execute(
            "UPDATE checkpoints SET note = (SELECT note FROM checkpoints WHERE size = ?) WHERE size = ?", (other, first)
        )
    (folder / str(first)).unlink()
    assert run_cli("ledger", "checkpoint", cli_archive).returncode == 0
    assert not (folder / str(first)).exists()
    found = _checkpoint_findings(cli_archive, "verify")
    assert f"checkpoint row {first} differs from its signed note" in found
    assert f"ledger/checkpoints/{first} is gone {GONE_TAIL}" in found


GONE_TAIL = (
    "(the catalog still holds its signed note): find out who removed it; `custodes ledger checkpoint` writes the "
    "missing files back from the catalog's signed notes (an ingest's or an act's checkpoint does too, when it sees "
    "the folder changed)"
)


def test_an_object_replaced_by_a_link_to_a_copy_is_not_intact(cli_archive: Path, tmp_path: Path) -> None:
    # Found by a hostile user: the link was followed, the copy hashed, and verify said intact.
    (sha,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 2")[0]
    obj = next((cli_archive / "objects").rglob(sha))
    copy = tmp_path / "outside.mp4"
    copy.write_bytes(obj.read_bytes())
    obj.parent.chmod(0o755)
    obj.unlink()
    obj.symlink_to(copy)
    out = run_cli("verify", cli_archive, "--json")
    assert out.returncode == 1
    (finding,) = [f for f in json.loads(out.stdout)["findings"] if f.get("object") == sha]
    assert finding["kind"] == "modified" and finding["segment"] == 2
    assert "symbolic link" in finding["message"]
