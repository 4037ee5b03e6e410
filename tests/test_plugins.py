"""The plugin system: loading, steering, failure, and a third-party vendor."""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

import pytest

from custodes import hookspecs
from custodes.hookspecs import hookimpl
from custodes.plugins import DeviceDriver, DuplicatePluginError, PluginManager, Reporter, UnknownPluginError
from custodes.volumes import read_volume
from footage import T0, make_clip
from helpers import install_plugin, run_cli

HOOKS = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("custodes_")]
THIS_FILE = Path(__file__).read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_an_example_and_tested(hook: str) -> None:
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert "Example::" in doc and "@hookimpl" in doc, f"{hook} needs a docstring with a runnable example"
    assert THIS_FILE.count(f"def {hook}(") >= 1, f"{hook} needs a test implementing it here"


class FakeVendor:
    """A plugin implementing every hook, as a tiny vendor would."""

    @hookimpl
    def custodes_device_drivers(self):
        from custodes.builtin.generic import GenericDriver

        class Acme(GenericDriver):
            name = "acme"

            def recognise(self, volume):
                return 0.95 if (volume / "ACME.ID").exists() else 0.0

        return [DeviceDriver("acme", "ACME cameras", Acme)]

    @hookimpl
    def custodes_storage_backends(self):
        from custodes.builtin.storage import LocalStore
        from custodes.plugins import StorageBackend

        return [StorageBackend("acme-vault", "ACME vault", LocalStore.connect)]

    @hookimpl
    def custodes_reporters(self):
        return [Reporter("acme-txt", "plain text", "text/plain", ".txt", lambda report, out: out.write(b"ok"))]

    @hookimpl
    def custodes_executors(self):
        from custodes.plugins import Executor

        def run(fn, shards, options):
            return ((i, fn(shard, options.workers)) for i, shard in enumerate(shards))

        return [Executor("acme-serial", "one at a time", run, remote=False)]


def test_builtins_and_a_registered_plugin() -> None:
    pm = PluginManager(use_entry_points=False, extra=[("acme", FakeVendor())])
    assert pm.drivers.names() == ["acme", "generic"]
    assert pm.storage_backends.names() == ["acme-vault", "local"]
    assert pm.reporters.names() == ["acme-txt", "csv", "html", "json", "pdf"]
    from custodes.plugins import ExecutorOptions

    serial = pm.executors.get("acme-serial").run(lambda x, threads: (x * 2, threads), [1, 2], ExecutorOptions(3))
    assert list(serial) == [(0, (2, 3)), (1, (4, 3))]
    info = {p.name: p for p in pm.plugins()}
    assert info["acme"].provides["drivers"] == ["acme"] and not info["acme"].builtin
    assert info["generic"].builtin and info["generic"].hooks == ["custodes_device_drivers"]
    with pytest.raises(UnknownPluginError, match="no driver named 'nope'"):
        pm.drivers.get("nope")


def test_block_and_allow_lists() -> None:
    blocked = PluginManager(
        environ={"CUSTODES_BLOCK_PLUGINS": "generic, reporters, report-pages"}, use_entry_points=False
    )
    assert blocked.drivers.names() == [] and blocked.reporters.names() == []
    only = PluginManager(environ={"CUSTODES_PLUGINS": "local-storage"}, use_entry_points=False)
    assert [p.name for p in only.plugins()] == ["local-storage"]


def test_broken_plugin_is_reported_and_skipped() -> None:
    class Broken:
        @hookimpl
        def custodes_reporters(self):
            raise RuntimeError("vendor bug")

    pm = PluginManager(use_entry_points=False, extra=[("broken", Broken())])
    assert pm.reporters.names() == ["csv", "html", "json", "pdf"]
    assert [(p.plugin, "vendor bug" in p.message) for p in pm.problems] == [("broken", True)]


def test_duplicate_names_are_a_clear_error() -> None:
    class Impostor:
        @hookimpl
        def custodes_device_drivers(self):
            return [DeviceDriver("generic", "a second generic", object)]

    with pytest.raises(DuplicatePluginError, match="'generic' is provided by both 'generic' and 'impostor'"):
        PluginManager(use_entry_points=False, extra=[("impostor", Impostor())])


def test_installed_plugins_are_listed_by_the_cli() -> None:
    out = run_cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    drivers = {d for p in report["plugins"] for d in p["provides"].get("drivers", [])}
    assert drivers >= {"generic", "gat947", "gopro", "dji"}
    names = {p["name"]: p for p in report["plugins"]}
    assert names["gat947"]["version"] == "0.1.0" and not names["gat947"]["builtin"]
    assert names["local-storage"]["provides"] == {"storage": ["local"]}
    assert names["reporters"]["provides"] == {"reporters": ["csv", "json"]}


