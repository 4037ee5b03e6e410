"""The dask executor on real clusters: a LocalCluster started for the run, and `dask scheduler` / `dask worker`
processes started as a user starts them. No mocks: workers are processes, a dead worker is a SIGKILL."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from distributed import Client

import custodes_dask
from custodes.plugins import ExecutorError, ExecutorOptions, PluginManager
from custodes_dask import CONNECT_TIMEOUT, RETRIES, connect, run_dask
from custodes_dask.testing import CliCluster, dask_cli_cluster, listening

# ---- shard functions: module-level, so workers import them by name -------------------------------------


def square(shard: int, threads: int | None) -> tuple[int, int | None, int]:
    return shard * shard, threads, os.getpid()


def always_fails(shard: tuple[str, int], threads: int | None) -> None:
    folder, index = shard
    with open(Path(folder) / f"attempts-{index}", "a") as f:
        f.write(f"{os.getpid()}\n")
    raise ValueError(f"shard {index} is unreadable")


def _wait_for(path: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def held(shard: tuple[str, int, int], threads: int | None) -> tuple[int, int]:
    """Shard ``held`` says it runs (a file named by index and pid), then waits for the test's ``go`` file."""
    folder, index, hold = shard
    if index == hold:
        (Path(folder) / f"running-{index}-{os.getpid()}").touch()
        _wait_for(Path(folder) / "go")
    return index, os.getpid()


def kills_its_worker(shard: int, threads: int | None) -> int:
    if shard == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return shard


def scheduler_keys(dask_scheduler) -> list[str]:  # noqa: ANN001 (the scheduler, passed by run_on_scheduler)
    return [str(k) for k in dask_scheduler.tasks]


# ---- helpers ---------------------------------------------------------------------------------------------


def running_markers(folder: Path, index: int) -> list[int]:
    return [int(p.name.rsplit("-", 1)[1]) for p in folder.glob(f"running-{index}-*")]


