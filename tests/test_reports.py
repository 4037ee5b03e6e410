"""Compliance reports: every number equals a count known from how the archive was built."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from custodes.archive import open_archive
from custodes.reports import ReportError, build_report
from footage import T0, make_clip
from helpers import as_, build_cli_archive, catalog_edit, request, run_cli

BJ = timezone(timedelta(hours=8))


def name(seconds: int, seq: int, imp: bool = False, lie: int = 0) -> str:
    t = (T0 + timedelta(seconds=seconds + lie)).astimezone(BJ)
    return f"001234_BWC0001_{t:%Y%m%d%H%M%S}_{seq:04d}{'IMP' if imp else ''}.MP4"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    arch = build_cli_archive(root / "archive")  # the custody people, nothing ingested yet
    vol = root / "BWC0001"
    # Recorded 0-6 s, then 10-14 s (a 4 s gap), file 0004 missing, 0007 important.
    for seconds, seq, imp in [(0, 1, False), (2, 2, False), (4, 3, False), (10, 5, False), (12, 6, False)]:
        make_clip(vol / name(seconds, seq, imp), T0 + timedelta(seconds=seconds))
    make_clip(vol / name(14, 7, True, lie=300), T0 + timedelta(seconds=14))  # its name is 300 s off: a mismatch
    make_clip(vol / "001234_BWC0001_20000101080000_0008.MP4", T0.replace(year=2000, month=1, day=1))  # reset clock
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:00:10\nstation_time=2024-03-01T10:00:00Z\n")
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1
    tasks = root / "tasks.json"
    start, end = (T0 - timedelta(seconds=10)).isoformat(), (T0 + timedelta(seconds=6)).isoformat()
    tasks.write_text(json.dumps([{"id": "T1", "type": "stop", "start": start, "end": end, "devices": ["BWC0001"]}]))
    assert as_("alice", "task", "import", arch, tasks).returncode == 0  # alice: the custodian
    rid = request(arch, "carol", 1)
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "1").returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "2").returncode == 1  # refused: not in the request
    assert as_("alice", "retention", "hold", arch, "--segment", "2", "--reason", "complaint").returncode == 0
    assert as_("alice", "retention", "long-term", arch, "--segment", "3", "--reason", "complaint").returncode == 0
    return arch


def report(arch: Path, fmt: str, out: Path, *args: str) -> Path:
    r = run_cli("report", arch, "--format", fmt, "--out", out, *args)
    assert r.returncode == 0, r.stderr
    return out


def test_json_numbers_equal_what_was_built(built: Path, tmp_path: Path) -> None:
    # A fixed clock: the 2024-03-01 recordings are past their 730 days from 2026-03-01 on.
    model = json.loads(report(built, "json", tmp_path / "r.json", "--at", "2026-06-01T00:00:00Z").read_text())
    assert model["generated"] == "2026-06-01T00:00:00Z"
    c = model["completeness"]
    assert c["segments"] == 8  # 7 recordings + the clock file, each a catalog row
    # 4 s after 0003, and 300 s before 0007, whose name (the device clock) puts it there.
    assert (c["gaps"], c["sequence_breaks"]) == (2, 1)
    # The device clock was 10 s ahead at docking, so the corrected recordings are -10..-4 s and 0..4 s:
    # the task window -10..6 s has two unexplained holes, -4..0 s and 4..6 s.
    assert c["unexplained_gaps_in_tasks"] == 2 and c["tasks"][0]["task"] == "T1"
    assert c["tasks"][0]["covered_share"] == pytest.approx(10 / 16)
    cl = model["clocks"]
    # 0007's name is 300 s off; 0008's says 00:00Z where its (reset) container says 10:00Z.
    assert (cl["clock_unset"], cl["name_time_mismatch"]) == (1, 2)
    assert cl["drift"] == [
        {"device": "BWC0001", "readings": 1, "max_offset_seconds": 10.0, "last_offset_seconds": 10.0}
    ]
    assert cl["corrected_segments"] == 7  # every recording with a time; the clock file has none
    t = model["timeliness"]
    assert (t["ingests"], t["late_ingest"]) == (1, 6)  # the six timed recordings of 2024, not the clock-reset one
    assert t["delay_hours"]["max"] < 24 * 365 * 3  # the reset clock's "year 2000" is no delay
    # Due: files 0003, 0005, 0006 (0001 is held; 0008's reset clock counts from its ingest, not from the year 2000).
    assert model["retention"] == {
        "due": 3,
        "held": 1,
        "long_term": 2,
        "purged": 0,
    }  # long-term: segment 3 (file 0002) marked, 0007 IMP
    # A day before the 730 days have run, nothing is due yet.
    before = json.loads(report(built, "json", tmp_path / "b.json", "--at", "2026-02-28T00:00:00Z").read_text())
    assert before["retention"] == {"due": 0, "held": 1, "long_term": 2, "purged": 0}
    assert model["access"] == {
        "requests": 1,
        "approved": 1,
        "denied": 0,
        "refusals": 1,
        "views": 1,
        "exports": 0,
        "failed": 0,
        "failed_deliveries": [],
        "unconfirmed": 0,
        "unconfirmed_deliveries": [],
    }
    concerns = {x["concern"]: x for x in model["concerns"]}
    assert concerns["concern_not_recorded"]["count"] == 2
    assert concerns["concern_unapproved"]["count"] == 1
    assert concerns["concern_deleted"]["kinds"] == ["sequence_break"]
    assert model["integrity"]["ok"] is True and model["checkpoint"]["size"] > 0
    late = [f for f in model["findings"] if f["kind"] == "late_ingest"]
    assert len(late) == 6 and all(f["article"] == 16 and f["ledger_index"] is not None for f in late)


def test_scope_and_period(built: Path, tmp_path: Path) -> None:
    # A device or case the archive does not know is refused, not a confident report of 0 recordings (since
    # 2026-12-01: a hostile review), through the CLI and the library alike.
    assert run_cli("report", built, "--out", tmp_path / "o.json", "--scope", "archive=1").returncode == 2
    for scope in ("device=NOPE", "case=NOPE"):
        out = run_cli("report", built, "--format", "json", "--out", tmp_path / "o.json", "--scope", scope)
        assert out.returncode == 2 and b"the archive knows no" in out.stderr, (scope, out.stderr)
    assert not (tmp_path / "o.json").exists()
    with open_archive(built) as a:
        for kw in ({"scope": "planet"}, {"scope": "device"}, {"start": 10, "end": 5}, {"lang": "fr"}):
            with pytest.raises(ReportError):
                build_report(a, **kw)
    early = json.loads(report(built, "json", tmp_path / "e.json", "--to", "2023-01-01T00:00:00Z").read_text())
    assert early["completeness"]["segments"] == 0  # before 2023: nothing but the 2000 clip, placed at its ingest
    assert run_cli("report", built, "--format", "json", "--out", tmp_path / "x", "--scope", "planet=3").returncode == 2
    assert run_cli("report", built, "--format", "docx", "--out", tmp_path / "x").returncode == 2


def test_csv_one_row_per_finding(built: Path, tmp_path: Path) -> None:
    raw = report(built, "csv", tmp_path / "r.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    model = json.loads(report(built, "json", tmp_path / "r.json").read_text())
    assert len(rows) == len(model["findings"])
    assert sum(1 for r in rows if r["kind"] == "late_ingest") == 6


def test_html_is_self_contained_and_pdf_carries_the_chinese_labels(built: Path, tmp_path: Path) -> None:
    page = report(built, "html", tmp_path / "r.html").read_text()
    assert "执法音像记录合规报告" in page
    assert page.count("<svg") == 2  # one timeline for the device, one for the task
    assert "时钟校正 -10.0 s" in page  # the docking correction, drawn on the device's timeline
    fetches = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page) + re.findall(r"@import|url\(", page)
    assert fetches == []  # nothing to fetch: opens with no network
    pdf = report(built, "pdf", tmp_path / "r.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for zh in ("执法音像记录合规报告", "完整记录", "超时导入", "第二十五条关注事项"):
        assert zh in text
    model = json.loads(report(built, "json", tmp_path / "r.json").read_text())
    assert model["archive"]["id"] in text and model["checkpoint"]["root"][:16] in text  # on the page header
    assert re.search(r"超时导入\s+6", text)
    png = tmp_path / "page"
    subprocess.run(["pdftoppm", "-png", "-f", "1", "-l", "1", "-r", "60", str(pdf), str(png)], check=True)
    first = next(tmp_path.glob("page*.png"))
    from PIL import Image

    with Image.open(first) as img:
        width, height = img.size
        grey = img.convert("L")
        dark = sum(grey.histogram()[:128])
    assert abs(width - 496) <= 1 and abs(height - 702) <= 1  # A4 (210 x 297 mm) at 60 dpi, give or take rounding
    assert 0.005 < dark / (width * height) < 0.5  # text and pictures on the page, not a blank or black page
    english = report(built, "html", tmp_path / "en.html", "--lang", "en").read_text()
    assert "Compliance report on enforcement recordings" in english


@pytest.mark.parametrize("damage", ["object", "catalog"])
def test_a_report_whose_integrity_is_not_intact_is_written_and_exits_1(
    cli_archive: Path, tmp_path: Path, damage: str
) -> None:
    """A report exited 0 whatever its integrity check found, so a scheduled `report --verify` passed over a
    modified object or an edited catalog in silence (the CLI's rule: exit 1 when something is wrong with the
    evidence). The report is still written whole: it is the record of what is wrong."""
    clean = run_cli("report", cli_archive, "--format", "json", "--out", tmp_path / "clean.json", "--verify", "--json")
    assert clean.returncode == 0, clean.stderr  # gaps, late ingests and clock findings alone leave it at 0
    assert json.loads(clean.stdout)["integrity_ok"] is True
    assert json.loads((tmp_path / "clean.json").read_text())["findings"]  # (there are such findings)
    if damage == "object":
        obj = next(p for p in (cli_archive / "objects").rglob("*") if p.is_file())
        original_last = obj.read_bytes()[-1:]
        obj.chmod(0o644)
        obj.write_bytes(obj.read_bytes()[:-1] + b"X")
        obj.chmod(0o400)
    else:
        with catalog_edit(cli_archive) as c:
            c.execute("UPDATE segments SET start_ns = start_ns + 1000000000 WHERE id = 1")
    out = tmp_path / "damaged.json"
    r = run_cli("report", cli_archive, "--format", "json", "--out", out, "--verify", "--json")
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["integrity_ok"] is False
    assert re.search(rb"integrity: [1-9]\d* finding\(s\)", r.stderr)
    model = json.loads(out.read_text())
    assert model["integrity"]["ok"] is False and model["integrity"]["findings"] >= 1
    html = run_cli("report", cli_archive, "--format", "html", "--out", tmp_path / "damaged.html", "--verify", "--quiet")
    assert html.returncode == 1 and (tmp_path / "damaged.html").stat().st_size > 0
    # Without --verify the objects are not re-hashed, but what the latest verify found of one stands until a verify
    # finds it sound or a repair mends it (since 2026-12-01: the report said ok, 0 findings, after verify had
    # found the object modified); an edited catalog is seen either way.
    quick = run_cli("report", cli_archive, "--format", "json", "--out", tmp_path / "quick.json")
    assert quick.returncode == 1, quick.stderr
    if damage == "object":
        found = json.loads((tmp_path / "quick.json").read_text())["findings"]
        (kept,) = [f for f in found if f["kind"] == "modified"]
        assert "found by verify at" in kept["message"] and kept["object"] == obj.name, kept
        obj.chmod(0o644)  # put back as it was: the next verify finds it sound, and the report says so
        obj.write_bytes(obj.read_bytes()[:-1] + original_last)
        obj.chmod(0o400)
        assert run_cli("verify", cli_archive).returncode == 0
        again = run_cli("report", cli_archive, "--format", "json", "--out", tmp_path / "again.json")
        assert again.returncode == 0, again.stderr
