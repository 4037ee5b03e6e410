"""The device registry and assignments (issue 18, Art. 6, 9, 25) on a fleet of ffmpeg-made GA/T 947 recorders:
two officers swapping devices for a day without an assignment change (device_lent on exactly those recordings),
a device recording before any assignment (unassigned_device), a lost device's footage turning up (lost_device),
an unregistered device (unregistered_device). The registry and assignments are imported after the footage: the
findings are derived when read, so they count. The report's devices section and concerns are checked against
counts this test works out from its own fleet plan and the catalog read with sqlite3 (read-only)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from custodes.devices import FINDING_KINDS
from footage import T0, make_clip
from helpers import as_, catalog_edit, catalog_rows, grant, run_cli

BJ = timezone(timedelta(hours=8))
S = 1_000_000_000
T0_NS = int(T0.timestamp()) * S


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The fleet: per device, (officer its file name names, seconds after T0) of each recording.
FLEET: dict[str, list[tuple[str, int]]] = {
    # 001234 holds BWCA, 005678 holds BWCB; from 10 s they swap without telling anyone.
    "BWCA": [("001234", 0), ("001234", 2), ("005678", 10), ("005678", 12)],
    "BWCB": [("005678", 0), ("005678", 2), ("001234", 10), ("001234", 12)],
    # Assigned to 009999 only from 20 s: the recording at 10 s is before any assignment.
    "BWCC": [("009999", 10), ("009999", 20), ("009999", 22)],
    # Reported lost at 15 s; its footage turns up afterwards.
    "BWCL": [("007777", 4), ("007777", 16), ("007777", 18)],
    # Never registered.
    "BWCX": [("003333", 6)],
}
DEVICES_CSV = (
    "id,kind,vendor,model,serial,unit,status,since\n"
    f"BWCA,body_camera,Acme,X1,SN-A,U1,in_service,{iso(-3600)}\n"
    f"BWCB,body_camera,Acme,X1,SN-B,U1,in_service,{iso(-3600)}\n"
    f"BWCC,body_camera,Acme,X2,SN-C,U2,in_service,{iso(-3600)}\n"
    f"BWCL,body_camera,Acme,X2,SN-L,U2,in_service,{iso(-3600)}\n"
    f"SPARE,recorder,Acme,R9,SN-S,U2,in_repair,{iso(-3600)}\n"
)
#: (device, officer, from, to) in seconds after T0; None: open.
ASSIGNMENTS: list[tuple[str, str, int, int | None]] = [
    ("BWCA", "001234", -3600, None),
    ("BWCB", "005678", -3600, None),
    ("BWCC", "009999", 20, None),
    ("BWCL", "007777", -3600, None),
]
LOST_AT = 15
UNITS = {"BWCA": "U1", "BWCB": "U1", "BWCC": "U2", "BWCL": "U2", "SPARE": "U2"}


def assignments_csv(rows: list[tuple[str, str, int, int | None]]) -> str:
    body = "".join(f"{d},{o},{iso(a)},{'' if b is None else iso(b)}\n" for d, o, a, b in rows)
    return "device,officer,from,to\n" + body


def read_only(arch: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def ledger_size(arch: Path) -> int:
    return int(read_only(arch, "SELECT COUNT(*) FROM ledger")[0][0])


def ok(*args: Any) -> Any:
    out = run_cli(*args)
    assert out.returncode == 0, (args, out.stdout.decode(), out.stderr.decode())
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    for device, recordings in FLEET.items():
        vol = root / device
        for n, (officer, s) in enumerate(recordings, start=1):
            t = T0 + timedelta(seconds=s)
            make_clip(vol / f"{officer}_{device}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t, 1.0)
        out = run_cli("ingest", vol, "--archive", arch)
        assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
    # The registry and the assignments come after the footage, as an agency's import would.
    (root / "devices.csv").write_text(DEVICES_CSV)
    ok("device", "import", arch, root / "devices.csv")
    ok("device", "update", arch, "BWCL", "--status", "lost", "--since", iso(LOST_AT))
    (root / "assignments.csv").write_text(assignments_csv(ASSIGNMENTS))
    ok("device", "assign-import", arch, root / "assignments.csv")
    return arch


def segments(arch: Path) -> list[tuple[int, str, str, int]]:
    """(id, device, officer the file name names, time) of every recording, read with sqlite3."""
    return read_only(
        arch,
        "SELECT id, device_id, officer_id, COALESCE(corrected_start_ns, start_ns) FROM segments "
        "WHERE kind IN ('video', 'audio', 'photo') ORDER BY id",
    )


def expected_findings(arch: Path) -> dict[str, list[int]]:
    """Each registry finding kind and its segments, from this test's own plan (ASSIGNMENTS, LOST_AT)."""
    out: dict[str, list[int]] = {}
    for seg, device, officer, when in segments(arch):
        held = [
            o
            for d, o, a, b in ASSIGNMENTS
            if d == device and T0_NS + a * S <= when and (b is None or when < T0_NS + b * S)
        ]
        if device not in UNITS:
            kind = "unregistered_device"
        elif device == "BWCL" and when >= T0_NS + LOST_AT * S:
            kind = "lost_device"
        elif not held:
            kind = "unassigned_device"
        elif officer != held[0]:
            kind = "device_lent"
        else:
            continue
        out.setdefault(kind, []).append(seg)
    return out


