"""Issue 10: one odd file never keeps the rest of a volume out of the archive,
and verify tells work in flight from tampering. Everything through the real CLI
on real footage (tests/data/footage) and hand-made hostile files."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from custodes._durable import process_tag
from helpers import (
    FOOTAGE,
    build_cli_archive,
    catalog_edit,
    catalog_rows,
    install_plugin,
    policy_text,
    run_cli,
    run_cli_with_faults,
    set_policy,
)

GOPRO = "DCIM/100GOPRO"
#: Ordinary recordings (real footage) and what each is a copy of.
ORDINARY = {
    f"{GOPRO}/GH010001.MP4": FOOTAGE / "gopro" / "karma.mp4",
    f"{GOPRO}/GH010002.MP4": FOOTAGE / "gopro" / "max-heromode.mp4",
    f"{GOPRO}/phone.mov": FOOTAGE / "phones" / "bt601.mov",
    f"{GOPRO}/sample.mp4": FOOTAGE / "encoders" / "androidx-sample.mp4",
}
ODD_NAME = os.fsdecode(GOPRO.encode() + b"/clip-\xff\xfe.mp4")  # not UTF-8
NEWLINE_NAME = f"{GOPRO}/notes\nline.txt"
LOCKED = f"{GOPRO}/locked.mp4"
#: Every bad file of issue 10, and the finding kinds that may name it (at least one must).
BAD = {
    "MISC/version.txt": {"malformed"},  # the serial number is a list
    f"{GOPRO}/flip.mp4": {"malformed", "clock_unset", "clock_future"},  # mvhd version 0 -> 1
    ODD_NAME: {"odd_name"},
    NEWLINE_NAME: {"odd_name"},
    f"{GOPRO}/pipe.mp4": {"not_regular_file"},
    f"{GOPRO}/cut.mp4": {"truncated"},
    LOCKED: {"ingest_failed"},
    f"{GOPRO}/traks.mp4": {"malformed", "clock_unset"},  # 2,000 empty trak boxes, no clock
    f"{GOPRO}/empty.mp4": {"no_moov"},
}


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def many_traks(count: int) -> bytes:
    """An MP4 whose moov holds ``count`` empty trak boxes (and an mvhd with no clock)."""
    mvhd = box(
        b"mvhd",
        bytes(4)
        + struct.pack(">IIII", 0, 0, 1000, 1000)
        + struct.pack(">IH", 0x10000, 0x100)
        + bytes(10 + 36 + 24)
        + struct.pack(">I", 2),
    )
    return box(b"ftyp", b"isom\0\0\0\0isom") + box(b"moov", mvhd + box(b"trak") * count) + box(b"mdat")


def mvhd_flipped(src: Path) -> bytes:
    """The file with its mvhd version byte flipped from 0 to 1: 64-bit fields read from 32-bit data."""
    data = bytearray(src.read_bytes())
    at = data.find(b"mvhd") + 4
    assert data[at] == 0
    data[at] = 1
    return bytes(data)


def gopro_card(root: Path, *, hostile: bool) -> Path:
    vol = root / "GOPRO-CARD"
    (vol / GOPRO).mkdir(parents=True)
    (vol / "MISC").mkdir()
    for name, src in ORDINARY.items():
        shutil.copy(src, vol / name)
    if not hostile:
        return vol
    (vol / "MISC" / "version.txt").write_text(
        '{\n"camera type":"HERO5 Black",\n"camera serial number":["C3131", 7],\n}'
    )
    (vol / GOPRO / "flip.mp4").write_bytes(mvhd_flipped(FOOTAGE / "encoders" / "androidx-sample.mp4"))
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", os.fsencode(vol / ODD_NAME))
    (vol / NEWLINE_NAME).write_text("officer's notes, a name with a newline\n")
    os.mkfifo(vol / GOPRO / "pipe.mp4")
    whole = (FOOTAGE / "encoders" / "go-mp4-sample.mp4").read_bytes()
    (vol / GOPRO / "cut.mp4").write_bytes(whole[: len(whole) * 6 // 10])  # power lost mid-write
    shutil.copy(FOOTAGE / "phones" / "sample_sef_slow_motion.mp4", vol / LOCKED)
    (vol / LOCKED).chmod(0)
    (vol / GOPRO / "traks.mp4").write_bytes(many_traks(2000))
    (vol / GOPRO / "empty.mp4").write_bytes(b"")
    return vol


def regular_files(vol: Path) -> dict[str, str]:
    """name (relative, str as os.fsdecode gives it) -> sha256 of every regular file."""
    out = {}
    for dirpath, _, names in os.walk(os.fsencode(vol)):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                rel = os.fsdecode(os.path.relpath(p, os.fsencode(vol)))
                mode = os.stat(p).st_mode
                os.chmod(p, mode | 0o400)  # the locked file too: the test may read what the archive may not
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
                os.chmod(p, mode)
    return out


def ingest(vol: Path, arch: Path) -> tuple[int, dict, bytes]:
    out = run_cli("ingest", vol, "--archive", arch, "--json", obey_permissions=True)
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    return out.returncode, json.loads(out.stdout), out.stderr


def by_file(report: dict, vol: Path) -> dict[str, Counter]:
    """Finding kinds per file (relative name), from ingest --json."""
    found: dict[str, Counter] = {}
    for f in report["findings"]:
        if f["path"]:
            found.setdefault(os.path.relpath(f["path"], vol), Counter())[f["kind"]] += 1
    return found


def test_hostile_volume_is_ingested_whole(tmp_path: Path) -> None:
    clean = gopro_card(tmp_path / "clean", hostile=False)
    base_arch = tmp_path / "base-archive"
    assert run_cli("init", base_arch).returncode == 0
    code, baseline, _ = ingest(clean, base_arch)
    assert sorted(baseline["stored"]) == sorted(ORDINARY)

    vol = gopro_card(tmp_path / "hostile", hostile=True)
    files = regular_files(vol)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    code, report, _ = ingest(vol, arch)
    assert code == 1
    assert report["driver"] == "gopro" and report["device"] == "GOPRO-CARD"  # the list serial is not the device id
    readable = sorted(n for n in files if n != LOCKED)
    assert sorted(report["stored"]) == readable  # every file that can be read, odd names included
    assert report["failed"] == [LOCKED]  # only what truly could not be copied
    found = by_file(report, vol)
    for name, kinds in BAD.items():
        assert set(found.get(name, ())) & kinds, (name, found.get(name))
    for name in ORDINARY:  # the ordinary recordings: no finding they did not have alone
        assert found.get(name, Counter()) == by_file(baseline, clean).get(name, Counter()), name
    assert set(found) <= set(BAD) | set(ORDINARY)  # nothing else is named
    volume_wide = [Counter(f["kind"] for f in r["findings"] if not f["path"]) for r in (report, baseline)]
    assert volume_wide[0] == volume_wide[1]  # gaps between the recordings: the bad files add none

    # Stored byte for byte, names kept exactly: the catalog and the ledger give the name back.
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        rows = db.execute(
            "SELECT s.original_name, s.original_name_bytes, s.sha256, l.entry FROM segments s "
            "JOIN ledger l ON l.seq = s.ledger_seq"
        ).fetchall()
    stored = {}
    for text, raw, sha, entry in rows:
        e = json.loads(entry)
        name = os.fsdecode(raw) if raw is not None else text
        assert e["name"] == text and e.get("name_b64") == (None if raw is None else base64.b64encode(raw).decode())
        stored[name] = sha
        obj = arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
        assert hashlib.sha256(obj.read_bytes()).hexdigest() == sha
    assert stored == {n: d for n, d in files.items() if n != LOCKED}
    odd = next(r for r in rows if r[1] is not None)
    assert odd[0] == "DCIM/100GOPRO/clip-\\xff\\xfe.mp4" and odd[1] == os.fsencode(ODD_NAME)
    assert any(r[0] == NEWLINE_NAME and r[1] is None for r in rows)  # valid UTF-8: kept as text, newline and all
    odd_finding = next(f for f in report["findings"] if f["kind"] == "odd_name" and "\n" in f["path"])
    assert "notes\\nline.txt" in odd_finding["message"]  # shown escaped, on one line

    # volume and timeline read the same volume: findings, no crash, valid JSON.
    for command in ("volume", "timeline"):
        out = run_cli(command, "--json", vol, obey_permissions=True)
        assert out.returncode == 1 and b"Traceback" not in out.stderr, (command, out.stderr)
        kinds = {f["kind"] for f in json.loads(out.stdout)["findings"]}
        assert {"odd_name", "malformed", "not_regular_file", "truncated", "no_moov"} <= kinds, (command, kinds)

    # Text output: one line per finding, no raw newline from a file name.
    again = run_cli("ingest", vol, "--archive", arch, obey_permissions=True)
    assert again.returncode == 1 and b"Traceback" not in again.stderr
    assert b"notes\nline" not in again.stdout

    # A re-run: all already present; the unreadable file is still the one failure.
    code, rerun, _ = ingest(vol, arch)
    assert code == 1 and rerun["stored"] == [] and rerun["failed"] == [LOCKED]
    assert sorted(rerun["already_present"]) == readable
    # Made readable, a re-run finishes the volume.
    (vol / LOCKED).chmod(0o444)
    code, last, _ = ingest(vol, arch)
    assert last["stored"] == [LOCKED] and last["failed"] == [] and sorted(last["already_present"]) == readable

    verified = run_cli("verify", arch, "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout) == {**json.loads(verified.stdout), "ok": True, "findings": []}
    assert b"Traceback" not in verified.stderr


def test_gopro_version_txt_of_the_wrong_shape_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    vol = gopro_card(tmp_path, hostile=False)
    (vol / "MISC" / "version.txt").write_text('{"camera type": {"nested": 1}, "camera serial number": ["C1", "C2"],}')
    arch = tmp_path / "archive"
    run_cli("init", arch)
    code, report, _ = ingest(vol, arch)
    assert code == 1 and sorted(report["stored"]) == sorted([*ORDINARY, "MISC/version.txt"])
    bad = [f for f in report["findings"] if f["kind"] == "malformed"]
    assert len(bad) == 1 and bad[0]["path"].endswith("MISC/version.txt")
    assert "'camera type' is dict" in bad[0]["message"] and "'camera serial number' is list" in bad[0]["message"]
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        assert db.execute("SELECT device_id, model, serial FROM devices").fetchall() == [("GOPRO-CARD", None, None)]


HOSTILE_DRIVER = '''
import os
from pathlib import Path
from custodes.drivers import (
    ClockReading, DeviceEvent, DeviceIdentity, Driver, VolumeReading, media_segments, scan_volume,
)
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver

class Hostile(Driver):
    """Reads its device files and passes on whatever they held, unchecked."""
    name = "hostile"
    def recognise(self, volume):
        return 1.0 if (volume / "HOSTILE.ID").exists() else 0.0
    def read(self, volume, options):
        if (volume / "CRASH").exists():
            raise KeyError("a vendor bug")
        files, findings, skipped = scan_volume(volume)
        segments, probe_findings, _ = media_segments(files)
        ident_file = os.fspath(volume / "HOSTILE.ID")
        log = os.fspath(volume / "EVENTS.LOG")
        first = segments[0]
        segments[0] = first.__class__(**{**first.__dict__, "start": 10**30, "recording": b"raw", "sequence": 10**20,
                                         "extra": {"officer": ["A", "B"], "speed": float("nan")}})
        identity = DeviceIdentity("HOST-1", serial=["S", 1], officer_id=42, file=ident_file)
        clock = [ClockReading(1.5, 2, "dock", file=log), ClockReading(10**9, 10**9, "dock", file=log)]
        events = [DeviceEvent(10**25, "battery_low", file=log), DeviceEvent(None, "power_on", b"\\xff", file=log)]
        return VolumeReading(self.name, os.fspath(volume), identity, segments, clock, events,
                             findings + probe_findings + ["not a finding"], skipped)

@hookimpl
def custodes_device_drivers():
    return [DeviceDriver("hostile", "a third-party driver that trusts its device", Hostile)]
'''


def run_with_plugin(site: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "custodes", *map(str, args)], env=env, capture_output=True, timeout=300
    )


def test_the_driver_contract_is_enforced_for_third_party_drivers(tmp_path: Path) -> None:
    """Whatever a driver hands back, ingest checks each field: a bad one is a finding naming the file
    it came from, and every file of the volume is still stored."""
    site = tmp_path / "site"
    install_plugin(site, "hostile", HOSTILE_DRIVER)
    vol = tmp_path / "HOSTCAM"
    vol.mkdir()
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", vol / "A0001.mp4")
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "A0002.mov")
    (vol / "HOSTILE.ID").write_text("serial: S 1\n")
    (vol / "EVENTS.LOG").write_text("garbage\n")
    arch = tmp_path / "archive"
    run_cli("init", arch)
    out = run_with_plugin(site, "ingest", vol, "--archive", arch, "--json")
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["driver"] == "hostile" and report["device"] == "HOST-1"
    assert sorted(report["stored"]) == ["A0001.mp4", "A0002.mov", "EVENTS.LOG", "HOSTILE.ID"] and report["failed"] == []
    bad = sorted(
        (os.path.basename(f["path"]), f["evidence"]["record"], f["evidence"]["field"])
        for f in report["findings"]
        if f["kind"] == "malformed"
    )
    assert bad == [
        ("A0001.mp4", "segment", "extra['officer']"),
        ("A0001.mp4", "segment", "extra['speed']"),
        ("A0001.mp4", "segment", "recording"),
        ("A0001.mp4", "segment", "sequence"),
        ("A0001.mp4", "segment", "start"),
        ("EVENTS.LOG", "clock_reading", "device_time"),
        ("EVENTS.LOG", "event", "detail"),
        ("EVENTS.LOG", "event", "time"),
        ("EVENTS.LOG", "event", "time"),  # an event without a time is dropped whole, and said so
        ("HOSTCAM", "finding", "(whole)"),
        ("HOSTILE.ID", "identity", "officer_id"),
        ("HOSTILE.ID", "identity", "serial"),
    ]
    (seq,) = [f["message"] for f in report["findings"] if f["evidence"].get("field") == "sequence"]
    assert seq == "driver hostile: segment field 'sequence' is int 100000000000000000000, not a 64-bit integer; dropped"
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        assert db.execute("SELECT serial, officer_id FROM devices").fetchall() == [(None, None)]
        assert db.execute("SELECT start_ns, recording FROM segments WHERE original_name = 'A0001.mp4'").fetchall() == [
            (None, None)
        ]
        assert db.execute("SELECT device_ns FROM clock_readings").fetchall() == [(10**9,)]  # the good reading is kept
    assert run_cli("verify", arch).returncode == 0

    # A driver that fails outright: `volume` names the failure; ingest refuses and stores nothing (stored
    # without the driver, the files were filed under the folder's name as a device: counted twice once the driver
    # was fixed, hostile review of issue 17); --driver generic stores them, said so.
    (vol / "CRASH").write_text("")
    shown = run_with_plugin(site, "volume", vol, "--json")
    assert b"Traceback" not in shown.stderr and shown.returncode == 1
    (failed,) = [f for f in json.loads(shown.stdout)["findings"] if f["kind"] == "malformed"]
    assert "driver hostile failed reading the volume (KeyError" in failed["message"] and failed["path"] == str(vol)
    arch2 = tmp_path / "archive2"
    run_cli("init", arch2)
    out = run_with_plugin(site, "ingest", vol, "--archive", arch2, "--json")
    assert out.returncode == 2 and out.stdout == b"", out.stderr
    (line,) = out.stderr.decode().splitlines()
    assert line.startswith(f"custodes: {vol}: driver hostile failed reading the volume (KeyError")
    assert line.endswith("nothing was stored: fix the driver, or store the files without its metadata with "
                         "--driver generic -o device_id=ID")  # fmt: skip
    with sqlite3.connect(arch2 / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM segments").fetchone() == (0,)
    out = run_with_plugin(site, "ingest", vol, "--archive", arch2, "--json", "--driver", "generic")
    assert out.returncode == 1, out.stderr
    assert sorted(json.loads(out.stdout)["stored"]) == ["A0001.mp4", "A0002.mov", "CRASH", "EVENTS.LOG", "HOSTILE.ID"]


def killed_ingest(tmp_path: Path, crashpoint: str) -> tuple[Path, Path]:
    """A GoPro card and an archive whose ingest of it was SIGKILLed at ``crashpoint``."""
    vol = gopro_card(tmp_path, hostile=False)
    arch = tmp_path / "archive"
    run_cli("init", arch)
    env = {**os.environ, "CUSTODES_CRASHPOINT": crashpoint}
    killed = subprocess.run(
        [sys.executable, "-m", "custodes", "ingest", str(vol), "--archive", str(arch)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -9
    return vol, arch


def test_verify_after_a_killed_ingest_reports_pending_not_tampering(tmp_path: Path) -> None:
    vol, arch = killed_ingest(tmp_path, "after_link:1")
    out = run_cli("verify", arch, "--json")
    assert b"Traceback" not in out.stderr
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["ok"] is True  # in flight is not tampering
    assert {f["kind"] for f in result["findings"]} == {"pending"}
    assert all(f"custodes ingest {vol} --archive {arch}" in f["message"] for f in result["findings"])
    text = run_cli("verify", arch)
    assert text.returncode == 0 and b"pending: " in text.stdout and b"re-run `custodes ingest" in text.stdout

    # A file nobody linked through an ingest is still tampering.
    stray = arch / "objects" / "sha256" / "00" / "00" / ("00" * 32)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"planted")
    out = run_cli("verify", arch, "--json")
    result = json.loads(out.stdout)
    assert out.returncode == 1 and result["ok"] is False
    assert [f["object"] for f in result["findings"] if f["kind"] == "unexpected"] == ["00" * 32]
    stray.unlink()

    # Re-run: the ingest finishes; verify is clean, nothing pending.
    code, report, _ = ingest(vol, arch)
    assert sorted(report["stored"] + report["already_present"]) == sorted(ORDINARY)
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == []


def test_verify_after_a_kill_once_entries_are_recorded_reports_them_pending(tmp_path: Path) -> None:
    """Killed once its files were recorded (ledger entries written, no checkpoint yet): pending too."""
    vol, arch = killed_ingest(tmp_path, "after_commit:2")
    out = run_cli("verify", arch, "--json")
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["ok"] is True
    assert any(
        # the card's four files, recorded in one commit as one group (catalog.replay); its ingest_begin was signed
        # as it was recorded (since 2026-12-01: Archive.sign_within)
        f["kind"] == "pending" and "4 ledger entries of ingest 1 are not signed yet" in f["message"]
        for f in result["findings"]
    )
    # A checkpoint removed after an ingest finished is a rollback, not pending.
    code, _, _ = ingest(vol, arch)
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        top = db.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0]
        db.execute("DELETE FROM checkpoints WHERE size = ?", (top,))
    (arch / "ledger" / "checkpoints" / str(top)).unlink()
    out = run_cli("verify", arch, "--json")
    kinds = {f["kind"] for f in json.loads(out.stdout)["findings"]}
    assert out.returncode == 1 and "checkpoint_mismatch" in kinds and "pending" not in kinds


def test_odd_names_keep_working_in_export_reports_access_and_verify(tmp_path: Path) -> None:
    """A name that is not UTF-8 and one with a newline, all the way through: the bag (whose manifests
    are UTF-8 text) holds them escaped and its custody entries carry the exact bytes."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    people = '\n[people]\nalice = "custodian"\nbob = "approver"\ncarol = "viewer"\n'
    assert set_policy(arch, policy_text(arch) + people).returncode == 0
    vol = tmp_path / "BWC0002"
    vol.mkdir()
    raw = b"clip-\xff.mp4"
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", os.path.join(os.fsencode(vol), raw))
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "two\nlines.mov")
    code, report, _ = ingest(vol, arch)
    assert code == 1 and sorted(report["stored"]) == sorted([os.fsdecode(raw), "two\nlines.mov"])

    def as_(user: str, *args: object) -> subprocess.CompletedProcess[bytes]:
        out = run_cli(*args, user=user)
        assert b"Traceback" not in out.stderr, out.stderr.decode()
        return out

    assert as_("alice", "retention", "case", arch, "--case", "C-1", "--segment", "1", "--segment", "2").returncode == 0
    rid = json.loads(
        as_(
            "carol",
            "access",
            "request",
            arch,
            "--segment",
            "1",
            "--segment",
            "2",
            "--reason",
            "court",
            "--purpose",
            "export",
            "--json",
        ).stdout
    )["id"]
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    bag = tmp_path / "bag"
    assert as_("carol", "export", arch, "--case", "C-1", "--request", rid, "--to", bag).returncode == 0
    assert sorted(os.listdir(bag / "data" / "BWC0002")) == ["clip-_xff.mp4", "two\nlines.mov"]
    assert (bag / "data" / "BWC0002" / "clip-_xff.mp4").read_bytes() == (
        FOOTAGE / "encoders" / "androidx-sample.mp4"
    ).read_bytes()
    entries = [json.loads(line) for line in (bag / "custody" / "ledger-entries.jsonl").read_text().splitlines()]
    ledger = [json.loads(base64.b64decode(e["entry"])) for e in entries]
    assert [base64.b64decode(e["name_b64"]) for e in ledger if "name_b64" in e] == [raw]
    validated = as_("carol", "bag", "validate", bag)
    assert validated.returncode == 0, validated.stdout
    assert subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bag)], capture_output=True).returncode == 0

    view = json.loads(as_("carol", "access", "request", arch, "--segment", "1", "--reason", "review", "--json").stdout)[
        "id"
    ]
    assert as_("bob", "access", "approve", arch, view).returncode == 0
    opened = as_("carol", "access", "open", arch, view, "--segment", "1", "--to", tmp_path / "viewed")
    assert opened.returncode == 0 and os.listdir(tmp_path / "viewed") == ["clip-\\xff.mp4"]
    for fmt in ("json", "csv", "html", "pdf"):
        out = as_("alice", "report", arch, "--format", fmt, "--out", tmp_path / f"report.{fmt}")
        assert out.returncode in (0, 1) and (tmp_path / f"report.{fmt}").stat().st_size > 0, (fmt, out.stderr)
    assert "clip-\\\\xff.mp4" in (tmp_path / "report.json").read_text()  # the escaped name, as JSON text
    verified = as_("alice", "verify", arch)
    assert verified.returncode == 0 and b"intact" in verified.stdout


