#!/usr/bin/env python3
"""Verification on Dask against verification here and against ``openssl dgst -sha256`` (issue 16).

Two archives, ingested once through the generic driver (the time each ingest took is printed) and reused
from ``--dir`` when they are already there:

- big: ``--big-mib`` (default 2048) MiB of random bytes in files of 64 MiB;
- small: ``--small`` (default 100,000) objects of 1-4 KiB (random sizes and bytes, seeded);
- one: a single such object (unless ``--no-startup``): what each row costs before it hashes anything (the
  interpreter and its imports, the ledger and catalog checks, a cluster's start or the connection to it).

Each is made as ``custodes init`` makes it by default (sha256 and blake3 on every object) and, unless
``--algos default`` is given, once more with ``--algo sha256`` only: the like-for-like row against openssl,
which computes one digest where the default archive's verify computes two.

For each worker count W of ``--workers`` (default 1,2; 1,2,4,8,16 on a 16-core machine), timed as whole
processes, in ``--repeat`` rounds (default 3) in which every row runs once, in an order turned by one each
round, and quoted as medians:

- ``custodes verify --executor local --workers W``: W hashing threads in one process (the CLI's default shard
  size: the local executor runs one shard at a time over all its threads);
- ``custodes verify --executor dask --workers W``: verify starts a LocalCluster of W single-thread worker
  processes on loopback and closes it; its start-up is part of what a user pays;
- ``custodes verify --executor dask --scheduler ADDR``: a cluster the bench started once, before the rounds,
  with the ``dask scheduler`` / ``dask worker`` command line (127.0.0.1, ``--nthreads 1 --no-nanny``, one per
  worker: custodes_dask.testing.dask_cli_cluster), so the figure is verify's own cost on a running cluster;
- the peer, ``find objects -type f | xargs -P W -n K openssl dgst -sha256`` (W processes of one thread each;
  K = min(256, objects / 4W), so that the few big files still spread over W processes), and, for an archive
  that records blake3, ``... | xargs -P W -n K b3sum --num-threads 1``; "peer" for such an archive is the
  sum of the two, as verify computes both digests.

Dask rows use ``--shard-size`` from ``--shard-size-big`` (default 1: one 64 MiB object per shard, so W
workers have W shards to run; the CLI's own bound on a cluster, 256 MiB, makes four-object shards, and its
4 GiB bound before this bench put a whole 2 GiB archive in one shard, on one worker) and
``--shard-size-small`` (default 4,096, the CLI default).

Every run is checked: custodes must exit 0 and its ``--json`` must say ok, no findings, ``checked`` equal to
the archive's objects and ``bytes`` to its bytes, and name the executor; openssl must print one line per object
whose digest is the object's own name, b3sum one line per object whose digest is the one the catalog records.
Anything else stops the bench: a figure from a failed run is no figure.

Prints a table (median seconds, MB/s, objects/s, speed-up over the same row at W=1, peer time / custodes time
at the same W, dask time / local time at the same W) and the targets of issue 16 with met / not met: dask at
2 workers >= 1.7x its 1-worker speed; on the small set dask within 1.3x of local; with more than 2 workers,
every W >= 0.8x linear. ``--json-out FILE`` writes every run's raw figures, so a run elsewhere can be brought
back.

The page cache: verify reads objects; where the archives fit in memory every run after the first (an untimed
warm-up verify of each archive) reads from the cache, and the output says so. ``--cold`` drops the cache
before every timed run (root only; where writing /proc/sys/vm/drop_caches fails, a sandbox, it says so and
the runs are warm).

    PYTHONPATH=python python benches/compare_verify_dask.py [--big-mib 2048] [--small 100000] [--workers 1,2]
        [--repeat 3] [--dir bench-verify-dask] [--keep] [--algos default,sha256] [--no-startup]
        [--json-out FILE] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _measure import Run, measure, must, stored_all  # noqa: E402

#: custodes as this interpreter runs it: importable from PYTHONPATH is enough, no console script needed.
CUSTODES = [sys.executable, "-m", "custodes"]
CORES = os.cpu_count() or 1
MiB = 1 << 20
BIG_FILE_MIB = 64
#: What the generic driver says of files no driver reads the time of: every file here (.bin).
VOLUME_FINDINGS = {"unknown_file"}
#: A worker process outlives no bench: stopped by pid at the end, killed with the bench, and gone after this.
CLUSTER_LIFETIME_S = 24 * 3600
ALGO_SETS = {"default": ("sha256", "blake3"), "sha256": ("sha256",)}
TARGET_SCALING_2 = 1.7
TARGET_DASK_OVER_LOCAL = 1.3
TARGET_LINEAR = 0.8


@dataclass
class Archive:
    """One archive the bench verifies: which set, which digests it records, what it holds."""

    set: str  # big, small
    algos: tuple[str, ...]
    path: Path
    objects: int
    bytes: int
    ingest_seconds: float
    reused: bool
    shard_size: int  # for the dask rows
    blake3: dict[str, str] = field(default_factory=dict, repr=False)  # sha256 -> blake3, from the catalog

    @property
    def label(self) -> str:
        return f"{self.set}/{'+'.join(self.algos)}"


# ---- archives ---------------------------------------------------------------------------------------------


def make_big(folder: Path, total_mib: int) -> None:
    folder.mkdir(parents=True)
    for i in range(max(1, total_mib // BIG_FILE_MIB)):
        with open(folder / f"clip{i:04d}.bin", "wb") as f:
            for _ in range(BIG_FILE_MIB):
                f.write(os.urandom(MiB))  # random: no file system compresses it, every file a new object


def make_small(folder: Path, count: int, seed: int = 16) -> None:
    rng = random.Random(seed)  # the same run makes the same volume
    for i in range(count):
        sub = folder / f"d{i // 1000:04d}"  # 1,000 to a folder, as a camera's card holds them
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:07d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 4096)))


def archives(a: argparse.Namespace) -> list[Archive]:
    """Every archive of the run, built where missing (one volume per set, ingested once per digest set, then
    deleted) and reused where ``--dir`` already holds it."""
    a.dir.mkdir(parents=True, exist_ok=True)
    specs = [("big", f"{a.big_mib}MiB", make_big, a.big_mib, a.shard_size_big, a.algos)] if a.big_mib else []
    specs += [("small", f"{a.small}", make_small, a.small, a.shard_size_small, a.algos)] if a.small else []
    specs += [("one", "1", make_small, 1, 1, a.algos[:1])] if a.startup else []
    out = []
    for kind, size, make, amount, shard, algo_sets in specs:
        volume = a.dir / f"{kind}-{size}-volume"
        for algos_name in algo_sets:
            algos = ALGO_SETS[algos_name]
            path = a.dir / f"{kind}-{size}-{'+'.join(algos)}"
            stamp = path.with_name(path.name + ".json")
            if stamp.exists() and path.is_dir():
                facts = json.loads(stamp.read_text())
                print(
                    f"{kind}/{'+'.join(algos)}: reusing {path} ({facts['objects']:,} objects, "
                    f"{facts['bytes'] / MiB:,.0f} MiB; its ingest took {facts['ingest_seconds']:.1f} s)",
                    flush=True,
                )
                reused = True
            else:
                shutil.rmtree(path, ignore_errors=True)
                if not (volume / ".complete").exists():
                    shutil.rmtree(volume, ignore_errors=True)
                    t0 = time.perf_counter()
                    make(volume / "data", amount)
                    (volume / ".complete").touch()
                    print(f"{kind}: volume written in {time.perf_counter() - t0:.1f} s", flush=True)
                files = [p for p in (volume / "data").rglob("*") if p.is_file()]
                algo_args = [x for algo in algos for x in ("--algo", algo)]
                must(measure(*CUSTODES, "init", str(path), "-q", *algo_args), f"init {path}")
                ingest = ("ingest", str(volume / "data"), "--archive", str(path), "--driver", "generic", "-q", "--json")
                run = must(measure(*CUSTODES, *ingest), f"ingest into {path}", ok=(0, 1))
                stored_all(run, f"ingest into {path}", len(files), VOLUME_FINDINGS)
                facts = {
                    "objects": len(files),
                    "bytes": sum(p.stat().st_size for p in files),
                    "ingest_seconds": run.seconds,
                }
                stamp.write_text(json.dumps(facts))
                print(
                    f"{kind}/{'+'.join(algos)}: ingested {len(files):,} files ({facts['bytes'] / MiB:,.0f} MiB) "
                    f"in {run.seconds:.1f} s ({len(files) / run.seconds:,.0f} files/s, every core; peak RSS "
                    f"{run.rss_mib:.0f} MiB)",
                    flush=True,
                )
                reused = False
            out.append(
                Archive(
                    kind,
                    algos,
                    path,
                    facts["objects"],
                    facts["bytes"],
                    facts["ingest_seconds"],
                    reused,
                    shard,
                    catalog_blake3(path) if "blake3" in algos else {},
                )
            )
        shutil.rmtree(volume, ignore_errors=True)
    return out


def catalog_blake3(path: Path) -> dict[str, str]:
    """sha256 -> blake3 of every object, as the catalog records them (read-only): what b3sum must print."""
    db = sqlite3.connect(f"file:{path / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return {sha: json.loads(d)["blake3"] for sha, d in db.execute("SELECT sha256, digests FROM objects")}
    finally:
        db.close()


# ---- runs -------------------------------------------------------------------------------------------------


class Cache:
    """Warm (the default) or cold: ``--cold`` drops the page cache before each timed run, where it can."""

    def __init__(self, cold: bool) -> None:
        self.cold = cold
        self.why_warm = "" if cold else "warm page cache (no --cold)"
        if cold and os.geteuid() != 0:
            self.cold, self.why_warm = False, "--cold needs root: runs are warm"

    def before_run(self) -> None:
        if not self.cold:
            return
        subprocess.run(["sync"], check=True)
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as e:  # a sandbox (gVisor) may refuse it
            self.cold, self.why_warm = False, f"dropping the page cache failed ({e}): runs are warm"
            print(f"  note: {self.why_warm}", flush=True)

    @property
    def state(self) -> str:
        return "cold (page cache dropped before each run)" if self.cold else self.why_warm


def custodes_verify(archive: Archive, executor: str, workers: int, *extra: str) -> Run:
    """One ``custodes verify --json`` that must find the archive intact, having checked all of it."""
    what = f"verify {archive.label} --executor {executor} --workers {workers} {' '.join(extra)}".strip()
    args = ["verify", str(archive.path), "-q", "--json", "--executor", executor, "--workers", str(workers), *extra]
    run = must(measure(*CUSTODES, *args), what)
    try:
        said = json.loads(run.stdout)
    except ValueError as e:
        raise SystemExit(f"{what}: no JSON on stdout ({e}): {run.stdout[-500:]!r}") from e
    wrong = []
    if said.get("ok") is not True or said.get("findings"):
        wrong.append(f"ok={said.get('ok')} findings={[f.get('kind') for f in said.get('findings') or []]}")
    if said.get("checked") != archive.objects or said.get("bytes") != archive.bytes:
        wrong.append(f"checked {said.get('checked')} objects / {said.get('bytes')} bytes")
    ran = said.get("run") or {}
    if ran.get("executor") != executor or ran.get("stopped") is not None or (ran.get("left") or {}).get("objects"):
        wrong.append(f"run {ran}")
    if wrong:
        raise SystemExit(
            f"{what} went wrong: {'; '.join(wrong)} (the archive holds {archive.objects} objects, "
            f"{archive.bytes} bytes)"
        )
    return run


_OPENSSL_LINE = re.compile(rb"^SHA2-256\((.+)\)= ([0-9a-f]{64})$")
_B3SUM_LINE = re.compile(rb"^([0-9a-f]{64})  (.+)$")


def per_call(archive: Archive, workers: int) -> int:
    """Files per peer process (xargs -n): 256, or fewer where that would leave processes of -P idle."""
    return max(1, min(256, archive.objects // (4 * workers)))


_PATHS: dict[Path, list[bytes]] = {}


def object_paths(archive: Archive) -> list[bytes]:
    """Every file under objects/, as ``find`` names it (listed once per archive)."""
    if archive.path not in _PATHS:
        top = os.fsencode(archive.path / "objects")
        _PATHS[archive.path] = [os.path.join(folder, name) for folder, _, names in os.walk(top) for name in names]
    return _PATHS[archive.path]


def peer_line(archive: Archive, workers: int, tool: str, line_buffered: bool = False) -> str:
    n = per_call(archive, workers)
    stdbuf = "stdbuf -oL " if line_buffered else ""
    command = {
        "openssl": f"xargs -0 -P {workers} -n {n} {stdbuf}openssl dgst -sha256",
        "b3sum": f"xargs -0 -P {workers} -n {n} {stdbuf}b3sum --num-threads 1",
    }[tool]
    return f"set -o pipefail; find {quoted(archive.path / 'objects')} -type f -print0 | {command}"


def peer(archive: Archive, workers: int, tool: str) -> Run:
    """``find objects -type f | xargs -P W -n K TOOL > file``, timed: it must exit 0, say nothing on stderr and
    write exactly the bytes of one line per object.

    Its lines are not read here: W processes share one stdout, and openssl flushes it in blocks that do not end
    at a line, so where two flushes cross a line of one process is cut by a block of another. Making the timed
    peer write line by line (stdbuf -oL) would cost it an exec and a system call per file; :func:`peer_digests`
    runs it so once, untimed, and checks every line."""
    run = must(measure("bash", "-c", peer_line(archive, workers, tool)), f"{tool} over {archive.label}")
    each = len(b"SHA2-256()= \n") if tool == "openssl" else len(b"  \n")  # "SHA2-256(PATH)= HEX", "HEX  PATH"
    expected = sum(len(p) + each + 64 for p in object_paths(archive))
    if len(run.stdout) != expected or run.stderr:
        raise SystemExit(
            f"{tool} over {archive.label}: {len(run.stdout)} bytes of output, {expected} expected for "
            f"{archive.objects} objects; stderr {run.stderr[-500:]!r}"
        )
    return run


def peer_digests(archive: Archive, workers: int, tool: str) -> None:
    """The peer's command line once more, untimed and line-buffered: one line per object, each naming the
    object's digest (openssl: sha256, the object's name; b3sum: the blake3 the catalog records)."""
    run = must(measure("bash", "-c", peer_line(archive, workers, tool, True)), f"{tool} over {archive.label}")
    lines = run.stdout.splitlines()
    names = {os.path.basename(p) for p in object_paths(archive)}
    seen = set()
    for raw in lines:
        m = (_OPENSSL_LINE if tool == "openssl" else _B3SUM_LINE).match(raw)
        if m is None:
            raise SystemExit(f"{tool} over {archive.label}: a line that is not a digest: {raw[:200]!r}")
        path, digest = (m.group(1), m.group(2)) if tool == "openssl" else (m.group(2), m.group(1))
        name = os.path.basename(path)
        want = name if tool == "openssl" else archive.blake3.get(name.decode(), "").encode()
        if digest != want:
            raise SystemExit(f"{tool} over {archive.label}: {raw.decode(errors='replace')} (want {want!r})")
        seen.add(name)
    if len(lines) != archive.objects or seen != names:
        raise SystemExit(f"{tool} over {archive.label}: {len(lines)} lines, {len(seen)} objects, {len(names)} wanted")


def quoted(path: Path) -> str:
    return shlex.quote(str(path))


@dataclass
class Row:
    """One line of the table: what runs, and how."""

    archive: Archive
    name: str  # local, dask LocalCluster, dask running cluster, openssl, b3sum
    workers: int
    go: Callable[[], Run]
    threads: str  # said in the output
    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def rows_for(archive: Archive, workers: int, address: str) -> list[Row]:
    shard = ("--shard-size", str(archive.shard_size))
    rows = [
        Row(
            archive,
            "local",
            workers,
            lambda: custodes_verify(archive, "local", workers),
            f"1 process, {workers} hashing thread(s)",
        ),
        Row(
            archive,
            "dask LocalCluster",
            workers,
            lambda: custodes_verify(archive, "dask", workers, *shard),
            f"LocalCluster of {workers} x 1-thread processes, started and closed by verify",
        ),
        Row(
            archive,
            "dask running cluster",
            workers,
            lambda: custodes_verify(archive, "dask", workers, "--scheduler", address, *shard),
            f"{workers} x `dask worker --nthreads 1` started once by the bench",
        ),
        Row(
            archive,
            "openssl",
            workers,
            lambda: peer(archive, workers, "openssl"),
            f"xargs -P {workers} -n {per_call(archive, workers)}: {workers} x 1 thread",
        ),
    ]
    if "blake3" in archive.algos:
        rows.append(
            Row(
                archive,
                "b3sum",
                workers,
                lambda: peer(archive, workers, "b3sum"),
                f"xargs -P {workers} -n {per_call(archive, workers)}, --num-threads 1",
            )
        )
    return rows


# ---- figures ----------------------------------------------------------------------------------------------


def peer_seconds(rows: list[Row], archive: Archive, workers: int) -> float:
    """The peer's median at W: openssl, plus b3sum where the archive records blake3 (verify computes both)."""
    return sum(r.median for r in rows if r.archive is archive and r.workers == workers and r.name in PEERS)


