"""The driver contract as a vendor meets it (issue 17): allowed values enforced in one place, a recording's own
officer, one time-zone order shown in the output, and the shared checks run centrally for every driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from custodes import timeline
from custodes.drivers import (
    ClockReading,
    DeviceEvent,
    DeviceIdentity,
    DriverOptionError,
    TimeZoneChoice,
    VolumeReading,
    check_reading,
    device_zone,
    media_segments,
    scan_volume,
    zone_policy,
)
from footage import T0, make_clip
from helpers import catalog_rows, grant, install_plugin, policy_text, run_cli, set_policy

NS = 10**9
T0_NS = int(T0.timestamp()) * NS
PLUS8 = timezone(timedelta(hours=8))


def gat947_name(officer: str, device: str, seconds: float, seq: int, tz: timezone = PLUS8) -> str:
    t = (T0 + timedelta(seconds=seconds)).astimezone(tz)
    return f"{officer}_{device}_{t:%Y%m%d%H%M%S}_{seq:04d}.MP4"


def local(seconds: float, tz: timezone = PLUS8) -> str:
    return f"{(T0 + timedelta(seconds=seconds)).astimezone(tz):%Y-%m-%d %H:%M:%S}"


# --- allowed values, one place -------------------------------------------------------------------------------


def test_values_outside_the_allowed_ones_are_dropped_with_a_finding_naming_the_field(tmp_path: Path) -> None:
    vol = tmp_path / "CAM"
    make_clip(vol / "A0001.mp4", T0)
    files, _, _ = scan_volume(vol)
    (seg,), _, _ = media_segments(files)
    bad = VolumeReading(
        "acme",
        os.fspath(vol),
        DeviceIdentity("CAM-1", kind="tank"),
        [replace(seg, kind="movie", start_source="exif", officer=7)],  # type: ignore[arg-type]
        [ClockReading(T0_NS, T0_NS, "ntp", file=os.fspath(vol / "CLOCK"))],
        [DeviceEvent(T0_NS, "battery_low")],
        time_zone=TimeZoneChoice("Mars/Olympus", "device"),
    )
    r = check_reading(bad, "acme", vol, {})
    dropped = sorted((f.evidence["record"], f.evidence["field"]) for f in r.findings if f.kind == "malformed")
    assert dropped == [
        ("clock_reading", "source"),
        ("identity", "kind"),
        ("reading", "time_zone"),
        ("segment", "kind"),
        ("segment", "officer"),
        ("segment", "start_source"),
    ]
    (kind,) = [f.message for f in r.findings if f.evidence["field"] == "kind" and f.evidence["record"] == "segment"]
    assert kind == "driver acme: segment field 'kind' is str 'movie', not one of video, audio, photo; dropped"
    (s,) = r.segments
    assert (s.kind, s.start_source, s.officer) == ("file", None, None)
    assert r.identity.kind == "body_camera" and r.clock_readings == [] and r.time_zone is None
    assert [e.kind for e in r.events] == ["battery_low"]  # event kinds are the device's own: kept


def test_an_old_driver_s_extra_officer_is_still_read_and_the_field_wins(tmp_path: Path) -> None:
    vol = tmp_path / "CAM"
    make_clip(vol / "A0001.mp4", T0)
    make_clip(vol / "A0002.mp4", T0 + timedelta(seconds=2))
    files, _, _ = scan_volume(vol)
    (a, b), _, _ = media_segments(files)
    old = replace(a, extra={"officer": "000111"})
    new = replace(b, officer="000222", extra={"officer": "000999"})
    r = check_reading(VolumeReading("acme", os.fspath(vol), DeviceIdentity("CAM-1"), [old, new]), "acme", vol, {})
    assert [s.officer for s in r.segments] == ["000111", "000222"]


def test_an_unknown_device_kind_option_is_a_usage_error(tmp_path: Path) -> None:
    vol = tmp_path / "CAM"
    make_clip(vol / "A0001.mp4", T0)
    out = run_cli("volume", vol, "-o", "kind=tank")
    assert out.returncode == 2 and b"Traceback" not in out.stderr
    assert b"unknown device kind 'tank' (known: body_camera, handheld_terminal" in out.stderr


# --- time zones ----------------------------------------------------------------------------------------------


def test_zones_accept_fixed_offsets() -> None:
    assert timeline.name_time("X_20240301180000_0001.MP4", "+08:00") == T0_NS
    assert timeline.name_time("X_20240301043000_0001.MP4", "-05:30") == T0_NS
    assert timeline.name_time("X_20240301100000_0001.MP4", "UTC") == T0_NS
    assert timeline.name_time("X_20240301180000_0001.MP4", "+0800") == T0_NS
    for bad in ("+24:00", "+08:60", "Mars/Olympus", "8"):
        with pytest.raises(ValueError, match="time zone"):
            timeline.zone_info(bad)


def test_one_zone_order() -> None:
    """The user's tz, then the device's statement, then the policy per model, then the policy's default, then
    the driver's own."""
    with zone_policy({"BWC-X8": "+08:00"}, "Asia/Tokyo"):
        assert device_zone({"tz": "-05:30"}, stated="+08:00", model="BWC-X8") == TimeZoneChoice("-05:30", "option")
        assert device_zone({}, stated="+07:00", model="BWC-X8") == TimeZoneChoice("+07:00", "device")
        assert device_zone({}, stated="nonsense", model="BWC-X8") == TimeZoneChoice("+08:00", "policy_model")
        assert device_zone({}, model="other", default="Asia/Shanghai") == TimeZoneChoice("Asia/Tokyo", "policy_default")
    assert device_zone({}, model="BWC-X8", default="Asia/Shanghai") == TimeZoneChoice("Asia/Shanghai", "driver")
    assert device_zone({}) == TimeZoneChoice("UTC", "driver")
    with pytest.raises(DriverOptionError, match="option tz: unknown time zone 'Mars/Olympus'"):
        device_zone({"tz": "Mars/Olympus"})


