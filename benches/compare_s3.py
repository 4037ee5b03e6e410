#!/usr/bin/env python3
"""custodes on S3 against rclone and s5cmd, on the same data and the same real S3 server, in one run (issue 15).

The bench starts its own SeaweedFS (``custodes_s3.testing.seaweed_server``: ``weed mini`` on loopback, every
request signed) in ``--work`` and, in ``--repeat`` rounds (default 3; the tools take turns, in an order turned
by one each round) quoted as medians, measures as whole processes:

1. **Ingest** of a volume: ``custodes ingest VOL --archive A --driver generic`` into an archive made with
   ``custodes init --storage s3 --bucket B --endpoint URL --prefix bench`` (the init is not timed) against
   ``rclone copy VOL bench:B/bench`` (a config file of the run: type s3, provider Other, the endpoint and the
   server's keys; rclone's defaults, 4 transfers) and ``s5cmd --endpoint-url URL cp 'VOL/*' s3://B/bench/``
   (its defaults, 256 workers). Two volumes: ``--small`` files of 20-200 KiB (default 2000; random sizes and
   bytes, seeded: benches/compare_archive.py's) and ``--big-mib`` MiB in files of 256 MiB (default 2048).
   Each run gets a bucket of its own, made with Object Lock as custodes needs (rclone and s5cmd upload into
   such a bucket as they are: neither needs it off), and the bucket is removed once the run is checked.
2. **Verify**, every byte read back from the server: ``custodes verify A`` against ``rclone check --download
   VOL bench:B/bench`` (which downloads every object and compares it with the file), each on what its own
   ingest stored in that round: the same bytes, custodes' objects named by their SHA-256. custodes twice:
   as it verifies by default (every digest the policy records: SHA-256 and BLAKE3) and with ``--algo blake3``
   (every byte read and compared with its BLAKE3 digest alone), the two in an order turned each round.
3. **Peak RSS ingesting one file** of ``--rss-gib`` GiB (default 4; 0 skips it): the custodes ingest process's
   (GNU time's ``%M``, else wait4's), and rclone copy's for contrast. Target: under 200 MiB.

Every run is checked, so that a broken run cannot print a good number: custodes ingest must store every file
(exit 1 only for the ``unknown_file`` findings random ``.bin`` files raise) and ``custodes verify`` then exit 0
having checked every object and byte; rclone copy and rclone check must exit 0, the check finding every file
matching; s5cmd's upload is checked with an (untimed) ``rclone check --download``.

Then, unless ``--no-calls``, one untimed, instrumented custodes ingest and verify of a slice of each volume (up
to 100 small files; one big file) through benches/_s3_calls.py: the S3 requests custodes sends per object, by
operation, and the wall time of each step of the s3 backend; rclone's requests for the same slice from its
``--dump headers``. That is where custodes' time goes.

The issue's targets: ingest >= 0.8x rclone copy's throughput, verify >= 1.0x rclone check --download's, peak
RSS ingesting one 4 GiB file < 200 MiB. Prints a table with the medians, the ratios (custodes throughput /
peer throughput, so 1.00x is as fast as the peer) and each target met or not; ``--json-out FILE`` writes every
run's figures.

Notes:

- The server shares the machine with the client: its CPU and disk work counts against every tool alike, and
  custodes' local spool (every byte written, synced and read back on this disk before it is sent) competes
  with the server's own writes on the same disk, as it would not with a remote server.
- A bucket of COMPLIANCE-locked objects cannot be deleted through S3: the bench removes each run's bucket
  through the filer's HTTP API of its own server (which does not enforce Object Lock: the plugin's README), so
  the disk holds one run's objects at a time.
- ``AWS_*`` variables of the calling environment are not passed on: ``AWS_CA_BUNDLE`` alone stops rclone 1.60
  ("unable to load custom CA bundle"), and a profile or endpoint variable could point a tool elsewhere. Each
  tool gets the server's keys in ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (rclone in its config).
- The volume is in the page cache for every tool; ``sync`` runs before each timed run.
- Disk: the work folder's file system must hold about three copies of the largest volume (the volume,
  custodes' spool copy and the server's), plus every volume with ``--keep``; the bench says so and stops first
  where it does not.
- Ctrl-C (or SIGTERM) stops the running tool (its process group) and the server, each by its pid, and removes
  the work folder unless ``--keep``; so does a run past ``--run-timeout`` (a tool that retries for ever, as
  rclone did against a server whose disk was full), and the server's last errors are printed.
- ``--work`` must be new, empty, or a folder an earlier run kept (``--keep``): its volumes are reused.

    PYTHONPATH=python:plugins/custodes-s3/src .venv/bin/python benches/compare_s3.py [--small 2000]
        [--big-mib 2048] [--rss-gib 4] [--repeat 3] [--work DIR] [--keep] [--no-calls] [--json-out FILE]
        [--run-timeout 1800]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from _measure import GNU_TIME, HAVE_GNU_TIME, Run, as_installed, must, stored_all  # noqa: E402
from compare_archive import small_corpus  # noqa: E402
from custodes_s3 import store as s3_store  # noqa: E402
from custodes_s3 import testing  # noqa: E402

#: custodes as this interpreter runs it: importable from PYTHONPATH is enough, no console script needed.
CUSTODES = [sys.executable, "-m", "custodes"]
CALLS = Path(__file__).with_name("_s3_calls.py")
BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
MiB = 1 << 20
BIG_FILE_MIB = 256
PREFIX = "bench"
REMOTE = "bench"  # the rclone remote's name in the run's config
#: What ingest says of random .bin files: no driver reads their time.
FINDINGS = {"unknown_file"}
TOOLS = ("custodes", "rclone", "s5cmd")
TARGET_INGEST = 0.8  # x rclone copy's throughput
TARGET_VERIFY = 1.0  # x rclone check --download's
TARGET_RSS_MIB = 200
CALL_SLICE = 100  # small files in the instrumented ingest


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as on Ctrl-C (the running tool and the server by their pids)."""


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise Stopped(f"signal {signum}")