PEERS = ("openssl", "b3sum")


def find(rows: list[Row], archive: Archive, name: str, workers: int) -> Row | None:
    for r in rows:
        if r.archive is archive and r.name == name and r.workers == workers:
            return r
    return None


def table(rows: list[Row], archives_: list[Archive], workers: list[int]) -> list[dict[str, Any]]:
    out = []
    for archive in archives_:
        for name in ("local", "dask LocalCluster", "dask running cluster", *PEERS):
            for w in workers:
                r = find(rows, archive, name, w)
                if r is None:
                    continue
                one = find(rows, archive, name, workers[0])
                line: dict[str, Any] = {
                    "set": archive.label,
                    "row": name,
                    "workers": w,
                    "seconds": r.median,
                    "MB/s": archive.bytes / 1e6 / r.median,
                    "objects/s": archive.objects / r.median,
                    "speedup": None if one is None else one.median / r.median,
                    "vs_peer": None,
                    "dask_over_local": None,
                    "threads": r.threads,
                }
                if name not in PEERS:
                    line["vs_peer"] = peer_seconds(rows, archive, w) / r.median
                local = find(rows, archive, "local", w)
                if name.startswith("dask") and local is not None:
                    line["dask_over_local"] = r.median / local.median
                out.append(line)
    return out