def plus8_recorder(root: Path, *, states_zone: bool = True, model: str | None = None) -> Path:
    """A GA/T 947 recorder whose clock is set to +08:00: records 0-4 s and 20-24 s, logs battery_low at 3 s (its
    local time), docked at 30 s with its clock right; its dock file states its zone when ``states_zone``."""
    vol = root / "BWC0008"
    for seconds, seq in [(0, 1), (2, 2), (20, 3)]:
        make_clip(vol / gat947_name("001234", "BWC0008", seconds, seq), T0 + timedelta(seconds=seconds), 2.0)
    (vol / "EVENTS.LOG").write_text(f"{local(3)} battery_low 5%\n")
    dock = f"device_time={local(30)}\nstation_time={(T0 + timedelta(seconds=30)):%Y-%m-%dT%H:%M:%SZ}\n"
    (vol / "DOCKCLOCK.TXT").write_text(dock + ("time_zone=+08:00\n" if states_zone else ""))
    if model is not None:
        (vol / "GAT947_ID.TXT").write_text(f"product_serial=BWC0008\nmodel={model}\n")
    return vol


def tokyo_archive(path: Path) -> Path:
    assert run_cli("init", path, "--time-zone", "Asia/Tokyo").returncode == 0
    return path


def ingested(vol: Path, arch: Path, *args: str) -> dict:
    out = run_cli("ingest", vol, "--archive", arch, "--json", *args)
    assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
    return json.loads(out.stdout)