@dataclass
class Sample:
    """One timed run of one tool."""

    seconds: float
    rss_mib: float


@dataclass
class Volume:
    name: str  # small, big, rss
    path: Path
    files: int
    bytes: int
    ingest: dict[str, list[Sample]] = field(default_factory=dict)
    verify: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def mib(self) -> float:
        return self.bytes / MiB


# ---- volumes ------------------------------------------------------------------------------------------------


def big_volume(root: Path, total_mib: int, file_mib: int, name: str) -> Path:
    """``total_mib`` MiB of random bytes in files of ``file_mib`` MiB (the last one smaller), written once and
    reused while its stamp says it is complete."""
    folder = root / f"{name}-{total_mib}-{file_mib}"
    done = folder / ".complete"
    if done.exists():
        return folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    left, i = total_mib, 0
    while left > 0:
        size = min(file_mib, left)
        with open(folder / "data" / f"{name}{i:03d}.bin", "wb") as f:
            for _ in range(size):
                f.write(os.urandom(MiB))  # random: nothing on the way compresses it
        left, i = left - size, i + 1
    done.touch()
    return folder / "data"


def volume_of(name: str, path: Path) -> Volume:
    files = [p for p in path.iterdir() if p.is_file()]
    return Volume(name, path, len(files), sum(p.stat().st_size for p in files))


def space_needed(a: argparse.Namespace) -> int:
    """Bytes the work folder's file system must have free: the largest volume three times (the volume, custodes'
    spool copy, the server's copy), and every volume once more with --keep; 512 MiB for the rest."""
    sizes = [a.small * 110 * 1024, a.big_mib * MiB, int(a.rss_gib * 1024) * MiB]
    return 3 * max(sizes) + (sum(sizes) - max(sizes) if a.keep else 0) + 512 * MiB


