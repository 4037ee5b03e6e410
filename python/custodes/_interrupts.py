"""Work on threads when the command is interrupted (Ctrl-C) or fails: what has not started is called off, what has
started is waited for, whatever further Ctrl-Cs say, so the command leaves no thread still writing behind it.

Waited for on the futures, never by joining the threads: in CPython 3.11 a ``Thread.join`` that Ctrl-C interrupts
marks its thread stopped while it runs on, so the next join returns at once, the process exits with the thread
still copying or sending, and the interpreter's own join at exit, interrupted again, prints a traceback (a hostile
review pressed Ctrl-C three to ten times during an ingest's copies, and during S3 uploads)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any


def stop_pool(pool: ThreadPoolExecutor, futures: Iterable[Future[Any]], stop: Callable[[], None] | None = None) -> None:
    """Cancel those of ``futures`` not started, ask the others to ``stop`` where they can be (a copy of a large
    file from a slow card ran for minutes), wait until they are done (through any Ctrl-C meanwhile: each is work
    that ends in seconds, a copy or a part in flight), then let ``pool``'s idle threads go."""
    started = [f for f in futures if not f.cancel()]
    if stop is not None:
        stop()
    while True:
        try:
            wait(started)
            break
        except KeyboardInterrupt:
            continue
    pool.shutdown(wait=False)