def test_dji_sidecars_of_the_wrong_shape_or_unreadable_are_findings(tmp_path: Path) -> None:
    """The DJI driver reads positions from .SRT sidecars: a position that is not a number, or a
    sidecar that cannot be read, is a finding on that sidecar; the volume is read and stored."""
    vol = tmp_path / "DRONE"
    vol.mkdir()
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", vol / "DJI_0001.MP4")
    srt = (FOOTAGE / "drones" / "p4p_sample.SRT").read_text()
    (vol / "DJI_0001.SRT").write_text(srt.replace("GPS (8.2090, 47.4692, 18)", "GPS (8.2.090, ., 18)", 1))
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "DJI_0002.MOV")
    shutil.copy(FOOTAGE / "drones" / "p4p_sample.SRT", vol / "DJI_0002.SRT")
    (vol / "DJI_0002.SRT").chmod(0)
    arch = tmp_path / "archive"
    run_cli("init", arch)
    code, report, _ = ingest(vol, arch)
    assert code == 1 and report["driver"] == "dji"
    assert sorted(report["stored"]) == ["DJI_0001.MP4", "DJI_0001.SRT", "DJI_0002.MOV"]
    assert report["failed"] == ["DJI_0002.SRT"]
    found = by_file(report, vol)
    assert found["DJI_0001.SRT"]["malformed"] == 1  # the damaged block
    # One finding for the sidecar not copied, which says why (the driver's "unreadable" of it is not said twice)
    assert found["DJI_0002.SRT"] == Counter({"ingest_failed": 1})
    assert "DJI_0002.MOV" in report["stored"] and not any(
        "driver dji failed" in f["message"] for f in report["findings"]
    )


