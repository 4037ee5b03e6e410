"""The archive service: one process keeps the archive; people reach it through a Unix socket.

``custodes serve ARCHIVE`` runs as the archive's own account, the only one
that can read its folders (0700), objects (0400), catalog and signing key
(0600). The same ``custodes`` CLI, run by anyone, finds the socket in the
archive's ``run/`` folder (or ``--server PATH``) and hands the service its
command line. The service learns who is asking from the kernel (``SO_PEERCRED``),
runs the command as that account (:func:`custodes.identity.acting_as`), and
sends back its stdout, stderr and exit code, so a command reads and exits
the same in both modes.

Paths a person names stay that person's:

- an input (a volume to ingest, a task file) is opened by the client, and the
  descriptor is passed with the request: the service reads a file from that
  descriptor, and accepts a folder only if it is the very folder the caller
  could open (device and inode match) and holds nothing the caller could not
  read (:mod:`custodes.rights`), so nobody makes the service read a file for
  them that they cannot read;
- an output (``access open --to``, ``export --to``/``--iso``, ``report --out``)
  is written by the command into the request's outbox (owner-only, see below),
  then streamed to the client, which writes it as the person, never through a link
  (``O_NOFOLLOW|O_EXCL``), never replacing a file, never world-readable.

Each connection has a thread of its own (at most :data:`_MAX_CONNECTIONS`; one
more is told the service is busy), so a caller that stalls (sends nothing,
never reads its answer, never says whether it wrote the outputs) holds up
nobody but itself. The commands themselves run one at a time under one lock:
the catalog takes one writer, and ``sys.stdout``/``sys.stderr`` are redirected
for the command that runs. Their output is spooled (in memory, then in a
temp file of the request's outbox) and sent once the lock is released,
together with the staged outputs. The identity a command acts as is the
contextvar of the thread that runs it (:func:`custodes.identity.acting_as`).

Outboxes (staged inputs and outputs, spooled output) live in the archive's
own ``tmp/outbox/``, named by the service's pid: one left by a service that
died is swept when the next one starts, and an export in it that never
reached its caller is ledgered failed by the export's own rule
(:func:`custodes.export.sweep_undelivered`). One service per archive: it holds
an exclusive lock on ``run/service.lock`` for its life, whatever socket it
listens on.

Frames from the service: one byte of kind, four bytes of length, the payload:
``o``/``e`` stdout/stderr bytes; ``D`` a folder and ``F`` a file to create
(JSON: output name, relative path, mode), ``d`` the file's bytes, ``c`` its
end; ``w``: the client answers ``k`` (every output written) or ``f`` with why not,
and a copy that failed, or that the client never confirmed (it hung up, stalled
past the timeout, or the service stopped), is recorded by the command's own rule
(``open_failed``, ``export_failed``); ``x`` the exit code, last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import ipaddress
import json
import logging
import os
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from custodes._durable import ascii_digits, disk_full, fsync_dir, left_by_dead_process, process_alive, process_tag
from custodes._faults import crashpoint
from custodes.errors import CustodesError
from custodes.identity import Caller, account_name, acting_as, current_caller, peer_caller
from custodes.rights import check_folder, check_writable

if TYPE_CHECKING:
    from custodes.archive import Archive, Policy

__all__ = [
    "SOCKET_NAME",
    "HttpListen",
    "ServiceError",
    "connect",
    "forward",
    "hold_embedded",
    "http_address",
    "request",
    "serve",
    "socket_path",
]

SOCKET_NAME = "custodes.sock"
#: In ARCHIVE/run/: held exclusively by the archive's one service, shared by the owner's CLI working embedded.
_LOCK_NAME = "service.lock"
PROTOCOL = 1
_FRAME = struct.Struct(">cI")
_MAX_HEADER = 1 << 20
_MAX_FDS = 16
_CHUNK = 1 << 20
#: The largest input file (a task list, a policy) the service copies from a caller's descriptor.
_MAX_INPUT = 64 << 20
#: A caller has this long to send its request, to take each frame of the answer, and to say whether it wrote
#: the outputs. Each connection has its own thread, so a caller that stalls holds up only itself (and one of
#: the service's connection slots, until these run out).
_REQUEST_TIMEOUT_S = 5.0
_ANSWER_TIMEOUT_S = 60.0
#: Connections served at once (a thread each); one more is told the service is busy, never queued.
_MAX_CONNECTIONS = 32
#: Connections one account may hold at once: one account alone cannot take every slot (each of its requests
#: still has only _REQUEST_TIMEOUT_S in all to arrive).
_MAX_PER_ACCOUNT = 8
#: The longest reason a client may give for not writing an output (it is shown, never ledgered).
_MAX_REASON = 4096
#: A caller takes its whole answer within _ANSWER_TIMEOUT_S plus one second per this many bytes of it: a
#: reader that takes a byte now and then does not hold its connection for hours.
_MIN_RATE = 1 << 20
#: Connections turned away at once (each answered by a short thread); beyond that one is simply closed.
_MAX_TURNING_AWAY = 16
#: How long a connection beyond the bound is given to send its request before it is told so and closed.
_TURN_AWAY_S = 0.2
#: A command's stdout and stderr are kept in memory up to this, then in a temp file of its outbox.
_SPOOL_MEMORY = 1 << 20
#: On SIGTERM, how long deliveries in flight may still take once the running command has finished.
_STOP_GRACE_S = 5.0
#: The longest secret (a password for `custodes user add|passwd`) a request may carry.
_MAX_SECRET = 4096
#: What the service tells a client when the command hit a bug (as sysexits.h's EX_SOFTWARE).
EXIT_INTERNAL = 70


class ServiceError(CustodesError):
    """The service cannot be started, reached, or understood."""

    kind = "service"


def socket_path(archive: str | os.PathLike[str]) -> Path:
    """Where an archive's service listens by default: ``ARCHIVE/run/custodes.sock``."""
    return Path(archive) / "run" / SOCKET_NAME


# ---- the request being served -------------------------------------------------------------


