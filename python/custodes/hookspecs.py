"""The hooks custodes plugins implement (pluggy project name ``custodes``).

Each hook returns a list of declarative records (see :mod:`custodes.plugins`);
the manager collects them from every plugin, sorts them by name and refuses
two records with the same name. A plugin is a module or object with
``@hookimpl``-decorated functions, published under the entry-point group
``custodes``:

.. code-block:: toml

    [project.entry-points.custodes]
    acme = "custodes_acme"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from custodes.plugins import DeviceDriver, Executor, Reporter, StorageBackend

__all__ = [
    "PROJECT",
    "custodes_device_drivers",
    "custodes_executors",
    "custodes_reporters",
    "custodes_storage_backends",
    "hookimpl",
    "hookspec",
]

#: The pluggy project name, and the entry-point group a plugin is published under.
PROJECT = "custodes"
#: Marks the hook specifications below (custodes' own).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's implementation of a hook: ``@hookimpl def custodes_device_drivers(): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT)
# A hookspec's body never runs (pluggy calls the plugins' implementations): each raises, so the type it returns
# is the plugins' and no caller of the spec itself gets a silent None.


@hookspec
def custodes_device_drivers() -> list[DeviceDriver]:
    """Device drivers this plugin provides: how to read a vendor's device volume.

    Example::

        from custodes.drivers import Driver, VolumeReading
        from custodes.hookspecs import hookimpl
        from custodes.plugins import DeviceDriver

        class AcmeCam(Driver):
            name = "acme"

            def recognise(self, volume):
                return 0.9 if (volume / "ACME.ID").exists() else 0.0

            def read(self, volume, options):
                ...  # -> VolumeReading

        @hookimpl
        def custodes_device_drivers():
            return [DeviceDriver("acme", "ACME body cameras", AcmeCam)]
    """


@hookspec
def custodes_storage_backends() -> list[StorageBackend]:
    """Storage backends for the write-once object store. ``open(location, options)`` gives an object keeping the
    contract of :class:`custodes.storage.ObjectStore` (bytes, never paths: ``put_many`` from spool files with
    the caller's digests, ``put_stream``, ``open`` whole or ranged, ``stat``, ``list`` in digest order with the
    problems it sees, ``hash_objects``, ``lock`` (retention and legal hold) where the storage enforces them,
    ``purge`` after a tombstone, ``restore`` and ``protect`` for a repair, ``guarantees`` probed, ``spec`` to
    reopen it on a cluster's worker). ``location`` is the archive's folder (its spool is ``location/tmp``);
    ``options`` the policy's ``[storage]`` (or ``[replica]``) table. ``tests/test_storage_contract.py`` is the
    contract's test suite; ``plugins/custodes-s3`` a whole backend.

    Example::

        @hookimpl
        def custodes_storage_backends():
            return [StorageBackend("vault", "ACME evidence vault", open=VaultStore.connect)]
    """


@hookspec
def custodes_reporters() -> list[Reporter]:
    """Report formats: each renders a list of findings (and summaries) to a file.

    Example::

        @hookimpl
        def custodes_reporters():
            return [Reporter("ndjson", "one finding per line", "application/x-ndjson", ".ndjson",
                             render=lambda report, out: ...)]
    """


@hookspec
def custodes_executors() -> list[Executor]:
    """Executors that run a list of independent work shards (verification slices); the contract is
    :class:`custodes.plugins.Executor`'s: ``run(fn, shards, options)`` yields ``(index, result)`` per shard.

    Example::

        @hookimpl
        def custodes_executors():
            return [Executor("ray", "a Ray cluster", run=run_on_ray, remote=True)]
    """