# ---- the bench ----------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, server: testing.Seaweed, work: Path, repeat: int, timeout: float) -> None:
        self.server, self.work, self.repeat, self.timeout = server, work, repeat, timeout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | server.environ()
        self.env["AWS_REGION"] = "us-east-1"
        self.s3 = testing.client(server)
        self.made = 0
        self.rclone = shutil.which("rclone") or "rclone"
        self.s5cmd = str(BIN / "s5cmd") if (BIN / "s5cmd").exists() else (shutil.which("s5cmd") or "s5cmd")
        self.config = work / "rclone.conf"
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"[{REMOTE}]\ntype = s3\nprovider = Other\nendpoint = {server.endpoint}\n"
                f"access_key_id = {server.access_key}\nsecret_access_key = {server.secret_key}\n"
                "region = us-east-1\n"
            )
        (work / "archives").mkdir(exist_ok=True)
        (work / "runs").mkdir(exist_ok=True)

    # -- processes

    def run(self, *argv: str) -> Run:
        """One child, timed, with its exit code, output and peak RSS (GNU time's ``%M``, else wait4's), in a
        session of its own: on Ctrl-C, or past ``--run-timeout``, it and whatever it started are stopped by its
        pid (the process group). A tool that retries for ever (a server out of disk) stops the bench."""
        runs = self.work / "runs"
        out, err, rss = runs / "stdout", runs / "stderr", runs / "rss"
        rss.write_bytes(b"")
        prefix = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss)] if HAVE_GNU_TIME else []
        args = [*prefix, *argv]
        with open(out, "wb") as o, open(err, "wb") as e:
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, o.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, e.fileno(), 2),
            ]
            t0 = time.perf_counter()
            pid = os.posix_spawnp(args[0], args, self.env, file_actions=actions, setsid=True)
            deadline = _Deadline(pid, self.timeout)
            try:
                _, status, usage = os.wait4(pid, 0)
            except BaseException:
                deadline.close()
                _stop_group(pid)
                raise
            seconds = time.perf_counter() - t0
            deadline.close()
        if deadline.fired:
            raise SystemExit(
                f"{' '.join(argv[:4])} ... ran past --run-timeout {self.timeout:g} s: stopped. Its output ends:\n"
                f"{err.read_bytes().decode(errors='replace')[-800:]}"
            )
        said = rss.read_bytes().split()
        kib = int(said[-1]) if HAVE_GNU_TIME and said else usage.ru_maxrss
        return Run(seconds, os.waitstatus_to_exitcode(status), out.read_bytes(), err.read_bytes(), kib / 1024)

    def sync(self) -> None:
        must(self.run("sync"), "sync")

    # -- buckets

    def bucket(self, tool: str) -> str:
        self.made += 1
        name = f"{tool}-{self.made:03d}"
        testing.make_bucket(self.server, name)  # Object Lock on (and so versioning), as custodes needs
        return name

    def drop(self, bucket: str) -> None:
        """The bucket and its objects gone, their disk space given back (through the filer: Object Lock holds
        in the S3 gateway only; on this bench's own server, never anywhere else)."""
        url = f"{self.server.filer_url}/buckets/{bucket}?recursive=true&ignoreRecursiveError=true"
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=120) as r:
            if r.status not in (200, 202, 204):
                raise SystemExit(f"bucket {bucket} not removed: HTTP {r.status}")
        deadline = time.monotonic() + 30
        while bucket in {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}:
            if time.monotonic() > deadline:
                raise SystemExit(f"bucket {bucket} still listed 30 s after its removal")
            time.sleep(0.2)

    # -- one run of each tool: (ingest, verify or None), both checked

    @contextlib.contextmanager
    def fresh_bucket(self, tool: str) -> Iterator[str]:
        """A new bucket with Object Lock for one run, removed after it."""
        bucket = self.bucket(tool)
        try:
            yield bucket
        except BaseException:
            with contextlib.suppress(Exception):  # what stopped the run is what to say, not a failed clean-up
                self.drop(bucket)
            raise
        self.drop(bucket)

    def once(self, tool: str, volume: Volume, turn: int = 0) -> tuple[Sample, dict[str, Sample]]:
        """One run of ``tool``: its ingest, and its verifies by label (VERIFY_LABELS)."""
        with self.fresh_bucket(tool) as bucket:
            if tool == "custodes":
                return self._custodes(bucket, volume, turn)
            return getattr(self, f"_{tool}")(bucket, volume)

    def _custodes(self, bucket: str, volume: Volume, turn: int = 0) -> tuple[Sample, dict[str, Sample]]:
        """Ingest, then ``verify`` and ``verify --algo blake3`` of what it stored, the two in an order turned by
        ``turn`` (the second finds the server's caches warmer)."""
        archive = self.work / "archives" / bucket
        init = [*CUSTODES, "init", "--storage", "s3", "--bucket", bucket, "--endpoint", self.server.endpoint]
        must(self.run(*init, "--prefix", PREFIX, str(archive)), "custodes init")
        try:
            self.sync()
            ingest = [*CUSTODES, "ingest", str(volume.path), "--archive", str(archive), "--driver", "generic"]
            got = must(self.run(*ingest, "-q", "--json"), "custodes ingest", ok=(0, 1))
            stored_all(got, "custodes ingest", volume.files, FINDINGS)
            verifies: dict[str, Sample] = {}
            kinds = {"custodes": (), "custodes-blake3": ("--algo", "blake3")}
            for kind in sorted(kinds, reverse=turn % 2 == 1):
                argv = [*CUSTODES, "verify", str(archive), *kinds[kind], "-q", "--json"]
                checked = must(self.run(*argv), f"custodes verify {' '.join(kinds[kind])}")
                said = json.loads(checked.stdout)
                if not said.get("ok") or said.get("checked") != volume.files or said.get("bytes") != volume.bytes:
                    raise SystemExit(
                        f"custodes verify checked {said.get('checked')} objects, {said.get('bytes')} bytes: the "
                        f"volume has {volume.files} files, {volume.bytes} bytes"
                    )
                verifies[kind] = Sample(checked.seconds, checked.rss_mib)
            return Sample(got.seconds, got.rss_mib), verifies
        finally:
            shutil.rmtree(archive, ignore_errors=True)

    def _rclone(self, bucket: str, volume: Volume) -> tuple[Sample, dict[str, Sample]]:
        self.sync()
        copied = must(
            self.run(self.rclone, "--config", str(self.config), "copy", str(volume.path), self._remote(bucket)),
            "rclone copy",
        )
        checked = self._check(bucket, volume)
        return Sample(copied.seconds, copied.rss_mib), {"rclone": Sample(checked.seconds, checked.rss_mib)}

    def _s5cmd(self, bucket: str, volume: Volume) -> tuple[Sample, dict[str, Sample]]:
        self.sync()
        target = f"s3://{bucket}/{PREFIX}/"
        copied = must(
            self.run(self.s5cmd, "--endpoint-url", self.server.endpoint, "cp", f"{volume.path}/*", target), "s5cmd cp"
        )
        self._check(bucket, volume)  # untimed: s5cmd has no check of its own
        return Sample(copied.seconds, copied.rss_mib), {}

    def _remote(self, bucket: str) -> str:
        return f"{REMOTE}:{bucket}/{PREFIX}"

    def _check(self, bucket: str, volume: Volume, *extra: str) -> Run:
        """``rclone check --download``: exit 0, every file matching, none missing or differing."""
        argv = [self.rclone, "--config", str(self.config), "check", "--download", *extra]
        checked = must(self.run(*argv, str(volume.path), self._remote(bucket)), f"rclone check of {bucket}")
        text = checked.stderr.decode(errors="replace")
        matching = re.search(r"(\d+) matching files", text)
        if not matching or int(matching.group(1)) != volume.files or "0 differences found" not in text:
            raise SystemExit(f"rclone check of {bucket} did not find all {volume.files} files matching:\n{text[-800:]}")
        return checked

    # -- the measurements

    def rounds(self, volume: Volume, tools: tuple[str, ...] = TOOLS) -> None:
        for i in range(self.repeat):
            order = tools[i % len(tools) :] + tools[: i % len(tools)]
            for tool in order:
                ingest, verifies = self.once(tool, volume, i)
                volume.ingest.setdefault(tool, []).append(ingest)
                for kind, verify in verifies.items():
                    volume.verify.setdefault(kind, []).append(verify)
                print(
                    f"  round {i + 1} {tool:8} ingest {ingest.seconds:7.2f} s, peak RSS {ingest.rss_mib:5.0f} MiB"
                    + "".join(f"; {VERIFY_LABELS[k].split(' [')[0]} {v.seconds:.2f} s" for k, v in verifies.items()),
                    flush=True,
                )

    def calls(self, volume: Volume, files: list[Path]) -> dict[str, Any]:
        """custodes' S3 requests and steps for ``files`` (instrumented, untimed), and rclone's requests."""
        folder = self.work / f"calls-{volume.name}"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "volume").mkdir(parents=True)
        for f in files:
            os.link(f, folder / "volume" / f.name)
        part = volume_of(volume.name, folder / "volume")
        archive = folder / "archive"
        with self.fresh_bucket("calls") as bucket:
            init = [*CUSTODES, "init", "--storage", "s3", "--bucket", bucket, "--endpoint", self.server.endpoint]
            must(self.run(*init, "--prefix", PREFIX, str(archive)), "custodes init")
            ingest = [sys.executable, str(CALLS), str(folder / "ingest.json"), "ingest", str(part.path)]
            got = must(
                self.run(*ingest, "--archive", str(archive), "--driver", "generic", "-q", "--json"), "ingest", ok=(0, 1)
            )
            stored_all(got, "instrumented ingest", part.files, FINDINGS)
            verify = [sys.executable, str(CALLS), str(folder / "verify.json"), "verify", str(archive), "-q"]
            must(self.run(*verify), "instrumented verify")
        with self.fresh_bucket("calls") as bucket:
            dump = ("-vv", "--dump", "headers")
            argv = [self.rclone, "--config", str(self.config), *dump, "copy", str(part.path), self._remote(bucket)]
            copied = must(self.run(*argv), "rclone copy --dump headers")
            checked = self._check(bucket, part, *dump)
        said = {
            "files": part.files,
            "bytes": part.bytes,
            "custodes ingest": json.loads((folder / "ingest.json").read_text()),
            "custodes verify": json.loads((folder / "verify.json").read_text()),
            "rclone copy": {"requests": rclone_requests(copied.stderr, bucket)},
            "rclone check --download": {"requests": rclone_requests(checked.stderr, bucket)},
        }
        shutil.rmtree(folder)
        return said