@dataclass
class Request:
    """One client's request, as the service runs it: the archive served, the caller's working folder (for
    relative paths), the descriptors the caller passed for its input paths, and the staged outputs."""

    archive: Path
    cwd: str
    inputs: dict[str, int]  # the path as the caller gave it -> the descriptor the caller opened it as
    #: The request's outbox, made at its first use (:attr:`outbox`): a command that stages nothing (a verify) then
    #: needs no room, where a new folder takes a block (ext4): through the service on a full disk it failed there.
    place: Path
    #: Each output parameter's name -> (the path the caller named, made absolute; where it is staged).
    outputs: dict[str, tuple[str, Path]] = field(default_factory=dict)
    #: Input files copied from the caller's descriptors: (the path as given, the copy the command reads).
    staged_inputs: list[tuple[str, Path]] = field(default_factory=list)
    #: The regular files (device, inode) of the caller's folders that custodes.rights found the caller could read.
    checked: set[tuple[int, int]] = field(default_factory=set)
    #: What the command asks ledgered if its outputs never reach the caller: (delivery id, entry, the entry's
    #: field for the reason), each also noted in the outbox (:data:`_NOTES`) for the sweep after a crash.
    if_undelivered: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    #: A secret the caller's CLI read from the person (a new password: `custodes user add|passwd`), sent in the
    #: request rather than in argv (which the service logs) or a file (which it stages on disk); never stored.
    secret: str | None = None
    _made: bool = field(default=False, init=False, repr=False)
    _in_memory: list[int] = field(default_factory=list, init=False, repr=False)  # inputs staged in memory (memfd)

    @property
    def outbox(self) -> Path:
        """The request's outbox, made (owner-only) the first time it is asked for."""
        if not self._made:
            self.place.mkdir(mode=0o700, parents=True, exist_ok=True)  # (its folders too, where a full disk kept them)
            self._made = True
        return self.place

    def on_undelivered(self, entry: dict[str, Any], why_field: str) -> None:
        """``entry`` is ledgered, with the reason, if the caller's CLI does not confirm it wrote the outputs: the
        command said what it did, and only the caller can say whether it reached them. Noted durably in the
        outbox first, so a service that dies before the caller confirmed leaves it to the next one."""
        note = (f"{self.outbox.name}/{len(self.if_undelivered)}", entry, why_field)
        line = json.dumps({"delivery": note[0], "entry": entry, "field": why_field}, separators=(",", ":"))
        fd = os.open(self.outbox / _NOTES, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.if_undelivered.append(note)

    def absolute(self, given: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, given))

    def input_path(self, given: str, *, writes: bool = False, by_descriptor: bool = False) -> str:
        """The path the command reads for an input the caller named. A file is read from the descriptor the
        caller passed (the service may have no right to its name) into the outbox; a folder (a volume) is
        walked by name, with the service's rights, once proven to be the folder the caller opened and to
        hold only what the caller could read (custodes.rights.check_folder; refused otherwise)."""
        fd = self.inputs.get(given)
        if fd is None:
            raise ServiceError(f"{given}: the client did not open it; run the command with the custodes CLI")
        opened = os.fstat(fd)
        if stat.S_ISREG(opened.st_mode):
            return self._stage_input(given, fd, opened.st_size)
        if not stat.S_ISDIR(opened.st_mode):  # a FIFO or a device, reopened by name, would block the service
            raise ServiceError(f"{given}: neither a file nor a folder; give a regular file")
        try:
            named = os.stat(self.absolute(given))
        except OSError as e:
            raise ServiceError(
                f"{given}: the archive service cannot reach it ({e.strerror}); a folder it reads (a device volume) "
                "must be readable by the service's account"
            ) from None
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            raise ServiceError(f"{given}: changed while the request was sent; run the command again")
        # Before any driver runs; what bounds an entry swapped after it: custodes.rights ("The race").
        if not (writes or by_descriptor):
            self.checked |= check_folder(self.absolute(given), given, current_caller())
            return self.absolute(given)
        # A folder whose own name matters to nobody (a witness; what ledger publish writes in) is used through
        # the caller's own descriptor: /proc/self/fd/N names the folder itself, not a path, so a folder swapped
        # for a link after the check cannot send the service's reads or writes anywhere else.
        held = f"/proc/self/fd/{fd}"
        self.checked |= check_folder(held, given, current_caller())
        if writes:  # and the caller's right to write in it
            check_writable(held, given, current_caller())
        self.staged_inputs.append((self.absolute(given), Path(held)))
        return held

    def _stage_input(self, given: str, fd: int, size: int) -> str:
        if size > _MAX_INPUT:
            raise ServiceError(f"{given}: {size} bytes is more than the service takes for one file ({_MAX_INPUT})")
        try:
            folder = self.outbox / f"in-{len(self.staged_inputs)}"
            folder.mkdir(mode=0o700)
            staged = folder / (os.path.basename(given.rstrip(os.sep)) or "input")
            with open(staged, "xb") as f:
                _copy_input(given, fd, f)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The archive's disk is full (on ext4 a new folder takes a block): held in memory instead, as large as
            # any input may be (`verify --trusted-key FILE` through the service failed there: a hostile review).
            held = os.memfd_create(f"custodes-input-{len(self.staged_inputs)}", os.MFD_CLOEXEC)
            self._in_memory.append(held)
            with open(held, "wb", closefd=False) as f:
                _copy_input(given, fd, f)
            staged = Path(f"/proc/self/fd/{held}")
        self.staged_inputs.append((given, staged))
        return str(staged)

    def close(self) -> None:
        """Let go of the inputs held in memory (the outbox is removed by the service)."""
        for held in self._in_memory:
            os.close(held)
        self._in_memory.clear()

    def shown_text(self, data: bytes) -> bytes:
        """Error and note lines with each staged path as the caller named it."""
        for given, staged in [*self.staged_inputs, *self.outputs.values()]:
            data = data.replace(os.fsencode(staged), os.fsencode(given))
        return data

    def stage_output(self, given: str, name: str) -> str:
        """Where the command writes the output ``name`` the caller named: a fresh place in the outbox."""
        try:
            staged = self.outbox / str(len(self.outputs)) / "out"
            staged.parent.mkdir(mode=0o700)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # (Where a new folder takes a block, ext4: the command would have said the same at its first write.)
            raise CustodesError(
                f"cannot write {self.absolute(given)}: it is made first on the archive's disk, which is full "
                f"({self.place.parent}): free space there, then run the command again"
            ) from e
        self.outputs[name] = (self.absolute(given), staged)
        return str(staged)

    def is_staged(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is one of this request's staged outputs (or inside one)."""
        try:
            resolved = Path(path).resolve()
        except OSError:  # changed while it was resolved: not a staged output, whose folders nobody else touches
            return False
        staged = [p.resolve() for _given, p in self.outputs.values()]
        return any(resolved == p or p in resolved.parents for p in staged)

    def shown(self, path: str | os.PathLike[str]) -> str:
        """A staged path as the caller named it (for the lines a command prints)."""
        text = os.fspath(path)
        for given, staged in [*self.staged_inputs, *self.outputs.values()]:
            if text == str(staged) or text.startswith(f"{staged}{os.sep}"):
                return given + text[len(str(staged)) :]
        return text


_request: ContextVar[Request | None] = ContextVar("custodes_request", default=None)


def request() -> Request | None:
    """The request being served, or None outside the service (the CLI on its own, or the library)."""
    return _request.get()


# ---- the service ------------------------------------------------------------------------


@dataclass
class _Service:
    """What the connection threads share: the archive served, the lock every command runs under (the catalog
    takes one writer, and sys.stdout/sys.stderr are redirected for one command at a time), and whether the
    service is stopping (a command not yet started then is refused)."""

    root: Path
    commands: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    #: The connections being answered (their threads' own), so a stop can cut off those that outstay it.
    open: set[socket.socket] = field(default_factory=set)
    #: Open connections per account (uid), under ``guard``.
    per_account: dict[int | None, int] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)
    #: The policy in force (read at the start and after every command): an account without a role in it gets
    #: one connection at a time, so accounts nobody answers for cannot take the service's slots.
    policy: Policy | None = None

    def has_role(self, account: str) -> bool:
        from custodes.access import ROLES, person_of

        if self.policy is None:
            return True
        people = self.policy.extra.get("people", {})
        return isinstance(people, dict) and people.get(person_of(self.policy, account)) in ROLES


