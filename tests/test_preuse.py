"""Pre-use checks (Art. 10), the recording checklist (Art. 7) and enforcement context (Art. 5), issue 18.

A fleet of ffmpeg-made GA/T 947 volumes, ingested with the real CLI:

- BWC1 (officer 000001): day 1 checked at docking (its EVENTS.LOG logs a preuse_check), docked that evening
  (DOCKCLOCK.TXT), day 2 recorded with no check since: ``no_preuse_check`` on exactly day 2's recordings.
- BWC2 (000002): checked with its clock 90 s ahead (the station's offset in the log line): every recording
  ``clock_not_set_before_use``.
- BWC3 (000003): no check at ingest; a check recorded by hand afterwards (``custodes device check``) that found
  the clock 90 s behind counts at once.
- BWC4 (000004): never checked: nothing while the rule is off, ``no_preuse_check`` on all of it once the policy
  requires checks.

Tasks: a traffic stop recorded by BWC1 (day 1), a traffic stop of BWC4 that nothing recorded
(``task_not_recorded``), an inspection nothing recorded (not on the checklist: no finding), a patrol of BWC2 and
one of officer 000003. BWC4's first recording is covered by an emergency exemption; its second, and BWC1's day 2,
are in no task and no exemption (``no_enforcement_context``).

Every count the report gives is compared with this test's own read-only SQL over the catalog.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from footage import T0, make_clip
from helpers import as_, catalog_rows, copy_archive, grant, one_line_error, policy_text, refused, run_cli, set_policy

BJ = timezone(timedelta(hours=8))
S = 1_000_000_000
DAY = 86400


def ns(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp()) * S


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(seconds: float) -> str:
    return f"{(T0 + timedelta(seconds=seconds)).astimezone(BJ):%Y-%m-%d %H:%M:%S}"


def volume(root: Path, name: str, device: str, officer: str, starts: list[int], first: int = 1) -> Path:
    """A GA/T 947 volume: 1 s clips named with the officer, the device and the Beijing time (in a folder named
    after the device: the device id when the volume has no identity file)."""
    vol = root / name / device
    for n, s in enumerate(starts, start=first):
        t = T0 + timedelta(seconds=s)
        make_clip(vol / f"{officer}_{device}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t, 1.0)
    return vol


def docked(vol: Path, at: int) -> None:
    """The docking station's clock reading at ``at`` (seconds from T0): the device clock right."""
    (vol / "DOCKCLOCK.TXT").write_text(f"device_time={local(at)}\nstation_time={iso(at)}\n")