def test_a_plus8_device_in_a_tokyo_archive_keeps_its_events_and_gaps_in_place(tmp_path: Path) -> None:
    vol = plus8_recorder(tmp_path)
    shown = json.loads(run_cli("volume", vol, "--json").stdout)
    assert shown["time_zone"] == {"zone": "+08:00", "source": "device"}
    placed = json.loads(run_cli("timeline", vol, "--json").stdout)
    assert [d["time_zone"] for d in placed["devices"]] == [{"zone": "+08:00", "source": "device"}]
    assert [(f["kind"], f["start"], f["end"]) for f in placed["findings"]] == [("gap", iso(4), iso(20))]

    arch = tokyo_archive(tmp_path / "archive")
    result = ingested(vol, arch)
    assert result["time_zone"] == {"zone": "+08:00", "source": "device"}
    (begin,) = [
        json.loads(e)
        for (e,) in catalog_rows(arch, "SELECT entry FROM ledger")
        if json.loads(e)["type"] == "ingest_begin"
    ]
    assert begin["time_zone"] == {"zone": "+08:00", "source": "device"}
    assert catalog_rows(arch, "SELECT time_ns, kind FROM device_events") == [(T0_NS + 3 * NS, "battery_low")]
    starts = catalog_rows(arch, "SELECT start_ns FROM segments WHERE kind = 'video' ORDER BY start_ns")
    assert [s for (s,) in starts] == [T0_NS, T0_NS + 2 * NS, T0_NS + 20 * NS]
    assert [f for f in result["findings"] if f["kind"] == "name_time_mismatch"] == []
    # The device's 4-20 s gap is explained by its own battery_low at 3 s, inside a task over 0-22 s.
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(f"id,type,start,end,officers,devices\nT1,patrol,{iso(0)},{iso(22)},,BWC0008\n")
    grant(arch, "custodian")  # tasks are recorded by a custodian
    assert run_cli("task", "import", arch, tasks).returncode == 0
    cov = json.loads(run_cli("task", "coverage", arch, "--json").stdout)["tasks"][0]
    assert cov["findings"] == []
    assert [(e["start"], e["end"], e["event"]) for e in cov["explained"]] == [(iso(4), iso(20), "battery_low")]


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_zone_order_through_the_cli(tmp_path: Path) -> None:
    """The same +08:00 recorder without its zone statement: the archive's default (Tokyo) reads it an hour
    off, the policy's entry for its model reads it right, the user's tz is above everything, and each says
    where its zone came from."""
    silent = plus8_recorder(tmp_path / "a", states_zone=False, model="BWC-X8")
    first = tokyo_archive(tmp_path / "first")
    assert ingested(silent, first)["time_zone"] == {"zone": "Asia/Tokyo", "source": "policy_default"}
    hour_off = T0_NS + 3 * NS - 3600 * NS
    assert catalog_rows(first, "SELECT time_ns FROM device_events") == [(hour_off,)]

    second = tokyo_archive(tmp_path / "second")
    assert set_policy(second, policy_text(second) + '\n[time_zones]\n"BWC-X8" = "+08:00"\n').returncode == 0
    assert ingested(silent, second)["time_zone"] == {"zone": "+08:00", "source": "policy_model"}
    assert catalog_rows(second, "SELECT time_ns FROM device_events") == [(T0_NS + 3 * NS,)]

    stated = plus8_recorder(tmp_path / "b")
    third = tokyo_archive(tmp_path / "third")
    assert ingested(stated, third, "-o", "tz=+09:00")["time_zone"] == {"zone": "+09:00", "source": "option"}
    assert catalog_rows(third, "SELECT time_ns FROM device_events") == [(hour_off,)]

    out = set_policy(third, policy_text(third) + '\n[time_zones]\n"BWC-X8" = "+25:00"\n')
    assert out.returncode == 2 and b"[time_zones] 'BWC-X8' = '+25:00' is not a time zone known here" in out.stderr
    out = run_cli("timeline", stated, "--tz", "Mars/Olympus")
    assert out.returncode == 2 and b"unknown time zone 'Mars/Olympus'" in out.stderr


# --- officer, first class ------------------------------------------------------------------------------------