def outbox_root(archive: str | os.PathLike[str]) -> Path:
    """Where the service stages each request's files: ``ARCHIVE/tmp/outbox/``, owner-only like all of it."""
    return Path(archive) / "tmp" / "outbox"


@dataclass(frozen=True)
class HttpListen:
    """Where the service also serves the review page and HTTP API (custodes.web): an address, the TLS
    certificate and key files uvicorn serves HTTPS with (None: plain HTTP, for loopback or a reverse proxy), and
    whether a reverse proxy on this host is in front (``behind_proxy``): only then is its X-Forwarded-For
    believed, from loopback. Without one every local process is a loopback client, and believing the header
    would let any of them name the address the access log records and the login throttle counts."""

    host: str
    port: int
    cert: str | None = None
    key: str | None = None
    behind_proxy: bool = False

    @property
    def address(self) -> str:
        """``HOST:PORT`` as --http takes it (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://{self.address}/"


def http_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (loopback: 127.0.0.1) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (port.isdigit() and 0 < int(port) < 65536) or not host:
        raise ServiceError(f"--http {value!r}: give HOST:PORT (127.0.0.1:8470, [::1]:8470) or PORT, a port 1-65535")
    return host, int(port)


def _refuse_plain_http_off_loopback(http: HttpListen) -> None:
    """Plain HTTP only on loopback (a reverse proxy on the same host, or a person on the station): elsewhere the
    passwords, session cookies and tokens would cross the network in clear, and a browser keeps no Secure cookie
    from a plain-HTTP site that is not loopback, so nobody could even log in."""
    if http.cert is not None or http.host == "localhost":
        return
    try:
        if ipaddress.ip_address(http.host).is_loopback:
            return
    except ValueError:
        pass  # a host name: it may stand for any address
    raise ServiceError(
        f"--http {http.address}: plain HTTP only on loopback (127.0.0.1, ::1, localhost); on the network "
        "give --tls-cert and --tls-key, or listen on loopback behind a reverse proxy that terminates TLS"
    )


def _start_http(service: _Service, http: HttpListen) -> tuple[Any, threading.Thread]:
    """The web application (custodes.web) run by uvicorn in a thread of this process, its writes under the
    service's command lock. The address is bound and the certificate read here, so a port taken or a bad key
    file stops the start with one line, not a thread's traceback later."""
    import ssl

    import uvicorn

    from custodes.web import create_app

    app = create_app(service.root, lock=service.commands, secure_cookies=True)
    web_log_to_service_log()
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        ssl_certfile=http.cert,
        ssl_keyfile=http.key,
        lifespan="on",  # custodes.web's lifespan bounds the routes' threads (custodes.web.READERS)
        log_level="warning",
        server_header=False,
        proxy_headers=http.behind_proxy,
        forwarded_allow_ips="127.0.0.1,::1",
        timeout_graceful_shutdown=int(_STOP_GRACE_S),
    )
    try:
        config.load()
    except (OSError, ssl.SSLError) as e:
        raise ServiceError(f"--tls-cert {http.cert} / --tls-key {http.key}: cannot use them ({e})") from None
    family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((http.host, http.port))
    except OSError as e:
        sock.close()
        raise ServiceError(f"--http {http.host}:{http.port}: cannot listen there ({e.strerror})") from None
    sock.listen(128)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="custodes-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise ServiceError(f"the web server on {http.url} did not start; see the service's log")
    return server, thread


def serve(
    archive: str | os.PathLike[str],
    listen: str | os.PathLike[str] | None = None,
    on_ready: Callable[[Path, Path], None] | None = None,
    http: HttpListen | None = None,
) -> None:
    """Serve ``archive`` on its socket until SIGTERM or SIGINT. Only the archive's owner may serve it, and only
    one service at a time. ``on_ready(archive, socket)`` is called once the socket accepts connections (and the
    web server, when ``http`` says where, accepts its own: custodes.web in a thread, sharing the command lock)."""
    from custodes.archive import open_archive

    if http is not None:
        _refuse_plain_http_off_loopback(http)
    root = Path(archive).absolute()
    owner = os.stat(root).st_uid
    if owner != os.getuid():
        raise ServiceError(
            f"{root} belongs to {account_name(owner)}; run `custodes serve` as that account (the service "
            "is the one process that reads the archive and holds its signing key)"
        )
    os.umask(0o077)
    path = Path(listen) if listen is not None else socket_path(root)
    held = _hold_archive(root, path)  # noqa: F841 - the lock is the open descriptor, held until the process ends
    with contextlib.closing(open_archive(root)) as opened:  # a damaged archive is refused now, not at a request
        _sweep_outboxes(opened)
        policy_in_force = opened.policy
    if listen is None:
        os.chmod(root, 0o711)  # people reach run/ through the archive folder, without seeing what else is there
    server = _bind(path)
    service = _Service(root, policy=policy_in_force)

    def stop(_signum: int, _frame: Any) -> None:
        service.stopping.set()
        server.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # After the handlers: a SIGTERM once the web server answers stops the service as it should.
    web = _http_beside(service, http, server, path, listen is None)
    if on_ready is not None:
        on_ready(root, path)
    slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
    threads: list[threading.Thread] = []
    try:
        while not service.stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError as e:
                if service.stopping.is_set():
                    break
                if e.errno in _SHORT_OF_RESOURCES:  # out of descriptors or memory for now: never a reason to stop
                    _log(f"cannot take a connection now ({e.strerror}); waiting")
                    time.sleep(0.1)
                    continue
                raise
            caller = _peer(conn)
            if caller is None:
                continue
            most = _MAX_PER_ACCOUNT if service.has_role(caller.account) else 1
            if not _admit(service, caller.uid, most):
                _turn_away(conn, f"{caller.account} has {most} request(s) open already; try again")
                continue
            if not slots.acquire(blocking=False):
                _leave(service, caller.uid)
                _turn_away(conn, f"the archive service is busy ({_MAX_CONNECTIONS} requests at once); try again")
                continue
            thread = threading.Thread(target=_connection, args=(service, conn, caller, slots), daemon=True)
            thread.start()
            threads = [t for t in threads if t.is_alive()] + [thread]
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _finish_with_http(service, threads, web)
        if listen is None:
            os.chmod(root, 0o700)  # owner-only again: with no service, nobody else has business in it


def _http_beside(
    service: _Service, http: HttpListen | None, server: socket.socket, path: Path, chmodded: bool
) -> tuple[Any, threading.Thread] | None:
    """The web server beside the socket when ``http`` asks for one; if it cannot start, the socket is closed
    and removed (and the archive owner-only again) before the error goes up: nothing half-started is left."""
    if http is None:
        return None
    try:
        return _start_http(service, http)
    except BaseException:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if chmodded:
            os.chmod(service.root, 0o700)
        raise


