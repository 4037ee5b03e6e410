"""Plain helpers shared by the tests: the test data, running the real CLI and peer tools, a small file system,
CLI archives with people and recordings, the custody commands, and the tamper matrix.

Fixtures live in conftest.py; everything here is an ordinary function or constant, imported as
``from helpers import ...`` (tests/ is on pytest's pythonpath).
"""

from __future__ import annotations

import atexit
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FOOTAGE = DATA / "footage"

# ---- running the real CLI and independent tools ------------------------------------------


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    input: bytes | None = None,
    obey_permissions: bool = False,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``custodes ARGS`` as a user would: a process of its own (forked from the fork server when run as root,
    tests/cli_zygote.py), stdout as bytes, the real exit code; ``input`` its stdin (empty when None).

    ``obey_permissions``: when the tests run as root (CI does), drop the
    capabilities that let root read anything, so file modes apply as they
    would to a custodian's account. ``user``: run it as that real account
    (created for the test, see :func:`ensure_accounts`); the archive among
    ``args`` is then kept by its service (:func:`serve`), started on first
    use, as on a station where people share an archive. ``env``: extra
    environment variables. ``timeout``: seconds before the test fails
    (``subprocess.TimeoutExpired``): a command that must not hang.
    """
    prefix: list[str] = []
    if obey_permissions and os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    command = [sys.executable, "-m", "custodes"]
    full_env = {**os.environ, **(env or {})}
    handed = _archive_in(args)
    if user is None and handed is not None and _served_before(handed):
        serve(handed)  # an archive once handed to its service stays served, for root's commands too
    if user is not None:
        arch = _archive_in(args)
        if arch is not None:
            serve(arch)
            cwd = cwd if cwd is not None else arch.parent  # a folder the person may write (copies land here)
        prefix, command = as_account(user), account_python()
        full_env["HOME"] = "/"  # LOGNAME and USER stay whatever they were: they say nothing about who runs it
    if not prefix and _forkable(env):
        return _forked_cli([*command, *map(str, args)], cwd, input, full_env, timeout)
    return subprocess.run(
        [*prefix, *command, *map(str, args)],
        cwd=cwd,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        timeout=timeout,
        env=full_env,
    )


#: Set (to anything) to run every CLI command of the tests as ``python -m custodes`` (the fork server below off).
REAL_PROCESSES_ENV = "CUSTODES_TESTS_REAL_PROCESSES"
#: Variables the interpreter reads as it starts (its locale, its own options): a run that sets one is started
#: whole, since a process forked from one already started would not read them.
_READ_AT_START = ("PYTHON", "LC_", "LANG", "LD_", "GLIBC_", "MALLOC_")
_FORK_SERVER: list[tuple[subprocess.Popen[bytes], str]] = []
_FORK_SERVER_LOCK = __import__("threading").Lock()


def _forkable(env: Mapping[str, str] | None) -> bool:
    if os.environ.get(REAL_PROCESSES_ENV):
        return False
    return not any(key.startswith(_READ_AT_START) for key in env or {})


def _fork_server() -> str:
    """The socket of this test process's fork server (tests/cli_zygote.py), started on first use and stopped by
    its pid when the test process ends."""
    with _FORK_SERVER_LOCK:
        if _FORK_SERVER and _FORK_SERVER[0][0].poll() is None:
            return _FORK_SERVER[0][1]
        folder = tempfile.mkdtemp(prefix="custodes-fork-server-")
        path = os.path.join(folder, "socket")
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_zygote.py")), path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None
        if server.stdout.readline() != b"ready\n":
            server.kill()
            raise RuntimeError(f"the CLI fork server did not start (exit {server.wait()})")
        _FORK_SERVER[:] = [(server, path)]

        def stop() -> None:
            assert server.stdin is not None
            server.stdin.close()  # it ends when its stdin does
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            shutil.rmtree(folder, ignore_errors=True)  # (it removes its socket and folder as it ends)

        atexit.register(stop)
        return path


class _Lines:
    """The lines the fork server answers on one connection (a socket file object cannot be read again after a
    timeout)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.held = conn, b""

    def next(self) -> bytes:
        while b"\n" not in self.held:
            more = self.conn.recv(64)
            if not more:
                raise ConnectionError("the CLI fork server closed the connection")
            self.held += more
        line, self.held = self.held.split(b"\n", 1)
        return line


