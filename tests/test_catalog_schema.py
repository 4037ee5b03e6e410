"""The live catalog's schema must be the schema custodes makes (found by a hostile review: dropping an empty fact
table, an index or verify_runs, or adding a trigger or view, left `custodes verify` and `custodes ledger verify`
at exit 0 "intact", or stopped them with exit 2, while `custodes report` failed on the missing table). Each such
edit, made with sqlite3 as an attacker would, is a finding naming the object (its ``table``): a dropped table
``missing``, anything else ``ledger_mismatch``; exit 1 from both commands, never a crash. A clean archive, and
one migrated from an older schema, have none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from custodes.catalog import replay
from helpers import AS_SCHEMA_5, PEOPLE_AND_ROOT, THREE_RECORDINGS, build_cli_archive, catalog_edit, run_cli

SCHEMA = "catalog schema: "  # how a finding of the schema check begins


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small archive made through the CLI (root a custodian): two recordings ingested."""
    root = tmp_path_factory.mktemp("schema")
    return build_cli_archive(
        root / "archive", people=PEOPLE_AND_ROOT, recordings=THREE_RECORDINGS[:2], ingest_exit=(0, 1)
    )


@pytest.fixture
def arch(made: Path, tmp_path: Path) -> Path:
    """A copy of ``made`` of this test's own."""
    return Path(shutil.copytree(made, tmp_path / "archive", ignore=shutil.ignore_patterns("*.sock")))


def edit(arch: Path, *statements: str) -> None:
    with catalog_edit(arch, foreign_keys=False) as c:
        for s in statements:
            c.execute(s)


def findings(arch: Path, *command: str, code: int = 1) -> list[dict]:
    out = run_cli(*command, arch, "--json")
    assert b"Traceback" not in out.stderr, out.stderr.decode()
    assert out.returncode == code, (out.stdout.decode(), out.stderr.decode())
    return json.loads(out.stdout)["findings"]


def schema_findings(arch: Path, code: int = 1) -> dict[str, set[tuple[str, str]]]:
    """(kind, table) of each schema finding of `verify` and of `ledger verify`, which must agree."""
    out = {}
    for command in (("verify",), ("ledger", "verify")):
        found = findings(arch, *command, code=code)
        out[" ".join(command)] = {(f["kind"], f["table"]) for f in found if f["message"].startswith(SCHEMA)}
    assert out["verify"] == out["ledger verify"], out
    return out


def named(arch: Path, kind: str, name: str, words: str) -> None:
    """Both commands exit 1 with a finding of ``kind`` naming ``name``, its message holding ``words``."""
    for command in (("verify",), ("ledger", "verify")):
        found = [f for f in findings(arch, *command) if f["table"] == name and f["message"].startswith(SCHEMA)]
        assert [f["kind"] for f in found] == [kind], (command, found)
        assert words in found[0]["message"], found


def test_a_clean_archive_has_no_schema_finding(arch: Path) -> None:
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_an_archive_migrated_from_an_older_schema_has_none(arch: Path) -> None:
    """Schema 5 brought forward on open by the same migrations a new catalog is made with: nothing differs."""
    edit(arch, *AS_SCHEMA_5, "PRAGMA user_version = 5")
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


#: Every table of the schema (tests/test_catalog_tamper.py holds each to being one of these), but the ledger.
TABLES = sorted(t for t in (*replay.FACT_TABLES, *replay.NOT_FACTS) if t != "ledger")


@pytest.mark.parametrize("table", TABLES)
def test_each_dropped_table_is_missing(arch: Path, table: str) -> None:
    edit(arch, f"DROP TABLE {table}")
    named(arch, "missing", table, f"table {table} is missing")


def test_a_dropped_ledger_table_stops_the_commands_naming_it(arch: Path) -> None:
    """The ledger is the proof itself: without it nothing can be verified nor rebuilt, only restored."""
    edit(arch, "DROP TABLE ledger")
    for command in (("verify",), ("ledger", "verify"), ("report",)):
        extra = ("--format", "json", "--out", str(arch.parent / "r.json")) if command == ("report",) else ()
        out = run_cli(*command, arch, *extra)
        assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr.decode()
        assert b"no such table: ledger" in out.stderr and b"restore catalog.sqlite from a backup" in out.stderr


