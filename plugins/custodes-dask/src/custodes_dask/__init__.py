"""custodes executor on a Dask cluster. See README.md.

``run_dask(fn, shards, options)`` submits one task per shard, ``fn(shard, 1)``, and yields ``(index, result)``
as tasks finish. A worker that dies mid-shard is Dask's business: its scheduler runs the task again on another
worker (up to ``distributed.scheduler.allowed-failures`` deaths, then ``KilledWorker``); the client's future
finishes once, so the shard is yielded once. A shard that raises is retried :data:`RETRIES` times; what still
fails, a scheduler that cannot be reached within :data:`CONNECT_TIMEOUT` (handshake included), and one with no
worker for :data:`WORKER_TIMEOUT`, is an :class:`~custodes.plugins.ExecutorError` of one line. The LocalCluster
started without a scheduler speaks mutual TLS with certificates of the run's, and keeps no HTTP listener.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from itertools import islice
from typing import Any

from custodes.hookspecs import hookimpl
from custodes.plugins import Executor, ExecutorError, ExecutorOptions, ShardFn

__version__ = "0.1.0"

#: Seconds for connecting to a scheduler given by address, handshake included, before the run fails.
CONNECT_TIMEOUT = 10
#: Seconds a connected scheduler may go without a single worker before the run fails.
WORKER_TIMEOUT = 60
#: Times a shard that raised is run again (on any worker) before the run fails: shards are idempotent, and a
#: passing I/O error on one machine should not end a verify.
RETRIES = 2
#: Workers of the LocalCluster started when no scheduler is given and ``options.workers`` is None.
DEFAULT_WORKERS = 2


def _client_class() -> type:
    from distributed import Client

    class BoundedClient(Client):
        """A Client whose start, the handshake included, ends within ``CONNECT_TIMEOUT`` (distributed bounds
        the TCP connect with its own timeout but waits forever for a peer that accepts and never answers), and
        that closes itself when the start fails (else ``Client.__del__`` prints a traceback later)."""

        def start(self, **kwargs: Any) -> None:
            kwargs.setdefault("callback_timeout", CONNECT_TIMEOUT)
            try:
                super().start(**kwargs)
            except BaseException:
                with suppress(Exception):
                    self.close(timeout=CONNECT_TIMEOUT)
                raise

    return BoundedClient


#: A scheduler's address: tcp:// or tls://, a host (a bracketed IPv6 address too) and a port; tcp:// by default.
_ADDRESS = re.compile(r"(?:(?:tcp|tls)://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):[0-9]{1,5}")


def connect(address: str, security: Any = None) -> Any:
    """A client of the scheduler at ``address`` within :data:`CONNECT_TIMEOUT` s, or an ExecutorError naming it.
    Whatever fails is wrapped: an HTTP server on the port makes distributed raise a MemoryError, for instance. An
    address that is none is said as that (a hostile review: "garbage" was "cannot reach ... within 10 s")."""
    if not _ADDRESS.fullmatch(address):
        raise ExecutorError(
            f"--scheduler {address!r} is not a scheduler's address: give tcp://HOST:PORT (or tls://HOST:PORT, or "
            "HOST:PORT), as `dask scheduler` prints it"
        )
    try:
        return _client_class()(address, timeout=CONNECT_TIMEOUT, set_as_default=False, security=security)
    except Exception as e:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s: "
            f"{type(e).__name__}: {_one_line(e)}"
        ) from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _stop_http(server: Any) -> None:
    """Close the HTTP listener every Dask scheduler and worker opens (there is no option to not open it;
    ``_NO_HTTP`` gave it no routes to serve meanwhile)."""
    http = getattr(server, "http_server", None)
    if http is not None:
        http.stop()


def _stop_scheduler_http(dask_scheduler: Any) -> None:
    _stop_http(dask_scheduler)


#: No HTTP routes in a LocalCluster's scheduler and workers, for the moment their listeners are open.
_NO_HTTP = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}


def _no_http_plugin() -> Any:
    from distributed import WorkerPlugin

    class NoHttp(WorkerPlugin):
        name = "custodes-no-http"

        def setup(self, worker: Any) -> None:
            _stop_http(worker)

    return NoHttp()


def _local_client(options: ExecutorOptions, stack: ExitStack) -> Any:
    """A client of a LocalCluster started (and closed with ``stack``) for this run: TLS with certificates made
    for the run, so only this client and the cluster's own processes can talk to it, and no HTTP listener."""
    import dask
    from distributed import Client, LocalCluster

    try:
        with dask.config.set(_NO_HTTP):
            cluster = LocalCluster(
                n_workers=options.workers or DEFAULT_WORKERS,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                worker_dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},  # not 8787
                security=True,  # Security.temporary(): a CA and a certificate of the run's, mutual TLS
                silence_logs=logging.CRITICAL,
            )
    except Exception as e:
        raise ExecutorError(f"cannot start a local Dask cluster: {type(e).__name__}: {_one_line(e)}") from e
    stack.callback(cluster.close)
    client = Client(cluster, set_as_default=False, security=cluster.security)
    stack.callback(client.close)  # closed before the cluster (callbacks run last first)
    try:
        client.run_on_scheduler(_stop_scheduler_http)
        client.register_plugin(_no_http_plugin())  # on the workers there are, and any that a nanny restarts
    except Exception as e:
        raise ExecutorError(f"cannot start a local Dask cluster: {type(e).__name__}: {_one_line(e)}") from e
    return client


