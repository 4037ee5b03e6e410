#!/usr/bin/env python3
"""Ingest and verify throughput against their peers, in one run.

Ingest (copy + hash + fsync + read back + re-hash + link + catalog + ledger)
against ``cp -r`` of the same volume, plain and followed by ``sync`` (a
durable copy, which is what ingest delivers). Verify (re-hash every object
and check catalog, ledger, checkpoints) against ``sha256sum -c`` of a
manifest of the same objects, ``hashdeep -a -j2`` with known hashes, and
``bagit.py --validate`` of a bag with the same payload. The corpus is the
one benches/compare_hash.py builds (default 2 GiB), in the page cache.

With ``--small N``, a many-small-files volume instead (N files of 20-200 KiB, random sizes and bytes, seeded):
ingest against ``cp -r && sync`` and ``rsync -a && sync``, and verify of an archive of ``--objects`` (default
20,000) objects of 4 KiB against ``sha256sum -c``, ``xargs -P <cores>`` of it over one manifest per core and
``xargs -P <cores> openssl dgst -sha256`` of the objects (SHA-NI),
each run with its peak RSS (GNU time's, else wait4's: benches/_measure.py). rsync is left out, and said so, where
it is not installed.

Threads are said on both sides: ingest and verify run on every core and with
``--workers 1``; one-process peers (``cp``, ``sha256sum -c``) are compared with
the one-worker figure, and ``sha256sum -c`` also runs as ``xargs -P <cores>``
over per-file manifests. Every run is checked: ingest must store every file
(exit 1 only for the findings random bytes named .mp4 must raise), verify and
the peers must exit 0.

    .venv/bin/python benches/compare_archive.py [--size-mib 2048] [--repeat 3]
    .venv/bin/python benches/compare_archive.py --small 5000 [--objects 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus import MiB, build_corpus  # noqa: E402
from _measure import Run, as_installed, measure, must, stored_all  # noqa: E402
from compare_hash import hashlib_loop, make_bag  # noqa: E402

BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
#: What ingest must say of the corpus: random bytes named .mp4 have no sample index.
CORPUS_FINDINGS = {"no_moov", "malformed", "late_ingest", "clock_unset"}


def run(*args: str, stdin_files: list[str] | None = None) -> None:
    """A run that must exit 0; ``stdin_files`` are fed one per line (for xargs)."""
    feed = None if stdin_files is None else "\n".join(stdin_files).encode()
    subprocess.run(args, input=feed, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def median(fn: Callable[[], None], repeat: int, setup: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(rows: dict[str, tuple[Callable[[], None], Callable[[], None]]], repeat: int) -> dict[str, float]:
    """The median time of each row's run (``setup`` untimed before each), in ``repeat`` rounds that run every row
    once, in an order turned by one each round. Rows measured in blocks of their own drifted with the virtual
    disk's write-back: the same ``cp -r && sync`` took 1.3 s in its block and 2.2 s between ingests (session 15),
    so that a ratio between blocks said more about the order than about the tools."""
    names = list(rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(repeat):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            setup, fn = rows[name]
            setup()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("bench-corpus"))
    ap.add_argument("--small", type=int, default=None, help="files of 20-200 KiB in the many-small-files volume")
    ap.add_argument("--objects", type=int, default=20_000, help="4 KiB objects in the archive --small verifies")
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    as_installed(a.dir)
    if a.small is not None:
        small_main(a)
        return
    files = build_corpus(a.dir, a.size_mib)
    volume = a.dir / "data"
    total = sum(f.stat().st_size for f in files) / MiB
    bag = make_bag(a.dir, files)
    hashlib_loop(files)
    work = Path(tempfile.mkdtemp(dir=a.dir))
    print(f"volume: {len(files)} files, {total:.0f} MiB, median of {a.repeat} runs, warm cache\n")

    def fresh(readback: str = "storage") -> None:
        shutil.rmtree(work / "archive", ignore_errors=True)
        shutil.rmtree(work / "copy", ignore_errors=True)
        run("sync")  # start every run with no dirty pages from the last one
        run(str(BIN / "custodes"), "init", str(work / "archive"), "--algo", "sha256")
        if readback != "storage":  # the policy is ledgered: the owner sets it with `policy set`, not by hand
            policy = work / "archive" / "custodes.toml"
            changed = work / "policy.toml"
            changed.write_text(policy.read_text().replace('readback = "storage"', f'readback = "{readback}"'))
            run(str(BIN / "custodes"), "policy", "set", str(work / "archive"), str(changed))

    def ingest(*extra: str) -> Callable[[], None]:
        def go() -> None:
            out = subprocess.run(
                [
                    str(BIN / "custodes"),
                    "ingest",
                    str(volume),
                    "--archive",
                    str(work / "archive"),
                    "--driver",
                    "generic",
                    "-q",
                    "--json",
                    *extra,
                ],
                capture_output=True,
            )
            report = json.loads(out.stdout) if out.stdout else {}
            kinds = {f["kind"] for f in report.get("findings", [])}
            if (
                out.returncode not in (0, 1)
                or len(report.get("stored", [])) != len(files)
                or report.get("failed")
                or not kinds <= CORPUS_FINDINGS
            ):
                raise SystemExit(
                    f"ingest went wrong (exit {out.returncode}): stored {len(report.get('stored', []))} "
                    f"of {len(files)}, failed {report.get('failed')}, findings {sorted(kinds)}; "
                    f"{out.stderr.decode()[-500:]}"
                )

        return go

    rows = interleaved(
        {
            f"custodes ingest [{CORES} cores]": (fresh, ingest()),
            "custodes ingest --workers 1 [1 thread]": (fresh, ingest("--workers", "1")),
            f"custodes ingest readback=cache [{CORES} cores]": (lambda: fresh("cache"), ingest()),
            "cp -r [1 thread]": (fresh, lambda: run("cp", "-r", str(volume), str(work / "copy"))),
            "cp -r && sync [1 thread]": (
                fresh,
                lambda: (run("cp", "-r", str(volume), str(work / "copy")), run("sync")),
            ),
        },
        a.repeat,
    )
    print(f"ingest (median of {a.repeat} rounds, each running every row once, in an order turned by one a round):")
    for name, s in rows.items():
        print(f"  {name:44} {total / s:8.0f} MiB/s  ({s:.2f} s)")
    print("ratios (peer time / custodes time):")
    for ours in (
        f"custodes ingest [{CORES} cores]",
        "custodes ingest --workers 1 [1 thread]",
        f"custodes ingest readback=cache [{CORES} cores]",
    ):
        for peer in ("cp -r [1 thread]", "cp -r && sync [1 thread]"):
            print(f"  {ours:44} vs {peer:26} {rows[peer] / rows[ours]:.2f}x")

    archive = work / "archive"
    fresh()  # the cp timings reset the archive: fill it once more for the verify timings
    ingest()()
    objects = archive / "objects"
    manifest = work / "objects.sha256"
    object_files = [str(p) for p in sorted(objects.rglob("*")) if p.is_file()]
    manifest.write_bytes(subprocess.run(["sha256sum", *object_files], capture_output=True, check=True).stdout)
    if len(object_files) != len(files):
        raise SystemExit(f"the store holds {len(object_files)} objects, expected {len(files)}")
    per_file = work / "per-file"
    per_file.mkdir()
    for i, line in enumerate(manifest.read_bytes().splitlines()):
        (per_file / f"{i}.sha256").write_bytes(line + b"\n")
    known = work / "known.hashdeep"
    known.write_bytes(subprocess.run(["hashdeep", "-c", "sha256", "-r", str(objects)], capture_output=True).stdout)
    manifests = [str(p) for p in sorted(per_file.iterdir())]
    # (name, threads "1" or "all", time); run() raises on any non-zero exit.
    verify_rows = [
        ("custodes verify", "all", median(lambda: run(str(BIN / "custodes"), "verify", str(archive), "-q"), a.repeat)),
        (
            "custodes verify --workers 1",
            "1",
            median(lambda: run(str(BIN / "custodes"), "verify", str(archive), "-q", "--workers", "1"), a.repeat),
        ),
        ("sha256sum -c", "1", median(lambda: run("sha256sum", "-c", "--quiet", str(manifest)), a.repeat)),
        (
            f"xargs -P{CORES} sha256sum -c",
            "all",
            median(
                lambda: run("xargs", "-n", "1", "-P", str(CORES), "sha256sum", "-c", "--quiet", stdin_files=manifests),
                a.repeat,
            ),
        ),
        (
            "hashdeep -a -j2",
            "all",
            median(
                lambda: run("hashdeep", "-c", "sha256", "-a", "-j2", "-k", str(known), "-r", str(objects)), a.repeat
            ),
        ),
        (
            "bagit.py --validate --processes 2",
            "all",
            median(
                lambda: run(sys.executable, str(BIN / "bagit.py"), "--validate", "--processes", "2", str(bag)), a.repeat
            ),
        ),
    ]
    print("\nverify:")
    for name, th, s in verify_rows:
        print(f"  {name:36} [{'1 thread' if th == '1' else f'{CORES} cores'}] {total / s:8.0f} MiB/s  ({s:.2f} s)")
    ours = {th: s for name, th, s in verify_rows if name.startswith("custodes")}
    print("ratios, like for like (peer time / custodes time):")
    for name, th, s in verify_rows:
        if not name.startswith("custodes"):
            print(f"  {'1 thread' if th == '1' else f'{CORES} cores':9} custodes vs {name:36} {s / ours[th]:.2f}x")
    shutil.rmtree(work)


#: What ingest must say of a volume of random .bin files: no driver reads their time.
SMALL_FINDINGS = {"unknown_file"}


def small_corpus(root: Path, files: int, low: int, high: int, seed: int = 14) -> Path:
    """``files`` files of ``low``..``high`` bytes (random sizes and bytes from ``seed``: every run the same
    volume, and every file a new object), written once and reused."""
    folder = root / f"small-{files}-{low}-{high}-{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(files):
        (folder / "data" / f"f{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(low, high)))
    done.touch()
    return folder / "data"


@dataclass
class Small:
    """One many-small-files run: its work folder, the archive and copy in it, and the repeat count."""

    work: Path
    repeat: int

    @property
    def archive(self) -> Path:
        return self.work / "archive"

    @property
    def copy(self) -> Path:
        return self.work / "copy"

    def fresh(self) -> None:
        shutil.rmtree(self.archive, ignore_errors=True)
        shutil.rmtree(self.copy, ignore_errors=True)
        run("sync")  # every run starts with no dirty pages from the last one
        run(str(BIN / "custodes"), "init", str(self.archive), "--algo", "sha256")

    def ingest(self, source: Path, count: int, *extra: str) -> Run:
        args = ("ingest", str(source), "--archive", str(self.archive), "--driver", "generic", "-q", "--json")
        got = must(measure(str(BIN / "custodes"), *args, *extra), "ingest", ok=(0, 1))
        return stored_all(got, "ingest", count, SMALL_FINDINGS)

    def timed(self, runs: Callable[[], list[Run]], fresh: bool = True) -> tuple[float, float]:
        """Median time of the repeated runs, each of one or more processes (a copy, then sync), and the
        largest peak RSS of any of them."""
        got = []
        for _ in range(self.repeat):
            if fresh:
                self.fresh()
            steps = runs()
            got.append((sum(r.seconds for r in steps), max(r.rss_mib for r in steps)))
        return statistics.median(s for s, _ in got), max(m for _, m in got)


def small_main(a: argparse.Namespace) -> None:
    """The many-small-files figures: see the module notes."""
    run_ = Small(Path(tempfile.mkdtemp(dir=a.dir)), a.repeat)
    small_ingest(run_, small_corpus(a.dir, a.small, 20 << 10, 200 << 10))
    small_verify(run_, small_corpus(a.dir, a.objects, 4 << 10, 4 << 10), a.objects)
    shutil.rmtree(run_.work)


def small_ingest(r: Small, volume: Path) -> None:
    files = sorted(volume.iterdir())
    total = sum(f.stat().st_size for f in files) / MiB
    print(f"volume: {len(files)} files of 20-200 KiB, {total:.0f} MiB, median of {r.repeat} runs, warm cache\n")
    rows = {
        f"custodes ingest [{CORES} cores]": r.timed(lambda: [r.ingest(volume, len(files))]),
        "custodes ingest --workers 1 [1 thread]": r.timed(lambda: [r.ingest(volume, len(files), "--workers", "1")]),
        "cp -r && sync [1 thread]": r.timed(
            lambda: [must(measure("cp", "-r", str(volume), str(r.copy)), "cp -r"), must(measure("sync"), "sync")]
        ),
    }
    rsync = shutil.which("rsync")
    if rsync is None:
        print("rsync is not installed on this machine: its row is left out\n")
    else:
        rows["rsync -a && sync [2 processes]"] = r.timed(
            lambda: [must(measure(rsync, "-a", f"{volume}/", f"{r.copy}/"), "rsync -a"), must(measure("sync"), "sync")]
        )
    print("ingest:")
    for name, (s, rss) in rows.items():
        print(f"  {name:40} {len(files) / s:7.0f} files/s {total / s:6.0f} MiB/s ({s:6.2f} s)  peak RSS {rss:4.0f} MiB")
    print("ratios (peer time / custodes time; 1.00x is as fast as the peer):")
    for ours in (f"custodes ingest [{CORES} cores]", "custodes ingest --workers 1 [1 thread]"):
        for peer in [name for name in rows if not name.startswith("custodes")]:
            print(f"  {ours:40} vs {peer:32} {rows[peer][0] / rows[ours][0]:.2f}x")


def small_verify(r: Small, source: Path, count: int) -> None:
    r.fresh()
    r.ingest(source, count)
    object_files = [str(p) for p in sorted((r.archive / "objects").rglob("*")) if p.is_file()]
    if len(object_files) != count:
        raise SystemExit(f"the store holds {len(object_files)} objects, expected {count}")
    manifest = r.work / "objects.sha256"
    listed = "\n".join(object_files).encode()
    manifest.write_bytes(must(measure("xargs", "-d", "\n", "sha256sum", stdin=listed), "sha256sum").stdout)
    lines = manifest.read_bytes().splitlines(keepends=True)
    parts = []
    for k in range(CORES):  # one manifest per core, for xargs -P to check side by side
        part = r.work / f"objects.{k}.sha256"
        part.write_bytes(b"".join(lines[k::CORES]))
        parts.append(str(part))

    def verify(*extra: str) -> list[Run]:
        got = must(measure(str(BIN / "custodes"), "verify", str(r.archive), "-q", "--json", *extra), "verify")
        checked = json.loads(got.stdout)["checked"]
        if checked != count:
            raise SystemExit(f"verify checked {checked} objects, the archive holds {count}")
        return [got]

    def peer(*args: str, stdin: bytes | None = None) -> Callable[[], list[Run]]:
        return lambda: [must(measure(*args, stdin=stdin), " ".join(args))]

    # --incremental: the verifier's kept replay of the ledger (custodes.catalog.replay_cache), made by an untimed
    # first run in a cache folder of this bench's own; the timed runs replay nothing.
    os.environ["XDG_CACHE_HOME"] = str(r.work / "xdg-cache")
    verify("--incremental")
    rows = {  # name: (threads, (median seconds, peak RSS))
        "custodes verify": ("all", r.timed(verify, fresh=False)),
        "custodes verify --workers 1": ("1", r.timed(lambda: verify("--workers", "1"), fresh=False)),
        "custodes verify --incremental": ("all", r.timed(lambda: verify("--incremental"), fresh=False)),
        "sha256sum -c": ("1", r.timed(peer("sha256sum", "-c", "--quiet", str(manifest)), fresh=False)),
        f"xargs -P{CORES} sha256sum -c (a manifest per core)": (
            "all",
            r.timed(
                peer(
                    "xargs", "-n", "1", "-P", str(CORES), "sha256sum", "-c", "--quiet", stdin="\n".join(parts).encode()
                ),
                fresh=False,
            ),
        ),
        # The fastest SHA-256 here (SHA-NI; Debian's sha256sum has none): the digests, not yet compared.
        f"xargs -P{CORES} openssl dgst -sha256": (
            "all",
            r.timed(
                peer("xargs", "-d", "\n", "-n", "1000", "-P", str(CORES), "openssl", "dgst", "-sha256", stdin=listed),
                fresh=False,
            ),
        ),
    }
    print(f"\nverify: {count} objects of 4 KiB ({count * 4 / 1024:.0f} MiB)")
    for name, (th, (s, rss)) in rows.items():
        threads = "1 thread" if th == "1" else f"{CORES} cores"
        print(f"  {name:46} [{threads}] {count / s:7.0f} objects/s ({s:5.2f} s)  peak RSS {rss:4.0f} MiB")
    ours = {th: s for name, (th, (s, _)) in rows.items() if name in ("custodes verify", "custodes verify --workers 1")}
    print("ratios, like for like (peer time / custodes time):")
    for name, (th, (s, _)) in rows.items():
        if not name.startswith("custodes"):
            threads = "1 thread" if th == "1" else f"{CORES} cores"
            print(f"  {threads:9} custodes vs {name:46} {s / ours[th]:.2f}x")
    ratio = rows["sha256sum -c"][1][0] / rows["custodes verify --incremental"][1][0]
    print(f"  {CORES} cores   custodes verify --incremental vs {'sha256sum -c':33} {ratio:.2f}x")


if __name__ == "__main__":
    main()
