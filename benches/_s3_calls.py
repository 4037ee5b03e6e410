"""One custodes command, run with every S3 request it sends counted and the s3 backend's steps timed
(benches/compare_s3.py's untimed look at where the time goes). Nothing in custodes is changed: botocore's
client and a few functions are wrapped in this process only, before the command starts.

    python benches/_s3_calls.py OUT.json ingest VOLUME --archive A ...   (any custodes command line)

OUT.json gets, when the command ends:

- ``requests``: HTTP requests sent, by S3 operation (botocore's ``before-send``: a retry counts again);
- ``calls`` / ``call_seconds``: API calls by operation and the wall time spent in them (summed over threads;
  a GET's time is until its headers, the body is read by the caller, in ``steps``);
- ``steps`` / ``step_calls``: wall time (summed over threads) in the functions named below, a step missing
  from custodes being left out;
- ``seconds``: the whole command, from here to its exit (imports included).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

#: (module, owner class or "", function, step name): what ingest and verify do on the s3 backend.
STEPS = (
    ("custodes.ingest", "", "_copy_one", "ingest: copy into the spool, hashing"),
    ("custodes.ingest", "", "sync_together", "ingest: fsync of the spool copies"),
    ("custodes.ingest", "", "_read_back", "ingest: spool copies read back and hashed"),
    ("custodes_s3.store", "S3Store", "put_many", "s3 put_many"),
    ("custodes_s3.store", "S3Store", "_abort_abandoned_uploads", "  list open multipart uploads"),
    ("custodes_s3.store", "S3Store", "_create", "  conditional PUT"),
    ("custodes_s3.store", "S3Store", "_create_multipart", "  HEAD + multipart upload"),
    ("custodes_s3.store", "", "_part_sha256", "    each part's SHA-256, read before it is sent"),
    ("custodes_s3.store", "S3Store", "_read_back", "  read back (GET, hashed)"),
    ("custodes_s3.store", "S3Store", "_lock", "  lock (retention, hold)"),
    ("custodes.ingest", "", "_record_group", "ingest: group recorded (catalog, then to_store)"),
    ("custodes.retention", "", "to_store", "  retention.to_store: the storage's lock"),
    ("custodes_s3.store", "S3Store", "retain", "    retain (list versions, HEAD, retention)"),
    ("custodes_s3.store", "S3Store", "hold", "    hold (list versions, legal hold)"),
    ("custodes.verify", "", "_trust", "verify: keys and checkpoints"),
    ("custodes.verify", "", "_verify_ledger", "verify: ledger replayed and checked"),
    ("custodes.verify", "", "_verify_catalog_against_ledger", "verify: catalog against the ledger"),
    ("custodes.verify", "", "_verify_store", "verify: the store, listed and re-hashed"),
    ("custodes_s3.store", "S3Store", "list", "  s3 list (ListObjectVersions pages)"),
    ("custodes_s3.store", "S3Store", "hash_objects", "  s3 hash_objects (GETs, hashed)"),
    ("botocore.auth", "SigV4Auth", "payload", "botocore: SHA-256 of signed bodies (http only)"),
)

_lock = threading.Lock()
requests: Counter[str] = Counter()
calls: Counter[str] = Counter()
call_seconds: defaultdict[str, float] = defaultdict(float)
steps: defaultdict[str, float] = defaultdict(float)
step_calls: Counter[str] = Counter()


def _add(name: str, seconds: float) -> None:
    with _lock:
        steps[name] += seconds
        step_calls[name] += 1


def _timed(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - t0)

    return wrapper


def _timed_generator(fn: Callable[..., Iterator[Any]], name: str) -> Callable[..., Iterator[Any]]:
    """A generator's time is the time spent inside it, not the time its caller holds it open."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        inner = fn(*args, **kwargs)
        spent = 0.0
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    spent += time.perf_counter() - t0
                yield item
        finally:
            _add(name, spent)

    return wrapper


def install() -> None:
    import inspect

    import botocore.client

    original_call = botocore.client.BaseClient._make_api_call

    def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original_call(self, operation_name, api_params)
        finally:
            with _lock:
                calls[operation_name] += 1
                call_seconds[operation_name] += time.perf_counter() - t0

    botocore.client.BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]

    def _sent(event_name: str = "", **_: Any) -> None:
        with _lock:
            requests[event_name.rsplit(".", 1)[-1]] += 1

    original_create = botocore.client.ClientCreator.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original_create(self, *args, **kwargs)
        client.meta.events.register("before-send", _sent)
        return client

    botocore.client.ClientCreator.create_client = create_client  # type: ignore[method-assign]

    for module_name, owner_name, function, name in STEPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = getattr(module, owner_name, None) if owner_name else module
        fn = getattr(owner, function, None)
        if owner is None or fn is None:
            continue
        wrap = _timed_generator if inspect.isgeneratorfunction(fn) else _timed
        setattr(owner, function, wrap(fn, name))


def main() -> None:
    started = time.perf_counter()
    out, args = sys.argv[1], sys.argv[2:]

    def write() -> None:
        with _lock:
            said = {
                "seconds": time.perf_counter() - started,
                "requests": dict(requests),
                "calls": dict(calls),
                "call_seconds": dict(call_seconds),
                "steps": {name: steps[name] for *_, name in STEPS if name in steps},
                "step_calls": dict(step_calls),
            }
        with open(out, "w") as f:
            json.dump(said, f, indent=1)

    install()
    atexit.register(write)
    from custodes.cli import main as custodes

    sys.argv = ["custodes", *args]
    sys.exit(custodes())


if __name__ == "__main__":
    main()