def _client(options: ExecutorOptions, stack: ExitStack) -> Any:
    """A client of the scheduler at ``options.scheduler`` with a worker, or of a LocalCluster on loopback
    started (and closed with ``stack``) for this run."""
    if options.scheduler is None:
        return _local_client(options, stack)
    client = connect(options.scheduler)
    stack.callback(client.close)
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except Exception as e:
        raise ExecutorError(
            f"the Dask scheduler at {options.scheduler} has had no worker for {WORKER_TIMEOUT} s: "
            f"{type(e).__name__}: {_one_line(e)}"
        ) from e
    return client


@contextmanager
def _quiet_distributed() -> Iterator[None]:
    """distributed's loggers below CRITICAL for the run (a scheduler that dies mid-run logs dozens of ERROR
    lines before the run's one ExecutorError); their levels are restored afterwards."""
    names = ["distributed"] + [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("distributed.") and isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
    ]
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


#: Shards in flight per worker thread: one running, one queued behind it, so a worker never waits for the
#: coordinator to record a result and make the next shard; the rest are made only as these finish.
IN_FLIGHT_PER_THREAD = 2


def run_dask(fn: ShardFn, shards: Iterable[Any], options: ExecutorOptions) -> Iterator[tuple[int, Any]]:
    """Run ``fn(shard, 1)`` for every shard on the cluster; yield ``(index, result)`` as they finish. Shards are
    taken from ``shards`` only as there is room for them (the contract: an archive is thousands of shards)."""
    from distributed import as_completed

    todo = enumerate(shards)
    first = next(todo, None)
    if first is None:  # nothing to run: no cluster is started
        return
    with ExitStack() as stack:
        stack.enter_context(_quiet_distributed())  # entered first: quiet until the cluster is closed, too
        client = _client(options, stack)
        run = uuid.uuid4().hex[:12]
        name = getattr(fn, "__name__", "shard")
        pending: dict[Any, int] = {}
        # Whatever ends the loop (done, a failed shard, the caller closing the generator), the shards not yet
        # yielded are cancelled: a cluster given by address must not go on hashing for a verify that stopped.
        # Dask cannot stop a shard already running on a worker; that one finishes and its result is dropped.
        stack.callback(lambda: client.cancel(list(pending)) if pending else None)

        def submit(index: int, shard: Any) -> Any:
            future = client.submit(fn, shard, 1, key=f"custodes-{name}-{run}-{index}", pure=False, retries=RETRIES)
            pending[future] = index
            return future

        queue = as_completed([submit(*first)], loop=client.loop)
        room = max(2, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
        for index, shard in islice(todo, room - 1):
            queue.add(submit(index, shard))
        for future in queue:
            index = pending.pop(future, None)
            if index is None:  # as_completed yields each future once; this keeps the contract if it did not
                continue
            try:
                result = future.result()
            except Exception as e:  # the task's own error, KilledWorker, or a cancelled future
                raise ExecutorError(
                    f"shard {index} failed on the Dask cluster ({options.scheduler or 'local'}): "
                    f"{type(e).__name__}: {_one_line(e)}"
                ) from e
            finally:
                future.release()
            following = next(todo, None)  # before yielding: the worker starts it while the caller records this one
            if following is not None:
                queue.add(submit(*following))
            yield index, result


@hookimpl
def custodes_executors() -> list[Executor]:
    return [
        Executor(
            "dask",
            "a Dask cluster: --scheduler tcp://HOST:8786, or a LocalCluster of --workers processes on loopback",
            run_dask,
            remote=True,
        )
    ]
