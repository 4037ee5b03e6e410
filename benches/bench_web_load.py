#!/usr/bin/env python3
"""The review page and HTTP API under load (issue 19): p95 page time under 300 ms, no error, memory flat.

Builds an archive by real ingests (``--segments`` files of one device, ``BIG``, through the generic driver, and a
volume of real recordings, ``BWC0001``, with tasks around them), or reuses the one at ``--archive``; adds the
local accounts, an API token and, for each streaming account, a view request an approver approved; starts a
real ``custodes serve ARCHIVE --http 127.0.0.1:PORT`` (stopped by its pid), logs every session in, and then for
``--seconds`` runs ``--browsers`` sessions browsing (dashboard, devices, a device page, recording pages, tasks,
access, API reads with the token), each with a person's pause between clicks (``--think``, mean seconds), and
``--streamers`` sessions playing the recordings (a view started, then Range requests across the recording at
``--bitrate-mbit``). Every request is timed (send to last byte); any answer but 2xx/3xx, or a range that is
not the bytes asked for, is an error. The server's RSS is read from /proc every second.

    .venv/bin/python benches/bench_web_load.py [--archive DIR] [--segments 100000] [--seconds 60]
        [--browsers 50] [--streamers 10] [--think 2.0] [--json-out FILE]

Exit code 1 when any request failed (the timing targets are printed, not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
FOOTAGE = REPO / "tests" / "data" / "footage"
#: The real recordings the streaming sessions play (a few MiB each, so a play is many ranges).
RECORDINGS = (
    FOOTAGE / "gopro" / "karma.mp4",
    FOOTAGE / "gopro" / "max-heromode.mp4",
    FOOTAGE / "phones" / "h265_with_metadata_track.mp4",
    FOOTAGE / "phones" / "bt601.mov",
    FOOTAGE / "encoders" / "androidx-sample.mp4",
)
PASSWORD = "load test password 19"
#: The password the archive's owner sets (one-time: each person then sets PASSWORD, their own, as at /password).
ONE_TIME = "load test one-time password"
APPROVER = "approver00"
#: The roles browsing sessions' accounts take in turn.
ROLES = ("auditor", "approver", "custodian", "viewer")
#: Page kinds a browsing session requests, and how often (weights).
PAGES = {
    "dashboard": 3,
    "devices": 2,
    "device": 2,
    "recording": 4,
    "tasks": 2,
    "task": 1,
    "access": 2,
    "api_segments": 2,
    "api_segment": 2,
    "api_findings": 1,
    "api_devices": 1,
}
NS = 1_000_000_000


def custodes(*args: object, stdin: bytes | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
    """``custodes ARGS`` as a person runs it; its stdout. A different exit code stops the bench."""
    out = subprocess.run(
        [sys.executable, "-m", "custodes", *map(str, args)], input=stdin, capture_output=True, timeout=3600
    )
    if out.returncode not in ok:
        raise SystemExit(f"custodes {' '.join(map(str, args))}: exit {out.returncode}\n{out.stderr.decode()}")
    return out.stdout


def browsing_accounts(n: int) -> list[tuple[str, str]]:
    return [(f"{ROLES[i % len(ROLES)]}{i + 1:02d}", ROLES[i % len(ROLES)]) for i in range(n)]


def streaming_accounts(n: int) -> list[str]:
    return [f"streamer{i + 1:02d}" for i in range(n)]


# ---- the archive --------------------------------------------------------------------------------


def build(arch: Path, segments: int, browsers: int, streamers: int) -> None:
    """A new archive at ``arch`` made as a station makes one: init, a policy naming every account's person,
    the ingests, the tasks."""
    work = arch.parent
    started = time.monotonic()
    custodes("init", arch)
    people = [(getpass.getuser(), "custodian"), (APPROVER, "approver"), *browsing_accounts(browsers)]
    people += [(s, "viewer") for s in streaming_accounts(streamers)]
    text = (arch / "custodes.toml").read_text().replace('readback = "storage"', 'readback = "cache"')
    lines = "".join(f'{p} = "{r}"\n' for p, r in people)
    text = text.replace("[people]\n", f"[people]\n{lines}", 1) if "[people]\n" in text else f"{text}\n[people]\n{lines}"
    policy = work / "bench-policy.toml"
    policy.write_text(text + "\n[access]\nwindow_hours = 72\n" if "[access]" not in text else text)
    custodes("policy", "set", arch, policy)
    policy.unlink()
    big = work / "BIG"
    big.mkdir()
    for n in range(segments):
        (big / f"f{n:06d}.bin").write_bytes(b"custodes")  # one content: the catalog is under load, not the store
    custodes("ingest", big, "--archive", arch, "--driver", "generic", "-q", ok=(0, 1))  # unknown_file findings
    shutil.rmtree(big)
    vol = work / "BWC0001"
    vol.mkdir()
    for src in RECORDINGS:
        shutil.copy(src, vol / src.name)
    custodes("ingest", vol, "--archive", arch, "--driver", "generic", "-q", ok=(0, 1))
    shutil.rmtree(vol)
    from custodes.archive import open_archive

    with open_archive(arch) as a:
        timed = [(s.start, s.end) for s in a.segments(device="BWC0001") if s.start is not None and s.end is not None]
    tasks = _tasks(timed)
    if tasks:
        (work / "bench-tasks.csv").write_text(tasks)
        custodes("task", "import", arch, work / "bench-tasks.csv")
        (work / "bench-tasks.csv").unlink()
    print(f"archive of {segments:,} + {len(RECORDINGS)} segments built in {time.monotonic() - started:.0f} s")


def _tasks(timed: list[tuple[int, int]]) -> str:
    from datetime import UTC, datetime

    def iso(ns: int) -> str:
        return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = ["id,type,start,end,officers,devices"]
    for k, (start, end) in enumerate(timed):  # from five minutes before each recording to five after: gaps
        rows.append(f"L{k},review,{iso(start - 300 * NS)},{iso(end + 300 * NS)},,BWC0001")
    return "\n".join(rows) + "\n" if len(rows) > 1 else ""


@dataclass
class Prepared:
    token: str
    segments: int  # the highest segment id
    recordings: list[tuple[int, int]]  # (segment, size) of the real recordings
    tasks: list[str]


def prepare(arch: Path, browsers: int, streamers: int) -> Prepared:
    """The accounts (those missing), a fresh API token, and a fresh approved view request for each streaming
    account, through the library functions the CLI and the web front end call."""
    from custodes import access
    from custodes.archive import open_archive
    from custodes.identity import Caller, acting_as
    from custodes.web.accounts import add_account, change_own_password, issue_token, list_accounts

    with open_archive(arch) as a:
        have = {x.name for x in list_accounts(a)}
        names = [APPROVER, *(n for n, _ in browsing_accounts(browsers)), *streaming_accounts(streamers)]
        for name in names:
            if name not in have:
                add_account(a, name, ONE_TIME)
                with acting_as(Caller(None, name, "tool")):
                    change_own_password(a, name, ONE_TIME, PASSWORD)
        _info, token = issue_token(a, browsing_accounts(1)[0][0], ROLES[0], "load bench")
        recordings = [(s.id, s.size) for s in a.segments(device="BWC0001")]
        highest = max(s.id for s in a.segments(device="BWC0001"))
        for name in streaming_accounts(streamers):
            with acting_as(Caller(None, name, "tool")):
                req = access.request_access(a, [s for s, _ in recordings], "load test review", "view")
            with acting_as(Caller(None, APPROVER, "tool")):
                access.approve(a, req.id)
        tasks = [t.id for t in a.catalog.tasks.all()]
    return Prepared(token, highest, recordings, tasks)


# ---- the server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(arch: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as said:
        server = subprocess.Popen(
            [sys.executable, "-m", "custodes", "serve", str(arch), "--http", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=said,
            stderr=said,
        )
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"custodes serve stopped (exit {server.returncode}):\n{log.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop_server(server)
                raise SystemExit(f"custodes serve did not answer in 120 s:\n{log.read_text()}") from None
            time.sleep(0.2)


def stop_server(server: subprocess.Popen[bytes]) -> int:
    if server.poll() is None:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(10)
    return server.returncode


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- the load ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    at: float  # seconds since the measured minute began (negative: warm-up)
    seconds: float
    error: str | None


@dataclass
class Load:
    base: str
    prepared: Prepared
    start: float = 0.0
    end: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    def note(self, kind: str, t0: float, error: str | None) -> None:
        now = time.monotonic()
        self.samples.append(Sample(kind, t0 - self.start, now - t0, error))


def _cookie(answer: httpx.Response, name: str) -> str:
    found = re.search(rf"{name}=([^;]+)", answer.headers.get("set-cookie", ""))
    if found is None:
        raise RuntimeError(f"no {name} cookie in the answer ({answer.status_code})")
    return found.group(1)


async def log_in(client: httpx.AsyncClient, name: str) -> str:
    """A session for ``name``: the session cookie's header. The cookies are Secure, and this is plain HTTP on
    loopback (a browser sends them there; httpx does not), so they travel by hand."""
    form = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if form.status_code != 200 or csrf is None:
        raise RuntimeError(f"/login answered {form.status_code}")
    data = {"name": name, "password": PASSWORD, "csrf": csrf.group(1), "next": "/"}
    done = await client.post(
        "/login", data=data, headers={"cookie": f"custodes_login={_cookie(form, 'custodes_login')}"}
    )
    if done.status_code != 303:
        raise RuntimeError(f"login of {name}: {done.status_code} {done.text[:200]}")
    return f"custodes_session={_cookie(done, 'custodes_session')}"


def _url(kind: str, load: Load, rng: random.Random) -> str:
    p = load.prepared
    if kind == "dashboard":
        return "/"
    if kind == "devices":
        return "/devices"
    if kind == "device":
        return rng.choice(["/devices/BIG", "/devices/BWC0001"])
    if kind == "recording":
        return f"/recordings/{rng.randint(1, p.segments)}"
    if kind == "tasks":
        return "/tasks"
    if kind == "task":
        return f"/tasks/{rng.choice(p.tasks)}" if p.tasks else "/tasks"
    if kind == "access":
        return "/access"
    if kind == "api_segments":
        return f"/api/v1/segments?device=BIG&limit={rng.choice([20, 100, 500])}"
    if kind == "api_segment":
        return f"/api/v1/segments/{rng.randint(1, p.segments)}"
    if kind == "api_findings":
        return "/api/v1/findings?device=BIG&limit=100"
    if kind == "api_devices":
        return "/api/v1/devices"
    raise ValueError(kind)


async def browse(load: Load, client: httpx.AsyncClient, cookie: str, think: float, seed: int) -> None:
    rng = random.Random(seed)
    deck: list[str] = []  # each kind as often as its weight, shuffled: every kind within one pass of the deck
    page_headers = {"cookie": cookie, "accept": "text/html"}
    api_headers = {"authorization": f"Bearer {load.prepared.token}", "accept": "application/json"}
    await asyncio.sleep(rng.uniform(0, think))  # people do not all click at once
    while time.monotonic() < load.end:
        if not deck:
            deck = [k for k, weight in PAGES.items() for _ in range(weight)]
            rng.shuffle(deck)
        kind = deck.pop()
        headers = api_headers if kind.startswith("api_") else page_headers
        t0 = time.monotonic()
        try:
            answer = await client.get(_url(kind, load, rng), headers=headers)
            error = None if answer.status_code < 400 else f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        load.note(kind, t0, error)
        await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)


async def stream(load: Load, client: httpx.AsyncClient, cookie: str, chunk: int, bitrate: float, seed: int) -> None:
    """Play the recordings in turn as a player does: start a view (the page's form; one access-log entry), then
    fetch the recording a range at a time, no faster than ``bitrate`` bytes a second."""
    rng = random.Random(seed)
    csrf = await _csrf(client, cookie)
    await asyncio.sleep(rng.uniform(0, 1))
    while time.monotonic() < load.end:
        segment, size = rng.choice(load.prepared.recordings)
        t0 = time.monotonic()
        try:
            view = await client.post(
                f"/recordings/{segment}/view",
                headers={"cookie": cookie, "x-csrf-token": csrf, "accept": "application/json"},
            )
            error = None if view.status_code == 200 else f"{view.status_code} {view.text[:200]}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        load.note("view", t0, error)
        if error is not None:
            await asyncio.sleep(1)
            continue
        src = view.json()["src"]
        for first in range(0, size, chunk):
            if time.monotonic() >= load.end:
                break
            last = min(size, first + chunk) - 1
            t0 = time.monotonic()
            try:
                part = await client.get(src, headers={"cookie": cookie, "range": f"bytes={first}-{last}"})
                error = None
                if part.status_code != 206 or len(part.content) != last - first + 1:
                    error = f"{part.status_code}, {len(part.content)} bytes for {first}-{last}"
                elif part.headers.get("content-range") != f"bytes {first}-{last}/{size}":
                    error = f"content-range {part.headers.get('content-range')} for {first}-{last}/{size}"
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}"
            load.note("range", t0, error)
            await asyncio.sleep(max(0.0, (last - first + 1) / bitrate - (time.monotonic() - t0)))


async def _csrf(client: httpx.AsyncClient, cookie: str) -> str:
    """The session's CSRF token, as a page's form carries it."""
    page = await client.get("/access", headers={"cookie": cookie, "accept": "text/html"})
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if found is None:
        raise RuntimeError(f"no CSRF token on /access ({page.status_code})")
    return found.group(1)


async def sample_rss(load: Load, pid: int, into: list[tuple[float, float]]) -> None:
    while time.monotonic() < load.end:
        into.append((time.monotonic() - load.start, rss_mib(pid)))
        await asyncio.sleep(1)


async def run_load(base: str, prepared: Prepared, a: argparse.Namespace, pid: int) -> tuple[Load, list, float]:
    load = Load(base, prepared)
    # An idle connection is closed by the client after 4 s, before uvicorn's 5 s keep-alive timeout: a request
    # sent on a connection the server is closing at that moment fails ("Server disconnected without sending a
    # response"); a browser retries it unseen, httpx does not.
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=4.0)
    timeout = httpx.Timeout(60)

    def session_client() -> httpx.AsyncClient:  # one per session, keep-alive, as a browser tab
        return httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout, follow_redirects=False)

    browsers = [(session_client(), name) for name, _role in browsing_accounts(a.browsers)]
    streamers = [(session_client(), name) for name in streaming_accounts(a.streamers)]
    gate = asyncio.Semaphore(4)

    async def one(client: httpx.AsyncClient, name: str) -> str:
        async with gate:
            return await log_in(client, name)

    t = time.monotonic()
    cookies = await asyncio.gather(*(one(c, n) for c, n in browsers + streamers))
    login_s = time.monotonic() - t
    print(f"{len(cookies)} sessions logged in in {login_s:.1f} s")
    load.start = time.monotonic() + a.warmup
    load.end = load.start + a.seconds
    rss: list[tuple[float, float]] = []
    jobs = [browse(load, c, k, a.think, i) for i, ((c, _n), k) in enumerate(zip(browsers, cookies, strict=False))]
    jobs += [
        stream(load, c, k, a.chunk_kib * 1024, a.bitrate_mbit * 125_000, 1000 + i)
        for i, ((c, _n), k) in enumerate(zip(streamers, cookies[len(browsers) :], strict=True))
    ]
    await asyncio.gather(sample_rss(load, pid, rss), *jobs)
    for c, _n in browsers + streamers:
        await c.aclose()
    return load, rss, login_s


# ---- figures ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def figures(load: Load, rss: list[tuple[float, float]], a: argparse.Namespace, login_s: float) -> dict[str, Any]:
    measured = [s for s in load.samples if s.at >= 0]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in measured:
        by_kind[s.kind].append(s)
    pages = [s for s in measured if s.kind not in ("view", "range")]
    by_kind_all = {**by_kind, "all pages": pages}

    def stats(xs: list[Sample]) -> dict[str, Any]:
        ms = [s.seconds * 1000 for s in xs]
        return {
            "requests": len(xs),
            "errors": sum(1 for s in xs if s.error),
            "p50_ms": round(percentile(ms, 50), 1) if ms else None,
            "p95_ms": round(percentile(ms, 95), 1) if ms else None,
            "p99_ms": round(percentile(ms, 99), 1) if ms else None,
            "max_ms": round(max(ms), 1) if ms else None,
        }

    after = [m for t, m in rss if t >= 0]
    first = statistics.median(after[:10]) if after else 0.0
    last = statistics.median(after[-10:]) if after else 0.0
    errors = [f"{s.kind}: {s.error}" for s in load.samples if s.error]
    kinds = {k: stats(v) for k, v in sorted(by_kind_all.items())}
    return {
        "machine": {"cores": os.cpu_count(), "load_average_after": os.getloadavg()[0]},
        "config": {
            "segments": load.prepared.segments,
            "browsers": a.browsers,
            "streamers": a.streamers,
            "seconds": a.seconds,
            "warmup_s": a.warmup,
            "think_s": a.think,
            "chunk_kib": a.chunk_kib,
            "bitrate_mbit": a.bitrate_mbit,
        },
        "login_s": round(login_s, 2),
        "requests_per_s": round(len(measured) / a.seconds, 1),
        "kinds": kinds,
        "errors": len(errors),
        "first_errors": errors[:20],
        "rss_mib": {
            "samples": [round(m, 1) for _t, m in rss],
            "first10_median": round(first, 1),
            "last10_median": round(last, 1),
            "ratio": round(last / first, 3) if first else None,
        },
        "targets": {
            "p95_pages_under_300ms": kinds.get("all pages", {}).get("p95_ms") is not None
            and kinds["all pages"]["p95_ms"] < 300,
            "no_error": not errors,
            "memory_flat": bool(first) and last / first < 1.10,
        },
    }


def print_table(f: dict[str, Any]) -> None:
    c = f["config"]
    print(
        f"\n{c['browsers']} browsing (mean think {c['think_s']} s) + {c['streamers']} streaming sessions, "
        f"{c['seconds']} s on {c['segments']:,} segments, {f['machine']['cores']} cores, "
        f"{f['requests_per_s']} requests/s"
    )
    print(f"{'kind':14} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, s in f["kinds"].items():
        print(
            f"{kind:14} {s['requests']:8} {s['errors']:6} {s['p50_ms']!s:>8} {s['p95_ms']!s:>8} "
            f"{s['p99_ms']!s:>8} {s['max_ms']!s:>8}"
        )
    r = f["rss_mib"]
    print(
        f"server RSS: first 10 s median {r['first10_median']} MiB, last 10 s {r['last10_median']} MiB "
        f"(x{r['ratio']}), peak {max(r['samples'], default=0)} MiB"
    )
    t = f["targets"]
    print(
        f"targets: p95 page time under 300 ms: {'met' if t['p95_pages_under_300ms'] else 'MISSED'}; "
        f"no error: {'met' if t['no_error'] else 'MISSED'}; memory flat (last/first under 1.10): "
        f"{'met' if t['memory_flat'] else 'MISSED'}"
    )
    for e in f["first_errors"]:
        print(f"  error: {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", type=Path, help="the archive: reused if it exists, else built there")
    ap.add_argument("--segments", type=int, default=100_000, help="files of the BIG device, when building")
    ap.add_argument("--browsers", type=int, default=50)
    ap.add_argument("--streamers", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10, help="seconds of load before the measured ones")
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds between a browsing person's clicks")
    ap.add_argument("--chunk-kib", type=int, default=256, help="the size of a player's range request")
    ap.add_argument("--bitrate-mbit", type=float, default=8.0, help="how fast a player reads the recording")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args(argv)
    made = None
    if a.archive is None:
        made = Path(tempfile.mkdtemp(prefix="bench-web-load-"))
        a.archive = made / "archive"
    arch = a.archive.absolute()
    if not (arch / "catalog.sqlite").exists():
        arch.parent.mkdir(parents=True, exist_ok=True)
        build(arch, a.segments, a.browsers, a.streamers)
    prepared = prepare(arch, a.browsers, a.streamers)
    port = free_port()
    log = arch.parent / "bench-web-load-server.log"
    server = start_server(arch, port, log)
    try:
        load, rss, login_s = asyncio.run(run_load(f"http://127.0.0.1:{port}", prepared, a, server.pid))
    finally:
        rc = stop_server(server)
    f = figures(load, rss, a, login_s)
    f["server_exit"] = rc
    print_table(f)
    if a.json_out is not None:
        a.json_out.write_text(json.dumps(f, indent=2) + "\n")
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
    return 1 if f["errors"] or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
