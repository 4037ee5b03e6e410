"""The driver kit (issue 17): declared options, non-recording files, failing loudly, and the conformance suite
on the bundled drivers, on the Acme example plugin, and on a deliberately broken driver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from custodes.testing.conformance import CHECKS, check_driver
from footage import T0, at, make_clip
from helpers import DATA, FOOTAGE, catalog_rows, one_line_error, run_cli

ACME = DATA / "custodes-acme"
ACME_SAMPLE = ACME / "tests" / "sample" / "ACME-CAM"
SHANGHAI = {"tz": "Asia/Shanghai"}


def install(site: Path, module: str, source: str | None, entry_points: str, version: str = "1.0") -> None:
    """A distribution as pip leaves it: the module (unless it is elsewhere on the path) and its dist-info."""
    if source is not None:
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(textwrap.dedent(source))
    dist = site / f"{module}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(entry_points)


def env_with(*paths: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([*map(str, paths), *sys.path])}


def install_acme(site: Path) -> list[Path]:
    """The example plugin installed from its own pyproject.toml's entry points; the import path it needs."""
    eps = tomllib.loads((ACME / "pyproject.toml").read_text())["project"]["entry-points"]["custodes"]
    install(site, "custodes_acme", None, "[custodes]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()), "1.0.0")
    return [site, ACME / "src"]


def gat947_volume(root: Path) -> Path:
    vol = root / "BWC0001"
    make_clip(vol / "001234_BWC0001_20240301180000_0001.MP4", T0)  # 18:00 in Shanghai is 10:00 UTC
    make_clip(vol / "001234_BWC0001_20240301180010_0002IMP.MP4", at(10))
    (vol / "GAT947_ID.TXT").write_text("product_serial=BWC0001\nofficer_number=001234\nunit_number=110000000000\n")
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:05:00\nstation_time=2024-03-01T10:05:00Z\n")
    (vol / "EVENTS.LOG").write_text("2024-03-01 18:00:05 battery_low 15%\n")
    return vol


def gopro_volume(root: Path) -> Path:
    vol = root / "GOPRO"
    (vol / "DCIM" / "100GOPRO").mkdir(parents=True)
    (vol / "MISC").mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", vol / "DCIM" / "100GOPRO" / "GH010001.MP4")
    (vol / "DCIM" / "100GOPRO" / "GH010001.THM").write_bytes(b"\xff\xd8thumb\xff\xd9")
    (vol / "MISC" / "version.txt").write_text('{"camera type":"HERO5 Black","camera serial number":"C3131",}')
    return vol


def dji_volume(root: Path) -> Path:
    vol = root / "DRONE"
    vol.mkdir()
    shutil.copy(FOOTAGE / "drones" / "mavic_air2.srt", vol / "DJI_0004.SRT")
    make_clip(vol / "DJI_0004.MP4", datetime(2022, 5, 1, 15, 1, 58, tzinfo=UTC), 1.0)
    return vol


def volume_json(vol: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = run_cli("volume", "--json", vol, *args, env=env)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


# ---- the conformance suite -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "make", "options"),
    [
        ("generic", lambda tmp: FOOTAGE, {}),
        ("gat947", gat947_volume, SHANGHAI),
        ("gopro", gopro_volume, {}),
        ("dji", dji_volume, {}),
    ],
)
def test_the_bundled_drivers_pass_the_conformance_suite(tmp_path: Path, driver: str, make, options) -> None:
    vol = make(tmp_path)
    assert check_driver(driver, vol, options) == []


def acme_drivers() -> tuple[type, type]:
    """The example's driver and its broken copy, imported from the example's source folder."""
    sys.path.insert(0, str(ACME / "src"))
    try:
        from custodes_acme import AcmeDriver
        from custodes_acme.broken import BrokenAcmeDriver
    finally:
        sys.path.remove(str(ACME / "src"))
    return AcmeDriver, BrokenAcmeDriver


def test_a_broken_driver_fails_the_suite_with_clear_messages(tmp_path: Path) -> None:
    AcmeDriver, BrokenAcmeDriver = acme_drivers()
    vol = tmp_path / "ACME-CAM"
    shutil.copytree(ACME_SAMPLE, vol)
    problems = check_driver(BrokenAcmeDriver, vol, SHANGHAI)
    # (contract: the local times it leaves unconverted end its recordings before they start, which ingest's own
    # check of a reading names too since 2026-12-01)
    assert sorted({p.check for p in problems}) == [
        "accounted",
        "contract",
        "hostile",
        "no_writes",
        "options_declared",
        "times",
    ]
    text = [str(p) for p in problems]
    assert [t for t in text if t.startswith("contract:")] and all(
        "not a time not before its start" in t for t in text if t.startswith("contract:")
    ), text
    assert "no_writes: the driver added 1 entr(ies) to the volume: .acme-cache" in text
    assert "options_declared: read reads option(s) 'fast' not declared in accepted_options" in text
    assert (
        "times: DCIM/ACME_20240301180000_0001.MP4: start 2024-03-01T18:00:00Z (from the name) is +08:00 from the "
        "container's UTC time 2024-03-01T10:00:00Z: a local time not converted to UTC? (read it in the device's "
        "zone, option tz)"
    ) in text
    assert (
        "accounted: 1 file(s) neither a segment, a sidecar, a non-recording, skipped noise nor named by a finding: "
        "ACME.LOG (list them in non_recordings, or report them as unknown_file)"
    ) in text
    (raised,) = [t for t in text if t.startswith("hostile: read raised")]
    assert "UnicodeEncodeError" in raised and "at broken.py:" in raised and "non-UTF-8 name" in raised
    # the good driver, on the same kind of copy: nothing
    from_sample = tmp_path / "again" / "ACME-CAM"
    shutil.copytree(ACME_SAMPLE, from_sample)
    assert check_driver(AcmeDriver, from_sample, SHANGHAI) == []


def test_the_suite_catches_lost_scan_findings_bad_confidence_and_undocumented_options(tmp_path: Path) -> None:
    AcmeDriver, _ = acme_drivers()

    class Forgetful(AcmeDriver):
        accepted_options = {"event_log": ""}

        def recognise(self, volume):
            return 2

        def read(self, volume, options):
            reading = super().read(volume, options)
            reading.findings = [f for f in reading.findings if f.kind not in ("symlink", "not_regular_file")]
            return reading

    problems = [str(p) for p in check_driver(Forgetful, ACME_SAMPLE, SHANGHAI)]
    hostile = [p for p in problems if p.startswith("hostile: ")]
    assert problems[:2] == [
        "options_declared: accepted_options['event_log'] must map a key to a one-line meaning, not ''",
        f"recognise: recognise returned 2 on {ACME_SAMPLE}, not a number from 0 to 1",
    ]
    assert hostile[0].startswith("hostile: recognise returned 2 on ")
    assert hostile[1:] == [
        "hostile: the scan's findings about DCIM/conformance-escape.mp4, DCIM/conformance-pipe.mp4 (links, FIFOs, "
        "unreadable entries) are not in the reading: pass scan_volume's findings on"
    ]
    assert len(problems) == 4


def test_the_acme_vendor_runs_the_suite_in_its_own_ci(tmp_path: Path) -> None:
    """The example plugin's own tests, run in its own project as its vendor's CI would, the plugin installed."""
    paths = install_acme(tmp_path / "site")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", ACME / "pyproject.toml", ACME],
        capture_output=True,
        env={**os.environ, **env_with(*paths)},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout.decode()
    assert f"{len(CHECKS) + 1} passed" in out.stdout.decode()
    runner = subprocess.run(
        [
            sys.executable,
            "-m",
            "custodes.testing.conformance",
            "--driver",
            "acme",
            "-o",
            "tz=Asia/Shanghai",
            ACME_SAMPLE,
        ],
        capture_output=True,
        env={**os.environ, **env_with(*paths)},
    )
    assert (runner.returncode, runner.stdout, runner.stderr) == (0, b"", b"acme: 0 problem(s) in 9 checks\n")
    unknown = subprocess.run(
        [sys.executable, "-m", "custodes.testing.conformance", "--driver", "nope", ACME_SAMPLE], capture_output=True
    )
    assert unknown.returncode == 2 and unknown.stderr.startswith(b"custodes: no driver named 'nope'")


# ---- declared options ----------------------------------------------------------------------------


def test_unknown_options_are_refused_naming_the_driver_and_the_known_keys(tmp_path: Path) -> None:
    vol = gat947_volume(tmp_path)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    known = (
        "clock_tolerance, device_id, kind, model, naming, officer_id, officer_name, serial, tz, unit_id, unit_name, "
        "vendor"
    )
    for command in (["volume", vol], ["timeline", vol], ["ingest", vol, "--archive", arch]):
        line = one_line_error(run_cli(*command, "-o", "foo=bar"), "takes no option")
        assert line == f"custodes: driver gat947 takes no option 'foo' (known: {known})"
    assert catalog_rows(arch, "SELECT count(*) FROM segments") == [(0,)]
    # a key one driver declares is another's unknown key
    assert volume_json(vol, "-o", "naming={officer}_{device}_{time}_{seq}{imp}.{ext}")["driver"] == "gat947"
    one_line_error(
        run_cli("volume", vol, "--driver", "generic", "-o", "naming=x"), r"driver generic takes no option 'naming'"
    )


# ---- non-recording files -------------------------------------------------------------------------


def test_the_bundled_drivers_list_their_non_recording_files(tmp_path: Path) -> None:
    gat = gat947_volume(tmp_path)
    assert volume_json(gat)["non_recordings"] == [
        {"name": "DOCKCLOCK.TXT", "role": "log"},
        {"name": "EVENTS.LOG", "role": "log"},
        {"name": "GAT947_ID.TXT", "role": "identity"},
    ]
    text = run_cli("volume", gat).stdout.decode()
    assert "  GAT947_ID.TXT  identity (not a recording)\n" in text
    assert "  device times read in Asia/Shanghai (driver)\n" in text  # as ingest says it (hostile review)
    assert volume_json(gopro_volume(tmp_path))["non_recordings"] == [
        {"name": "DCIM/100GOPRO/GH010001.THM", "role": "thumbnail"},
        {"name": "MISC/version.txt", "role": "identity"},
    ]
    assert volume_json(dji_volume(tmp_path))["non_recordings"] == [{"name": "DJI_0004.SRT", "role": "sidecar"}]
    arch = tmp_path / "archive"
    run_cli("init", arch)
    stored = json.loads(run_cli("ingest", gat, "--archive", arch, "--json").stdout)["stored"]
    assert sorted(stored) == [
        "001234_BWC0001_20240301180000_0001.MP4",
        "001234_BWC0001_20240301180010_0002IMP.MP4",
        "DOCKCLOCK.TXT",
        "EVENTS.LOG",
        "GAT947_ID.TXT",
    ]


def test_the_bundled_sample_footage_is_read_by_the_generic_driver() -> None:
    """tests/data/footage (the Quickstart's volume) holds two loose DJI sidecars among phone and camera files:
    not a drone's card, so the dji driver does not claim it."""
    reading = volume_json(FOOTAGE)
    assert reading["driver"] == "generic"
    assert reading["choice"] == {"driver": "generic", "confidence": 0.1, "runner_up": None, "recognise_failed": []}


# ---- failing loudly ------------------------------------------------------------------------------

BROKEN_IMPORT = """
import acme_sdk_that_is_not_installed
"""

FLAKY = """
from custodes.builtin.generic import GenericDriver
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver


class Boom(GenericDriver):
    name = "boom"

    def recognise(self, volume):
        raise RuntimeError("vendor bug in recognise")


class Twin(GenericDriver):
    name = "twin"

    def recognise(self, volume):
        return 0.55 if any(p.name.endswith("_0001.MP4") for p in volume.iterdir()) else 0.0

    def read(self, volume, options):
        return {}["no such key"]


@hookimpl
def custodes_device_drivers():
    return [DeviceDriver("boom", "recognise raises", Boom), DeviceDriver("twin", "a close runner-up", Twin)]
"""


def test_a_driver_plugin_that_fails_to_load_stops_the_automatic_choice(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "custodes_brokenvendor", BROKEN_IMPORT, "[custodes]\nbrokenvendor = custodes_brokenvendor\n")
    env = env_with(site)
    vol = gat947_volume(tmp_path)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    why = (
        "custodes: plugin brokenvendor: failed to load: ModuleNotFoundError: No module named "
        "'acme_sdk_that_is_not_installed'; no driver is chosen while a plugin is broken: fix or uninstall it, "
        "block it with CUSTODES_BLOCK_PLUGINS=brokenvendor, or name the driver with --driver"
    )
    for command in (["ingest", vol, "--archive", arch], ["volume", vol], ["timeline", vol]):
        assert one_line_error(run_cli(*command, env=env), "brokenvendor") == why
    assert catalog_rows(arch, "SELECT count(*) FROM segments") == [(0,)]
    named = run_cli("ingest", vol, "--archive", arch, "--driver", "gat947", "--json", env=env)
    assert named.returncode in (0, 1), named.stderr
    assert json.loads(named.stdout)["driver"] == "gat947" and len(json.loads(named.stdout)["stored"]) == 5
    blocked = run_cli("volume", vol, "--json", env={**env, "CUSTODES_BLOCK_PLUGINS": "brokenvendor"})
    assert json.loads(blocked.stdout)["driver"] == "gat947"
    # the conformance suite, asked for the broken vendor's driver, says why it is not there (hostile review)
    suite = subprocess.run(
        [sys.executable, "-m", "custodes.testing.conformance", "--driver", "brokenvendor", str(vol)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert suite.returncode == 2 and suite.stdout == ""
    assert (
        "plugin brokenvendor: failed to load: ModuleNotFoundError: No module named 'acme_sdk_that_is_not_installed'"
        in (suite.stderr)
    )


def test_a_raising_recognise_counts_as_zero_and_a_close_runner_up_is_shown(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "custodes_flaky", FLAKY, "[custodes]\nflaky = custodes_flaky\n")
    env = env_with(site)
    vol = gat947_volume(tmp_path)
    reading = volume_json(vol, env=env)
    assert reading["driver"] == "gat947" and len(reading["segments"]) == 2
    assert reading["choice"] == {
        "driver": "gat947",
        "confidence": 0.9,
        "runner_up": None,
        "recognise_failed": [{"driver": "boom", "error": "RuntimeError: vendor bug in recognise"}],
    }
    (vol / "GAT947_ID.TXT").unlink()  # known by its names only: 0.6, the twin 0.55
    text = run_cli("volume", vol, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[1:3] == [
        "  driver gat947 chosen with confidence 0.60; runner-up twin 0.55 (close: name one with --driver)",
        "  driver boom: recognise failed (RuntimeError: vendor bug in recognise); counted as 0",
    ]
    # the twin's read raises: a finding naming the driver, the error and where, the files still there
    twin = volume_json(vol, "--driver", "twin", env=env)
    (failed,) = [f for f in twin["findings"] if f["kind"] == "malformed"]
    assert failed["path"] == str(vol) and failed["message"].startswith(
        "driver twin failed reading the volume (KeyError: 'no such key', at __init__.py:"
    )
    # ingest shows the same choice, beside the zone the device's times were read in
    arch = tmp_path / "archive"
    assert run_cli("init", arch, env=env).returncode == 0
    ingest = run_cli("ingest", vol, "--archive", arch, env=env)
    assert ingest.returncode == 1, ingest.stderr  # late_ingest: the clips are from 2024
    lines = ingest.stdout.decode().splitlines()
    assert lines[1:4] == [
        "  driver gat947 chosen with confidence 0.60; runner-up twin 0.55 (close: name one with --driver)",
        "  driver boom: recognise failed (RuntimeError: vendor bug in recognise); counted as 0",
        "  device times read in Asia/Shanghai (driver)",
    ]
    # a volume no confident driver knows, while one's recognise is broken: nothing is chosen (hostile review:
    # generic, at 0.1, took a card whose own driver had raised, and filed it under the folder's name)
    plain = tmp_path / "ACME-CAM"
    plain.mkdir()
    (plain / "ACME.ID").write_text("serial=AC123\n")
    shutil.copy(Path(__file__).parent / "data" / "footage" / "phones" / "bt601.mov", plain / "CLIP0001.MOV")
    for command in (["volume", plain], ["ingest", plain, "--archive", arch]):
        refused = run_cli(*command, env=env)
        assert refused.returncode == 2 and refused.stdout == b"", refused.stderr
        assert refused.stderr.decode() == (
            "custodes: driver boom: recognise failed (RuntimeError: vendor bug in recognise); the best of the others "
            "is generic with confidence 0.10, too unsure to choose while a driver that may know the volume is "
            "broken: fix that driver, or name one with --driver\n"
        )
    named = run_cli("volume", plain, "--driver", "generic", env=env)
    assert named.returncode == 1, named.stderr  # ACME.ID: a file generic does not know


def test_a_clock_tolerance_that_is_no_tolerance_is_refused(tmp_path: Path) -> None:
    # Hostile review: inf crashed with a traceback, and -5 made every file a name_time_mismatch "+0 s apart".
    vol = gat947_volume(tmp_path)
    for bad in ("inf", "-5", "nan", "1e6", "soon"):
        out = run_cli("volume", vol, "-o", f"clock_tolerance={bad}")
        assert out.returncode == 2 and out.stdout == b"", out.stderr
        assert out.stderr.decode() == (
            f"custodes: option clock_tolerance: {bad!r} is not a number of seconds from 0 to 86400\n"
        )
    assert run_cli("volume", vol, "-o", "clock_tolerance=0.5").returncode == 0


def test_a_driver_finding_without_a_device_is_about_the_volume_s_device(tmp_path: Path) -> None:
    # Hostile review: a driver's own findings (an unreadable log line) named no device, so the query API's
    # `findings(device=...)` left them out.
    vol = gat947_volume(tmp_path)
    (vol / "NOTES.TXT").write_text("not a recording\n")
    reading = volume_json(vol, "--driver", "generic")
    assert reading["findings"] and {f["device"] for f in reading["findings"]} == {reading["identity"]["device_id"]}


def test_an_offset_no_clock_keeps_and_an_option_given_twice_are_refused(tmp_path: Path) -> None:
    # Hostile review: +23:00 was taken as a zone, and `-o tz=+08:00 -o tz=UTC` silently read in UTC.
    vol = gat947_volume(tmp_path)
    for bad in ("+23:00", "-13:00", "+14:01"):
        out = run_cli("volume", vol, "-o", f"tz={bad}")
        assert out.returncode == 2 and b"is out of range (-12:00 to +14:00" in out.stderr, out.stderr
    for good in ("+14:00", "-12:00", "+05:45"):
        assert run_cli("volume", vol, "-o", f"tz={good}").returncode == 1  # accepted: the names then disagree
    twice = run_cli("volume", vol, "-o", "tz=+08:00", "-o", "tz=UTC")
    assert twice.returncode == 2 and b"tz given twice, as '+08:00' and 'UTC'" in twice.stderr, twice.stderr
    assert run_cli("volume", vol, "-o", "tz=+08:00", "-o", "tz=+08:00").returncode == 0  # the same, twice: one
