"""A verifier's own replay of an archive's ledger, kept between runs (``verify --incremental``).

Verify replays the whole ledger into a fresh catalog and compares it with the live one (catalog.replay): about
30-60 µs an entry, most of a verification of many small objects and of the compliance report at 10^6 entries.
The replay of a ledger's first *n* entries is the same every time, so a verifier may keep it, as a transparency
log's monitor keeps the last tree head it checked, and replay only the entries appended since.

What the kept replay rests on, and what it does not:

- It is **the verifier's own**: a file in the verifier's cache folder (``$XDG_CACHE_HOME/custodes/replay``, else
  ``~/.cache/custodes/replay``; folders 0700, files 0600, refused when another account owns them or can write
  them or a folder above them that is not sticky), never in the archive (a cache folder inside it is refused):
  whoever can edit the archive's catalog cannot edit it, unless they are the verifier. Through the archive
  service none is kept (verify.py): it would be the archive account's. An auditor who wants no state carried
  between runs runs without ``--incremental``.
- Each entry it holds was **hashed as it was replayed**, and the replay is kept only up to a checkpoint whose
  signed root those very hashes give (the verifier checked the checkpoint's signature in the same run): the
  entries replayed are the signed ones, whatever the catalog's ledger said between two runs.
- Entries after the latest signed checkpoint (an ingest in flight) are replayed too, with their leaf hashes kept
  beside the replay: the next run requires the ledger to hold exactly those entries there still; one edited or
  gone is :class:`Rewritten` (the verifier saw it: proof of an edit, said every run like a rollback).
- A ledger that does not extend the signed checkpoint the kept replay holds (rolled back, put back from an older
  copy, rewritten) is :class:`RolledBack`: a finding every run, the kept replay left as it is, until the
  verifier removes it to accept the ledger as it now is (a monitor that meets a shorter log keeps what it saw).
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
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import __version__, merkle
from custodes._durable import file_kind, problems_above
from custodes.catalog import replay
from custodes.catalog.schema import SCHEMA_VERSION
from custodes.errors import CustodesError
from custodes.findings import shown_name

if TYPE_CHECKING:
    from custodes.catalog import Catalog

__all__ = ["Damaged", "Kept", "ReplayCacheError", "Rewritten", "RolledBack", "cache_folder", "compare_kept"]

#: What a kept replay was made by: a replay made by another custodes (other handlers, another schema) is not used.
MADE_BY = f"custodes {__version__}, catalog schema {SCHEMA_VERSION}, kept replay 1"
#: The kept replay's own record, beside the replayed tables (never a fact table: the comparison never reads it).
META_TABLE = "replay_kept"


class ReplayCacheError(CustodesError):
    """The cache folder cannot be trusted or used (another account's, writable by others, a link)."""


class _Stale(Exception):
    """The kept replay does not fit the ledger any more: it is made again from nothing."""


class RolledBack(ReplayCacheError):
    """The ledger does not extend the signed checkpoint the verifier's kept replay holds: rolled back, put back
    from an older copy, or rewritten. The kept replay is left as it is (a monitor that meets a shorter log keeps
    what it saw), so every run says so until the verifier removes it."""


class Rewritten(ReplayCacheError):
    """An entry the verifier's kept replay replayed on an earlier run, one no checkpoint signed yet (an ingest in
    flight), is not in the ledger as it was: edited or removed since. The verifier saw it, so that is proof of an
    edit, not a reason to start again: said every run, the kept replay left as it is, until the verifier removes
    it. ``index``: the first entry that differs (or the first one gone)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class Damaged(ReplayCacheError):
    """The kept replay could not be used (a table of it gone or changed, its record unreadable): it is removed,
    and the run replays the whole ledger, as without one."""


def cache_folder() -> Path:
    """Where kept replays live: ``$XDG_CACHE_HOME/custodes/replay``, else ``~/.cache/custodes/replay``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # a relative one is to be ignored (XDG Base Directory): it would follow the cwd
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "custodes" / "replay"


def _own_folder(folder: Path) -> None:
    """``folder`` made (0700) where missing, and refused unless it is a real folder of this account that no one
    else can write, in folders no one else can rename it out of: a kept replay is trusted as the verifier's own,
    so nobody else may be able to replace it, or move it away and with it what it saw (a hostile review: the
    rollback it reported was forgotten once another account renamed the folder, in a cache home others could
    write)."""
    _safe_above(folder.parent.parent)
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


def _safe_above(top: Path) -> None:
    """Every folder from ``top`` (the cache home) up to ``/``, as the path resolves: this account's or root's,
    and writable by no one else unless sticky (as /tmp is: there only an entry's owner may rename it)."""
    found = problems_above(top, os.geteuid(), whose="yours")  # (a folder not there yet is made below, 0700)
    if found is not None:
        here, wrong = found
        raise ReplayCacheError(
            f"{shown_name(os.fspath(here))}: {'; '.join(wrong)}: another account could move your kept "
            "replays away; kept replays are not used"
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
    replayed into it; and, when it named differences, that a whole replay named them instead (and, when the whole
    replay found none, that the kept replay was wrong and is removed)."""

    path: Path
    held: int
    replayed: int
    named_by_whole_replay: bool = False
    removed: bool = False
    remade: str | None = None  # why the kept replay found was made again from nothing (damaged, another custodes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kept": str(self.path), "held": self.held, "replayed": self.replayed}
        if self.remade is not None:
            out["remade"] = self.remade
        if self.named_by_whole_replay:
            out["named_by_whole_replay"] = True  # the differences are the whole replay's, naming their entries
        if self.removed:
            out["removed"] = True  # it named differences the whole replay did not: made again next run
        return out


#: A kept replay no run has used for this long is removed (an archive moved, a copy verified once, a restored
#: backup: each leaves a file about the size of its catalog).
UNUSED_DAYS = 30


def _remove(path: Path) -> None:
    """A kept replay gone, with its write-ahead log and index (a log left behind could be applied to the next
    file made under the name)."""
    for name in (path, *_beside(path)):
        with suppress(FileNotFoundError):
            name.unlink()


def _beside(path: Path) -> tuple[Path, ...]:
    """The files SQLite keeps beside a database: its journal, write-ahead log and index."""
    return tuple(Path(f"{path}{end}") for end in ("-journal", "-wal", "-shm"))


def _prune(folder: Path, now: float) -> None:
    """Kept replays unused for :data:`UNUSED_DAYS`, and files a run that died left half made, removed."""
    for entry in os.scandir(folder):
        with suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            old = now - st.st_mtime
            if entry.name.endswith(".sqlite") and old > UNUSED_DAYS * 86_400:
                _remove(Path(entry.path))
            elif ".new" in entry.name and old > 86_400:
                Path(entry.path).unlink()


def _file_for(live: Catalog, archive_id: str) -> Path:
    """One kept replay per archive, by its id and its place (two copies of one archive are two ledgers): the
    place as the verifier names it, links not resolved, so that a link put in the archive's place pointing at an
    older copy is still this place (a hostile review: it was a new place, with a new kept replay, and the rollback
    went unseen)."""
    where = os.fsencode(os.path.abspath(live.path))
    name = hashlib.sha256(archive_id.encode() + b"\0" + where).hexdigest()[:32]
    return cache_folder() / f"{name}.sqlite"


def _busy(e: sqlite3.Error) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def _open(path: Path) -> tuple[Catalog, str | None]:
    """The kept replay at ``path``; a new, empty one where there is none, or where the one there cannot be read
    or was made by another custodes (it is made whole under another name, then linked into place: another run
    never finds one half made), with why it was made again (None: it was not)."""
    from custodes.catalog import Catalog

    remade = None
    for name in _beside(path):
        # A link there is not followed either (SQLite would roll back a "hot journal" through it, and the error
        # then blamed the archive's catalog: a hostile review); anything but a file makes the kept replay unusable.
        if os.path.islink(name):
            os.unlink(name)
        elif os.path.lexists(name) and not stat.S_ISREG(os.lstat(name).st_mode):
            raise ReplayCacheError(f"{name}: not a file: kept replays are not used; remove it")
    if os.path.islink(path):
        # Never followed (SQLite would open, or make, whatever it points at): the link itself removed, in a folder
        # of the verifier's own, and a kept replay made again in its place.
        os.unlink(path)
        remade = "was a link (removed, not followed)"
    elif os.path.lexists(path):
        _own_file(path)
        try:
            fresh = Catalog.open(path, migrate=False)
        except sqlite3.Error as e:
            if _busy(e):
                raise ReplayCacheError(f"{path}: another run holds the kept replay ({e})") from None
            _remove(path)  # not a database (damaged): made again
            remade = f"could not be read ({e}): damaged, or not one custodes wrote"
        else:
            remade = "could not be read: damaged, or not one custodes wrote"
            try:
                _pragmas(fresh)
                made_by = _read_meta(fresh).made_by
                if made_by == MADE_BY:
                    return fresh, None
                remade = f"was made by {made_by}"
            except sqlite3.Error as e:
                if _busy(e):
                    fresh.close()
                    raise ReplayCacheError(f"{path}: another run holds the kept replay ({e})") from None
            except (ValueError, KeyError, TypeError):
                pass
            fresh.close()
            _remove(path)
    new = Path(f"{path}.{os.getpid()}.new")
    _remove(new)
    os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    with Catalog.open(new) as made:
        _pragmas(made)
        conn = replay._conn(made)  # noqa: SLF001
        conn.execute(f"CREATE TABLE {META_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), meta TEXT NOT NULL)")
        replay.defer_indexes(made)
        meta = _Meta(deferred=replay.deferred_indexes(made))
        conn.execute(f"INSERT INTO {META_TABLE} (id, meta) VALUES (1, ?)", (meta.to_text(),))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        os.link(new, path)  # never over one another run linked meanwhile
    except FileExistsError:
        pass
    finally:
        _remove(new)
    _own_file(path)  # (what another run linked meanwhile: a file of this account alone still)
    fresh = Catalog.open(path, migrate=False)
    _pragmas(fresh)
    return fresh, remade


def _own_file(path: Path) -> None:
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ReplayCacheError(
            f"{path}: not a file of this account alone ({file_kind(st.st_mode)}, mode {stat.S_IMODE(st.st_mode):04o}, "
            f"account {st.st_uid}): kept replays are not used"
        )


def _read_meta(fresh: Catalog) -> _Meta:
    (text,) = replay._conn(fresh).execute(f"SELECT meta FROM {META_TABLE}").fetchone()  # noqa: SLF001
    return _Meta.from_text(text)


#: How long a run waits for the kept replay another run is bringing up (ms) before it replays whole instead.
BUSY_MS = 5000


def _pragmas(fresh: Catalog) -> None:
    conn = replay._conn(fresh)  # noqa: SLF001
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")  # kept, so a crash must not tear it: a write-ahead log
    replay.tune_for_replay(fresh)


class _Forked(Exception):
    """The ledger does not extend the signed size ``meta`` holds (:class:`RolledBack`, said with why)."""

    def __init__(self, meta: _Meta, why: str) -> None:
        super().__init__(why)
        self.meta = meta


class _Unsigned(Exception):
    """An entry replayed before, past the last signed checkpoint, differs or is gone (:class:`Rewritten`)."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(why)
        self.index = index


def _signed_entries(live: Catalog, meta: _Meta, signed: dict[int, bytes], new: _Meta) -> Iterator[tuple[int, bytes]]:
    """The ledger's entries after those ``meta`` holds, each hashed as it goes by: at every size with a signed
    root the hashes so far must give it (:class:`_Stale` otherwise), and ``new`` keeps the last such size, its
    frontier and the hashes after it."""
    acc = merkle.Accumulator.resume(meta.signed, meta.frontier)
    # The kept entries must be under a signed root of this ledger: one at the size kept (checked here) or past it
    # (checked as the entries after it go by). A ledger whose checkpoints all stop short of it (an archive put
    # back from an older copy, or another archive's ledger at the same place) does not fit it.
    if max(signed, default=0) < meta.signed:
        raise _Forked(meta, f"no signed checkpoint of this ledger reaches the {meta.signed:,} entries kept")
    if meta.signed in signed and acc.root() != signed[meta.signed]:
        raise _Forked(meta, f"this ledger's checkpoint of {meta.signed:,} entries has another root")
    tail = bytearray()

    def passed(leaf: bytes) -> None:
        acc.extend(leaf)
        tail.extend(leaf)
        root = signed.get(acc.size)
        if root is not None:
            if acc.root() != root:
                raise _Forked(meta, f"its first {acc.size:,} entries and the ones kept do not give their signed root")
            new.signed, new.frontier = acc.size, acc.frontier()
            tail.clear()

    # The entries replayed after the last signed root before must be the ledger's still.
    held = meta.applied
    for i in range(meta.signed, held):
        passed(meta.tail[(i - meta.signed) * 32 : (i - meta.signed + 1) * 32])
    seen = meta.signed
    for index, (seq, data) in enumerate(live.ledger.entries(meta.signed), start=meta.signed):
        if seq != index:
            if index < held:
                raise _Unsigned(index, f"ledger entry {index}, which your kept replay replayed, is gone")
            raise _Stale(f"ledger entry {index} is gone")
        seen = index + 1
        leaf = merkle.leaf_hash(data)
        if index < held:
            if leaf != meta.tail[(index - meta.signed) * 32 : (index - meta.signed + 1) * 32]:
                raise _Unsigned(index, f"ledger entry {index} is not the entry your kept replay replayed")
            continue
        passed(leaf)
        yield seq, data
    if seen < held:
        raise _Unsigned(seen, f"the ledger holds {seen:,} entries, short of the {held:,} your kept replay replayed")
    new.tail = bytes(tail)


def compare_kept(
    live: Catalog, archive_id: str, signed: dict[int, bytes]
) -> tuple[replay.Replay, list[replay.Difference], Kept] | None:
    """:func:`custodes.catalog.replay.compare` with the verifier's kept replay of ``live``'s ledger: brought up to
    the ledger (only the entries after it replayed) and compared with the live catalog in one snapshot of it.
    ``signed``: the size and root of every checkpoint whose signature this run checked and whose root it found
    the ledger giving. None when the ledger no longer extends the kept replay (it is removed, and made again by
    the next run): the caller replays whole. :class:`ReplayCacheError` (the caller replays whole and says why)
    when the cache folder is not the verifier's own or another run holds the kept replay."""
    folder = cache_folder()
    archive = Path(os.path.realpath(live.path.parent))
    if Path(os.path.realpath(folder)).is_relative_to(archive):
        raise ReplayCacheError(
            f"{shown_name(os.fspath(folder))} is inside the archive: a kept replay is the verifier's own, never the "
            "archive's (set XDG_CACHE_HOME to a folder of yours outside it); kept replays are not used"
        )
    _own_folder(folder)
    _prune(folder, time.time())
    path = _file_for(live, archive_id)
    try:
        fresh, remade = _open(path)
    except sqlite3.Error as e:  # (what the kept replay's own files are; the catalog is not to blame)
        if _busy(e):
            raise ReplayCacheError(f"{path}: another run holds the kept replay ({e})") from None
        _remove(path)
        raise Damaged(_damaged(e)) from None
    then = None
    try:
        # Brought up once on its own (the bulk of the entries), then again inside the snapshot the comparison
        # reads, so that what an ingest commits meanwhile is in both or in neither.
        first = _brought_up(live, fresh, signed)
        if first is not None:
            with replay.attached_to(live, fresh), live.snapshot():
                then = _brought_up(live, fresh, signed)
                if then is not None:
                    made = then[0]
                    found = replay.differences(live, fresh, made)
    except _Forked as e:
        _used(path)  # what it saw is the evidence: kept, however long it is said (_prune)
        root = merkle.Accumulator.resume(e.meta.signed, e.meta.frontier).root().hex()
        raise RolledBack(
            f"your kept replay holds {e.meta.signed:,} signed entries of this archive (root {root}) that its "
            f"ledger does not extend ({e}): the ledger was rolled back, put back from an older copy or "
            "rewritten; compare it with a backup and with the checkpoints held elsewhere (ledger publish), and "
            f"once the ledger as it is now is known good, remove {shown_name(os.fspath(path))} to accept it"
        ) from None
    except _Unsigned as e:
        _used(path)
        raise Rewritten(
            f"{e} on an earlier run (no checkpoint signed it then; the kept replay holds its leaf hash): the ledger "
            "was edited since; compare it with a backup, and once the ledger as it is now is known good, remove "
            f"{shown_name(os.fspath(path))} to accept it",
            e.index,
        ) from None
    except sqlite3.Error as e:
        if not _busy(e):
            _remove(path)  # a table of it dropped or changed: it is the kept replay that is wrong
            raise Damaged(_damaged(e)) from None
        raise ReplayCacheError(f"{path}: another run held the kept replay too long ({e})") from None
    except (ValueError, KeyError, TypeError, IndexError) as e:
        _remove(path)
        raise Damaged(_damaged(e)) from None
    finally:
        fresh.close()
    if first is None or then is None:  # the ledger no longer extends it: made again from nothing by the next run
        _remove(path)
        return None
    _used(path)
    kept = Kept(path, first[1], then[2] - first[1], remade=remade)
    if not found:
        return made, found, kept
    # Every difference is named by a full replay (which records the entries that wrote each row): it is the
    # answer, and if it finds none, the kept replay was wrong and goes.
    with replay.scratch(live) as named, live.snapshot():
        made = replay.replay(live, named)
        found = replay.differences(live, named, made)
    kept.named_by_whole_replay = True
    if not found:
        _remove(path)
        kept.removed = True
    return made, found, kept


def _used(path: Path) -> None:
    with suppress(OSError):
        os.utime(path)  # kept (_prune)


def _damaged(e: Exception) -> str:
    return (
        f"your kept replay could not be used ({type(e).__name__}: {e}): it is removed, and made again by the next "
        "--incremental run"
    )


def _brought_up(live: Catalog, fresh: Catalog, signed: dict[int, bytes]) -> tuple[replay.Replay, int, int] | None:
    """The entries after those the kept replay holds applied to it and its new record committed with them:
    (what replaying made, entries held before, entries held after); None (nothing committed) when the ledger no
    longer extends what was kept. The record is read under the write lock: a run beside this one may have
    brought it up meanwhile, and what it applied must not be applied twice (a hostile review: two runs at once
    applied the same entries twice, and the replay then matched a forged duplicate row)."""
    try:
        with live.snapshot(), fresh.transaction():
            meta = _read_meta(fresh)
            if meta.made_by != MADE_BY:
                raise _Stale(meta.made_by)
            replay.keep_deferred(fresh, meta.deferred)
            made = replay.Replay(dict(meta.unknown), list(meta.failed), written_by=False)
            new = _Meta(signed=meta.signed, frontier=meta.frontier)
            replay.apply_entries(_signed_entries(live, meta, signed, new), fresh, made)
            new.failed, new.unknown, new.deferred = made.failed, made.unknown, replay.deferred_indexes(fresh)
            replay._conn(fresh).execute(f"UPDATE {META_TABLE} SET meta = ?", (new.to_text(),))  # noqa: SLF001
    except (_Stale, ValueError, KeyError, TypeError):  # (a record that is not one custodes wrote: made again)
        return None
    return made, meta.applied, new.applied
