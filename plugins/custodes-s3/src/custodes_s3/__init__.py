"""custodes storage backend ``s3``: write-once objects in an S3 bucket with Object Lock. See README.md.

``[storage] backend = "s3"`` with ``bucket`` (and ``endpoint``, ``prefix``, ``region``, ``retention_mode``,
``profile``) in the archive's policy; credentials from the environment or the named AWS profile only.
:class:`~custodes_s3.store.S3Store` keeps the contract of :class:`custodes.storage.ObjectStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes.hookspecs import hookimpl
from custodes.plugins import StorageBackend

if TYPE_CHECKING:
    from custodes_s3.store import S3ObjectError, S3Store

__all__ = ["S3ObjectError", "S3Store", "custodes_storage_backends"]

__version__ = "0.1.0"

# custodes loads every installed plugin to learn its backends, for every archive command; botocore, which the
# store needs, takes some 30 ms to import (a tenth of verifying 20,000 small objects on a local disk). So the
# store's module is imported when an archive on s3 is opened or its options are checked, not when the plugin is
# registered (tests/test_s3_backend.py::test_registering_the_plugin_imports_no_botocore).


def _connect(location: Path, options: Mapping[str, str]) -> S3Store:
    from custodes_s3.store import S3Store

    return S3Store.connect(location, options)


def _check_options(options: Mapping[str, str]) -> dict[str, str]:
    from custodes_s3.store import check_options

    return check_options(options)


def __getattr__(name: str) -> Any:
    if name in ("S3ObjectError", "S3Store"):
        from custodes_s3 import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def custodes_storage_backends() -> list[StorageBackend]:
    return [
        StorageBackend(
            "s3",
            "write-once objects in an S3 bucket with Object Lock (retention, legal hold)",
            _connect,
            _check_options,
        )
    ]