def show(lines: list[dict[str, Any]]) -> None:
    head = (
        f"{'set':20} {'row':22} {'W':>3} {'s (median)':>10} {'MB/s':>8} {'objects/s':>10} {'speed-up':>8} "
        f"{'vs peer':>8} {'dask/local':>10}"
    )
    print(head)
    print("-" * len(head))
    last = None
    for x in lines:
        if last is not None and x["set"] != last:
            print()
        last = x["set"]
        speed = "" if x["speedup"] is None else f"{x['speedup']:.2f}x"
        vs = "" if x["vs_peer"] is None else f"{x['vs_peer']:.2f}x"
        dl = "" if x["dask_over_local"] is None else f"{x['dask_over_local']:.2f}"
        print(
            f"{x['set']:20} {x['row']:22} {x['workers']:>3} {x['seconds']:>10.3f} {x['MB/s']:>8.0f} "
            f"{x['objects/s']:>10.0f} {speed:>8} {vs:>8} {dl:>10}"
        )


def targets(lines: list[dict[str, Any]], workers: list[int]) -> list[dict[str, Any]]:
    """Issue 16's targets, each with the figure and met / not met."""
    got = []

    def add(what: str, figure: float, target: str, met: bool) -> None:
        got.append({"target": what, "figure": round(figure, 3), "wanted": target, "met": met})

    by = {(x["set"], x["row"], x["workers"]): x for x in lines}
    sets = list(dict.fromkeys(x["set"] for x in lines))
    for s in sets:
        for row in ("dask running cluster", "dask LocalCluster", "openssl"):
            one, two = by.get((s, row, 1)), by.get((s, row, 2))
            if one and two and s.startswith("big"):
                add(
                    f"{s} {row}: 2 workers / 1 worker{' (the peer, for reference)' if row == 'openssl' else ''}",
                    one["seconds"] / two["seconds"],
                    f">= {TARGET_SCALING_2}x",
                    one["seconds"] / two["seconds"] >= TARGET_SCALING_2,
                )
        if s.startswith("small"):
            for row in ("dask running cluster", "dask LocalCluster"):
                for w in workers:
                    x = by.get((s, row, w))
                    if x and x["dask_over_local"] is not None:
                        add(
                            f"{s} {row} W={w}: dask time / local time",
                            x["dask_over_local"],
                            f"<= {TARGET_DASK_OVER_LOCAL}",
                            x["dask_over_local"] <= TARGET_DASK_OVER_LOCAL,
                        )
        if max(workers) > 2 and 1 in workers:
            for row in ("dask running cluster", "openssl"):
                for w in workers:
                    x, one = by.get((s, row, w)), by.get((s, row, 1))
                    if x and one and w > 1:
                        linear = one["seconds"] / x["seconds"] / w
                        add(
                            f"{s} {row} W={w}: speed-up / W (linear = 1)",
                            linear,
                            f">= {TARGET_LINEAR}",
                            linear >= TARGET_LINEAR,
                        )
    return got


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": CORES, "python": platform.python_version(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu"] = model.group(1) if model else "?"
        info["sha_ni"] = bool(re.search(r"^flags\s*:.*\bsha_ni\b", cpuinfo, re.M))
        mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    except OSError:
        pass
    info["load_average_before"] = os.getloadavg()
    for name, argv in (
        ("openssl", ["openssl", "version"]),
        ("b3sum", ["b3sum", "--version"]),
        ("custodes", [*CUSTODES, "--version"]),
    ):
        try:
            info[name] = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError:
            info[name] = None
    try:
        import distributed

        info["distributed"] = distributed.__version__
    except ImportError:
        info["distributed"] = None
    return info


