"""Tasks, coverage and gap explanations, through the CLI on ffmpeg-made recorders."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from custodes.archive import open_archive
from custodes.verify import verify
from footage import T0, make_clip
from helpers import catalog_rows, copy_archive, grant, run_cli

BJ = timezone(timedelta(hours=8))


def recorder(root: Path, device: str, officer: str, starts: list[int], events: str = "") -> Path:
    vol = root / device
    for n, s in enumerate(starts, start=1):
        t = T0 + timedelta(seconds=s)
        make_clip(vol / f"{officer}_{device}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t)
    if events:
        (vol / "EVENTS.LOG").write_text(events)
    return vol


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def made_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive the tests start from, made once (two recorders' clips made, ingested and tasks imported: 5 s
    of the suite each time), with its tasks.csv beside it."""
    root = tmp_path_factory.mktemp("tasks")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    grant(arch, "custodian")  # tasks and gap explanations are recorded by a custodian (or an approver)
    # A records 0-10 s and 20-24 s; B records 0-4 s and 14-24 s and logged a low battery at 3 s.
    a = recorder(root, "BWCA", "001234", [0, 2, 4, 6, 8, 20, 22])
    b = recorder(
        root,
        "BWCB",
        "005678",
        [0, 2, 14, 16, 18, 20, 22],
        events=f"{(T0 + timedelta(seconds=3)).astimezone(BJ):%Y-%m-%d %H:%M:%S} battery_low 5%\n",
    )
    for vol in (a, b):
        assert run_cli("ingest", vol, "--archive", arch).returncode == 1  # late_ingest: the footage is from 2024
    tasks = arch.parent / "tasks.csv"
    tasks.write_text(
        "id,type,start,end,officers,devices\n"
        f"T1,traffic_stop,{iso(0)},{iso(24)},005678,BWCA\n"
        f"T2,inspection,{iso(0)},{iso(24)},,BWCA\n"
        f"T3,inspection,{iso(0)},{iso(14)},005678,\n"
    )
    out = run_cli("task", "import", arch, tasks, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["imported"] == ["T1", "T2", "T3"]
    return arch


@pytest.fixture
def tasks_archive(made_once: Path, tmp_path: Path) -> Path:
    """A copy of :func:`made_once`'s archive, and its tasks.csv, for one test to change."""
    shutil.copy(made_once.parent / "tasks.csv", tmp_path)
    return copy_archive(made_once, tmp_path / "archive")


def coverage(arch: Path, *tasks: str) -> tuple[int, dict[str, dict]]:
    out = run_cli("task", "coverage", arch, "--json", *[x for t in tasks for x in ("--task", t)])
    return out.returncode, {t["task"]["id"]: t for t in json.loads(out.stdout)["tasks"]}


def test_coverage_two_device_share_and_explanations(tasks_archive: Path) -> None:
    code, cov = coverage(tasks_archive)
    t1 = cov["T1"]  # A and, through officer 005678, B
    assert t1["devices"] == ["BWCA", "BWCB"]
    assert t1["covered_share"] == pytest.approx(20 / 24) and t1["two_device_share"] == pytest.approx(8 / 24)
    assert [(u["start"], u["end"]) for u in t1["uncovered"]] == [(iso(10), iso(14))]
    t3 = cov["T3"]  # B alone: 4-14 s uncovered, explained by its own battery_low event at 3 s
    assert t3["devices"] == ["BWCB"] and t3["findings"] == []
    assert [(e["cause"], e["source"], e["event"]) for e in t3["explained"]] == [
        ("battery", "device_event", "battery_low")
    ]
    t2 = cov["T2"]  # A alone: 10-20 s uncovered and nobody said why
    assert code == 1
    assert [(f["kind"], f["start"], f["end"], f["duration"]) for f in t2["findings"]] == [
        ("gap_unexplained", iso(10), iso(20), 10.0)
    ]


def test_explaining_a_gap_clears_the_finding_and_is_ledgered(tasks_archive: Path) -> None:
    with open_archive(tasks_archive) as a:
        before = a.ledger_size()
        seg = catalog_rows(
            a.root,
            "SELECT id FROM segments WHERE device_id = 'BWCA' AND start_ns > ? ORDER BY start_ns LIMIT 1",
            (int(T0.timestamp() * 1e9) + 15 * 10**9,),
        )[0][0]
    out = run_cli(
        "gap",
        "explain",
        tasks_archive,
        "--device",
        "BWCA",
        "--from",
        iso(10),
        "--to",
        iso(20),
        "--cause",
        "location_change",
        "--note",
        "moved to the station",
        "--segment",
        seg,
        "--offset",
        "1.5",
    )
    assert out.returncode == 0, out.stderr
    code, cov = coverage(tasks_archive, "T2")
    assert code == 0 and cov["T2"]["findings"] == []
    (e,) = cov["T2"]["explained"]
    assert (e["cause"], e["source"], e["note"]) == ("location_change", "annotation", "moved to the station")
    with open_archive(tasks_archive) as a:
        assert a.ledger_size() == before + 1
        entry = json.loads(catalog_rows(a.root, "SELECT entry FROM ledger ORDER BY seq DESC LIMIT 1")[0][0])
        assert (entry["type"], entry["cause"], entry["segment"], entry["offset"]) == (
            "annotation",
            "location_change",
            seg,
            1_500_000_000,
        )
        assert verify(a).ok


def test_a_note_with_a_line_break_prints_on_its_explanation_s_line(tasks_archive: Path) -> None:
    """A note may hold line breaks; `task coverage` printed one as a line of its own, which read as another
    line of the output (a hostile review)."""
    note = "battery swapped\ncase CASE-1: released"
    args = ("--device", "BWCA", "--from", iso(10), "--to", iso(20), "--cause", "battery", "--note", note)
    assert run_cli("gap", "explain", tasks_archive, *args).returncode == 0
    out = run_cli("task", "coverage", tasks_archive, "--task", "T2").stdout.decode()
    (line,) = [x for x in out.splitlines() if "explained" in x and "annotation" in x]
    assert line.endswith("battery swapped\\ncase CASE-1: released"), out
    assert not any(x.startswith("case CASE-1") for x in out.splitlines()), out


def test_an_exemption_is_a_cause(tasks_archive: Path) -> None:
    assert (
        run_cli(
            "gap", "explain", tasks_archive, "--device", "BWCA", "--from", iso(10), "--to", iso(20), "--cause", "secret"
        ).returncode
        == 0
    )
    assert coverage(tasks_archive, "T2")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cause", "tired"], b"unknown cause 'tired'"),
        (["--cause", "battery", "--device", "NOPE"], b"no device 'NOPE'"),
        (["--cause", "battery", "--from", iso(30)], b"ends before it starts"),
        (["--cause", "battery", "--from", "2024-03-01 10:00:10"], b"no time zone offset"),
        # A note of "." or blank explains nothing, and "other" says nothing without one (a hostile review).
        (["--cause", "battery", "--note", "."], b"the note '.' says nothing: say what stopped the recording"),
        (["--cause", "battery", "--note", " \u200b"], b"says nothing"),
        (["--cause", "other", "--note", "\u3164"], b"says nothing"),  # a Hangul filler: a letter that shows nothing
        (["--cause", "other"], b"the cause 'other' needs a note saying what it was (--note)"),
    ],
)
def test_explanation_refusals(tasks_archive: Path, args: list[str], message: bytes) -> None:
    base = {"--device": "BWCA", "--from": iso(10), "--to": iso(20)}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for k, v in base.items() for x in (k, v)]
    out = run_cli("gap", "explain", tasks_archive, *flat)
    assert out.returncode == 2 and message in out.stderr


def test_bad_task_file_imports_nothing(tasks_archive: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {"id": "T9", "type": "x", "start": iso(0), "end": iso(5), "devices": ["BWCA"]},
                {"id": "T10", "type": "x", "start": iso(5), "end": iso(1), "devices": ["BWCA"]},
                {"id": "T11", "type": "x", "start": "yesterday", "end": iso(1), "officers": ["001234"]},
                {"id": "T12", "type": "x", "start": iso(0), "end": iso(1)},
            ]
        )
    )
    out = run_cli("task", "import", tasks_archive, bad)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert "bad.json row 2: task 'T10' ends before it starts" in err
    assert "bad.json row 3: 'yesterday' is not an RFC 3339 time" in err
    assert "bad.json row 4: task 'T12' names no device and no officer" in err
    code, cov = coverage(tasks_archive)
    assert "T9" not in cov  # all or nothing
    same = run_cli("task", "import", tasks_archive, tasks_archive.parent / "tasks.csv", "--json")
    assert json.loads(same.stdout)["unchanged"] == ["T1", "T2", "T3"]
    assert run_cli("task", "coverage", tasks_archive, "--task", "NOPE").returncode == 2
