"""The ``local`` executor: work shards on a thread pool in this process.

The shards custodes runs (hashing slices of an archive) spend their time in
the Rust core with the GIL released, so threads scale like processes here
without pickling anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from custodes.hookspecs import hookimpl
from custodes.plugins import Executor


def run_local(fn: Callable[[Any], Any], shards: list[Any], workers: int | None) -> Iterator[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, shards)


@hookimpl
def custodes_executors() -> list[Executor]:
    return [Executor("local", "a thread pool in this process", run_local)]