class _Deadline:
    """Stops a child's process group (SIGTERM, then SIGKILL 10 s later) once ``seconds`` are up, unless closed
    first (the child ended); ``fired`` says whether it did."""

    def __init__(self, pid: int, seconds: float) -> None:
        self.pid, self.fired, self.ended = pid, False, threading.Event()
        threading.Thread(target=self._watch, args=(seconds,), daemon=True).start()

    def _watch(self, seconds: float) -> None:
        if self.ended.wait(seconds):
            return
        self.fired = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                return
            if self.ended.wait(10):
                return

    def close(self) -> None:
        self.ended.set()


def _stop_group(pid: int) -> None:
    """The child's process group (its own session) told to stop, killed after 10 s, and the child reaped."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.05)


_RCLONE_REQUEST = re.compile(r"DEBUG : (GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/")


def rclone_requests(stderr: bytes, bucket: str) -> dict[str, int]:
    """rclone's requests, by S3 operation, from its ``--dump headers`` log (path-style URLs)."""
    found: Counter[str] = Counter()
    for method, target in _RCLONE_REQUEST.findall(stderr.decode(errors="replace")):
        url = urlsplit(target)
        query = url.query
        path = unquote(url.path).lstrip("/")
        on_object = path.startswith(f"{bucket}/") and len(path) > len(bucket) + 1
        if method == "HEAD":
            op = "HeadObject" if on_object else "HeadBucket"
        elif method == "GET":
            op = "GetObject" if on_object else "ListObjects"
        elif method == "PUT":
            op = (
                "UploadPart"
                if "partNumber" in parse_qs(query, True)
                else ("PutObject" if on_object else "CreateBucket")
            )
        elif method == "POST":
            op = "CreateMultipartUpload" if "uploads" in parse_qs(query, True) else "CompleteMultipartUpload"
        else:
            op = "AbortMultipartUpload" if "uploadId" in parse_qs(query, True) else "DeleteObject"
        found[op] += 1
    return dict(found)


