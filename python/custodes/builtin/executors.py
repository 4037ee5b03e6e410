"""The ``local`` executor: work shards one after another in this process.

The shards custodes runs (re-hashing slices of an archive) spend their time in the Rust core with the GIL
released, and each shard already hashes its objects on every thread it is given: one shard at a time, with all
the workers, keeps the disk's queue full without threads fighting over it, and pickles nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from custodes.hookspecs import hookimpl
from custodes.plugins import Executor, ExecutorOptions, ShardFn


def run_local(fn: ShardFn, shards: Iterable[Any], options: ExecutorOptions) -> Iterator[tuple[int, Any]]:
    for index, shard in enumerate(shards):
        yield index, fn(shard, options.workers)


@hookimpl
def custodes_executors() -> list[Executor]:
    return [Executor("local", "this machine's cores, one shard at a time (the default)", run_local, remote=False)]