def _finish_with_http(
    service: _Service, threads: list[threading.Thread], web: tuple[Any, threading.Thread] | None
) -> None:
    """:func:`_finish`, the web server first told to take no new request (those under way finish: a write
    holds the command lock, which :func:`_finish` waits for), and its thread given a grace to end."""
    if web is not None:
        web[0].should_exit = True
    _finish(service, threads)
    if web is not None:
        web[1].join(_STOP_GRACE_S * 2)


def _finish(service: _Service, threads: list[threading.Thread]) -> None:
    """On the way out: the command that runs finishes (however long it takes: it writes the ledger), and
    deliveries in flight get :data:`_STOP_GRACE_S`. Connections still open then are cut off, so each thread
    records its delivery as failed (the command's own rule) within another grace; an outbox left even so is
    swept at the next start. Leaves holding the lock, so nothing of a command is midway when the process ends."""
    service.stopping.set()
    with service.commands:
        pass
    for cut_off in (False, True):
        if cut_off:
            with service.guard:
                for conn in service.open:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_GRACE_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    service.commands.acquire()


def _open_lock(path: Path, flags: int) -> int:
    """The service's lock file, opened without following a link or waiting on a FIFO planted there (either
    hung or crashed every command, a hostile review): anything but a regular file is an error naming it."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise ServiceError(f"{path} is a symbolic link: remove it (the service makes its lock file again)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ServiceError(f"{path} is not a regular file: remove it (the service makes its lock file again)")
    return fd


def _hold_archive(root: Path, listen: Path) -> int:
    """The exclusive lock of the archive's one service (``run/service.lock``), whatever socket it listens on:
    two services would be two writers, and so would a service and the owner's CLI working embedded (which
    holds the lock shared, :func:`hold_embedded`). Returns the descriptor that holds it; a second service is
    told who has it."""
    from custodes.storage import own_folder

    run = root / "run"
    own_folder(run, 0o755)  # never a link: its mode is changed below
    os.chmod(run, 0o755)  # the default socket is there, for everyone
    fd = _open_lock(run / _LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        if holder is None:
            why = "a custodes command works on it directly; start the service once it is done"
        else:
            why = f"already served (by {holder}); stop that service first"
        raise ServiceError(f"{root}: {why}") from None
    os.ftruncate(fd, 0)
    try:
        os.pwrite(fd, f"pid {os.getpid()} on {listen.absolute()}\n".encode("utf-8", "surrogateescape"), 0)
    except OSError as e:
        # On a full disk the lock holds all the same: only who holds it goes unsaid (a second service is told a
        # command has it). The service then answers what reads the archive as it is (catalog.connect).
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            os.close(fd)
            raise
    return fd


def _holder(fd: int) -> str | None:
    """Who holds the lock, as the service that took it wrote it ("pid N on SOCKET"); None when that service
    is gone (the text is left by it) and the holder is a command working embedded."""
    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    pid = holder.split(" ")[1] if holder.startswith("pid ") else ""
    return holder if ascii_digits(pid) and process_alive(int(pid)) else None


#: The descriptors by which this process holds archives' service locks shared (the CLI working embedded).
_EMBEDDED: dict[Path, int] = {}


def hold_embedded(archive: str | os.PathLike[str]) -> None:
    """The owner's CLI working on the archive directly holds its service lock shared for the rest of the
    process: it refuses while a service serves the archive on another socket (``--socket``, which the CLI
    does not find by itself), and a service does not start while it works. No lock file: never served."""
    root = Path(archive).absolute()
    if root in _EMBEDDED:
        return
    try:
        fd = _open_lock(root / "run" / _LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd) or "a service"
        os.close(fd)
        listen = holder.partition(" on ")[2] or "SOCKET"
        raise ServiceError(
            f"{archive}: served (by {holder}); a command works on it through that service: pass --server {listen}"
        ) from None
    _EMBEDDED[root] = fd


def _sweep_outboxes(archive: Archive) -> None:
    """Remove the outboxes of services that died, first ledgering what never reached its caller, so the ledger
    never reads as if it had: the entries the command noted for an undelivered output (a view's
    ``open_failed``, an export's ``export_failed``, see :meth:`Request.on_undelivered`), or, where a crash came
    before the note, what the export's own rule finds in its staging folder or bag
    (:func:`custodes.export.sweep_undelivered`)."""
    from custodes.access import record_undelivered
    from custodes.export import sweep_undelivered
    from custodes.storage import own_folder

    folder = outbox_root(archive.root)
    own_folder(folder)
    for old in sorted(folder.iterdir()):
        if old.is_symlink() or not old.is_dir():
            old.unlink()  # no service made it: never followed (a hostile review: one led the sweep outside)
            continue
        try:
            written = old.lstat().st_mtime_ns
        except OSError:
            continue  # gone meanwhile
        if not left_by_dead_process(old.name, written):
            continue
        if (old / _NOTES).is_file():  # gone once the caller confirmed; sent or not, say what became of it
            why = "the archive service stopped before the caller confirmed it had written it"
            record_undelivered(archive.root, _read_notes(old / _NOTES), why, sent=(old / _SENT).exists())
        elif (old / _SENT).exists():
            pass  # confirmed, or sent by a command that noted nothing
        else:
            for output in sorted(old.iterdir()):
                if output.name.isdigit():  # an output's folder (see Request.stage_output): its bag, or its staging
                    sweep_undelivered(archive, output / "out")
        shutil.rmtree(old, ignore_errors=True)


#: The file in an outbox that notes what to ledger if its outputs never reach the caller (JSON lines).
_NOTES = "undelivered.jsonl"


def _read_notes(path: Path) -> list[tuple[str, dict[str, Any], str]]:
    """The notes of an outbox; a line a crash cut short (the last, unsynced) is left out: its copy was never
    sent, since a note is synced before the command goes on."""
    notes = []
    for line in path.read_bytes().splitlines():
        try:
            n = json.loads(line)
            notes.append((str(n["delivery"]), dict(n["entry"]), str(n["field"])))
        except (ValueError, KeyError, TypeError):
            _log(f"{path}: a note cut short is left out: {line[:80]!r}")
    return notes


def _bind(path: Path) -> socket.socket:
    """Listen on ``path``; a socket left by a service that died is replaced, a live one is not."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ServiceError(f"{path}: exists and is not a socket; move it away, then start the service")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
        else:
            raise ServiceError(f"{path}: a service already answers there; stop it first")
        finally:
            probe.close()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    # Anyone may connect: who they are comes from the kernel, and what they may do from the policy's roles.
    os.chmod(path, 0o666)
    server.listen(16)
    return server


def _log(line: str) -> None:
    """A line for the service's own log. Never sys.stderr: while a command runs, that is the command's."""
    print(f"custodes: {line}", file=sys.__stderr__, flush=True)


def web_log_to_service_log() -> None:
    """The web's log lines (custodes.web: an internal error with its traceback) into the service's own log, as
    :func:`_log` writes it. With no handler of its own, logging's last resort writes to ``sys.stderr``, which is a
    client's while one of its commands runs: a person's web request's traceback went to whoever's command was
    running, and not into the log (a second hostile review)."""
    web = logging.getLogger("custodes.web")
    if not any(isinstance(h, _ServiceLog) for h in web.handlers):
        handler = _ServiceLog(sys.__stderr__)
        handler.setFormatter(logging.Formatter("custodes: %(name)s: %(message)s"))
        web.addHandler(handler)
    web.propagate = False


class _ServiceLog(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`web_log_to_service_log` adds (once, whatever the number of web servers started)."""


_turning_away = threading.BoundedSemaphore(_MAX_TURNING_AWAY)


def _turn_away(conn: socket.socket, why: str) -> None:
    """Answer a connection beyond a bound with one error line and exit 2, in a short thread of its own, so the
    accept loop never waits on it; beyond :data:`_MAX_TURNING_AWAY` at once, the connection is just closed."""
    _log(why)
    if not _turning_away.acquire(blocking=False):
        conn.close()
        return
    threading.Thread(target=_answer_turned_away, args=(conn, why), daemon=True).start()


def _answer_turned_away(conn: socket.socket, why: str) -> None:
    """Its request is taken first (a moment only), so the client's send completes and it reads the answer."""
    try:
        _turned_away(conn, why)
    finally:
        _turning_away.release()


def _turned_away(conn: socket.socket, why: str) -> None:
    with conn:
        conn.settimeout(_TURN_AWAY_S)
        with contextlib.suppress(OSError):
            _data, fds, _flags, _addr = socket.recv_fds(conn, 65536, _MAX_FDS)
            for fd in fds:
                os.close(fd)
        with contextlib.suppress(OSError):
            _send(conn, b"e", f"custodes: {why}\n".encode())
            _send(conn, b"x", struct.pack(">i", 2))


#: accept(2) errors that pass: the process is short of descriptors or memory for a moment.
_SHORT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED})