def wait_until(cond, limit: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def spawned_workers() -> list[psutil.Process]:
    """This process's LocalCluster worker processes: spawned children, titled "dask worker [ADDRESS]" once up."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any("spawn_main" in part or part.startswith("dask worker") for part in child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_loopback_only(pids: list[int]) -> None:
    found = listening(pids)
    assert found, f"ss shows no listening socket of {pids}"
    assert all(addr.startswith("127.0.0.1:") for _, addr in found), found


# ---- the plugin --------------------------------------------------------------------------------------------


def test_the_plugin_provides_a_remote_dask_executor() -> None:
    executor = PluginManager(environ={}).executors.get("dask")
    assert executor.remote is True and executor.run is run_dask


# ---- LocalCluster -------------------------------------------------------------------------------------------


def test_local_cluster_runs_every_shard_once_with_one_thread() -> None:
    results = []
    pids_seen: set[int] = set()
    gen = run_dask(square, list(range(10)), ExecutorOptions())  # two workers unless told
    for index, result in gen:
        if not pids_seen:  # the cluster is up: what it listens on, it listens on loopback
            workers = spawned_workers()
            assert len(workers) == 2
            assert_loopback_only([os.getpid(), *(p.pid for p in workers)])
        results.append((index, result))
        pids_seen.add(result[2])
    assert sorted(i for i, _ in results) == list(range(10))
    assert all(r[:2] == (i * i, 1) for i, r in results)
    assert os.getpid() not in pids_seen and len(pids_seen) <= 2  # run by the cluster's worker processes
    assert wait_until(lambda: not spawned_workers(), 15), "the LocalCluster's workers outlived the run"


def test_shards_are_taken_only_as_there_is_room_for_them() -> None:
    """The shards of an archive are made as the run goes: two per worker thread in flight, then one more per
    result, never the whole list at once."""
    taken = []

    def made():
        for i in range(100):
            taken.append(i)
            yield i

    gen = run_dask(square, made(), ExecutorOptions(workers=2))
    results = [next(gen) for _ in range(3)]
    assert len(taken) <= 4 + 3  # two workers of one thread: four in flight, and one taken after each result
    gen.close()
    assert len(results) == 3 and len(taken) < 100


def test_no_shards_start_no_cluster() -> None:
    assert list(run_dask(square, [], ExecutorOptions())) == []
    assert not spawned_workers()


def test_closing_early_cancels_the_rest_and_stops_the_local_cluster(tmp_path: Path) -> None:
    shards = [(str(tmp_path), i, 1) for i in range(8)]  # shard 1 holds its worker until "go" (never, here)
    gen = run_dask(held, shards, ExecutorOptions(workers=3))
    index, _ = next(gen)
    assert index != 1
    assert wait_until(lambda: running_markers(tmp_path, 1), 30)
    workers = spawned_workers()
    assert len(workers) == 3
    started = time.monotonic()
    gen.close()
    assert time.monotonic() - started < 30
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == [], f"worker processes left behind: {alive}"
    assert not spawned_workers()


def tls_certificate(port: int) -> bytes:
    """The certificate the server on 127.0.0.1:``port`` presents in a TLS handshake (b"" if it speaks no TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True) or b""
    except (OSError, ssl.SSLError):
        return b""


def http_answer(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            return s.recv(64)
        except OSError:
            return b""


def test_local_cluster_speaks_only_mutual_tls_and_opens_no_http_server() -> None:
    """Any local account can reach loopback ports: the LocalCluster's listeners must each demand the run's own
    certificates, and no scheduler or worker dashboard may listen at all."""
    from distributed import Security

    gen = run_dask(square, list(range(6)), ExecutorOptions(workers=2))
    first, _ = next(gen)
    workers = [p for p in spawned_workers() if "tcp://" not in " ".join(p.cmdline())]  # not a CLI cluster's
    found = listening([os.getpid(), *(p.pid for p in workers)])
    ports = [int(addr.rsplit(":", 1)[1]) for _, addr in found]
    # a scheduler, and a nanny in this process and a worker process per worker: nothing else (no 8787)
    assert len(ports) == 1 + 2 * 2, found
    assert all(addr.startswith("127.0.0.1:") for _, addr in found), found
    for port in ports:
        assert tls_certificate(port), f"port {port} does not speak TLS: {found}"
        assert not http_answer(port).startswith(b"HTTP"), f"port {port} answers HTTP"
        for address, security in (
            (f"tcp://127.0.0.1:{port}", None),  # a plain client
            (f"tls://127.0.0.1:{port}", Security.temporary()),  # TLS with certificates of its own
        ):
            with pytest.raises(ExecutorError, match="cannot reach"):
                connect(address, security=security).close()
    assert sorted([first, *(i for i, _ in gen)]) == list(range(6))  # the run's own client was not disturbed


def test_distributed_is_quiet_during_a_run_and_restored_after() -> None:
    before = logging.getLogger("distributed").level
    during = []

    for _ in run_dask(square, [1, 2], ExecutorOptions(workers=1)):
        during.append(logging.getLogger("distributed.comm.tcp").getEffectiveLevel())
        during.append(logging.getLogger("distributed.client").getEffectiveLevel())
    assert set(during) == {logging.CRITICAL}
    assert logging.getLogger("distributed").level == before


# ---- the CLI cluster, as a user starts one ----------------------------------------------------------------------


def test_cli_cluster_listens_on_loopback_only(dask_cli_cluster: CliCluster) -> None:
    assert_loopback_only(dask_cli_cluster.pids)
    assert {pid for pid, _ in listening(dask_cli_cluster.pids)} == set(dask_cli_cluster.pids)
    assert all(a.startswith("tcp://127.0.0.1:") for a in [dask_cli_cluster.address, *dask_cli_cluster.workers])


def test_cli_cluster_runs_every_shard_once_on_its_workers(dask_cli_cluster: CliCluster) -> None:
    results = list(run_dask(square, list(range(12)), ExecutorOptions(scheduler=dask_cli_cluster.address)))
    assert sorted(i for i, _ in results) == list(range(12))
    assert all(r[:2] == (i * i, 1) for i, r in results)
    assert {r[2] for _, r in results} <= set(dask_cli_cluster.worker_pids)
    with Client(dask_cli_cluster.address, timeout=10, set_as_default=False) as client:
        assert wait_until(lambda: client.run_on_scheduler(scheduler_keys) == [], 10)  # nothing kept


def test_a_shard_that_always_fails_names_its_index(dask_cli_cluster: CliCluster, tmp_path: Path) -> None:
    shards = [(str(tmp_path), i) for i in range(3)]
    with pytest.raises(ExecutorError, match=r"shard [0-2] failed .*ValueError: shard [0-2] is unreadable"):
        list(run_dask(always_fails, shards, ExecutorOptions(scheduler=dask_cli_cluster.address)))
    # The first failure ends the run; the shard that failed was tried RETRIES more times first.
    attempts = {p.name: p.read_text().split() for p in tmp_path.glob("attempts-*")}
    assert max(len(a) for a in attempts.values()) == RETRIES + 1


def test_closing_early_cancels_shards_on_a_cluster_given_by_address(
    dask_cli_cluster: CliCluster, tmp_path: Path
) -> None:
    shards = [(str(tmp_path), i, 0) for i in range(20)]  # shard 0 holds one worker; the other runs the rest
    gen = run_dask(held, shards, ExecutorOptions(scheduler=dask_cli_cluster.address))
    first, _ = next(gen)
    assert first != 0
    gen.close()
    (tmp_path / "go").touch()  # the running shard cannot be interrupted; let it end
    with Client(dask_cli_cluster.address, timeout=10, set_as_default=False) as client:
        assert wait_until(lambda: client.run_on_scheduler(scheduler_keys) == [], 15)
        assert len(client.scheduler_info()["workers"]) == 2  # the cluster given by address is left running


def test_unreachable_scheduler_is_an_executor_error_naming_it() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=f"cannot reach the Dask scheduler at {address}"):
        list(run_dask(square, [1, 2], ExecutorOptions(scheduler=address)))
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("address", ["garbage", "tcp://127.0.0.1", "127.0.0.1:port", "http://127.0.0.1:8786"])
def test_an_address_that_is_no_schedulers_is_said_as_that_at_once(address: str) -> None:
    """A hostile review: `--scheduler garbage` waited, then said "cannot reach the Dask scheduler at garbage
    within 10 s: ValueError: missing port number"."""
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"is not a scheduler's address: give tcp://HOST:PORT"):
        list(run_dask(square, [1, 2], ExecutorOptions(scheduler=address)))
    assert time.monotonic() - started < 2


