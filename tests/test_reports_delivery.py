"""The report counts what left the archive: a copy the archive service never sent is a failed delivery, with its
reason, never a view, an export or an unapproved access; a copy it sent whose receipt the caller's CLI did not
confirm is still a view or an export (the service cannot know what the caller kept), listed with what the CLI
said (issue 13, hostile reviews).

The copies fail for real: the person's folder is a 64 KiB file system (helpers.small_tmpfs), too small for the
footage, so the client of the archive service cannot write what it was sent; a service killed before it sent
anything (a crash point) leaves the copy unsent, and the next service records it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

from helpers import (
    as_,
    catalog_edit,
    catalog_rows,
    one_line_error,
    request,
    run_cli,
    run_cli_with_faults,
    serve,
    small_tmpfs,
)


def _report(arch: Path, out: Path, fmt: str = "json", code: int = 0) -> Path:
    r = run_cli("report", arch, "--format", fmt, "--out", out)
    assert r.returncode == code, r.stderr
    return out


def _model(arch: Path, out: Path, code: int = 0) -> dict:
    return json.loads(_report(arch, out, code=code).read_text())


def test_a_view_the_caller_could_not_write_is_a_view_whose_receipt_is_unconfirmed(
    cli_archive: Path, tmp_path: Path
) -> None:
    rid = request(cli_archive, "carol", 1)
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    with small_tmpfs(tmp_path / "full", "64k") as disk:
        out = as_("carol", "access", "open", cli_archive, rid, "--segment", "1", "--to", disk)
        one_line_error(out, "No space left on device.*the copy was sent, so the archive records it as handed over")
    log = catalog_rows(cli_archive, "SELECT action, ok FROM access_log WHERE request_id = ? ORDER BY id", (rid,))
    assert log == [("request", 1), ("approve", 1), ("open", 1), ("delivery_unconfirmed", 1)]
    model = _model(cli_archive, tmp_path / "r1.json")
    access = model["access"]
    assert (access["views"], access["failed"], access["unconfirmed"], access["refusals"]) == (1, 0, 1, 0)
    (said,) = access["unconfirmed_deliveries"]
    assert (said["action"], said["person"], said["request"], said["segments"]) == ("open", "carol", rid, [1])
    assert "No space left on device" in said["reason"]
    assert [f for f in model["findings"] if f["kind"] == "unapproved_access"] == []

    # A service killed before it sent anything: the next one records the view as never delivered.
    killed = run_cli_with_faults(
        "access",
        "open",
        cli_archive,
        rid,
        "--segment",
        "1",
        "--to",
        tmp_path,
        user="carol",
        crashpoint="service_before_delivery",
    )
    assert killed.returncode == -9, killed.stderr
    serve(cli_archive)
    access = _model(cli_archive, tmp_path / "r2.json")["access"]
    assert (access["views"], access["failed"], access["unconfirmed"]) == (1, 1, 1)
    (failure,) = access["failed_deliveries"]
    assert (failure["action"], failure["person"], failure["segments"]) == ("open", "carol", [1])

    # A refusal is still an unapproved access, and only it.
    out = as_("carol", "access", "open", cli_archive, rid, "--segment", "2", "--to", tmp_path / "v2")
    assert out.returncode == 1
    model = _model(cli_archive, tmp_path / "r3.json")
    assert (model["access"]["views"], model["access"]["failed"], model["access"]["refusals"]) == (1, 1, 1)
    (refusal,) = [f for f in model["findings"] if f["kind"] == "unapproved_access"]
    assert (refusal["action"], refusal["segment"], refusal["count"]) == ("open", 2, 1)


def test_an_export_sent_but_unconfirmed_counts_and_one_never_sent_does_not(cli_archive: Path, tmp_path: Path) -> None:
    assert (
        as_("alice", "retention", "case", cli_archive, "--case", "C-7", "--segment", "1", "--segment", "3").returncode
        == 0
    )
    rid = request(cli_archive, "carol", 1, 3, purpose="export")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    with small_tmpfs(tmp_path / "full", "64k") as disk:
        out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", disk / "bag")
        assert out.returncode == 2, out.stderr
    last = [json.loads(e) for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")[-4:]]
    assert [e["type"] for e in last] == ["access_export", "access_export", "export", "access_delivery_unconfirmed"]
    assert (last[-1]["person"], last[-1]["account"], last[-1]["segments"]) == ("carol", "carol", [1, 3])
    access = _model(cli_archive, tmp_path / "r1.json")["access"]
    assert (access["exports"], access["views"], access["failed"], access["unconfirmed"]) == (2, 0, 0, 1)
    (said,) = access["unconfirmed_deliveries"]
    assert (said["action"], said["person"], said["request"], said["segments"]) == ("export", "carol", rid, [1, 3])

    # Killed before it sent the bag: the next service ledgers the export failed, and it is not counted.
    argv = ("export", cli_archive, "--case", "C-7", "--request", rid, "--to", tmp_path / "bag0")
    assert run_cli_with_faults(*argv, user="carol", crashpoint="service_before_delivery").returncode == -9
    serve(cli_archive)
    access = _model(cli_archive, tmp_path / "r2.json")["access"]
    assert (access["exports"], access["failed"], access["unconfirmed"]) == (2, 1, 1)
    (failure,) = access["failed_deliveries"]
    assert (failure["action"], failure["person"], failure["segments"]) == ("export", "carol", [1, 3])
    assert failure["reason"]
    (entry,) = catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE seq = ?", (failure["ledger_index"],))[0]
    assert json.loads(entry)["account"] == "carol"  # hers, though the service that started next recorded it

    # Exported again, to a folder with room: both recordings counted again.
    out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", tmp_path / "bag")
    assert out.returncode == 0, out.stderr
    access = _model(cli_archive, tmp_path / "r3.json")["access"]
    assert (access["exports"], access["failed"], access["unconfirmed"]) == (4, 1, 1)

    # The HTML page and the PDF show both counts and each copy.
    page = _report(cli_archive, tmp_path / "r.html", "html").read_text()
    assert "未送达的副本" in page and "已发出但未确认收到的副本" in page
    assert len(re.findall(r"<td>carol</td><td>导出</td><td>1, 3</td>", page)) == 2
    pdf = _report(cli_archive, tmp_path / "r.pdf", "pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"未送达的副本\s+1", text) and re.search(r"已发出但未确认收到的副本\s+1", text)

    # Entries edited by hand do not break the report: verify's checks name the edit, the report is made.
    with catalog_edit(cli_archive) as c:
        for kind in (b'"type":"export_failed"', b'"type":"access_delivery_unconfirmed"'):
            seq, data = c.execute("SELECT seq, entry FROM ledger WHERE instr(entry, ?)", (kind,)).fetchone()
            edited = json.loads(data) | {"segments": [[1], "x"], "time": "soon"}
            c.execute(
                "UPDATE ledger SET entry = ? WHERE seq = ?", (json.dumps(edited, separators=(",", ":")).encode(), seq)
            )
    model = _model(cli_archive, tmp_path / "r4.json", code=1)  # made, and exit 1: its integrity is not intact
    assert model["integrity"]["ok"] is False and model["access"]["failed"] == 0
    assert [u["segments"] for u in model["access"]["unconfirmed_deliveries"]] == [[]]


def test_a_report_is_never_written_through_a_planted_link_nor_over_a_device(cli_archive: Path, tmp_path: Path) -> None:
    """The temp beside --out had a predictable name and was opened following links: links planted at the next
    pids' names made a report overwrite any file the caller could write; a device or FIFO at --out was replaced
    by a regular file (/dev/null once). A hostile review."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "drop"
    out_dir.mkdir()
    pid = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    for n in range(pid, pid + 200):
        (out_dir / f"r.json.{n}.part").symlink_to(victim)
    r = run_cli("report", cli_archive, "--format", "json", "--out", out_dir / "r.json")
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious"
    written = out_dir / "r.json"
    assert not written.is_symlink() and json.loads(written.read_bytes())["report"] == "custodes compliance report"
    assert written.stat().st_mode & 0o077 == 0  # the archive's facts, for its reader alone
    fifo = out_dir / "fifo.json"
    os.mkfifo(fifo)
    r = run_cli("report", cli_archive, "--format", "json", "--out", fifo, timeout=60)
    assert r.returncode == 2 and "not a regular file" in r.stderr.decode(), r.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("r.json.")) == ["fifo.json", "r.json"]