def report(arch: Path, *args: str) -> dict[str, Any]:
    path = arch.parent / "report.json"
    out = run_cli("report", arch, "--out", path, "--quiet", *args)
    assert out.returncode in (0, 1), out.stderr.decode()
    return json.loads(path.read_text())


def test_findings_are_exactly_the_swapped_lost_unassigned_and_unregistered_recordings(fleet: Path) -> None:
    want = expected_findings(fleet)
    # The plan itself, so the expectation cannot be empty: 4 swapped, 1 before assignment, 2 lost, 1 unregistered.
    assert {k: len(v) for k, v in want.items()} == {
        "device_lent": 4,
        "unassigned_device": 1,
        "lost_device": 2,
        "unregistered_device": 1,
    }
    lent = {
        seg
        for seg, d, o, _ in segments(fleet)
        if d in ("BWCA", "BWCB") and o != {"BWCA": "001234", "BWCB": "005678"}[d]
    }
    assert set(want["device_lent"]) == lent
    found = report(fleet)["findings"]
    got: dict[str, list[int]] = {}
    for f in found:
        if f["kind"] in want:
            got.setdefault(f["kind"], []).append(f["segment"])
            assert f["article"] == {"device_lent": 25, "lost_device": 25, "unassigned_device": 9,
                                    "unregistered_device": 6}[f["kind"]]  # fmt: skip
    assert {k: sorted(v) for k, v in got.items()} == want


def test_devices_section_and_concerns_match_independent_counts(fleet: Path) -> None:
    want = expected_findings(fleet)
    rep = report(fleet)
    section = rep["devices"]
    assert (section["in_use"], section["registered"]) == (True, 5)
    by_unit = {u["unit"]: u for u in section["units"]}
    assert list(by_unit) == ["U1", "U2", None]
    assert {u: (v["devices"], v["by_status"]) for u, v in by_unit.items()} == {
        "U1": (2, {"in_service": 2}),
        "U2": (3, {"in_service": 1, "lost": 1, "in_repair": 1}),
        None: (0, {}),
    }
    dev_of = {seg: d for seg, d, _, _ in segments(fleet)}
    keys = {"device_lent": "lent", "unassigned_device": "unassigned", "lost_device": "lost",
            "unregistered_device": "unregistered"}  # fmt: skip
    for unit, u in by_unit.items():
        for kind, key in keys.items():
            segs = [s for s in want.get(kind, []) if UNITS.get(dev_of[s]) == unit]
            assert u[key] == {"count": len(segs), "segments": segs, "devices": sorted({dev_of[s] for s in segs})}
        assert u["retired"] == {"count": 0, "segments": [], "devices": []}
    concerns = {c["concern"]: c for c in rep["concerns"]}
    assert concerns["concern_device_lent"]["segments"] == want["device_lent"]
    assert concerns["concern_device_lost"]["segments"] == want["lost_device"]
    ledger = dict(read_only(fleet, "SELECT id, ledger_seq FROM segments"))
    assert concerns["concern_device_lent"]["ledger_indexes"] == sorted(ledger[s] for s in want["device_lent"])