def _peer(conn: socket.socket) -> Caller | None:
    """Who connected (the kernel says); None, with the connection closed, when it cannot say."""
    try:
        return peer_caller(conn)
    except OSError as e:
        _log(f"a connection whose peer is unknown was closed: {e}")
        conn.close()
        return None


def _admit(service: _Service, uid: int | None, most: int) -> bool:
    """Count one more connection of ``uid``, unless it holds ``most`` already."""
    with service.guard:
        held = service.per_account.get(uid, 0)
        if held >= most:
            return False
        service.per_account[uid] = held + 1
        return True


def _leave(service: _Service, uid: int | None) -> None:
    with service.guard:
        service.per_account[uid] -= 1
        if not service.per_account[uid]:
            del service.per_account[uid]


def _connection(service: _Service, conn: socket.socket, caller: Caller, slots: threading.BoundedSemaphore) -> None:
    with service.guard:
        service.open.add(conn)
    with conn:
        try:
            _answer(service, conn, caller)
        finally:
            # Given back before the connection closes: a caller that reads its answer to the end may connect
            # again at once, and must find its place free.
            with service.guard:
                service.open.discard(conn)
            _leave(service, caller.uid)
            slots.release()


def _answer(service: _Service, conn: socket.socket, caller: Caller) -> None:
    """Serve one connection; whatever goes wrong ends this request only, never the service."""
    fds: list[int] = []
    try:
        header, fds = _read_request(conn)
        conn.settimeout(_ANSWER_TIMEOUT_S)
        _run(service, conn, caller, header, fds)
    except Exception as e:  # noqa: BLE001 - a request, however malformed (JSON nested 100,000 deep), never ends the service
        from custodes.cli import environment_error

        _log(f"a request failed: {type(e).__name__}: {e}")
        # A full disk, a busy catalog: the CLI's one line for it (a refusal the full disk kept from the ledger
        # was "database or disk is full", SQLite's words: a hostile review).
        said = environment_error(e, os.fspath(service.root)) or str(e)
        with contextlib.suppress(OSError):
            _send(conn, b"e", f"custodes: the archive service could not answer: {said}\n".encode())
            _send(conn, b"x", struct.pack(">i", 2))
    finally:
        for fd in fds:
            os.close(fd)


