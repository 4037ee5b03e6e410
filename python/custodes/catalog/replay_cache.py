"""A verifier's own replay of an archive's ledger, kept between runs (``verify --incremental``).

Verify replays the whole ledger into a fresh catalog and compares it with the live one (catalog.replay): about
30-60 µs an entry, most of a verification of many small objects and of the compliance report at 10^6 entries.
The replay of a ledger's first *n* entries is the same every time, so a verifier may keep it, as a transparency
log's monitor keeps the last tree head it checked, and replay only the entries appended since.

What the kept replay rests on, and what it does not:

- It is **the verifier's own**: a file in the verifier's cache folder (``$XDG_CACHE_HOME/custodes/replay``, else
  ``~/.cache/custodes/replay``; folders 0700, files 0600, refused when another account owns them or can write
  them), never in the archive: whoever can edit the archive's catalog cannot edit it, unless they are the
  verifier. An auditor who wants no state carried between runs runs without ``--incremental``.
- Each entry it holds was **hashed as it was replayed**, and the replay is kept only up to a checkpoint whose
  signed root those very hashes give (the verifier checked the checkpoint's signature in the same run): the
  entries replayed are the signed ones, whatever the catalog's ledger said between two runs.
- Entries after the latest signed checkpoint (an ingest in flight) are replayed too, with their leaf hashes kept
  beside the replay: the next run requires the ledger to hold exactly those entries there still, else it starts
  again from nothing.
- It is used only when the run's own ledger checks found nothing (every entry matches its leaf, every signed
  root is the ledger's), and is keyed by this custodes' version and schema: another version replays afresh.
- A kept replay that is wrong (damaged, edited by its owner) can only make rows look different: every difference
  is checked again by a full replay (catalog.replay.compare), which names its entries; if the full replay finds
  none, the kept replay is thrown away.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import __version__, merkle
from custodes.catalog import replay
from custodes.catalog.schema import SCHEMA_VERSION
from custodes.errors import CustodesError

if TYPE_CHECKING:
    from custodes.catalog import Catalog

__all__ = ["Kept", "ReplayCacheError", "cache_folder", "compare_kept"]

#: What a kept replay was made by: a replay made by another custodes (other handlers, another schema) is not used.
MADE_BY = f"custodes {__version__}, catalog schema {SCHEMA_VERSION}, kept replay 1"
#: The kept replay's own record, beside the replayed tables (never a fact table: the comparison never reads it).
META_TABLE = "replay_kept"


class ReplayCacheError(CustodesError):
    """The cache folder cannot be trusted or used (another account's, writable by others, a link)."""


class _Stale(Exception):
    """The kept replay does not fit the ledger any more: it is made again from nothing."""


def cache_folder() -> Path:
    """Where kept replays live: ``$XDG_CACHE_HOME/custodes/replay``, else ``~/.cache/custodes/replay``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "custodes" / "replay"


def _own_folder(folder: Path) -> None:
    """``folder`` made (0700) where missing, and refused unless it is a real folder of this account that no one
    else can write: a kept replay is trusted as the verifier's own, so nobody else may be able to replace it."""
    try:
        os.makedirs(folder.parent.parent, 0o700, exist_ok=True)
        for part in (folder.parent, folder):
            with suppress(FileExistsError):
                os.mkdir(part, 0o700)
    except OSError as e:
        raise ReplayCacheError(f"{folder}: cannot be made ({e.strerror}): kept replays are not used") from None
    for part in (folder.parent, folder):
        st = os.lstat(part)
        if not stat.S_ISDIR(st.st_mode):
            raise ReplayCacheError(f"{part}: not a folder (a link?): kept replays are not used")
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ReplayCacheError(
                f"{part}: owned by another account or writable by others (mode {stat.S_IMODE(st.st_mode):o}): "
                "kept replays are not used; make it yours alone (chmod 700)"
            )


@dataclass
class _Meta:
    made_by: str = MADE_BY
    signed: int = 0  # entries [0, signed) replayed, covered by a signed root the verifier checked
    frontier: list[bytes] = field(default_factory=list)  # the Merkle frontier at ``signed``
    tail: bytes = b""  # the leaf hashes of the entries replayed after ``signed``, back to back
    failed: list[tuple[int, str]] = field(default_factory=list)
    unknown: dict[str, int] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)  # indexes the replay is still without

    @property
    def applied(self) -> int:
        return self.signed + len(self.tail) // 32

    def to_text(self) -> str:
        return json.dumps(
            {
                "made_by": self.made_by,
                "signed": self.signed,
                "frontier": [base64.b64encode(h).decode() for h in self.frontier],
                "tail": base64.b64encode(self.tail).decode(),
                "failed": self.failed,
                "unknown": self.unknown,
                "deferred": self.deferred,
            }
        )

    @classmethod
    def from_text(cls, text: str) -> _Meta:
        d = json.loads(text)
        return cls(
            d["made_by"],
            int(d["signed"]),
            [base64.b64decode(h) for h in d["frontier"]],
            base64.b64decode(d["tail"]),
            [(int(i), str(why)) for i, why in d["failed"]],
            {str(k): int(v) for k, v in d["unknown"].items()},
            [str(c) for c in d["deferred"]],
        )