def test_verify_during_an_ingest_under_way_reports_pending(tmp_path: Path, monkeypatch) -> None:
    """A verify (the real CLI, another process) while an ingest is between linking an object and
    recording it: the ingest is alive, so the object is pending, and the archive intact."""
    import threading

    import custodes.ingest as ingest_mod
    from custodes.archive import open_archive

    vol = gopro_card(tmp_path, hostile=False)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    linked, release = threading.Event(), threading.Event()
    record = ingest_mod._record

    def held_record(*args, **kwargs):  # the first file waits, linked but not recorded
        if not linked.is_set():
            linked.set()
            assert release.wait(120)
        return record(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "_record", held_record)
    results: list = []

    def run() -> None:
        with open_archive(arch) as a:
            results.append(ingest_mod.ingest(a, vol))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert linked.wait(120)
        during = run_cli("verify", arch, "--json")
    finally:
        release.set()
        worker.join(120)
    assert b"Traceback" not in during.stderr
    report = json.loads(during.stdout)
    assert during.returncode == 0 and report["ok"] is True
    assert report["findings"] and {f["kind"] for f in report["findings"]} == {"pending"}
    assert "is under way or was interrupted" in report["findings"][0]["message"]
    assert sorted(results[0].stored) == sorted(ORDINARY)
    after = run_cli("verify", arch, "--json")
    assert after.returncode == 0 and json.loads(after.stdout)["findings"] == []


def test_a_name_that_is_not_utf8_never_takes_the_text_of_another_name(tmp_path: Path) -> None:
    """b"a\\xff.mp4" and the UTF-8 name "a\\\\xff.mp4" (a backslash, x, f, f) with the same content are two
    files: both are stored and recorded, each with its own text, and each name comes back exactly."""
    vol = tmp_path / "BWC0003"
    vol.mkdir()
    raw = b"a\xff.mp4"
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", os.path.join(os.fsencode(vol), raw))
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", vol / "a\\xff.mp4")
    arch = tmp_path / "archive"
    run_cli("init", arch)
    code, report, _ = ingest(vol, arch)
    assert code == 1 and report["failed"] == [] and len(report["stored"]) == 2
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        rows = sorted(db.execute("SELECT original_name, original_name_bytes FROM segments").fetchall())
    assert rows == [("a\\\\xff.mp4", b"a\\xff.mp4"), ("a\\xff.mp4", raw)]
    code, again, _ = ingest(vol, arch)
    assert again["stored"] == [] and len(again["already_present"]) == 2
    assert run_cli("verify", arch).returncode == 0