# ---- figures --------------------------------------------------------------------------------------------------


def median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def peak(samples: list[Sample]) -> float:
    return max(s.rss_mib for s in samples)


LABELS = {  # (the store's own figures, so that a label never says another number than the code sends)
    "custodes": f"custodes ingest [{CORES} cores, {s3_store.PUTS_IN_FLIGHT} puts or {s3_store.MULTIPART_IN_FLIGHT} "
    f"objects x {s3_store.PARTS_IN_FLIGHT} parts in flight]",
    "rclone": "rclone copy [4 transfers]",
    "s5cmd": "s5cmd cp [256 workers]",
}
VERIFY_LABELS = {
    "custodes": f"custodes verify [{s3_store.READERS} GETs in flight]",
    "custodes-blake3": f"custodes verify --algo blake3 [{s3_store.READERS} GETs in flight]",
    "rclone": "rclone check --download [8 checkers]",
}


def report_volume(v: Volume, repeat: int) -> dict[str, Any]:
    """Print a volume's table; its figures for --json-out."""
    print(f"\n{v.name}: {v.files} files, {v.mib:.0f} MiB; median of {repeat} round(s)")
    print(f"  {'ingest':52} {'s':>8} {'MiB/s':>8} {'files/s':>8} {'peak RSS':>9}  custodes/peer")
    ours = median(v.ingest["custodes"])
    said: dict[str, Any] = {"files": v.files, "bytes": v.bytes, "ingest": {}, "verify": {}}
    for tool, samples in v.ingest.items():
        s = median(samples)
        ratio = "" if tool == "custodes" else f"{s / ours:13.2f}x"
        print(f"  {LABELS[tool]:52} {s:8.2f} {v.mib / s:8.1f} {v.files / s:8.1f} {peak(samples):6.0f} MiB  {ratio}")
        said["ingest"][tool] = {
            "seconds": [x.seconds for x in samples],
            "rss_mib": [x.rss_mib for x in samples],
            "median_s": s,
            "mib_s": v.mib / s,
        }
    ours = median(v.verify["custodes"])
    print(f"  {'verify (every byte read back from the server)':52}")
    for tool, samples in v.verify.items():
        s = median(samples)
        ratio = "" if tool.startswith("custodes") else f"{s / ours:13.2f}x"  # (--algo blake3's: under targets)
        print(
            f"  {VERIFY_LABELS[tool]:52} {s:8.2f} {v.mib / s:8.1f} {v.files / s:8.1f} {peak(samples):6.0f} MiB  {ratio}"
        )
        said["verify"][tool] = {
            "seconds": [x.seconds for x in samples],
            "rss_mib": [x.rss_mib for x in samples],
            "median_s": s,
            "mib_s": v.mib / s,
        }
    said["ingest_vs_rclone"] = median(v.ingest["rclone"]) / median(v.ingest["custodes"])
    said["ingest_vs_s5cmd"] = median(v.ingest["s5cmd"]) / median(v.ingest["custodes"])
    said["verify_vs_rclone_check"] = median(v.verify["rclone"]) / median(v.verify["custodes"])
    said["verify_blake3_vs_rclone_check"] = median(v.verify["rclone"]) / median(v.verify["custodes-blake3"])
    return said


