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
from helpers import (
    AS_SCHEMA_5,
    PEOPLE_AND_ROOT,
    THREE_RECORDINGS,
    build_cli_archive,
    catalog_edit,
    catalog_rows,
    run_cli,
)

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


def test_an_objects_row_without_a_digest_is_reported_and_the_run_goes_on(arch: Path) -> None:
    """The objects' TEXT PRIMARY KEY lets a NULL in (a rowid table's does), and other text: only an edit writes
    either. Verify reports each and goes on (before: a NULL stopped it with a traceback from comparing it with
    the store's listing, other text at the object's path, "not a SHA-256 digest"), and the remedy runs."""
    row = "INSERT INTO objects (sha256, size, digests, head_sha256, stored_ns) VALUES ({}, 1, '{{}}', 'x', 1)"
    edit(arch, row.format("NULL"), row.format("'zz'"), row.format("x'1c98'"))
    for command in (("verify",), ("verify", "--older-than", "0"), ("ledger", "verify")):
        found = findings(arch, *command)
        said = [f["message"] for f in found if f["kind"] == "ledger_mismatch"]
        for key in ("None", "'zz'", "b'\\x1c\\x98'") if command[0] == "verify" else ():
            assert [m for m in said if f"named {key}," in m and "not a SHA-256 digest" in m], (command, key, said)
        # The replay's word on each: a BLOB key is shown in JSON as SQLite writes its literal (it stopped every
        # --json verify with "bytes is not JSON serializable").
        rows = [f["row"] for f in found if f["table"] == "objects" and f["kind"] == "unexpected"]
        assert sorted(rows, key=str) == sorted([[None], ["zz"], ["x'1c98'"]], key=str), rows
    # Slices of the digest space report each row in exactly one slice (a NULL lies in no range: no slice said it).
    said_in = [
        [f["message"] for f in findings(arch, "verify", "--slice", f"{k}/2") if f["kind"] == "ledger_mismatch"]
        for k in (1, 2)
    ]
    for key in ("None", "'zz'", "b'\\x1c\\x98'"):
        assert [sum(f"named {key}," in m for m in said) for said in said_in] in ([1, 0], [0, 1]), (key, said_in)
    rebuilt = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert rebuilt.returncode == 0, rebuilt.stderr.decode()
    assert findings(arch, "verify", code=0) == []


def test_the_intents_an_older_custodes_kept_for_ever_go_when_the_catalog_is_brought_forward(arch: Path) -> None:
    """Schema 13 kept an intent for every object ever ingested (a row each, for ever); schema 14 keeps the facts
    of each file with it, and drops an intent once its ingest finished with its object recorded. Brought forward,
    an older catalog drops those it kept, and keeps the intent of an object nothing records."""
    nobody = "ab" * 32
    edit(
        arch,
        "DROP TABLE object_findings",  # schema 16's
        "ALTER TABLE checkpoints DROP COLUMN folder_ctime_ns",  # schema 15's
        "DROP INDEX ingest_intents_by_ingest",
        "DROP TABLE ingest_notes",
        "INSERT INTO ingest_intents (sha256, ingest_id, created_ns) SELECT sha256, 1, 0 FROM objects",
        f"INSERT INTO ingest_intents (sha256, ingest_id, created_ns) VALUES ('{nobody}', 1, 0)",
        "PRAGMA user_version = 13",
    )
    assert catalog_rows(arch, "SELECT count(*) FROM ingest_intents")[0][0] > 1
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}
    assert catalog_rows(arch, "SELECT sha256, ingest_id FROM ingest_intents") == [(nobody, 1)]


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


