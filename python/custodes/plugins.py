"""Plugin records and the typed manager facade over pluggy.

Built-in plugins (:data:`DEFAULT_PLUGINS`) are registered through the same
path as third-party ones from the ``custodes`` entry-point group. Two
environment variables steer loading: ``CUSTODES_BLOCK_PLUGINS`` (names not to
load) and ``CUSTODES_PLUGINS`` (when set, only these load). A plugin that
fails to import or whose hook raises is reported in :attr:`PluginManager.problems`
and skipped; two records of one kind with the same name are an error.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import pluggy

from custodes import hookspecs
from custodes.errors import CustodesError

__all__ = [
    "DEFAULT_PLUGINS",
    "DeviceDriver",
    "DuplicatePluginError",
    "Executor",
    "ExecutorError",
    "ExecutorOptions",
    "PluginInfo",
    "PluginManager",
    "PluginProblem",
    "Reporter",
    "StorageBackend",
    "UnknownPluginError",
    "plugin_manager",
]

#: (plugin name, module) of the plugins that ship inside custodes.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("generic", "custodes.builtin.generic"),
    ("local-storage", "custodes.builtin.storage"),
    ("reporters", "custodes.builtin.reporters"),
    ("report-pages", "custodes.builtin.report_html"),
    ("local-executor", "custodes.builtin.executors"),
)
BLOCK_ENV = "CUSTODES_BLOCK_PLUGINS"
ALLOW_ENV = "CUSTODES_PLUGINS"


class DuplicatePluginError(CustodesError):
    """Two plugins provide a driver/backend/reporter/executor of the same name."""

    kind = "duplicate_plugin"


class UnknownPluginError(CustodesError, LookupError):
    """A driver/backend/reporter/executor name no loaded plugin provides."""

    kind = "unknown_plugin"


@dataclass(frozen=True)
class DeviceDriver:
    """A device driver: ``factory()`` gives a :class:`custodes.drivers.Driver`."""

    name: str
    description: str
    factory: Callable[[], Any]


@dataclass(frozen=True)
class StorageBackend:
    """A write-once object store: ``open(location, options)`` gives the store; ``check(options)``, where the
    backend has one, refuses options it could not work with (StoreError naming the option) without opening or
    creating anything: ``init`` and ``policy set`` ask it before a policy naming them is kept."""

    name: str
    description: str
    open: Callable[[Path, Mapping[str, str]], Any]
    check: Callable[[Mapping[str, str]], Any] | None = None


@dataclass(frozen=True)
class Reporter:
    """A report format: ``render(report, out)`` writes ``report`` to binary ``out``."""

    name: str
    description: str
    media_type: str
    extension: str
    render: Callable[[Any, IO[bytes]], None]


@dataclass(frozen=True)
class ExecutorOptions:
    """Where an executor runs shards: ``workers`` (local: threads hashing at once; dask: the workers of a
    ``LocalCluster`` started for the run) and ``scheduler`` (the address of a running cluster, for example
    ``tcp://10.0.0.5:8786``; None: the executor decides, dask starts a ``LocalCluster`` on loopback)."""

    workers: int | None = None
    scheduler: str | None = None


class ExecutorError(CustodesError):
    """An executor could not run a shard: its cluster cannot be reached, or the shard failed on every retry."""

    kind = "executor"


#: The work function an executor runs: ``fn(shard, threads)`` returns the shard's result; ``threads`` is how
#: many threads the shard may use where it runs (the local executor gives it every worker, a cluster one
#: thread per task, its parallelism being the cluster's own).
ShardFn = Callable[[Any, "int | None"], Any]


@dataclass(frozen=True)
class Executor:
    """Runs a work function over independent shards (verification's slices of an archive).

    ``run(fn, shards, options)`` yields ``(index, result)`` for every shard exactly once, in the order they
    finish; ``index`` is the shard's position in ``shards``. The contract, for a Ray or Spark plugin as much as
    for the two that ship:

    - ``shards`` is an iterable made as the run goes (an archive of 10^7 objects is thousands of shards): take
      the next one only when there is room for it, a few per worker in flight, never the whole list at once.

    - ``fn`` is a module-level function and the shards plain data, so both pickle; ``fn`` is idempotent, so a
      shard whose worker died is simply run again (somewhere else) and only its last result is yielded.
    - A shard that fails on every retry, or a cluster that cannot be reached, raises :class:`ExecutorError`
      naming the shard or the address; nothing is yielded twice.
    - Closing the generator early (a verify whose budget is spent) cancels the shards not yet finished and
      stops whatever the executor started for the run (a ``LocalCluster``); a cluster given by address is
      left running.
    - ``remote``: results come from other processes or machines. The caller trusts none of them alone:
      verify checks that each result covers exactly its shard's objects and compares every digest with the
      catalog itself, and re-hashes here any object a remote worker says is bad before reporting it.
    """

    name: str
    description: str
    run: Callable[[ShardFn, Iterable[Any], ExecutorOptions], Iterator[tuple[int, Any]]]
    remote: bool = True


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded (``hook`` None) or whose ``hook`` raised or gave refused records, and
    why."""

    plugin: str
    message: str
    hook: str | None = None


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: its name, version, the hooks it implements and the records it provides, by kind."""

    name: str
    version: str | None
    builtin: bool
    hooks: list[str]
    provides: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "provides": self.provides,
        }


