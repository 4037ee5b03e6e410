"""The catalog: the one place that speaks SQL.

``catalog.sqlite`` holds what the archive knows (segments, objects, devices,
ingests, findings, tasks, access and retention records) and the ledger those
facts are proven by. Every statement lives in this package, behind a named
operation on one table group; the rest of custodes calls those operations
and never sees a connection. A test (tests/test_no_sql_outside_catalog.py)
keeps it that way.

    catalog = Catalog.open(path)
    with catalog.transaction():          # all of it commits, or none of it
        index = catalog.ledger.append(data, leaf)
        catalog.retention.place_hold(segment, reason, by, now)

Tables are reached as attributes (``catalog.segments``, ``catalog.objects``,
``catalog.ledger`` ...). Reads run in the caller's transaction when there is
one, else each in its own implicit one; :meth:`Catalog.snapshot` holds one
read transaction over several reads (verify), and :meth:`Catalog.another`
opens a second connection to the same file (a copy worker's writes, a fresh
look past a snapshot).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from custodes.catalog import codes, schema
from custodes.catalog.custody import AccessRequests, GapExplanations, RefusalWindows, Retention, Tasks
from custodes.catalog.devices import DeviceChecks, Devices, Findings, Ingests
from custodes.catalog.evidence import ObjectFindings, Objects, Scope, Segments, VerifyRuns
from custodes.catalog.ledger import Checkpoints, Ledger, OwnEntries
from custodes.catalog.query import Query
from custodes.catalog.registry import Registry
from custodes.catalog.schema import MIGRATIONS, SchemaDifference
from custodes.errors import CustodesError

__all__ = [
    "Catalog",
    "CatalogError",
    "SCHEMA_VERSION",
    "SchemaDifference",
    "SchemaDiffersError",
    "Scope",
    "copy_file",
    "sweep_copies",
]

#: The catalog schema this custodes writes (one migration per step; a newer catalog is refused).
SCHEMA_VERSION = len(MIGRATIONS)
#: The ledger entries this process appended and committed, by catalog file (its real path): shared by every
#: connection this process opens to it (an ingest's writer threads, Catalog.another), so a checkpoint knows its
#: command's own entries from those another hand put there (catalog.ledger.OwnEntries).
_OWN_HERE: dict[tuple[str, int, int], OwnEntries] = {}


def _own_here(path: Path) -> OwnEntries:
    # Keyed by the file itself too: an archive made again at the same path (a test, a rebuilt catalog put in
    # place) is another ledger, whose entries at those indexes this process did not write.
    try:
        st = os.stat(path)
    except OSError:  # in memory: a catalog of its own
        return OwnEntries()
    return _OWN_HERE.setdefault((os.path.realpath(path), st.st_dev, st.st_ino), OwnEntries())


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class CatalogError(CustodesError):
    """The catalog cannot be used as it is (a schema from a newer custodes)."""


class SchemaDiffersError(CatalogError):
    """A write refused: the catalog's schema is not the one custodes makes (:meth:`Catalog.schema_differences`).
    A trigger, constraint or index added by hand could drop, change or refuse what custodes writes, unseen: a
    trigger that deleted each new ingest entry let ingest report success while the recording's entry was gone."""

    def __init__(self, path: Path, found: list[SchemaDifference]) -> None:
        self.path, self.differences = path, found
        shown = "; ".join(d.message() for d in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        #: What is refused and why, without the way out (a caller that may not take it names another).
        self.what = (
            f"{path}: custodes writes nothing into this catalog, its schema is not the one custodes makes ({shown})"
        )
        super().__init__(
            f"{self.what}. `custodes verify` lists every difference; `custodes ledger rebuild-catalog --replace` "
            "makes the catalog again from the ledger (the old file is kept beside it)"
        )


#: How long opening a database waits out the moment in which another account's process has made its ``-wal`` or
#: ``-shm`` file and not yet handed it to the database's owner. SQLite running as root (an auditor's ``sqlite3
#: catalog.sqlite`` beside the service) creates the two files as root, then gives them to the file's owner. An
#: open by the owner in between was refused ("unable to open database file"), or, when the owner's SQLite could
#: open the ``-shm`` file for reading only, made a connection that silently could not write ("attempt to write a
#: readonly database" at its first write): a service's request failed either way, about one in 150 with such a
#: reader polling beside it. The moment lasts two system calls; the wait is paid only where the files look so.
SHARED_FILES_WAIT_S = 0.5


def connect(path: Path, *, journal_mode: str, timeout: float, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to the SQLite database ``path`` (``isolation_level=None``: explicit BEGIN/COMMIT only) in
    ``journal_mode``, set here because setting it is the first read: the one that opens the ``-wal`` and ``-shm``
    files. Where this account may write ``path``, a write-ahead log is also checked to be writable: a passive
    checkpoint (it waits on nobody, and has nothing to do in the usual case, a log emptied by the last connection
    to close) is refused on a ``-shm`` file SQLite could open for reading only.

    Refused so, or unable to open the files at all, while they look as another account's SQLite leaves them for a
    moment (:func:`_being_handed_over`), the open is tried again for :data:`SHARED_FILES_WAIT_S`. Otherwise all is
    as SQLite has it: a connection that can only read serves a command that only reads (a catalog or its files
    made read-only), and an error of the environment (a folder or disk this account cannot write) goes up at once
    to the CLI's one account of such errors. When the files stay another account's, CatalogError names them."""
    _shared_files_as_the_database(path)
    deadline = time.monotonic() + SHARED_FILES_WAIT_S
    while True:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=check_same_thread)
        try:
            mode = conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        except sqlite3.OperationalError as e:
            conn.close()
            code = codes.result_code(e)
            if codes.full_disk(e, path.parent) and os.path.isfile(path) and os.path.getsize(path) > 0:
                # A full disk: SQLite could not size its -shm file ("disk I/O error"), and every command stopped
                # there, verify too, when a full disk is when an archive most wants checking. Read, as it is:
                # verify re-hashes without recording its run, an act is refused naming the full disk. (Not a new
                # file: a catalog being made, rebuild-catalog's, is the full disk's failure as it is.)
                return _alone_on_a_full_disk(path, timeout)
            if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY) or not os.path.isfile(path):
                raise
            if code == sqlite3.SQLITE_CANTOPEN:
                if _being_handed_over(path) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                if held := _not_ours(path):
                    raise CatalogError(f"{path}: SQLite cannot open it ({e}): {held}") from None
            # A folder this account cannot write: SQLite could make no -wal or -shm there ("unable to open", or
            # "read-only directory" for a catalog file this account may write). Read, as it is.
            if _place_read_only(path):
                return _read_only(path, timeout, check_same_thread)
            raise
        except BaseException:
            conn.close()
            raise
        if mode != "wal" or not os.access(path, os.W_OK) or _writable(conn):
            return conn
        if not (_being_handed_over(path) and time.monotonic() < deadline):
            return conn
        conn.close()
        time.sleep(0.01)


def _place_read_only(path: Path) -> bool:
    """The folder holding ``path`` cannot be written by this account (a read-only disk, a copy handed over on one,
    a folder made read-only): SQLite can make no ``-wal`` or ``-shm`` file beside it."""
    return not os.access(path.parent, os.W_OK | os.X_OK)


def _journal_read_only(path: Path) -> bool:
    """A ``-wal`` or ``-shm`` file of this account beside ``path`` that it cannot write (an immutable flag, a
    mode): SQLite may read through it, and refuses the first write. Another account's journal files are not
    this: they are the moment :func:`_being_handed_over` waits out, or :func:`_not_ours` names."""
    for end in ("-wal", "-shm"):
        try:
            owner = os.stat(f"{path}{end}").st_uid
        except OSError:
            continue
        if owner == os.geteuid() and not os.access(f"{path}{end}", os.W_OK):
            return True
    return False


def _read_only(path: Path, timeout: float, check_same_thread: bool) -> sqlite3.Connection:
    """A connection that only reads ``path`` where no ``-shm`` file can be made beside it (:func:`_place_read_only`):
    an auditor's copy on a read-only disk, verified and reported there. SQLite reads a write-ahead database so only
    as ``immutable`` (nobody writes it), and then ignores any ``-wal`` file: one holding committed transactions
    (ledger entries not yet in the catalog file: a copy taken while the archive was in use) is read with its
    ``-shm`` where both are there (``mode=ro``), and otherwise refused, naming it, rather than read as an older
    catalog. A write on the connection is refused by SQLite as one on a read-only database."""
    wal = Path(f"{path}-wal")
    try:
        pending = wal.stat().st_size > 0
    except FileNotFoundError:
        pending = False
    except OSError as e:
        raise CatalogError(f"{wal}: cannot be read ({e.strerror}), and the catalog is on a read-only place") from None
    uri = f"{path.resolve().as_uri()}?{'mode=ro' if pending else 'immutable=1'}"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=check_same_thread)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as e:
        conn.close()
        if not pending:
            raise
        raise CatalogError(
            f"{path}: on a read-only place, and its write-ahead log ({wal.name}) holds transactions not yet in the "
            f"catalog file (a copy taken while the archive was in use) that SQLite cannot read there ({e}): copy the "
            "archive, -wal file and all, to a place this account may write, and open the copy"
        ) from None
    return conn


def _alone_on_a_full_disk(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that reads ``path`` where the disk is full and no other connection has the catalog open (one
    that had would have sized the ``-shm`` file): in exclusive locking mode, in which SQLite keeps the write-ahead
    log's index in its own memory, needs no ``-shm`` file, and reads the ``-wal`` (what an interrupted command
    committed) as any connection does. It holds the catalog until it closes: another process waits (``busy``)
    rather than write under it, as it would once space is freed (a hostile review: read as ``immutable``, a
    verify met an ingest's pages half-written and called the sound catalog damaged). ``query_only``: it records
    nothing, which :attr:`Catalog.disk_full` reads.

    Not where the ``-wal`` holds transactions (an ingest killed, its ``-shm`` gone since): closing, SQLite would
    fold them into the catalog file, which the full disk cuts short, and the file alone is then no catalog (a
    hostile review). Refused instead, as a copy on a read-only place whose log cannot be read is."""
    wal = Path(f"{path}-wal")
    with contextlib.suppress(OSError):
        if wal.stat().st_size > 0:
            raise CatalogError(
                f"{path}: on a full disk, and its write-ahead log ({wal.name}) holds transactions not yet in the "
                "catalog file, which reading it would fold into the file as it closes, a write the full disk would "
                "cut short: free space on it, then run the command again"
            )
    # Any thread may close it: the review page closes it as the request's answer has gone out (web.context).
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        # The catalog only (a database attached later, verify's scratch replay, keeps its own), before the first
        # read: no shared memory is ever asked for.
        conn.execute("PRAGMA main.locking_mode=EXCLUSIVE")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _shared_files_as_the_database(path: Path) -> None:
    """Give this account's ``-wal`` and ``-shm`` files of ``path`` the database file's own mode where they are
    narrower. SQLite makes them with the database's mode: made while the catalog was read-only (0400: a copy
    audited read-only, a chmod by hand), they stayed so after it was writable again, and every later write
    failed naming the catalog, a file that is fine (a hostile review). Only this account's regular files, and
    only towards a mode the database has: never wider than the catalog, never another account's files (which
    :func:`_not_ours` names), never a link."""
    try:
        db = os.stat(path)
    except OSError:
        return
    if db.st_uid != os.geteuid() or not os.access(path, os.W_OK):
        return
    want = stat.S_IMODE(db.st_mode) & 0o666
    for end in ("-wal", "-shm"):
        shared = f"{path}{end}"
        with contextlib.suppress(OSError):
            st = os.lstat(shared)
            if stat.S_ISREG(st.st_mode) and st.st_uid == db.st_uid and stat.S_IMODE(st.st_mode) & want != want:
                os.chmod(shared, want, follow_symlinks=False)


def _writable(conn: sqlite3.Connection) -> bool:
    """The connection's write-ahead log can be written (a passive checkpoint is not refused as read-only). Any
    other trouble of the checkpoint (a full disk, a damaged log) is not this question's: it is the command's to
    meet where it reads or writes, with the CLI's account of it, as before this probe (a command that only reads
    may still succeed), so it counts as writable here."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.DatabaseError as e:
        return codes.result_code(e) != sqlite3.SQLITE_READONLY
    return True


def _being_handed_over(path: Path) -> bool:
    """``path``'s ``-wal`` or ``-shm`` file is there, and each that is there is another account's or this one's
    to write: as SQLite running as another account leaves them between making them and giving them to the
    database's owner (or just after). Files of this account that it may not write (made read-only) are no such
    moment; nor is a folder where they cannot be made."""
    seen = False
    for end in ("-wal", "-shm"):
        try:
            owner = os.stat(f"{path}{end}").st_uid
        except OSError:
            continue
        seen = True
        if owner == os.geteuid() and not os.access(f"{path}{end}", os.W_OK):
            return False
    return seen


def _not_ours(path: Path) -> str:
    """Which of ``path``'s ``-wal`` and ``-shm`` files belong to an account other than this process's, and what
    to do: give them back. Never remove them: a ``-wal`` holds committed transactions (ledger entries) that are
    not yet in the database file. "" when none is another's."""
    from custodes.identity import account_name

    held = []
    for end in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            owner = os.stat(f"{path}{end}").st_uid
            if owner != os.geteuid():
                held.append((f"{path.name}{end}", account_name(owner)))
    if not held:
        return ""
    me = account_name(os.geteuid())
    return (
        f"{' and '.join(f'{name} belongs to {owner}' for name, owner in held)}, not to this account ({me}); give "
        f"{'it' if len(held) == 1 else 'them'} back to {me} (chown {me} {' '.join(name for name, _ in held)}), and "
        "never remove them: a -wal file holds ledger entries not yet in the catalog file"
    )


class Catalog:
    """One connection to ``catalog.sqlite`` and the named operations over it. Not thread-safe:
    a thread that writes on its own opens :meth:`another`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        #: Opened to read only because its disk is full (:func:`_alone_on_a_full_disk`): nothing can be recorded
        #: until there is room; :attr:`read_only` says so too.
        self.disk_full = bool(conn.execute("PRAGMA query_only").fetchone()[0])
        self._schema_seen: tuple[int, list[SchemaDifference]] | None = None  # (schema cookie, its differences)
        self.segments = Segments(conn)
        self.objects = Objects(conn)
        self.ledger = Ledger(conn, _own_here(path))
        self.checkpoints = Checkpoints(conn)
        self.devices = Devices(conn)
        self.device_checks = DeviceChecks(conn)
        self.ingests = Ingests(conn)
        self.findings = Findings(conn)
        self.tasks = Tasks(conn)
        self.gap_explanations = GapExplanations(conn)
        self.access = AccessRequests(conn)
        self.retention = Retention(conn)
        self.refusals = RefusalWindows(conn)
        self.verify_runs = VerifyRuns(conn)
        self.object_findings = ObjectFindings(conn)
        self.registry = Registry(conn)  # the device registry and assignments (custodes.devices)
        self.query = Query(conn)  # the query API's paged reads (custodes.query)

    @property
    def read_only(self) -> bool:
        """This account cannot write the catalog here: its file, the folder its -wal and -shm files go in (a
        read-only disk: an auditor's copy), or those files themselves (a flag, a mode). A command that only reads
        works; one that would record refuses, and verify re-hashes without recording its run (custodes.verify)."""
        return (
            self.disk_full
            or not os.access(self.path, os.W_OK)
            or _place_read_only(self.path)
            or _journal_read_only(self.path)
        )

    @classmethod
    def open(cls, path: Path, *, migrate: bool = True, scratch: bool = False) -> Catalog:
        """Connect (WAL, full fsync on commit, foreign keys on, temporary data in memory) and bring the schema up
        to date.

        ``scratch``: a catalog thrown away after use (verify's replay of the ledger): no sync and the rollback
        journal in memory from the start (savepoints still roll back; a write-ahead log would hold a second copy of
        every page written). Set before the schema is made: under full sync its migrations' commits were some
        fifteen fdatasyncs of a file no one keeps, every verify."""
        conn = connect(path, journal_mode="MEMORY" if scratch else "WAL", timeout=60)
        # Text that is not UTF-8 (an edit of the file: custodes writes none) is read with its bytes kept as
        # surrogates, so verify compares it and names the row instead of stopping at it (one such cell made
        # verify, report and the ledger commands fail with a traceback and report nothing).
        conn.text_factory = _text
        try:
            conn.execute(f"PRAGMA synchronous={'OFF' if scratch else 'FULL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=60000")
            # A savepoint's journal (ingest records each file under one; a replay each group of entries) kept in
            # memory: past 64 KiB SQLite moves it to a file in the system's temporary folder, which wrote pages
            # of the catalog outside the archive and failed the ingest when that folder was full.
            conn.execute("PRAGMA temp_store=MEMORY")
            catalog = cls(path, conn)
            if migrate:
                catalog.migrate()
        except BaseException:
            conn.close()
            raise
        return catalog

    def another(self) -> Catalog:
        """A second connection to the same catalog (already migrated). On a full disk (:attr:`disk_full`) this one
        again: a second would wait on the first's exclusive lock; neither writes, and no other process can."""
        if self.disk_full:
            return _Borrowed(self.path, self._conn)
        return Catalog.open(self.path, migrate=False)

    def copied_into(self, folder: str | os.PathLike[str]) -> Catalog | None:
        """This catalog as it is now, copied (SQLite's backup) into a file of ``folder``, owner-only, removed when
        the copy closes (one a crash leaves is named for its process), and read from there: query only, as
        :attr:`disk_full` says, and named by this catalog's path. None where ``folder`` has no room for it, or the
        copy fails. For a long reader that holds the catalog alone on a full disk
        (Archive.read_a_copy_of_the_catalog)."""
        from custodes._durable import NEARLY_FULL

        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        size = pages * self._conn.execute("PRAGMA page_size").fetchone()[0]
        try:
            if shutil.disk_usage(folder).free < size + NEARLY_FULL:
                return None
            name = os.fspath(copy_file(folder, "copy"))
        except OSError:
            return None
        copy = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        try:
            copy.execute("PRAGMA journal_mode=OFF")  # (written once, by the backup: a file no one keeps)
            self._conn.backup(copy)
            copy.execute("PRAGMA query_only=ON")
            copy.execute("PRAGMA temp_store=MEMORY")
            copy.text_factory = _text
            return _Copied(self.path, copy, name)
        except (sqlite3.Error, OSError):
            copy.close()
            os.unlink(name)
            return None

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the catalog to SCHEMA_VERSION, one migration per transaction."""
        schema.migrate(
            self._conn,
            MIGRATIONS,
            self.transaction,
            lambda version: CatalogError(
                f"catalog schema {version} is newer than this custodes ({SCHEMA_VERSION}); upgrade custodes"
            ),
            lambda why: CatalogError(f"{self.path}: {why}"),
        )

    @property
    def holds_tables(self) -> bool:
        """Any of the tables custodes makes, whatever ``PRAGMA user_version`` says: a catalog at version 0 holding
        them had its version set by hand, it is not empty (one holding only tables of its own making is)."""
        return bool(schema.made_tables() & set(schema.table_names(self._conn)))

    def schema_differences(self) -> list[SchemaDifference]:
        """How this catalog's schema (its tables, their columns and keys, indexes, triggers, views) differs from
        the one this custodes makes (schema.differences): a table, index or column dropped, an index made over
        other columns, a trigger or view added. None on an archive migrated from an older custodes.

        Worked out again only when SQLite's schema cookie (``PRAGMA schema_version``, which every change to
        the schema moves, and which each transaction reads afresh) has moved since the last time."""
        cookie = int(self._conn.execute("PRAGMA schema_version").fetchone()[0])
        if self._schema_seen is None or self._schema_seen[0] != cookie:
            self._schema_seen = (cookie, schema.differences(self._conn))
        return list(self._schema_seen[1])

    @contextmanager
    def write(self) -> Iterator[Catalog]:
        """:meth:`transaction` for custodes' own writes into the live catalog: refused (:class:`SchemaDiffersError`,
        nothing written) when its schema is not the one custodes makes. Looked at under the write lock, so no
        change to the schema can come between the look and the writes."""
        with self.transaction():
            self.require_own_schema()
            yield self

    def require_own_schema(self) -> None:
        """Refuse (:class:`SchemaDiffersError`) a catalog whose schema is not the one custodes makes: what
        :meth:`write` checks under the write lock, for a command whose first irreversible step comes before its
        first write (a purge removes bytes, a repair replaces them, then records it): refused there, it must
        have done nothing."""
        if found := self.schema_differences():
            raise SchemaDiffersError(self.path, found)

    def lacks(self, table: str) -> bool:
        """The table is gone from this catalog, or lacks a column custodes makes it with (dropped or re-made by
        hand): a command that would read it works without it, and verify reports it (schema_differences)."""
        return any(d.name == table and d.unreadable for d in self.schema_differences())

    def close(self) -> None:
        self._conn.close()

    def flush_wal(self) -> None:
        """Write everything committed into the database file itself and empty the WAL, this connection the only
        one open on the file: the file alone is then the whole catalog, kept aside by ``ledger rebuild-catalog
        --replace``. CatalogError when another connection has it open (a running ``custodes serve``, an ingest):
        it would go on writing into the file kept aside, its entries lost to the catalog that takes its place,
        and its shared WAL index would be the new file's (found: the next command read a "malformed" catalog)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.execute("PRAGMA busy_timeout = 2000")
        try:
            # Leaving WAL needs the file to itself: the one check SQLite offers for "no one else has it open".
            alone = self._conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
        except sqlite3.OperationalError:
            alone = False
        if not alone:
            raise CatalogError(
                f"{self.path}: another process has the catalog open through SQLite (custodes serve, an ingest, a "
                "verify): stop it, then run this again"
            )

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @contextmanager
    def transaction(self) -> Iterator[Catalog]:
        """One write transaction: catalog rows and their ledger entries commit together or not at all."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            # Unless SQLite rolled it back itself (a full disk, an I/O error): a ROLLBACK then failed with "no
            # transaction is active", and that error took the place of the one that says what happened.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self.ledger.rolled_back()
            raise
        try:
            self._conn.execute("COMMIT")
        except BaseException:  # (not committed: its entries are no one's yet)
            self.ledger.rolled_back()
            raise
        self.ledger.committed()

    @contextmanager
    def savepoint(self) -> Iterator[Catalog]:
        """A part of the caller's transaction that can fail alone: what it wrote is undone, the rest stays
        (ingest records a group of files in one transaction, and one file's bad metadata must not undo the others)."""
        self._conn.execute("SAVEPOINT part")
        mark = self.ledger.appended_mark()
        try:
            yield self
        except BaseException:
            if self._conn.in_transaction:  # (gone: SQLite rolled the whole transaction back; the caller's ends it)
                self._conn.execute("ROLLBACK TO part")
                self._conn.execute("RELEASE part")
            self.ledger.rolled_back(mark)
            raise
        self._conn.execute("RELEASE part")

    @contextmanager
    def snapshot(self) -> Iterator[Catalog]:
        """One read transaction over several reads: what others commit meanwhile is not seen.
        Inside a transaction already, that transaction is the snapshot."""
        if self._conn.in_transaction:
            yield self
            return
        self._conn.execute("BEGIN")
        try:
            yield self
        finally:
            self._conn.execute("COMMIT")


#: How a copy of :meth:`Catalog.copied_into` is named, after its process's tag.
_COPY_END = "-catalog-copy.sqlite"


def copy_file(folder: str | os.PathLike[str], kind: str) -> Path:
    """A new empty file in ``folder`` for a copy of a catalog (``kind``: ``copy``, :meth:`Catalog.copied_into`;
    ``rebuilt``, custodes.verify.rebuild_catalog), owner-only, named for this process: :func:`sweep_copies`
    removes one a kill left."""
    from custodes._durable import process_tag

    fd, name = tempfile.mkstemp(prefix=f"{process_tag()}-{kind}-", suffix=_COPY_END, dir=folder)
    os.close(fd)
    return Path(name)


def sweep_copies(folder: str | os.PathLike[str]) -> None:
    """Remove the copies of a catalog (:func:`copy_file`) that killed processes of this account left in
    ``folder``, with their SQLite logs: each as large as its catalog, and as private."""
    from custodes._durable import dead_temps

    ends = tuple(_COPY_END + end for end in ("", "-wal", "-shm", "-journal"))
    for left in dead_temps(Path(folder)):
        with contextlib.suppress(OSError):
            if left.name.endswith(ends) and left.stat(follow_symlinks=False).st_uid == os.geteuid():
                os.unlink(left.path)


class _Copied(Catalog):
    """A :class:`Catalog` read from a copy (:meth:`Catalog.copied_into`) in ``file``, which goes as it closes."""

    def __init__(self, path: Path, conn: sqlite3.Connection, file: str) -> None:
        super().__init__(path, conn)
        self._file = file

    def close(self) -> None:
        try:
            super().close()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._file)


class _Borrowed(Catalog):
    """Another :class:`Catalog` on a connection its first owner closes (:meth:`Catalog.another` on a full disk)."""

    def close(self) -> None:
        pass