def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request and the descriptors passed with it, within :data:`_REQUEST_TIMEOUT_S` in all (a byte now
    and then does not keep a connection open). The descriptors are closed here if the request is refused."""
    deadline = time.monotonic() + _REQUEST_TIMEOUT_S
    conn.settimeout(_REQUEST_TIMEOUT_S)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, _MAX_FDS)
    try:
        return _parse_request(conn, data, fds, deadline)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _parse_request(
    conn: socket.socket, data: bytes, fds: list[int], deadline: float
) -> tuple[dict[str, Any], list[int]]:
    while not data.endswith(b"\n"):
        if len(data) > _MAX_HEADER:
            raise ServiceError("the request is too long")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceError(f"the request did not arrive within {_REQUEST_TIMEOUT_S:g} s")
        conn.settimeout(left)
        try:
            more = conn.recv(65536)
        except TimeoutError:
            raise ServiceError(f"the request did not arrive within {_REQUEST_TIMEOUT_S:g} s") from None
        if not more:
            raise ServiceError("the client hung up before its request was complete")
        data += more
    header = json.loads(data)
    if not isinstance(header, dict) or header.get("v") != PROTOCOL:
        raise ServiceError(f"this service speaks protocol {PROTOCOL}; use the custodes CLI of the same version")
    argv, cwd, inputs = header.get("argv"), header.get("cwd"), header.get("inputs")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(cwd, str)):
        raise ServiceError("a malformed request (argv and cwd)")
    if not (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs) and len(inputs) == len(fds)):
        raise ServiceError("a malformed request (each input path needs its descriptor)")
    secret = header.get("secret")
    if secret is not None and not (isinstance(secret, str) and len(secret) <= _MAX_SECRET):
        raise ServiceError(f"a malformed request (a secret is a string of at most {_MAX_SECRET} characters)")
    return header, fds


def _new_outbox(root: Path) -> Path:
    """A fresh outbox's name for one request, named by this process (so the next service knows a dead one's); the
    request makes it at its first use (:attr:`Request.outbox`)."""
    from custodes.storage import own_folder

    folder = outbox_root(root)
    try:
        own_folder(folder.parent)  # the spool, made again where someone removed it while the service ran
        own_folder(folder)  # never a link: requests' outboxes are made in it and swept from it
    except OSError as e:
        # Not made on a full disk (on ext4 a new folder takes a block): a command that stages nothing goes on, one
        # that does says the disk is full (Request.stage_output; an input is held in memory) (a hostile review).
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
    return folder / f"{process_tag()}-{time.time_ns()}-{os.urandom(4).hex()}"


def _run(service: _Service, conn: socket.socket, caller: Caller, header: dict[str, Any], fds: list[int]) -> None:
    from custodes.cli import main, served_command

    root = service.root
    argv: list[str] = header["argv"]
    command = served_command(argv)
    if command is None:  # a raw client may send anything: the service runs archive commands only
        raise ServiceError(f"it runs only commands on its archive, not `custodes {' '.join(argv[:2])}`")
    here = os.stat(root)
    if header.get("archive") != [here.st_dev, here.st_ino]:  # --server names a socket, ARCHIVE the archive
        raise ServiceError(f"it serves {root}, not the archive the command names; name that archive, or its socket")
    outbox = _new_outbox(root)
    settled = True  # False while a delivery that failed is not yet recorded: the outbox is then left for the sweep
    req = Request(root, header["cwd"], dict(zip(header["inputs"], fds, strict=True)), outbox)
    try:
        req.secret = header.get("secret")
        # Kept in memory whole where the archive's disk is full (a verify through the service listing thousands of
        # findings failed there, its answer lost: a hostile review).
        # Past its memory a spool goes to a temp file with no name in the outboxes' folder, which is there but
        # where the disk is full, and there it stays in memory.
        spooled = 0 if disk_full(root) else _SPOOL_MEMORY
        with tempfile.SpooledTemporaryFile(spooled, dir=os.fspath(outbox.parent)) as spool:
            with service.commands:
                if service.stopping.is_set():
                    raise ServiceError("it is stopping; run the command again once it is back")
                _log(f"{caller.account}: {' '.join(argv[:2])}")
                code = _as_caller(req, caller, spool, lambda: _gate(root, command) or _exit_code(main, argv))
                _reread_policy(service)  # a command may have put another in force
            if not (req.outputs and any(staged.exists() for _given, staged in req.outputs.values())):
                _send_spooled(conn, spool)
            else:
                crashpoint("service_before_delivery")
                settled = False
                unsent, unconfirmed = _deliver(conn, req, spool)
                if unsent is not None:
                    with service.commands:  # recording it writes the ledger: one writer, as for a command
                        code = _as_caller(req, caller, spool, lambda: _undelivered(req, *unsent, code))
                elif unconfirmed is not None:
                    with service.commands:
                        code = _as_caller(req, caller, spool, lambda: _unconfirmed(req, unconfirmed, code))
                else:
                    (req.outbox / _NOTES).unlink(missing_ok=True)  # confirmed: nothing for a sweep to record
                settled = True
                _send_spooled(conn, spool)
        _send(conn, b"x", struct.pack(">i", code))
    finally:
        req.close()
        if settled:
            shutil.rmtree(outbox, ignore_errors=True)


def _copy_input(given: str, fd: int, f: IO[bytes]) -> None:
    """The caller's file ``given`` (open as ``fd``) copied into ``f``, at most :data:`_MAX_INPUT` bytes."""
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        offset += len(chunk)
        if offset > _MAX_INPUT:
            raise ServiceError(f"{given}: grew past {_MAX_INPUT} bytes while it was read")
        f.write(chunk)


def _reread_policy(service: _Service) -> None:
    from custodes.archive import open_archive

    try:
        with contextlib.closing(open_archive(service.root)) as archive:
            service.policy = archive.policy
    except CustodesError as e:  # the next command says what is wrong; the slots keep the policy read last
        _log(f"the policy could not be read again: {e}")


def _gate(root: Path, command: str) -> int:
    """The role gate (:func:`custodes.access.require_role_to_serve`), before the command line is even parsed:
    parsing opens and checks the caller's folders (custodes.rights), which nobody without the role should make
    the service do. 0 when the caller may go on; a refusal (logged by the gate) is one line and exit 1, as the
    CLI says it."""
    from custodes.access import AccessDenied, require_role_to_serve
    from custodes.archive import open_archive

    try:
        archive = open_archive(root)
    except CustodesError:
        return 0  # an archive that cannot be opened: the command says so, in the CLI's words, when it opens it
    with contextlib.closing(archive):
        try:
            require_role_to_serve(archive, command)
        except AccessDenied as e:
            print(f"custodes: refused: {e}", file=sys.stderr)
            return 1
        except CustodesError as e:
            # Refused all the same, as an error (exit 2): a refusal the archive could not record (a full disk, an
            # unreadable key) was taken for an archive the command would explain, and let an account with no role
            # through to every command, `retention status` and verify among them (a third hostile review).
            print(f"custodes: {e}", file=sys.stderr)
            return 2
    return 0


def _as_caller(req: Request, caller: Caller, spool: IO[bytes], work: Callable[[], int]) -> int:
    """``work()`` as the caller, for this request, its stdout and stderr spooled as frames (under the lock)."""
    token = _request.set(req)
    try:
        with acting_as(caller), _redirected(spool, req):
            return work()
    finally:
        _request.reset(token)


def _send_spooled(conn: socket.socket, spool: IO[bytes]) -> None:
    """Send the frames a command wrote into ``spool`` (outside the lock: a slow reader holds up only itself)."""
    spool.seek(0)
    while chunk := spool.read(_CHUNK):
        _pace(conn)
        conn.sendall(chunk)
    spool.seek(0)
    spool.truncate()


def _deliver(conn: socket.socket, req: Request, spool: IO[bytes]) -> tuple[tuple[str, str] | None, str | None]:
    """Send what the command printed, stream the staged outputs and ask the client whether it wrote every one.
    Returns (unsent, unconfirmed): ``unsent`` (why, for the record; the line for the caller) when the connection
    failed before any byte of an output left the service; ``unconfirmed`` (the line for the caller) when bytes
    did leave but the client did not confirm it wrote them all.

    Only the first is ledgered as not delivered (the command's own rule: ``open_failed``, ``export_failed``).
    Whatever the client says once bytes have left, the service cannot know what the caller kept: the client is
    the caller's own program, which could keep every byte and still say it failed, or hang up one byte short.
    So a copy sent in full or in part stays recorded as handed over; the caller is told so."""
    size = spool.seek(0, os.SEEK_END) + sum(_staged_size(staged) for _given, staged in req.outputs.values())
    _delivery.deadline = time.monotonic() + _ANSWER_TIMEOUT_S + size / _MIN_RATE
    try:
        return _delivered(conn, req, spool)
    finally:
        del _delivery.deadline


def _staged_size(staged: Path) -> int:
    if staged.is_file():
        return staged.stat().st_size
    return sum(p.stat().st_size for p in staged.rglob("*") if p.is_file() and not p.is_symlink())


def _delivered(conn: socket.socket, req: Request, spool: IO[bytes]) -> tuple[tuple[str, str] | None, str | None]:
    try:
        _send_spooled(conn, spool)
        if _hung_up(conn):
            raise ServiceError("the client hung up before its outputs were sent")
    except (OSError, ServiceError) as e:
        reason = _failure(e)
        _log(f"a delivery failed before any output was sent: {reason}")
        return (f"not sent: the connection ended before the copy was sent ({reason})", reason), None
    _mark_sent(req.outbox)
    try:
        _ship_outputs(conn, req)
        said = _await_delivery(conn)
    except (OSError, ServiceError) as e:
        said = f"the connection ended before the caller confirmed it was written ({_failure(e)})"
    if said is not None:
        _log(f"a delivery was not confirmed: {said}")
    return None, said


