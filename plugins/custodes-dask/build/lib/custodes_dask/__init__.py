"""custodes executor on a Dask cluster. See README.md.

``run_dask(fn, shards, options)`` submits one task per shard, ``fn(shard, 1)``, and yields ``(index, result)``
as tasks finish. A worker that dies mid-shard is Dask's business: its scheduler runs the task again on another
worker (up to ``distributed.scheduler.allowed-failures`` deaths, then ``KilledWorker``); the client's future
finishes once, so the shard is yielded once. A shard that raises is retried :data:`RETRIES` times; what still
fails, and a scheduler that cannot be reached, is an :class:`~custodes.plugins.ExecutorError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import islice
from typing import Any

from custodes.hookspecs import hookimpl
from custodes.plugins import Executor, ExecutorError, ExecutorOptions, ShardFn

__version__ = "0.1.0"

#: Seconds to wait for a scheduler given by address before the run fails.
CONNECT_TIMEOUT = 10
#: Times a shard that raised is run again (on any worker) before the run fails: shards are idempotent, and a
#: passing I/O error on one machine should not end a verify.
RETRIES = 2
#: Workers of the LocalCluster started when no scheduler is given and ``options.workers`` is None.
DEFAULT_WORKERS = 2


def _client(options: ExecutorOptions, stack: ExitStack) -> Any:
    """A client of the scheduler at ``options.scheduler``, or of a LocalCluster on loopback started (and
    closed with ``stack``) for this run."""
    from distributed import Client, LocalCluster

    if options.scheduler is not None:
        try:
            client = Client(options.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {options.scheduler} within {CONNECT_TIMEOUT} s: "
                f"{type(e).__name__}: {e}"
            ) from e
        stack.callback(client.close)
        return client
    try:
        cluster = LocalCluster(
            n_workers=options.workers or DEFAULT_WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    except Exception as e:
        raise ExecutorError(f"cannot start a local Dask cluster: {type(e).__name__}: {e}") from e
    stack.callback(cluster.close)
    client = Client(cluster, set_as_default=False)
    stack.callback(client.close)  # closed before the cluster (callbacks run last first)
    return client


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
                    f"{type(e).__name__}: {e}"
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
