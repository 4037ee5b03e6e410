"""``ARCHIVE/accounts.sqlite``: the run state of the web front end (custodes.web), and all its SQL.

Local accounts (name, argon2id hash, disabled, failures in a row, locked), sessions (the sha256 of the cookie,
its CSRF token, when it was made, last seen and when it ends), API tokens (the sha256 of the token, its account
and role, revoked or not) and the failed logins counted per client (throttling). None of it is a fact of the
archive: the catalog stays derived from the ledger, and the ledger records each account change (without the
secrets) and each login. The file is the service account's alone (0600), with its own migrations.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from custodes.catalog import codes, connect, schema
from custodes.errors import CustodesError

__all__ = [
    "ACCOUNTS_FILE",
    "AccountRow",
    "AccountStore",
    "AccountsSchemaError",
    "ENDED_FILE",
    "EndedSessions",
    "SessionEndNotWritten",
    "SessionRow",
    "ThrottleRow",
    "TokenRow",
    "schema_differences_at",
]

ACCOUNTS_FILE = "accounts.sqlite"
#: Sessions ended whose deletion the accounts store could not write (a full disk): :class:`EndedSessions`.
ENDED_FILE = "accounts.ended"

MIGRATIONS: list[str] = [
    # 1: accounts, sessions, tokens, failed logins per client.
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL);
    CREATE TABLE sessions (
        digest TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL, created_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL);
    CREATE INDEX sessions_by_account ON sessions(account);
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE, role TEXT NOT NULL, label TEXT NOT NULL,
        created_ns INTEGER NOT NULL, revoked_ns INTEGER);
    CREATE TABLE throttle (
        client TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, failures INTEGER NOT NULL,
        counted INTEGER NOT NULL DEFAULT 0, first_ns INTEGER, last_ns INTEGER);
    """,
    # 2: a password someone else set is one-time: its account must change it at its next login. Every password
    # kept before this was set by a custodian (`custodes user add|passwd`), so every account must change its own.
    """
    ALTER TABLE accounts ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0;
    UPDATE accounts SET must_change = 1;
    """,
]


class AccountRow(NamedTuple):
    name: str
    hash: str
    disabled: int
    failures: int
    locked: int
    created_ns: int
    #: 1 while the password is one-time (set by someone else): its sessions reach only the change of password.
    must_change: int


class SessionRow(NamedTuple):
    digest: str
    account: str
    csrf: str
    created_ns: int
    last_seen_ns: int
    expires_ns: int


class TokenRow(NamedTuple):
    id: int
    digest: str
    account: str
    role: str
    label: str
    created_ns: int
    revoked_ns: int | None


class ThrottleRow(NamedTuple):
    """Failed logins from one client in the window that began at ``started_ns``: ``failures`` answered one by
    one, ``counted`` more refused without a look at the password (between ``first_ns`` and ``last_ns``)."""

    client: str
    started_ns: int
    failures: int
    counted: int
    first_ns: int | None
    last_ns: int | None


class AccountsSchemaError(CustodesError):
    """A write into accounts.sqlite refused: its schema is not the one custodes makes."""

    def __init__(self, path: Path, found: list[schema.SchemaDifference]) -> None:
        self.differences = found
        shown = "; ".join(d.message(of=ACCOUNTS_FILE) for d in found[:3])
        super().__init__(
            f"{path}: custodes writes nothing into this accounts store, its schema is not the one custodes makes "
            f"({shown}{f'; and {len(found) - 3} more' if len(found) > 3 else ''}). Drop what was added by hand "
            f"(sqlite3 {path} 'DROP TRIGGER name'), or move the file aside and add the accounts again "
            "(`custodes user add`); `custodes verify` lists every difference"
        )


