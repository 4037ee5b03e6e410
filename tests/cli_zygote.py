"""A process that has imported the CLI and forks a fresh process for each ``custodes ARGS`` a test runs as root
(helpers.run_cli): the suite runs some 3,000 of them, and each paid 0.15-0.2 s of CPU for the interpreter and its
imports before it did anything (on CI's two cores the suite was CPU-bound at 15 minutes).

Each child is a process of its own, as ``python -m custodes`` is: its own pid, the test's environment, working
folder, umask, stdin, stdout and stderr (descriptors handed over the socket), ``custodes.cli.main`` run as
``custodes/__main__.py`` runs it, its exit status as the interpreter's (a signal as its negative). What the imports
read of the environment once (the fault plans of custodes._faults, the time zone, the temp folder) is read again in
the child; a run whose environment changes what the interpreter itself read at start (locale, Python's own
variables) is run as a real subprocess (helpers.run_cli decides). This process stays single-threaded, so a fork
copies no lock held by another thread.

    python tests/cli_zygote.py SOCKET    listens on SOCKET; exits when its stdin closes (the test worker ended)
"""

from __future__ import annotations

import array
import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
import traceback

import custodes._faults
import custodes.cli

#: What most commands import besides the CLI: paid once here (not numpy: its thread pools are not to be forked).
PRELOADED = (
    "custodes.archive",
    "custodes.export",
    "custodes.ingest",
    "custodes.ledger",
    "custodes.plugins",
    "custodes.reports",
    "custodes.retention",
    "custodes.verify",
    "custodes.volumes",
)


def _run_child(header: dict, fds: list[int]) -> None:
    """In the child: become ``custodes ARGS`` and never return."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(header["env"])
        os.umask(header["umask"])
        os.chdir(header["cwd"])  # (the caller checked it is a folder, as subprocess.run would have)
        time.tzset()
        tempfile.tempdir = None
        try:
            importlib.reload(custodes._faults)  # its plans are read from the environment as it is imported
        except Exception:  # a plan it refuses: every import of it fails in a fresh process, which is the one to run
            os.execv(sys.executable, [sys.executable, "-m", "custodes", *header["args"]])
        sys.path[0] = header["cwd"]  # python -m puts its working folder first
        sys.argv = ["custodes", *header["args"]]
        try:
            custodes.cli.main(prog_name="custodes")
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter does with an exception nobody caught
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    except BaseException:  # the setup itself: said where the test reads it, never a silent exit 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: S110 - a closed or broken stream: the interpreter's exit ignores it too
                pass
        os._exit(code & 0xFF)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(1 << 20, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            raise EOFError
        data += more
    return json.loads(data), list(fds)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the caller's connection)
    while True:
        callers = {conn: pidfd for pidfd, (_, conn) in running.items()}
        ready, _, _ = select.select([listener, sys.stdin, *running, *callers], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):  # the test worker is gone
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
            return
        if listener in ready:
            conn, _ = listener.accept()
            try:
                header, fds = _receive(conn)
            except (OSError, EOFError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for _, other in running.values():
                    other.close()
                _run_child(header, fds)
            for fd in fds:
                os.close(fd)
            running[os.pidfd_open(pid)] = (pid, conn)
        for conn in [c for c in ready if c in callers]:
            # The caller's timeout (or the caller gone): killed through its pidfd, which names this very process
            # (a pid may be another's once it is reaped); its end is answered below as any other.
            with contextlib.suppress(OSError):
                conn.recv(64)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(callers[conn], signal.SIGKILL)
        for pidfd in [fd for fd in ready if isinstance(fd, int)]:
            pid, conn = running.pop(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            try:
                conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
            except OSError:
                pass  # the caller gave up on it
            conn.close()


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # not tests/: its modules are not the CLI's
    for name in PRELOADED:
        importlib.import_module(name)
    serve(sys.argv[1])