def _forked_cli(
    command: list[str], cwd: Path | None, input: bytes | None, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """``command`` (``python -m custodes ARGS``) run by a process forked from the fork server, as run_cli's
    subprocess.run would run it: the same result, exit status and TimeoutExpired, and the same errors for a
    working folder that is none or an environment with a NUL in it."""
    import array

    folder = os.path.abspath(cwd if cwd is not None else os.getcwd())
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "No such file or directory", folder)
    if any("\0" in k or "\0" in v or "=" in k for k, v in env.items()):
        raise ValueError("embedded null byte, or '=' in a variable's name")
    umask = os.umask(0o077)  # (read by setting it: given back at once)
    os.umask(umask)
    header = {
        "args": command[3:],
        "env": dict(env),
        "cwd": folder,
        "umask": umask,
    }
    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
    ):
        stdin.write(input or b"")
        stdin.seek(0)
        conn.connect(_fork_server())
        fds = array.array("i", [stdin.fileno(), stdout.fileno(), stderr.fileno()])
        conn.sendmsg([json.dumps(header).encode() + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        conn.settimeout(timeout)
        answers = _Lines(conn)
        try:
            status = answers.next()
        except TimeoutError:
            conn.sendall(b"k")  # the server kills it (by its pidfd: the pid may be another's once reaped)
            conn.settimeout(30)
            answers.next()  # its end, as subprocess.run waits for the process it killed
            stdout.seek(0)
            stderr.seek(0)
            raise subprocess.TimeoutExpired(command, timeout, stdout.read(), stderr.read()) from None
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(command, int(status), stdout.read(), stderr.read())


# ---- real accounts and the archive service ----------------------------------------------

#: The people of the custody tests, as real accounts (created when the tests run as root, which CI does).
ACCOUNTS = ("alice", "bob", "carol", "dave", "mallory")
#: The archive service's own account: it alone can read a served archive.
SERVICE_ACCOUNT = "custodes-svc"
#: Services started by the tests, stopped after each test (conftest.py) by their pid.
SERVICES: dict[Path, subprocess.Popen[bytes]] = {}


def ensure_accounts() -> None:
    """The test accounts exist (created as system accounts without a home or a login shell)."""
    import fcntl
    import pwd

    if os.geteuid() != 0:
        pytest.skip("people are real accounts in these tests: creating them needs root")
    # pytest-xdist workers ask at the same moment, and useradd refuses while another holds /etc/passwd's lock.
    with open(Path(tempfile.gettempdir()) / "custodes-tests-accounts.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in (*ACCOUNTS, SERVICE_ACCOUNT):
            try:
                pwd.getpwnam(name)
            except KeyError:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                    check=True,
                    capture_output=True,
                )


def as_account(name: str) -> list[str]:
    """The prefix that runs a command as the real account ``name`` (uid, gid, no supplementary groups)."""
    ensure_accounts()
    return ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups"]


def _reachable(path: Path) -> bool:
    """Every folder on the way to ``path`` lets other accounts through, and ``path`` is theirs to read."""
    import stat

    real = path.resolve()
    folders_ok = all(os.stat(p).st_mode & stat.S_IXOTH for p in real.parents)
    return folders_ok and bool(os.stat(real).st_mode & stat.S_IROTH)


def account_python() -> list[str]:
    """``python -m custodes`` for another account. This interpreter when they can reach it; otherwise the
    system's Python of the same version, with this environment's packages (and no others) added as a site
    folder: pyenv keeps its interpreters under /root, which other accounts cannot enter."""
    import custodes

    package = Path(custodes.__file__).parent
    if not _reachable(package / "__init__.py"):
        pytest.skip(f"{package} is not readable by other accounts: clone the repository outside /root")
    if _reachable(Path(sys.executable)):
        return [sys.executable, "-m", "custodes"]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    site_packages = Path(__import__("sysconfig").get_paths()["purelib"])
    if not (system.exists() and _reachable(site_packages)):
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} other accounts can run")
    # sitecustomize is imported as a Python without -S would (scripts/mutants puts one on PYTHONPATH).
    boot = (
        f"import importlib.util, runpy, site, sys; site.addsitedir({str(site_packages)!r}); "
        "importlib.util.find_spec('sitecustomize') and __import__('sitecustomize'); sys.argv[0] = 'custodes'; "
        "runpy.run_module('custodes', run_name='__main__', alter_sys=True)"
    )
    return [str(system), "-S", "-c", boot]  # -S: none of the system's own packages, only this environment's


def _let_accounts_through(folder: Path) -> None:
    """The test's folder is shared like /tmp (sticky, anyone may create), and its parents may be passed."""
    import stat

    folder.chmod(0o1777)
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def serve(arch: Path, env: Mapping[str, str] | None = None, log_folder: Path | None = None) -> subprocess.Popen[bytes]:
    """Hand ``arch`` to its service account and start ``custodes serve`` there (once; ``env``: extra
    variables for the service, e.g. an injected fault; ``log_folder``: where its log goes, by default beside the
    archive). Returns the running service."""
    import time

    running = SERVICES.get(arch)
    if running is not None and running.poll() is None:
        return running
    ensure_accounts()
    _let_accounts_through(arch.parent)
    subprocess.run(["chown", "-R", f"{SERVICE_ACCOUNT}:", str(arch)], check=True)
    log_path = (log_folder or arch.parent) / f"{arch.name}.service.log"
    said_before = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115 (the service writes it until stopped)
    service = subprocess.Popen(
        [*as_account(SERVICE_ACCOUNT), *account_python(), "serve", str(arch)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**os.environ, **(env or {}), "HOME": "/"},
    )
    log.close()
    SERVICES[arch] = service
    deadline = time.monotonic() + 60
    while b"custodes: serving " not in log_path.read_bytes()[said_before:]:  # it says so once it listens
        if service.poll() is not None or time.monotonic() > deadline:
            stop_service(arch)
            raise AssertionError(f"the service of {arch} did not start: {log_path.read_text()}")
        time.sleep(0.05)
    return service


def _served_before(arch: Path) -> bool:
    import pwd

    try:
        return arch.stat().st_uid == pwd.getpwnam(SERVICE_ACCOUNT).pw_uid
    except KeyError:
        return False


def copy_archive(src: Path, dst: Path) -> Path:
    """A copy of an archive (as root: the copy is root's until a service takes it), without its run/ folder,
    whose socket belongs to the service of the original."""
    return Path(
        shutil.copytree(src, dst, symlinks=True, ignore=lambda folder, _: ["run"] if Path(folder) == src else [])
    )


def _archive_in(args: Sequence[object]) -> Path | None:
    return next((a for a in args if isinstance(a, Path) and (a / "custodes.toml").is_file()), None)


def ingest_cmd(vol: Path, arch: Path) -> list[str]:
    """``custodes ingest VOL --archive ARCH --driver generic --json`` as a subprocess's argv (the crash tests
    start it themselves, to kill it)."""
    return [sys.executable, "-m", "custodes", "ingest", str(vol), "--archive", str(arch), "--driver", "generic",
            "--json"]  # fmt: skip


def run_cli_with_faults(
    *args: str | Path,
    user: str | None = None,
    fault: str | None = None,
    log: Path | None = None,
    crashpoint: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``custodes ARGS`` with a storage fault planned (``CUSTODES_FAULT``, see custodes._faults) in the process
    that does the work: with ``user``, the archive's service, started with the plan for this one command and
    stopped after it (a caller's environment never reaches the service); else the CLI itself. ``log``: where
    the storage operations are logged (``CUSTODES_FAULT_LOG``); ``crashpoint``: a ``CUSTODES_CRASHPOINT`` phase
    (custodes._faults.crashpoint) where the process is killed. When a crash plan killed the service, the
    client must have said so, and the exit code is the service's (-9), as it is the CLI's when it does the work."""
    env = {
        "CUSTODES_FAULT": fault or "",
        "CUSTODES_FAULT_LOG": "" if log is None else str(log),
        "CUSTODES_CRASHPOINT": crashpoint or "",
    }
    arch = _archive_in(args)
    if user is None or arch is None:
        return run_cli(*args, env=env, user=user)
    stop_service(arch)
    service = serve(arch, env=env)
    try:
        out = run_cli(*args, user=user)
    finally:
        stop_service(arch)
    if service.returncode == -9:  # a crash plan killed the service mid-command: report that, as for the CLI
        assert out.returncode == 2 and b"the archive service hung up before the command finished" in out.stderr, out
        out.returncode = -9
    return out


def hand_back(arch: Path) -> Path:
    """The archive back from its service to root: the service stopped, the files root's again, so root works on
    it embedded, as its owner (tests of the export's own crash mechanics, set up by people through the service)."""
    stop_service(arch)
    subprocess.run(["chown", "-R", "root:", str(arch)], check=True)
    return arch


def person_folder(path: Path, user: str) -> Path:
    """A folder of ``user``'s own (made here, then given to that account), for what they export or open."""
    path.mkdir(parents=True)
    shutil.chown(path, user, user)
    return path


def shared_witness(path: Path, user: str) -> Path:
    """A witness folder as the README asks for one: the service's account appends to it for ``user``, a
    custodian who may write there too (the folder's group is the user's own, rwx for both)."""
    ensure_accounts()
    path.mkdir(parents=True)
    shutil.chown(path, SERVICE_ACCOUNT, user)
    path.chmod(0o775)
    return path


def stop_service(arch: Path) -> None:
    """Stop ``arch``'s service by its pid (SIGTERM, then SIGKILL after 10 s)."""
    service = SERVICES.pop(arch, None)
    if service is None:
        return
    service.terminate()
    try:
        service.wait(10)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait(10)


def peer(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run an independent tool (sha256sum, b3sum, openssl ...) for cross-checking."""
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, timeout=300)


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs) mounted on ``folder`` for the test, unmounted after it:
    a full disk, a USB stick's root. Skips the test where mounting is not allowed (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextmanager
def small_ext4(folder: Path, size: str) -> Iterator[Path]:
    """A real small ext4 (an image file beside ``folder``, mounted by a loop device) on ``folder`` for the test,
    unmounted after it: where a new folder takes a block, which on a tmpfs it does not. Skips where mounting is
    not allowed (not root), as :func:`small_tmpfs`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    image = folder.with_name(folder.name + ".ext4")
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)  # (the loop device goes with it: autoclear)
        image.unlink()


def fill(disk: Path) -> Path:
    """Take every free byte (again: a failed command may have freed pages on its way out)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    assert shutil.disk_usage(disk).free == 0
    return filler


@contextmanager
def memory_folder(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` on a tmpfs mounted for the test where this account may mount one (root), else on the disk as
    it is: for a test whose subject is not the disk but which makes and reads 10^5 files. This machine's disk (as
    CI's) is an ext4 without a journal, which seeks each new inode past every one deleted in the last half minute
    (the other tests' folders): the same work took twice as long there."""
    folder.mkdir(exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and (
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        ).returncode
        == 0
    )
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def one_line_error(out: subprocess.CompletedProcess[bytes], pattern: str, code: int = 2) -> str:
    """The command failed with ``code`` and exactly one ``custodes: ...`` line matching ``pattern``."""
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == code, (out.stdout, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("custodes: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def catalog_rows(arch: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` read straight from the archive's catalog file, as an auditor with sqlite3 would:
    the tests check what is stored, not what custodes says is stored."""
    conn = sqlite3.connect(arch / "catalog.sqlite", timeout=60)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


#: Statements that make a catalog of this custodes look as one custodes left at schema 5 (before the catalog
#: was a view of the ledger): with ``PRAGMA user_version = 5`` after them, opening it migrates it forward.
AS_SCHEMA_5 = (
    "DROP TABLE object_findings",
    "ALTER TABLE checkpoints DROP COLUMN folder_ctime_ns",
    "DROP INDEX ingest_intents_by_ingest",
    "DROP TABLE ingest_notes",
    "DROP INDEX segments_by_device",
    "DROP INDEX findings_by_device",
    "DROP INDEX findings_by_device_segment",
    "DROP TABLE device_checks",
    "DROP TABLE registry",
    "DROP TABLE registry_statuses",
    "DROP TABLE assignments",
    "DROP INDEX objects_by_last_verified",
    "DROP TABLE verify_runs",
    "ALTER TABLE checkpoints DROP COLUMN frontier",
    "DROP TABLE replay_state",
    "DROP TABLE refusal_windows",
    "DROP INDEX ledger_by_type",
    "ALTER TABLE ledger DROP COLUMN type",
)


@contextmanager
def catalog_edit(arch: Path, *, foreign_keys: bool = True) -> Iterator[sqlite3.Connection]:
    """The catalog file edited directly in one transaction, as an attacker with sqlite3 would."""
    conn = sqlite3.connect(arch / "catalog.sqlite", timeout=60, isolation_level=None)
    try:
        conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


#: An approval of request 1 by bob as someone who can write catalog.sqlite would append it (appended_by_hand): no
#: command of custodes wrote it.
FORGED_APPROVAL = json.dumps(
    {"type": "access_approve", "request": 1, "person": "bob", "ok": True}, sort_keys=True, separators=(",", ":")
).encode()


def appended_by_hand(arch: Path, entry: bytes, filed_as: str) -> int:
    """``entry`` appended to the ledger table as by hand, with its right leaf hash and filed under ``filed_as``: an
    entry no custodes command wrote, which only the checkpoints can tell from one. Its index."""
    (seq,) = catalog_rows(arch, "SELECT MAX(seq) + 1 FROM ledger")[0]
    with catalog_edit(arch) as conn:
        conn.execute(
            "INSERT INTO ledger (seq, entry, leaf, type) VALUES (?, ?, ?, ?)",
            (seq, entry, hashlib.sha256(b"\x00" + entry).digest(), filed_as),
        )
    return int(seq)


# ---- CLI archives with people and recordings ----------------------------------------------


def set_policy(
    arch: Path, text: str, user: str | None = None, approver: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``custodes policy set ARCH FILE`` with ``text`` in FILE (beside the archive), as ``user`` through the
    service (None: the account running the tests, embedded while no service keeps the archive: the owner's
    bootstrap). With ``approver``: ``user`` proposes it and ``approver`` puts it in force with ``custodes policy
    approve``, whose result is returned (the proposal's, if it was refused)."""
    new = arch.parent / f"{arch.name}.policy-{os.urandom(4).hex()}.toml"
    new.write_text(text)
    new.chmod(0o644)  # the service reads it too
    try:
        out = run_cli("policy", "set", arch, new, "--json", user=user)
    finally:
        new.unlink()
    if approver is None or out.returncode != 0:
        return out
    proposed = json.loads(out.stdout)
    assert proposed["status"] == "proposed", proposed
    return run_cli("policy", "approve", arch, proposed["proposal"]["id"], user=approver)


def policy_text(arch: Path) -> str:
    """The archive's policy file as it is now."""
    return (arch / "custodes.toml").read_text()


def grant(arch: Path, role: str, person: str | None = None) -> str:
    """Give ``person`` (default: the account running the tests) ``role`` through `custodes policy set`, as the
    archive's owner (a new archive's first people); returns the person."""
    import getpass

    person = person or getpass.getuser()
    text = policy_text(arch)
    line = f'{person} = "{role}"\n'
    out = set_policy(
        arch,
        text.replace("[people]\n", f"[people]\n{line}", 1) if "[people]\n" in text else f"{text}\n[people]\n{line}",
    )
    assert out.returncode == 0, out.stderr
    return person


#: The people of the custody tests: a custodian, two approvers, a viewer; approvers may see classified footage.
#: root, who runs the tests, audits (through the service, nobody without a role sees anything).
PEOPLE = """
[people]
alice = "custodian"
bob = "approver"
carol = "viewer"
dave = "approver"
root = "auditor"

[access]
window_hours = 72
classified_roles = ["approver"]
"""

#: The people of the CLI error tests: no dave, and root (who runs CI) is a custodian.
PEOPLE_AND_ROOT = """
[people]
alice = "custodian"
bob = "approver"
carol = "viewer"
root = "custodian"
"""

#: Three real recordings: androidx-sample (2016), go-mp4-sample (no clock), bt601.mov (2024).
THREE_RECORDINGS = (
    FOOTAGE / "encoders" / "androidx-sample.mp4",
    FOOTAGE / "encoders" / "go-mp4-sample.mp4",
    FOOTAGE / "phones" / "bt601.mov",
)


def build_cli_archive(
    arch: Path,
    *,
    people: str | None = PEOPLE,
    recordings: Sequence[Path] | Mapping[str, Path] = (),
    volume: Path | None = None,
    init_args: Sequence[str] = (),
    driver: str | None = "generic",
    ingest_exit: Collection[int] = (1,),
) -> Path:
    """An archive made through the CLI at ``arch``: ``custodes init arch INIT_ARGS``, ``people`` added to its
    policy by `custodes policy set` as its owner, then (when there are ``recordings``) one volume holding copies of
    them (``volume``, by default ``BWC0001`` next to the archive; a mapping gives each copy its name) ingested with
    ``driver``, whose exit code must be one of ``ingest_exit``.

    A local archive is made once per test process for each set of arguments and copied (``cp -a``) for every
    later test asking for the same (see :func:`_made_before`): the copies share the first one's keys and
    archive id, and their ingest happened when the first was made. A test about either makes its archive with
    ``run_cli("init", ...)`` itself."""
    named = recordings.items() if isinstance(recordings, Mapping) else [(src.name, src) for src in recordings]
    vol = volume if volume is not None else arch.parent / "BWC0001"
    if recordings:
        vol.mkdir()
        for name, src in named:
            (vol / name).parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders (DCIM/100MEDIA/...)
            shutil.copy(src, vol / name)
    local = not any(a.startswith("--storage") for a in init_args)  # an S3 archive's bucket is not in the folder
    recipe = (people, tuple((n, str(s)) for n, s in named), vol.name, tuple(init_args), driver, tuple(ingest_exit))
    made = _made_before.get(recipe) if local else None
    if made is not None:
        subprocess.run(["cp", "-a", str(made), str(arch)], check=True)
        return arch
    out = run_cli("init", arch, *init_args)
    assert out.returncode == 0, out.stderr
    if people is not None:
        out = set_policy(arch, policy_text(arch) + people)
        assert out.returncode == 0, out.stderr
    if recordings:
        driver_args = () if driver is None else ("--driver", driver)
        out = run_cli("ingest", vol, "--archive", arch, *driver_args)
        assert out.returncode in ingest_exit, (out.returncode, out.stderr)
    if local:
        kept = Path(_archives_made()) / str(len(_made_before))
        subprocess.run(["cp", "-a", str(arch), str(kept)], check=True)
        _made_before[recipe] = kept
    return arch


#: build_cli_archive's archives by what made them, kept for this test process: an init, a policy set and an
#: ingest are 0.6-0.8 s of CPU, made once instead of for each of some 500 tests.
_made_before: dict[tuple[object, ...], Path] = {}


@functools.cache
def _archives_made() -> str:
    """Where this process keeps build_cli_archive's archives (removed when it ends)."""
    folder = tempfile.mkdtemp(prefix="custodes-tests-made-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


# ---- custody commands as a person runs them ----------------------------------------------


def as_(user: str, *args: object):
    return run_cli(*args, user=user)


def request(arch: Path, user: str, *segments: int, purpose: str = "view") -> int:
    out = as_(
        user,
        "access",
        "request",
        arch,
        *[x for s in segments for x in ("--segment", s)],
        "--reason",
        "complaint 2024-17 review",
        "--purpose",
        purpose,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["id"]


def export_as_carol(arch: Path, case: str, segments: Sequence[int], to: Path) -> subprocess.CompletedProcess[bytes]:
    """The case linked by alice, an export requested by carol and approved by bob, then carol's export to ``to``."""
    assert (
        as_(
            "alice", "retention", "case", arch, "--case", case, *[x for s in segments for x in ("--segment", s)]
        ).returncode
        == 0
    )
    rid = request(arch, "carol", *segments, purpose="export")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    return as_("carol", "export", arch, "--case", case, "--request", rid, "--to", to)


def refused(out, pattern: str) -> None:
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert re.search(pattern, out.stderr.decode()), out.stderr


# ---- the tamper matrix: one way each to damage an archive (an open Archive ``a``) ------------


# Object tampers act on the store as another client would: on a local store through its files, on a bucket
# through a plain S3 client of the same identity (a new version, a delete marker), never through custodes.


def _object(a, n=0) -> str:
    """The digest of the archive's n-th object, in digest order."""
    return sorted(x.digest for x in a.store.list() if x.problem is None)[n]


def _raw_s3(a):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=a.store.options["endpoint"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def _rewrite(a, digest: str, change) -> None:
    """The object's bytes become ``change(bytes)``: the file rewritten, or the key written again."""
    if a.store.backend == "s3":
        key = a.store.key(digest)
        data = _raw_s3(a).get_object(Bucket=a.store.bucket, Key=key)["Body"].read()
        _raw_s3(a).put_object(Bucket=a.store.bucket, Key=key, Body=change(data))
        return
    p = a.store.path_for(digest)
    _writable(p)
    p.write_bytes(change(p.read_bytes()))
    p.chmod(0o400)  # the protection put back: what is tested is the bytes (a widened mode is its own finding)


def _remove(a, digest: str) -> None:
    """The object deleted: the file unlinked, or a delete marker put on the key."""
    if a.store.backend == "s3":
        _raw_s3(a).delete_object(Bucket=a.store.bucket, Key=a.store.key(digest))
        return
    p = a.store.path_for(digest)
    _writable(p)
    p.unlink()


def plant(a, digest: str, data: bytes) -> None:
    """Bytes put where object ``digest`` would live, custodes not asked."""
    if a.store.backend == "s3":
        _raw_s3(a).put_object(Bucket=a.store.bucket, Key=a.store.key(digest), Body=data)
        return
    p = a.store.path_for(digest)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    p.chmod(0o400)  # as the store's own files are


def _writable(p: Path) -> None:
    p.chmod(0o644)


def flip(where: str):
    def tamper(a, tmp: Path) -> None:
        def flipped(data: bytes) -> bytes:
            out = bytearray(data)
            out[{"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]] ^= 0x01
            return bytes(out)

        _rewrite(a, _object(a), flipped)

    return tamper


def truncate(a, tmp):
    _rewrite(a, _object(a), lambda data: data[:-100])


def extend(a, tmp):
    _rewrite(a, _object(a), lambda data: data + b"appended")


def delete(a, tmp):
    _remove(a, _object(a))


def replace_with_other(a, tmp):
    _rewrite(a, _object(a), lambda _: (FOOTAGE / "encoders" / "go-mp4-sample.mp4").read_bytes())


def stray(a, tmp):
    plant(a, "ab" + "cd" + "0" * 60, b"planted")


def _catalog_edit(a, tmp):
    import hashlib

    old = _object(a)
    data = (FOOTAGE / "encoders" / "go-mp4-sample.mp4").read_bytes()
    new = hashlib.sha256(data).hexdigest()
    from custodes import _core

    b3 = _core.hash_bytes(["blake3"], data)[0].hex()
    plant(a, new, data)
    _remove(a, old)
    with catalog_edit(a.root, foreign_keys=False) as c:  # the attacker edits the database file directly
        c.execute(
            "UPDATE objects SET sha256 = ?, size = ?, digests = ?, head_sha256 = ? WHERE sha256 = ?",
            (new, len(data), json.dumps({"blake3": b3, "sha256": new}), hashlib.sha256(data[:4096]).hexdigest(), old),
        )
        c.execute("UPDATE segments SET sha256 = ?, size = ? WHERE sha256 = ?", (new, len(data), old))


def _ledger_edit(a, tmp):
    with catalog_edit(a.root) as c:
        entry = json.loads(c.execute("SELECT entry FROM ledger WHERE seq = 1").fetchone()[0])
        entry["name"] = "innocent.mp4"
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        from custodes import merkle

        c.execute("UPDATE ledger SET entry = ?, leaf = ? WHERE seq = 1", (data, merkle.leaf_hash(data)))


def _ledger_delete(a, tmp):
    with catalog_edit(a.root) as c:
        c.execute("DELETE FROM ledger WHERE seq = 1")


def _ledger_reorder(a, tmp):
    with catalog_edit(a.root) as c:
        rows = c.execute("SELECT entry, leaf, type FROM ledger WHERE seq IN (0, 1) ORDER BY seq").fetchall()
        c.execute("DELETE FROM ledger WHERE seq IN (0, 1)")
        for seq, row in ((0, rows[1]), (1, rows[0])):  # each filed under its own type, as a careful attacker would
            c.execute("INSERT INTO ledger (seq, entry, leaf, type) VALUES (?, ?, ?, ?)", (seq, *row))


def _checkpoint_rollback(a, tmp):
    older = sorted((a.root / "ledger" / "checkpoints").iterdir(), key=lambda p: int(p.name))[0]
    (a.root / "ledger" / "checkpoint").write_text(older.read_text())


def _checkpoint_and_ledger_rollback(a, tmp):
    """Drop segment 2's ingest entry and the checkpoint that first signed it: the catalog row still points at the
    entry. (Found by number: an ingest also ledgers its ingest_begin and ingest_end, see catalog.replay.)"""
    (seq,) = catalog_rows(a.root, "SELECT ledger_seq FROM segments WHERE id = 2")[0]
    size = min(int(p.name) for p in (a.root / "ledger" / "checkpoints").iterdir() if int(p.name) > seq)
    with catalog_edit(a.root) as c:
        c.execute("DELETE FROM ledger WHERE seq = ?", (seq,))
        c.execute("DELETE FROM checkpoints WHERE size = ?", (size,))
    (a.root / "ledger" / "checkpoints" / str(size)).unlink()
    _checkpoint_rollback(a, tmp)


def _segment_time_moved(a, tmp):
    """A recording moved by an hour in the catalog only (its ingest entry keeps the real time)."""
    with catalog_edit(a.root) as c:
        c.execute("UPDATE segments SET start_ns = start_ns + 3600000000000 WHERE id = 2")


def _important_mark_flipped(a, tmp):
    with catalog_edit(a.root) as c:
        c.execute("UPDATE segments SET important = 1 - important WHERE id = 2")


def _segment_and_object_deleted(a, tmp):
    """A recording made to vanish from the catalog and the store together; its ingest entry stays."""
    (sha,) = catalog_rows(a.root, "SELECT sha256 FROM segments WHERE id = 2")[0]
    _remove(a, sha)
    with catalog_edit(a.root, foreign_keys=False) as c:
        c.execute("DELETE FROM segments WHERE id = 2")
        c.execute("DELETE FROM objects WHERE sha256 = ?", (sha,))


#: What a tamper of the objects is found as on a bucket, where it differs: a key's bytes cannot be changed, only
#: written again as a new version, which the listing reports as modified before any byte is read.
S3_KINDS = {"truncated": "modified"}
#: The storage backends the archive's workflows are tested on (tests/conftest.py: archive_backend).
BACKENDS = ["local", "s3"]


def storage_args(options: Mapping[str, str] | None) -> list[str]:
    """``custodes init`` options for an archive on the [storage] table ``options`` (None: local)."""
    args = [] if options is None else ["--storage", options["backend"]]
    for key, value in (options or {}).items():
        args += [] if key == "backend" else ["--storage-option", f"{key}={value}"]
    return args


TAMPERS = {
    "bit_flip_start": (flip("start"), "modified"),
    "bit_flip_middle": (flip("middle"), "modified"),
    "bit_flip_end": (flip("end"), "modified"),
    "truncated": (truncate, "truncated"),
    "extended": (extend, "modified"),
    "deleted": (delete, "missing"),
    "replaced": (replace_with_other, "modified"),
    "stray_file": (stray, "unexpected"),
    "catalog_row_edited_to_match": (_catalog_edit, "ledger_mismatch"),
    "ledger_entry_edited": (_ledger_edit, "checkpoint_mismatch"),
    "ledger_entry_deleted": (_ledger_delete, "ledger_mismatch"),
    "ledger_entries_reordered": (_ledger_reorder, "checkpoint_mismatch"),
    "checkpoint_rolled_back": (_checkpoint_rollback, "checkpoint_mismatch"),
    "ledger_and_checkpoint_rolled_back": (_checkpoint_and_ledger_rollback, "ledger_mismatch"),
    "segment_time_moved": (_segment_time_moved, "ledger_mismatch"),
    "important_mark_flipped": (_important_mark_flipped, "ledger_mismatch"),
    "segment_and_object_deleted": (_segment_and_object_deleted, "missing"),
}


def nested_folders(top: Path, depth: int, at_each: Callable[[int, int], None] | None = None) -> None:
    """``depth`` folders named ``a``, each in the one before, under the existing folder ``top``: made by
    descriptor, so deeper than a path may be spelled (PATH_MAX) and than Python's recursion goes. ``at_each(level,
    fd)`` runs in each folder (``top`` is level 0) before the next is made, to put something there by ``dir_fd``."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(depth + 1):
            if at_each is not None:
                at_each(level, fd)
            if level == depth:
                break
            os.mkdir("a", dir_fd=fd)
            below = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = below
    finally:
        os.close(fd)


def install_plugin(site: Path, name: str, module: str, version: str = "0.1") -> None:
    """A package ``custodes_<name>`` in ``site`` as pip installs one: the module (its source, dedented), and a
    dist-info whose entry point registers it with custodes. Put ``site`` on PYTHONPATH to have it loaded."""
    import textwrap

    (site / f"custodes_{name}").mkdir(parents=True)
    (site / f"custodes_{name}" / "__init__.py").write_text(textwrap.dedent(module))
    dist = site / f"custodes_{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: custodes-{name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[custodes]\n{name} = custodes_{name}\n")