def read_only(arch: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{arch / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def names(arch: Path, ids: list[int]) -> list[str]:
    rows = dict(
        read_only(arch, f"SELECT id, original_name FROM segments WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
    )
    return sorted(rows[i] for i in ids)


BWC1_DAY1 = [0, 30]
BWC1_DAY2 = [DAY, DAY + 30]
TASKS = (
    "id,type,start,end,officers,devices\n"
    f"T1,traffic_stop,{iso(-60)},{iso(120)},,BWC1\n"
    f"T2,traffic_stop,{iso(3600)},{iso(3700)},,BWC4\n"
    f"T3,inspection,{iso(7200)},{iso(7300)},,BWC4\n"
    f"T4,patrol,{iso(-60)},{iso(600)},,BWC2\n"
    f"T5,patrol,{iso(-60)},{iso(600)},000003,\n"
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("preuse")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")
    # BWC1, day 1: checked 10 min before (clock right), docked that evening
    v1 = volume(root, "bwc1-day1", "BWC1", "000001", BWC1_DAY1)
    (v1 / "EVENTS.LOG").write_text(
        f"{local(-600)} preuse_check clock_offset=0 battery=96 free_bytes=31000000000 faults=none\n"
    )
    docked(v1, 8 * 3600)
    # BWC1, day 2: no check logged; docked that evening
    v2 = volume(root, "bwc1-day2", "BWC1", "000001", BWC1_DAY2, first=3)
    docked(v2, DAY + 8 * 3600)
    # BWC2: the station found its clock 90 s ahead (the line's time is the device's own)
    v3 = volume(root, "bwc2", "BWC2", "000002", [0, 30])
    (v3 / "EVENTS.LOG").write_text(f"{local(-600 + 90)} preuse_check clock_offset=+90 battery=80 faults=lens\n")
    v4 = volume(root, "bwc3", "BWC3", "000003", [0, 30])
    v5 = volume(root, "bwc4", "BWC4", "000004", [0, 5000])
    for vol in (v1, v2, v3, v4, v5):
        out = run_cli("ingest", vol, "--archive", arch)
        assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
    tasks = root / "tasks.csv"
    tasks.write_text(TASKS)
    assert run_cli("task", "import", arch, tasks).returncode == 0
    out = run_cli(
        "gap", "explain", arch, "--device", "BWC4", "--from", iso(-10), "--to", iso(10), "--cause", "emergency"
    )
    assert out.returncode == 0, out.stderr
    return arch


def report(arch: Path, tmp: Path, *extra: str) -> dict[str, Any]:
    path = tmp / f"r{len(list(tmp.iterdir()))}.json"
    out = run_cli("report", arch, "--format", "json", "--out", path, *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(path.read_text())


def found(model: dict[str, Any], kind: str) -> list[int]:
    return sorted(f["segment"] for f in model["findings"] if f["kind"] == kind)


# --- what this test computes itself, from the catalog ------------------------------------------------------------

#: Per recording: the latest check of its device at or before its start, and its device's last docking before it.
_LAST = """
SELECT s.id, s.device_id,
  (SELECT MAX(c.time_ns) FROM device_checks c WHERE c.device_id = s.device_id
     AND c.time_ns <= COALESCE(s.corrected_start_ns, s.start_ns)) AS checked,
  (SELECT MAX(t) FROM (SELECT started_ns AS t FROM ingests i WHERE i.device_id = s.device_id
     UNION SELECT trusted_ns FROM clock_readings r WHERE r.device_id = s.device_id AND r.source = 'dock')
   WHERE t < COALESCE(s.corrected_start_ns, s.start_ns)) AS docked
FROM segments s WHERE s.kind = 'video'
"""


def expected_preuse(arch: Path, required: bool = False) -> tuple[list[int], list[int]]:
    """(no_preuse_check, clock_not_set_before_use) segment ids, by SQL."""
    rule = "1=1" if required else "device_id IN (SELECT device_id FROM device_checks)"
    rows = read_only(arch, f"SELECT id, device_id, checked, docked FROM ({_LAST}) WHERE {rule}")
    missing = sorted(i for i, _, c, d in rows if c is None or (d is not None and c < d))
    off = sorted(
        i
        for i, dev, c, d in rows
        if c is not None
        and (d is None or c >= d)
        and read_only(
            arch,
            "SELECT ABS(clock_offset_ns) > 2000000000 FROM device_checks WHERE device_id = ? AND time_ns = ? "
            "ORDER BY id DESC LIMIT 1",
            (dev, c),
        )[0][0]
    )
    return missing, off


def expected_not_recorded(arch: Path) -> list[str]:
    sql = (
        "SELECT t.id FROM tasks t WHERE t.type = 'traffic_stop' AND NOT EXISTS (SELECT 1 FROM segments s WHERE "
        "(s.device_id IN (SELECT value FROM json_each(t.devices)) OR s.officer_id IN "
        "(SELECT value FROM json_each(t.officers))) AND COALESCE(s.corrected_start_ns, s.start_ns) < t.end_ns "
        "AND COALESCE(s.corrected_end_ns, s.end_ns) > t.start_ns) ORDER BY t.id"
    )
    return [t for (t,) in read_only(arch, sql)]


def expected_no_context(arch: Path) -> list[int]:
    sql = (
        "SELECT s.id FROM segments s WHERE s.kind = 'video' AND NOT EXISTS (SELECT 1 FROM tasks t WHERE "
        "(s.device_id IN (SELECT value FROM json_each(t.devices)) OR s.officer_id IN "
        "(SELECT value FROM json_each(t.officers))) AND COALESCE(s.corrected_start_ns, s.start_ns) < t.end_ns "
        "AND COALESCE(s.corrected_end_ns, s.end_ns) > t.start_ns) AND NOT EXISTS (SELECT 1 FROM gap_explanations g "
        "WHERE g.device_id = s.device_id AND g.cause IN ('secret', 'work_secret', 'emergency', 'impossible') "
        "AND COALESCE(s.corrected_start_ns, s.start_ns) < g.end_ns AND COALESCE(s.corrected_end_ns, s.end_ns) > "
        "g.start_ns) ORDER BY s.id"
    )
    return [i for (i,) in read_only(arch, sql)]


# --- the tests ---------------------------------------------------------------------------------------------------


def test_checks_read_at_docking_are_ledgered_and_replayed(fleet: Path) -> None:
    rows = read_only(
        fleet,
        "SELECT device_id, time_ns, source, clock_offset_ns, battery_percent, free_bytes, faults FROM device_checks "
        "ORDER BY device_id",
    )
    assert rows == [
        ("BWC1", ns(-600), "dock", 0, 96, 31000000000, "[]"),
        ("BWC2", ns(-600), "dock", 90 * S, 80, None, '["lens"]'),  # the line's device time less the offset
    ]
    entries = [json.loads(e) for (e,) in read_only(fleet, "SELECT entry FROM ledger WHERE type = 'ingest_begin'")]
    assert [e["checks"] for e in entries if "checks" in e] == [
        [{"time": ns(-600), "clock_offset": 0, "battery_percent": 96, "free_bytes": 31000000000, "faults": [],
          "note": ""}],
        [{"time": ns(-600), "clock_offset": 90 * S, "battery_percent": 80, "free_bytes": None, "faults": ["lens"],
          "note": ""}],
    ]  # fmt: skip
    # the same volume docked again reads the same check: recorded once
    before = read_only(fleet, "SELECT COUNT(*) FROM device_checks")
    assert run_cli("ingest", fleet.parent / "bwc1-day1" / "BWC1", "--archive", fleet).returncode == 1
    assert read_only(fleet, "SELECT COUNT(*) FROM device_checks") == before
    out = run_cli("verify", fleet, "--json")
    assert out.returncode == 0, out.stdout[-2000:]


def test_rules_off_by_default_for_devices_never_checked(fleet: Path, tmp_path: Path) -> None:
    model = report(fleet, tmp_path)
    missing, off = expected_preuse(fleet)
    assert found(model, "no_preuse_check") == missing
    assert names(fleet, missing) == [
        "000001_BWC1_20240302180000_0003.MP4",
        "000001_BWC1_20240302180030_0004.MP4",
    ]  # day 2 only: docked on the evening of day 1, no check since
    assert names(fleet, found(model, "clock_not_set_before_use")) == [
        "000002_BWC2_20240301180000_0001.MP4",
        "000002_BWC2_20240301180030_0002.MP4",
    ]
    assert found(model, "clock_not_set_before_use") == off
    section = model["recording"]
    assert section["preuse_check_required"] is False
    assert section["checks"] == 2
    assert section["no_preuse_check"] == len(missing) == 2
    assert section["clock_not_set_before_use"] == len(off) == 2
    assert section["unchecked_devices"] == [
        {"device": "BWC1", "checks": 1, "no_preuse_check": 2, "clock_not_set_before_use": 0},
        {"device": "BWC2", "checks": 1, "no_preuse_check": 0, "clock_not_set_before_use": 2},
    ]
    # the checklist is off in a policy that does not ask for it
    assert section["required_task_types"] == [] and section["task_not_recorded"] == 0
    assert section["no_enforcement_context"] == 0
    ledger = dict(read_only(fleet, "SELECT id, ledger_seq FROM segments"))
    for f in model["findings"]:
        if f["kind"] in ("no_preuse_check", "clock_not_set_before_use"):
            assert f["article"] == 10 and f["ledger_index"] == ledger[f["segment"]]


def test_hand_check_counts_after_the_ingest(fleet: Path, tmp_path: Path) -> None:
    out = run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--at", iso(-300), "--clock-offset", "-90",
                  "--battery", "70", "--fault", "mic", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    index = json.loads(out.stdout)["ledger_index"]
    ((entry,),) = read_only(fleet, "SELECT entry FROM ledger WHERE seq = ?", (index,))
    e = json.loads(entry)
    assert (e["type"], e["device"], e["officer"], e["check"]["clock_offset"]) == (
        "device_check",
        "BWC3",
        "000003",
        -90 * S,
    )
    assert read_only(fleet, "SELECT source, by, clock_offset_ns, battery_percent, faults FROM device_checks "
                     "WHERE device_id = 'BWC3'") == [("hand", "000003", -90 * S, 70, '["mic"]')]  # fmt: skip
    # the same check again is refused, one line, nothing recorded
    again = run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--at", iso(-300))
    one_line_error(again, "already recorded")
    assert read_only(fleet, "SELECT COUNT(*) FROM device_checks WHERE device_id = 'BWC3'") == [(1,)]
    model = report(fleet, tmp_path)
    missing, off = expected_preuse(fleet)
    assert found(model, "clock_not_set_before_use") == off
    assert names(fleet, off) == [
        "000002_BWC2_20240301180000_0001.MP4",
        "000002_BWC2_20240301180030_0002.MP4",
        "000003_BWC3_20240301180000_0001.MP4",
        "000003_BWC3_20240301180030_0002.MP4",
    ]
    assert found(model, "no_preuse_check") == missing and len(missing) == 2
    assert model["recording"]["checks"] == 3
    # the catalog rebuilt from the ledger holds the same checks; verify compares them
    rebuilt = run_cli("verify", fleet, "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout[-2000:]


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        ("UPDATE device_checks SET clock_offset_ns = 0 WHERE device_id = 'BWC2'", "ledger_mismatch"),
        ("DELETE FROM device_checks WHERE source = 'hand'", "missing"),
    ],
)
def test_a_check_edited_in_the_catalog_is_found_and_rebuilt(fleet: Path, tmp_path: Path, edit: str, kind: str) -> None:
    """A clock offset set right by hand, a hand check deleted: verify names the table and the entry; the catalog
    rebuilt from the ledger has the check back."""
    copy = copy_archive(fleet, tmp_path / "copy")
    if not read_only(copy, "SELECT id FROM device_checks WHERE source = 'hand'"):
        # The module's archive has a hand check once test_hand_check_counts_after_the_ingest ran; alone, or run
        # first on another worker, this test makes its own (it found nothing to delete, and failed).
        out = run_cli("device", "check", copy, "BWC3", "--by", "000003", "--at", iso(-300))
        assert out.returncode == 0, out.stderr
    before = read_only(copy, "SELECT * FROM device_checks ORDER BY id")
    conn = sqlite3.connect(copy / "catalog.sqlite")
    with conn:
        conn.execute(edit)
    conn.close()
    out = run_cli("verify", copy, "--json")
    assert out.returncode == 1
    found = [(f["kind"], f["table"]) for f in json.loads(out.stdout)["findings"]]
    assert found == [(kind, "device_checks")]
    out = run_cli("ledger", "rebuild-catalog", copy, "--replace", "--json")
    rebuilt = json.loads(out.stdout)
    assert (out.returncode, rebuilt["equal"], rebuilt["replaced"]) == (0, False, True), out.stdout
    assert read_only(copy, "SELECT * FROM device_checks ORDER BY id") == before
    assert run_cli("verify", copy).returncode == 0


def test_bad_hand_checks_are_one_line_errors(fleet: Path) -> None:
    one_line_error(run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--at", "yesterday"), "RFC 3339")
    out = run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--battery", "101")
    assert out.returncode == 2 and b"Traceback" not in out.stderr
    out = run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--clock-offset", "nan")
    assert out.returncode == 2 and b"Traceback" not in out.stderr


def test_checklist_and_context(fleet: Path, tmp_path: Path) -> None:
    text = policy_text(fleet)
    text += '\n[recording]\nrequired_task_types = ["traffic_stop"]\nenforcement_context = true\n'
    assert set_policy(fleet, text).returncode == 0
    model = report(fleet, tmp_path)
    not_recorded = [f for f in model["findings"] if f["kind"] == "task_not_recorded"]
    assert [f["evidence"]["task"] for f in not_recorded] == expected_not_recorded(fleet) == ["T2"]
    assert not_recorded[0]["article"] == 7
    no_context = found(model, "no_enforcement_context")
    assert no_context == expected_no_context(fleet)
    assert names(fleet, no_context) == [
        "000001_BWC1_20240302180000_0003.MP4",
        "000001_BWC1_20240302180030_0004.MP4",
        "000004_BWC4_20240301192320_0002.MP4",  # BWC4's first is covered by the emergency exemption
    ]
    assert {f["severity"] for f in model["findings"] if f["kind"] == "no_enforcement_context"} == {"info"}
    section = model["recording"]
    assert section["required_task_types"] == ["traffic_stop"]
    assert section["task_not_recorded"] == 1 and section["no_enforcement_context"] == 3
    concern = next(c for c in model["concerns"] if c["concern"] == "concern_not_recorded")
    assert "task_not_recorded" in concern["kinds"]
    html = tmp_path / "r.html"
    assert run_cli("report", fleet, "--format", "html", "--lang", "en", "--out", html).returncode == 0
    assert "<th>Checklist tasks not recorded</th><td>1</td>" in html.read_text()
    assert "<th>Recordings outside every task</th><td>3</td>" in html.read_text()
    # task coverage shows the checklist; the unrecorded task makes it exit 1
    out = run_cli("task", "coverage", fleet, "--json")
    assert out.returncode == 1
    checklist = json.loads(out.stdout)["checklist"]
    assert sorted((f["kind"], f["evidence"].get("task") or f["evidence"]["segment"]) for f in checklist) == sorted(
        [("task_not_recorded", "T2"), *(("no_enforcement_context", i) for i in no_context)]
    )
    # one task: its own checklist finding only (T1 was recorded: none), never the recordings outside every task
    one = run_cli("task", "coverage", fleet, "--task", "T1", "--json")
    assert json.loads(one.stdout)["checklist"] == []
    two = run_cli("task", "coverage", fleet, "--task", "T2")
    assert two.returncode == 1
    assert [x.split(":")[0] for x in two.stdout.decode().splitlines() if not x.startswith(("T2 ", "  "))] == [
        "task_not_recorded"
    ]


def test_policy_requires_checks_of_every_device(fleet: Path, tmp_path: Path) -> None:
    # BWC3's hand check (test_hand_check_counts_after_the_ingest), made here too when this test runs alone
    if read_only(fleet, "SELECT COUNT(*) FROM device_checks WHERE device_id = 'BWC3'") == [(0,)]:
        out = run_cli("device", "check", fleet, "BWC3", "--by", "000003", "--at", iso(-300), "--clock-offset", "-90")
        assert out.returncode == 0, out.stderr
    text = policy_text(fleet).replace("[devices]\n", "[devices]\npreuse_check_required = true\n", 1)
    if "preuse_check_required" not in text:
        text += "\n[devices]\npreuse_check_required = true\n"
    out = set_policy(fleet, text)
    assert out.returncode == 0, out.stderr
    model = report(fleet, tmp_path)
    missing, off = expected_preuse(fleet, required=True)
    assert found(model, "no_preuse_check") == missing
    assert names(fleet, missing) == [
        "000001_BWC1_20240302180000_0003.MP4",
        "000001_BWC1_20240302180030_0004.MP4",
        "000004_BWC4_20240301180000_0001.MP4",
        "000004_BWC4_20240301192320_0002.MP4",
    ]
    assert model["recording"]["preuse_check_required"] is True
    by_device = {d["device"]: d for d in model["recording"]["unchecked_devices"]}
    assert by_device["BWC4"] == {"device": "BWC4", "checks": 0, "no_preuse_check": 2, "clock_not_set_before_use": 0}
    # the devices section counts them per unit (no registry here: every device is in unit None)
    (nobody,) = model["devices"]["units"]
    assert nobody["unit"] is None and nobody["unchecked"]["count"] == len(missing) + len(off) > len(missing)
    assert sorted(nobody["unchecked"]["segments"]) == sorted(missing + off)
    assert nobody["unchecked"]["devices"] == sorted({n.split("_")[1] for n in names(fleet, missing + off)})
    # a device's report holds its own
    mine = report(fleet, tmp_path, "--scope", "device=BWC4")
    assert names(fleet, found(mine, "no_preuse_check")) == names(fleet, missing)[2:]
    assert mine["recording"]["no_preuse_check"] == 2


def test_policy_values_are_checked(fleet: Path) -> None:
    text = policy_text(fleet)
    good = 'required_task_types = ["traffic_stop"]'
    text = (
        text.replace(good, 'required_task_types = "traffic_stop"')
        if good in text
        else (text + '\n[recording]\nrequired_task_types = "traffic_stop"\n')
    )
    out = set_policy(fleet, text)
    assert out.returncode == 2 and b"required_task_types must be a list" in out.stderr, out.stderr


def test_check_reading_holds_checks_to_the_contract(tmp_path: Path) -> None:
    from custodes.drivers import DeviceCheck, VolumeReading, check_reading, identity_from

    vol = tmp_path / "V1"
    vol.mkdir()
    good = DeviceCheck(ns(0), -3 * S, 55, 10, ("lens",), file=str(vol / "LOG"))
    bad = [
        DeviceCheck(None, file=str(vol / "LOG")),  # type: ignore[arg-type]
        DeviceCheck(ns(1), clock_offset=1.5, battery_percent=101, free_bytes=-1, faults=("",)),  # type: ignore[arg-type]
        "not a check",
    ]
    reading = VolumeReading("acme", str(vol), identity_from(vol, {}), checks=[good, *bad])
    checked = check_reading(reading, "acme", vol, {})
    assert checked.checks == [good, DeviceCheck(ns(1))]  # each bad reading dropped alone; a timeless check whole
    fields = sorted(f.evidence["field"] for f in checked.findings if f.kind == "malformed")
    assert fields == ["(whole)", "battery_percent", "clock_offset", "faults", "free_bytes", "time"]


def test_gat947_preuse_check_lines(tmp_path: Path) -> None:
    vol = volume(tmp_path, "v", "BWC9", "000009", [0])
    (vol / "EVENTS.LOG").write_text(
        f"{local(-100)} power_on\n"
        f"{local(-60 - 5)} preuse_check clock_offset=-5 battery=ninety faults=gps,mic colour=red\n"
    )
    out = run_cli("volume", vol, "--json")
    assert out.returncode == 1, out.stderr
    reading = json.loads(out.stdout)
    assert reading["checks"] == [
        {"time": iso(-60), "clock_offset_seconds": -5.0, "battery_percent": None, "free_bytes": None,
         "faults": ["gps", "mic"]}
    ]  # fmt: skip
    assert [e["kind"] for e in reading["events"]] == ["power_on"]  # a check is not an event
    bad = sorted(f["message"] for f in reading["findings"] if f["kind"] == "malformed")
    assert bad == [
        "preuse_check: 'battery=ninety' not understood; dropped",
        "preuse_check: 'colour=red' not understood; dropped",
    ]


def test_a_hand_check_needs_its_role_and_a_refusal_is_logged(cli_archive: Path) -> None:
    def log() -> list[tuple[str, str, int]]:
        return catalog_rows(cli_archive, "SELECT person, action, ok FROM access_log ORDER BY id")

    before = len(log())
    check = ("device", "check", cli_archive, "BWC0001", "--by", "000001", "--at", "2024-03-01T09:50:00Z")
    refused(as_("carol", *check), "carol may not device_check .needs custodian or approver.")
    assert log()[before:] == [("carol", "device_check", 0)]
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM device_checks") == [(0,)]
    assert as_("alice", *check).returncode == 0
    assert catalog_rows(cli_archive, "SELECT by, source FROM device_checks") == [("000001", "hand")]
    entries = [
        json.loads(e) for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger WHERE type = 'device_check'")
    ]
    assert [(e["by"], e["officer"]) for e in entries] == [("alice", "000001")]
    assert run_cli("ledger", "verify", cli_archive).returncode == 0


def test_a_hand_check_of_the_future_or_of_an_unknown_device_is_refused(fleet: Path, tmp_path: Path) -> None:
    """M2: a check dated beyond now is refused; once the registry is in use, so is a device it does not hold and
    the catalog has no footage of (BWC3 has footage: its check is kept)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fleet, copy)
    count = "SELECT COUNT(*) FROM device_checks"
    before = read_only(copy, count)[0][0]
    one_line_error(run_cli("device", "check", copy, "BWC3", "--by", "000003", "--at", "2099-01-01T00:00:00Z"),
                   "a check of BWC3 at 2099-01-01T00:00:00Z is in the future")  # fmt: skip
    assert run_cli("device", "add", copy, "BWC1", "--kind", "body_camera", "--since", iso(-DAY)).returncode == 0
    one_line_error(run_cli("device", "check", copy, "NOPE", "--by", "000003", "--at", iso(-300)),
                   "no device 'NOPE' in the registry or the catalog")  # fmt: skip
    assert read_only(copy, count)[0][0] == before
    for device in ("BWC1", "BWC3"):  # registered; known by its footage
        out = run_cli("device", "check", copy, device, "--by", "000003", "--at", iso(-200))
        assert out.returncode == 0, out.stderr
    assert read_only(copy, count)[0][0] == before + 2
    # L5: a nanosecond later is another check, kept to the nanosecond; the same again names the full time.
    later = iso(-200).replace("Z", ".000000001Z")
    assert run_cli("device", "check", copy, "BWC3", "--by", "000003", "--at", later).returncode == 0
    assert read_only(copy, "SELECT MAX(time_ns) FROM device_checks WHERE device_id = 'BWC3'")[0][0] == ns(-200) + 1
    one_line_error(run_cli("device", "check", copy, "BWC3", "--by", "000003", "--at", later),
                   f"a check of BWC3 at {later} is already recorded")  # fmt: skip
