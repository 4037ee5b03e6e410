"""The report counts what reached people: a view or export whose copy never arrived is a failed delivery, with
its reason, never a view, an export or an unapproved access (issue 13, hostile review).

The copies fail for real: the person's folder is a 64 KiB file system (helpers.small_tmpfs), too small for the
footage, so the client of the archive service cannot write it and the service records the failure.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from helpers import as_, catalog_edit, catalog_rows, one_line_error, request, run_cli, small_tmpfs


def _report(arch: Path, out: Path, fmt: str = "json") -> Path:
    r = run_cli("report", arch, "--format", fmt, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def _model(arch: Path, out: Path) -> dict:
    return json.loads(_report(arch, out).read_text())


def test_a_view_that_never_arrived_is_a_failed_delivery_not_a_view(cli_archive: Path, tmp_path: Path) -> None:
    rid = request(cli_archive, "carol", 1)
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    with small_tmpfs(tmp_path / "full", "64k") as disk:
        one_line_error(as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", disk), "nothing")
    log = catalog_rows(cli_archive, "SELECT action, ok FROM access_log WHERE request_id = ? ORDER BY id", (rid,))
    assert log == [("request", 1), ("approve", 1), ("open", 1), ("open_failed", 0)]
    model = _model(cli_archive, tmp_path / "r1.json")
    access = model["access"]
    assert (access["views"], access["exports"], access["failed"], access["refusals"]) == (0, 0, 1, 0)
    (failure,) = access["failed_deliveries"]
    assert (failure["action"], failure["person"], failure["request"], failure["segments"]) == (
        "open",
        "carol",
        rid,
        [1],
    )
    assert "No space left on device" in failure["reason"]
    assert [f for f in model["findings"] if f["kind"] == "unapproved_access"] == []
    assert "concern_unapproved" not in {c["concern"] for c in model["concerns"]}

    # The same request, into a folder with room: delivered, so one view; the failure stays listed.
    assert as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", tmp_path / "v").returncode == 0
    access = _model(cli_archive, tmp_path / "r2.json")["access"]
    assert (access["views"], access["failed"]) == (1, 1)

    # A refusal is still an unapproved access, and only it.
    out = as_("carol", "access", "open", cli_archive, rid, "--segment", "2", "--to", tmp_path / "v2")
    assert out.returncode == 1
    model = _model(cli_archive, tmp_path / "r3.json")
    assert (model["access"]["views"], model["access"]["failed"], model["access"]["refusals"]) == (1, 1, 1)
    (refusal,) = [f for f in model["findings"] if f["kind"] == "unapproved_access"]
    assert (refusal["action"], refusal["segment"], refusal["count"]) == ("open", 2, 1)


def test_an_export_that_never_arrived_is_a_failed_delivery(cli_archive: Path, tmp_path: Path) -> None:
    assert (
        as_("alice", "retention", "case", cli_archive, "--case", "C-7", "--segment", "1", "--segment", "3").returncode
        == 0
    )
    rid = request(cli_archive, "carol", 1, 3, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    with small_tmpfs(tmp_path / "full", "64k") as disk:
        out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", disk / "bag")
        assert out.returncode == 2, out.stderr
    kinds = [json.loads(e)["type"] for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")[-4:]]
    assert kinds == ["access_export", "access_export", "export", "export_failed"]
    model = _model(cli_archive, tmp_path / "r1.json")
    access = model["access"]
    assert (access["exports"], access["views"], access["failed"], access["refusals"]) == (0, 0, 1, 0)
    (failure,) = access["failed_deliveries"]
    assert (failure["action"], failure["person"], failure["request"], failure["segments"]) == (
        "export",
        "carol",
        rid,
        [1, 3],
    )
    assert failure["reason"]
    assert [f for f in model["findings"] if f["kind"] == "unapproved_access"] == []

    # Exported again, to a folder with room: both recordings counted as exported, the failure still listed.
    out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", tmp_path / "bag")
    assert out.returncode == 0, out.stderr
    access = _model(cli_archive, tmp_path / "r2.json")["access"]
    assert (access["exports"], access["failed"]) == (2, 1)

    # The HTML page and the PDF show the count and the reason.
    page = _report(cli_archive, tmp_path / "r.html", "html").read_text()
    assert "未送达的副本" in page and re.search(r"<td>carol</td><td>导出</td><td>1, 3</td>", page)
    pdf = _report(cli_archive, tmp_path / "r.pdf", "pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"未送达的副本\s+1", text) and "carol" in text

    # A failure entry edited by hand does not break the report: verify's checks name the edit, the report is made.
    with catalog_edit(cli_archive) as c:
        seq, data = c.execute(
            "SELECT seq, entry FROM ledger WHERE instr(entry, ?)", (b'"type":"export_failed"',)
        ).fetchone()
        edited = json.loads(data) | {"segments": [[1], "x"], "time": "soon"}
        c.execute(
            "UPDATE ledger SET entry = ? WHERE seq = ?", (json.dumps(edited, separators=(",", ":")).encode(), seq)
        )
    model = _model(cli_archive, tmp_path / "r3.json")
    assert model["integrity"]["ok"] is False and model["access"]["failed"] == 0