def listener(answer: bytes | None) -> tuple[str, Callable[[], None]]:
    """A TCP server on loopback that accepts and then says nothing (``answer`` None) or sends ``answer``; it
    holds its connections open until the returned ``stop()``, which returns once the port is closed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        held = []
        with server:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                if answer is not None:
                    conn.sendall(answer)
                held.append(conn)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(10)

    return f"tcp://127.0.0.1:{server.getsockname()[1]}", stop


def no_unclosed_clients() -> list[Client]:
    gc.collect()  # a Client left half-started prints "Exception ignored in Client.__del__" when collected
    return [c for c in gc.get_objects() if isinstance(c, Client) and c.status != "closed"]


@pytest.mark.parametrize(
    "answer", [None, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"], ids=["silent", "http"]
)
def test_a_listener_that_is_no_scheduler_is_an_executor_error_within_the_bound(answer: bytes | None) -> None:
    address, stop = listener(answer)
    started = time.monotonic()
    try:
        with pytest.raises(ExecutorError, match=f"cannot reach the Dask scheduler at {address}") as caught:
            list(run_dask(square, [1, 2], ExecutorOptions(scheduler=address)))
    finally:
        stop()  # before the next test, which may count this process's listening sockets
    assert time.monotonic() - started < CONNECT_TIMEOUT + 5
    assert "\n" not in str(caught.value)
    assert no_unclosed_clients() == []


def test_a_scheduler_without_workers_is_an_executor_error_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(custodes_dask, "WORKER_TIMEOUT", 3)
    with dask_cli_cluster(workers=0, tmp=tmp_path) as cluster:
        started = time.monotonic()
        with pytest.raises(ExecutorError, match=f"Dask scheduler at {cluster.address} has had no worker for 3 s"):
            list(run_dask(square, [1, 2], ExecutorOptions(scheduler=cluster.address)))
        assert time.monotonic() - started < 3 + CONNECT_TIMEOUT
    assert no_unclosed_clients() == []


# ---- a worker dies mid-shard ------------------------------------------------------------------------------------


def test_a_killed_worker_s_shard_runs_again_elsewhere_and_is_yielded_once(
    fresh_dask_cli_cluster: CliCluster, tmp_path: Path
) -> None:
    cluster = fresh_dask_cli_cluster
    shards = [(str(tmp_path), i, 3) for i in range(10)]
    results: list[tuple[int, tuple[int, int]]] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            results.extend(run_dask(held, shards, ExecutorOptions(scheduler=cluster.address)))
        except BaseException as e:  # handed to the test thread
            errors.append(e)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert wait_until(lambda: running_markers(tmp_path, 3), 30), cluster.log_tail()
    (victim,) = running_markers(tmp_path, 3)
    cluster.kill_worker(victim)
    assert wait_until(lambda: len(running_markers(tmp_path, 3)) == 2, 30), cluster.log_tail()
    (tmp_path / "go").touch()
    consumer.join(60)
    assert not consumer.is_alive() and errors == []
    assert sorted(i for i, _ in results) == list(range(10))
    (survivor,) = set(cluster.worker_pids) - {victim}
    assert dict(results)[3] == (3, survivor)
    assert set(running_markers(tmp_path, 3)) == {victim, survivor}


def test_a_shard_that_kills_every_worker_it_runs_on_is_an_executor_error(tmp_path: Path) -> None:
    """KilledWorker: the scheduler gives up on a task after ``allowed-failures`` worker deaths (here 0: the first);
    the run fails naming the shard, rather than killing the whole cluster."""
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with dask_cli_cluster(workers=2, tmp=tmp_path, env=env) as cluster:
        with pytest.raises(ExecutorError, match=r"shard 1 failed .*KilledWorker"):
            list(run_dask(kills_its_worker, [0, 1], ExecutorOptions(scheduler=cluster.address)))


def test_without_a_dask_script_beside_python_the_cluster_runs_as_python_m(tmp_path: Path) -> None:
    """An interpreter that imports custodes from PYTHONPATH may have no ``dask`` script beside it (the bench runs
    so on a lent machine): the same command line interface is then ``python -m distributed.cli.dask_SUB``."""
    import subprocess
    import sys

    from custodes_dask.testing import dask_command

    python = str(tmp_path / "python")
    assert dask_command("worker", python=python) == [python, "-m", "distributed.cli.dask_worker"]
    (tmp_path / "dask").touch()
    assert dask_command("scheduler", python=python) == [str(tmp_path / "dask"), "scheduler"]
    for sub, option in (("scheduler", "--idle-timeout"), ("worker", "--no-nanny")):  # options dask_cli_cluster uses
        argv = dask_command(sub, python=str(tmp_path / "elsewhere" / "python"))
        said = subprocess.run([sys.executable, *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
        assert said.returncode == 0 and option in said.stdout
