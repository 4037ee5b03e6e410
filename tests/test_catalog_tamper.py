"""The catalog is a view of the ledger (issue 13, part 2): the catalog tamper matrix beside the object one
(helpers.TAMPERS). Each edit an attacker with write access to catalog.sqlite could make is found by
`custodes verify --json` with the right kind, naming the table, the row and the ledger entry; a clean
archive has no finding; `custodes ledger rebuild-catalog` rebuilds a catalog equal to the live one on
every shape of archive the suite makes, and with --replace restores a damaged one."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from custodes.archive import open_archive
from custodes.catalog import Catalog, replay
from footage import T0, make_clip
from helpers import (
    AS_SCHEMA_5,
    as_,
    build_cli_archive,
    catalog_edit,
    catalog_rows,
    plant,
    request,
    run_cli,
    set_policy,
    stop_service,
)

BJ = timezone(timedelta(hours=8))
DEVICE = "BWC0001"


def clip_name(seconds: int, seq: int, important: bool = False) -> str:
    """A name as the body camera writes it: officer 001234, device, local start time, sequence, IMP mark."""
    t = (T0 + timedelta(seconds=seconds)).astimezone(BJ)
    return f"001234_{DEVICE}_{t:%Y%m%d%H%M%S}_{seq:04d}{'IMP' if important else ''}.MP4"


def proposal_id(arch: Path) -> int:
    """The latest policy proposal's id (its ledger index)."""
    return catalog_rows(arch, "SELECT MAX(ledger_seq) FROM access_log WHERE action = 'propose_policy'")[0][0]