def test_each_recording_keeps_its_own_officer_across_a_redock(tmp_path: Path) -> None:
    """One device docked twice: officer 001234's three recordings, then 001235's three with the device's
    identity overridden to officer 0077 at that docking. The names decide; the report gives each officer only
    their recordings, and a docking whose names carry no officer gives its recordings to the issued officer."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    for dock, officer, first_seq, extra in [(1, "001234", 1, ()), (2, "001235", 4, ("-o", "officer_id=0077"))]:
        vol = tmp_path / f"dock{dock}" / "BWC0009"
        for n in range(3):
            seconds = 100 * dock + 2 * n
            make_clip(vol / gat947_name(officer, "BWC0009", seconds, first_seq + n), T0 + timedelta(seconds=seconds))
        assert run_cli("ingest", vol, "--archive", arch, *extra).returncode == 1  # late_ingest
    third = tmp_path / "dock3" / "BWC0009"
    t = (T0 + timedelta(seconds=300)).astimezone(PLUS8)
    make_clip(third / f"BWC0009-{t:%Y%m%d%H%M%S}-0007.MP4", T0 + timedelta(seconds=300))
    naming = "naming={device}-{time}-{seq}{imp}.{ext}"
    assert (
        run_cli(
            "ingest", third, "--archive", arch, "--driver", "gat947", "-o", naming, "-o", "officer_id=0088"
        ).returncode
        == 1
    )

    rows = catalog_rows(arch, "SELECT sequence, officer_id FROM segments ORDER BY sequence")
    assert rows == [
        (1, "001234"),
        (2, "001234"),
        (3, "001234"),
        (4, "001235"),
        (5, "001235"),
        (6, "001235"),
        (7, "0088"),
    ]
    shown = json.loads(run_cli("volume", tmp_path / "dock1" / "BWC0009", "--json").stdout)
    assert [s["officer"] for s in shown["segments"]] == ["001234"] * 3
    counts = {}
    for officer in ("001234", "001235", "0077", "0088"):
        out = tmp_path / f"report-{officer}.json"
        r = run_cli("report", arch, "--format", "json", "--out", out, "--scope", f"officer={officer}")
        assert r.returncode == 0, r.stderr
        counts[officer] = json.loads(out.read_text())["completeness"]["segments"]
    assert counts == {"001234": 3, "001235": 3, "0077": 0, "0088": 1}


# --- shared checks, central ----------------------------------------------------------------------------------

THIRD_PARTY = '''
import os
from custodes.drivers import Driver, VolumeReading, identity_from, media_segments, scan_volume
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver

class Plain(Driver):
    """A vendor driver that reads containers and nothing else: it runs no time checks of its own."""
    name = "plaincam"
    def recognise(self, volume):
        return 1.0 if (volume / "PLAIN.ID").exists() else 0.0
    def read(self, volume, options):
        files, findings, skipped = scan_volume(volume)
        identity = identity_from(volume, options, device_id="PLAIN-1")
        segments, probe_findings, _ = media_segments([f for f in files if f.name != "PLAIN.ID"], "PLAIN-1")
        return VolumeReading(self.name, os.fspath(volume), identity, segments, findings=findings + probe_findings,
                             skipped=skipped)

@hookimpl
def custodes_device_drivers():
    return [DeviceDriver("plaincam", "a vendor driver without time checks", Plain)]
'''


def with_plugin(site: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run([sys.executable, "-m", "custodes", *map(str, args)], env=env, capture_output=True)


def test_a_third_party_driver_gets_the_name_time_check_without_calling_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site, "plaincam", THIRD_PARTY)
    vol = tmp_path / "PLAIN"
    make_clip(vol / "CAM_20240301100000_0001.mp4", T0)  # the name agrees with the container (read in UTC)
    make_clip(vol / "CAM_20240301100500_0002.mp4", T0)  # the name says 300 s later
    (vol / "PLAIN.ID").write_text("plain\n")
    out = with_plugin(site, "volume", vol, "--json")
    assert out.returncode == 1, out.stderr
    reading = json.loads(out.stdout)
    assert reading["driver"] == "plaincam" and reading["time_zone"] == {"zone": "UTC", "source": "driver"}
    (mismatch,) = [f for f in reading["findings"] if f["kind"] == "name_time_mismatch"]
    assert os.path.basename(mismatch["path"]) == "CAM_20240301100500_0002.mp4"
    assert mismatch["evidence"] == {
        "name_time": "2024-03-01T10:05:00Z",
        "container_time": "2024-03-01T10:00:00Z",
        "tz": "UTC",
    }
    # The user's zone moves the name's time; the check follows it.
    shifted = json.loads(with_plugin(site, "volume", vol, "--json", "-o", "tz=+00:05").stdout)
    assert [os.path.basename(f["path"]) for f in shifted["findings"] if f["kind"] == "name_time_mismatch"] == [
        "CAM_20240301100000_0001.mp4"
    ]


def test_a_bundled_driver_reports_each_mismatch_once(tmp_path: Path) -> None:
    vol = tmp_path / "BWC0010"
    make_clip(vol / gat947_name("001234", "BWC0010", 0, 1), T0)
    make_clip(vol / gat947_name("001234", "BWC0010", 300, 2), T0 + timedelta(seconds=4))  # its name is 296 s off
    reading = json.loads(run_cli("volume", vol, "--json").stdout)
    assert reading["time_zone"] == {"zone": "Asia/Shanghai", "source": "driver"}
    mismatches = [f for f in reading["findings"] if f["kind"] == "name_time_mismatch"]
    assert [os.path.basename(f["path"]) for f in mismatches] == [gat947_name("001234", "BWC0010", 300, 2)]


LIAR = '''
import dataclasses, os
from custodes.drivers import Driver, VolumeReading, identity_from, media_segments, scan_volume
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver

class Liar(Driver):
    """A vendor driver with a bug of each kind (LIAR_MODE): what it returns is not the volume's."""
    name = "liarcam"
    def recognise(self, volume):
        return 1.0 if (volume / "LIAR.ID").exists() else 0.0
    def read(self, volume, options):
        mode = os.environ["LIAR_MODE"]
        if mode == "none":
            return None
        files, findings, skipped = scan_volume(volume)
        identity = identity_from(volume, options, device_id="LIAR-1")
        segments, found, _ = media_segments([f for f in files if f.name != "LIAR.ID"], "LIAR-1")
        one, two = segments
        if mode == "phantom":
            segments.append(dataclasses.replace(one, path=os.path.join(volume, "REC_0777.mp4"), name="REC_0777.mp4",
                                                sequence=777))
        elif mode == "outside":
            segments.append(dataclasses.replace(one, path="/etc/passwd", name="../../etc/passwd"))
        elif mode == "dup":
            segments.append(one)
        elif mode == "swap":
            segments = [dataclasses.replace(one, path=two.path), two]
        elif mode == "backwards":
            segments = [dataclasses.replace(one, end=one.start - 10**9), two]
        elif mode == "sidecars":
            named = ("../../etc/passwd", one.name, two.name, "NOTES.SRT", "GONE.SRT", "NOTES.SRT")
            segments = [dataclasses.replace(one, sidecars=named), two]
        return VolumeReading(self.name, os.fspath(volume), identity, segments, findings=findings + found,
                             skipped=skipped)

