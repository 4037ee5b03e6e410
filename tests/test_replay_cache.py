"""verify --incremental: the verifier's own kept replay of the ledger (custodes.catalog.replay_cache).

Only the entries appended since are replayed; the kept replay is used only on a ledger whose own checks found
nothing, only up to checkpoints whose signed roots its entries give, only from a folder of the verifier's own,
and a kept replay that is wrong can only cost a whole replay, never hide an edit (the tamper matrix run both ways
is in test_catalog_tamper.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from footage import T0, make_clip
from helpers import catalog_edit, run_cli, run_cli_with_faults, stop_service


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The verifier's cache folder for this test (XDG_CACHE_HOME), and the kept replays' folder in it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "custodes" / "replay"


def verified(arch: Path, *extra: str, code: int = 0, command: str = "verify") -> dict:
    out = run_cli(*command.split(), arch, "--json", "--incremental", *extra)
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.returncode == code, (out.stdout.decode()[-3000:], out.stderr.decode())
    return json.loads(out.stdout)


def ledger_size(arch: Path) -> int:
    with sqlite3.connect(arch / "catalog.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]


def more_footage(tmp_path: Path, name: str = "BWC0002") -> Path:
    vol = tmp_path / name
    make_clip(vol / "DCIM" / "more.mp4", T0)
    return vol


def test_only_the_entries_appended_since_are_replayed(cli_archive: Path, cache: Path, tmp_path: Path) -> None:
    first = verified(cli_archive)
    size = ledger_size(cli_archive)
    assert first["replay"]["held"] == 0 and first["replay"]["replayed"] == size
    kept = Path(first["replay"]["kept"])
    assert kept.parent == cache and kept.is_file()
    assert kept.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    again = verified(cli_archive)
    assert (again["replay"]["held"], again["replay"]["replayed"]) == (size, 0)
    assert again["findings"] == first["findings"]

    assert run_cli("ingest", more_footage(tmp_path), "--archive", cli_archive).returncode in (0, 1)
    grown = ledger_size(cli_archive)
    after = verified(cli_archive)
    assert (after["replay"]["held"], after["replay"]["replayed"]) == (size, grown - size)
    whole = json.loads(run_cli("verify", cli_archive, "--json").stdout)
    assert whole["replay"] is None and after["findings"] == whole["findings"]

    # The text output says how the ledger was replayed; ledger verify and the report use the same kept replay.
    text = run_cli("verify", cli_archive, "--incremental").stdout.decode()
    assert f"ledger replayed from your kept replay ({grown:,} entries held, 0 replayed now)" in text
    assert verified(cli_archive, command="ledger verify")["replay"]["held"] == grown
    out = run_cli("report", cli_archive, "--format", "json", "--out", tmp_path / "r.json", "--incremental")
    assert out.returncode == 0, out.stderr.decode()
    integrity = json.loads((tmp_path / "r.json").read_text())["integrity"]
    assert integrity["replay"] == {"kept": str(kept), "held": grown, "replayed": 0}


def test_an_edit_made_after_the_replay_was_kept_is_found(cli_archive: Path, cache: Path) -> None:
    verified(cli_archive)
    with catalog_edit(cli_archive) as db:
        db.execute("UPDATE segments SET start_ns = 1 WHERE id = 2")
    found = verified(cli_archive, code=1)
    assert found["replay"]["held"] > 0 and found["replay"]["named_by_whole_replay"] is True
    assert "removed" not in found["replay"]  # the whole replay found the edit too: the kept one was right
    (edit,) = [f for f in found["findings"] if f.get("table") == "segments"]
    assert (edit["kind"], edit["row"]) == ("ledger_mismatch", [2])


def test_a_wrong_kept_replay_costs_a_whole_replay_never_a_finding_or_a_miss(cli_archive: Path, cache: Path) -> None:
    """Damaged or edited by its owner, the kept replay can only make rows look different: every difference is
    checked by a whole replay, which says the archive is as it was, and the kept replay is made again."""
    before = verified(cli_archive)
    kept = Path(before["replay"]["kept"])
    with sqlite3.connect(kept) as db:
        db.execute("DELETE FROM segments WHERE id = 1")
    after = verified(cli_archive)
    assert after["findings"] == before["findings"]
    assert after["replay"]["named_by_whole_replay"] is True and after["replay"]["removed"] is True
    assert not kept.exists()  # thrown away: it named a difference a whole replay did not
    assert verified(cli_archive)["replay"]["held"] == 0


@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_kept_replay_others_could_write_is_not_used(cli_archive: Path, cache: Path, what: str) -> None:
    kept = Path(verified(cli_archive)["replay"]["kept"])
    (kept if what == "file" else cache).chmod(0o666 if what == "file" else 0o777)
    found = verified(cli_archive)
    assert "whole" in found["replay"] and "kept" not in found["replay"], found["replay"]
    assert "others" in found["replay"]["whole"] or "alone" in found["replay"]["whole"]


def test_a_ledger_edited_under_the_kept_replay_is_replayed_whole(cli_archive: Path, cache: Path) -> None:
    """An entry the kept replay holds, edited (its leaf made to match): the signed roots say so, and a kept
    replay is never used on a ledger whose own checks found something."""
    verified(cli_archive)
    with catalog_edit(cli_archive) as db:
        (entry,) = db.execute("SELECT entry FROM ledger WHERE seq = 3").fetchone()
        forged = bytes(entry).replace(b'"time":', b'"time": ', 1)
        assert forged != bytes(entry)
        db.execute("UPDATE ledger SET entry = ?, leaf = ? WHERE seq = 3", (forged, _leaf(forged)))
    found = verified(cli_archive, code=1)
    assert "checkpoint_mismatch" in {f["kind"] for f in found["findings"]}
    assert found["replay"] == {"whole": "the ledger's own checks found something: a kept replay is not used"}


def _leaf(entry: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(b"\x00" + entry).digest()


def test_an_archive_put_back_from_an_older_copy_is_found_until_the_verifier_accepts_it(
    cli_archive: Path, cache: Path, tmp_path: Path
) -> None:
    """The same archive at the same place, its ledger short of a checkpoint the verifier's kept replay holds (rolled
    back, or restored from a backup): plain verify cannot tell; with the kept replay it is a checkpoint_mismatch
    (a hostile review: it was called intact, and the kept replay thrown away), every run, until the verifier
    removes the kept replay to accept the ledger as it is."""
    older = shutil.copytree(cli_archive, tmp_path / "older")
    assert run_cli("ingest", more_footage(tmp_path), "--archive", cli_archive).returncode in (0, 1)
    kept = Path(verified(cli_archive)["replay"]["kept"])
    shutil.rmtree(cli_archive)
    shutil.copytree(older, cli_archive)
    assert json.loads(run_cli("verify", cli_archive, "--json").stdout)["ok"] is True  # plain verify cannot tell
    almost = time.time() - 29 * 86_400
    for _ in range(2):
        os.utime(kept, (almost, almost))  # a run that says so uses it: not pruned while runs keep saying it
        found = verified(cli_archive, code=1)
        (alarm,) = found["findings"]
        assert alarm["kind"] == "checkpoint_mismatch" and "rolled back" in alarm["message"], alarm
        assert f"remove {kept}" in alarm["message"] and kept.exists()
        assert "does not extend your kept replay" in found["replay"]["whole"]
        assert time.time() - kept.stat().st_mtime < 3600
    kept.unlink()
    remade = verified(cli_archive)["replay"]
    assert (remade["held"], remade["replayed"]) == (0, ledger_size(cli_archive))


def test_entries_of_an_ingest_in_flight_are_kept_and_held_to_what_they_were(
    cli_archive: Path, cache: Path, tmp_path: Path
) -> None:
    """An ingest killed before its checkpoint leaves entries no checkpoint signs: the kept replay holds them
    with their leaf hashes; signed later (the ingest run again), they are not replayed twice; edited before
    that, the verifier saw them as they were: a ledger_mismatch naming the entry, every run until the verifier
    removes its kept replay (a hostile review: it was only replayed whole, and the forged entry, signed by the
    next checkpoint, called intact)."""
    vol = more_footage(tmp_path)
    crashed = run_cli_with_faults("ingest", vol, "--archive", cli_archive, crashpoint="before_checkpoint")
    assert crashed.returncode == -9
    size = ledger_size(cli_archive)
    pending = verified(cli_archive)
    assert "pending" in {f["kind"] for f in pending["findings"]}
    assert (pending["replay"]["held"], pending["replay"]["replayed"]) == (0, size)
    assert verified(cli_archive)["replay"]["replayed"] == 0

    edited = shutil.copytree(cli_archive, tmp_path / "edited")  # (its kept replay is another: another place)
    assert run_cli("ingest", vol, "--archive", cli_archive).returncode in (0, 1)  # finishes it, signs it
    finished = verified(cli_archive)
    assert finished["replay"]["held"] == size and finished["replay"]["replayed"] == ledger_size(cli_archive) - size
    assert "pending" not in {f["kind"] for f in finished["findings"]}

    # The same in flight, the unsigned entry edited between two runs (its leaf made to match: nothing signs it).
    verified(edited)
    with catalog_edit(edited) as db:
        (seq, entry) = db.execute("SELECT seq, entry FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        forged = bytes(entry).replace(b'"time":', b'"time": ', 1)
        db.execute("UPDATE ledger SET entry = ?, leaf = ? WHERE seq = ?", (forged, _leaf(forged), seq))
    for _ in range(2):
        found = verified(edited, code=1)
        (alarm,) = [f for f in found["findings"] if f["kind"] == "ledger_mismatch"]
        assert alarm["ledger_index"] == seq and "is not the entry your kept replay replayed" in alarm["message"]
        assert "ledger_mismatch finding" in found["replay"]["whole"]
    whole = json.loads(run_cli("verify", edited, "--json").stdout)
    assert [f for f in found["findings"] if f != alarm] == whole["findings"]  # and the whole replay's, as without
    assert whole["ok"] is True  # (nothing signs the entry: only the verifier that saw it can tell)


def test_the_cache_folder_is_the_verifier_s_own(cli_archive: Path, tmp_path: Path) -> None:
    """XDG_CACHE_HOME, else ~/.cache: never the archive's folder; a link there is not followed."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": ""}
    out = run_cli("verify", cli_archive, "--json", "--incremental", env=env)
    kept = Path(json.loads(out.stdout)["replay"]["kept"])
    assert kept.parent == home / ".cache" / "custodes" / "replay"
    assert not any(p.name.endswith(".sqlite") and "replay" in str(p) for p in cli_archive.rglob("*"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shutil.rmtree(home / ".cache" / "custodes" / "replay")
    os.symlink(elsewhere, home / ".cache" / "custodes" / "replay")
    found = json.loads(run_cli("verify", cli_archive, "--json", "--incremental", env=env).stdout)
    assert "not a folder (a link?)" in found["replay"]["whole"]
    assert list(elsewhere.iterdir()) == []


def test_two_runs_at_once_never_apply_the_same_entries_twice(cli_archive: Path, cache: Path, tmp_path: Path) -> None:
    """Two runs opened the kept replay, one brought it up, and the other applied the same entries again from what
    it had read before (a hostile review: duplicate access-log rows then matched a forged duplicate for good).
    The record is read under the write lock: the second run finds the entries applied and applies none."""
    from custodes.archive import open_archive
    from custodes.catalog import replay_cache

    verified(cli_archive)
    assert run_cli("ingest", more_footage(tmp_path), "--archive", cli_archive).returncode in (0, 1)
    with open_archive(cli_archive) as a:
        signed = {size: root for size, root, _ in a.catalog.checkpoints.all()}
        path = replay_cache._file_for(a.catalog, a.policy.archive_id)  # noqa: SLF001
        (one, _), (two, _) = replay_cache._open(path), replay_cache._open(path)  # noqa: SLF001 - both before either
        try:
            by_one = replay_cache._brought_up(a.catalog, one, signed)  # noqa: SLF001
            by_two = replay_cache._brought_up(a.catalog, two, signed)  # noqa: SLF001
        finally:
            one.close()
            two.close()
    assert by_one is not None and by_two is not None
    assert by_one[2] - by_one[1] > 0 and by_two[1:] == (by_one[2], by_one[2])  # the second applied nothing
    again = verified(cli_archive)
    assert again["findings"] == [] and again["replay"]["replayed"] == 0


def test_a_kept_replay_another_run_holds_too_long_means_a_whole_replay(cli_archive: Path, cache: Path) -> None:
    """Waiting on a run that held the kept replay ended the verify with "the catalog is busy" (a hostile review):
    after BUSY_MS it replays whole, and says why."""
    kept = Path(verified(cli_archive)["replay"]["kept"])
    with sqlite3.connect(kept, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        found = verified(cli_archive)
        other.execute("ROLLBACK")
    assert "another run held the kept replay" in found["replay"]["whole"], found["replay"]
    assert verified(cli_archive)["replay"]["held"] > 0


def test_a_damaged_kept_replay_is_made_again_and_said_so(cli_archive: Path, cache: Path) -> None:
    kept = Path(verified(cli_archive)["replay"]["kept"])
    with open(kept, "r+b") as f:
        f.write(b"not a database at all" * 10)
    remade = verified(cli_archive)["replay"]
    assert remade["held"] == 0 and "could not be read" in remade["remade"]  # made again, not given up on for good
    assert verified(cli_archive)["replay"]["replayed"] == 0
    text = run_cli("verify", cli_archive, "--incremental").stdout.decode()
    assert "replayed now)" in text and "made again" not in text


def test_kept_replays_unused_for_a_month_are_removed(cli_archive: Path, cache: Path) -> None:
    kept = Path(verified(cli_archive)["replay"]["kept"])
    old = cache / ("0" * 32 + ".sqlite")
    old.write_bytes(b"")
    month_ago = time.time() - 31 * 86_400
    os.utime(old, (month_ago, month_ago))
    os.utime(kept, (month_ago + 86_400 * 2, month_ago + 86_400 * 2))  # 29 days: kept
    verified(cli_archive)
    assert not old.exists() and kept.exists()
    assert time.time() - kept.stat().st_mtime < 3600  # used: its time is now


def test_a_relative_cache_home_is_ignored(cli_archive: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli("verify", cli_archive, "--json", "--incremental", env={"HOME": str(home), "XDG_CACHE_HOME": "rel"},
                  cwd=tmp_path)  # fmt: skip
    kept = Path(json.loads(out.stdout)["replay"]["kept"])
    assert kept.is_absolute() and kept.parent == home / ".cache" / "custodes" / "replay"
    assert not (tmp_path / "rel").exists()


def test_a_link_put_in_the_archive_s_place_is_still_its_place(cli_archive: Path, cache: Path, tmp_path: Path) -> None:
    """The kept replay is keyed by the place as the verifier names it: the archive moved aside and a link to an
    older copy put in its place was a new place, with a new kept replay (a hostile review: the rollback unseen)."""
    older = shutil.copytree(cli_archive, tmp_path / "older")
    assert run_cli("ingest", more_footage(tmp_path), "--archive", cli_archive).returncode in (0, 1)
    verified(cli_archive)
    cli_archive.rename(tmp_path / "newer")
    os.symlink(older, cli_archive)
    found = verified(cli_archive, code=1)
    assert [f["kind"] for f in found["findings"]] == ["checkpoint_mismatch"]


def test_a_kept_replay_with_a_table_gone_is_removed_and_the_ledger_replayed_whole(
    cli_archive: Path, cache: Path
) -> None:
    """A table of the kept replay dropped: verify, ledger verify and report ended in a traceback, every run until
    the file was removed by hand (a hostile review). Now the run replays whole and says why; the next makes it
    again."""
    for command in ("verify", "ledger verify"):
        kept = Path(verified(cli_archive, command=command)["replay"]["kept"])
        with sqlite3.connect(kept) as db:
            db.execute("DROP TABLE findings")
        found = verified(cli_archive, command=command)  # exit 0, no traceback
        assert "your kept replay could not be used" in found["replay"]["whole"] and not kept.exists()
        assert verified(cli_archive, command=command)["replay"]["held"] == 0  # made again
    report = run_cli("report", cli_archive, "--incremental", "--out", cache.parent / "r.json", "--json")
    assert report.returncode == 0 and b"Traceback" not in report.stderr


def test_a_link_in_place_of_the_kept_replay_is_removed_never_followed(
    cli_archive: Path, cache: Path, tmp_path: Path
) -> None:
    """A link (dangling) at the kept replay's name was followed: SQLite made the file it named, and the error
    then blamed the archive's catalog (a hostile review)."""
    kept = Path(verified(cli_archive)["replay"]["kept"])
    kept.unlink()
    planted = tmp_path / "planted.sqlite"
    os.symlink(planted, kept)
    found = verified(cli_archive)
    assert found["replay"]["remade"] == "was a link (removed, not followed)" and found["replay"]["held"] == 0
    assert not planted.exists() and kept.is_file() and not kept.is_symlink()
    # Nor at its journal's name: SQLite rolled a "hot journal" back through it, and the run ended with exit 2
    # blaming the archive's catalog.
    victim = tmp_path / "victim.txt"
    victim.write_text("not a journal")
    journal = Path(f"{kept}-journal")
    os.symlink(victim, journal)
    found = verified(cli_archive)
    assert "kept" in found["replay"] and not journal.is_symlink() and victim.read_text() == "not a journal"


@pytest.mark.parametrize("inside", ["objects", "."])
def test_a_cache_folder_inside_the_archive_is_never_used(
    cli_archive: Path, monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    """XDG_CACHE_HOME inside the archive: verify wrote its kept replay into the store and then named it an
    unexpected file there (a hostile review)."""
    home = cli_archive / inside
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    found = verified(cli_archive)
    assert "is inside the archive" in found["replay"]["whole"] and found["findings"] == []
    assert not (home / "custodes").exists()


def test_a_cache_home_others_could_write_is_not_used(
    cli_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another account could rename the verifier's own folder out of a cache home it can write, and with it the
    rollback the kept replay was reporting (a hostile review). A sticky one (as /tmp) lets only the owner."""
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    found = verified(cli_archive)
    assert "another account could move your kept replays away" in found["replay"]["whole"]
    home.chmod(0o1777)
    assert "kept" in verified(cli_archive)["replay"]


def test_through_the_service_no_replay_is_kept(cli_archive: Path, cache: Path) -> None:
    """Through the archive service the replay was kept in the service account's cache: the account whose edits
    it is there to catch (a hostile review). It is replayed whole, and the run says why."""
    try:
        out = run_cli("verify", cli_archive, "--json", "--incremental", user="alice")
        assert out.returncode == 0, out.stderr.decode()
        found = json.loads(out.stdout)
        assert "through the archive service" in found["replay"]["whole"]
    finally:
        stop_service(cli_archive)
    assert not cache.exists()


def test_the_kept_replay_s_place_is_said_on_one_line(
    cli_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "new\nline"))
    out = run_cli("verify", cli_archive, "--incremental")
    assert out.returncode == 0, out.stderr
    said = [x for x in out.stdout.decode().splitlines() if x.startswith("ledger replayed from your kept replay")]
    assert len(said) == 1 and "new\\nline/custodes/replay/" in said[0], out.stdout


def test_a_rollback_is_named_beside_an_unprotected_folder(cli_archive: Path, cache: Path, tmp_path: Path) -> None:
    """A folder's mode widened was a finding the ledger's checks counted, so --incremental's kept replay was not
    used and a rollback alongside it went unnamed (a hostile review)."""
    older = shutil.copytree(cli_archive, tmp_path / "older")
    assert run_cli("ingest", more_footage(tmp_path), "--archive", cli_archive).returncode in (0, 1)
    verified(cli_archive)
    shutil.rmtree(cli_archive)
    shutil.copytree(older, cli_archive)
    (cli_archive / "ledger").chmod(0o775)
    found = verified(cli_archive, code=1)
    assert sorted(f["kind"] for f in found["findings"]) == ["checkpoint_mismatch", "unprotected"]