def report_calls(name: str, said: dict[str, Any]) -> None:
    files = said["files"]
    print(f"\nS3 requests per object, {name} ({files} files, {said['bytes'] / MiB:.0f} MiB; instrumented, untimed):")
    for who in ("custodes ingest", "rclone copy", "custodes verify", "rclone check --download"):
        requests = said[who]["requests"]
        each = ", ".join(f"{op} {n / files:.2f}" for op, n in sorted(requests.items(), key=lambda x: -x[1]))
        print(f"  {who:24} {sum(requests.values()) / files:6.2f}: {each}")
    for who in ("custodes ingest", "custodes verify"):
        got = said[who]
        print(f"  where {who}'s {got['seconds']:.2f} s go (wall time per step, summed over threads; per object):")
        for step, s in got["steps"].items():
            print(f"    {step:50} {s:7.2f} s  {1000 * s / files:8.1f} ms/object")
        for op, s in sorted(got["call_seconds"].items(), key=lambda x: -x[1]):
            n = got["calls"][op]
            print(f"    {'S3 ' + op:50} {s:7.2f} s  {1000 * s / n:8.1f} ms/call x {n}")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---- main -----------------------------------------------------------------------------------------------------


#: In a work folder the bench made: only such a folder is reused (--work) or removed at the end.
MARK = ".custodes-s3-bench"


