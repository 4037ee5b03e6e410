"""One child process, timed, with its exit code, output and peak RSS: its own, not the whole bench's
(``getrusage(RUSAGE_CHILDREN)`` keeps the largest child seen so far): GNU time's when this machine has it, else
wait4's."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    rc: int
    stdout: bytes
    stderr: bytes
    rss_mib: float  # peak resident set of the child (and the children it waited for)


GNU_TIME = "/usr/bin/time"


def as_installed(folder: Path) -> None:
    """Every custodes process this bench starts runs with byte-code caching on, as an installed package has it, in
    a cache of its own under ``folder`` (filled by the first run, which every bench here warms or repeats): a shell
    with PYTHONDONTWRITEBYTECODE set would otherwise have each run compile cli.py and what the command imports
    again, 30-70 ms a process that no user pays."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str((folder / "pycache").resolve())


def _gnu_time() -> bool:
    try:
        said = subprocess.run([GNU_TIME, "--version"], capture_output=True)
        return b"GNU" in said.stdout + said.stderr
    except OSError:
        return False


HAVE_GNU_TIME = _gnu_time()


def measure(*args: str, stdin: bytes | None = None) -> Run:
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as feed,
        tempfile.NamedTemporaryFile() as rss,
    ):
        if stdin is not None:
            feed.write(stdin)
            feed.seek(0)
        prefix = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name] if HAVE_GNU_TIME else []
        # Without GNU time, a child's figure starts at the bench's own (Linux keeps the memory high-water mark
        # of the process a child was spawned from through its exec): GNU time's own child starts from time's.
        actions = [
            (os.POSIX_SPAWN_DUP2, feed.fileno(), 0)
            if stdin is not None
            else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        argv = [*prefix, *args]
        t0 = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        kib = int(rss.read().split()[-1]) if HAVE_GNU_TIME else usage.ru_maxrss
        return Run(seconds, rc, out.read(), err.read(), kib / 1024)


def must(run: Run, what: str, ok: tuple[int, ...] = (0,)) -> Run:
    """The run, or the bench stops saying what went wrong: a figure from a failed run is no figure."""
    if run.rc not in ok:
        raise SystemExit(f"{what} exited {run.rc}: {run.stderr.decode(errors='replace')[-800:]}")
    return run


def stored_all(run: Run, what: str, files: int, findings: set[str]) -> Run:
    """An ingest run (``--json``) that stored every one of ``files`` files, failed none and said nothing but
    ``findings``; otherwise the bench stops, naming what went wrong (a failed ingest must never be timed)."""
    import json

    report = json.loads(run.stdout)
    kinds = {f["kind"] for f in report["findings"]}
    if len(report["stored"]) != files or report["failed"] or not kinds <= findings:
        raise SystemExit(
            f"{what} went wrong (exit {run.rc}): stored {len(report['stored'])} of {files}, "
            f"failed {report['failed']}, findings {sorted(kinds)}"
        )
    return run