def test_third_party_plugin_through_an_entry_point(tmp_path: Path) -> None:
    """A vendor package installed the ordinary way: a module plus dist-info with an entry point.
    custodes is not changed; only the import path knows about it."""
    site = tmp_path / "site"
    install_plugin(
        site,
        "fakevendor",
        version="1.2.3",
        module="""
        from custodes.builtin.generic import GenericDriver
        from custodes.hookspecs import hookimpl
        from custodes.plugins import DeviceDriver

        class FakeCam(GenericDriver):
            name = "fakecam"
            def recognise(self, volume):
                return 1.0 if (volume / "FAKECAM.TXT").exists() else 0.0
            def read(self, volume, options):
                reading = super().read(volume, {**options, "device_id": (volume / "FAKECAM.TXT").read_text().strip()})
                reading.driver = self.name
                reading.findings = [f for f in reading.findings if not f.path.endswith("FAKECAM.TXT")]
                return reading

        @hookimpl
        def custodes_device_drivers():
            return [DeviceDriver("fakecam", "a tiny fake vendor", FakeCam)]
    """,
    )
    vol = tmp_path / "card"
    make_clip(vol / "CLIP0001.mp4", T0)
    (vol / "FAKECAM.TXT").write_text("FAKE-42\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    import subprocess

    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "custodes", "plugins", "--json"], env=env, capture_output=True, check=True
        ).stdout
    )
    fake = next(p for p in listed["plugins"] if p["name"] == "fakevendor")
    assert fake["version"] == "1.2.3" and fake["provides"] == {"drivers": ["fakecam"]}
    used = subprocess.run(
        [sys.executable, "-m", "custodes", "volume", "--json", str(vol)], env=env, capture_output=True
    )
    reading = json.loads(used.stdout)
    assert (reading["driver"], reading["identity"]["device_id"]) == ("fakecam", "FAKE-42")
    blocked = subprocess.run(
        [sys.executable, "-m", "custodes", "volume", "--json", str(vol)],
        capture_output=True,
        env={**env, "CUSTODES_BLOCK_PLUGINS": "fakevendor"},
    )
    assert json.loads(blocked.stdout)["driver"] == "generic"


def test_unknown_driver_and_unrecognised_volume_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no footage here")
    assert run_cli("volume", tmp_path).returncode == 2
    assert run_cli("volume", tmp_path, "--driver", "nonesuch").returncode == 2
    assert b"no driver named 'nonesuch'" in run_cli("timeline", tmp_path, "--driver", "nonesuch").stderr


def test_driver_is_chosen_by_confidence(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    make_clip(vol / "001234_BWC0001_20240301180000_0001.MP4", T0)
    assert read_volume(vol).driver == "gat947"
    assert read_volume(vol, "generic").driver == "generic"


def test_a_volume_no_driver_recognises_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    """A volume of files no driver knows (not media by their names): one line naming the drivers and the way on,
    --driver (a hostile review: the line said no "what to do"); with --driver generic its files are stored."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "data.bin").write_bytes(b"x" * 100)
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    out = run_cli("ingest", vol, "--archive", arch)
    line = out.stderr.decode()
    assert out.returncode == 2 and line.count("\n") == 1 and "no driver recognises this volume" in line, line
    assert "name one with --driver (generic takes every file of any volume)" in line
    stored = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "--json")
    assert stored.returncode in (0, 1) and json.loads(stored.stdout)["stored"] == ["data.bin"], stored.stderr


def test_a_storage_plugin_of_an_older_contract_is_a_clear_error(tmp_path: Path) -> None:
    """A backend whose store lacks a name of the storage contract (here ``spool_is_object``, which the contract
    gained after the plugin was written) is named with what it lacks when the archive is opened; before, ingest
    stopped on an AttributeError."""
    site = tmp_path / "site"
    install_plugin(
        site,
        "oldvault",
        version="0.9",
        module="""
        import os

        from custodes.builtin.storage import LocalStore
        from custodes.hookspecs import hookimpl
        from custodes.plugins import StorageBackend

        VARIANT = os.environ.get("OLDVAULT", "old")

        class OldStore:
            backend = "oldvault"
            put_many = None if VARIANT == "uncallable" else LocalStore.put_many

            def __init__(self, store):
                self._store = store

            def __getattr__(self, name):
                if VARIANT == "broken":
                    raise RuntimeError("the vault's driver is broken")
                if name == "spool_is_object":
                    raise AttributeError(name)
                return getattr(self._store, name)

        def opened(location, options):
            if VARIANT == "offline":
                raise ConnectionRefusedError(111, "Connection refused")
            if VARIANT == "none":
                return None
            return OldStore(LocalStore.connect(location, options))

        @hookimpl
        def custodes_storage_backends():
            return [StorageBackend("oldvault", "a vault of last year", opened)]
    """,
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    made = run_cli("init", "--storage", "oldvault", tmp_path / "archive", env=env)
    assert b"Traceback" not in made.stderr and made.returncode == 2, made.stderr.decode()
    assert made.stderr.decode().splitlines() == [
        "custodes: storage backend 'oldvault' (plugin 'oldvault') gave a store without spool_is_object of the "
        "storage contract (custodes.storage.ObjectStore): upgrade the plugin"
    ]
    # What else a plugin can do wrong, at init and when an archive made by it is opened (a second review: tracebacks).
    said = {
        "offline": "could not open the store at {}: ConnectionRefusedError: [Errno 111] Connection refused",
        "none": "gave no store: upgrade or remove the plugin",
        "uncallable": "gave a store without spool_is_object, put_many (not callable) of the storage contract",
        "broken": "could not open the store at {}: RuntimeError: the vault's driver is broken",
    }
    for variant, words in said.items():
        failed = run_cli("init", "--storage", "oldvault", tmp_path / variant, env={**env, "OLDVAULT": variant})
        assert b"Traceback" not in failed.stderr and failed.returncode == 2, (variant, failed.stderr.decode())
        (line,) = failed.stderr.decode().splitlines()
        assert words.format(tmp_path / variant) in line, (variant, line)