R = TypeVar("R", DeviceDriver, StorageBackend, Reporter, Executor)

_KINDS: dict[str, str] = {
    "drivers": "custodes_device_drivers",
    "storage": "custodes_storage_backends",
    "reporters": "custodes_reporters",
    "executors": "custodes_executors",
}


class _Registry(Generic[R]):
    def __init__(self, kind: str, records: dict[str, tuple[str, R]]) -> None:
        self.kind = kind
        self._records: dict[str, tuple[str, R]] = records  # annotated: mypy infers none for a constrained R

    def names(self) -> list[str]:
        return sorted(self._records)

    def get(self, name: str) -> R:
        try:
            return self._records[name][1]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownPluginError(
                f"no {self.kind} named {name!r} (known: {known}; see `custodes plugins`)"
            ) from None

    def __iter__(self) -> Iterator[R]:
        return (self._records[n][1] for n in self.names())

    def provider(self, name: str) -> str:
        return self._records[name][0]


class PluginManager:
    """Loads plugins once and answers typed questions about what they provide."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        use_entry_points: bool = True,
        extra: Iterable[tuple[str, object]] = (),
    ) -> None:
        env = os.environ if environ is None else environ
        self._blocked = _names(env.get(BLOCK_ENV, ""))
        allow = env.get(ALLOW_ENV)
        self._allowed = _names(allow) if allow is not None else None
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self._builtin: set[str] = set()
        self._versions: dict[str, str | None] = {}
        for name, module in DEFAULT_PLUGINS:
            self._register(name, partial(importlib.import_module, module), None, builtin=True)
        if use_entry_points:
            for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
                self._register(ep.name, ep.load, _version(ep))
        for name, obj in extra:
            self._register(name, partial(_given, obj), None)
        self._registries = {kind: self._collect(kind, hook) for kind, hook in _KINDS.items()}

    def _register(self, name: str, load: Callable[[], object], version: str | None, builtin: bool = False) -> None:
        if name in self._blocked or (self._allowed is not None and name not in self._allowed):
            return
        if self._pm.has_plugin(name):
            raise DuplicatePluginError(f"two plugins are named {name!r}; uninstall one of them")
        try:
            plugin = load()
            self._pm.register(plugin, name=name)
        except Exception as e:  # a broken plugin must not take custodes down with it
            self.problems.append(PluginProblem(name, f"failed to load: {type(e).__name__}: {e}"))
            return
        if builtin:
            self._builtin.add(name)
            from custodes import __version__

            version = __version__
        self._versions[name] = version

    def _collect(self, kind: str, hook: str) -> _Registry[Any]:
        records: dict[str, tuple[str, Any]] = {}
        for impl in getattr(self._pm.hook, hook).get_hookimpls():
            plugin = self._pm.get_name(impl.plugin) or "?"
            try:
                provided = list(impl.function() or [])
            except Exception as e:
                self.problems.append(PluginProblem(plugin, f"{hook} failed: {type(e).__name__}: {e}", hook))
                continue
            for record in provided:
                if record.name in records:
                    other = records[record.name][0]
                    raise DuplicatePluginError(
                        f"{kind[:-1] if kind != 'storage' else 'storage backend'} {record.name!r} is provided by both "
                        f"{other!r} and {plugin!r}; block one with {BLOCK_ENV}={plugin}"
                    )
                records[record.name] = (plugin, record)
        return _Registry(kind.rstrip("s") if kind != "storage" else "storage backend", records)

    def is_builtin(self, plugin: str) -> bool:
        """Whether ``plugin`` (a name :meth:`_Registry.provider` gives) is one of custodes' own."""
        return plugin in self._builtin

    @property
    def driver_problems(self) -> list[PluginProblem]:
        """The problems that may have cost a driver: a plugin that failed to load (it may have provided
        one) or whose ``custodes_device_drivers`` raised."""
        return [p for p in self.problems if p.hook in (None, _KINDS["drivers"])]

    @property
    def drivers(self) -> _Registry[DeviceDriver]:
        return self._registries["drivers"]

    @property
    def storage_backends(self) -> _Registry[StorageBackend]:
        return self._registries["storage"]

    @property
    def reporters(self) -> _Registry[Reporter]:
        return self._registries["reporters"]

    @property
    def executors(self) -> _Registry[Executor]:
        return self._registries["executors"]

    def plugins(self) -> list[PluginInfo]:
        out = []
        for name, plugin in sorted(self._pm.list_name_plugin()):
            provides = {
                kind: [n for n in reg.names() if reg.provider(n) == name] for kind, reg in self._registries.items()
            }
            hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or [])
            out.append(
                PluginInfo(
                    name,
                    self._versions.get(name),
                    name in self._builtin,
                    hooks,
                    {k: v for k, v in provides.items() if v},
                )
            )
        return out


def _given(obj: object) -> object:
    """The loader of a plugin object given as it is (``extra``)."""
    return obj


def _names(text: str) -> set[str]:
    return {n.strip() for n in text.split(",") if n.strip()}


def _version(ep: EntryPoint) -> str | None:
    return ep.dist.version if ep.dist is not None else None


@cache
def plugin_manager() -> PluginManager:
    """The process-wide manager, loaded on first use."""
    return PluginManager()