@pytest.mark.parametrize(
    ("how", "shown"),
    [
        (  # made again by hand without its integer key, every index a text
            [
                "CREATE TABLE l2 (seq TEXT, entry BLOB NOT NULL, leaf BLOB NOT NULL, type TEXT)",
                "INSERT INTO l2 SELECT CAST(seq AS TEXT) || 'x', entry, leaf, type FROM ledger",
                "DROP TABLE ledger",
                "ALTER TABLE l2 RENAME TO ledger",
                "CREATE INDEX ledger_by_type ON ledger(type, seq)",
            ],
            "'2x'",
        ),
        (["INSERT INTO ledger (seq, entry, leaf, type) SELECT -1, entry, leaf, type FROM ledger WHERE seq = 1"], "-1"),
        *(  # made again without its key, one row at an index between whole ones (a second review: MIN and MAX
            # missed them, and the rebuild crashed)
            (
                [
                    "CREATE TABLE l2 (seq, entry BLOB NOT NULL, leaf BLOB NOT NULL, type TEXT)",
                    "INSERT INTO l2 SELECT seq, entry, leaf, type FROM ledger",
                    f"INSERT INTO l2 SELECT {odd}, entry, leaf, type FROM ledger WHERE seq = 3",
                    "DROP TABLE ledger",
                    "ALTER TABLE l2 RENAME TO ledger",
                    "CREATE INDEX ledger_by_type ON ledger(type, seq)",
                ],
                shown,
            )
            for odd, shown in (("NULL", "None"), ("2.5", "2.5"))
        ),
    ],
)
def test_ledger_rows_no_index_places_are_named_and_no_catalog_is_rebuilt_from_them(
    arch: Path, how: list[str], shown: str
) -> None:
    """Rows at an index that is not a whole number, or below 0: verify and ledger verify crashed on the first
    (a TypeError in the gap message) and said entries "0..-2" were gone for the second; rebuild-catalog crashed
    on the first (a datatype mismatch) and copied the second. Each row is a finding; the rebuild refuses."""
    edit(arch, *how)
    for command in (("verify",), ("ledger", "verify")):
        found = [f["message"] for f in findings(arch, *command) if f["kind"] == "ledger_mismatch"]
        assert any(m.startswith(f"a ledger row at index {shown}, which no entry") for m in found), (command, found)
        assert not any(" are gone" in m for m in found), found
    rebuilt = run_cli("ledger", "rebuild-catalog", arch, "--replace")
    assert rebuilt.returncode == 2 and b"Traceback" not in rebuilt.stderr, rebuilt.stderr.decode()
    assert b"no catalog is rebuilt from it" in rebuilt.stderr, rebuilt.stderr.decode()
    assert list(arch.glob("catalog.sqlite.before-rebuild-*")) == [] and list((arch / "tmp").iterdir()) == []


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


def remake(arch: Path, table: str, columns: str) -> None:
    """``table`` made again with ``columns`` (its rows gone with it): a copy, the old one dropped, the copy renamed."""
    edit(
        arch,
        f"CREATE TABLE {table}_again ({columns})",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_again RENAME TO {table}",
    )


def test_an_added_view_is_named(arch: Path) -> None:
    edit(arch, "CREATE VIEW footage AS SELECT id, original_name FROM segments")
    named(arch, "ledger_mismatch", "footage", "view footage is in the catalog's schema")


def test_a_table_made_again_without_a_column_is_named(arch: Path) -> None:
    remake(arch, "cases", "id TEXT PRIMARY KEY, retention_until_ns INTEGER")
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
    assert out.returncode == 1 and b"integrity: 1 finding(s)" in out.stderr, out.stderr.decode()  # written, exit 1
    integrity = json.loads((arch.parent / "r.json").read_text())["integrity"]
    assert integrity["ok"] is False and integrity["findings"] == 1
    rebuilt = findings(arch, "ledger", "rebuild-catalog")
    assert [(f["kind"], f["table"]) for f in rebuilt] == [("ledger_mismatch", "segments_by_device_time")]
    out = run_cli("ledger", "rebuild-catalog", arch, "--replace", "--json")
    report = json.loads(out.stdout)
    assert (out.returncode, report["equal"], report["replaced"]) == (0, False, True), out.stderr.decode()
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


#: A trigger a hostile review planted: every ingest entry appended to the ledger is deleted again at once. Ingest
#: then reported success while the recording's entry was gone, and the named fix (rebuild from the ledger) dropped
#: the recording's rows.
LOSE_INGESTS = (
    "CREATE TRIGGER ingests_lost AFTER INSERT ON ledger WHEN NEW.type = 'ingest' "
    "BEGIN DELETE FROM ledger WHERE seq = NEW.seq; END"
)