@pytest.fixture(scope="module")
def acted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive after every kind of custody act, through the service as the people who do them: three
    recordings (one marked important, all with their officer) with a dock clock reading; a task; a view request
    approved and used, a refused open, a denied request and one left pending; a hold, a long-term mark, a case
    link, a classification, a policy proposal approved and one refused and denied, and a gap explanation."""
    root = tmp_path_factory.mktemp("acted")
    arch = build_cli_archive(root / "archive")
    vol = root / DEVICE
    for seconds, seq, important in [(0, 1, False), (2, 2, False), (10, 3, True)]:
        make_clip(vol / clip_name(seconds, seq, important), T0 + timedelta(seconds=seconds))
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:00:10\nstation_time=2024-03-01T10:00:00Z\n")
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1  # late ingest, a gap: findings
    tasks = root / "tasks.json"
    start, end = (T0 - timedelta(seconds=10)).isoformat(), (T0 + timedelta(seconds=6)).isoformat()
    tasks.write_text(json.dumps([{"id": "T1", "type": "stop", "start": start, "end": end, "devices": [DEVICE]}]))
    assert as_("alice", "task", "import", arch, tasks).returncode == 0
    rid = request(arch, "carol", 1)
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "1").returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "2").returncode == 1  # refused and logged
    denied = request(arch, "carol", 3)
    assert as_("bob", "access", "deny", arch, denied, "--reason", "not needed").returncode == 0
    request(arch, "carol", 2)  # left pending
    assert as_("alice", "retention", "hold", arch, "--segment", "2", "--reason", "complaint").returncode == 0
    assert as_("alice", "retention", "long-term", arch, "--segment", "3", "--reason", "complaint").returncode == 0
    assert as_("alice", "retention", "case", arch, "--case", "C-1", "--segment", "1", "--segment", "2").returncode == 0
    assert as_("alice", "access", "classify", arch, "--segment", "1", "--level", "2").returncode == 0
    longer = (arch / "custodes.toml").read_text().replace("minimum_days = 730", "minimum_days = 3650")
    assert set_policy(arch, longer, user="bob", approver="dave").returncode == 0  # proposed, then approved
    assert set_policy(arch, longer + "\n", user="bob").returncode == 0  # proposed, then refused and denied:
    assert as_("bob", "policy", "approve", arch, proposal_id(arch)).returncode == 1
    assert as_("alice", "policy", "deny", arch, proposal_id(arch), "--reason", "no change").returncode == 0
    gap = ["--from", (T0 + timedelta(seconds=4)).isoformat(), "--to", (T0 + timedelta(seconds=10)).isoformat()]
    out = as_("alice", "gap", "explain", arch, "--device", DEVICE, *gap, "--cause", "location_change")
    assert out.returncode == 0, out.stderr
    stop_service(arch)
    return arch


@pytest.fixture
def copy(acted: Path, tmp_path: Path) -> Path:
    """A copy of ``acted`` of this test's own (root's, so the CLI works on it embedded, as its owner)."""
    return Path(shutil.copytree(acted, tmp_path / "archive", ignore=shutil.ignore_patterns("*.sock")))


def verify_findings(arch: Path, code: int, *args: str) -> list[dict]:
    out = run_cli("verify", arch, "--json", *args)
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.returncode == code, (out.stdout.decode(), out.stderr.decode())
    return json.loads(out.stdout)["findings"]


def rebuilt(arch: Path, *args: str, user: str | None = None) -> tuple[int, dict]:
    out = run_cli("ledger", "rebuild-catalog", arch, "--json", *args, user=user)
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    return out.returncode, json.loads(out.stdout)


def sql(*statements: str) -> Callable[[Path], None]:
    def tamper(arch: Path) -> None:
        with catalog_edit(arch, foreign_keys=False) as c:  # the attacker edits the database file directly
            for s in statements:
                c.execute(s)

    return tamper


def _segment_and_object_deleted(arch: Path) -> None:
    (sha,) = catalog_rows(arch, "SELECT sha256 FROM segments WHERE id = 2")[0]
    (arch / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).unlink()
    sql("DELETE FROM segments WHERE id = 2", f"DELETE FROM objects WHERE sha256 = '{sha}'")(arch)


HOUR = 3_600_000_000_000
#: name: (the edit, the (kind, table) verify must report). The object matrix is helpers.TAMPERS.
CATALOG_TAMPERS: dict[str, tuple[Callable[[Path], None], set[tuple[str, str]]]] = {
    "request_status_approved": (
        sql("UPDATE access_requests SET status = 'approved', decided_by = 'bob' WHERE status = 'pending'"),
        {("ledger_mismatch", "access_requests")},
    ),
    "access_log_rows_deleted": (sql("DELETE FROM access_log WHERE ok = 0"), {("missing", "access_log")}),
    "access_log_dropped": (sql("DROP TABLE access_log"), {("missing", "access_log")}),
    "segment_times_moved": (
        sql(f"UPDATE segments SET start_ns = start_ns + {HOUR}, end_ns = end_ns + {HOUR} WHERE id = 1"),
        {("ledger_mismatch", "segments")},
    ),
    "corrected_time_moved": (
        sql(f"UPDATE segments SET corrected_start_ns = corrected_start_ns - {HOUR} WHERE id = 2"),
        {("ledger_mismatch", "segments")},
    ),
    "important_mark_cleared": (sql("UPDATE segments SET important = 0"), {("ledger_mismatch", "segments")}),
    "officer_cleared": (sql("UPDATE segments SET officer_id = NULL"), {("ledger_mismatch", "segments")}),
    "classification_lowered": (sql("UPDATE segments SET classification = 0"), {("ledger_mismatch", "segments")}),
    "hold_deleted": (sql("DELETE FROM holds"), {("missing", "holds")}),
    "hold_released_by_hand": (
        sql("UPDATE holds SET released_ns = 1, released_by = 'bob'"),
        {("ledger_mismatch", "holds")},
    ),
    "hold_planted": (
        sql("INSERT INTO holds (segment_id, reason, by, placed_ns) VALUES (1, 'planted', 'alice', 1)"),
        {("unexpected", "holds")},
    ),
    "case_link_deleted": (sql("DELETE FROM case_segments WHERE segment_id = 2"), {("missing", "case_segments")}),
    "long_term_mark_deleted": (sql("DELETE FROM long_term"), {("missing", "long_term")}),
    "finding_deleted": (
        sql("DELETE FROM findings WHERE id = (SELECT MIN(id) FROM findings)"),
        {("missing", "findings")},
    ),
    "task_moved": (sql(f"UPDATE tasks SET end_ns = end_ns + {HOUR}"), {("ledger_mismatch", "tasks")}),
    "gap_explanation_deleted": (sql("DELETE FROM gap_explanations"), {("missing", "gap_explanations")}),
    "clock_reading_changed": (
        sql("UPDATE clock_readings SET trusted_ns = trusted_ns + 1"),
        {("ledger_mismatch", "clock_readings")},
    ),
    "device_kind_changed": (sql("UPDATE devices SET kind = 'dashboard_camera'"), {("ledger_mismatch", "devices")}),
    "segment_and_object_deleted": (_segment_and_object_deleted, {("missing", "segments"), ("missing", "objects")}),
}


def test_every_table_of_the_schema_is_a_fact_table_or_named_as_not_one(acted: Path) -> None:
    """A table added later must be replayed and compared, or named among the caches and run state."""
    from custodes.catalog import Catalog
    from custodes.catalog.replay import unclassified_tables

    with Catalog.open(acted / "catalog.sqlite", migrate=False) as catalog:
        assert unclassified_tables(catalog) == []


def test_the_acted_archive_holds_every_fact_the_matrix_edits(acted: Path) -> None:
    """Each edit below changes something that is there: an important mark, an officer, a pending request ..."""
    for query in [
        "SELECT 1 FROM segments WHERE important = 1",
        "SELECT 1 FROM segments WHERE officer_id IS NOT NULL",
        "SELECT 1 FROM segments WHERE id = 2 AND corrected_start_ns IS NOT NULL",
        "SELECT 1 FROM segments WHERE classification = 2",
        "SELECT 1 FROM access_requests WHERE status = 'pending'",
        "SELECT 1 FROM access_requests WHERE status = 'denied'",
        "SELECT 1 FROM access_log WHERE ok = 0",
        "SELECT 1 FROM holds",
        "SELECT 1 FROM case_segments WHERE segment_id = 2",
        "SELECT 1 FROM long_term",
        "SELECT 1 FROM findings",
        "SELECT 1 FROM tasks",
        "SELECT 1 FROM gap_explanations",
        "SELECT 1 FROM clock_readings",
        f"SELECT 1 FROM devices WHERE device_id = '{DEVICE}' AND kind IS NOT NULL",
    ]:
        assert catalog_rows(acted, query), query


def test_a_clean_archive_has_no_finding_and_rebuilds_equal(copy: Path) -> None:
    assert verify_findings(copy, 0) == []
    code, report = rebuilt(copy)
    assert (code, report["equal"], report["findings"], report["replaced"]) == (0, True, [], False)
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith("catalog.sqlite")) == ["catalog.sqlite"]


@pytest.mark.parametrize("name", CATALOG_TAMPERS)
def test_catalog_tamper_matrix(copy: Path, name: str) -> None:
    tamper, expected = CATALOG_TAMPERS[name]
    tamper(copy)
    findings = verify_findings(copy, 1)
    found = {(f["kind"], f["table"]) for f in findings}
    assert expected <= found, findings
    # Nothing else is blamed: every finding is about the table(s) this edit touched.
    assert {table for _, table in found} == {table for _, table in expected}, findings
    for f in findings:
        if f["message"].startswith("catalog schema: "):  # a table dropped: named as a table, not as a row
            assert f["row"] is None and f"table {f['table']} " in f["message"], f
            continue
        assert f["row"], f  # the row, by its key
        if f["kind"] != "unexpected":  # a row the ledger does not explain has no entry to name
            assert isinstance(f["ledger_index"], int), f
            assert re.search(rf"entr(y|ies) {f['ledger_index']}\b", f["message"]), f
    # `ledger verify` (no re-hashing) finds the same rows.
    out = run_cli("ledger", "verify", copy, "--json")
    assert out.returncode == 1
    assert expected <= {(f["kind"], f["table"]) for f in json.loads(out.stdout)["findings"]}
    # The rebuild from the ledger reports the same differences, and replaces nothing without --replace.
    code, report = rebuilt(copy)
    assert (code, report["equal"], report["replaced"]) == (1, False, False)
    assert {(f["kind"], f["table"]) for f in report["findings"]} == found


def test_segment_findings_name_the_segment_its_object_and_its_ingest_entry(copy: Path) -> None:
    """Segment 1 was made by its ingest entry and classified later: the finding names both entries, and
    gives the one that made the row as its ledger index."""
    (seq, sha) = catalog_rows(copy, "SELECT ledger_seq, sha256 FROM segments WHERE id = 1")[0]
    entries = [json.loads(e) for (e,) in catalog_rows(copy, "SELECT entry FROM ledger ORDER BY seq")]
    (classified,) = [i for i, e in enumerate(entries) if e["type"] == "access_classify"]
    sql(f"UPDATE segments SET start_ns = start_ns + {HOUR} WHERE id = 1")(copy)
    (f,) = verify_findings(copy, 1)
    assert (f["kind"], f["table"], f["row"], f["segment"], f["object"], f["ledger_index"]) == (
        "ledger_mismatch",
        "segments",
        [1],
        1,
        sha,
        seq,
    )
    assert f"start_ns differs from what ledger entries {seq}, {classified} recorded" in f["message"]


def test_rebuild_catalog_replace_restores_a_damaged_catalog(two_clip_archive: Path) -> None:
    """Findings and the whole access log gone, a segment's times moved: --replace puts the rebuild in place
    (root is a custodian of two_clip_archive), keeps the damaged file beside it, and verify is clean again."""
    assert verify_findings(two_clip_archive, 0) == []
    sql("DELETE FROM findings", f"UPDATE segments SET start_ns = start_ns + {HOUR} WHERE id = 1")(two_clip_archive)
    assert {f["table"] for f in verify_findings(two_clip_archive, 1)} == {"findings", "segments"}
    code, report = rebuilt(two_clip_archive, "--replace")
    assert (code, report["equal"], report["replaced"]) == (0, False, True)
    kept = Path(report["kept"])
    assert kept.parent == two_clip_archive and kept.name.startswith("catalog.sqlite.before-rebuild-")
    assert verify_findings(two_clip_archive, 0) == []
    assert catalog_rows(two_clip_archive, "SELECT COUNT(*) FROM findings")[0][0] > 0
    assert rebuilt(two_clip_archive)[0] == 0


def test_rebuild_catalog_replace_refuses_while_another_process_has_the_catalog_open(two_clip_archive: Path) -> None:
    """A connection of another process left open (a running service, an ingest) across the replace would go on
    writing into the file kept aside, and the new file shared its WAL index: the next command read a "malformed"
    catalog (found while testing a repair). Refused, one line, nothing replaced; once it is closed, done."""
    other = sqlite3.connect(two_clip_archive / "catalog.sqlite")
    with other:  # it has written, as a service does
        other.execute("UPDATE segments SET start_ns = start_ns + 1 WHERE id = 1")
    try:
        out = run_cli("ledger", "rebuild-catalog", two_clip_archive, "--replace")
        assert out.returncode == 2 and b"another process has the catalog open" in out.stderr, out.stderr
        assert out.stderr.count(b"\n") == 1
        assert not [p for p in two_clip_archive.iterdir() if "before-rebuild" in p.name]
    finally:
        other.close()
    code, report = rebuilt(two_clip_archive, "--replace")
    assert (code, report["replaced"]) == (0, True) and verify_findings(two_clip_archive, 0) == []


def test_rebuild_catalog_replace_needs_a_custodian(cli_archive: Path) -> None:
    """root has no role in cli_archive's policy: refused (exit 1), logged, and nothing replaced."""
    before = catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log")[0][0]
    out = run_cli("ledger", "rebuild-catalog", cli_archive, "--replace")
    assert out.returncode == 1 and b"may not rebuild_catalog" in out.stderr
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_log")[0][0] == before + 1
    assert not [p for p in cli_archive.iterdir() if "before-rebuild" in p.name]
    assert verify_findings(cli_archive, 0) == []


