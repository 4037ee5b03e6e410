"""`custodes ingest --json` lists every file of the volume the archive holds, with its segment id and digest,
exactly as the catalog holds them; ingesting the volume again, and a superset of it, lists the same segments
as already present (stored false, the same ids) and only the new file as stored."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import custodes.ingest as ingest_module
from custodes.archive import Archive
from footage import T0, at, make_clip
from helpers import catalog_rows, run_cli


def ingest(vol: Path, arch: Path) -> dict[str, Any]:
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json")
    assert out.returncode == 1, out.stderr  # late_ingest (2024 footage), unknown_file (the notes)
    return json.loads(out.stdout)


def listed(result: dict[str, Any]) -> list[tuple[int, str, str, bool]]:
    return [(s["segment"], s["name"], s["sha256"], s["stored"]) for s in result["segments"]]


def test_ingest_lists_each_file_with_its_segment_and_again_as_present(tmp_path: Path) -> None:
    arch, vol = tmp_path / "archive", tmp_path / "BWC0001"
    assert run_cli("init", arch).returncode == 0
    make_clip(vol / "A.MP4", T0, 1.0)
    make_clip(vol / "B.MP4", at(5), 1.0)
    (vol / "notes.txt").write_text("kept as it is")
    (vol / os.fsdecode(b"odd\xff.txt")).write_bytes(b"a name that is not UTF-8")
    first = ingest(vol, arch)
    catalog = catalog_rows(arch, "SELECT id, original_name, sha256 FROM segments ORDER BY id")
    assert listed(first) == [(i, name, sha, True) for i, name, sha in catalog]
    assert [name for _, name, _ in catalog] == ["A.MP4", "B.MP4", "notes.txt", "odd\\xff.txt"]
    assert first["stored"] == ["A.MP4", "B.MP4", "notes.txt", os.fsdecode(b"odd\xff.txt")]

    make_clip(vol / "C.MP4", at(10), 1.0)  # the same volume, one more recording
    again = ingest(vol, arch)
    (new,) = catalog_rows(arch, "SELECT id, original_name, sha256 FROM segments WHERE original_name = 'C.MP4'")
    assert listed(again) == [
        *[(i, name, sha, False) for i, name, sha in catalog[:2]],
        (*new, True),
        *[(i, name, sha, False) for i, name, sha in catalog[2:]],
    ]
    assert new[0] == 5 and again["stored"] == ["C.MP4"] and len(again["already_present"]) == 4
    # The list is the ingest's answer, not a fact of its own: the ingest_end entry does not repeat it.
    (result,) = catalog_rows(arch, "SELECT result FROM ingests WHERE id = ?", (again["ingest"],))[0]
    assert "segments" not in json.loads(result)


@pytest.mark.parametrize("step", ["timeline", "late_ingest"])
def test_a_volume_check_that_fails_is_a_malformed_finding_and_the_files_stay_stored(
    archive: Archive, dcim_volume: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # A volume-wide check that raises on what a driver read never un-stores the volume: one finding says which
    # check and why (a mutmut survivor: neither the finding's kind nor its words were asserted).
    def broken(*_args: object, **_kw: object) -> list[object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest_module, "timeline_findings" if step == "timeline" else "_late", broken)
    result = ingest_module.ingest(archive, dcim_volume, driver="generic")
    assert sorted(result.stored) == ["DCIM/a.mp4", "DCIM/b.mov", "DCIM/c.mp4"]
    (found,) = [f for f in result.findings if "could not be worked out" in f.message]
    assert (found.kind, found.message, found.path) == (
        "malformed",
        f"{step} could not be worked out from what the driver read (RuntimeError: boom); the files are stored",
        os.fspath(dcim_volume),
    )
