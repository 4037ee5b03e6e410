"""GA/T 947 volumes made with ffmpeg: identities, segments and findings."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from custodes.volumes import read_volume
from footage import T0, make_clip
from helpers import FOOTAGE, catalog_rows, run_cli

BEIJING = timezone(timedelta(hours=8))
IDENTITY = """# GA/T 947 identity
product_serial=A123456
officer_number=001234
officer_name=张三
unit_number=110105000000
unit_name=北京市公安局朝阳分局
"""


def local_name(officer: str, device: str, seconds: float, seq: int, imp: bool = False, ext: str = "MP4") -> str:
    t = (T0 + timedelta(seconds=seconds)).astimezone(BEIJING)
    return f"{officer}_{device}_{t:%Y%m%d%H%M%S}_{seq:04d}{'IMP' if imp else ''}.{ext}"


def recorder(
    root: Path, officer: str, device: str, clips: list[tuple[float, int, bool]], identity: str | None = IDENTITY
) -> Path:
    vol = root / device
    (vol / "DCIM").mkdir(parents=True)
    for seconds, seq, imp in clips:
        make_clip(vol / "DCIM" / local_name(officer, device, seconds, seq, imp), T0 + timedelta(seconds=seconds))
    if identity is not None:
        (vol / "GAT947_ID.TXT").write_text(identity.replace("001234", officer), encoding="utf-8")
    return vol


def test_identity_segments_and_marks(tmp_path: Path) -> None:
    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False), (2, 2, True), (4, 3, False)])
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "DCIM" / "stray.mov")  # not GA/T 947 naming
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:00:05\nstation_time=2024-03-01T10:00:00Z\n")
    (vol / "EVENTS.LOG").write_text("2024-03-01 18:00:00 power_on\n2024-03-01 18:00:06 battery_low 15%\n")
    r = read_volume(vol)
    assert r.driver == "gat947"
    ident = r.identity
    assert (ident.device_id, ident.officer_id, ident.officer_name, ident.unit_id, ident.unit_name) == (
        "A123456",
        "001234",
        "张三",
        "110105000000",
        "北京市公安局朝阳分局",
    )
    named = [s for s in r.segments if s.start_source == "name"]
    assert [(s.sequence, s.important) for s in named] == [(1, False), (2, True), (3, False)]
    assert named[0].start == int(T0.timestamp()) * 10**9  # 18:00 Beijing = 10:00Z
    assert named[0].end - named[0].start == 2 * 10**9
    assert [c.offset for c in r.clock_readings] == [5.0]
    assert [(e.kind, e.detail) for e in r.events] == [("power_on", ""), ("battery_low", "15%")]
    assert [f.kind for f in r.findings] == ["unexpected_name"]


def test_fleet_timeline_finds_missing_file_and_lying_name(tmp_path: Path) -> None:
    a = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False), (2, 2, False), (6, 4, True)])  # 0003 missing
    b = recorder(
        tmp_path, "005678", "BWC0002", [(0, 7, False), (2, 8, False)], identity=IDENTITY.replace("A123456", "B765432")
    )
    # A file whose name says 10:00:30Z but whose container says 10:00:04Z.
    make_clip(b / "DCIM" / local_name("005678", "BWC0002", 30, 9), T0 + timedelta(seconds=4))
    out = run_cli("timeline", "--json", a, b)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert {d["driver"] for d in report["devices"]} == {"gat947"}
    kinds = sorted((f["kind"], f["device"]) for f in report["findings"])
    assert kinds == [
        ("gap", "A123456"),
        ("gap", "B765432"),
        ("name_time_mismatch", "B765432"),
        ("sequence_break", "A123456"),
    ]
    brk = next(f for f in report["findings"] if f["kind"] == "sequence_break")
    assert brk["evidence"]["missing"] == [3]
    mismatch = next(f for f in report["findings"] if f["kind"] == "name_time_mismatch")
    assert mismatch["duration"] == 26.0 and mismatch["evidence"]["tz"] == "Asia/Shanghai"
    important = [s["name"] for s in report["segments"] if s["important"]]
    assert important == ["DCIM/" + local_name("001234", "BWC0001", 6, 4, True)]


def test_audio_and_photo_records_count(tmp_path: Path) -> None:
    vol = recorder(tmp_path, "001234", "BWC0003", [(0, 1, False)])
    wav = vol / "DCIM" / local_name("001234", "BWC0003", 2, 2, ext="WAV")
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=3", str(wav)], check=True)
    shutil.copy(vol / "GAT947_ID.TXT", vol / "DCIM" / local_name("001234", "BWC0003", 5, 3, ext="JPG"))
    r = read_volume(vol)
    kinds = [(s.kind, s.sequence, s.start_source) for s in r.segments]
    assert kinds == [("video", 1, "name"), ("audio", 2, "name"), ("photo", 3, "name")]
    audio = r.segments[1]
    assert (audio.end - audio.start) == 3 * 10**9


def test_custom_naming_template(tmp_path: Path) -> None:
    vol = tmp_path / "REC9"
    t = T0.astimezone(BEIJING)
    make_clip(vol / f"REC9-{t:%Y%m%d%H%M%S}-0042IMP.mp4", T0)
    r = read_volume(vol, "gat947", {"naming": "{device}-{time}-{seq}{imp}.{ext}"})
    (s,) = r.segments
    assert (s.sequence, s.important, s.start) == (42, True, int(T0.timestamp()) * 10**9)
    assert r.findings == []


def test_garbage_identity_file_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    vol = recorder(
        tmp_path,
        "001234",
        "BWC0004",
        [(0, 1, False)],
        identity="product_serial=TOO-LONG-SERIAL\nofficer_number=12\nthis is not a field\ncolour=blue\n",
    )
    r = read_volume(vol)
    messages = sorted(f.message for f in r.findings if f.kind == "malformed_identity")
    assert len(messages) == 4
    assert r.identity.device_id == "BWC0004"  # falls back to the folder name
    (vol / "GAT947_ID.TXT").write_bytes(b"\xff\xfe\x00garbage\x00" * 100)
    r = read_volume(vol)
    assert [f.message for f in r.findings] == ["line is not key=value: 'not UTF-8 text'"]


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{officer}_{nonsense}.{ext}", b"unknown field {nonsense}"),
        ("{time}{time}.{ext}", b"field {time} is in naming template '{time}{time}.{ext}' twice"),
    ],
)
def test_bad_template_is_a_clear_error(tmp_path: Path, template: str, said: bytes) -> None:
    vol = recorder(tmp_path, "001234", "BWC0005", [(0, 1, False)])
    out = run_cli("volume", vol, "--driver", "gat947", "-o", f"naming={template}")
    assert out.returncode == 2 and said in out.stderr, out.stderr
    assert b"failed" not in out.stderr


def test_huge_device_files_are_read_only_as_far_as_they_matter(tmp_path: Path) -> None:
    """An 8 GB sparse EVENTS.LOG (and identity file) was read whole before being cut (a hostile review: 2 GB of
    memory, or a MemoryError that lost the device's identity). Under a 1.5 GiB address-space limit the volume
    still reads, its identity and first events with it."""
    import subprocess
    import sys

    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False)])
    with open(vol / "EVENTS.LOG", "wb") as f:
        f.write(b"2024-03-01 18:00:00 power_on\n")
        f.truncate(8 << 30)
    with open(vol / "GAT947_ID.TXT", "ab") as f:
        f.truncate(8 << 30)
    script = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))\n"
        "from custodes.volumes import read_volume\n"
        "r = read_volume(sys.argv[1])\n"
        "print(json.dumps([r.identity.device_id, [e.kind for e in r.events][:1]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(vol)], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert json.loads(out.stdout) == ["A123456", ["power_on"]]


def test_a_device_log_of_junk_is_a_bounded_number_of_findings(tmp_path: Path) -> None:
    """1 MiB of junk lines in EVENTS.LOG made one `malformed` finding a line (a hostile review: 524,288 findings,
    a 391 MB catalog from one volume). A reading keeps FINDINGS_PER_FILE of a kind about one file, and one more
    counts the rest; the good lines among the junk are still events, and the ingest stores the recordings."""
    from custodes.drivers import FINDINGS_PER_FILE

    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False)])
    junk = [f"junk line {i}" for i in range(3 * FINDINGS_PER_FILE)]
    lines = ["2024-03-01 18:00:00 power_on", *junk, "2024-03-01 18:00:06 battery_low 15%"]
    (vol / "EVENTS.LOG").write_text("\n".join(lines) + "\n")
    r = read_volume(vol)
    assert [(e.kind, e.detail) for e in r.events] == [("power_on", ""), ("battery_low", "15%")]
    about_log = [f for f in r.findings if f.kind == "malformed" and f.path and f.path.endswith("EVENTS.LOG")]
    assert len(about_log) == FINDINGS_PER_FILE + 1
    assert [f.message for f in about_log[:2]] == [
        "event log line not understood: 'junk line 0'",
        "event log line not understood: 'junk line 1'",
    ]
    assert about_log[-1].message.startswith(f"{2 * FINDINGS_PER_FILE} more malformed findings about this file")
    assert about_log[-1].evidence == {"left_out": 2 * FINDINGS_PER_FILE}

    arch = tmp_path / "arch"
    assert run_cli("init", arch).returncode == 0
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "gat947", "--json")
    assert out.returncode == 1, out.stderr.decode()[-2000:]
    stored = json.loads(out.stdout)
    assert "DCIM/001234_BWC0001_20240301180000_0001.MP4" in stored["stored"]
    rows = catalog_rows(arch, "SELECT detail FROM findings WHERE kind = 'malformed' AND path LIKE '%EVENTS.LOG'")
    assert len(rows) == FINDINGS_PER_FILE + 1
    assert run_cli("verify", arch).returncode == 0


def test_device_files_read_in_part_say_so(tmp_path: Path) -> None:
    """An event log past the limit lost its newest lines without a word, and the line the limit cut was blamed
    as not understood; an identity file past it lost the serial after a long comment, silently (a hostile
    review). Now whole lines are read up to the limit and one finding says the file was read in part."""
    from custodes_gat947 import EVENTS_LIMIT, KEY_VALUES_LIMIT

    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False)])
    line = b"2024-03-01 18:00:00 power_on\n"
    with open(vol / "EVENTS.LOG", "wb") as f:
        f.write(line * (EVENTS_LIMIT // len(line) + 1000))
    (vol / "GAT947_ID.TXT").write_text("# " + "x" * KEY_VALUES_LIMIT + "\nproduct_serial=G123456\n")
    r = read_volume(vol)
    whole = EVENTS_LIMIT // len(line)
    assert len(r.events) == whole  # every whole line up to the limit, none cut
    assert not any("not understood" in f.message for f in r.findings)
    cut = {f.path.rsplit("/", 1)[-1]: f for f in r.findings if f.message.startswith("file of ")}
    assert sorted(cut) == ["EVENTS.LOG", "GAT947_ID.TXT"]
    assert cut["EVENTS.LOG"].kind == "malformed" and cut["EVENTS.LOG"].evidence["read_bytes"] == whole * len(line)
    assert "only its first" in cut["GAT947_ID.TXT"].message


@pytest.mark.parametrize(
    ("station", "ok"),
    [
        ("2024-03-01T10:00:00Z", True),
        ("2024-03-01T18:00:00+08:00", True),
        ("2024-03-01T10:00:00", False),  # no offset: it was read in the ingesting machine's zone
        ("2024-03-01T10:00:00+23:59", False),  # no zone is that far from UTC
    ],
)
def test_a_dock_clock_station_time_needs_its_offset(tmp_path: Path, station: str, ok: bool) -> None:
    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False)])
    (vol / "DOCKCLOCK.TXT").write_text(f"device_time=2024-03-01 18:00:05\nstation_time={station}\n")
    for tz in ("UTC", "America/New_York"):
        out = run_cli("volume", vol, "--json", env={"TZ": tz})
        got = json.loads(out.stdout)
        readings = got["clock_readings"]
        if ok:
            assert [c["offset_seconds"] for c in readings] == [5.0], (tz, readings)
        else:
            assert readings == [] and any(
                f["kind"] == "malformed" and f"station_time {station!r}" in f["message"] for f in got["findings"]
            ), got["findings"]


def test_one_cap_per_file_whoever_made_its_findings(tmp_path: Path) -> None:
    """Junk lines (the driver's findings) and lines dated 2262 (the contract checker's, which names the device)
    about one EVENTS.LOG were capped apart: two count lines and 200 findings (a final review)."""
    from custodes.drivers import FINDINGS_PER_FILE

    vol = recorder(tmp_path, "001234", "BWC0001", [(0, 1, False)])
    lines = [f"junk {i}" if i % 2 else "2262-05-01 00:00:00 power_on" for i in range(3 * FINDINGS_PER_FILE)]
    (vol / "EVENTS.LOG").write_text("\n".join(lines) + "\n")
    about_log = [f for f in read_volume(vol).findings if f.path and f.path.endswith("EVENTS.LOG")]
    assert {f.kind for f in about_log} == {"malformed"}
    assert len(about_log) == FINDINGS_PER_FILE + 1
    assert about_log[-1].evidence == {"left_out": 2 * FINDINGS_PER_FILE}