@contextlib.contextmanager
def work_folder(a: argparse.Namespace) -> Iterator[Path]:
    """The run's folder: a new one under /tmp, or ``--work`` (new, empty, or one an earlier run kept), removed at
    the end unless ``--keep``."""
    if a.work is None:
        work = Path(tempfile.mkdtemp(prefix="custodes-s3-bench-", dir="/tmp"))
    else:
        work = a.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()) and not (work / MARK).exists():
            raise SystemExit(f"--work {work}: not empty and not a folder this bench made: give a new or empty one")
    (work / MARK).touch()
    try:
        yield work
    finally:
        if a.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def versions(bench: Bench) -> dict[str, str]:
    def first_line(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, env=bench.env)
        return (out.stdout or out.stderr).splitlines()[0].strip() if out.stdout or out.stderr else "?"

    return {
        "rclone": first_line(bench.rclone, "version"),
        "s5cmd": first_line(bench.s5cmd, "version"),
        "weed": first_line(testing.weed_binary(), "version"),
        "python": platform.python_version(),
    }


def measure_volume(bench: Bench, name: str, path: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    volume = volume_of(name, path)
    print(f"\n{name}: {volume.files} files, {volume.mib:.0f} MiB", flush=True)
    bench.rounds(volume)
    results[name] = report_volume(volume, a.repeat)
    if not a.no_calls:
        files = sorted(p for p in path.iterdir() if p.is_file())[: CALL_SLICE if name == "small" else 1]
        results[f"calls_{name}"] = bench.calls(volume, files)
        report_calls(name, results[f"calls_{name}"])
    if not a.keep:
        shutil.rmtree(path.parent)


def measure_rss(bench: Bench, path: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    volume = volume_of("rss", path)
    print(f"\nrss: one file of {volume.mib:.0f} MiB", flush=True)
    got = {tool: bench.once(tool, volume) for tool in ("custodes", "rclone")}
    print(f"  {'one file':52} {'s':>8} {'MiB/s':>8} {'peak RSS':>9}")
    for tool, (ingest, _) in got.items():
        print(f"  {LABELS[tool]:52} {ingest.seconds:8.2f} {volume.mib / ingest.seconds:8.1f} {ingest.rss_mib:6.0f} MiB")
    results["rss"] = {
        "bytes": volume.bytes,
        **{tool: {"seconds": s.seconds, "rss_mib": s.rss_mib} for tool, (s, _) in got.items()},
    }
    if not a.keep:
        shutil.rmtree(path.parent)


def targets(results: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    print(f"\ntargets (issue 15), on {CORES} cores:")
    said: dict[str, Any] = {}
    for name in ("small", "big"):
        if name in results:
            r = results[name]["ingest_vs_rclone"]
            said[f"ingest_{name}"] = {"ratio": r, "target": TARGET_INGEST, "met": r >= TARGET_INGEST}
            print(f"  ingest >= {TARGET_INGEST}x rclone copy, {name:5}: {r:5.2f}x  {met(r >= TARGET_INGEST)}")
    for name in ("small", "big"):
        if name in results:
            r = results[name]["verify_vs_rclone_check"]
            said[f"verify_{name}"] = {"ratio": r, "target": TARGET_VERIFY, "met": r >= TARGET_VERIFY}
            print(
                f"  verify >= {TARGET_VERIFY}x rclone check --download, {name:5}: {r:5.2f}x  {met(r >= TARGET_VERIFY)}"
            )
            b3 = results[name]["verify_blake3_vs_rclone_check"]
            said[f"verify_blake3_{name}"] = {"ratio": b3, "target": TARGET_VERIFY, "met": b3 >= TARGET_VERIFY}
            print(f"    (verify --algo blake3, {name:5}: {b3:5.2f}x  {met(b3 >= TARGET_VERIFY)})")
    if "rss" in results:
        rss, theirs = results["rss"]["custodes"]["rss_mib"], results["rss"]["rclone"]["rss_mib"]
        ok = rss < TARGET_RSS_MIB
        said["rss"] = {"mib": rss, "target": TARGET_RSS_MIB, "met": ok, "rclone_mib": theirs}
        print(
            f"  peak RSS ingesting one {a.rss_gib:g} GiB file < {TARGET_RSS_MIB} MiB: {rss:.0f} MiB  {met(ok)}"
            f"  (rclone copy: {theirs:.0f} MiB)"
        )
    return said


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=2000, help="files of 20-200 KiB in the small volume (0: none)")
    ap.add_argument("--big-mib", type=int, default=2048, help=f"MiB in files of {BIG_FILE_MIB} MiB (0: none)")
    ap.add_argument("--rss-gib", type=float, default=4, help="GiB of the one file of the RSS run (0: none)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="where the volumes and the server's data go")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (its volumes are reused)")
    ap.add_argument("--no-calls", action="store_true", help="no instrumented runs (requests per object)")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--run-timeout", type=float, default=1800, help="seconds any one tool's run may take")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be 1 or more")
    for tool in ("rclone",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    try:
        run_bench(a)
    except KeyboardInterrupt as e:
        print(f"\nstopped ({str(e) or 'Ctrl-C'}): the running tool and the server were stopped", file=sys.stderr)
        sys.exit(130)


def run_bench(a: argparse.Namespace) -> None:
    with work_folder(a) as work:
        free, need = shutil.disk_usage(work).free, space_needed(a)
        if free < need:
            raise SystemExit(
                f"{work}: {free / MiB:.0f} MiB free, the run needs about {need / MiB:.0f} MiB (three copies of the "
                "largest volume): lower --big-mib/--rss-gib/--small or give --work on a larger disk"
            )
        as_installed(work)
        with testing.seaweed_server(work / "s3") as server:
            bench = Bench(server, work, a.repeat, a.run_timeout)
            try:
                measure_all(bench, server, work, a)
            except SystemExit as e:
                if isinstance(e.code, str):  # a run failed: what the server said may be why (a full disk)
                    errors = [line for line in server.log_tail(20_000).splitlines() if line.startswith(("E", "F"))]
                    if errors:
                        print("the server's last errors:\n" + "\n".join(errors[-8:]), file=sys.stderr)
                raise


def measure_all(bench: Bench, server: testing.Seaweed, work: Path, a: argparse.Namespace) -> None:
    results: dict[str, Any] = {
        "machine": {"cores": CORES, "load_at_start": os.getloadavg(), "platform": platform.platform()},
        "versions": versions(bench),
        "args": {k: str(v) for k, v in vars(a).items()},
    }
    print(f"SeaweedFS {server.endpoint} (pid {server.pid}), work folder {work}, {CORES} cores")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in results["versions"].items()))
    if a.small:
        measure_volume(bench, "small", small_corpus(work, a.small, 20 << 10, 200 << 10), a, results)
    if a.big_mib:
        measure_volume(bench, "big", big_volume(work, a.big_mib, BIG_FILE_MIB, "big"), a, results)
    if a.rss_gib:
        mib = int(a.rss_gib * 1024)
        measure_rss(bench, big_volume(work, mib, mib, "rss"), a, results)
    results["targets"] = targets(results, a)
    results["machine"]["load_at_end"] = os.getloadavg()
    if a.json_out:
        a.json_out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"\nfigures: {a.json_out}")


if __name__ == "__main__":
    main()