@hookimpl
def custodes_device_drivers():
    return [DeviceDriver("liarcam", "a vendor driver with bugs", Liar)]
'''


MISNAMED = """
from custodes.drivers import Driver
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver
from custodes.builtin.generic import GenericDriver

class Misnamed(GenericDriver):
    name = "gopro"  # registered below as "bwcam": a vendor's copy and paste
    def recognise(self, volume):
        return 1.0 if (volume / "BWCAM.ID").exists() else 0.0

@hookimpl
def custodes_device_drivers():
    return [DeviceDriver("bwcam", "a driver that calls itself another", Misnamed)]
"""


def test_a_driver_that_calls_itself_by_another_name_is_refused(tmp_path: Path) -> None:
    """A plugin registers a driver under one name whose Driver calls itself another: its volume was read as the
    name it gave itself (session 13's note), while ``--driver`` and the plugin list named the registration. Named
    or chosen, it is refused, naming both names; nothing is stored."""
    install_plugin(tmp_path / "site", "bwcam", MISNAMED)
    vol = tmp_path / "BWCAM"
    make_clip(vol / "REC_0001.mp4", T0, 2.0)
    (vol / "BWCAM.ID").write_text("bwcam\n")
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}
    named = run_cli("volume", vol, "--driver", "bwcam", "--json", env=env)
    assert named.returncode == 2 and b"Traceback" not in named.stderr, named.stderr
    assert b"driver bwcam makes a driver that calls itself 'gopro'" in named.stderr, named.stderr
    chosen = run_cli("ingest", vol, "--archive", arch, env=env)
    assert chosen.returncode == 2 and b"calls itself 'gopro'" in chosen.stderr, chosen.stderr
    assert catalog_rows(arch, "SELECT count(*) FROM segments") == [(0,)]
    # The vendor's conformance kit says so too, by the registered name.
    kit = f"from custodes.testing.conformance import check_driver; check_driver('bwcam', {str(vol)!r})"
    out = subprocess.run([sys.executable, "-c", kit], env={**os.environ, **env}, capture_output=True, text=True)
    assert out.returncode == 1 and "DriverPluginError: driver bwcam makes a driver that calls itself" in out.stderr


def liar_card(tmp_path: Path) -> Path:
    """A card of the liarcam driver (LIAR, installed from ``tmp_path/site``): two clips and its ID file."""
    install_plugin(tmp_path / "site", "liarcam", LIAR)
    vol = tmp_path / "LIAR"
    make_clip(vol / "REC_0001.mp4", T0, 2.0)
    make_clip(vol / "REC_0002.mp4", T0 + timedelta(seconds=2), 2.0)
    (vol / "LIAR.ID").write_text("liar\n")
    return vol


def as_liar(tmp_path: Path, mode: str, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """``custodes ARGS`` with liarcam installed, lying as ``mode`` says."""
    env = {**os.environ, "LIAR_MODE": mode, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])}
    out = subprocess.run([sys.executable, "-m", "custodes", *map(str, args)], env=env, capture_output=True)
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    return out


@pytest.mark.parametrize("mode", ["phantom", "outside", "dup", "swap", "backwards"])
def test_what_a_driver_says_that_is_not_the_volume_s_is_its_own_fault_not_the_device_s(
    tmp_path: Path, mode: str
) -> None:
    """A driver's segment of a file not on the volume, of a path outside it, returned twice, read from another
    recording's file, or ending before it starts: ingest wrote each down against the device (an `overlap` error,
    "clock jump or forgery", and a `sequence_break`, "a deleted file"; findings about /etc/passwd; the volume's
    whole time line lost to the bad end), which a hostile review called false accusations. Each is the driver's
    `malformed` finding naming it; the files are stored as they are, and the device gets no error for it."""
    vol = liar_card(tmp_path)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    report = json.loads(as_liar(tmp_path, mode, "ingest", vol, "--archive", arch, "--json").stdout)
    assert sorted(report["stored"]) == ["LIAR.ID", "REC_0001.mp4", "REC_0002.mp4"], report
    kinds = {f["kind"] for f in report["findings"]}
    assert not kinds & {"overlap", "sequence_break", "name_time_mismatch"}, report["findings"]
    assert not [f for f in report["findings"] if f["path"] and not f["path"].startswith(str(vol))], report
    (bad,) = [f for f in report["findings"] if f["kind"] == "malformed"]
    assert bad["message"].startswith("driver liarcam: segment ") and bad["evidence"]["driver"] == "liarcam", bad
    recorded = catalog_rows(arch, "SELECT original_name, kind FROM segments ORDER BY original_name")
    assert ("REC_0002.mp4", "video") in recorded, recorded


def test_sidecars_a_driver_names_that_are_no_file_of_the_volume_or_a_recording_are_its_fault(tmp_path: Path) -> None:
    """Sidecars are the files that describe a recording; a driver naming a file outside the volume, one not on it,
    another recording or the recording itself had them listed so by `custodes volume` (session 13's note), and
    one named twice twice (a hostile review). Those are dropped as the driver's `malformed` finding; the sidecar
    on the volume stays, once."""
    vol = liar_card(tmp_path)
    (vol / "NOTES.SRT").write_text("1\n00:00:00,000 --> 00:00:01,000\nnotes\n")
    reading = json.loads(as_liar(tmp_path, "sidecars", "volume", vol, "--json").stdout)
    by_name = {s["name"]: s for s in reading["segments"]}
    assert by_name["REC_0001.mp4"]["sidecars"] == ["NOTES.SRT"], by_name
    (bad,) = [f for f in reading["findings"] if f["kind"] == "malformed"]
    assert bad["evidence"]["field"] == "sidecars" and bad["path"] == str(vol / "REC_0001.mp4"), bad
    for dropped in ("../../etc/passwd", "REC_0001.mp4", "REC_0002.mp4", "GONE.SRT"):
        assert dropped in bad["evidence"]["value"], bad


def test_a_driver_that_returns_no_reading_stores_nothing(tmp_path: Path) -> None:
    """A driver's `read` returning None was taken as a reading of no device: the files were stored under the
    folder's name as one (a hostile review), which a driver that raises is refused for. Refused the same way."""
    vol = liar_card(tmp_path)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    out = as_liar(tmp_path, "none", "ingest", vol, "--archive", arch)
    assert out.returncode == 2 and b"returned NoneType, not a VolumeReading; nothing was stored" in out.stderr, out
    assert catalog_rows(arch, "SELECT COUNT(*) FROM segments") == [(0,)]
