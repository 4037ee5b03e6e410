"""The local store's folders are the archive's own: a folder of the digest tree, ``objects/`` or ``tmp/`` that is a
symbolic link (or a file) is never written through, and no command follows it out of the archive (a hostile
review: ingest stored new footage through a linked digest folder, `storage repair` deleted a file outside the
archive through one and said it had repaired the object)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import FOOTAGE, PEOPLE, THREE_RECORDINGS, run_cli

CUSTODIAN_ROOT = PEOPLE.replace('root = "auditor"', 'root = "custodian"')
CLIP = FOOTAGE / "encoders" / "androidx-sample.mp4"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside


def test_ingest_never_stores_through_a_linked_digest_folder(cli_archive: Path, tmp_path: Path) -> None:
    volume = tmp_path / "CARD"
    volume.mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", volume / "NEW.mp4")
    digest = hashlib.sha256((volume / "NEW.mp4").read_bytes()).hexdigest()
    tree = cli_archive / "objects" / "sha256"
    outside = _outside(tmp_path)
    shutil.rmtree(tree / digest[:2], ignore_errors=True)
    (tree / digest[:2]).symlink_to(outside)
    r = run_cli("ingest", volume, "--archive", cli_archive, "--driver", "generic", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["stored"] == [] and out["failed"] == ["NEW.mp4"]
    assert any("symbolic link or not a folder" in f["message"] for f in out["findings"]), out["findings"]
    assert list(outside.rglob("*")) == []  # nothing written outside the archive
    assert list((cli_archive / "tmp").iterdir()) == []  # the copy did not stay in the spool either


def test_repair_never_writes_or_removes_through_a_linked_digest_folder(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    second = tmp_path / "disk2" / "copy"
    arch = make_cli_archive(
        recordings=THREE_RECORDINGS,
        ingest_exit=(1,),
        people=CUSTODIAN_ROOT,
        init_args=("--replica", "local", "--replica-option", f"location={second}"),
    )
    digest = hashlib.sha256(CLIP.read_bytes()).hexdigest()
    outside = _outside(tmp_path)
    planted = outside / digest[2:4] / digest
    planted.parent.mkdir()
    planted.write_bytes(b"someone else's file")
    tree = second / "objects" / "sha256"
    shutil.rmtree(tree / digest[:2])
    (tree / digest[:2]).symlink_to(outside)
    r = run_cli("storage", "repair", arch, "--json")
    assert r.returncode != 0
    assert "symbolic link or not a folder" in r.stderr.decode() + r.stdout.decode()
    assert planted.read_bytes() == b"someone else's file"  # untouched: neither removed nor written over
    assert sorted(p.name for p in outside.rglob("*")) == sorted([digest[2:4], digest])
    found = json.loads(run_cli("verify", arch, "--json").stdout)["findings"]
    assert ("missing", "replica", digest) in {(f["kind"], f["copy"], f["object"]) for f in found}


@pytest.mark.parametrize("folder", ["objects", "objects/sha256", "tmp"])
@pytest.mark.parametrize("replaced_by", ["link", "file"])
def test_a_store_folder_that_is_a_link_or_a_file_stops_every_command_in_one_line(
    cli_archive: Path, tmp_path: Path, folder: str, replaced_by: str
) -> None:
    outside = _outside(tmp_path)
    place = cli_archive / folder
    shutil.move(place, outside / "moved")
    if replaced_by == "link":
        place.symlink_to(outside / "moved")
    else:
        place.write_bytes(b"x")
    for command in (("verify", cli_archive), ("ingest", FOOTAGE / "phones", "--archive", cli_archive)):
        r = run_cli(*command)
        text = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in text, text
        assert f"{place}" in text and ("symbolic link" in text or "not a folder" in text), text
    assert sorted(p.name for p in outside.iterdir()) == ["moved"]