def schema_differences_at(root: str | os.PathLike[str]) -> list[schema.SchemaDifference] | None:
    """The schema differences of ``ROOT/accounts.sqlite``, read only (never created, never migrated); None when
    the archive has no such file (no web front end ever ran) or it cannot be read."""
    path = Path(root) / ACCOUNTS_FILE
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            return None  # an empty file (`sqlite3 accounts.sqlite` makes one): no store was ever made in it
        return schema.differences(conn, MIGRATIONS)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _fields(row: type[NamedTuple]) -> str:
    return ", ".join(row._fields)


class SessionEndNotWritten(CustodesError):
    """A session ended (:meth:`AccountStore.delete_session`) whose deletion accounts.sqlite could not take (a full
    disk, a store read as it is). ``kept``: its end is in :data:`ENDED_FILE` (any store opened later refuses the
    session, and deletes it at its next write); else it is ended in this store alone, until it closes."""

    def __init__(self, cause: sqlite3.Error, kept: bool) -> None:
        self.cause, self.kept = cause, kept
        super().__init__(f"{cause}: the end of the session is {'kept aside' if kept else 'not kept'}")


class EndedSessions:
    """``ARCHIVE/accounts.ended``: the digests of sessions ended whose deletion accounts.sqlite could not take, in
    fixed slots of a file made whole (zeros) while there is room, so that noting one needs no room at all: a
    session ended in memory alone came back when the server started again before the disk had room (a hostile
    review). Owner-only, as accounts.sqlite. Slots are taken and freed under the file's lock."""

    SLOT = 65  # 64 hex digits and a newline
    SLOTS = 512

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self) -> None:
        """The file at its full size: made, or completed where it is short (a disk that filled, a kill, while it
        was made: a hostile review found one left at a quarter, for good); where there is no room, as it is (said
        when a session's end cannot be kept). Never through a link, nor anything but a regular file."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            size = st.st_size
            while stat.S_ISREG(st.st_mode) and size < self.SLOT * self.SLOTS:  # zeros written: blocks it owns
                size += os.pwrite(fd, bytes(self.SLOT * self.SLOTS - size), size)
            if size != st.st_size:
                os.fsync(fd)
        except OSError:
            return  # no room: the slots there are all it has
        finally:
            os.close(fd)

    def read(self) -> set[str]:
        """The digests noted (none where the file is not there or not one this class made)."""
        from custodes._durable import read_small

        try:
            data = read_small(self.path, self.SLOT * self.SLOTS)
        except (OSError, ValueError):
            return set()
        slots = (data[i : i + 64].decode("ascii", "replace") for i in range(0, len(data), self.SLOT))
        return {d for d in slots if re.fullmatch("[0-9a-f]{64}", d)}

    def note(self, digest: str) -> bool:
        """``digest`` written, synced, in a free slot: True; False where there is no file or no free slot."""
        line = digest.encode("ascii") + b"\n"
        try:
            with self._locked() as fd:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size != self.SLOT * self.SLOTS:
                    return False  # not the file this class makes: nothing noted in it would be read back
                data = os.pread(fd, self.SLOT * self.SLOTS, 0)
                free = next((i for i in range(0, len(data) - self.SLOT + 1, self.SLOT) if data[i] == 0), None)
                if free is None:
                    return False
                os.pwrite(fd, line, free)
                os.fsync(fd)
        except OSError:
            return False
        return True

    def free(self, digests: Collection[str]) -> None:
        """The slots of ``digests`` freed (their deletion is written in accounts.sqlite now)."""
        lines = {d.encode("ascii") + b"\n" for d in digests}
        with contextlib.suppress(OSError), self._locked() as fd:
            data = os.pread(fd, self.SLOT * self.SLOTS, 0)
            for i in range(0, len(data) - self.SLOT + 1, self.SLOT):
                if data[i : i + self.SLOT] in lines:
                    os.pwrite(fd, bytes(self.SLOT), i)
            os.fsync(fd)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)


class AccountStore:
    """One connection to ``accounts.sqlite``, shared by the web server's threads under a lock (each operation
    is a statement or two: nothing is held across a request)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._schema_seen: tuple[int, list[schema.SchemaDifference]] | None = None
        # Sessions ended whose deletion is not written yet (a full disk refused it): gone for this store at once,
        # and deleted in the file by its next write (:meth:`_begin`); those kept aside (:class:`EndedSessions`)
        # come back here when a store is opened again.
        self._kept = EndedSessions(path.with_name(ENDED_FILE))
        self._ended: set[str] = self._kept.read()

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> AccountStore:
        """Open (creating it owner-only when missing) ``ROOT/accounts.sqlite`` and bring its schema up to date."""
        path = Path(root) / ACCOUNTS_FILE
        # Created 0600 before SQLite sees it: it holds password hashes and session digests.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        EndedSessions(path.with_name(ENDED_FILE)).make()  # while there is room (it needs none later)
        conn = connect(path, journal_mode="WAL", timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(path, conn)
            store._migrate()
        except BaseException:
            conn.close()
            raise
        return store

    def _migrate(self) -> None:
        schema.migrate(
            self._conn,
            MIGRATIONS,
            lambda: self._transaction(as_made=False),
            lambda version: CustodesError(
                f"{self.path}: schema {version} is newer than this custodes ({len(MIGRATIONS)}); upgrade custodes"
            ),
            lambda why: CustodesError(f"{self.path}: {why}"),
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AccountStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_differences(self) -> list[schema.SchemaDifference]:
        """This file's schema against the one its migrations make (a trigger added here kept an account open
        through any number of wrong passwords, unseen: a hostile review). Worked out again only when SQLite's
        schema cookie moves, as the catalog's (Catalog.schema_differences)."""
        with self._lock:
            cookie = int(self._conn.execute("PRAGMA schema_version").fetchone()[0])
            if self._schema_seen is None or self._schema_seen[0] != cookie:
                self._schema_seen = (cookie, schema.differences(self._conn, MIGRATIONS))
            return list(self._schema_seen[1])

    @contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        """Several of this store's writes as one transaction (BEGIN IMMEDIATE), which the operations called
        inside it join. It commits when the block ends, or earlier when the block calls the function it is
        given (the rest of the block then writes nothing here); it rolls back when the block fails before that.
        An account change commits it before or after the catalog's transaction (custodes.web.accounts).
        Refused, as :meth:`_transaction`, while the schema is not the one custodes makes."""
        with self._lock:
            done = False

            def commit() -> None:
                nonlocal done
                if not done:
                    self._commit(ended)
                    done = True

            try:
                ended = self._begin()
                yield commit
                commit()
            except BaseException:
                self._roll_back()
                raise

    @contextmanager
    def _transaction(self, *, as_made: bool = True) -> Iterator[sqlite3.Connection]:
        """One write, refused (nothing written) while the schema is not the one custodes makes: the catalog's rule
        (Catalog.write), under the write lock. ``as_made=False``: a migration's step, which makes that schema.
        Inside :meth:`held` a write joins its transaction (checked when it began)."""
        with self._lock:
            if self._conn.in_transaction:  # inside held(): this write is part of its transaction
                yield self._conn
                return
            try:
                ended = self._begin(as_made=as_made)
                yield self._conn
                self._commit(ended)
            except BaseException:
                self._roll_back()
                raise

    def _begin(self, *, as_made: bool = True) -> frozenset[str]:
        """BEGIN IMMEDIATE, the schema checked (``as_made``), and the sessions ended but not yet deleted deleted in
        it: the digests it deletes, for :meth:`_commit`."""
        self._conn.execute("BEGIN IMMEDIATE")
        if not as_made:
            return frozenset()
        if found := self.schema_differences():
            raise AccountsSchemaError(self.path, found)
        ended = frozenset(self._ended)
        self._conn.executemany("DELETE FROM sessions WHERE digest = ?", [(d,) for d in ended])
        return ended

    def _commit(self, ended: frozenset[str]) -> None:
        self._conn.execute("COMMIT")
        self._ended -= ended
        if ended:
            self._kept.free(ended)

    def _roll_back(self) -> None:
        # Only while a transaction is open: SQLite has rolled back already where a statement or the COMMIT met a
        # full disk, and "cannot rollback - no transaction is active" would stand in for the error that did it.
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # --- accounts ---

    def account(self, name: str) -> AccountRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_fields(AccountRow)} FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else AccountRow(*row)

    def accounts(self) -> list[AccountRow]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_fields(AccountRow)} FROM accounts ORDER BY name").fetchall()
        return [AccountRow(*r) for r in rows]

    def add_account(self, name: str, hashed: str, now: int, *, one_time: bool) -> bool:
        """A new account (``one_time``: its password must be changed at its first login); False when ``name``
        has one already."""
        with self._transaction() as c:
            if c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                return False
            c.execute(
                "INSERT INTO accounts (name, hash, created_ns, must_change) VALUES (?, ?, ?, ?)",
                (name, hashed, now, int(one_time)),
            )
        return True

    def set_hash(self, name: str, hashed: str, *, one_time: bool, keep_session: str | None = None) -> bool:
        """A new password (``one_time``: to be changed at the next login): the failures in a row and any lock
        end with it; the account's sessions end too, all but ``keep_session`` (the digest of the session of
        the person who changed their own)."""
        with self._transaction() as c:
            n = c.execute(
                "UPDATE accounts SET hash = ?, failures = 0, locked = 0, must_change = ? WHERE name = ?",
                (hashed, int(one_time), name),
            )
            c.execute("DELETE FROM sessions WHERE account = ? AND digest IS NOT ?", (name, keep_session))
        return n.rowcount == 1

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (its sessions end) or enable ``name``."""
        with self._transaction() as c:
            n = c.execute("UPDATE accounts SET disabled = ? WHERE name = ?", (int(disabled), name))
            if disabled:
                c.execute("DELETE FROM sessions WHERE account = ?", (name,))
        return n.rowcount == 1

    def unlock(self, name: str) -> bool:
        with self._transaction() as c:
            n = c.execute("UPDATE accounts SET failures = 0, locked = 0 WHERE name = ?", (name,))
        return n.rowcount == 1

    def note_failure(self, name: str, lock_after: int) -> AccountRow | None:
        """One more wrong password in a row for ``name``; locked at ``lock_after``. The row after it."""
        with self._transaction() as c:
            c.execute(
                "UPDATE accounts SET failures = failures + 1, locked = CASE WHEN failures + 1 >= ? THEN 1 "
                "ELSE locked END WHERE name = ?",
                (lock_after, name),
            )
            row = c.execute(f"SELECT {_fields(AccountRow)} FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else AccountRow(*row)

    def note_success(self, name: str) -> AccountRow | None:
        """A right password for ``name``: its wrong ones in a row end. The row after it."""
        with self._transaction() as c:
            c.execute("UPDATE accounts SET failures = 0 WHERE name = ?", (name,))
            row = c.execute(f"SELECT {_fields(AccountRow)} FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else AccountRow(*row)

    # --- sessions ---

    def add_session(self, digest: str, account: str, csrf: str, now: int, expires_ns: int) -> None:
        with self._transaction() as c:
            c.execute("DELETE FROM sessions WHERE expires_ns <= ?", (now,))  # expired ones go as new ones come
            c.execute(
                f"INSERT INTO sessions ({_fields(SessionRow)}) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, account, csrf, now, now, expires_ns),
            )

    def session(self, digest: str) -> SessionRow | None:
        with self._lock:
            if digest in self._ended:
                return None
            row = self._conn.execute(
                f"SELECT {_fields(SessionRow)} FROM sessions WHERE digest = ?", (digest,)
            ).fetchone()
        return None if row is None else SessionRow(*row)

    def touch_session(self, digest: str, now: int) -> None:
        """A session's last visit (on a full disk too: a person at work was logged out for idleness there)."""
        self._written_on_a_full_disk_too(
            lambda c: c.execute("UPDATE sessions SET last_seen_ns = ? WHERE digest = ?", (now, digest))
        )

    def delete_session(self, digest: str) -> None:
        """End a session: at once for this store, whatever becomes of the write, so that a person who logged out
        is not let in again by the cookie they believe ended. Where the deletion cannot be written (a full disk),
        it is kept aside (:class:`EndedSessions`: every store opened later refuses the session) and goes with the
        next write; :class:`SessionEndNotWritten` says whether it could be kept."""
        with self._lock:
            self._ended.add(digest)
            try:  # (the deletion is :meth:`_begin`'s, of every session ended and not yet deleted)
                self._written_on_a_full_disk_too(lambda _: None)
            except sqlite3.Error as e:
                raise SessionEndNotWritten(e, self._kept.note(digest)) from e

    def _written_on_a_full_disk_too(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """``write`` in a transaction; where the disk is full, once more after a checkpoint that waits for nobody
        (PASSIVE: one that waited for a reader held every request at the store's lock), which lets the write-ahead
        log begin again from its start, over pages it already has on the disk: a write as small as a session's
        end or a visit then fits."""
        with self._lock:
            try:
                with self._transaction() as c:
                    write(c)
            except sqlite3.OperationalError as e:
                if not codes.full_disk(e, self.path):
                    raise
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                with self._transaction() as c:
                    write(c)

    # --- tokens ---

    def add_token(self, digest: str, account: str, role: str, label: str, now: int) -> int:
        with self._transaction() as c:
            cur = c.execute(
                "INSERT INTO tokens (digest, account, role, label, created_ns) VALUES (?, ?, ?, ?, ?)",
                (digest, account, role, label, now),
            )
        return int(cur.lastrowid or 0)

    def token(self, digest: str) -> TokenRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_fields(TokenRow)} FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else TokenRow(*row)

    def token_by_id(self, token_id: int) -> TokenRow | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_fields(TokenRow)} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else TokenRow(*row)

    def tokens(self) -> list[TokenRow]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_fields(TokenRow)} FROM tokens ORDER BY id").fetchall()
        return [TokenRow(*r) for r in rows]

    def revoke_token(self, token_id: int, now: int) -> bool:
        """Revoke token ``token_id``; False when there is none, or it was revoked already."""
        with self._transaction() as c:
            n = c.execute("UPDATE tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL", (now, token_id))
        return n.rowcount == 1

    # --- failed logins per client ---

    def throttle(self, client: str) -> ThrottleRow | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_fields(ThrottleRow)} FROM throttle WHERE client = ?", (client,)
            ).fetchone()
        return None if row is None else ThrottleRow(*row)

    def note_client_failure(self, client: str, now: int) -> ThrottleRow:
        """One more failed login answered for ``client`` (a window starts at its first)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO throttle (client, started_ns, failures) VALUES (?, ?, 1) "
                "ON CONFLICT(client) DO UPDATE SET failures = failures + 1",
                (client, now),
            )
            row = c.execute(f"SELECT {_fields(ThrottleRow)} FROM throttle WHERE client = ?", (client,)).fetchone()
        return ThrottleRow(*row)

    def note_client_counted(self, client: str, now: int) -> None:
        """One more login from ``client`` refused unread while it is throttled."""
        with self._transaction() as c:
            c.execute(
                "UPDATE throttle SET counted = counted + 1, first_ns = COALESCE(first_ns, ?), last_ns = ? "
                "WHERE client = ?",
                (now, now, client),
            )

    def throttles_started_by(self, cutoff: int) -> list[ThrottleRow]:
        """The clients' windows started at or before ``cutoff`` (closed, when it is now less the window)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_fields(ThrottleRow)} FROM throttle WHERE started_ns <= ? ORDER BY client", (cutoff,)
            ).fetchall()
        return [ThrottleRow(*r) for r in rows]

    def end_throttle(self, client: str) -> None:
        with self._transaction() as c:
            c.execute("DELETE FROM throttle WHERE client = ?", (client,))
