"""Findings are facts about evidence, recorded once (issue 17): ingesting a volume again, or a volume that holds
it and more, leaves the report's counts as they were; a gap explained after the fact shows as resolved, not
twice; a device event explains only the gap that begins after it (within EVENT_LEAD), never a later one.
Real GA/T 947 volumes made with ffmpeg, the real CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from custodes.archive import open_archive
from custodes.findings import ns_from_rfc3339
from custodes.query import segment as segment_of
from custodes.query import segment_findings
from custodes.web.dashboard import needs_a_person
from footage import T0, make_clip
from helpers import catalog_edit, catalog_rows, grant, run_cli, run_cli_with_faults

BJ = timezone(timedelta(hours=8))
DEVICE = "BWC0001"


def recorder(where: Path, clips: list[tuple[int, float]], events: str = "") -> Path:
    """A GA/T 947 volume of officer 001234 (the folder names the device) in ``where``: a clip per (start second
    after T0, seconds), numbered in order."""
    vol = where / DEVICE
    for n, (s, seconds) in enumerate(clips, start=1):
        t = T0 + timedelta(seconds=s)
        make_clip(vol / f"001234_{DEVICE}_{t.astimezone(BJ):%Y%m%d%H%M%S}_{n:04d}.MP4", t, seconds)
    if events:
        (vol / "EVENTS.LOG").write_text(events)
    return vol


def logged(seconds: int, kind: str) -> str:
    """An event-log line at T0 + seconds, in the device's own (Beijing) time, as GA/T 947 devices write it."""
    return f"{(T0 + timedelta(seconds=seconds)).astimezone(BJ):%Y-%m-%d %H:%M:%S} {kind}\n"


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_archive(path: Path) -> Path:
    assert run_cli("init", path).returncode == 0
    return path


def ingest(arch: Path, vol: Path) -> None:
    out = run_cli("ingest", vol, "--archive", arch, "--json")
    assert out.returncode == 1, out.stderr  # late_ingest and gaps: the footage is from 2024
    assert json.loads(out.stdout)["device"] == DEVICE


def report(arch: Path) -> dict[str, Any]:
    out_path = arch.parent / f"{arch.name}-report.json"
    out = run_cli("report", arch, "--out", out_path, "--lang", "en")
    assert out.returncode == 0, out.stderr
    return json.loads(out_path.read_text())


def counts(model: dict[str, Any]) -> dict[str, Any]:
    """The report's counts of what ingest found, and the findings it lists of each kind."""
    c, cl, ti = model["completeness"], model["clocks"], model["timeliness"]
    kinds: dict[str, int] = {}
    for f in model["findings"]:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    return {
        "gaps": c["gaps"],
        "gaps_open": c["gaps_open"],
        "gaps_resolved": c["gaps_resolved"],
        "sequence_breaks": c["sequence_breaks"],
        "late_ingest": ti["late_ingest"],
        "clock_unset": cl["clock_unset"],
        "clock_future": cl["clock_future"],
        "name_time_mismatch": cl["name_time_mismatch"],
        "listed": kinds,
    }


# Three clips of 2 s at 0, 10 and 20 s: two gaps (2-10 s, 12-20 s) and three late ingests. The superset adds
# a fourth clip right after the third (22-24 s): no new gap, one more late ingest.
CLIPS = [(0, 2.0), (10, 2.0), (20, 2.0)]
MORE = [(22, 2.0)]