def test_a_dropped_empty_table_fails_the_report_pointing_to_verify_and_rebuild(arch: Path) -> None:
    edit(arch, "DROP TABLE cases")
    out = run_cli("report", arch, "--format", "json", "--out", arch.parent / "r.json")
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr.decode()
    for words in (b"no such table: cases", b"custodes verify", b"ledger rebuild-catalog"):
        assert words in out.stderr, out.stderr.decode()


def test_a_dropped_verify_runs_does_not_stop_verify(arch: Path) -> None:
    """verify records its run in verify_runs: without the table it re-hashes every object all the same."""
    edit(arch, "DROP TABLE verify_runs")
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["checked"] == 2 and report["run"]["id"] is None
    assert [(f["kind"], f["table"]) for f in report["findings"]] == [("missing", "verify_runs")]


@pytest.mark.parametrize("index", ["segments_by_device_time", "objects_by_last_verified", "ledger_by_type"])
def test_a_dropped_index_is_named(arch: Path, index: str) -> None:
    edit(arch, f"DROP INDEX {index}")
    named(arch, "ledger_mismatch", index, f"index {index} is missing")


def test_an_index_made_again_over_other_columns_is_named(arch: Path) -> None:
    edit(arch, "DROP INDEX segments_by_device_time", "CREATE INDEX segments_by_device_time ON segments(start_ns)")
    named(arch, "ledger_mismatch", "segments_by_device_time", "over (start_ns), not (device_id, start_ns)")


def test_an_added_trigger_is_named(arch: Path) -> None:
    """A trigger that quietly undoes every hold placed: named whatever its effects (none yet here)."""
    edit(arch, "CREATE TRIGGER holds_undone AFTER INSERT ON holds BEGIN DELETE FROM holds WHERE id = NEW.id; END")
    named(arch, "ledger_mismatch", "holds_undone", "trigger holds_undone is in the catalog's schema")


def test_an_added_view_is_named(arch: Path) -> None:
    edit(arch, "CREATE VIEW footage AS SELECT id, original_name FROM segments")
    named(arch, "ledger_mismatch", "footage", "view footage is in the catalog's schema")


def test_a_table_made_again_without_a_column_is_named(arch: Path) -> None:
    edit(
        arch,
        "CREATE TABLE cases_again (id TEXT PRIMARY KEY, retention_until_ns INTEGER)",
        "DROP TABLE cases",
        "ALTER TABLE cases_again RENAME TO cases",
    )
    named(arch, "ledger_mismatch", "cases", "column description missing")


def test_a_column_added_is_named(arch: Path) -> None:
    edit(arch, "ALTER TABLE holds ADD COLUMN note TEXT")
    named(arch, "ledger_mismatch", "holds", "column note extra")


def test_a_table_that_is_a_view_now_is_named(arch: Path) -> None:
    edit(arch, "DROP TABLE long_term", "CREATE VIEW long_term AS SELECT 1 AS segment_id")
    named(arch, "ledger_mismatch", "long_term", "a view, not a table")


def test_statistics_analyze_keeps_are_not_a_difference(arch: Path) -> None:
    """ANALYZE (an administrator's, or sqlite3's own) adds SQLite's statistics tables: they change no row and no
    answer, only which index a query takes."""
    edit(arch, "ANALYZE")
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_the_report_says_not_intact_and_rebuild_restores_the_schema(arch: Path) -> None:
    """A dropped index: the report (which runs the ledger checks) is written and says the archive is not intact;
    `ledger rebuild-catalog` names it, and --replace (root is a custodian here) makes the index again."""
    edit(arch, "DROP INDEX segments_by_device_time")
    out = run_cli("report", arch, "--format", "json", "--out", arch.parent / "r.json")
    assert out.returncode == 0, out.stderr.decode()
    integrity = json.loads((arch.parent / "r.json").read_text())["integrity"]
    assert integrity["ok"] is False and integrity["findings"] == 1
    rebuilt = findings(arch, "ledger", "rebuild-catalog")
    assert [(f["kind"], f["table"]) for f in rebuilt] == [("ledger_mismatch", "segments_by_device_time")]
    out = run_cli("ledger", "rebuild-catalog", arch, "--replace", "--json")
    report = json.loads(out.stdout)
    assert (out.returncode, report["equal"], report["replaced"]) == (0, False, True), out.stderr.decode()
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}