# ---- rebuild-catalog equals the live catalog on every shape of test archive -------------------------


def test_rebuild_equals_the_cli_archive(cli_archive: Path) -> None:
    code, report = rebuilt(cli_archive)
    assert (code, report["equal"], report["unknown_entry_types"]) == (0, True, {})


def test_rebuild_equals_the_two_clip_archive(two_clip_archive: Path) -> None:
    code, report = rebuilt(two_clip_archive)
    assert (code, report["equal"], report["unknown_entry_types"]) == (0, True, {})


def test_rebuild_equals_an_archive_after_a_purge(cli_archive: Path) -> None:
    seg = dict(catalog_rows(cli_archive, "SELECT original_name, id FROM segments"))["androidx-sample.mp4"]  # 2016
    rid = request(cli_archive, "alice", seg, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    assert as_("alice", "retention", "purge", cli_archive, "--request", rid).returncode == 0
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM tombstones")[0][0] == 1
    code, report = rebuilt(cli_archive, user="alice")
    assert (code, report["equal"]) == (0, True), report
    out = as_("alice", "verify", cli_archive, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["findings"] == []


def _indexes(catalog: Catalog) -> set[str]:
    rows = catalog._conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL")  # noqa: SLF001
    return {name for (name,) in rows}


def _replayed_indexes(arch: Path) -> tuple[set[str], set[str], list[replay.Difference]]:
    """The live catalog's indexes, its scratch's after the ledger is replayed into it, and the differences."""
    with Catalog.open(arch / "catalog.sqlite", migrate=False) as live:
        with replay.scratch(live) as fresh, live.snapshot():
            found = replay.differences(live, fresh, replay.replay(live, fresh))
            return _indexes(live), _indexes(fresh) - {f"{replay.WRITTEN_BY}_by_row"}, found


def test_a_scratch_is_never_synced_not_even_while_its_schema_is_made(
    cli_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scratch a verify replays into is thrown away after; it was opened as the catalog is (full sync, a
    write-ahead log) and its schema made so, some fifteen fdatasyncs of a file no one keeps, every verify."""
    from custodes.catalog import schema

    seen: list[tuple[int, str]] = []
    made = schema.migrate

    def spying(conn: sqlite3.Connection, *args: object, **kwargs: object) -> object:
        seen.append(
            (conn.execute("PRAGMA synchronous").fetchone()[0], conn.execute("PRAGMA journal_mode").fetchone()[0])
        )
        return made(conn, *args, **kwargs)

    with Catalog.open(cli_archive / "catalog.sqlite", migrate=False) as live:
        monkeypatch.setattr(schema, "migrate", spying)
        with replay.scratch(live) as fresh, live.snapshot():
            assert replay.differences(live, fresh, replay.replay(live, fresh)) == []
    assert seen == [(0, "memory")]  # synchronous OFF, the journal in memory, from the first statement


def test_a_scratch_builds_its_non_unique_indexes_only_when_an_entry_reads_them(cli_archive: Path) -> None:
    """A scratch replays ingest and custody entries without the schema's non-unique indexes (they make no row
    and refuse none); a purge entry asks which live recordings still need its object, so the scratch builds them
    before it; either way the replay is the live catalog, row for row."""
    live, scratch, found = _replayed_indexes(cli_archive)
    assert found == [] and "segments_by_object" in live and not scratch & {"segments_by_object", "segments_by_device"}
    seg = dict(catalog_rows(cli_archive, "SELECT original_name, id FROM segments"))["androidx-sample.mp4"]
    rid = request(cli_archive, "alice", seg, purpose="purge")
    assert as_("bob", "access", "approve", cli_archive, rid).returncode == 0
    assert as_("alice", "retention", "purge", cli_archive, "--request", rid).returncode == 0
    live, scratch, found = _replayed_indexes(cli_archive)
    assert found == [] and scratch == live
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM tombstones")[0][0] == 1


def test_rebuild_equals_an_archive_after_an_export(case_bag: tuple[Path, Path], cli_archive: Path) -> None:
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM case_segments")[0][0] == 2
    code, report = rebuilt(cli_archive, user="alice")
    assert (code, report["equal"]) == (0, True), report


# ---- archives written before the catalog was a view of the ledger ------------------------------------


def _as_before(arch: Path, *statements: str) -> None:
    """Make ``arch``'s catalog look as custodes left it before the replay: schema 5 (no replay_state, no type
    column on the ledger, no frontier kept with a checkpoint) and rows its ledger does not hold (an older
    custodes wrote findings without an entry). Opening it migrates it."""
    sql(*AS_SCHEMA_5, *statements, "PRAGMA user_version = 5")(arch)


def test_a_policy_entry_hidden_from_the_type_index_is_found(copy: Path) -> None:
    """Commands find the policy in force through the ledger's type column: refiling the latest policy entry
    under another type would put the older policy in force. The file now differs from that older policy, so
    commands refuse, and verify names the refiled entry."""
    (latest,) = catalog_rows(copy, "SELECT MAX(seq) FROM ledger WHERE type = 'policy'")[0]
    assert len(catalog_rows(copy, "SELECT seq FROM ledger WHERE type = 'policy'")) >= 2  # an older one to fall to
    sql(f"UPDATE ledger SET type = 'note' WHERE seq = {latest}")(copy)
    findings = verify_findings(copy, 1)
    (misfiled,) = [f for f in findings if f["kind"] == "ledger_mismatch"]
    assert misfiled["ledger_index"] == latest
    assert misfiled["message"] == (
        f"ledger entry {latest} is a policy entry but is filed as note in the ledger's type index (an edited index: "
        "a hidden policy entry would put an older policy in force)"
    )
    assert "policy_mismatch" in {f["kind"] for f in findings}
    refused = run_cli("retention", "status", copy)
    assert refused.returncode == 2 and b"differs from the ledgered policy" in refused.stderr
    # An entry filed under the policy's type that is not a policy entry is reported too, and is not taken.
    (other,) = catalog_rows(copy, "SELECT MAX(seq) FROM ledger WHERE type != 'policy'")[0]
    sql(f"UPDATE ledger SET type = 'policy' WHERE seq IN ({latest}, {other})")(copy)
    assert run_cli("retention", "status", copy).returncode == 0
    (misfiled,) = [f for f in verify_findings(copy, 1) if f["kind"] == "ledger_mismatch"]
    assert misfiled["ledger_index"] == other and "filed as policy" in misfiled["message"]


def test_an_older_archive_adopts_its_rows_once_on_its_first_write(two_clip_archive: Path) -> None:
    older = "INSERT INTO findings (ingest_id, kind, severity, detail) VALUES (1, 'gap', 'warning', '{}')"
    _as_before(two_clip_archive, older, "UPDATE segments SET officer_id = '001234' WHERE id = 2")
    # Before its first write it is held to what its ingest entries record, as before: intact, and it says so
    # every run (the flag is the catalog's own: set by hand on an archive that was always ledgered, it would
    # silence the comparison of every row no ingest entry records).
    (said,) = verify_findings(two_clip_archive, 0)
    assert said["kind"] == "pending" and said["message"].startswith(
        "the catalog says it was migrated from before it was a view of the ledger and awaits adopting its older rows"
    )
    # Its first write (a hold, by root, its custodian) adopts the rows its ledger does not explain, once.
    assert run_cli("retention", "hold", two_clip_archive, "--segment", "1", "--reason", "x").returncode == 0
    types = [json.loads(e)["type"] for (e,) in catalog_rows(two_clip_archive, "SELECT entry FROM ledger ORDER BY seq")]
    assert types[-2:] == ["catalog_adopt", "hold"]
    # The migration filed every older entry under its type, and the new ones are filed as they are appended.
    assert catalog_rows(two_clip_archive, "SELECT type FROM ledger ORDER BY seq") == [(t,) for t in types]
    entries = [json.loads(e) for (e,) in catalog_rows(two_clip_archive, "SELECT entry FROM ledger")]
    (adopt,) = [e for e in entries if e["type"] == "catalog_adopt"]
    assert sorted(adopt["tables"]) == ["findings", "segments"]
    assert [len(adopt["tables"][t]["rows"]) for t in ("findings", "segments")] == [1, 1]
    assert catalog_rows(two_clip_archive, "SELECT officer_id FROM segments WHERE id = 2") == [("001234",)]
    assert verify_findings(two_clip_archive, 0) == []
    assert rebuilt(two_clip_archive)[1]["equal"] is True
    # The flag set again by hand adopts nothing more: a row planted now is unexpected.
    sql("UPDATE replay_state SET adopt_pending = 1", older)(two_clip_archive)
    assert run_cli("retention", "hold", two_clip_archive, "--segment", "2", "--reason", "x").returncode == 0
    findings = verify_findings(two_clip_archive, 1)
    assert [(f["kind"], f["table"]) for f in findings] == [("unexpected", "findings")]


def test_rebuilding_an_older_archive_adopts_its_rows_first(cli_archive: Path) -> None:
    """A rebuild before any write would lose the rows the older ledger does not hold: it adopts them first
    (signed), so the rebuilt catalog equals the live one and verify stays clean."""
    _as_before(
        cli_archive, "INSERT INTO findings (ingest_id, kind, severity, detail) VALUES (1, 'gap', 'warning', '{}')"
    )
    code, report = rebuilt(cli_archive)
    assert (code, report["equal"], report["findings"]) == (0, True, [])
    entries = [json.loads(e) for (e,) in catalog_rows(cli_archive, "SELECT entry FROM ledger ORDER BY seq")]
    assert entries[-1]["type"] == "catalog_adopt" and list(entries[-1]["tables"]) == ["findings"]
    assert verify_findings(cli_archive, 0) == []


def test_text_that_is_not_utf8_in_the_catalog_is_a_finding_not_a_crash(copy: Path) -> None:
    # Found by a hostile review: one cell of text that is not UTF-8 made verify, report and the ledger commands
    # stop with a traceback, reporting nothing, not even a modified object.
    sql("UPDATE segments SET original_name = CAST(x'ff' AS TEXT) WHERE id = 1")(copy)
    (found,) = [f for f in verify_findings(copy, 1) if f["kind"] == "ledger_mismatch"]
    assert found["table"] == "segments" and found["row"] == [1] and "original_name differs" in found["message"]
    sql("UPDATE ledger SET type = CAST(x'ff' AS TEXT) WHERE seq = 1")(copy)
    assert any(f["kind"] == "ledger_mismatch" and f["ledger_index"] == 1 for f in verify_findings(copy, 1))
    ledger = run_cli("ledger", "verify", copy)
    assert ledger.returncode == 1 and b"ledger_mismatch" in ledger.stdout, ledger.stderr.decode()
    report = run_cli("report", copy, "--format", "json", "--out", copy.parent / "r.json")
    assert report.returncode == 1 and b"Traceback" not in report.stderr, report.stderr.decode()  # not intact
    assert json.loads((copy.parent / "r.json").read_text())["integrity"]["ok"] is False


#: A time for a forged row (any whole number: the row is forged either way).
T0_NS = 1_700_000_000 * 10**9
UNCHECKABLE_ROWS = ["size = 'large'", "size = 1.5", "size = x'00'", "digests = 'not json'", "digests = '[]'"]


@pytest.mark.parametrize(
    "edit", [*UNCHECKABLE_ROWS, "size = size + 1", "digests = json_set(digests, '$.blake3', '00')"]
)
def test_an_edited_objects_row_is_named_and_the_bytes_are_judged_by_the_ledger(copy: Path, edit: str) -> None:
    # Found by hostile users: an objects row whose size was edited to text, or whose digests are not a JSON
    # object, ended verify's store pass with a traceback; then a size or digest edited to another value had
    # intact footage called `truncated` or `modified` beside the row's ledger_mismatch. The ledger says what the
    # bytes must be: the edit is the one finding, and the object is re-hashed against the ledger and intact.
    (sha,) = catalog_rows(copy, "SELECT sha256 FROM objects ORDER BY sha256 LIMIT 1")[0]
    stored = sum(size for (size,) in catalog_rows(copy, "SELECT size FROM objects WHERE purged_ns IS NULL"))
    sql(f"UPDATE objects SET {edit} WHERE sha256 = '{sha}'")(copy)
    for args in ((), ("--older-than", "0"), ("--quick",)):
        found = verify_findings(copy, 1, *args)
        assert [(f["kind"], f.get("table"), f["row"]) for f in found] == [("ledger_mismatch", "objects", [sha])], found
    assert json.loads(run_cli("verify", copy, "--json").stdout)["bytes"] == stored  # every object re-hashed


@pytest.mark.parametrize("edit", UNCHECKABLE_ROWS)
def test_a_forged_objects_row_verify_cannot_check_against_is_a_finding_not_a_crash(copy: Path, edit: str) -> None:
    # A row no ledger entry explains, for bytes planted in the store: nothing says what they must be, and a
    # size that is not a number (or digests that are not a JSON object) cannot be checked against.
    data = b"planted, with a row forged for it"
    sha = hashlib.sha256(data).hexdigest()
    archive = open_archive(copy)
    try:
        plant(archive, sha, data)
    finally:
        archive.close()
    with catalog_edit(copy) as tx:
        tx.execute(
            "INSERT INTO objects (sha256, size, digests, head_sha256, stored_ns) VALUES (?, ?, ?, ?, ?)",
            (sha, len(data), json.dumps({"sha256": sha}), hashlib.sha256(data).hexdigest(), T0_NS),
        )
    sql(f"UPDATE objects SET {edit} WHERE sha256 = '{sha}'")(copy)
    for args in ((), ("--older-than", "0")):
        found = verify_findings(copy, 1, *args)
        assert ("unexpected", "objects") in {(f["kind"], f.get("table")) for f in found}, found
        (row,) = [f for f in found if f["object"] == sha and f.get("table") is None]
        assert row["kind"] == "ledger_mismatch" and "its bytes were not re-hashed" in row["message"], row


#: Edits where SQLite and Python could tell rows apart differently (verify compares in SQLite when it can:
#: catalog.replay._unmatched), each with the (kind, table) verify must report.
SUBTLE_TAMPERS: dict[str, tuple[Callable[[Path], None], set[tuple[str, str]]]] = {
    # The same bytes, stored as a BLOB: not the text the ledger recorded.
    "name_as_blob": (
        sql("UPDATE segments SET original_name = CAST(original_name AS BLOB) WHERE id = 2"),
        {("ledger_mismatch", "segments")},
    ),
    # Re-made without its key, every row twice: the second of each is a row no entry explains.
    "holds_doubled": (
        sql(
            "CREATE TABLE doubled AS SELECT * FROM holds",
            "INSERT INTO doubled SELECT * FROM holds",
            "DROP TABLE holds",
            "ALTER TABLE doubled RENAME TO holds",
        ),
        # ... and without its index (the schema check names it, and the table's columns declared otherwise).
        {("unexpected", "holds"), ("ledger_mismatch", "holds"), ("ledger_mismatch", "holds_by_segment")},
    ),
    # A text key may be NULL in SQLite, twice: the same row two times, each a row no entry explains.
    "devices_with_null_keys": (
        sql("INSERT INTO devices (device_id, kind) VALUES (NULL, 'planted'), (NULL, 'planted')"),
        {("unexpected", "devices")},
    ),
    # Re-made with its key, a task's end now text: the text '1' is not the integer 1.
    "task_end_as_text": (
        sql(
            "CREATE TABLE retyped (id TEXT PRIMARY KEY, type TEXT NOT NULL, start_ns INTEGER NOT NULL, "
            "end_ns TEXT NOT NULL, officers TEXT NOT NULL, devices TEXT NOT NULL, imported_ns INTEGER NOT NULL, "
            "ledger_seq INTEGER NOT NULL)",
            "INSERT INTO retyped SELECT * FROM tasks",
            "DROP TABLE tasks",
            "ALTER TABLE retyped RENAME TO tasks",
        ),
        {("ledger_mismatch", "tasks")},
    ),
}


@pytest.mark.parametrize("name", SUBTLE_TAMPERS)
def test_subtle_catalog_tampers_are_found(copy: Path, name: str) -> None:
    tamper, expected = SUBTLE_TAMPERS[name]
    tamper(copy)
    found = {(f["kind"], f["table"]) for f in verify_findings(copy, 1)}
    assert expected <= found and {table for _, table in found} == {table for _, table in expected}


def differences_both_ways(arch: Path) -> tuple[list[replay.Difference], list[replay.Difference]]:
    """The differences verify finds comparing in SQLite (the scratch attached to the catalog's connection), and
    those of the merge of the whole tables in Python (a scratch made inside a transaction is not attached)."""
    with Catalog.open(arch / "catalog.sqlite", migrate=False) as live:
        with replay.scratch(live) as fresh, live.snapshot():
            assert replay._attached(live, fresh)  # noqa: SLF001 - the path under test
            in_sql = replay.differences(live, fresh, replay.replay(live, fresh))
        with live.snapshot(), replay.scratch(live) as fresh:
            assert not replay._attached(live, fresh)  # noqa: SLF001
            merged = replay.differences(live, fresh, replay.replay(live, fresh))
    return in_sql, merged


@pytest.mark.parametrize("name", sorted(CATALOG_TAMPERS) + sorted(SUBTLE_TAMPERS))
def test_comparing_in_sqlite_finds_what_the_whole_merge_finds(copy: Path, name: str) -> None:
    (CATALOG_TAMPERS | SUBTLE_TAMPERS)[name][0](copy)
    in_sql, merged = differences_both_ways(copy)
    assert in_sql and in_sql == merged


def test_compare_names_the_entries_of_a_row_that_differs(copy: Path) -> None:
    """compare replays without recording who wrote each row, and again with it once a row differs."""
    sql(f"UPDATE segments SET start_ns = start_ns + {HOUR} WHERE id = 1")(copy)
    with Catalog.open(copy / "catalog.sqlite", migrate=False) as live:
        with replay.scratch(live) as fresh, live.snapshot():
            made, found = replay.compare(live, fresh)
    (seq,) = catalog_rows(copy, "SELECT ledger_seq FROM segments WHERE id = 1")[0]
    assert made.written_by and [(d.kind, d.table, d.key, d.entry) for d in found] == [
        ("ledger_mismatch", "segments", (1,), seq)
    ]


def _ledger_findings(arch: Path, incremental: bool) -> tuple[list[tuple], dict | None]:
    """verify_ledger_only's findings (kind, table, row, entry, message) and how it replayed the ledger."""
    from custodes.verify import verify_ledger_only

    with open_archive(arch) as a:
        result = verify_ledger_only(a, incremental=incremental)
    return [(f.kind, f.table, f.row, f.ledger_index, f.message) for f in result.findings], result.replay


@pytest.mark.parametrize("name", sorted(CATALOG_TAMPERS) + sorted(SUBTLE_TAMPERS))
def test_a_kept_replay_finds_what_a_whole_replay_finds(
    copy: Path, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify --incremental after every edit of the matrix: the verifier's kept replay, made on the archive
    before the edit, finds exactly what replaying the whole ledger finds, naming the same rows and entries."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _ledger_findings(copy, True)[0] == []  # kept, on the archive before the edit
    (CATALOG_TAMPERS | SUBTLE_TAMPERS)[name][0](copy)
    whole, how = _ledger_findings(copy, False)
    assert how is None and whole
    kept, how = _ledger_findings(copy, True)
    assert how is not None and "whole" not in how, how
    if "catalog schema: " not in str(whole):  # a table dropped or re-made: only the schema, before any replay
        assert how["held"] > 0 and how["replayed"] == 0, how
    assert kept == whole