@dataclass
class Kept:
    """A kept replay as a run used it: where it is kept, how many entries it already held and how many the run
    replayed into it."""

    path: Path
    held: int
    replayed: int

    def to_json(self) -> dict[str, Any]:
        return {"kept": str(self.path), "held": self.held, "replayed": self.replayed}

    def discard(self) -> None:
        """Thrown away (it named a difference a full replay did not): the next run makes it again."""
        _remove(self.path)


def _remove(path: Path) -> None:
    """A kept replay gone, with its write-ahead log and index (a log left behind could be applied to the next
    file made under the name)."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with suppress(FileNotFoundError):
            name.unlink()


def _file_for(live: Catalog, archive_id: str) -> Path:
    """One kept replay per archive, by its id and its place (two copies of one archive are two ledgers)."""
    where = os.fsencode(os.path.realpath(live.path))
    name = hashlib.sha256(archive_id.encode() + b"\0" + where).hexdigest()[:32]
    return cache_folder() / f"{name}.sqlite"


def _open(path: Path) -> tuple[Catalog, _Meta]:
    """The kept replay at ``path``, or a new empty one (made without its non-unique indexes, as a scratch is)."""
    from custodes.catalog import Catalog

    if path.exists():
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ReplayCacheError(f"{path}: not a file of this account alone: kept replays are not used")
        fresh = Catalog.open(path, migrate=False)
        try:
            _pragmas(fresh)
            (text,) = replay._conn(fresh).execute(f"SELECT meta FROM {META_TABLE}").fetchone()  # noqa: SLF001
            meta = _Meta.from_text(text)
            if meta.made_by != MADE_BY:
                raise _Stale(meta.made_by)
        except (sqlite3.Error, ValueError, KeyError, TypeError, _Stale):
            fresh.close()
            _remove(path)
        else:
            replay.defer_indexes(fresh, meta.deferred)
            return fresh, meta
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    fresh = Catalog.open(path)
    _pragmas(fresh)
    conn = replay._conn(fresh)  # noqa: SLF001
    conn.execute(f"CREATE TABLE {META_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), meta TEXT NOT NULL)")
    replay.defer_indexes(fresh)
    meta = _Meta(deferred=replay.deferred_indexes(fresh))
    conn.execute(f"INSERT INTO {META_TABLE} (id, meta) VALUES (1, ?)", (meta.to_text(),))
    return fresh, meta


def _pragmas(fresh: Catalog) -> None:
    conn = replay._conn(fresh)  # noqa: SLF001
    conn.execute("PRAGMA synchronous=NORMAL")  # kept, so a crash must not tear it: a write-ahead log
    conn.execute(f"PRAGMA cache_size=-{replay.SCRATCH_CACHE_KIB}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA foreign_keys=OFF")  # as in any replay: an older entry's row may name one adopted later


def _signed_entries(live: Catalog, meta: _Meta, signed: dict[int, bytes], new: _Meta) -> Iterator[tuple[int, bytes]]:
    """The ledger's entries after those ``meta`` holds, each hashed as it goes by: at every size with a signed
    root the hashes so far must give it (:class:`_Stale` otherwise), and ``new`` keeps the last such size, its
    frontier and the hashes after it."""
    acc = merkle.Accumulator.resume(meta.signed, meta.frontier)
    # The kept entries must be under a signed root of this ledger: one at the size kept (checked here) or past it
    # (checked as the entries after it go by). A ledger whose checkpoints all stop short of it (an archive put
    # back from an older copy, or another archive's ledger at the same place) does not fit it.
    if max(signed, default=0) < meta.signed:
        raise _Stale(f"no checkpoint this run checked reaches the {meta.signed} entries kept")
    if meta.signed in signed and acc.root() != signed[meta.signed]:
        raise _Stale(f"the {meta.signed} entries kept do not give their signed root")
    tail = bytearray()

    def passed(leaf: bytes) -> None:
        acc.extend(leaf)
        tail.extend(leaf)
        root = signed.get(acc.size)
        if root is not None:
            if acc.root() != root:
                raise _Stale(f"the first {acc.size} entries do not give their signed root")
            new.signed, new.frontier = acc.size, acc.frontier()
            tail.clear()

    # The entries replayed after the last signed root before must be the ledger's still.
    held = meta.applied
    for i in range(meta.signed, held):
        passed(meta.tail[(i - meta.signed) * 32 : (i - meta.signed + 1) * 32])
    seen = meta.signed
    for index, (seq, data) in enumerate(live.ledger.entries(meta.signed), start=meta.signed):
        if seq != index:
            raise _Stale(f"ledger entry {index} is gone")
        seen = index + 1
        leaf = merkle.leaf_hash(data)
        if index < held:
            if leaf != meta.tail[(index - meta.signed) * 32 : (index - meta.signed + 1) * 32]:
                raise _Stale(f"ledger entry {index} is not the one replayed before")
            continue
        passed(leaf)
        yield seq, data
    if seen < held:
        raise _Stale("the ledger is shorter than the replay kept of it")
    new.tail = bytes(tail)


def compare_kept(
    live: Catalog, archive_id: str, signed: dict[int, bytes]
) -> tuple[replay.Replay, list[replay.Difference], Kept] | None:
    """:func:`custodes.catalog.replay.compare` with the verifier's kept replay of ``live``'s ledger: brought up to
    the ledger (only the entries after it replayed) and compared with the live catalog in one snapshot of it.
    ``signed``: the size and root of every checkpoint whose signature this run checked and whose root it found
    the ledger giving. None when no kept replay can be used this run (made by another custodes, or the ledger
    no longer extends it: it is made again by the next run; another run holding it): the caller replays whole.
    A cache folder that is not the verifier's own raises :class:`ReplayCacheError`."""
    _own_folder(cache_folder())
    path = _file_for(live, archive_id)
    try:
        fresh, meta = _open(path)
    except (FileExistsError, sqlite3.Error):  # another run is making it, or it cannot be read: not this time
        return None
    try:
        # Brought up once on its own (the bulk of the entries), then again inside the snapshot the comparison
        # reads, so that what an ingest commits meanwhile is in both or in neither.
        first = _brought_up(live, fresh, meta, signed)
        then = None
        if first is not None:
            with replay.attached_to(live, fresh), live.snapshot():
                then = _brought_up(live, fresh, first[1], signed)
                if then is not None:
                    made = then[0]
                    found = replay.differences(live, fresh, made)
    finally:
        fresh.close()
    if then is None:  # the ledger no longer extends it: made again from nothing by the next run
        _remove(path)
        return None
    kept = Kept(path, meta.applied, then[1].applied - meta.applied)
    if not found:
        return made, found, kept
    # Every difference is named by a full replay (which records the entries that wrote each row): it is the
    # answer, and if it finds none, the kept replay was wrong and goes.
    with replay.scratch(live) as named, live.snapshot():
        made = replay.replay(live, named)
        found = replay.differences(live, named, made)
    if not found:
        kept.discard()
    return made, found, kept


def _brought_up(
    live: Catalog, fresh: Catalog, meta: _Meta, signed: dict[int, bytes]
) -> tuple[replay.Replay, _Meta] | None:
    """The entries after those ``meta`` holds applied to ``fresh`` and the new record of it committed with them;
    None (nothing committed) when the ledger no longer extends what was kept."""
    made = replay.Replay(dict(meta.unknown), list(meta.failed), written_by=False)
    new = _Meta(signed=meta.signed, frontier=meta.frontier)
    try:
        with live.snapshot(), fresh.transaction():
            replay.apply_entries(_signed_entries(live, meta, signed, new), fresh, made)
            new.failed, new.unknown, new.deferred = made.failed, made.unknown, replay.deferred_indexes(fresh)
            replay._conn(fresh).execute(f"UPDATE {META_TABLE} SET meta = ?", (new.to_text(),))  # noqa: SLF001
    except _Stale:
        return None
    return made, new
