"""A real Dask cluster for tests, started as a user starts one: ``dask scheduler`` and ``dask worker`` processes.

Plain functions (no pytest in here), so any test tree can use them::

    from custodes_dask.testing import dask_cli_cluster

    with dask_cli_cluster(workers=2, tmp=tmp_path) as cluster:
        ...  # cluster.address ("tcp://127.0.0.1:PORT"), cluster.worker_pids, cluster.kill_worker(pid)

Everything listens on 127.0.0.1 only. Workers run without a nanny (``--no-nanny``): SIGKILL to a worker's pid
ends that worker for good, the way a machine that dies does, and the scheduler re-runs its tasks on the others.
Every process is bounded three ways: it is stopped by pid when the ``with`` block ends (SIGTERM, then SIGKILL),
it gets SIGKILL if the process that started it dies (``PR_SET_PDEATHSIG``), and it ends by itself after
``lifetime`` seconds (workers' ``--lifetime``; the scheduler's ``--idle-timeout``, which runs once its
workers are gone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CliCluster", "dask_cli_cluster", "dask_command", "dask_script", "listening", "stop_pid"]

#: Run as ``python -c PRELUDE DASK ARGS...``: ask for SIGKILL when the parent dies, then become ``dask`` (exec
#: keeps the pid and the death signal), so a test run that is killed leaves no cluster behind.
_PRELUDE = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


@dataclass
class CliCluster:
    """A running ``dask scheduler`` and its workers (``worker_pids`` in start order; ``workers`` maps each
    worker's address to its pid). ``logs`` holds each process's output file."""

    address: str
    scheduler_pid: int
    worker_pids: list[int]
    workers: dict[str, int]
    logs: dict[int, Path] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return [self.scheduler_pid, *self.worker_pids]

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker (no nanny restarts it)."""
        if pid not in self.worker_pids:
            raise ValueError(f"{pid} is not a worker of this cluster ({self.worker_pids})")
        os.kill(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- pid {pid} ({p.name})\n{p.read_text(errors='replace')[-chars:]}" for pid, p in self.logs.items()
        )


def dask_script() -> str:
    """The ``dask`` command of this interpreter's environment (the one that has custodes installed)."""
    beside = Path(sys.executable).with_name("dask")
    found = str(beside) if beside.exists() else shutil.which("dask")
    if not found:
        raise FileNotFoundError("no `dask` command beside this Python or on PATH: pip install custodes-dask")
    return found


def dask_command(sub: str, python: str | None = None) -> list[str]:
    """The argv that runs ``dask SUB`` (``scheduler`` or ``worker``): the ``dask`` script beside this Python,
    else this interpreter itself as ``python -m distributed.cli.dask_SUB`` (the same command line interface).
    The second is for an interpreter that imports custodes and distributed from PYTHONPATH or a system
    install with no ``dask`` script next to it; a ``dask`` elsewhere on PATH is not taken, as it may belong
    to another environment, whose workers could not import the tasks this one submits. ``python``: the
    interpreter to look beside (default: this one)."""
    python = python or sys.executable
    beside = Path(python).with_name("dask")
    if beside.exists():
        return [str(beside), sub]
    return [python, "-m", f"distributed.cli.dask_{sub}"]


def _child_env() -> dict[str, str]:
    """This process's environment, with the import path it was given (a source checkout, a test folder) on
    PYTHONPATH: workers import a task's module by name, so they must see the code this process sees."""
    env = dict(os.environ)
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    extra = [p for p in sys.path if p and os.path.isdir(p) and not p.startswith(prefixes)]
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*extra, *inherited]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _PRELUDE, *dask_command(args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal is for the test run, not for the cluster
        )


def stop_pid(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


@contextmanager
def dask_cli_cluster(
    workers: int = 2,
    *,
    tmp: Path | None = None,
    port: int = 0,
    lifetime: int = 300,
    start_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[CliCluster]:
    """Start ``dask scheduler`` on 127.0.0.1 (``port`` 0: a free one, read back from its scheduler file) and
    ``workers`` single-threaded ``dask worker`` processes without nanny; yield once all workers have joined;
    stop every process by pid when the block ends, whatever happened in it. ``env`` adds variables to the
    processes' environment (Dask configuration, e.g. ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``)."""
    from distributed import Client

    own_tmp = tmp is None
    folder = Path(tempfile.mkdtemp(prefix="custodes-dask-")) if tmp is None else Path(tmp)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**_child_env(), **(env or {})}
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[int, Path] = {}
    try:
        scheduler_file = folder / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        log = folder / "scheduler.log"
        scheduler = _start(
            [
                "scheduler",
                "--host", "127.0.0.1",
                "--port", str(port),
                "--dashboard-address", "127.0.0.1:0",
                "--no-show",
                "--scheduler-file", str(scheduler_file),
                "--idle-timeout", f"{lifetime}s",
            ],
            log,
            env,
        )  # fmt: skip
        procs.append(scheduler)
        logs[scheduler.pid] = log
        deadline = time.monotonic() + start_timeout
        address = None
        while address is None:
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for i in range(workers):
            log = folder / f"worker-{i}.log"
            worker = _start(
                [
                    "worker", address,
                    "--host", "127.0.0.1",
                    "--dashboard-address", "127.0.0.1:0",
                    "--nthreads", "1",
                    "--nworkers", "1",
                    "--no-nanny",
                    "--name", f"custodes-test-{i}",
                    "--local-directory", str(folder / f"worker-{i}"),
                    "--lifetime", f"{lifetime}s",
                ],
                log,
                env,
            )  # fmt: skip
            procs.append(worker)
            logs[worker.pid] = log
        worker_pids = [p.pid for p in procs[1:]]
        with Client(address, timeout=max(1.0, deadline - time.monotonic()), set_as_default=False) as client:
            try:
                if workers:  # none: a scheduler alone, as one whose workers are gone
                    client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError as e:
                tails = "\n".join(logs[p].read_text(errors="replace")[-2000:] for p in worker_pids)
                raise RuntimeError(f"{workers} dask workers did not join {address}:\n{tails}") from e
            by_address = client.run(os.getpid)
        if sorted(by_address.values()) != sorted(worker_pids):
            raise RuntimeError(f"workers report pids {by_address}, started {worker_pids}")
        yield CliCluster(address, scheduler.pid, worker_pids, dict(by_address), logs)
    finally:
        for proc in reversed(procs):  # workers first, so none of them reconnects to a new scheduler
            stop_pid(proc)
        if own_tmp:
            shutil.rmtree(folder, ignore_errors=True)


_SS_PID = re.compile(r"pid=(\d+)")


def listening(pids: Iterable[int]) -> list[tuple[int, str]]:
    """``(pid, local address)`` of every TCP socket these processes listen on, read from ``ss -ltnpH``."""
    wanted = set(pids)
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        for pid in map(int, _SS_PID.findall(line)):
            if pid in wanted:
                found.append((pid, cols[3]))
    return sorted(set(found))
