"""SQLite's result codes as custodes reads them: the one place that names them.

An error SQLite raises carries its extended result code (``sqlite_errorcode``); its low byte is the primary code
(sqlite3.h), which says what kind of trouble it was. Those of :data:`ENVIRONMENT` are about the disk or the
files, not the statements: said as such (a full disk, a read-only file) by whoever meets them, never as a fault
of the schema or of custodes."""

from __future__ import annotations

import errno
import os
import sqlite3

from custodes._durable import disk_full

__all__ = ["BUSY", "ENVIRONMENT", "LOCKED", "as_errno", "full_disk", "of_the_environment", "result_code"]

#: FULL, IOERR, READONLY, CANTOPEN, PERM, BUSY, LOCKED: the disk, the files or another process, not the catalog's
#: content (a hostile review: init on a nearly full disk said "bringing its schema from version 3 to 4 failed").
ENVIRONMENT = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    }
)

#: Another connection held the database past the busy timeout, or a table of it.
BUSY, LOCKED = sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED

#: The errno whose remedy fits a primary code: a full disk, or the archive's files taken from its account.
_ERRNO = {
    sqlite3.SQLITE_FULL: errno.ENOSPC,
    sqlite3.SQLITE_READONLY: errno.EACCES,
    sqlite3.SQLITE_PERM: errno.EACCES,
    sqlite3.SQLITE_CANTOPEN: errno.EACCES,
}


def result_code(e: BaseException) -> int:
    """The primary result code of an error SQLite raised; 0 for one that carries none."""
    return (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF


def of_the_environment(e: BaseException) -> bool:
    """SQLite failed for the disk's or the files' sake (:data:`ENVIRONMENT`)."""
    return result_code(e) in ENVIRONMENT


def as_errno(e: BaseException) -> int:
    """The errno whose remedy fits the error (ENOSPC, EACCES), 0 where none does."""
    return _ERRNO.get(result_code(e), 0)


def full_disk(e: BaseException, place: str | os.PathLike[str]) -> bool:
    """SQLite failed because the disk holding ``place`` is full: said so (SQLITE_FULL), or an I/O error on a disk
    with no room left (SQLite's write of its ``-shm`` file meets a full disk as "disk I/O error")."""
    if as_errno(e) == errno.ENOSPC or "disk is full" in str(e):
        return True
    return result_code(e) == sqlite3.SQLITE_IOERR and disk_full(place)
