"""custodes storage backend ``s3``: write-once objects in an S3 bucket with Object Lock. See README.md.

``[storage] backend = "s3"`` with ``bucket`` (and ``endpoint``, ``prefix``, ``region``, ``retention_mode``,
``profile``) in the archive's policy; credentials from the environment or the named AWS profile only.
:class:`~custodes_s3.store.S3Store` keeps the contract of :class:`custodes.storage.ObjectStore`.
"""

from __future__ import annotations

from custodes.hookspecs import hookimpl
from custodes.plugins import StorageBackend
from custodes_s3.store import S3ObjectError, S3Store, check_options

__all__ = ["S3ObjectError", "S3Store", "custodes_storage_backends"]

__version__ = "0.1.0"


@hookimpl
def custodes_storage_backends() -> list[StorageBackend]:
    return [
        StorageBackend(
            "s3",
            "write-once objects in an S3 bucket with Object Lock (retention, legal hold)",
            S3Store.connect,
            check_options,
        )
    ]