def test_a_write_into_a_catalog_with_another_schema_is_refused_and_nothing_is_lost(arch: Path) -> None:
    """Custodes writes only into a catalog whose schema is its own (Catalog.write): the ingest is refused before it
    records anything, saying why and what to do; once the trigger is gone the same volume ingests, every entry
    kept, and verify is clean."""
    edit(arch, LOSE_INGESTS)
    with catalog_edit(arch) as c:
        entries = c.execute("SELECT count(*) FROM ledger").fetchone()[0]
    vol = arch.parent / "BWC0002"
    vol.mkdir()
    shutil.copy(THREE_RECORDINGS[2], vol / THREE_RECORDINGS[2].name)
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr.decode()
    said = out.stderr.decode()
    for words in ("custodes writes nothing into this catalog", "trigger ingests_lost", "rebuild-catalog --replace"):
        assert words in said, said
    with catalog_edit(arch) as c:
        assert c.execute("SELECT count(*) FROM ledger").fetchone()[0] == entries  # not one entry written
        assert c.execute("SELECT count(*) FROM segments").fetchone()[0] == 2
    edit(arch, "DROP TRIGGER ingests_lost")
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
    assert out.returncode in (0, 1), out.stderr.decode()
    with catalog_edit(arch) as c:
        assert c.execute("SELECT count(*) FROM segments").fetchone()[0] == 3
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_verify_writes_nothing_into_a_catalog_with_another_schema(arch: Path) -> None:
    """verify re-hashes every object and names the trigger, but records no run and stamps no object: its own
    write would fire the trigger (here one that would rewrite every stamp)."""
    edit(
        arch,
        "CREATE TRIGGER stamps_moved AFTER UPDATE OF last_verified_ns ON objects "
        "BEGIN UPDATE objects SET last_verified_ns = 1; END",
    )
    out = run_cli("verify", arch, "--json")
    assert out.returncode == 1, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["checked"] == 2 and report["run"]["id"] is None
    assert [(f["kind"], f["table"]) for f in report["findings"]] == [("ledger_mismatch", "stamps_moved")]
    with catalog_edit(arch) as c:
        assert c.execute("SELECT count(*) FROM verify_runs").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM objects WHERE last_verified_ns IS NOT NULL").fetchone()[0] == 0


