"""Who is acting: an account the kernel vouches for, never an environment variable.

Two ways to act on an archive (see :mod:`custodes.service`):

- **Through the archive service**, the one process that writes the catalog and
  holds the signing key. It learns each caller's account from the kernel
  (``SO_PEERCRED`` on its Unix socket: the caller's real uid, as PostgreSQL's
  ``peer`` authentication does) and acts as that account for the request.
- **Embedded**, on the folder itself: the process's real uid (``getuid()``,
  not ``LOGNAME``/``USER``, which anyone can set). The CLI does this only as
  the archive's owner, a one-person station.

The policy's ``[people]`` table maps accounts to roles; ``[identity]`` may
give an account another name in the records. A tool that authenticates its
own users (a web front end) runs each of their acts inside
:func:`acting_as`, and answers for that mapping.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Caller", "acting_as", "account_name", "current_caller", "peer_caller", "served"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An account and how custodes knows it: ``peer`` (the kernel, through the service's socket),
    ``process`` (this process's real uid), ``tool`` (a program that authenticated the person itself: a web
    login) or ``token`` (a program that holds an account's API token: no person shown to be there, so it decides
    nothing; custodes.access)."""

    uid: int | None
    account: str
    via: str
    #: The groups the caller's process held (its gid first, then its supplementary groups), as the kernel
    #: reported them; what a folder the caller hands the service is read with (custodes.rights). Empty when
    #: unknown: no group then counts for the caller.
    groups: tuple[int, ...] = ()


_acting: ContextVar[Caller | None] = ContextVar("custodes_acting", default=None)


def account_name(uid: int) -> str:
    """The account name of ``uid``; an account without a passwd entry (a container's stray uid) is ``uid:N``."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def current_caller() -> Caller:
    """Who acts now: the caller the service or a tool set with :func:`acting_as`, else this process's real uid."""
    caller = _acting.get()
    if caller is not None:
        return caller
    uid = os.getuid()
    return Caller(uid, account_name(uid), "process", (os.getgid(), *os.getgroups()))


def served() -> bool:
    """True while acting for a caller of the archive service."""
    caller = _acting.get()
    return caller is not None and caller.via == "peer"


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    """Act as ``caller`` inside the block (this thread or task only)."""
    token = _acting.set(caller)
    try:
        yield caller
    finally:
        _acting.reset(token)


# struct ucred in <sys/socket.h>: pid_t pid; uid_t uid; gid_t gid (three 32-bit ints on Linux).
_UCRED = struct.Struct("3i")
#: SO_PEERGROUPS (Linux 4.13, <asm-generic/socket.h>): the peer's supplementary groups at connect time.
#: Python's socket module does not name it.
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
#: The most bytes Python's getsockopt takes: 256 groups. A caller in more gets ERANGE, and no group credited.
_GROUPS_BYTES = 1024


def peer_caller(conn: socket.socket) -> Caller:
    """The account at the other end of a connected Unix socket, as the kernel recorded it at connect time:
    its uid, and the groups its process held (SO_PEERCRED's gid, SO_PEERGROUPS' supplementary groups)."""
    _pid, uid, gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return Caller(uid, account_name(uid), "peer", (gid, *_peer_groups(conn)))


def _peer_groups(conn: socket.socket) -> tuple[int, ...]:
    """The peer process's supplementary groups, as the kernel holds them: not the group database, which
    says what a fresh login would get (a process may have dropped a group, or never picked up a new one).
    A kernel without SO_PEERGROUPS (or a caller in more than 256 groups) credits none: the caller is then
    held to its gid, never to more."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, _GROUPS_BYTES)
    except OSError:
        return ()
    return struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])


def keeper_advice(archive: str | None, otherwise: str = "") -> str:
    """What to do when the archive's files refuse a person, as fits the mode; the one place that says it.
    In the archive service (already the archive's account) the files' owner or modes are wrong; without
    one, the archive's account works on it, or starts its service for the others (where a service answers,
    the CLI hands it the command before it touches the archive). ``otherwise``: the other remedy (a
    read-only disk remounted), added where the person could apply it."""
    alternative = f", or {otherwise}" if otherwise else ""
    if served():
        return (
            f"the archive service runs as {account_name(os.getuid())}, the archive's account, and is "
            f"still refused: give the archive's files back to that account{alternative}"
        )
    owner = None
    with suppress(OSError):
        owner = os.stat(archive).st_uid if archive else None
    if owner is None or owner == os.getuid():
        return f"run as the account that keeps the archive{alternative}"
    # Another's archive, and no service answered (one that does is handed the command before anything is read).
    name = account_name(owner)
    return (
        f"ask {name} to start its archive service (`custodes serve {archive}` as {name}), which then answers for "
        "everyone; if it listens on another socket, pass --server SOCKET"
    )