def test_officer_report_follows_the_assignment(fleet: Path) -> None:
    """The responsible officer is the assignee: 001234's report holds all of BWCA's recordings (those
    005678 made on it too) and none of what 001234 recorded on BWCB."""
    rep = report(fleet, "--scope", "officer=001234")
    bwca = [seg for seg, d, _, _ in segments(fleet) if d == "BWCA"]
    assert rep["completeness"]["segments"] == len(bwca) == 4
    assert sorted(f["segment"] for f in rep["findings"] if f["kind"] == "device_lent") == sorted(
        s for s in expected_findings(fleet)["device_lent"] if s in bwca
    )


def test_assignments_import_refuses_overlaps_naming_rows_and_reimport_is_a_noop(fleet: Path, tmp_path: Path) -> None:
    before = ledger_size(fleet)
    again = tmp_path / "assignments.csv"
    again.write_text(assignments_csv(ASSIGNMENTS))
    out = ok("device", "assign-import", fleet, again, "--json")
    assert json.loads(out.stdout)["unchanged"] and not json.loads(out.stdout)["assigned"]
    assert ledger_size(fleet) == before
    bad = tmp_path / "overlap.csv"
    bad.write_text(assignments_csv([("BWCC", "001111", 0, 10), ("BWCC", "002222", 5, 12), ("BWCA", "x", 1, 1)]))
    out = run_cli("device", "assign-import", fleet, bad)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert "overlap.csv row 2: BWCC to 002222" in err and "overlaps overlap.csv row 1 (001111" in err, err
    assert "overlap.csv row 3: the assignment of 'BWCA' ends before it starts" in err, err
    assert "Traceback" not in err
    # One that overlaps an assignment recorded before is refused too, by the CLI's single assign.
    out = run_cli("device", "assign", fleet, "BWCC", "--officer", "004444", "--from", iso(30))
    assert out.returncode == 2 and "overlaps the assignment recorded from" in out.stderr.decode(), out.stderr
    out = run_cli("device", "assign", fleet, "NOPE", "--officer", "004444", "--from", iso(30))
    assert out.returncode == 2 and "no device 'NOPE' in the registry" in out.stderr.decode(), out.stderr
    assert ledger_size(fleet) == before


def test_device_import_names_bad_rows_and_reimport_is_a_noop(fleet: Path, tmp_path: Path) -> None:
    before = ledger_size(fleet)
    same = tmp_path / "devices.json"
    rows = [dict(zip(DEVICES_CSV.splitlines()[0].split(","), line.split(","), strict=True))
            for line in DEVICES_CSV.splitlines()[1:]]  # fmt: skip
    rows = [r for r in rows if r["id"] != "BWCL"]  # its status changed since: that row would be an update
    same.write_text(json.dumps(rows))
    out = ok("device", "import", fleet, same, "--json")
    assert json.loads(out.stdout) == {"imported": [], "updated": [], "unchanged": [r["id"] for r in rows]}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,kind,status\nD1,phone,\nD2,drone,broken\n,drone,\nD3,drone,\n")
    out = run_cli("device", "import", fleet, bad)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert "bad.csv row 1: device 'D1': kind 'phone'" in err and "bad.csv row 2: device 'D2': status 'broken'" in err
    assert "bad.csv row 3: no id" in err and "Traceback" not in err
    assert ledger_size(fleet) == before
    assert read_only(fleet, "SELECT COUNT(*) FROM registry WHERE device_id = 'D3'") == [(0,)]  # all or nothing
    out = run_cli("device", "add", fleet, "BWCA", "--kind", "body_camera")
    assert out.returncode == 2 and "registered already" in out.stderr.decode()


