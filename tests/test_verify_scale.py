"""Verify without per-object overhead keeps every check: the ledger replayed in groups still names each entry
it cannot apply, in order, and applies every other; the store walked without a system call per file still
finds an object reached through a linked folder."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import catalog_edit, catalog_rows, run_cli


def _verify(arch: Path) -> list[dict]:
    out = run_cli("verify", arch, "--json")
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.returncode == 1, (out.stdout.decode(), out.stderr.decode())
    return json.loads(out.stdout)["findings"]


def test_entries_that_cannot_be_applied_are_named_in_order_and_the_rest_applied(cli_archive: Path) -> None:
    # Segment 2's ingest entry made unappliable (its digests not an object), and a later entry not JSON: replay
    # applies entries a group at a time, and must still say exactly these two, in ledger order, and make the
    # rows of every entry around them (segments 1 and 3).
    (bad,) = catalog_rows(cli_archive, "SELECT ledger_seq FROM segments WHERE id = 2")[0]
    (last,) = catalog_rows(cli_archive, "SELECT MAX(seq) FROM ledger")[0]
    (entry,) = catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE seq = ?", (bad,))[0]
    edited = json.loads(entry) | {"digests": 5}
    with catalog_edit(cli_archive, foreign_keys=False) as c:
        c.execute("UPDATE ledger SET entry = ? WHERE seq = ?", (json.dumps(edited).encode(), bad))
        c.execute("UPDATE ledger SET entry = ? WHERE seq = ?", (b"{not json", last))
    findings = _verify(cli_archive)
    unapplied = [
        f
        for f in findings
        if f["kind"] == "ledger_mismatch"
        and f["table"] is None
        and "ledger entry" in f["message"]
        and ("cannot be applied" in f["message"] or "not JSON" in f["message"])
    ]
    assert [(f["ledger_index"], "cannot be applied: TypeError" in f["message"]) for f in unapplied] == [
        (bad, True),
        (last, False),
    ]
    rows = {(f["table"], tuple(f["row"])) for f in findings if f["table"] is not None}
    assert ("segments", (2,)) in rows  # the live row the unapplied entry no longer explains
    assert not rows & {("segments", (1,)), ("segments", (3,))}


def test_an_object_reached_through_a_linked_folder_is_not_intact(cli_archive: Path, tmp_path: Path) -> None:
    # The store walk reads links from the folder listing: a folder of the store replaced by a link to a copy
    # (the same bytes, elsewhere) is found, and the object is not in the store's own tree: missing, whatever
    # bytes the link leads to.
    (sha,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 2")[0]
    folder = cli_archive / "objects" / "sha256" / sha[:2]
    outside = tmp_path / "outside"
    for path in sorted(folder.rglob("*")):
        path.chmod(0o700 if path.is_dir() else 0o400)
    folder.chmod(0o700)
    folder.rename(outside)
    folder.symlink_to(outside)
    findings = _verify(cli_archive)
    assert {(f["kind"], f["message"], f["object"]) for f in findings} == {
        ("unexpected", f"file in the store that is not an object: objects/sha256/{sha[:2]}", None),
        ("missing", f"object is not in the store ({folder}/{sha[2:4]}/{sha})", sha),
    }


def test_an_object_that_is_a_link_in_a_linked_folder_is_not_intact(cli_archive: Path, tmp_path: Path) -> None:
    # The walk never sees this object's file (its folder is a link, not walked): never looked at through the
    # link (hashing through it would find the genuine bytes and say intact), it is missing from the store.
    (sha,) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 2")[0]
    folder = cli_archive / "objects" / "sha256" / sha[:2]
    outside, copy = tmp_path / "outside", tmp_path / "copy.mp4"
    for path in sorted(folder.rglob("*")):
        path.chmod(0o700 if path.is_dir() else 0o400)
    folder.chmod(0o700)
    folder.rename(outside)
    folder.symlink_to(outside)
    obj = outside / sha[2:4] / sha
    copy.write_bytes(obj.read_bytes())
    obj.unlink()
    obj.symlink_to(copy)
    findings = _verify(cli_archive)
    (linked,) = [f for f in findings if f["object"] == sha]
    assert linked["kind"] == "missing" and linked["segment"] == 2
    assert {f["kind"] for f in findings} == {"missing", "unexpected"}