def _hung_up(conn: socket.socket) -> bool:
    """Whether the client has closed its connection both ways (POLLHUP; a client that only stopped writing
    still reads): then no output is sent at all."""
    poller = select.poll()
    poller.register(conn, select.POLLHUP | select.POLLERR)
    return any(events & (select.POLLHUP | select.POLLERR) for _fd, events in poller.poll(0))


def _failure(e: BaseException) -> str:
    return "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__


#: In an outbox: its outputs began to leave the service, so what they hold counts as handed over (see _deliver).
_SENT = "sent"


def _mark_sent(outbox: Path) -> None:
    """Note, durably, that outputs begin to leave: the sweep after a crash then records nothing as undelivered."""
    fd = os.open(outbox / _SENT, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(outbox)


def _await_delivery(conn: socket.socket) -> str | None:
    """Ask the client whether it wrote every output; None when it did, else its reason (shown, never kept)."""
    _send(conn, b"w", b"")
    head = _recv_exact(conn, _FRAME.size)
    kind, length = _FRAME.unpack(head)
    if length > _MAX_REASON:
        raise ServiceError(f"the client's answer is {length} bytes long; it says in at most {_MAX_REASON}")
    reason = _recv_exact(conn, length).decode("utf-8", "replace")
    return None if kind == b"k" else reason or "the copy failed"


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        _pace(conn)
        more = conn.recv(n - len(data))
        if not more:
            raise ServiceError("the client hung up before it said whether it wrote the outputs")
        data += more
    return data


def _unconfirmed(req: Request, said: str, code: int) -> int:
    """Bytes left the service, but the caller's CLI did not confirm it wrote them (see :func:`_deliver`): the
    copy stays recorded as handed over, with what the CLI said."""
    from custodes.access import record_undelivered

    record_undelivered(req.archive, req.if_undelivered, said, sent=True)
    print(f"custodes: {said}; the copy was sent, so the archive records it as handed over to you", file=sys.stderr)
    return 2 if code == 0 else code


def _undelivered(req: Request, why: str, reason: str, code: int) -> int:
    """The caller could not write what the command made: record it as the command asked, and say so."""
    from custodes.access import record_undelivered

    record_undelivered(req.archive, req.if_undelivered, why)
    print(f"custodes: {reason}; nothing was left there", file=sys.stderr)
    return 2 if code == 0 else code


def _exit_code(main: Any, argv: list[str]) -> int:
    try:
        main.main(args=argv, prog_name="custodes", standalone_mode=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except Exception:  # a bug: the caller gets one line, the service's log the traceback
        traceback.print_exc(file=sys.__stderr__)
        print("custodes: internal error in the archive service (its log has the details)", file=sys.stderr)
        return EXIT_INTERNAL
    return 0


class _FrameWriter(io.RawIOBase):
    """A byte stream written as frames of one kind (``o`` or ``e``) into the request's spool, each passed
    through ``shown`` first."""

    def __init__(self, sink: IO[bytes], kind: bytes, shown: Callable[[bytes], bytes]) -> None:
        self.sink, self.kind, self.shown = sink, kind, shown

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        if data:
            payload = self.shown(data)
            self.sink.write(_FRAME.pack(self.kind, len(payload)) + payload)
        return len(data)


@contextlib.contextmanager
def _redirected(sink: IO[bytes], req: Request) -> Iterator[None]:
    """stdout and stderr of the command go to the client, as they would to its terminal (spooled in ``sink``
    until the command is done). Lines on stderr name staged paths as the caller named them; stdout is data
    (JSON among it), which the commands print with :func:`custodes.cli.shown_path` themselves, so it is sent
    as written."""
    saved = sys.stdout, sys.stderr
    out, err = (
        io.TextIOWrapper(
            io.BufferedWriter(_FrameWriter(sink, kind, shown)), "utf-8", "backslashreplace", write_through=True
        )
        for kind, shown in ((b"o", lambda data: data), (b"e", req.shown_text))
    )
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        for stream in (out, err):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved


def _send(conn: socket.socket, kind: bytes, payload: bytes) -> None:
    _pace(conn)
    conn.sendall(_FRAME.pack(kind, len(payload)) + payload)


#: Per connection thread: when its delivery must be done by (time.monotonic()), or absent.
_delivery = threading.local()


def _pace(conn: socket.socket) -> None:
    """Before each send or read of a delivery: the time left of the whole of it (see :data:`_MIN_RATE`)."""
    deadline = getattr(_delivery, "deadline", None)
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the caller took longer than its answer allows")
    conn.settimeout(min(left, _ANSWER_TIMEOUT_S))


def _ship_outputs(conn: socket.socket, req: Request) -> None:
    """Stream what the command staged to the client: folders first, then each file's bytes."""
    for name, (_given, staged) in req.outputs.items():
        if staged.is_file():
            _ship_file(conn, name, "", staged)
            continue
        if not staged.is_dir():
            continue  # the command wrote nothing there (it failed, or the output was optional)
        for dirpath, dirnames, filenames in os.walk(staged):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, staged)
            rel_dir = "" if rel_dir == "." else rel_dir
            _send(conn, b"D", json.dumps({"output": name, "rel": rel_dir}).encode())
            for file in sorted(filenames):
                _ship_file(conn, name, os.path.join(rel_dir, file), Path(dirpath) / file)


def _ship_file(conn: socket.socket, output: str, rel: str, path: Path) -> None:
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        _send(conn, b"F", json.dumps({"output": output, "rel": rel, "mode": stat.S_IMODE(mode)}).encode())
        while chunk := f.read(_CHUNK):
            _send(conn, b"d", chunk)
    _send(conn, b"c", b"")


# ---- the client ---------------------------------------------------------------------------


def connect(listen: str | os.PathLike[str], archive: str, *, required: bool) -> socket.socket | None:
    """A connection to the service of ``archive`` at ``listen``; None when none answers there and ``required``
    is False (no socket, or one a stopped service left behind: the CLI then works embedded). Whatever answers
    must run as the archive's owner (the kernel says who, as it tells the service who calls): a socket anyone
    else planted gets neither the command, nor a descriptor, nor trust in what it prints."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.fspath(listen))
    except OSError as e:
        conn.close()
        if required:
            raise ServiceError(
                f"{os.fspath(listen)}: no archive service answers there ({e.strerror}); start it with "
                "`custodes serve ARCHIVE` as the archive's account"
            ) from None
        return None
    server, owner = peer_caller(conn), os.stat(archive).st_uid
    if server.uid != owner:
        conn.close()
        raise ServiceError(
            f"{os.fspath(listen)}: answered by {server.account}, not by {account_name(owner)}, who owns {archive}; "
            "nothing was sent to it"
        )
    return conn


def forward(
    conn: socket.socket,
    archive: str,
    argv: list[str],
    inputs: list[str],
    outputs: dict[str, str],
    replaceable: frozenset[str] = frozenset(),
    secret: str | None = None,
) -> int:
    """Send a command line to the service on ``conn``; print what it prints, write what it sends, and
    return its exit code. ``inputs``: the input paths as given (each opened here, its descriptor passed);
    ``outputs``: each output parameter's name -> the path as given; ``replaceable``: the outputs that
    replace a file already there (a report), where every other output refuses to; ``secret``: a password the
    command reads (:attr:`Request.secret`)."""
    fds: list[int] = []
    try:
        for given in inputs:
            try:
                fds.append(os.open(given, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK))
            except OSError as e:
                raise ServiceError(f"{given}: cannot open it: {e.strerror}") from None
        try:
            cwd = os.getcwd()
        except FileNotFoundError:
            raise ServiceError("the current folder no longer exists; change to a folder that does") from None
        st = os.stat(archive)
        request = {"v": PROTOCOL, "argv": argv, "cwd": cwd, "inputs": inputs, "archive": [st.st_dev, st.st_ino]}
        if secret is not None:
            request["secret"] = secret
        header = json.dumps(request) + "\n"
        socket.send_fds(conn, [header.encode("utf-8", "surrogateescape")], fds)
        return _receive(conn, _ClientFiles(outputs, replaceable))
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _receive(conn: socket.socket, writer: _ClientFiles) -> int:
    reader = conn.makefile("rb")
    failed: str | None = None  # the first output that could not be written; the rest of it is skipped
    held: list[bytes] = []
    confirmed = False  # whether this client told the service it wrote every output
    try:
        while True:
            head = reader.read(_FRAME.size)
            if len(head) < _FRAME.size:
                raise ServiceError("the archive service hung up before the command finished; see its log")
            kind, length = _FRAME.unpack(head)
            payload = reader.read(length)
            if len(payload) < length:
                raise ServiceError("the archive service hung up in the middle of an answer; see its log")
            if kind == b"o" and writer.outputs:
                held.append(payload)  # printed once the outputs are written: a failed copy leaves stdout empty
            elif kind in (b"o", b"e"):
                stream = sys.stdout if kind == b"o" else sys.stderr
                stream.flush()
                stream.buffer.write(payload)
                stream.buffer.flush()
            elif kind == b"x":
                if failed is None and held:
                    sys.stdout.flush()
                    sys.stdout.buffer.write(b"".join(held))
                    sys.stdout.buffer.flush()
                return int(struct.unpack(">i", payload)[0])
            elif kind == b"w":  # the service asks whether every output was written
                if failed is not None:
                    writer.remove_written()
                _send(conn, b"k" if failed is None else b"f", (failed or "").encode("utf-8", "backslashreplace"))
                confirmed = failed is None
            elif failed is None:
                try:
                    writer.frame(kind, payload)
                except (OSError, ServiceError) as e:
                    failed = _write_failure(e, writer.target_now())
                    writer.abandon()
    except BaseException:
        if not confirmed:  # the service hung up mid-delivery (it died, or was stopped): a half bag is no bag
            writer.abandon()
            writer.remove_written()
        raise
    finally:
        writer.abandon()


def _write_failure(e: BaseException, target: Path | None) -> str:
    """One line on a copy the client could not write, naming the file the person asked for (not its temp)."""
    if isinstance(e, OSError):
        where = target if target is not None else (os.fsdecode(e.filename) if e.filename is not None else "?")
        return f"{where}: the copy failed ({e.strerror or e})"
    return str(e)


class _ClientFiles:
    """Writes the files the service streams, as the person running the CLI: each under a temp name opened
    ``O_EXCL|O_NOFOLLOW``, fsynced, then linked to its name (which never replaces a file or follows a link),
    owner-only (read-only when the service's copy was)."""

    def __init__(self, outputs: dict[str, str], replaceable: frozenset[str]) -> None:
        self.outputs, self.replaceable = outputs, replaceable
        self.current: tuple[BinaryIO, Path, Path, int, bool] | None = None
        self.written: list[Path] = []  # files and folders this client made, in order: removed if one fails
        self.last_target: Path | None = None  # the file being written, as the person named it (for errors)

    def _target(self, meta: dict[str, Any]) -> Path:
        name, rel = meta.get("output"), meta.get("rel")
        if name not in self.outputs or not isinstance(rel, str):
            raise ServiceError("the archive service sent a file for no output of this command")
        base = Path(self.outputs[name])
        if os.path.isabs(rel) or ".." in Path(rel).parts:
            raise ServiceError(f"the archive service sent a path outside {base}: {rel!r}")
        return base / rel if rel else base

    def frame(self, kind: bytes, payload: bytes) -> None:
        if kind == b"D":
            self.written += _make_folder(self._target(json.loads(payload)))
        elif kind == b"F":
            meta = json.loads(payload)
            target = self.last_target = self._target(meta)
            self.written += _make_folder(target.parent)
            temp = target.with_name(f".{target.name[-40:]}.{os.getpid()}-{os.urandom(4).hex()}.part")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            replace = meta["output"] in self.replaceable and not meta["rel"]
            self.current = (os.fdopen(fd, "wb"), temp, target, int(meta.get("mode", 0o600)), replace)
        elif kind == b"d" and self.current is not None:
            self.current[0].write(payload)
        elif kind == b"c" and self.current is not None:
            self._close()
        else:
            raise ServiceError(f"the archive service sent an unknown frame {kind!r}")

    def _close(self) -> None:
        assert self.current is not None
        f, temp, target, mode, replace = self.current
        self.current = None
        try:
            f.flush()
            os.fsync(f.fileno())
            # Owner-only, and read-only when the service's copy was (a recording opened for viewing).
            os.fchmod(f.fileno(), 0o400 if not mode & stat.S_IWUSR else 0o600)
            f.close()
            try:
                if replace:
                    os.rename(temp, target)  # replaces the name itself: a link there is replaced, never followed
                else:
                    os.link(temp, target, follow_symlinks=False)
            except FileExistsError:
                raise ServiceError(f"{target}: a file of that name is already there; nothing was replaced") from None
            self.written.append(target)
            fsync_dir(target.parent)
        finally:
            f.close()
            temp.unlink(missing_ok=True)

    def target_now(self) -> Path | None:
        return self.last_target

    def remove_written(self) -> None:
        """Undo a delivery that failed part way: what this client made goes again, newest first (a half bag
        must not look like a bag), and nothing that was there before is touched."""
        for path in reversed(self.written):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        self.written = []

    def abandon(self) -> None:
        if self.current is not None:
            f, temp = self.current[0], self.current[1]
            self.current = None
            f.close()
            temp.unlink(missing_ok=True)


def _make_folder(path: Path) -> list[Path]:
    """Make ``path`` and its missing parents, owner-only, and return those made; a link where the folder
    should be is refused, never followed (a planted link would carry the footage wherever it points)."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        os.mkdir(folder, 0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ServiceError(f"{path}: is not a folder (a link or a file is in the way); nothing was written there")
    return list(reversed(missing))