def test_show_and_list(fleet: Path) -> None:
    shown = json.loads(ok("device", "show", fleet, "BWCL", "--json").stdout)
    assert shown["status"] == "lost" and shown["since"] == iso(LOST_AT)
    assert [s["status"] for s in shown["statuses"]] == ["in_service", "lost"]
    assert shown["assignments"] == [{"device": "BWCL", "officer": "007777", "from": iso(-3600), "to": None}]
    listed = json.loads(ok("device", "list", fleet, "--json").stdout)["devices"]
    assert [d["id"] for d in listed] == sorted(UNITS)
    out = run_cli("device", "show", fleet, "NOPE")
    assert out.returncode == 2 and out.stderr.decode().strip() == "custodes: no device 'NOPE' in the registry"


def test_retire_rebuild_and_tamper(fleet: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fleet, copy)
    ok("device", "retire", copy, "BWCA", "--at", iso(11))
    rep = report(copy)
    retired = sorted(f["segment"] for f in rep["findings"] if f["kind"] == "retired_device")
    assert retired == [seg for seg, d, _, when in segments(copy) if d == "BWCA" and when >= T0_NS + 11 * S]
    out = run_cli("ledger", "rebuild-catalog", copy, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["equal"] is True, out.stdout
    with catalog_edit(copy) as c:  # a hand edit of a registry row and of an assignment
        c.execute("UPDATE registry SET status = 'in_service' WHERE device_id = 'BWCL'")
        c.execute("UPDATE assignments SET officer_id = '005678' WHERE device_id = 'BWCA'")
    out = run_cli("ledger", "verify", copy, "--json")
    assert out.returncode == 1
    found = {(f["kind"], f["table"]) for f in json.loads(out.stdout)["findings"]}
    assert found == {("ledger_mismatch", "registry"), ("ledger_mismatch", "assignments")}


def test_no_registry_no_findings(tmp_path: Path) -> None:
    """An archive with no registered device reads as before: no registry findings, the section says not in use."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    vol = tmp_path / "BWCX"
    t = T0
    make_clip(vol / f"003333_BWCX_{t.astimezone(BJ):%Y%m%d%H%M%S}_0001.MP4", t, 1.0)
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1
    rep = report(arch)
    assert rep["devices"] == {"in_use": False, "registered": 0, "units": [], "corrections": []}
    assert not [f for f in rep["findings"] if f["kind"].endswith("_device") or f["kind"] == "device_lent"]


def test_only_a_custodian_registers_and_assigns_and_a_refusal_is_logged(fleet: Path) -> None:
    grant(fleet, "approver", "carol")
    logged = read_only(fleet, "SELECT COUNT(*) FROM access_log WHERE ok = 0")[0][0]
    before = read_only(fleet, "SELECT COUNT(*) FROM assignments")
    out = as_("carol", "device", "assign", fleet, "BWCC", "--officer", "004444", "--from", iso(40))
    assert out.returncode == 1 and "carol may not device_assign (needs custodian)" in out.stderr.decode()
    out = as_("carol", "device", "add", fleet, "NEW1", "--kind", "drone")
    assert out.returncode == 1 and "carol may not device_register (needs custodian)" in out.stderr.decode()
    assert read_only(fleet, "SELECT COUNT(*) FROM access_log WHERE ok = 0")[0][0] == logged + 2
    assert read_only(fleet, "SELECT COUNT(*) FROM assignments") == before
    assert read_only(fleet, "SELECT COUNT(*) FROM registry WHERE device_id = 'NEW1'") == [(0,)]


def test_query_api_segments_carry_the_responsible_officer(fleet: Path) -> None:
    """archive.segments(officer=...) selects by the assignee at each recording's time; Segment.responsible is it."""
    from custodes.archive import open_archive

    def assignee(device: str, when: int) -> str | None:
        held = [
            o
            for d, o, a, b in ASSIGNMENTS
            if d == device and T0_NS + a * S <= when and (b is None or when < T0_NS + b * S)
        ]
        return held[0] if held else None

    want = {seg: assignee(d, when) for seg, d, _, when in segments(fleet)}
    with open_archive(fleet) as archive:
        got = {s.id: s.responsible for s in archive.segments()}
        mine = [s.id for s in archive.segments(officer="001234")]
    assert got == want
    # 001234's: every recording BWCA made while assigned to them (005678's swapped ones too), none of BWCB's.
    assert mine == sorted(seg for seg, o in want.items() if o == "001234") and len(mine) == 4


def test_html_and_csv_reports_carry_the_device_concerns(fleet: Path) -> None:
    page = fleet.parent / "report.html"
    out = run_cli("report", fleet, "--format", "html", "--lang", "en", "--out", page, "--quiet")
    assert out.returncode in (0, 1) and b"Traceback" not in out.stderr, out.stderr.decode()
    html = page.read_text()
    assert "Devices lent (device_lent)</td><td>4<" in html and "Devices lost (lost_device)</td><td>2<" in html
    table = fleet.parent / "report.csv"
    out = run_cli("report", fleet, "--format", "csv", "--out", table, "--quiet")
    assert out.returncode in (0, 1) and b"Traceback" not in out.stderr, out.stderr.decode()
    assert table.read_text(encoding="utf-8-sig").count("device_lent") == 4


def test_assignments_from_json(fleet: Path, tmp_path: Path) -> None:
    data = tmp_path / "assignments.json"
    rows = [{"device": "SPARE", "officer": "008888", "from": iso(100), "to": iso(200)},
            {"device": "SPARE", "officer": "008888", "from": iso(200)}]  # fmt: skip
    data.write_text(json.dumps(rows))
    out = ok("device", "assign-import", fleet, data, "--json")
    assert json.loads(out.stdout)["assigned"] == [f"SPARE@{iso(100)}", f"SPARE@{iso(200)}"]
    assert read_only(fleet, "SELECT start_ns, end_ns, officer_id FROM assignments WHERE device_id = 'SPARE'") == [
        (T0_NS + 100 * S, T0_NS + 200 * S, "008888"),
        (T0_NS + 200 * S, None, "008888"),
    ]


def test_query_api_findings_include_the_registry_findings(fleet: Path) -> None:
    from custodes.archive import open_archive

    with open_archive(fleet) as archive:
        got: dict[str, list[int]] = {}
        for f in archive.findings():
            if f.kind in ("device_lent", "unassigned_device", "lost_device", "unregistered_device"):
                assert (f.id, f.ingest, f.task) == (None, None, None)
                got.setdefault(f.kind, []).append(f.segment or 0)
        lent_bwcb = [f.segment for f in archive.findings(device="BWCB") if f.kind == "device_lent"]
    want = expected_findings(fleet)
    assert got == want
    dev_of = {seg: d for seg, d, _, _ in segments(fleet)}
    assert lent_bwcb == [s for s in want["device_lent"] if dev_of[s] == "BWCB"] and len(lent_bwcb) == 2


def test_unit_report_takes_the_registry_unit(fleet: Path) -> None:
    rep = report(fleet, "--scope", "unit=U2")
    assert rep["scope"]["devices"] == ["BWCC", "BWCL", "SPARE"]
    (u2,) = rep["devices"]["units"]
    want = expected_findings(fleet)
    assert (u2["unit"], u2["devices"], u2["lost"]["segments"], u2["unassigned"]["segments"]) == (
        "U2",
        3,
        want["lost_device"],
        want["unassigned_device"],
    )
    assert u2["lent"]["count"] == u2["unregistered"]["count"] == 0


def fresh(tmp_path: Path, device: str, officer: str, seconds: list[int]) -> Path:
    """An archive holding one device's recordings at those seconds after T0, nothing registered yet."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    vol = tmp_path / device
    for n, s in enumerate(seconds, start=1):
        t = T0 + timedelta(seconds=s)
        make_clip(vol / f"{officer}_{device}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t, 1.0)
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1  # late_ingest
    return arch


def refused(out: Any, *words: str) -> str:
    err = out.stderr.decode()
    assert out.returncode == 2 and err.startswith("custodes: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_footage_before_registration_is_unregistered_and_status_dates_are_checked(tmp_path: Path) -> None:
    """H1, H2, M4: a future status, a status or assignment before registration, an assignment while retired are
    refused; footage from before the registration is unregistered_device; the current status is the latest."""
    arch = fresh(tmp_path, "BWC8", "001234", [0])
    before = ledger_size(arch)
    refused(run_cli("device", "add", arch, "BWC8", "--kind", "body_camera", "--since", "2099-01-01T00:00:00Z"),
            "status in_service since 2099-01-01T00:00:00Z is in the future")  # fmt: skip
    assert ledger_size(arch) == before
    ok("device", "add", arch, "BWC8", "--kind", "body_camera", "--since", iso(3600))
    refused(run_cli("device", "assign", arch, "BWC8", "--officer", "001234", "--from", iso(-60)),
            f"BWC8 from {iso(-60)} is before its registration (in_service since {iso(3600)}; move")  # fmt: skip
    refused(run_cli("device", "retire", arch, "BWC8", "--at", iso(-7200)),
            f"status retired since {iso(-7200)} is before its registration")  # fmt: skip
    assert ledger_size(arch) == before + 1
    ok("device", "assign", arch, "BWC8", "--officer", "001234", "--from", iso(3600), "--to", iso(4000))
    (seg,) = [s for s, *_ in segments(arch)]
    found = [(f["kind"], f["segment"]) for f in report(arch)["findings"] if f["kind"] in FINDING_KINDS]
    assert found == [("unregistered_device", seg)]
    # A status dated back between two others goes into the history; the current one stays the latest in time.
    ok("device", "update", arch, "BWC8", "--status", "in_repair", "--since", iso(7200))
    ok("device", "retire", arch, "BWC8", "--at", iso(5000))
    shown = json.loads(ok("device", "show", arch, "BWC8", "--json").stdout)
    assert (shown["status"], shown["since"]) == ("in_repair", iso(7200))
    assert [(s["status"], s["since"]) for s in shown["statuses"]] == [
        ("in_service", iso(3600)), ("retired", iso(5000)), ("in_repair", iso(7200))]  # fmt: skip
    assert [(d["id"], d["status"]) for d in json.loads(ok("device", "list", arch, "--json").stdout)["devices"]] == [
        ("BWC8", "in_repair")
    ]
    # One "no unit" row (L3): BWC8 has no unit, its pre-registration recording is counted there too.
    assert [(u["unit"], u["by_status"], u["unregistered"]["count"]) for u in report(arch)["devices"]["units"]] == [
        (None, {"in_repair": 1}, 1)
    ]
    size = ledger_size(arch)
    assert json.loads(ok("device", "retire", arch, "BWC8", "--at", iso(5000), "--json").stdout)["unchanged"] == ["BWC8"]
    assert ledger_size(arch) == size  # the same status again is a no-op
    refused(run_cli("device", "assign", arch, "BWC8", "--officer", "001234", "--from", iso(5500)),
            f"BWC8 from {iso(5500)}: it is retired since {iso(5000)}")  # fmt: skip
    # The first status given again earlier moves the registration back; then the early assignment is accepted.
    ok("device", "update", arch, "BWC8", "--status", "in_service", "--since", iso(-60))
    ok("device", "assign", arch, "BWC8", "--officer", "001234", "--from", iso(-60), "--to", iso(3600))
    assert [f["kind"] for f in report(arch)["findings"] if f["kind"] in FINDING_KINDS] == []
    assert json.loads(ok("device", "show", arch, "BWC8", "--json").stdout)["status"] == "in_repair"
    out = run_cli("ledger", "rebuild-catalog", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["equal"] is True, out.stdout


def test_reassigning_the_same_start_is_a_correction_and_listed(fleet: Path, tmp_path: Path) -> None:
    """H3: another officer for a recorded (device, start) is refused; --replace ledgers a correction naming whom
    it replaced, and device show lists it with the recordings already ingested it re-attributed."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fleet, copy)
    before = ledger_size(copy)
    refused(run_cli("device", "assign", copy, "BWCA", "--officer", "005678", "--from", iso(-3600)),
            f"BWCA from {iso(-3600)} is recorded as held by 001234, not 005678", "--replace")  # fmt: skip
    out = ok("device", "assign", copy, "BWCA", "--officer", "001234", "--from", iso(-3600), "--json")
    assert json.loads(out.stdout) == {"assigned": [], "updated": [], "unchanged": [f"BWCA@{iso(-3600)}"]}
    refused(run_cli("device", "assign", copy, "BWCA", "--officer", "001234", "--from", iso(-3600), "--replace"),
            "no assignment to another officer to replace")  # fmt: skip
    assert ledger_size(copy) == before
    lent_before = [f["segment"] for f in report(copy)["findings"] if f["kind"] == "device_lent"]
    out = ok("device", "assign", copy, "BWCA", "--officer", "005678", "--from", iso(-3600), "--replace", "--json")
    assert json.loads(out.stdout)["updated"] == [f"BWCA@{iso(-3600)}"]
    (entry,) = [json.loads(e) for (e,) in read_only(copy, "SELECT entry FROM ledger WHERE seq >= ?", (before,))
                if json.loads(e)["type"] == "device_assign"]  # fmt: skip
    bwca = [seg for seg, d, _, _ in segments(copy) if d == "BWCA"]
    (c,) = json.loads(ok("device", "show", copy, "BWCA", "--json").stdout)["corrections"]
    assert (c["start"], c["officer"], c["replaced"], c["recordings_before"]) == (iso(-3600), "005678", "001234", 4)
    assert (entry["replaces"], c["by"]) == ("001234", entry["by"]) and len(bwca) == 4
    assert "corrected: from" in ok("device", "show", copy, "BWCA").stdout.decode()
    assert report(copy)["devices"]["corrections"] == [c | {"device": "BWCA"}]
    assert report(copy, "--scope", "device=BWCB")["devices"]["corrections"] == []
    # The responsible officer of BWCA's recordings is now 005678: the lent ones are the other two.
    lent = sorted(f["segment"] for f in report(copy)["findings"] if f["kind"] == "device_lent")
    named = dict((seg, o) for seg, _, o, _ in segments(copy))
    assert lent == sorted([s for s in lent_before if s not in bwca] + [s for s in bwca if named[s] == "001234"])
    out = run_cli("ledger", "rebuild-catalog", copy, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["equal"] is True, out.stdout


def test_imports_refuse_unknown_columns_and_name_every_bad_row_at_once(fleet: Path, tmp_path: Path) -> None:
    """M3, M6, L1: a misspelt column or key is refused by name; assign-import names format errors and unknown
    devices together, each with its row; an over-long id is refused."""
    before = ledger_size(fleet)
    bad = tmp_path / "devices.csv"
    bad.write_text("id,kind,stauts\nD1,drone,lost\n")
    refused(run_cli("device", "import", fleet, bad), "devices.csv row 1: unknown field 'stauts'")
    bad = tmp_path / "devices.json"
    bad.write_text(json.dumps([{"id": "D1", "kind": "drone", "colour": "red"}]))
    refused(run_cli("device", "import", fleet, bad), "devices.json row 1: unknown field 'colour'")
    bad = tmp_path / "assign.csv"
    bad.write_text(f"device,officer,from,to,note\nSPARE,008888,{iso(500)},,x\n")
    refused(run_cli("device", "assign-import", fleet, bad), "assign.csv row 1: unknown field 'note'")
    bad.write_text(f"device,officer,from,to\nSPARE,008888,yesterday,\nNOPE,008888,{iso(500)},\n")
    refused(run_cli("device", "assign-import", fleet, bad), "assign.csv row 1: ", "RFC 3339",
            "assign.csv row 2: no device 'NOPE' in the registry")  # fmt: skip
    refused(run_cli("device", "add", fleet, "X" * 129, "--kind", "drone"), "device id of 129 characters (at most 128)")
    assert ledger_size(fleet) == before


def test_html_report_draws_the_devices_section(fleet: Path) -> None:
    """M1: the HTML page has the devices section the JSON has: per unit, devices by status and the recordings
    lent, unassigned, lost, retired, unregistered, unchecked, the counts worked out from this test's plan."""
    want = expected_findings(fleet)
    dev_of = {seg: d for seg, d, _, _ in segments(fleet)}
    unchecked = {u["unit"]: u["unchecked"]["count"] for u in report(fleet)["devices"]["units"]}

    def count(kind: str, unit: str | None) -> int:
        return len([s for s in want.get(kind, []) if UNITS.get(dev_of[s]) == unit])

    pages = {}
    for lang in ("en", "zh"):
        page = fleet.parent / f"report-{lang}.html"
        out = run_cli("report", fleet, "--format", "html", "--lang", lang, "--out", page, "--quiet")
        assert out.returncode in (0, 1) and b"Traceback" not in out.stderr, out.stderr.decode()
        pages[lang] = page.read_text()
    statuses = {"U1": "in service 2", "U2": "in service 1, lost 1, in repair 1", None: ""}
    for unit, name in (("U1", "U1"), ("U2", "U2"), (None, "No unit")):
        cells = [name, str(sum(1 for u in UNITS.values() if u == unit)), statuses[unit]]
        cells += [str(count(k, unit)) for k in ("device_lent", "unassigned_device", "lost_device")]
        cells += ["0", str(count("unregistered_device", unit)), str(unchecked[unit])]
        row = "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        assert row in pages["en"], (row, pages["en"][pages["en"].find("<h2>Devices</h2>") :][:1500])
    assert "<h2>Devices</h2><table><tr><th>Unit</th>" in pages["en"]
    assert "<h2>执法记录仪</h2>" in pages["zh"] and "<td>未登记单位</td>" in pages["zh"]


def test_the_library_refuses_a_device_the_import_would_refuse(tmp_path: Path) -> None:
    """Devices handed to register_devices were recorded as given (a hostile review of the library: an empty id,
    kind "toaster", status "stolen", ledgered for good, where an import refuses each row naming it). The same rule
    now, nothing recorded; a good device then registers."""
    from custodes.archive import open_archive
    from custodes.devices import DeviceError, RegisteredDevice, register_devices

    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    bad = [
        RegisteredDevice("Q", "toaster"),
        RegisteredDevice("", "body_camera"),
        RegisteredDevice("Q3", "body_camera", status="stolen"),
        RegisteredDevice("Q4", "body_camera", since="2020"),  # type: ignore[arg-type]
    ]
    with open_archive(arch) as a:
        for device in bad:
            with pytest.raises(DeviceError, match="nothing recorded"):
                register_devices(a, [RegisteredDevice("OK1", "body_camera"), device])
        assert catalog_rows(arch, "SELECT COUNT(*) FROM registry") == [(0,)]
        assert register_devices(a, [RegisteredDevice("OK1", "body_camera")])["imported"] == ["OK1"]