def test_ingesting_again_and_a_superset_changes_no_count(tmp_path: Path) -> None:
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    ingest(arch, vol)
    once = counts(report(arch))
    assert once == {
        "gaps": 2,
        "gaps_open": 2,
        "gaps_resolved": 0,
        "sequence_breaks": 0,
        "late_ingest": 3,
        "clock_unset": 0,
        "clock_future": 0,
        "name_time_mismatch": 0,
        "listed": {"gap": 2, "late_ingest": 3},
    }
    ingest(arch, vol)
    assert counts(report(arch)) == once  # issue 17: the gaps were 4 and late_ingest 6 here

    # The same card docked again later, with the fourth clip on it, from another mount point.
    superset = shutil.copytree(vol, tmp_path / "later" / DEVICE)  # the first three clips byte for byte
    t = T0 + timedelta(seconds=MORE[0][0])
    make_clip(superset / f"001234_{DEVICE}_{t.astimezone(BJ):%Y%m%d%H%M%S}_0004.MP4", t, MORE[0][1])
    ingest(arch, superset)
    both = counts(report(arch))

    # What one ingest of the superset alone finds.
    alone = new_archive(tmp_path / "alone")
    ingest(alone, superset)
    assert both == counts(report(alone)) == once | {"late_ingest": 4, "listed": {"gap": 2, "late_ingest": 4}}

    # The ledger holds every ingest's findings (it is append-only: each of the three ingests found the two gaps);
    # the report counts each once, and so does the catalog rebuilt from the ledger.
    assert catalog_rows(arch, "SELECT COUNT(*) FROM findings WHERE kind = 'gap'")[0][0] == 6
    grant(arch, "custodian")  # who may rebuild the catalog
    rebuilt = run_cli("ledger", "rebuild-catalog", arch, "--replace", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert counts(report(arch)) == both
    checked = run_cli("verify", arch, "--json")  # the rows are the ledger's, duplicates of old entries and all
    assert checked.returncode == 0, checked.stdout


def test_a_gap_explained_after_the_fact_is_resolved_not_repeated(tmp_path: Path) -> None:
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    grant(arch, "custodian")
    ingest(arch, vol)
    explained = run_cli(
        "gap", "explain", arch, "--device", DEVICE, "--from", iso(2), "--to", iso(10), "--cause", "location_change"
    )
    assert explained.returncode == 0, explained.stderr
    (annotation_index,) = catalog_rows(arch, "SELECT ledger_seq FROM gap_explanations")[0]
    ingest(arch, vol)  # docked again after the explanation: still one finding per gap
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(f"id,type,start,end,officers,devices\nT1,stop,{iso(0)},{iso(22)},,{DEVICE}\n")
    assert run_cli("task", "import", arch, tasks).returncode == 0
    model = report(arch)
    assert model["completeness"]["gaps_by_cause"] == {"location_change": 1, "unexplained": 1}
    # Explained once more, by someone else's annotation: still one gap, resolved, now with both annotations.
    again = run_cli("gap", "explain", arch, "--device", DEVICE, "--from", iso(1), "--to", iso(11), "--cause", "weather")
    assert again.returncode == 0, again.stderr
    model_again = report(arch)
    assert model_again["completeness"]["gaps_by_cause"] == {"location_change": 1, "weather": 1, "unexplained": 1}
    assert counts(model_again) == counts(model)
    assert len(next(f for f in model_again["findings"] if f["kind"] == "gap")["resolved_by"]) == 2
    explained = run_cli(
        "gap", "explain", arch, "--device", DEVICE, "--from", iso(2), "--to", iso(10), "--cause", "location_change"
    )
    assert explained.returncode == 0, explained.stderr  # the same explanation twice: one gap, one cause
    assert report(arch)["completeness"]["gaps_by_cause"] == {"location_change": 1, "weather": 1, "unexplained": 1}
    assert counts(model) | {"listed": None} == {
        "gaps": 2,
        "gaps_open": 1,
        "gaps_resolved": 1,
        "sequence_breaks": 0,
        "late_ingest": 3,
        "clock_unset": 0,
        "clock_future": 0,
        "name_time_mismatch": 0,
        "listed": None,
    }
    gaps = sorted((f for f in model["findings"] if f["kind"] == "gap"), key=lambda f: f["start"])
    assert [g["start"][:19] for g in gaps] == [iso(2)[:19], iso(12)[:19]]
    first, second = gaps
    assert first["resolved_by"] == [
        {
            "source": "annotation",
            "cause": "location_change",
            "ledger_index": annotation_index,
            "start": first["start"],
            "end": first["end"],
        }
    ]
    assert second["resolved_by"] is None


def test_an_event_explains_the_gap_after_it_and_no_later_one(tmp_path: Path) -> None:
    # Recording 0-4 s, battery low at 3 s, stopped 4-10 s, recording 10-12 s, stopped 12-20 s, recording 20-22 s.
    vol = recorder(tmp_path / "card", [(0, 2.0), (2, 2.0), (10, 2.0), (20, 2.0)], events=logged(3, "battery_low 5%"))
    arch = new_archive(tmp_path / "archive")
    ingest(arch, vol)
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(f"id,type,start,end,officers,devices\nT1,stop,{iso(0)},{iso(22)},,{DEVICE}\n")
    grant(arch, "custodian")  # who may record tasks
    assert run_cli("task", "import", arch, tasks).returncode == 0
    out = run_cli("task", "coverage", arch, "--json")
    assert out.returncode == 1  # the second gap is nobody's explanation
    (task,) = json.loads(out.stdout)["tasks"]
    assert [(e["start"], e["end"], e["cause"], e["event"], e["time"]) for e in task["explained"]] == [
        (iso(4), iso(10), "battery", "battery_low", iso(3))
    ]
    assert [(f["kind"], f["start"], f["end"]) for f in task["findings"]] == [("gap_unexplained", iso(12), iso(20))]
    text = run_cli("task", "coverage", arch).stdout.decode()
    assert f"  explained {iso(4)} .. {iso(10)}: battery (battery_low at {iso(3)}) 5%\n" in text

    # The report shows the event beside the gap it explained, and the later gap open.
    model = report(arch)
    gaps = sorted((f for f in model["findings"] if f["kind"] == "gap"), key=lambda f: f["start"])
    assert [(g["start"], g["end"]) for g in gaps] == [(iso(4), iso(10)), (iso(12), iso(20))]
    assert gaps[0]["resolved_by"] == [
        {"source": "device_event", "cause": "battery", "event": "battery_low", "time": iso(3), "start": iso(4),
         "end": iso(10)}
    ]  # fmt: skip
    assert gaps[1]["resolved_by"] is None
    (t1,) = model["completeness"]["tasks"]
    assert [(e["event"], e["time"], e["gap"]) for e in t1["explained"]] == [
        ("battery_low", iso(3), {"start": iso(4), "end": iso(10)})
    ]
    html = tmp_path / "report.html"
    assert run_cli("report", arch, "--format", "html", "--out", html, "--lang", "en").returncode == 0
    assert f"battery_low {iso(3)}" in html.read_text()


def test_an_event_more_than_the_lead_before_a_gap_explains_nothing(tmp_path: Path) -> None:
    # One clip recording 0-130 s with a storage_full logged at 5 s: the gap after it begins 125 s after the event.
    vol = recorder(tmp_path / "card", [(0, 130.0), (140, 2.0)], events=logged(5, "storage_full"))
    arch = new_archive(tmp_path / "archive")
    ingest(arch, vol)
    model = report(arch)
    (gap,) = [f for f in model["findings"] if f["kind"] == "gap"]
    assert (gap["start"], gap["end"], gap["resolved_by"]) == (iso(130), iso(140), None)
    assert (model["completeness"]["gaps_open"], model["completeness"]["gaps_resolved"]) == (1, 0)


def test_a_new_recording_under_an_old_name_is_a_new_fact(tmp_path: Path) -> None:
    # The card formatted and the numbering begun again: another recording (3 s, not 2) under the first one's name.
    first = recorder(tmp_path / "before", [(0, 2.0)])
    again = recorder(tmp_path / "after", [(0, 3.0)])
    assert [p.name for p in first.iterdir()] == [p.name for p in again.iterdir()]
    arch = new_archive(tmp_path / "archive")
    ingest(arch, first)
    ingest(arch, again)
    ingest(arch, first)  # the first card once more: nothing new
    model = report(arch)
    late = [f for f in model["findings"] if f["kind"] == "late_ingest"]
    assert [f["segment"] for f in late] == [1, 2]
    assert model["timeliness"]["late_ingest"] == 2


def test_a_clock_finding_shows_the_later_docking_that_corrects_it(tmp_path: Path) -> None:
    # The recorder's clock runs years ahead: its recordings say 2030 (clock_future at every ingest until then).
    ahead = T0.replace(year=2030)
    first = tmp_path / "first" / DEVICE
    make_clip(first / f"001234_{DEVICE}_{ahead.astimezone(BJ):%Y%m%d%H%M%S}_0001.MP4", ahead)
    arch = new_archive(tmp_path / "archive")
    ingest(arch, first)
    ingest(arch, first)
    model = report(arch)
    (future,) = [f for f in model["findings"] if f["kind"] == "clock_future"]
    assert (future["segment"], future["resolved_by"]) == (1, None)
    assert (model["clocks"]["clock_findings_open"], model["clocks"]["clock_findings_resolved"]) == (1, 0)

    # Docked later at a station that read the device clock against trusted time: 2030 on the device, 2024 true.
    later = tmp_path / "later" / DEVICE
    t = ahead + timedelta(seconds=60)
    make_clip(later / f"001234_{DEVICE}_{t.astimezone(BJ):%Y%m%d%H%M%S}_0002.MP4", t)
    (later / "DOCKCLOCK.TXT").write_text(
        f"device_time={(ahead + timedelta(seconds=600)).astimezone(BJ):%Y-%m-%d %H:%M:%S}\n"
        f"station_time={(T0 + timedelta(seconds=600)):%Y-%m-%dT%H:%M:%SZ}\n"
    )
    ingest(arch, later)
    (begin,) = [
        seq
        for seq, entry in catalog_rows(arch, "SELECT seq, entry FROM ledger WHERE type = 'ingest_begin'")
        if json.loads(entry)["ingest"] == 3
    ]
    model = report(arch)
    futures = [f for f in model["findings"] if f["kind"] == "clock_future"]
    offset = (ahead - T0).total_seconds()
    assert [(f["segment"], f["resolved_by"]) for f in futures] == [
        (s, [{"source": "clock_reading", "ingest": 3, "ledger_index": begin, "offset_seconds": offset}]) for s in (1, 2)
    ]
    assert (model["clocks"]["clock_findings_open"], model["clocks"]["clock_findings_resolved"]) == (0, 2)


def test_a_card_ingested_again_by_another_spelling_of_its_path_changes_no_count(tmp_path: Path) -> None:
    # Hostile review: the generic driver names files by the path it was given; a late_ingest found through
    # `card/CAM7` and again through `../x/card/CAM7` (or from another working folder) was two facts.
    cam = tmp_path / "card" / "CAM7"
    for n, at in enumerate((0, 10)):
        t = T0 + timedelta(seconds=at)
        make_clip(cam / f"clip{n}.mp4", t, 2.0)
    arch = new_archive(tmp_path / "archive")
    for where, path in ((tmp_path, "card/CAM7"), (tmp_path / "card", "CAM7"), (tmp_path, cam)):
        out = run_cli("ingest", path, "--archive", arch, "--driver", "generic", cwd=where)
        assert out.returncode == 1, out.stderr  # late_ingest: the footage is from 2024
        assert counts(report(arch)) | {"listed": None} == {
            "gaps": 1,
            "gaps_open": 1,
            "gaps_resolved": 0,
            "sequence_breaks": 0,
            "late_ingest": 2,
            "clock_unset": 0,
            "clock_future": 0,
            "name_time_mismatch": 0,
            "listed": None,
        }


def test_a_card_read_again_in_another_zone_keeps_its_stored_times_and_says_so(tmp_path: Path) -> None:
    # Hostile review: a later docking read in another zone (-o tz, or a [time_zones] policy entry) drew the
    # card's gaps an hour off, as three new open gaps beside the stored ones.
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    ingest(arch, vol)
    once = counts(report(arch))
    out = run_cli("ingest", vol, "--archive", arch, "-o", "tz=+09:00", "--json")
    assert out.returncode == 1, out.stderr
    (reread,) = [f for f in json.loads(out.stdout)["findings"] if f["kind"] == "time_reread"]
    assert reread["message"].startswith(
        "3 recording(s) already in the archive were read in zone +09:00 (option) at other times than they were "
        "stored with (e.g. "
    )
    assert ": -3600 s); the stored times are kept" in reread["message"]
    again = counts(report(arch))
    # The names now disagree with the containers by an hour: three true name_time_mismatch findings, nothing else.
    assert again == once | {
        "name_time_mismatch": 3,
        "listed": once["listed"] | {"name_time_mismatch": 3, "time_reread": 1},
    }
    segments = catalog_rows(arch, "SELECT COUNT(*) FROM segments WHERE kind = 'video'")
    assert segments == [(3,)]


def failed_then_stored(tmp_path: Path) -> tuple[Path, Path, str]:
    """The second clip's copy read back different on the first ingest (a storage fault: it is not stored), then
    a clean re-run of the same card that stores it: (archive, volume, that clip's name)."""
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    name = sorted(p.name for p in vol.iterdir())[1]
    out = run_cli_with_faults("ingest", vol, "--archive", arch, "--json", fault=f"read:1:corrupt:{name}")
    assert json.loads(out.stdout)["failed"] == [name], out.stdout
    ingest(arch, vol)
    return arch, vol, name


def test_a_file_that_failed_and_the_re_run_stored_is_counted_once_and_its_failure_resolved(tmp_path: Path) -> None:
    """A file one ingest could not store and the re-run stored: its late_ingest was counted twice (the failed
    run's row named no segment, so it was about the name, the re-run's about the recording), and the report kept
    calling it failed with nothing to say it was stored since (a review of the catalog's identities)."""
    arch, vol, name = failed_then_stored(tmp_path)
    model = report(arch)
    alone = new_archive(tmp_path / "alone")
    ingest(alone, vol)
    clean = counts(report(alone))
    assert counts(model) == clean | {"listed": clean["listed"] | {"ingest_failed": 1}}
    (segment,) = catalog_rows(
        arch, "SELECT id, ingest_id, ledger_seq, sha256 FROM segments WHERE original_name = ?", (name,)
    )
    (failed,) = [f for f in model["findings"] if f["kind"] == "ingest_failed"]
    # What was read from the card: its size, and the digest of the copy made of it (its read-back differed).
    assert failed["path"] == str(vol / name)
    assert failed["evidence"] == {"size": (vol / name).stat().st_size, "sha256": segment[3]}
    assert failed["resolved_by"] == [
        {
            "source": "ingest",
            "ingest": segment[1],
            "segment": segment[0],
            "ledger_index": segment[2],
            "matched_by": "digest",  # the failed run read it whole: its digest is the stored one's
        }
    ]
    # The late_ingest is the one of the run that stored it, with its times: the failed run records only that it
    # failed (a second review: its late_ingest, naming no recording, was kept as the first, with its times).
    (late,) = [f for f in model["findings"] if f["kind"] == "late_ingest" and f["path"] == str(vol / name)]
    assert (late["segment"], late["ledger_index"]) == (segment[0], segment[2])
    ingested = catalog_rows(arch, "SELECT ingested_ns FROM segments WHERE id = ?", (segment[0],))[0][0]
    assert abs(ns_from_rfc3339(late["end"]) - ingested) < 10**9, (late["end"], ingested)
    assert catalog_rows(arch, "SELECT kind FROM findings WHERE ingest_id = 1 AND path = ?", (str(vol / name),)) == [
        ("ingest_failed",)
    ]
    # The query API and the recording's own findings say the same.
    with open_archive(arch) as a:
        about = [f for f in a.findings(device=DEVICE) if f.path == str(vol / name)]
        assert sorted((f.kind, f.segment) for f in about) == [
            ("ingest_failed", segment[0]),
            ("late_ingest", segment[0]),
        ]
        recording = segment_of(a, segment[0])
        assert sorted(f.kind for f in segment_findings(a, recording)) == ["ingest_failed", "late_ingest"]
        assert needs_a_person(a).section("not_stored").count == 0  # mended: nobody need look at the card
    # Nor is it footage lost (Art. 25 (7)): the report's concerns leave a resolved failure out.
    assert "concern_not_stored" not in {c["concern"] for c in model["concerns"]}


def test_a_failure_is_not_resolved_by_another_recording_of_its_name(tmp_path: Path) -> None:
    """A file one ingest could not store, then the card formatted and a new recording given the same name (a
    camera numbering its files from 1 again): the new one, of another size, is not the lost one, and the failure
    stays unresolved."""
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    name = sorted(p.name for p in vol.iterdir())[1]
    out = run_cli_with_faults("ingest", vol, "--archive", arch, "--json", fault=f"read:1:corrupt:{name}")
    assert json.loads(out.stdout)["failed"] == [name], out.stdout
    (vol / name).unlink()
    make_clip(vol / name, T0 + timedelta(seconds=10), 3.0)  # another recording, of that name and another size
    ingest(arch, vol)
    assert catalog_rows(arch, "SELECT COUNT(*) FROM segments WHERE original_name = ?", (name,)) == [(1,)]
    model = report(arch)
    (failed,) = [f for f in model["findings"] if f["kind"] == "ingest_failed"]
    assert (failed["resolved_by"], failed["segment"]) == (None, None)
    with open_archive(arch) as a:
        (item,) = needs_a_person(a).section("not_stored").items
        assert (item.kind, item.device, item.segment, item.text) == ("ingest_failed", DEVICE, None, failed["message"])
    # Footage lost for not being stored (Art. 25 (7)), a concern of the report (it was in none: a review).
    (lost,) = [c for c in model["concerns"] if c["concern"] == "concern_not_stored"]
    assert (lost["count"], lost["kinds"], lost["segments"]) == (1, ["ingest_failed"], [])


def test_a_failure_is_not_resolved_by_other_bytes_of_its_name_and_size(tmp_path: Path) -> None:
    """The card's file changed between the failed run and the re-run, keeping its name and size (a second
    review): what the re-run stores is not what failed, whose digest the failure gives, so it stays open."""
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    name = sorted(p.name for p in vol.iterdir())[1]
    out = run_cli_with_faults("ingest", vol, "--archive", arch, "--json", fault=f"read:1:corrupt:{name}")
    assert json.loads(out.stdout)["failed"] == [name], out.stdout
    data = bytearray((vol / name).read_bytes())
    data[-1] ^= 0xFF  # the last byte of the moov box's last atom: the file still probes
    (vol / name).write_bytes(bytes(data))
    ingest(arch, vol)
    (failed,) = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed"]
    assert (failed["resolved_by"], failed["segment"]) == (None, None)
    with open_archive(arch) as a:
        assert needs_a_person(a).section("not_stored").count == 1


def test_a_later_recording_of_an_old_name_that_fails_is_not_hidden_by_the_old_one(tmp_path: Path) -> None:
    """A file stored (after one failure), then a new recording given its name that fails too (a second review):
    the new failure was taken for the old file's, already resolved, and no one was told that evidence was not
    stored. The old failure stays resolved, the new one open."""
    arch, vol, name = failed_then_stored(tmp_path)
    (vol / name).unlink()
    make_clip(vol / name, T0 + timedelta(seconds=10), 3.0)  # another recording, of that name and another size
    out = run_cli_with_faults("ingest", vol, "--archive", arch, "--json", fault=f"read:1:corrupt:{name}")
    assert json.loads(out.stdout)["failed"] == [name], out.stdout
    failures = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed"]
    assert [(f["evidence"]["size"], bool(f["resolved_by"])) for f in failures] == [
        (catalog_rows(arch, "SELECT size FROM segments WHERE original_name = ?", (name,))[0][0], True),
        ((vol / name).stat().st_size, False),
    ]
    with open_archive(arch) as a:
        (item,) = needs_a_person(a).section("not_stored").items
        assert item.text == failures[1]["message"]


def test_a_failure_of_a_file_never_read_says_it_was_matched_by_name_and_size(tmp_path: Path) -> None:
    """A file the failed run could not read at all gives no digest: the recording a re-run stores under its name
    and size is taken for it, and the report says that is all the match rests on (a second hostile review: a
    camera writing files of one size could have another recording taken for the lost one, unsaid)."""
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    name = sorted(p.name for p in vol.iterdir())[1]
    (vol / name).chmod(0)
    try:
        out = run_cli("ingest", vol, "--archive", arch, "--json", obey_permissions=True)
    finally:
        (vol / name).chmod(0o644)
    assert json.loads(out.stdout)["failed"] == [name], out.stdout
    ingest(arch, vol)
    (failed,) = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed"]
    assert failed["evidence"] == {"size": (vol / name).stat().st_size}
    assert [r["matched_by"] for r in failed["resolved_by"]] == ["name and size"]


def test_a_file_an_interrupted_ingest_read_and_the_card_then_lost_is_resolved_by_those_bytes_only(
    tmp_path: Path,
) -> None:
    """An ingest killed after it noted a file's copy and before it stored it; the card is then wiped and the copies
    it left in the spool lost too (tmp/ emptied by hand: a copy there whose bytes are those noted is stored since
    2026-12-01, test_hostile_volume), so the re-run cannot recover it. That failure gives what the killed ingest read,
    its size and digest: a new recording later given its name does not resolve it (a hostile review: the failure
    gave no evidence, so the name alone resolved it, said to be "matched by name and size")."""
    vol = recorder(tmp_path / "card", CLIPS)
    arch = new_archive(tmp_path / "archive")
    name = sorted(p.name for p in vol.iterdir())[0]
    size = (vol / name).stat().st_size
    read = hashlib.sha256((vol / name).read_bytes()).hexdigest()
    killed = run_cli(
        "ingest", vol, "--archive", arch, "--driver", "gat947", env={"CUSTODES_CRASHPOINT": "after_intent:1"}
    )
    assert killed.returncode == -9, killed.stderr
    kept = tmp_path / "kept"
    shutil.move(vol, kept)
    vol.mkdir()  # the card, wiped (its driver named: an empty card says nothing of its maker)
    for copy in (arch / "tmp").iterdir():
        copy.unlink()
    rerun = run_cli("ingest", vol, "--archive", arch, "--driver", "gat947", "--json")
    assert rerun.returncode == 1, rerun.stderr
    again = json.loads(rerun.stdout)
    assert name in again["failed"]
    (failed,) = [f for f in again["findings"] if f["kind"] == "ingest_failed" and f["path"] == str(vol / name)]
    assert failed["evidence"] == {"size": size, "sha256": read}
    assert "interrupted before it recorded it" in failed["message"]
    make_clip(vol / name, T0 + timedelta(seconds=10), 3.0)  # another recording under its name
    run_cli("ingest", vol, "--archive", arch, "--driver", "gat947")
    (lost,) = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed" and f["path"] == str(vol / name)]
    assert (lost["resolved_by"], lost["segment"]) == (None, None)
    with open_archive(arch) as a:
        assert lost["message"] in [item.text for item in needs_a_person(a).section("not_stored").items]
    # The card found again: what it held is stored, and resolves the failure by its digest.
    (vol / name).unlink()
    shutil.copy(kept / name, vol / name)
    run_cli("ingest", vol, "--archive", arch, "--driver", "gat947")
    (mended,) = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed" and f["path"] == str(vol / name)]
    assert [r["matched_by"] for r in mended["resolved_by"]] == ["digest"]


def failure_without_evidence(arch: Path, out: Path) -> dict[str, Any]:
    """The archive's one ingest_failed as the report gives it once its row's evidence is edited away (as ingests
    recorded failures before they gave the size and digest read)."""
    with catalog_edit(arch) as c:
        c.execute("UPDATE findings SET detail = json_remove(detail, '$.evidence') WHERE kind = 'ingest_failed'")
    run = run_cli("report", arch, "--out", out, "--lang", "en")
    assert run.returncode == 1, run.stderr  # the edit is a finding of the report's integrity section
    (failed,) = [f for f in json.loads(out.read_text())["findings"] if f["kind"] == "ingest_failed"]
    return failed


def test_a_failure_that_gives_neither_size_nor_digest_is_resolved_by_nothing(tmp_path: Path) -> None:
    """An ingest_failed whose evidence says nothing of the file (as ingests recorded them before failures gave
    the size and digest read; here its row edited so, as in such an archive): a recording of its name is not
    taken for it, which the name alone cannot show."""
    arch, vol, name = failed_then_stored(tmp_path)
    failed = failure_without_evidence(arch, tmp_path / "r.json")
    assert (failed.get("evidence"), failed["resolved_by"], failed["segment"]) == (None, None, None)


def test_a_failure_is_not_resolved_by_an_earlier_recording_of_its_name_and_size(tmp_path: Path) -> None:
    """A card reused after a format: a new recording under an old name, of the old one's size, fails to be
    stored. The old recording stored before is not it (a hostile review: it resolved the failure, 'matched by name
    and size', and the dashboard no longer listed footage that was never stored); only the same digest would be.
    Nor does a failure whose evidence gives nothing (as older archives hold) fall back on the name."""
    arch = new_archive(tmp_path / "archive")
    vol = tmp_path / "card"
    vol.mkdir()
    (vol / "FILE0001.MP4").write_bytes(bytes(range(256)) * 20)
    args = ("ingest", vol, "--archive", arch, "--driver", "generic", "-o", "device_id=BWC-1", "--json")
    assert run_cli(*args).returncode == 1  # an unknown_file finding
    (vol / "FILE0001.MP4").write_bytes(bytes(reversed(range(256))) * 20)  # new footage, same name and size
    failed = run_cli_with_faults(*args, fault="write:1:EIO:FILE0001.MP4")
    assert json.loads(failed.stdout)["failed"] == ["FILE0001.MP4"], failed.stdout
    (failure,) = [f for f in report(arch)["findings"] if f["kind"] == "ingest_failed"]
    assert failure["evidence"] == {"size": 5120}
    assert (failure["resolved_by"], failure["segment"]) == (None, None)
    with open_archive(arch) as a:
        assert needs_a_person(a).section("not_stored").count == 1
    failure = failure_without_evidence(arch, tmp_path / "r.json")
    assert (failure.get("evidence"), failure["resolved_by"], failure["segment"]) == (None, None, None)