def test_a_check_constraint_edited_into_a_table_is_named_and_refuses_writes(arch: Path) -> None:
    """A CHECK written into findings' CREATE statement (PRAGMA writable_schema, as a hostile review did): verify
    named nothing while every later ingest failed on it. Now verify names the table and the CHECK, and ingest
    refuses before writing, pointing to the rebuild, which makes the table as custodes makes it."""
    with catalog_edit(arch) as c:
        c.execute("PRAGMA writable_schema = ON")
        c.execute(
            "UPDATE sqlite_master SET sql = substr(sql, 1, length(sql) - 1) || ', CHECK (kind <> ''no_moov''))' "
            "WHERE name = 'findings'"
        )
        c.execute("PRAGMA writable_schema = OFF")
    named(arch, "ledger_mismatch", "findings", "CHECK (kind <> 'no_moov') extra")
    vol = arch.parent / "BWC0003"
    vol.mkdir()
    shutil.copy(THREE_RECORDINGS[2], vol / THREE_RECORDINGS[2].name)
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic")
    assert out.returncode == 2 and b"table findings is not as custodes makes it" in out.stderr, out.stderr.decode()
    out = run_cli("ledger", "rebuild-catalog", arch, "--replace", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["replaced"], out.stderr.decode()
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_a_foreign_key_dropped_from_a_table_is_named(arch: Path) -> None:
    """holds made again as custodes makes it but for its reference to segments: a hold could then name no
    recording at all."""
    remake(
        arch,
        "holds",
        "id INTEGER PRIMARY KEY, segment_id INTEGER NOT NULL, reason TEXT NOT NULL, by TEXT NOT NULL, "
        "placed_ns INTEGER NOT NULL, released_ns INTEGER, released_by TEXT",
    )
    named(arch, "ledger_mismatch", "holds", "its foreign keys (REFERENCES) differ")


def test_an_index_made_again_with_another_collation_says_so(arch: Path) -> None:
    """It read "over (device_id, start_ns), not (device_id, start_ns)"."""
    edit(
        arch,
        "DROP INDEX segments_by_device_time",
        "CREATE INDEX segments_by_device_time ON segments(device_id COLLATE NOCASE, start_ns)",
    )
    named(
        arch,
        "ledger_mismatch",
        "segments_by_device_time",
        "over (device_id COLLATE nocase, start_ns), not (device_id, start_ns)",
    )


def test_a_table_renamed_in_another_case_is_no_difference(arch: Path) -> None:
    """SQLite matches names whatever their case: CASES is the table cases to every statement custodes makes (it
    was named missing and extra)."""
    edit(arch, "ALTER TABLE cases RENAME TO CASES_", "ALTER TABLE CASES_ RENAME TO CASES")
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def planted(arch: Path, *statements: str) -> None:
    """Statements run with PRAGMA writable_schema on, as a hostile review made its edits."""
    with catalog_edit(arch, foreign_keys=False) as c:
        c.execute("PRAGMA writable_schema = ON")
        for s in statements:
            c.execute(s)
        c.execute("PRAGMA writable_schema = OFF")


def test_a_trigger_named_like_sqlites_own_objects_is_named(arch: Path) -> None:
    """A trigger named sqlite_stat_h (writable_schema lets one be made) dropping every hold: the check skipped names
    with SQLite's prefixes, so `retention hold` said "hold 1" with no row and no entry, and verify said intact."""
    planted(
        arch,
        "CREATE TRIGGER sqlite_stat_h BEFORE INSERT ON holds BEGIN SELECT RAISE(IGNORE); END",
        "CREATE TRIGGER sqlite_autoindex_h BEFORE INSERT ON ledger BEGIN SELECT RAISE(IGNORE); END",
    )
    named(arch, "ledger_mismatch", "sqlite_stat_h", "trigger sqlite_stat_h is in the catalog's schema")
    named(arch, "ledger_mismatch", "sqlite_autoindex_h", "trigger sqlite_autoindex_h is in the catalog's schema")
    out = run_cli("retention", "hold", arch, "--segment", "1", "--reason", "court order 12")
    assert out.returncode == 2 and b"custodes writes nothing into this catalog" in out.stderr, out.stderr.decode()


def test_a_generated_column_added_by_alter_table_is_named(arch: Path) -> None:
    """No writable_schema needed: NOT NULL ON CONFLICT IGNORE on a generated column that is NULL drops every
    insert into holds without an error; table_info does not list such a column."""
    edit(arch, "ALTER TABLE holds ADD COLUMN x INTEGER GENERATED ALWAYS AS (NULL) VIRTUAL NOT NULL ON CONFLICT IGNORE")
    named(arch, "ledger_mismatch", "holds", "column x extra")


@pytest.mark.parametrize(
    ("clause", "said"),
    [
        # A CHECK hidden from a search for the word CHECK followed by "(": by a comment, a line comment, a quote
        # inside a comment in the expression (a hostile review's three ways).
        ("CHECK /* x */ (reason <> 'court order 12')", "CHECK (reason <> 'court order 12') extra"),
        ("CHECK -- x\n(reason <> 'court order 12')", "CHECK (reason <> 'court order 12') extra"),
        ("CHECK (reason <> 'court order 12' /* ' */)", "CHECK (reason <> 'court order 12') extra"),
        ("cHeCk(reason<>'court order 12')", "CHECK (reason <> 'court order 12') extra"),
    ],
)
def test_a_check_hidden_in_a_tables_statement_is_named(arch: Path, clause: str, said: str) -> None:
    quoted = clause.replace("'", "''")
    planted(
        arch,
        f"UPDATE sqlite_master SET sql = replace(sql, 'released_by TEXT)', 'released_by TEXT, {quoted})') "
        "WHERE name = 'holds'",
    )
    named(arch, "ledger_mismatch", "holds", said)


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        ("reason TEXT NOT NULL", "reason TEXT NOT NULL COLLATE NOCASE", "collate nocase"),
        ("REFERENCES segments(id)", "REFERENCES segments(id) DEFERRABLE INITIALLY DEFERRED", "deferrable"),
        ("released_by TEXT)", "released_by TEXT) STRICT", "strict"),
        ("id INTEGER PRIMARY KEY", "id INTEGER PRIMARY KEY ON CONFLICT IGNORE", "on conflict ignore"),
    ],
)
def test_a_clause_no_pragma_lists_is_named_by_the_statement(arch: Path, before: str, after: str, said: str) -> None:
    """COLLATE on a column, DEFERRABLE, STRICT, ON CONFLICT: no pragma lists them; the table's whole statement is
    compared, and the message shows where it parts from custodes' own."""
    planted(arch, f"UPDATE sqlite_master SET sql = replace(sql, '{before}', '{after}') WHERE name = 'holds'")
    named(arch, "ledger_mismatch", "holds", said)


def test_an_index_made_partial_is_named_by_its_statement(arch: Path) -> None:
    """Same table, columns and uniqueness: only a WHERE added, which leaves every row out of the index."""
    edit(
        arch,
        "DROP INDEX segments_by_device_time",
        "CREATE INDEX segments_by_device_time ON segments(device_id, start_ns) WHERE 0",
    )
    named(arch, "ledger_mismatch", "segments_by_device_time", "where 0")


def test_a_dropped_column_is_one_finding_not_one_per_row(arch: Path) -> None:
    """ALTER TABLE findings DROP COLUMN path: the schema finding names the column; the rows, all still there, were
    each called "missing ... not in the catalog", burying it. They are compared over the columns left."""
    edit(arch, "ALTER TABLE findings DROP COLUMN path")
    found = findings(arch, "verify")
    assert [(f["kind"], f["table"]) for f in found] == [("ledger_mismatch", "findings")], found
    assert "column path missing" in found[0]["message"]


