"""The ``local`` storage backend: a write-once, content-addressed object store
in a directory.

Objects live at ``objects/<algorithm>/ab/cd/<digest>`` as read-only files. A
new object is written to ``tmp/`` first, made durable, then linked into place
with ``link(2)``, which refuses to replace anything already there (rename would
silently overwrite), and the new names are synced so they survive a power cut.
Nothing in this class deletes an object except :meth:`LocalStore.purge`,
which the retention workflow calls only after writing a ledger tombstone.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from custodes._durable import fsync_dir, sync_together
from custodes._faults import storage_op
from custodes.errors import CustodesError
from custodes.hookspecs import hookimpl
from custodes.plugins import StorageBackend

_DIGEST = re.compile(r"^[0-9a-f]{32,128}$")


class StoreError(CustodesError):
    """The object store refused an operation (bad digest, overwrite, early delete)."""

    kind = "store"


@dataclass(frozen=True)
class StoredObject:
    algorithm: str
    digest: str
    path: Path
    size: int


class LocalStore:
    def __init__(self, root: Path, algorithm: str = "sha256") -> None:
        self.root = Path(root)
        self.algorithm = algorithm
        self.objects = self.root / "objects" / algorithm
        self._objects = os.fspath(self.objects)
        self.tmp = self.root / "tmp"

    @classmethod
    def open(cls, location: Path, options: Mapping[str, str]) -> LocalStore:
        store = cls(Path(location), options.get("algorithm", "sha256"))
        store.objects.parent.mkdir(mode=0o700, exist_ok=True)
        store.objects.mkdir(mode=0o700, exist_ok=True)
        store.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        return store

    def path_for(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise StoreError(f"not a hex digest: {digest!r}")
        return Path(self.folder_of(digest), digest)

    def folder_of(self, digest: str) -> str:
        """The folder ``digest``'s object belongs in, as a string: verify asks it of every file in the store,
        where building a Path each time would cost more than the rest of the check."""
        return os.path.join(self._objects, digest[:2], digest[2:4])

    def new_temp(self, hint: str) -> Path:
        """A fresh name in the store's own tmp/ (same file system, so linking is atomic)."""
        return self.tmp / f"{os.getpid()}-{os.urandom(6).hex()}-{hint}"

    def put(self, temp: Path, digest: str) -> bool:
        """Move one fully written, durable temp file into place under ``digest`` (see :meth:`put_many`);
        raises the error that stopped it."""
        (outcome,) = self.put_many([(temp, digest)])
        if isinstance(outcome, OSError):
            raise outcome
        return outcome

    def put_many(self, items: list[tuple[Path, str]]) -> list[bool | OSError]:
        """Move fully written, durable temp files into place, each under its digest, and make the new names
        durable together: one sync for the whole group (custodes._durable.sync_together), not two folder
        fsyncs per object.

        Per item: True (stored), False (already stored: an object is never replaced, and the temp is
        removed) or the OSError that stopped it. All or nothing per name: a name this call created is
        removed again when it cannot be made durable, so a failed put never leaves an object that no
        catalog row will ever name (``verify`` would call it unexpected). The temps of the items that
        failed are left for the caller to remove."""
        outcomes: list[bool | OSError] = []
        created: list[Path] = []
        folders: dict[Path, None] = {}
        for temp, digest in items:
            final = self.path_for(digest)
            try:
                for folder in (final.parent.parent, final.parent):
                    if folder not in folders:
                        _make_folder(folder)
                        folders[folder] = None
                os.chmod(temp, stat.S_IRUSR)  # read-only, and for the archive's account alone
                storage_op("write", final)
                try:
                    os.link(temp, final)
                    created.append(final)
                    outcomes.append(True)
                except FileExistsError:
                    outcomes.append(False)
                # Also when the name was there already, its folders are synced: it may be
                # the link of an earlier run that died before its sync, and the catalog is
                # about to rely on it surviving a power cut.
            except OSError as e:
                outcomes.append(e)
        try:
            sync_together(self.objects, list(folders))
        except OSError as e:
            for final in created:
                final.unlink(missing_ok=True)
            return [e if isinstance(o, bool) else o for o in outcomes]
        # The temps' removal is not synced: the objects are durable now, and a
        # temp that a power cut brings back is cleaned by the next ingest.
        for (temp, _), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, bool):
                os.unlink(temp)
        return outcomes

    def stat(self, digest: str) -> os.stat_result | None:
        try:
            return os.stat(self.path_for(digest))
        except FileNotFoundError:
            return None

    def get(self, digest: str) -> Path:
        path = self.path_for(digest)
        if not path.exists():
            raise StoreError(f"object {digest} is not in the store")
        return path

    def list(self) -> Iterator[StoredObject]:
        """Every file under objects/, including strays a verification must flag."""
        for dirpath, _dirs, names in os.walk(self.objects):
            for name in sorted(names):
                p = Path(dirpath) / name
                yield StoredObject(self.algorithm, name, p, p.lstat().st_size)

    def purge(self, digest: str) -> None:
        """Remove an object. Only the retention workflow calls this, after its tombstone is in the ledger."""
        path = self.path_for(digest)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        storage_op("write", path)
        os.unlink(path)
        fsync_dir(path.parent)


def _make_folder(folder: Path) -> None:
    """A folder of the store, made 0700 (``parents=True`` would not), or left as it is."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass


@hookimpl
def custodes_storage_backends() -> list[StorageBackend]:
    return [StorageBackend("local", "write-once content-addressed objects in a local directory", LocalStore.open)]
