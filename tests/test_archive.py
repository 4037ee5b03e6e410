"""The archive end to end: ingest real and ffmpeg-made volumes, verify, and the tamper matrix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import custodes.ingest
from custodes.archive import init_archive, open_archive
from custodes.ingest import ingest
from custodes.storage import copy_object
from custodes.verify import verify
from footage import T0, make_clip
from helpers import BACKENDS, FOOTAGE, S3_KINDS, TAMPERS, catalog_edit, catalog_rows, one_line_error, run_cli


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    import hashlib

    return {
        str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_ingest_and_verify_real_footage(archive, tmp_path: Path) -> None:
    vol = tmp_path / "footage"
    shutil.copytree(FOOTAGE, vol)
    before = tree_digest(vol)
    r = ingest(archive, vol)
    assert len(r.stored) == 17 and not r.failed
    assert tree_digest(vol) == before  # the volume is untouched
    stored = [x for x in archive.store.list() if x.problem is None]
    import hashlib

    assert len(stored) == len({hashlib.sha256(p.read_bytes()).digest() for p in vol.rglob("*") if p.is_file()})
    copies = tmp_path / "read-back"
    copies.mkdir()
    paths = [copies / obj.digest for obj in stored]
    for obj, path in zip(stored, paths, strict=True):
        copy_object(archive.store, obj.digest, path)  # the object as the store gives it back
        out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True).stdout.split()[0]
        assert out == obj.digest  # content-addressed, by an independent tool
        if archive.store.backend == "local":
            assert stat.S_IMODE(archive.store.path_for(obj.digest).stat().st_mode) & 0o222 == 0  # read-only
    v = verify(archive)
    assert v.ok and v.checked == len(stored) and v.bytes == sum(p.stat().st_size for p in paths)
    never = catalog_rows(archive.root, "SELECT COUNT(*) FROM objects WHERE last_verified_ns IS NULL")[0][0]
    assert never == 0  # every object records when it was last verified
    again = ingest(archive, vol)
    assert again.stored == [] and len(again.already_present) == 17
    assert verify(archive).ok


def test_ffmpeg_gat947_volume_findings_and_times(archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol = tmp_path / "REC"
    (vol / "GAT947_ID.TXT").parent.mkdir(parents=True)
    (vol / "GAT947_ID.TXT").write_text("product_serial=A123456\nofficer_number=001234\n")
    from datetime import timezone

    bj = timezone(timedelta(hours=8))
    for i, seq in enumerate((1, 2, 4)):
        t = T0 + timedelta(seconds=2 * i)
        make_clip(vol / f"001234_A123456_{t.astimezone(bj):%Y%m%d%H%M%S}_{seq:04d}.MP4", t)
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:00:10\nstation_time=2024-03-01T10:00:00Z\n")
    then = int((T0 + timedelta(hours=30)).timestamp()) * 10**9
    monkeypatch.setattr(custodes.ingest, "_clock", lambda: then)  # (the system clock, for this test)
    r = ingest(archive, vol)
    kinds = sorted(f.kind for f in r.findings)
    assert kinds == ["late_ingest", "late_ingest", "late_ingest", "sequence_break"]
    rows = catalog_rows(
        archive.root,
        "SELECT original_name, start_ns, corrected_start_ns, sequence, officer_id FROM segments "
        "WHERE kind = 'video' ORDER BY sequence",
    )
    t0 = int(T0.timestamp()) * 10**9
    assert [(r[1] - t0, r[2] - t0, r[3], r[4]) for r in rows] == [
        (0, -10 * 10**9, 1, "001234"),
        (2 * 10**9, -8 * 10**9, 2, "001234"),
        (4 * 10**9, -6 * 10**9, 4, "001234"),
    ]
    device = catalog_rows(archive.root, "SELECT officer_id, serial FROM devices")[0]
    assert device == ("001234", "A123456")
    stored_findings = catalog_rows(archive.root, "SELECT kind FROM findings ORDER BY kind")
    assert [k for (k,) in stored_findings] == kinds
    assert verify(archive).ok


def test_cli_init_ingest_verify(tmp_path: Path, dcim_volume: Path) -> None:
    arch = tmp_path / "cli-archive"
    assert run_cli("init", arch).returncode == 0
    assert run_cli("init", arch).returncode == 2  # never over an existing archive
    out = run_cli("ingest", dcim_volume, "--archive", arch, "--json")
    report = json.loads(out.stdout)
    # Exit 1: the real footage was recorded years ago, so each recording is a late ingest, and years lie between
    # them (gap); nothing else.
    assert out.returncode == 1 and {f["kind"] for f in report["findings"]} == {"gap", "late_ingest"}
    # init's policy entry; ingest_begin, one ingest entry per recording, one ingest_findings entry (the volume has
    # fewer than 1000 findings), ingest_end (catalog.replay)
    assert len(report["stored"]) == 3 and report["checkpoint"]["size"] == 7
    v = run_cli("verify", arch, "--json", "--workers", "2")
    assert v.returncode == 0
    verified = json.loads(v.stdout)
    vkey = (arch / "keys" / "checkpoint.vkey").read_text().strip()
    assert verified == {
        "ok": True,
        "checked": 3,
        "bytes": sum(p.stat().st_size for p in dcim_volume.rglob("*") if p.is_file()),
        "findings": [],
        # No --trusted-key: it says it trusted the archive's own key, and which.
        "trust": {
            "key": vkey,
            "fingerprint": hashlib.sha256(vkey.encode()).hexdigest(),
            "source": "archive",
            "rotations": [],
            "witness": None,
        },
        "rehashed": True,
        "algorithms": ["sha256", "blake3"],  # every digest the policy records, re-hashed and compared
        # The whole archive, once, here: a verification run that finished, with nothing left.
        "run": {
            "id": 1,
            "not_recorded": None,
            "resumed": False,
            "selection": {"slice": None, "older_than_days": None, "quick": False},
            "budget": "none",
            "executor": "local",
            "stopped": None,
            "left": {"objects": 0, "bytes": 0},
            "run_objects": 3,
            "run_bytes": sum(p.stat().st_size for p in dcim_volume.rglob("*") if p.is_file()),
            "verified_before": 0,
        },
        "replay": None,  # the whole ledger replayed (no --incremental)
    }
    assert run_cli("verify", tmp_path / "not-an-archive").returncode == 2
    assert run_cli("ledger", "verify", arch).returncode == 0


def test_two_ingests_at_once_stay_consistent(tmp_path: Path, dcim_volume: Path) -> None:
    arch = tmp_path / "shared"
    init_archive(arch).close()
    other = tmp_path / "BWC0002"
    shutil.copytree(dcim_volume, other)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "custodes", "ingest", str(v), "--archive", str(arch), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for v in (dcim_volume, other, dcim_volume)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [1, 1, 1]  # late_ingest and gap findings only, never an error
    assert all({f["kind"] for f in o["findings"]} == {"gap", "late_ingest"} for o in outs)
    assert len(outs[1]["stored"]) == 3
    # The volume given twice: each file stored by exactly one of the two runs, reported present by the other.
    first, third = outs[0], outs[2]
    assert sorted(first["stored"] + third["stored"]) == sorted(f"DCIM/{n}" for n in ("a.mp4", "b.mov", "c.mp4"))
    assert sorted(first["stored"] + first["already_present"]) == sorted(third["stored"] + third["already_present"])
    with open_archive(arch) as a:
        assert catalog_rows(a.root, "SELECT COUNT(*) FROM segments")[0][0] == 6
        assert catalog_rows(a.root, "SELECT COUNT(*) FROM objects")[0][0] == 3  # same content, stored once
        assert verify(a).ok


# ---- the tamper matrix ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("name", TAMPERS)
def test_tamper_matrix(
    tmp_path: Path, dcim_volume: Path, name: str, backend: str, request: pytest.FixtureRequest
) -> None:
    arch = tmp_path / "archive"
    a = init_archive(arch, storage=request.getfixturevalue("s3_archive_options") if backend == "s3" else None)
    for i, f in enumerate(sorted((dcim_volume / "DCIM").iterdir())):  # one ingest per file: several checkpoints
        single = tmp_path / f"vol{i}" / "BWC0001"
        single.mkdir(parents=True)
        shutil.copy(f, single / f.name)
        ingest(a, single)
    clean = verify(a)
    assert clean.ok and clean.findings == [] and clean.checked == 3
    tamper, kind = TAMPERS[name]
    kind = S3_KINDS.get(name, kind) if backend == "s3" else kind
    tamper(a, tmp_path)
    a.close()
    out = run_cli("verify", arch, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False
    kinds = {f["kind"] for f in report["findings"]}
    assert kind in kinds, report["findings"]
    if kind in ("modified", "truncated", "missing"):
        f = next(f for f in report["findings"] if f["kind"] == kind)
        assert f["segment"] is not None and f["object"]


def test_unreadable_and_vanishing_files_fail_alone(tmp_path: Path, dcim_volume: Path) -> None:
    arch = tmp_path / "archive"
    init_archive(arch).close()
    (dcim_volume / "DCIM" / "b.mov").chmod(0)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    out = subprocess.run(
        [*prefix, sys.executable, "-m", "custodes", "ingest", str(dcim_volume), "--archive", str(arch), "--json"],
        capture_output=True,
    )
    report = json.loads(out.stdout)
    assert out.returncode == 1
    assert report["failed"] == ["DCIM/b.mov"] and sorted(report["stored"]) == ["DCIM/a.mp4", "DCIM/c.mp4"]
    failed = next(f for f in report["findings"] if f["kind"] == "ingest_failed")
    # Opened by ingest itself, to hold it against the file its scan found (custodes.rights.as_checked).
    assert failed["message"].endswith("b.mov: cannot open it (Permission denied); not copied"), failed
    # One finding for the one file (a hostile review: the probe's "unreadable" of it came too).
    assert [f["kind"] for f in report["findings"] if f["path"] and f["path"].endswith("b.mov")] == ["ingest_failed"]
    (dcim_volume / "DCIM" / "b.mov").chmod(0o644)
    rerun = run_cli("ingest", dcim_volume, "--archive", arch, "--json")
    again = json.loads(rerun.stdout)
    assert rerun.returncode == 1 and {f["kind"] for f in again["findings"]} == {"gap", "late_ingest"}
    assert again["stored"] == ["DCIM/b.mov"] and len(again["already_present"]) == 2
    with open_archive(arch) as a:
        assert verify(a).ok


def test_missing_catalog_or_checkpoints_are_reported(tmp_path: Path, dcim_volume: Path) -> None:
    arch = tmp_path / "archive"
    with init_archive(arch) as a:
        ingest(a, dcim_volume)
    shutil.rmtree(arch / "ledger" / "checkpoints")
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1
    assert "ledger/checkpoints/ is gone" in out.stdout.decode()
    for f in arch.glob("catalog.sqlite*"):
        f.unlink()
    gone = run_cli("verify", arch)
    assert gone.returncode == 2 and b"catalog (catalog.sqlite) is missing" in gone.stderr
    assert not (arch / "catalog.sqlite").exists()  # not silently re-created empty


def test_broken_policy_is_a_clear_error(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    init_archive(arch).close()
    policy = arch / "custodes.toml"
    broken = tmp_path / "broken.toml"
    broken.write_text(policy.read_text().replace("[archive]\nid =", "[archive]\nname ="))
    out = run_cli("policy", "set", arch, broken)
    assert out.returncode == 2 and b"policy value missing" in out.stderr
    broken.write_text("this is = = not toml")
    assert b"cannot read the policy" in run_cli("policy", "set", arch, broken).stderr
    # The same broken text put in place by hand: the archive keeps its ledgered policy, and says the file differs.
    policy.write_text("this is = = not toml")
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1 and [f["kind"] for f in json.loads(out.stdout)["findings"]] == ["policy_mismatch"]
    assert run_cli("ledger", "checkpoint", arch).returncode == 2


def test_volume_and_archive_must_not_overlap(tmp_path: Path, dcim_volume: Path) -> None:
    inside = dcim_volume / "archive"
    assert run_cli("init", inside).returncode == 0
    out = run_cli("ingest", dcim_volume, "--archive", inside)
    assert out.returncode == 2 and b"the archive is inside the volume" in out.stderr
    arch = tmp_path / "archive"
    assert run_cli("init", arch).returncode == 0
    out = run_cli("ingest", arch / "objects", "--archive", arch)
    assert out.returncode == 2 and b"the volume is inside the archive" in out.stderr
    with open_archive(inside) as a:
        assert list(a.store.list()) == []  # nothing, least of all the private key, was copied


def test_init_on_a_file_and_report_to_a_missing_folder_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = run_cli("init", tmp_path / "afile")
    assert out.returncode == 2 and b"is not a folder" in out.stderr
    assert run_cli("init", tmp_path / "arch").returncode == 0
    out = run_cli("report", tmp_path / "arch", "--format", "json", "--out", tmp_path / "nodir" / "r.json", "--json")
    # One line, as every environment error (it was click's four-line usage block): a hostile review.
    one_line_error(out, r"cannot write the report \(.*nodir/r\.json\): No such file or directory; give --out")


def test_catalog_migrates_from_the_first_schema(tmp_path: Path) -> None:
    import sqlite3

    from custodes.catalog import SCHEMA_VERSION
    from custodes.catalog.schema import MIGRATIONS

    arch = tmp_path / "archive"
    init_archive(arch).close()
    # The catalog made again, empty: its ledger's checkpoint files go with it (one of another ledger at a size the
    # new ledger reaches is another file under a checkpoint's name, which is refused: _durable.write_once).
    for f in [*arch.glob("catalog.sqlite*"), *arch.glob("ledger/checkpoints/*"), arch / "ledger" / "checkpoint"]:
        f.unlink()
    conn = sqlite3.connect(arch / "catalog.sqlite", isolation_level=None)  # as custodes 0.1 with schema 1 left it
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO devices (device_id, kind, updated_ns) VALUES ('OLD-1', 'body_camera', 0)")
    conn.close()
    with open_archive(arch) as a:
        assert catalog_rows(a.root, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
        assert catalog_rows(a.root, "SELECT device_id FROM devices") == [("OLD-1",)]
        assert catalog_rows(a.root, "SELECT COUNT(*) FROM access_requests")[0][0] == 0  # later tables exist
    with catalog_edit(arch) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    out = run_cli("verify", arch)
    assert out.returncode == 2 and b"newer than this custodes" in out.stderr


@pytest.mark.parametrize(
    ("version", "said"),
    [
        (0, "reads 0, yet it holds tables"),
        (3, "reads 3, yet it already holds index"),
        (12, "reads 12, yet it already holds"),
        (-1, "reads -1, which no custodes writes"),
    ],
)
def test_a_schema_version_lowered_by_hand_is_named_not_a_traceback(tmp_path: Path, version: int, said: str) -> None:
    """PRAGMA user_version set back by hand (a hostile review): the migrations ran again over what they had made
    and failed with a traceback (a step that only changes rows could run, and commit, first; -1 ran the last step
    by Python's negative index), and 0 read as an empty catalog. Now each command stops before running any step,
    saying what happened and the way back; with the version set back, the archive opens and verifies clean."""
    from custodes.catalog import SCHEMA_VERSION

    arch = tmp_path / "archive"
    init_archive(arch).close()
    with catalog_edit(arch) as c:
        c.execute(f"PRAGMA user_version = {version}")
    before = catalog_rows(arch, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    entries = catalog_rows(arch, "SELECT count(*) FROM ledger")
    for command in (("verify",), ("ledger", "verify"), ("retention", "status")):
        out = run_cli(*command, arch)
        text = out.stderr.decode()
        assert out.returncode == 2 and "Traceback" not in text, text
        assert said in text and f"this custodes makes {SCHEMA_VERSION}" in text, text
    assert catalog_rows(arch, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == before
    assert catalog_rows(arch, "PRAGMA user_version") == [(version,)]
    assert catalog_rows(arch, "SELECT count(*) FROM ledger") == entries
    with catalog_edit(arch) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    assert run_cli("verify", arch).returncode == 0


@pytest.mark.parametrize(
    "where",
    [
        "objects/sha256/{first}/notahash",
        "objects/sha256/zz/evil.mp4",
        "objects/junk.txt",
        "objects/md5/ab/planted",
        "objects/sha256/{first}/{other_digest}",
    ],
)
def test_a_foreign_file_in_the_store_is_one_unexpected_finding(tmp_path: Path, dcim_volume: Path, where: str) -> None:
    """A planted file never throws the digest-ordered walk off: every object is still re-hashed, and the
    file is exactly one `unexpected` finding (never `pending` objects, never silence)."""
    arch = tmp_path / "archive"
    with init_archive(arch) as a:
        ingest(a, dcim_volume)
        objects = sorted(a.store.path_for(o.digest) for o in a.store.list())
    first = objects[0].parent.relative_to(arch / "objects" / "sha256")
    other = objects[-1].name  # a real digest, planted in another object's folder
    planted = arch / where.format(first=first, other_digest=other)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"planted")
    out = run_cli("verify", arch, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    assert report["checked"] == 3
    assert [f["kind"] for f in report["findings"]] == ["unexpected"], report["findings"]
    assert str(planted.relative_to(arch)) in report["findings"][0]["message"]


def test_an_archive_whose_path_is_not_utf8_verifies(tmp_path: Path) -> None:
    """init and ingest took it; verify and ledger verify died with a UnicodeEncodeError when they attached the
    replay's scratch catalog by a name SQLite wants as UTF-8 text (a hostile review)."""
    arch = Path(os.fsdecode(os.fsencode(tmp_path) + b"/arch\xff\xfe"))
    assert run_cli("init", arch).returncode == 0
    out = run_cli("ingest", FOOTAGE / "encoders", "--archive", arch, "--driver", "generic", "--json")
    assert out.returncode in (0, 1) and json.loads(out.stdout)["stored"], out.stderr
    for command in (("verify",), ("ledger", "verify")):
        r = run_cli(*command, arch)
        assert r.returncode == 0 and "Traceback" not in r.stderr.decode(), r.stderr


def test_an_ingest_takes_its_time_from_the_system_clock_alone() -> None:
    """`ingest(..., now=T)` let a library caller set when footage was taken in: an ingest backdated to 1970 was
    signed into the ledger and no check could tell (a hostile review). The time is the system's clock's."""
    import inspect

    assert "now" not in inspect.signature(ingest).parameters