def killed_after_linking(
    tmp_path: Path, *init: str, card: str = "GOPRO-CARD", wipe: bool = True
) -> tuple[Path, Path, str, str]:
    """A card's ingest killed after linking its files, none recorded; one file then gone from the card (unless
    not ``wipe``: left there). The card (its folder named ``card``), the archive (made with ``init``'s
    options), that file's name and its digest."""
    vol = gopro_card(tmp_path, hostile=False).rename(tmp_path / card)
    arch = tmp_path / "archive"
    assert run_cli("init", arch, *init).returncode == 0
    env = {**os.environ, "CUSTODES_CRASHPOINT": "after_link:1"}
    subprocess.run(
        [sys.executable, "-m", "custodes", "ingest", str(vol), "--archive", str(arch)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    # The kill lands after the links of the card's one group (custodes.ingest.Groups): every object is linked,
    # none recorded. (Its ingest_begin entry, unsigned too, is a pending finding of no object.)
    result = json.loads(run_cli("verify", arch, "--json").stdout)
    assert result["ok"] is True and {f["kind"] for f in result["findings"]} == {"pending"}
    linked = {f["object"] for f in result["findings"] if f["object"]}
    by_digest = {d: n for n, d in regular_files(vol).items()}
    assert {by_digest[d] for d in linked} == set(ORDINARY)
    gone = min(linked)
    if wipe:
        (vol / by_digest[gone]).unlink()  # one file is gone from the card before the re-run
    return vol, arch, by_digest[gone], gone


def test_a_file_a_killed_ingest_stored_whose_copy_fails_on_the_re_run_is_recovered_once(tmp_path: Path) -> None:
    """Killed after storing a file, not recording it; the re-run's own copy of it, still on the card, refused by
    a full disk (a hostile review, on a tmpfs): the re-run recorded it from the store for the killed ingest and
    also called it failed, then drew it twice on the volume's time line: an `overlap` error ("starts 12 s
    before it ends: clock jump or forgery") of the file with itself, and a second late_ingest. Recovered, it is
    recorded once, not failed, and overlaps nothing."""
    vol, arch, name, sha = killed_after_linking(tmp_path, wipe=False)
    # The first write of that file's copy into tmp/ (named by the file: counted over the whole process, the n-th
    # write was another file's copy on another thread now and then, and this test failed in CI).
    log = tmp_path / "ops"
    fault = f"write:1:ENOSPC:-{os.path.basename(name)}"
    out = run_cli_with_faults("ingest", vol, "--archive", arch, "--json", fault=fault, log=log)
    (hit,) = [line.split("\t")[2] for line in log.read_text().splitlines() if line.endswith("\tfault")]
    assert f"{arch / 'tmp'}/" in hit, hit
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    report = json.loads(out.stdout)
    assert report["recovered"] == [name] and report["failed"] == [], report
    about = [f["kind"] for f in report["findings"] if f["path"] == str(vol / name)]
    assert "ingest_failed" not in about and about.count("late_ingest") <= 1, about
    assert not [f for f in report["findings"] if f["kind"] == "overlap"], report["findings"]
    assert catalog_rows(arch, "SELECT COUNT(*) FROM segments WHERE sha256 = ?", (sha,)) == [(1,)]
    assert run_cli("verify", arch).returncode == 0


def test_a_file_whose_object_s_place_holds_other_bytes_fails_once_and_truly(tmp_path: Path) -> None:
    """Killed after linking, a byte of one linked object then changed; the card unchanged. The re-run's own copy
    fails (the place holds other bytes, never replaced), and the file was failed a second time for the killed
    ingest, "not on the volume as that ingest read it" while it was, listed twice (a hostile review). Once, with
    this run's reason; verify names the bytes at the place."""
    vol, arch, name, sha = killed_after_linking(tmp_path, wipe=False)
    place = arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    place.chmod(0o600)
    with open(place, "r+b") as f:
        f.seek(100)
        f.write(bytes([f.read(1)[0] ^ 1]))
    place.chmod(0o400)
    code, report, _ = ingest(vol, arch)
    assert report["failed"] == [name], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert "is there already and is a file with other bytes" in failed["message"], failed
    assert "not on the volume" not in failed["message"]
    found = json.loads(run_cli("verify", arch, "--json").stdout)["findings"]
    assert [(f["kind"], f["object"]) for f in found] == [("modified", sha)], found


SEGMENT_FACTS = "SELECT original_name, sha256, kind, start_ns, end_ns, device_id FROM segments ORDER BY original_name"


def test_a_file_a_killed_ingest_stored_and_gone_from_the_volume_is_recorded_by_the_re_run(tmp_path: Path) -> None:
    """Killed after storing a file, not recording it; the file gone from the card before the re-run (a card wiped
    or lost): the re-run records it from what the killed ingest noted with its intent (what its driver read),
    for that ingest, and says so ("recovered"); verify is clean. It was `pending` for ever, `ok`, while the
    catalog never named the recording (and on a bucket the object stayed unlocked)."""
    vol, arch, name, gone = killed_after_linking(tmp_path)
    code, report, out = ingest(vol, arch)
    assert report["recovered"] == [name], report
    assert sorted(report["stored"] + report["already_present"]) == sorted(set(ORDINARY) - {name})
    assert report["failed"] == [] and name not in report["stored"] + report["already_present"]
    listed = run_cli("ingest", vol, "--archive", arch)  # again: nothing left to recover, nothing doubled
    assert b"recovered" not in listed.stdout, listed.stdout
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        facts = db.execute(SEGMENT_FACTS).fetchall()
        (by,) = db.execute("SELECT ingest_id FROM segments WHERE sha256 = ?", (gone,)).fetchone()
        first = db.execute("SELECT min(id) FROM ingests").fetchone()[0]
    assert by == first  # recorded for the ingest that stored it
    # Recorded as an ingest of the whole card records it: the same segment facts (times and kind as read then).
    whole = tmp_path / "whole"
    run_cli("init", whole)
    card = gopro_card(tmp_path / "again", hostile=False)
    ingest(card, whole)
    with sqlite3.connect(whole / "catalog.sqlite") as db:
        assert db.execute(SEGMENT_FACTS).fetchall() == facts


def killed_after_noting(tmp_path: Path, *init: str) -> tuple[Path, Path, dict[str, str], dict[str, Path]]:
    """A card's ingest killed after noting its intents, before linking its copies (complete and synced in the
    archive's tmp/). The card, the archive (made with ``init``'s options), each file's digest, and each copy in
    the spool by the file's base name."""
    vol = gopro_card(tmp_path, hostile=False).rename(tmp_path / "GOPRO-CARD")
    arch = tmp_path / "archive"
    assert run_cli("init", arch, *init).returncode == 0
    read = regular_files(vol)
    killed = run_cli("ingest", vol, "--archive", arch, env={"CUSTODES_CRASHPOINT": "after_intent:1"})
    assert killed.returncode == -9, killed.stderr
    spooled = {p.name.split("-", 2)[2]: p for p in (arch / "tmp").iterdir()}  # <pid>-<random>-<file's name>
    assert sorted(spooled) == sorted(os.path.basename(n) for n in ORDINARY), spooled
    return vol, arch, read, spooled


def wiped_and_run_again(vol: Path, arch: Path) -> dict:
    """The card's recordings wiped, then its ingest run again: its --json report."""
    for name in ORDINARY:
        (vol / name).unlink()  # (its driver named: an empty card names none)
    rerun = run_cli("ingest", vol, "--archive", arch, "--driver", "gopro", "--json")
    assert b"Traceback" not in rerun.stderr, rerun.stderr.decode(errors="replace")
    return json.loads(rerun.stdout)


def object_file(arch: Path, sha: str) -> Path:
    return arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def linked_at_its_place(
    tmp_path: Path, vol: Path, arch: Path, name: str, sha: str, link: Callable[[Path, Path], None]
) -> tuple[Path, Path]:
    """A copy of the card's file ``name`` outside the archive, and a link to it (``Path.symlink_to`` or
    ``Path.hardlink_to``) made at its object's place, as by hand: (the copy outside, the place)."""
    outside = tmp_path / "outside.mp4"
    shutil.copy(vol / name, outside)
    place = object_file(arch, sha)
    place.parent.mkdir(parents=True, exist_ok=True)
    link(place, outside)
    return outside, place


def squatted(place: Path, size: int) -> Path:
    """Other bytes of ``size`` put at an object's place, read-only, as by hand."""
    place.parent.mkdir(parents=True, exist_ok=True)
    place.write_bytes(b"\0" * size)
    place.chmod(0o400)
    return place


def test_copies_a_killed_ingest_noted_and_never_linked_are_stored_from_the_spool(tmp_path: Path) -> None:
    """Killed after noting its intents and before linking its copies, which lay complete and synced in tmp/; the
    card then wiped. The re-run's spool sweep removed those copies, the archive's only copy of the footage, and
    then called every file lost (`ingest_failed`: "not in the store"). Each copy whose bytes are those the killed
    ingest noted is stored and recorded for that ingest; one whose bytes changed in the spool is not (swept: it is
    not what the card held), and is that file's `ingest_failed`."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    changed = f"{GOPRO}/phone.mov"
    with open(spooled["phone.mov"], "r+b") as f:  # a byte of one copy changed while it lay there
        f.seek(100)
        f.write(bytes([f.read(1)[0] ^ 1]))
    report = wiped_and_run_again(vol, arch)
    assert sorted(report["recovered"]) == sorted(set(ORDINARY) - {changed}), report
    assert report["failed"] == [changed], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert failed["evidence"] == {"size": (ORDINARY[changed]).stat().st_size, "sha256": read[changed]}
    assert list((arch / "tmp").iterdir()) == []  # nothing left in the spool, the changed copy neither
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        recorded = dict(db.execute("SELECT original_name, sha256 FROM segments").fetchall())
        first = db.execute("SELECT min(id) FROM ingests").fetchone()[0]
        by = {i for (i,) in db.execute("SELECT ingest_id FROM segments")}
    assert recorded == {n: read[n] for n in ORDINARY if n != changed} and by == {first}
    for sha in recorded.values():  # each object's bytes, by an independent tool, are the card's
        stored = arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
        assert subprocess.run(["sha256sum", stored], capture_output=True, text=True).stdout.split()[0] == sha


def test_a_spool_copy_written_before_the_last_boot_is_no_running_process_s(tmp_path: Path) -> None:
    """A killed ingest's copy whose pid a process runs under again (after a power cut and a reboot: here pid 1,
    the copy's time set before the boot): it was kept as that live process's work in flight, the re-run called
    the file lost, and once that process ended the next sweep removed it (a hostile review). Written before the
    system booted, it is no running process's: it is stored and the file recovered."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    reused = spooled["sample.mp4"].with_name("1-" + spooled["sample.mp4"].name.split("-", 1)[1])
    spooled["sample.mp4"].rename(reused)
    os.utime(reused, (1_600_000_000, 1_600_000_000))  # 2020: before any boot of a machine running this test
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [] and sorted(report["recovered"]) == sorted(ORDINARY), report
    assert object_file(arch, read[name]).exists() and not reused.exists()


def test_a_spool_file_is_judged_by_its_process_not_by_its_time(tmp_path: Path) -> None:
    """What a process leaves in tmp/ is named by its pid, start and boot (``process_tag``). Judged by the pid and
    the file's time against the boot (session 13's note): a clock stepped forward after the boot (a station with
    no clock battery reaching NTP) made a live ingest's copies look older than the boot, and another ingest's sweep
    removed them; a file of a dead process whose pid runs again in the same boot (a restarted container) was
    kept for ever. Now a live process's file stays whatever its time; a dead one's goes whatever runs under its
    pid now; a name of an older custodes (``<pid>-``) is still judged by its time. One of another pid namespace (a
    container's) stays while a process is in that namespace, and goes once none is (the tests run as root on the
    host, who sees every process)."""
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    vol = tmp_path / "BWC0003"
    vol.mkdir()
    (vol / "a.bin").write_bytes(b"a recording")
    spool = arch / "tmp"
    container = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sleep", "60"])
    with container, subprocess.Popen(["sleep", "60"]) as alive, subprocess.Popen(["sleep", "0"]) as zombie:
        try:
            container_space = in_its_namespace(container.pid)
            tag = process_tag(alive.pid)
            pid, start, boot, space = tag.split(".")
            _, start_1, _, _ = process_tag(1).split(".")
            assert pid == str(alive.pid) and tag != process_tag(1), tag
            in_flight = spool / f"{tag}-0123456789ab-copy"
            in_flight.write_bytes(b"being written")
            os.utime(in_flight, (1_600_000_000, 1_600_000_000))  # its time before the boot: the clock stepped since
            left = {
                "reused": f"1.{int(start_1) + 1}.{boot}.{space}",  # pid 1 runs: another process
                "another boot": f"{pid}.{start}.00000000.{space}",
                # Ended and not yet waited for by its parent: a zombie's copies were "not in the store" (a review).
                "zombie": process_tag(zombie.pid),
                # A container's process, the container gone (no process of the machine is in its pid namespace):
                # kept for ever before, and its complete copies with it until a reboot (session 14's note).
                "gone container": f"1.{int(start_1) + 1}.{boot}.1_1",
                # Past any pid: no process runs under it (a hostile review: os.kill's OverflowError, a traceback).
                "too large": "2147483648",
                "far too large": f"99999999999999999999.{start}.{boot}.{space}",
            }
            for what, left_by in left.items():
                (spool / f"{left_by}-0123456789ab-copy").write_bytes(what.encode())
            while _state(zombie.pid) != "Z":
                time.sleep(0.01)
            kept = {
                "live": in_flight,
                "older custodes, pid 1 running": spool / "1-0123456789ab-copy",
                # A live container's process: its pid is of another namespace, and nothing here can tell whether it
                # runs (a hostile review: a live ingest in a container lost its copy to a sweep on the host).
                "other namespace": spool / f"1.{int(start_1) + 1}.{boot}.{container_space}-0123456789ab-copy",
                # /proc gives a start relative to the reader's time namespace (unshare -T): not judged either.
                "other time namespace": spool / f"1.{int(start_1) + 1}.{boot}.{space.split('_')[0]}_1-0123-copy",
            }
            # No name of ours, kept (a hostile review: each stopped ingest, repair and the service with a traceback).
            for crafted in ("\u00b2", f"1.\u00b2.{boot}.{space}", "0", f"{pid}.{start}"):
                kept[crafted] = spool / f"{crafted}-0123456789ab-copy"
            for path in kept.values():
                path.touch()
            out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
            assert out.returncode == 1 and b"stored" in out.stdout, out.stderr  # 1: an unregistered device's
            assert sorted(p.name for p in spool.iterdir()) == sorted(p.name for p in kept.values())
        finally:
            alive.kill()
            container.kill()
    os.utime(kept["older custodes, pid 1 running"], (1_600_000_000, 1_600_000_000))  # before the boot: nobody's
    assert run_cli("ingest", vol, "--archive", arch, "--driver", "generic").returncode == 1
    assert sorted(p.name for p in spool.iterdir()) == sorted(
        p.name for what, p in kept.items() if what not in ("live", "older custodes, pid 1 running")
    )


def in_its_namespace(unshared: int) -> str:
    """The namespaces (as ``process_tag`` names them) of the process ``unshare --pid --fork`` (pid ``unshared``)
    runs in a pid namespace of its own, once it runs."""
    deadline = time.monotonic() + 30
    while not (children := Path(f"/proc/{unshared}/task/{unshared}/children").read_text().split()):
        assert time.monotonic() < deadline, "unshare started no process"
        time.sleep(0.01)
    own = process_tag().split(".")[3]
    return "_".join([str(os.stat(f"/proc/{children[0]}/ns/pid").st_ino), *own.split("_")[1:]])


def test_a_killed_ingest_in_a_container_is_recovered_on_the_host_once_the_container_is_gone(tmp_path: Path) -> None:
    """An ingest killed in a container (a pid namespace of its own) after noting its intents: its complete copies
    were kept in tmp/ until a reboot (their process could not be judged from the host), and the host's re-run of
    the wiped card failed every file "not in the store" (session 14's note). Once no process is in that namespace,
    the host's run takes them and records the files (while one is, they are kept: the test above)."""
    vol = gopro_card(tmp_path, hostile=False).rename(tmp_path / "GOPRO-CARD")
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    read = regular_files(vol)
    # Not the namespace's pid 1 (which a SIGKILL from inside it does not end), as an ingest in a container is not.
    in_container = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", '"$@"; exit $?', "sh"]
    killed = subprocess.run(
        [*in_container, sys.executable, "-m", "custodes", "ingest", vol, "--archive", arch],
        env={**os.environ, "CUSTODES_CRASHPOINT": "after_intent:1"},
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode != 0 and b"Traceback" not in killed.stderr, killed.stderr
    spooled = sorted(p.name for p in (arch / "tmp").iterdir())
    assert len(spooled) == len(ORDINARY) and all(
        n.split("-")[0].split(".")[3] != process_tag().split(".")[3] for n in spooled
    )
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [] and sorted(report["recovered"]) == sorted(ORDINARY), report
    assert list((arch / "tmp").iterdir()) == []
    assert all(object_file(arch, read[name]).exists() for name in ORDINARY)
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout


def test_a_killed_ingest_s_copies_in_a_running_container_are_named_by_the_host_s_failures(tmp_path: Path) -> None:
    """The copies of an ingest killed in a container that still runs (its namespace lives: their process cannot
    be judged from the host) are kept, and the host's re-run of the wiped card fails each file naming where its
    bytes lie (it named nothing: session 14's note); once the container is gone, the next run records them."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    container = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sleep", "60"])
    with container:
        try:
            space = in_its_namespace(container.pid)
            moved = {}
            for base, copy in spooled.items():  # as its process in the container named them
                tag, _, rest = copy.name.partition("-")
                moved[base] = copy.rename(copy.with_name(".".join([*tag.split(".")[:3], space]) + "-" + rest))
            report = wiped_and_run_again(vol, arch)
            assert sorted(report["failed"]) == sorted(ORDINARY) and report["recovered"] == [], report
            said = {f["path"]: f["message"] for f in report["findings"] if f["kind"] == "ingest_failed"}
            for name in ORDINARY:
                assert f"a copy of the bytes it read lies at {moved[os.path.basename(name)]}" in said[str(vol / name)]
            assert all(p.exists() for p in moved.values())
        finally:
            container.kill()
    container.wait()
    deadline = time.monotonic() + 30
    while any(in_namespace == space.split("_")[0] for in_namespace in _pid_namespaces()):
        assert time.monotonic() < deadline, "the container's process outlived it"
        time.sleep(0.05)
    again = run_cli("ingest", vol, "--archive", arch, "--driver", "gopro", "--json")
    report = json.loads(again.stdout)
    assert report["failed"] == [] and sorted(report["recovered"]) == sorted(ORDINARY), report
    assert all(object_file(arch, read[name]).exists() for name in ORDINARY)


def _pid_namespaces() -> set[str]:
    """The pid namespaces of the processes whose ns link this test may read."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            found.add(str(os.stat(f"/proc/{pid}/ns/pid").st_ino))
    return found


def _state(pid: int) -> str:
    """A process's state letter (/proc/PID/stat: R, S, Z ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_spool_copy_that_shares_its_file_with_a_name_elsewhere_is_never_stored(tmp_path: Path) -> None:
    """A file at a killed ingest's copy's name in tmp/ that is a hard link to a file outside the archive (the
    card's own, here), with the bytes noted: stored, the object would be that file, changed through its other
    name (a hostile review). Not taken; its name in tmp/ is kept and named, the file outside untouched; the file is
    failed."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    outside = tmp_path / "outside.mp4"
    shutil.copy(vol / name, outside)
    spooled["sample.mp4"].unlink()
    os.link(outside, spooled["sample.mp4"])
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name] and sorted(report["recovered"]) == sorted(set(ORDINARY) - {name}), report
    # Its name in tmp/ is kept now, and named by the failure (a hostile review: such a copy, another account's
    # or linked elsewhere, may be all that is left of the card, and the sweep removed it).
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert f"kept at {spooled['sample.mp4']}" in failed["message"], failed
    assert not object_file(arch, read[name]).exists() and outside.stat().st_nlink == 2
    assert hashlib.sha256(outside.read_bytes()).hexdigest() == read[name]


def test_a_spool_copy_whose_object_s_place_holds_other_bytes_is_kept(tmp_path: Path) -> None:
    """Other bytes of the same size put at a noted object's place before the re-run: the place is never replaced
    (write-once), and the spool's copy of the card's bytes was swept with it, the only copy (a hostile review).
    The copy stays in tmp/; the file is failed, and verify reads the bytes at the place and calls them modified
    (they were `pending`, the archive ok, never read)."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    squatted(object_file(arch, read[name]), (vol / name).stat().st_size)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name], report
    assert [p.name for p in (arch / "tmp").iterdir()] == [spooled["sample.mp4"].name]
    assert hashlib.sha256(spooled["sample.mp4"].read_bytes()).hexdigest() == read[name]
    out = run_cli("verify", arch, "--json")
    found = json.loads(out.stdout)["findings"]
    assert out.returncode == 1 and [(f["kind"], f["object"]) for f in found] == [("modified", read[name])], found
    again = run_cli("ingest", vol, "--archive", arch, "--driver", "gopro")  # and a later sweep keeps it too
    assert again.returncode in (0, 1) and spooled["sample.mp4"].exists(), again.stderr


def test_a_kept_spool_copy_is_named_by_the_failure_and_recorded_once_its_place_is_freed(tmp_path: Path) -> None:
    """The copy kept above was named nowhere, and once what held its place was moved aside the next sweep stored
    it and nothing recorded it (verify: `unrecorded`, for ever; session 13's note): the failure names the copy,
    and the next ingest of the volume records the file for the ingest that read it, as recovered."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    place = squatted(object_file(arch, read[name]), (vol / name).stat().st_size)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert f"a copy of the bytes it read is kept at {spooled['sample.mp4']}" in failed["message"], failed
    assert f"an ingest of {vol} as docked here records the file" in failed["message"], failed
    again = run_cli("ingest", vol, "--archive", arch, "--driver", "gopro", "--json")  # still there: not failed twice
    assert json.loads(again.stdout)["failed"] == [] and spooled["sample.mp4"].exists(), again.stdout
    place.unlink()  # moved aside by a person
    freed = json.loads(run_cli("ingest", vol, "--archive", arch, "--driver", "gopro", "--json").stdout)
    assert freed["recovered"] == [name] and freed["failed"] == [], freed
    assert hashlib.sha256(object_file(arch, read[name]).read_bytes()).hexdigest() == read[name]
    assert list((arch / "tmp").iterdir()) == []
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        (by,) = db.execute("SELECT ingest_id FROM segments WHERE sha256 = ?", (read[name],)).fetchone()
    assert by == 1  # for the ingest that read it
    last = json.loads(run_cli("ingest", vol, "--archive", arch, "--driver", "gopro", "--json").stdout)
    assert last["recovered"] == [] and last["failed"] == [], last  # recorded once


def test_a_link_at_the_object_s_place_keeps_the_spool_copy(tmp_path: Path) -> None:
    """A symbolic link at a noted object's place to a file elsewhere holding the card's bytes: read through the
    link, the place seemed to hold them, and the sweep removed the spool's copy; once that file went, the archive
    had no copy of the footage (a hostile review). A link is no object: the copy is kept and named, and the
    file is failed."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    outside, _ = linked_at_its_place(tmp_path, vol, arch, name, read[name], Path.symlink_to)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert f"kept at {spooled['sample.mp4']}" in failed["message"], failed
    outside.unlink()
    assert hashlib.sha256(spooled["sample.mp4"].read_bytes()).hexdigest() == read[name]


def test_a_kept_copy_stored_from_another_card_meanwhile_is_still_recorded_for_its_own(tmp_path: Path) -> None:
    """The copy kept above, its place freed, and another card holding the same bytes ingested first: that card's
    recording was recorded, and this card's never (only notes of objects nothing recorded were looked at), its
    failure open for good (a hostile review). The re-run records it for this card too; two noting ingests of the
    card killed before make one failure of the file, not two ("2 failed", one file)."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    place = squatted(object_file(arch, read[name]), (vol / name).stat().st_size)
    again = run_cli("ingest", vol, "--archive", arch, env={"CUSTODES_CRASHPOINT": "after_intent:1"})
    assert again.returncode == -9, again.stderr  # a second ingest of the card noted it too, and was killed
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name], report
    place.unlink()
    other = tmp_path / "OTHER"
    other.mkdir()
    shutil.copy(ORDINARY[name], other / "copy.mp4")
    out = run_cli("ingest", other, "--archive", arch, "--driver", "generic", "-o", "device_id=OTHER1")
    assert out.returncode in (0, 1), out.stderr
    freed = run_cli("ingest", vol, "--archive", arch, "--driver", "gopro")
    assert b", 0 failed, 1 recovered" in freed.stdout, freed.stdout
    # Not "stored by an interrupted ingest" (a hostile review): this card's second ingest finished, failing it.
    said = f"recovered {name}: recorded from what an earlier ingest read of it, its bytes in the store"
    assert said.encode() in freed.stdout, freed.stdout
    devices = catalog_rows(arch, "SELECT device_id FROM segments WHERE sha256 = ? ORDER BY device_id", (read[name],))
    assert len(devices) == 2 and ("OTHER1",) in devices, devices


def test_a_hard_link_at_the_object_s_place_is_made_the_store_s_own_before_it_is_recorded(tmp_path: Path) -> None:
    """The card's bytes at a noted object's place as a hard link to a file elsewhere (a restore with `cp -al`):
    the file was recorded from that object, the spool's copy (no note's any more) swept, and an edit of the other
    name changed the evidence (a hostile review). The object is given a file of its own first, as repair does;
    then recorded, and the other name is not the evidence."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    outside, place = linked_at_its_place(tmp_path, vol, arch, name, read[name], Path.hardlink_to)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [] and name in report["recovered"], report
    assert list((arch / "tmp").iterdir()) == [] and place.stat().st_nlink == 1
    outside.write_bytes(b"edited")  # the other name: not the evidence
    assert hashlib.sha256(place.read_bytes()).hexdigest() == read[name]
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout


def test_other_bytes_hard_linked_at_the_object_s_place_fail_the_file_for_its_bytes(tmp_path: Path) -> None:
    """Another file's bytes hard-linked at a noted object's place: the place is not protected, but what matters is
    that it holds other bytes (session 14's note: the failure said only "not protected"). The file fails saying
    so, its copy kept and named; the other file is not touched."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    other = tmp_path / "other.mp4"
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", other)
    before = other.read_bytes()
    place = object_file(arch, read[name])
    place.parent.mkdir(parents=True, exist_ok=True)
    place.hardlink_to(other)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [name], report
    (said,) = [f["message"] for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert "its bytes in the store are not those the ingest read" in said and "not protected" not in said, said
    assert "a copy of the bytes it read is kept at" in said and spooled[os.path.basename(name)].exists()
    assert other.read_bytes() == before


def test_two_recordings_noted_under_one_name_fail_each(tmp_path: Path) -> None:
    """Two killed ingests each noted a different recording under one name (the card formatted between them), and
    neither could be recovered: the re-run failed the name once, so the second recording and its kept copy were
    named nowhere (a hostile review). Each recording is its own failure, with what was read of it."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    squatted(object_file(arch, read[name]), (vol / name).stat().st_size)
    second = FOOTAGE / "encoders" / "go-mp4-sample.mp4"
    (vol / name).unlink()
    shutil.copy(second, vol / name)  # another recording under the same name
    other = hashlib.sha256(second.read_bytes()).hexdigest()
    killed = run_cli("ingest", vol, "--archive", arch, env={"CUSTODES_CRASHPOINT": "after_intent:1"})
    assert killed.returncode == -9, killed.stderr
    squatted(object_file(arch, other), second.stat().st_size)
    report = wiped_and_run_again(vol, arch)
    failed = [f["evidence"]["sha256"] for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert sorted(failed) == sorted([read[name], other]) and report["failed"] == [name, name], report


def test_a_copy_killed_between_its_link_and_the_removal_of_its_spool_name_is_recorded(tmp_path: Path) -> None:
    """Killed after linking a copy into place and before removing its spool name: one file with both names. Taken
    for a copy with a name outside tmp/, it was kept, and its file failed on every re-run with the object
    "not protected" (a hostile review). The spool name is swept and the file recorded from its object."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    spooled["sample.mp4"].chmod(0o400)
    place = object_file(arch, read[name])
    place.parent.mkdir(parents=True, exist_ok=True)
    os.link(spooled["sample.mp4"], place)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [] and sorted(report["recovered"]) == sorted(ORDINARY), report
    assert list((arch / "tmp").iterdir()) == [] and place.stat().st_nlink == 1
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == [], out.stdout


def test_a_file_mounted_at_the_object_s_place_is_never_changed(tmp_path: Path) -> None:
    """Another file system's file bind-mounted at a noted object's place, with the card's bytes, another
    account's: the sweep chown'd and chmod'ed that file (protect), recorded the file from it and swept the copy; once
    unmounted, the evidence was gone (a hostile review). That file is left as it is; the copy is kept and named."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    outside = tmp_path / "elsewhere.mp4"
    shutil.copy(vol / name, outside)
    os.chown(outside, 65534, 65534)
    outside.chmod(0o666)
    place = object_file(arch, read[name])
    place.parent.mkdir(parents=True, exist_ok=True)
    place.touch()
    subprocess.run(["mount", "--bind", str(outside), str(place)], check=True)
    try:
        report = wiped_and_run_again(vol, arch)
        assert report["failed"] == [name], report
        st = outside.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (65534, 0o666)
        assert hashlib.sha256(spooled["sample.mp4"].read_bytes()).hexdigest() == read[name]
    finally:
        subprocess.run(["umount", str(place)], check=True)


def test_a_kept_copy_another_account_owns_is_never_swept(tmp_path: Path) -> None:
    """A kept copy changed to another account's (or left by a killed `sudo` ingest into a service's archive) was
    not the archive's own, so not stored, and the sweep then removed it: the only copy of a wiped card's file (a
    hostile review). It is kept; a person takes it."""
    vol, arch, read, spooled = killed_after_noting(tmp_path)
    name = f"{GOPRO}/sample.mp4"
    place = squatted(object_file(arch, read[name]), (vol / name).stat().st_size)
    assert wiped_and_run_again(vol, arch)["failed"] == [name]
    os.chown(spooled["sample.mp4"], 65534, 65534)
    place.unlink()
    run_cli("ingest", vol, "--archive", arch, "--driver", "gopro")
    assert hashlib.sha256(spooled["sample.mp4"].read_bytes()).hexdigest() == read[name]


def test_a_killed_ingest_s_copies_go_into_the_sound_copy_when_the_other_holds_other_bytes(tmp_path: Path) -> None:
    """With a second copy whose place for a noted object holds other bytes: the spool's copy went nowhere (the
    second copy refused, so the first was not tried), was swept once the re-run had failed the file, and the
    footage was lost (a hostile review). It goes into the first copy; the file is recorded (one sound copy is
    enough), verify names the second copy's bytes, and repair restores them from the first."""
    second = tmp_path / "disk2" / "copy"
    vol, arch, read, _ = killed_after_noting(tmp_path, "--replica", "local", "--replica-option", f"location={second}")
    name = f"{GOPRO}/sample.mp4"
    place = squatted(object_file(second, read[name]), (vol / name).stat().st_size)
    report = wiped_and_run_again(vol, arch)
    assert report["failed"] == [] and sorted(report["recovered"]) == sorted(ORDINARY), report
    assert hashlib.sha256(object_file(arch, read[name]).read_bytes()).hexdigest() == read[name]
    out = run_cli("verify", arch, "--json")
    found = [(f["kind"], f["object"], f.get("copy")) for f in json.loads(out.stdout)["findings"]]
    assert out.returncode == 1 and found == [("modified", read[name], "replica")], found
    set_policy(arch, policy_text(arch) + '[people]\nroot = "custodian"\n')
    assert run_cli("storage", "repair", arch).returncode == 0
    assert run_cli("verify", arch).returncode == 0
    assert hashlib.sha256(place.read_bytes()).hexdigest() == read[name]


def test_an_object_stored_by_an_ingest_that_finished_without_recording_it_is_unrecorded(tmp_path: Path) -> None:
    """The same, but the killed ingest's intent holds no facts to record the file by (as an older custodes wrote
    it): the re-run cannot record it, and verify says so, a failure (exit 1, `unrecorded`, naming the ingest and
    the way on), where it said `pending`, `ok`, for ever (a hostile review)."""
    vol, arch, name, gone = killed_after_linking(tmp_path)
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        db.execute("DELETE FROM ingest_notes WHERE sha256 = ?", (gone,))
    code, report, _ = ingest(vol, arch)
    assert report["recovered"] == [] and sorted(report["stored"] + report["already_present"]) == sorted(
        set(ORDINARY) - {name}
    )
    # The re-run says what it could not finish (exit 1), where it said nothing.
    assert code == 1 and report["failed"] == [f"object {gone}"], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    # "copied", no longer "stored": such a copy may not have reached the store (a hostile review of 2026-12-01)
    assert "copied by ingest 1, which was interrupted before it recorded it" in failed["message"]
    assert f"noted no facts to record object {gone} by" in failed["message"]
    out = run_cli("verify", arch, "--json")
    result = json.loads(out.stdout)
    assert out.returncode == 1 and result["ok"] is False
    (finding,) = result["findings"]
    assert finding["kind"] == "unrecorded" and finding["object"] == gone, finding
    assert "finished without recording it" in finding["message"] and "keep them" in finding["message"]
    assert f"custodes ingest {vol}" in finding["message"]
    # Its bytes changed since: not a recording's possible only copy, but bytes that are not their name's.
    obj = arch / "objects" / "sha256" / gone[:2] / gone[2:4] / gone
    obj.chmod(0o600)
    with obj.open("r+b") as f:
        f.write(b"X")
    obj.chmod(0o400)
    (finding,) = json.loads(run_cli("verify", arch, "--json").stdout)["findings"]
    assert finding["kind"] == "modified" and "is not what its name says" in finding["message"], finding


@pytest.mark.parametrize(
    ("done", "said"),
    [
        ("changed", "its bytes in the store are not those the ingest read"),
        ("link", "the store holds no sound object there (link: "),
        ("fifo", "the store holds no sound object there (special: "),
        ("deleted", "it is not in the store"),
    ],
)
def test_a_killed_ingests_object_not_as_it_read_it_is_not_recovered_and_the_re_run_says_why(
    tmp_path: Path, done: str, said: str
) -> None:
    """Between the kill and the re-run, the object of the file gone from the card was changed in the store,
    replaced by a link to another file or by a FIFO, or deleted (a hostile review): the re-run recorded the
    link's target as the recording, or said ok and nothing (the recording gone without a trace). It records
    none of them, and says which file it could not recover and why (exit 1)."""
    vol, arch, name, gone = killed_after_linking(tmp_path)
    obj = arch / "objects" / "sha256" / gone[:2] / gone[2:4] / gone
    other = tmp_path / "other.mp4"
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", other)
    obj.chmod(0o600)
    if done == "changed":
        with obj.open("r+b") as f:
            f.seek(1000)
            f.write(b"X")
    else:
        obj.unlink()
        if done == "link":
            obj.symlink_to(other)
        elif done == "fifo":
            os.mkfifo(obj)
    code, report, _ = ingest(vol, arch)
    assert code == 1 and report["recovered"] == [] and report["failed"] == [name], report
    (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert failed["path"] == str(vol / name) and said in failed["message"], failed
    rows = catalog_rows(arch, "SELECT count(*) FROM segments WHERE sha256 = ?", (gone,))
    assert rows == [(0,)]  # nothing recorded as the recording


@pytest.mark.parametrize("card", ["GOPRO-CARD", os.fsdecode(b"card \xff'x"), "a\\xffb", "-lead"])
def test_a_card_wiped_whole_is_recovered_by_the_command_pending_names(tmp_path: Path, card: str) -> None:
    """The card wiped of its identity file too before the re-run (a hostile review): the command `pending`
    printed failed (no driver recognises an empty volume), and `--driver generic` read another device (the
    folder's name), finishing nothing, for ever. `pending` names the device and the command that reads it so,
    pasted as it is into a shell: a volume named with bytes that are not UTF-8, a quote, a backslash or a
    leading dash too (a third hostile review: the escaped display name was quoted, which names another folder)."""
    vol, arch, name, gone = killed_after_linking(tmp_path, card=card)
    for entry in vol.iterdir():
        shutil.rmtree(entry)
    result = json.loads(run_cli("verify", arch, "--json").stdout)
    said = {f["message"].rsplit("identity file too: `", 1)[1].removesuffix("`)") for f in result["findings"]}
    (command,) = said  # every pending finding, of an object or of the ingest's entries, gives the one command
    assert command.startswith("custodes ingest ") and " --driver generic" in command, command
    custodes = f'custodes() {{ {shlex.quote(sys.executable)} -m custodes "$@"; }}'
    out = subprocess.run(["bash", "-c", f"{custodes}; {command} --json"], capture_output=True, timeout=300)
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    report = json.loads(out.stdout)
    assert sorted(report["recovered"]) == sorted(ORDINARY), report
    assert run_cli("verify", arch).returncode == 0


def test_a_killed_generic_ingest_is_named_by_one_command(tmp_path: Path) -> None:
    """Run with ``--driver generic`` on a folder whose name is the device, the command for a card wiped whole is
    the command as it was run: `pending` said it twice, "re-run `X` (a card wiped whole since, identity file
    too: `X`)". It says it once, and that command finishes the ingest."""
    arch = build_cli_archive(tmp_path / "archive", people=None)
    vol = tmp_path / "CAM1"
    vol.mkdir()
    shutil.copy(ORDINARY[f"{GOPRO}/sample.mp4"], vol / "sample.mp4")
    killed = run_cli_with_faults(
        "ingest", vol, "--archive", arch, "--driver", "generic", crashpoint="before_checkpoint"
    )
    assert killed.returncode == -9, killed.stderr
    pending = [f for f in json.loads(run_cli("verify", arch, "--json").stdout)["findings"] if f["kind"] == "pending"]
    command = f"custodes ingest {vol} --archive {arch} --driver generic"
    assert pending and all(f"re-run `{command}`" in f["message"] for f in pending), pending
    assert all(f["message"].count(command) == 1 and "wiped whole" not in f["message"] for f in pending), pending
    custodes = f'custodes() {{ {shlex.quote(sys.executable)} -m custodes "$@"; }}'
    out = subprocess.run(["bash", "-c", f"{custodes}; {command}"], capture_output=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr.decode(errors="replace")
    assert run_cli("verify", arch).returncode == 0


def test_a_catalog_rebuilt_while_an_ingest_is_interrupted_keeps_what_finishing_it_needs(tmp_path: Path) -> None:
    """`ledger rebuild-catalog --replace` between the kill and the re-run (a hostile review): the intents and the
    notes were not carried, the objects became `unexpected`, and the re-run on the wiped card said nothing and
    exit 0, the recordings stranded. The rebuilt catalog carries them: the re-run recovers the file."""
    vol, arch, name, gone = killed_after_linking(tmp_path)
    rebuilt = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert rebuilt.returncode in (0, 1), rebuilt.stderr.decode()
    kinds = {f["kind"] for f in json.loads(run_cli("verify", arch, "--json").stdout)["findings"]}
    assert kinds == {"pending"}, kinds
    code, report, _ = ingest(vol, arch)
    assert report["recovered"] == [name], report
    assert run_cli("verify", arch).returncode == 0


def test_a_volume_named_with_bytes_that_are_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    """The ingest's line printed such a volume's name raw, and "no driver recognises" it as ``\\udcff`` (a
    hostile review): both go through the one display rule (``\\xff``)."""
    vol = Path(os.fsdecode(os.fsencode(tmp_path) + b"/card-\xff"))
    vol.mkdir()
    arch = tmp_path / "archive"
    run_cli("init", arch)
    refused = run_cli("ingest", vol, "--archive", arch)
    assert refused.returncode == 2 and b"card-\\xff: no driver recognises this volume" in refused.stderr, refused
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", vol)
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
    line = out.stdout.splitlines()[0]
    assert b"card-\\xff: driver generic" in line and b"\xff" not in line, line


def test_the_run_again_pending_names_is_the_command_the_ingest_was_run_with(tmp_path: Path) -> None:
    """Killed, the card kept: the command `pending` named left out the driver and the options the ingest was run
    with; pasted, it read another device (the folder's name), recorded the footage again under it, and left the
    interrupted ingest unfinished for ever (a hostile review). It is the command as run: the same device."""
    vol = tmp_path / "card"
    vol.mkdir()
    for clip in ("encoders/androidx-sample.mp4", "phones/bt601.mov"):
        shutil.copy(FOOTAGE / clip, vol)
    arch = tmp_path / "archive"
    run_cli("init", arch)
    given = ("--driver", "generic", "-o", "device_id=BWC-7", "-o", "officer_id=0042")
    killed = run_cli("ingest", vol, "--archive", arch, *given, env={"CUSTODES_CRASHPOINT": "after_link:1"})
    assert killed.returncode == -9
    result = json.loads(run_cli("verify", arch, "--json").stdout)
    said = {f["message"].split("re-run `", 1)[1].split("`", 1)[0] for f in result["findings"]}
    (command,) = said
    assert command.endswith("--driver generic -o device_id=BWC-7 -o officer_id=0042"), command
    custodes = f'custodes() {{ {shlex.quote(sys.executable)} -m custodes "$@"; }}'
    out = subprocess.run(["bash", "-c", f"{custodes}; {command} --json"], capture_output=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["device"] == "BWC-7" and len(report["stored"] + report["already_present"]) == 2, report
    assert catalog_rows(arch, "SELECT DISTINCT device_id, officer_id FROM segments") == [("BWC-7", "0042")]
    assert catalog_rows(arch, "SELECT count(*) FROM ingests WHERE finished_ns IS NULL") == [(0,)]
    assert run_cli("verify", arch).returncode == 0


@pytest.mark.parametrize("point", ["after_link:1", "after_commit:1"])
def test_a_recovered_file_has_the_findings_an_ingest_of_the_whole_card_gives_it(tmp_path: Path, point: str) -> None:
    """Recovered after a wipe, the files had no findings at all: no clock_unset, no late_ingest, no gap (the
    volume's reading they came from was gone), and the compliance report counted none (a hostile review). The
    driver's findings of each file are noted with its intent, and the timeline and late-ingest checks take the
    recovered files as the killed ingest read them: the findings are those of an ingest of the whole card. So
    too when the killed ingest had recorded them (after its commit), and only its findings were left to write
    (a second hostile review: they were lost for good)."""
    clips = ("encoders/androidx-sample.mp4", "phones/bt601.mov", "encoders/go-mp4-sample.mp4")

    def card(at: Path) -> Path:
        vol = at / "BWC0042"
        vol.mkdir(parents=True)
        for clip in clips:
            shutil.copy(FOOTAGE / clip, vol)
        return vol

    def found(arch: Path) -> list[tuple[str, str | None]]:
        rows = catalog_rows(
            arch,
            "SELECT f.kind, s.original_name FROM findings f LEFT JOIN segments s ON s.id = f.segment_id "
            "WHERE f.kind != 'ingest_failed' ORDER BY 1, 2",
        )
        return [(k, n) for k, n in rows]

    whole = tmp_path / "whole"
    run_cli("init", whole)
    run_cli("ingest", card(tmp_path / "a"), "--archive", whole, "--driver", "generic")
    vol = card(tmp_path / "b")
    arch = tmp_path / "archive"
    run_cli("init", arch)
    killed = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", env={"CUSTODES_CRASHPOINT": point})
    assert killed.returncode == -9, killed.stderr.decode()
    for clip in vol.iterdir():
        clip.unlink()
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json")
    report = json.loads(out.stdout)
    assert sorted(report["recovered"]) == sorted(os.path.basename(c) for c in clips), report
    expected = found(whole)
    assert {k for k, _ in expected} >= {"clock_unset", "late_ingest", "gap"}, expected  # what the card gives
    assert found(arch) == expected
    assert out.returncode == 1  # findings, as the ingest of the whole card


@pytest.mark.parametrize("damaged", ["first", "second", "both"])
def test_a_file_whose_one_copy_is_damaged_is_recovered_from_the_other(tmp_path: Path, damaged: str) -> None:
    """An archive with a second copy; between the kill and the re-run one copy of the gone file's object is
    damaged. One sound copy is enough to record it (verify then names the damaged copy, which repair restores
    from the other); a changed second copy was taken unread and a deleted one refused (a hostile review). With
    both copies damaged it is not recovered, and the re-run names each copy's fault."""
    second = tmp_path / "disk2" / "copy"
    vol, arch, name, gone = killed_after_linking(
        tmp_path, "--replica", "local", "--replica-option", f"location={second}"
    )
    copies = {"first": arch, "second": second}
    for which in ("first", "second") if damaged == "both" else (damaged,):
        obj = copies[which] / "objects" / "sha256" / gone[:2] / gone[2:4] / gone
        obj.chmod(0o600)
        with obj.open("r+b") as f:
            f.seek(100)
            f.write(b"X")
        obj.chmod(0o400)
    code, report, _ = ingest(vol, arch)
    out = run_cli("verify", arch, "--json")
    found = {(f["kind"], f["copy"], f["object"]) for f in json.loads(out.stdout)["findings"]}
    if damaged == "both":
        assert report["recovered"] == [] and report["failed"] == [name], report
        (failed,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
        assert "the first copy: its bytes in the store are not those" in failed["message"]
        assert "the second copy: its bytes in the store are not those" in failed["message"]
        assert found == {("modified", None, gone), ("modified", "replica", gone)}, found  # bytes not their name's
    else:
        assert report["recovered"] == [name] and report["failed"] == [], report
        assert found == {("modified", None if damaged == "first" else "replica", gone)}, found


def test_the_same_bytes_under_two_names_are_both_recovered(tmp_path: Path) -> None:
    """A card holding one recording under two names (a copy): the intent kept one name only, and the re-run
    after a wipe recorded the first and lost the second without a word (a hostile review). Both are recorded."""
    vol = gopro_card(tmp_path, hostile=False)
    twin = f"{GOPRO}/copy-of-sample.mp4"
    shutil.copy(vol / f"{GOPRO}/sample.mp4", vol / twin)
    arch = tmp_path / "archive"
    run_cli("init", arch)
    killed = run_cli("ingest", vol, "--archive", arch, env={"CUSTODES_CRASHPOINT": "after_link:1"})
    assert killed.returncode == -9, killed.stderr.decode()
    for name in (f"{GOPRO}/sample.mp4", twin):
        (vol / name).unlink()
    code, report, _ = ingest(vol, arch)
    assert sorted(report["recovered"]) == sorted([f"{GOPRO}/sample.mp4", twin]), report
    named = catalog_rows(arch, "SELECT original_name FROM segments ORDER BY original_name")
    assert [n for (n,) in named] == sorted([*ORDINARY, twin])
    assert run_cli("verify", arch).returncode == 0
    # Intents are dropped once their ingest finished with their objects recorded: none is kept for ever.
    assert catalog_rows(arch, "SELECT count(*) FROM ingest_intents") == [(0,)]


def odd_names_volume(root: Path) -> Path:
    """Four copies of one recording (so they overlap) under names that are hard to show on one line."""
    vol = root / "ODDCAM"
    vol.mkdir()
    src = FOOTAGE / "encoders" / "androidx-sample.mp4"
    for name in (b"new\nline.mp4", b"tab\there\r.mp4", b"x\\xff.mp4", b"x\xff.mp4"):
        shutil.copy(src, os.fsencode(vol) + b"/" + name)
    return vol


def test_timeline_findings_and_the_segment_list_show_names_escaped_one_line_each(tmp_path: Path) -> None:
    """Issue 10: an overlap (gap, sequence break) message names its files through the one display rule:
    one finding per line, no raw TAB/CR, and the UTF-8 name x\\xff.mp4 (a backslash) never reads like
    the name with the byte 0xff; so does the segment list of `custodes volume`."""
    vol = odd_names_volume(tmp_path)
    v = str(vol)
    overlaps = [
        f"overlap: [ODDCAM] 2016-05-31T17:01:35Z .. 2016-05-31T17:01:36.024Z: {v}/{after} starts 1.024 s before "
        f"{v}/new\\nline.mp4 ends: one device cannot record twice at once (clock jump or forgery)"
        for after in ("tab\\there\\r.mp4", "x\\\\xff.mp4", "x\\xff.mp4")
    ]
    out = run_cli("timeline", vol)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    lines = out.stdout.decode().splitlines()
    assert [ln for ln in lines if ln.startswith("overlap")] == overlaps
    assert all(ln.split(":", 1)[0] in ("odd_name", "overlap") for ln in lines)  # nothing split over two lines
    assert b"\t" not in out.stdout and b"\r" not in out.stdout and b"\xff" not in out.stdout

    arch = tmp_path / "archive"
    run_cli("init", arch)
    out = run_cli("ingest", vol, "--archive", arch)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    lines = out.stdout.decode().splitlines()
    assert [ln.strip() for ln in lines if ln.strip().startswith("overlap")] == overlaps
    assert all(ln.startswith(("  ", v)) for ln in lines)
    assert b"\t" not in out.stdout and b"\r" not in out.stdout and b"\xff" not in out.stdout

    out = run_cli("volume", vol)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    rows = [ln.split("  video  ")[0].strip() for ln in out.stdout.decode().splitlines() if "  video  " in ln]
    assert rows == ["new\\nline.mp4", "tab\\there\\r.mp4", "x\\\\xff.mp4", "x\\xff.mp4"]
    assert b"\t" not in out.stdout and b"\r" not in out.stdout and b"\xff" not in out.stdout


def gat947_volume(root: Path, identity: str, events: str) -> Path:
    vol = root / "GAT"
    (vol / "DCIM").mkdir(parents=True)
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", vol / "DCIM" / "001234_A123456_20160601010135_0001.MP4")
    (vol / "GAT947_ID.TXT").write_text(identity)
    (vol / "EVENTS.LOG").write_text(events)
    return vol


def test_an_event_whose_time_is_dropped_is_dropped_whole(tmp_path: Path) -> None:
    """An EVENTS.LOG line dated outside the 64-bit ns range: its time is `malformed`, and the event
    (which could neither be placed nor explain a gap) is not kept timeless."""
    vol = gat947_volume(
        tmp_path,
        "product_serial=A123456\n",
        "1677-01-01 00:00:00 device_fault\n2262-12-31 00:00:00 device_fault\n2016-06-01 01:01:00 power_on\n",
    )
    out = run_cli("volume", vol)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    text = out.stdout.decode()
    assert "event None" not in text and "device_fault" not in text.replace("'time' is", "")
    assert [ln.strip() for ln in text.splitlines() if ln.strip().startswith("event ")] == [
        "event 2016-05-31T17:01:00Z power_on"
    ]
    assert text.count(f"malformed: [A123456] {vol}/EVENTS.LOG: driver gat947: event field 'time' is int ") == 2
    report = json.loads(run_cli("volume", "--json", vol).stdout)
    assert report["events"] == [{"time": "2016-05-31T17:01:00Z", "kind": "power_on", "detail": ""}]


def test_an_identity_key_given_twice_is_ambiguous_and_the_first_value_is_kept(tmp_path: Path) -> None:
    vol = gat947_volume(tmp_path, "product_serial=A123456\nproduct_serial=B999999\n", "")
    out = run_cli("volume", vol)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    text = out.stdout.decode()
    assert text.splitlines()[0] == f"{vol}: driver gat947, device A123456"
    assert (
        f"  malformed: [A123456] {vol}/GAT947_ID.TXT: 'product_serial' is given more than once: ambiguous; "
        "the first value is kept"
    ) in text.splitlines()

    card = gopro_card(tmp_path / "g", hostile=False)
    (card / "MISC" / "version.txt").write_text('{"camera serial number":"C1","camera serial number":"C2"}')
    out = run_cli("volume", card)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    text = out.stdout.decode()
    assert text.splitlines()[0] == f"{card}: driver gopro, device C1"
    assert (
        f"  malformed: [C1] {card}/MISC/version.txt: 'camera serial number' is given more than once: ambiguous; "
        "the first value is kept"
    ) in text.splitlines()


def test_gopro_version_txt_that_is_a_folder_is_a_finding(tmp_path: Path) -> None:
    card = gopro_card(tmp_path, hostile=False)
    (card / "MISC" / "version.txt").mkdir()
    out = run_cli("volume", card)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    assert (
        f"  malformed: [GOPRO-CARD] {card}/MISC/version.txt: a folder, not the file GoPro writes; camera type and "
        "serial not read"
    ) in out.stdout.decode().splitlines()


def test_a_fifo_given_as_the_volume_is_refused_not_read_through_its_folder(tmp_path: Path) -> None:
    """click refuses a regular file for VOLUME, but a FIFO went through and its parent folder was read as the
    volume (the whole of /tmp, archives and all; a hostile review)."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "clip.mp4").write_bytes(b"not read")
    out = run_cli("volume", tmp_path / "pipe", "--json")
    assert out.returncode == 2 and out.stdout == b""
    assert b"pipe is not a folder; a device volume is the folder of its files" in out.stderr, out.stderr


def test_a_volume_gone_before_it_is_read_is_said_gone(tmp_path: Path) -> None:
    """A card taken out after the command named it (a hostile review: "not a folder"): the library's reader, which
    ingest calls, says it is gone."""
    from custodes.errors import CustodesError
    from custodes.volumes import read_volume

    with pytest.raises(CustodesError, match=r"GONE: no such folder \(a card taken out, or unmounted\?\)"):
        read_volume(tmp_path / "GONE", "generic")
    (tmp_path / "FILE").write_bytes(b"")
    with pytest.raises(CustodesError, match=r"FILE: not a folder; a device volume is the folder"):
        read_volume(tmp_path / "FILE", "generic")


def test_a_file_that_changes_while_it_is_copied_is_named_by_its_own_name(tmp_path: Path) -> None:
    """A hostile review: a file appended to while ingest copied it was refused, rightly, but named by the descriptor
    ingest held it by ("/proc/self/fd/6: file changed size while being read"). A file whose size says 0 and whose
    reading gives more (a kernel file bind-mounted into the volume, in a mount namespace of the command's own) is
    the same case, every run."""
    arch, vol = tmp_path / "archive", tmp_path / "vol"
    vol.mkdir()
    assert run_cli("init", arch).returncode == 0
    (vol / "clip.mp4").touch()
    script = f'mount --bind /proc/version "{vol / "clip.mp4"}" && exec "$@"'
    command = [sys.executable, "-m", "custodes", "ingest", str(vol), "--archive", str(arch), "--json"]
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *command], capture_output=True)
    assert r.returncode == 1, r.stderr
    failed = [f["message"] for f in json.loads(r.stdout)["findings"] if f["kind"] == "ingest_failed"]
    assert failed == [f"could not copy: {vol / 'clip.mp4'}: file changed size while being read: 0 bytes when "
                      "opened, 1 bytes read, 0 bytes now"], failed  # fmt: skip


def test_a_volume_path_edited_in_the_catalog_is_shown_in_pending_never_a_crash(tmp_path: Path) -> None:
    """The catalog keeps an ingest's volume as text (``\\xNN`` for a byte that is not UTF-8); the command pending
    gives turns it back into the path. A path edited by hand to hold ``\\xzz`` or ``\\x41`` (no byte custodes
    writes so) stopped verify with a traceback (int('zz', 16)), or would have made a byte that is no name's; it
    is kept as written."""
    vol, arch = killed_ingest(tmp_path, "after_link:1")
    edited = f"{vol}\\xzz\\x41"
    with catalog_edit(arch) as conn:
        conn.execute("UPDATE ingests SET volume = ?", (edited,))
    out = run_cli("verify", arch, "--json")
    assert b"Traceback" not in out.stderr, out.stderr
    pending = [f["message"] for f in json.loads(out.stdout)["findings"] if f["kind"] == "pending"]
    assert pending and all(f"custodes ingest {shlex.quote(edited)} --archive" in m for m in pending), pending