# ---- main -------------------------------------------------------------------------------------------------


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-mib", type=int, default=2048, help="MiB of 64 MiB files in the big set (0: none)")
    ap.add_argument("--small", type=int, default=100_000, help="objects of 1-4 KiB in the small set (0: none)")
    ap.add_argument("--workers", default="1,2", help="worker counts W, comma-separated (default 1,2)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are quoted (default 3)")
    ap.add_argument("--algos", default="default,sha256", help="digest sets: default (sha256+blake3), sha256")
    ap.add_argument("--dir", type=Path, default=Path("bench-verify-dask"), help="where archives are built")
    ap.add_argument("--keep", action="store_true", help="keep the archives in --dir for the next run to reuse")
    ap.add_argument("--shard-size-big", type=int, default=1, help="--shard-size of the dask rows, big set")
    ap.add_argument("--shard-size-small", type=int, default=4096, help="--shard-size of the dask rows, small set")
    ap.add_argument(
        "--no-startup",
        dest="startup",
        action="store_false",
        help="leave out the archive of one object (what a run costs before it hashes anything)",
    )
    ap.add_argument("--json-out", type=Path, default=None, help="write every run's figures here")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each run (root)")
    a = ap.parse_args()
    a.algos = [x.strip() for x in a.algos.split(",") if x.strip()]
    if not a.algos or set(a.algos) - set(ALGO_SETS):
        ap.error(f"--algos takes {', '.join(ALGO_SETS)}")
    a.workers = sorted({int(x) for x in a.workers.split(",")})
    if a.workers[0] < 1:
        ap.error("--workers are at least 1")
    if shutil.which("b3sum") is None and "default" in a.algos:
        ap.error("b3sum is not installed: the default archive's peer needs it (or give --algos sha256)")
    return a