def test_a_trigger_in_the_accounts_store_is_named_and_refuses_its_writes(arch: Path) -> None:
    """accounts.sqlite (the web front end's run state): a trigger resetting the failures count kept an account open
    through any number of wrong passwords while verify said intact (a hostile review). verify names it; account
    writes are refused, nothing changed; dropped, all works again."""
    password = b"a long enough password 1\n"
    assert run_cli("user", "add", arch, "bob", "--password-stdin", input=password).returncode == 0
    accounts = arch / "accounts.sqlite"
    with catalog_edit(arch, foreign_keys=False) as c:  # the same sqlite3 work on the other file
        c.execute(f"ATTACH DATABASE '{accounts}' AS acc")
        c.execute(
            "CREATE TRIGGER acc.keep_open AFTER UPDATE OF failures ON accounts "
            "BEGIN UPDATE accounts SET failures = 0, locked = 0 WHERE name = NEW.name; END"
        )
    for command in (("verify",), ("ledger", "verify")):
        found = findings(arch, *command)
        assert [(f["kind"], f["table"]) for f in found] == [("ledger_mismatch", "keep_open")], found
        assert "trigger keep_open is in accounts.sqlite's schema" in found[0]["message"]
    out = run_cli("user", "disable", arch, "bob")
    assert out.returncode == 2 and b"custodes writes nothing into this accounts store" in out.stderr, out.stderr
    assert b"trigger keep_open" in out.stderr
    with catalog_edit(arch, foreign_keys=False) as c:
        c.execute(f"ATTACH DATABASE '{accounts}' AS acc")
        assert c.execute("SELECT disabled FROM acc.accounts WHERE name = 'bob'").fetchone() == (0,)
        c.execute("DROP TRIGGER acc.keep_open")
    assert run_cli("user", "disable", arch, "bob").returncode == 0
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_a_trigger_bearing_the_name_of_one_of_custodes_indexes_is_named(arch: Path) -> None:
    """Triggers have a namespace of their own: one named holds_by_segment, made before that index was made again,
    was overwritten by the index's shape and never compared while every hold vanished (a hostile review)."""
    edit(
        arch,
        "CREATE TRIGGER holds_by_segment BEFORE INSERT ON holds BEGIN SELECT RAISE(IGNORE); END",
        "DROP INDEX holds_by_segment",
        "CREATE INDEX holds_by_segment ON holds(segment_id)",
    )
    named(arch, "ledger_mismatch", "holds_by_segment", "trigger holds_by_segment is in the catalog's schema")
    out = run_cli("retention", "hold", arch, "--segment", "1", "--reason", "court order 12")
    assert out.returncode == 2 and b"trigger holds_by_segment" in out.stderr, out.stderr.decode()


def test_a_name_sqlite_does_not_fold_is_another_object(arch: Path) -> None:
    """SQLite folds only ASCII letters: a decoy table named with a KELVIN SIGN (U+212A) took the place of a changed
    `checkpoints` under Python's lower(), and verify said intact."""
    edit(
        arch,
        'CREATE TABLE "chec\u212apoints" AS SELECT * FROM checkpoints',
        "ALTER TABLE checkpoints ADD COLUMN x INTEGER",
    )
    named(arch, "ledger_mismatch", "checkpoints", "column x extra")
    named(arch, "ledger_mismatch", "chec\u212apoints", "table chec\u212apoints is in the catalog's schema")


def test_an_empty_accounts_file_is_no_difference(arch: Path) -> None:
    """`sqlite3 ARCH/accounts.sqlite` with nothing typed leaves an empty file: no store was ever made there."""
    (arch / "accounts.sqlite").touch()
    assert schema_findings(arch, code=0) == {"verify": set(), "ledger verify": set()}


def test_a_difference_no_entry_is_known_to_have_made_names_the_ledger_not_a_blank() -> None:
    """A row the replay made that no entry is known to have touched (a second review met "segments row 7 is in the
    ledger (entry ) but not in the catalog" and "... from what ledger entry  recorded")."""
    missing = replay.Difference("missing", "segments", (7,), ())
    differs = replay.Difference("ledger_mismatch", "segments", (7,), (), ("officer_id",))
    assert missing.message() == "segments row 7 is in the ledger but not in the catalog"
    assert differs.message() == "segments row 7: officer_id differs from what the ledger recorded"
    named = replay.Difference("ledger_mismatch", "segments", (7,), (12, 30), ("officer_id", "unit"))
    assert named.message() == "segments row 7: officer_id, unit differ from what ledger entries 12, 30 recorded"