def rounds(a: argparse.Namespace, made: list[Archive], cache: Cache) -> list[Row]:
    """Every row, ``--repeat`` times, alternated, with one running CLI cluster per worker count."""
    from custodes_dask.testing import dask_cli_cluster

    rows: list[Row] = []
    with ExitStack() as stack:
        clusters = {}
        for w in a.workers:  # every cluster up for the whole run, so the rounds can alternate all rows
            t0 = time.perf_counter()
            clusters[w] = stack.enter_context(dask_cli_cluster(w, tmp=a.dir / f"dask-{w}", lifetime=CLUSTER_LIFETIME_S))
            print(f"dask CLI cluster of {w} worker(s) at {clusters[w].address}: up in {time.perf_counter() - t0:.1f} s")
        for x in made:
            for w in a.workers:
                rows += rows_for(x, w, clusters[w].address)
        print(f"\n{len(rows)} rows x {a.repeat} rounds, every row once a round, the order turned by one each round")
        for r in range(a.repeat):
            t0 = time.perf_counter()
            turn = r % len(rows)
            for row in rows[turn:] + rows[:turn]:
                cache.before_run()
                run = row.go()
                row.seconds.append(run.seconds)
                row.rss_mib.append(run.rss_mib)
            print(f"  round {r + 1}/{a.repeat}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def report(a: argparse.Namespace, info: dict[str, Any], made: list[Archive], rows: list[Row], cache: Cache) -> None:
    """The table, the threads on each side, the cache, the targets; and the raw figures with --json-out."""
    workers = a.workers
    lines = table(rows, made, workers)
    print(
        f"\nmedians; speed-up: the same row at W={workers[0]} / this one; vs peer: peer time / custodes time at the "
        "same W (> 1: custodes faster); the peer of a sha256+blake3 archive is openssl + b3sum, as verify computes "
        "both digests (the sha256 archive is the like-for-like row); dask/local: dask time / local time at the same W\n"
    )
    show(lines)
    print("\nthreads:")
    seen = set()
    for row in rows:
        if (row.name, row.workers) not in seen:
            seen.add((row.name, row.workers))
            print(f"  {row.name:22} W={row.workers:<3} {row.threads}")
    print(
        f"  dask shard sizes: {', '.join(f'{x.label} {x.shard_size}' for x in made)}; local rows: the CLI default "
        "(4,096 objects, 4 GiB)"
    )
    print(f"\npage cache: {cache.state}")
    print(
        f"load average before {' '.join(f'{v:.2f}' for v in info['load_average_before'])}, "
        f"after {' '.join(f'{v:.2f}' for v in info['load_average_after'])} ({CORES} cores)"
    )
    got = targets(lines, workers)
    print("\ntargets (issue 16):")
    for t in got:
        print(f"  {t['target']:70} {t['figure']:>7.2f} (want {t['wanted']}): {'met' if t['met'] else 'NOT met'}")
    if a.json_out is None:
        return
    a.json_out.write_text(
        json.dumps(
            {
                "command": [sys.executable, *sys.argv],
                "machine": info,
                "cache": cache.state,
                "archives": [
                    {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(x).items() if k != "blake3"}
                    for x in made
                ],
                "runs": [
                    {
                        "set": row.archive.label,
                        "row": row.name,
                        "workers": row.workers,
                        "threads": row.threads,
                        "seconds": row.seconds,
                        "rss_mib": row.rss_mib,
                    }
                    for row in rows
                ],
                "table": lines,
                "targets": got,
            },
            indent=1,
        )
    )
    print(f"raw figures: {a.json_out}")


def main() -> None:
    a = options()
    import custodes_dask.testing  # noqa: F401  the plugin must be importable here, as verify's workers need it

    info = machine()
    print(
        f"machine: {info.get('cpu')}, {CORES} cores, SHA-NI {'yes' if info.get('sha_ni') else 'no'}, "
        f"{info.get('memory_gib')} GiB; load average {' '.join(f'{x:.2f}' for x in info['load_average_before'])}; "
        f"{info['custodes']}, distributed {info['distributed']}, {info['openssl']}, {info['b3sum']}\n",
        flush=True,
    )
    started = time.perf_counter()
    made = archives(a)
    cache = Cache(a.cold)
    total = sum(x.bytes for x in made)
    print(
        f"\n{len(made)} archive(s), {total / MiB:,.0f} MiB of objects in all, "
        f"{'fits' if total < (info.get('memory_gib') or 0) * 2**30 / 2 else 'may not fit'} in this machine's memory: "
        f"{cache.state}. An untimed verify and peer run of each archive read it in first (the peers' digests "
        "checked line by line).",
        flush=True,
    )
    for x in made:
        custodes_verify(x, "local", CORES)
        for tool in ("openssl", "b3sum") if "blake3" in x.algos else ("openssl",):
            peer_digests(x, max(a.workers), tool)
    rows = rounds(a, made, cache)
    info["load_average_after"] = os.getloadavg()
    report(a, info, made, rows, cache)
    print(f"\nthe whole bench took {(time.perf_counter() - started) / 60:.1f} min")
    if not a.keep:
        for x in made:
            shutil.rmtree(x.path, ignore_errors=True)
            x.path.with_name(x.path.name + ".json").unlink(missing_ok=True)
    for w in a.workers:
        shutil.rmtree(a.dir / f"dask-{w}", ignore_errors=True)


if __name__ == "__main__":
    main()
