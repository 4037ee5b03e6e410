"""The catalog's schema: one migration per schema version, applied in order, each in its own transaction.

A migration is only ever appended: an archive written by an older custodes is brought forward on
open, and one written by a newer custodes is refused rather than misread."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from custodes.catalog import codes

MIGRATIONS: list[str] = [
    # 1: the first catalog.
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY, kind TEXT, vendor TEXT, model TEXT, serial TEXT,
        officer_id TEXT, officer_name TEXT, unit_id TEXT, unit_name TEXT, updated_ns INTEGER);
    CREATE TABLE ingests (
        id INTEGER PRIMARY KEY, volume TEXT NOT NULL, driver TEXT NOT NULL, device_id TEXT NOT NULL,
        started_ns INTEGER NOT NULL, finished_ns INTEGER, result TEXT);
    CREATE TABLE objects (
        sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, digests TEXT NOT NULL, head_sha256 TEXT NOT NULL,
        stored_ns INTEGER NOT NULL, last_verified_ns INTEGER);
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, original_name TEXT NOT NULL, kind TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES objects(sha256), size INTEGER NOT NULL,
        start_ns INTEGER, end_ns INTEGER, start_source TEXT, corrected_start_ns INTEGER, corrected_end_ns INTEGER,
        sequence INTEGER, important INTEGER NOT NULL DEFAULT 0, recording TEXT, chapter INTEGER,
        officer_id TEXT, container TEXT, ingest_id INTEGER NOT NULL REFERENCES ingests(id),
        ingested_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL,
        UNIQUE (device_id, original_name, sha256));
    CREATE INDEX segments_by_device_time ON segments(device_id, start_ns);
    CREATE TABLE findings (
        id INTEGER PRIMARY KEY, ingest_id INTEGER, segment_id INTEGER, kind TEXT NOT NULL, severity TEXT NOT NULL,
        device_id TEXT, path TEXT, start_ns INTEGER, end_ns INTEGER, detail TEXT NOT NULL);
    CREATE TABLE clock_readings (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, device_ns INTEGER NOT NULL, trusted_ns INTEGER NOT NULL,
        source TEXT NOT NULL, ingest_id INTEGER, UNIQUE (device_id, device_ns, trusted_ns, source));
    CREATE TABLE ledger (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf BLOB NOT NULL);
    CREATE TABLE checkpoints (
        size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, created_ns INTEGER NOT NULL);
    """,
    # 2: enforcement tasks, gap explanations, device event logs.
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
        officers TEXT NOT NULL, devices TEXT NOT NULL, imported_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL);
    CREATE TABLE gap_explanations (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
        cause TEXT NOT NULL, note TEXT, segment_id INTEGER REFERENCES segments(id), offset_ns INTEGER,
        source TEXT NOT NULL, by TEXT NOT NULL, created_ns INTEGER NOT NULL, ledger_seq INTEGER);
    CREATE INDEX gap_explanations_by_device ON gap_explanations(device_id, start_ns);
    CREATE TABLE device_events (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, time_ns INTEGER NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL, ingest_id INTEGER, UNIQUE (device_id, time_ns, kind, detail));
    """,
    # 3: access (Art. 22, 24) and retention (Art. 19, 20).
    """
    ALTER TABLE segments ADD COLUMN classification INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE segments ADD COLUMN purged_ns INTEGER;
    ALTER TABLE objects ADD COLUMN purged_ns INTEGER;
    CREATE TABLE access_requests (
        id INTEGER PRIMARY KEY, requester TEXT NOT NULL, segments TEXT NOT NULL, reason TEXT NOT NULL,
        purpose TEXT NOT NULL, status TEXT NOT NULL, requested_ns INTEGER NOT NULL, decided_by TEXT,
        decided_ns INTEGER, valid_from_ns INTEGER, valid_until_ns INTEGER);
    CREATE TABLE access_log (
        id INTEGER PRIMARY KEY, request_id INTEGER, person TEXT NOT NULL, action TEXT NOT NULL, segment_id INTEGER,
        ok INTEGER NOT NULL, detail TEXT NOT NULL, time_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL);
    CREATE TABLE cases (id TEXT PRIMARY KEY, retention_until_ns INTEGER, description TEXT NOT NULL DEFAULT '');
    CREATE TABLE case_segments (
        case_id TEXT NOT NULL REFERENCES cases(id), segment_id INTEGER NOT NULL REFERENCES segments(id),
        PRIMARY KEY (case_id, segment_id));
    CREATE TABLE long_term (
        segment_id INTEGER PRIMARY KEY REFERENCES segments(id), reason TEXT NOT NULL, by TEXT NOT NULL,
        created_ns INTEGER NOT NULL);
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY, segment_id INTEGER NOT NULL REFERENCES segments(id), reason TEXT NOT NULL,
        by TEXT NOT NULL, placed_ns INTEGER NOT NULL, released_ns INTEGER, released_by TEXT);
    CREATE TABLE tombstones (sha256 TEXT PRIMARY KEY, segment_ids TEXT NOT NULL, request_id INTEGER NOT NULL,
        by TEXT NOT NULL, time_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL);
    """,
    # 4: lookups that run once per object or per segment (verify, retention, reports) must not scan.
    """
    CREATE INDEX segments_by_object ON segments(sha256);
    CREATE INDEX holds_by_segment ON holds(segment_id);
    CREATE INDEX case_segments_by_segment ON case_segments(segment_id);
    CREATE INDEX access_log_by_time ON access_log(time_ns);
    """,
    # 5: names that are not UTF-8 kept byte for byte (original_name holds drivers.name_text, this the
    # exact bytes; NULL when that text is the name itself), and ingest intents: ingest notes each object here, in its
    # own transaction, before linking it into the store, so verify tells an object of an ingest
    # under way or interrupted (pending) from a file nobody recorded (unexpected).
    """
    ALTER TABLE segments ADD COLUMN original_name_bytes BLOB;
    CREATE TABLE ingest_intents (
        sha256 TEXT NOT NULL, ingest_id INTEGER NOT NULL REFERENCES ingests(id), created_ns INTEGER NOT NULL,
        PRIMARY KEY (sha256, ingest_id));
    """,
    # 6: the catalog is a view of the ledger (catalog/replay.py). An archive written before keeps facts its
    # ledger entries do not hold (findings, device logs, a segment's officer ...): its first write transaction
    # after this migration adopts them with one `catalog_adopt` entry (replay.adopt_pending); a new catalog has
    # nothing to adopt. The flag is set here only when the ledger already has entries.
    """
    CREATE TABLE replay_state (id INTEGER PRIMARY KEY CHECK (id = 1), adopt_pending INTEGER NOT NULL);
    INSERT INTO replay_state (id, adopt_pending) SELECT 1, EXISTS (SELECT 1 FROM ledger);
    """,
    # 7: every command finds entries by type (the policy in force on every open, the key rotations on every
    # checkpoint): an indexed copy of each entry's ``type`` instead of a scan of the whole ledger. The column is
    # written by Ledger.append from the entry it appends; verify reports a row whose column disagrees with its
    # entry (hiding the latest policy entry from the index would put an older policy in force).
    """
    ALTER TABLE ledger ADD COLUMN type TEXT;
    UPDATE ledger SET type = CASE WHEN json_valid(CAST(entry AS TEXT))
        AND json_type(CAST(entry AS TEXT), '$.type') = 'text' THEN json_extract(CAST(entry AS TEXT), '$.type') END;
    CREATE INDEX ledger_by_type ON ledger(type, seq);
    """,
    # 8: refusals of accounts without a role being counted (custodes.access): beyond the policy's limit in a
    # window they are counted here, in the refusal's own transaction, and ledgered as one entry when the window
    # closes. Run state, not a fact (replay.NOT_FACTS): what it counts is in the ledger once the window closes.
    """
    CREATE TABLE refusal_windows (
        person TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, logged INTEGER NOT NULL, counted INTEGER NOT NULL,
        first_ns INTEGER, last_ns INTEGER, actions TEXT NOT NULL);
    """,
    # 9: a checkpoint keeps the Merkle frontier of its size (the roots of the perfect subtrees, 32 bytes each), so
    # the next checkpoint hashes only the entries appended since, not the whole ledger again (at 10^6 entries,
    # about a second for every ingest and every access step). A cache: NULL in older rows, and a frontier whose
    # root is not its checkpoint's is not used (Archive.checkpoint).
    """
    ALTER TABLE checkpoints ADD COLUMN frontier BLOB;
    """,
    # 10: verification runs (custodes.schedule): a run's selection (slice, age, quick) and when it started, so a
    # run stopped by its budget or killed resumes where it was (objects stamped verified since it started are
    # not re-hashed); objects found by age and by when they were last re-hashed. Run state, not a fact.
    """
    CREATE TABLE verify_runs (
        id INTEGER PRIMARY KEY, selection TEXT NOT NULL, started_ns INTEGER NOT NULL, finished_ns INTEGER,
        objects INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, stopped TEXT);
    CREATE INDEX objects_by_last_verified ON objects(last_verified_ns);
    """,
    # 11: pre-use checks (Art. 10: before recording the officer checks the device and sets its clock), read by a
    # driver at docking (ingest_begin entries, ingest_id set) or recorded by hand (device_check entries). Offsets
    # are device clock - station clock; NULL where the check did not say. Stands alone: the device registry's
    # tables are not needed (a check may name a device the catalog has not seen footage of yet).
    """
    CREATE TABLE device_checks (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, time_ns INTEGER NOT NULL, source TEXT NOT NULL,
        by TEXT, clock_offset_ns INTEGER, battery_percent INTEGER, free_bytes INTEGER, faults TEXT NOT NULL,
        note TEXT NOT NULL, ingest_id INTEGER, ledger_seq INTEGER NOT NULL,
        UNIQUE (device_id, time_ns, source));
    CREATE INDEX device_checks_by_device ON device_checks(device_id, time_ns);
    """,
    # 12: the device registry (Art. 6), each device's statuses with the time each began, and who held which device
    # when (Art. 9, 25): custodes.devices. Facts, made from their ledger entries (catalog.replay). Depends on no
    # other migration's tables: the footage a device recorded is joined at report time, not here.
    """
    CREATE TABLE registry (
        device_id TEXT PRIMARY KEY, kind TEXT NOT NULL, vendor TEXT NOT NULL, model TEXT NOT NULL,
        serial TEXT NOT NULL, unit TEXT NOT NULL, status TEXT NOT NULL, status_since_ns INTEGER NOT NULL,
        by TEXT NOT NULL, updated_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL);
    CREATE TABLE registry_statuses (
        device_id TEXT NOT NULL, since_ns INTEGER NOT NULL, status TEXT NOT NULL, ledger_seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, since_ns));
    CREATE TABLE assignments (
        device_id TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER, officer_id TEXT NOT NULL,
        by TEXT NOT NULL, created_ns INTEGER NOT NULL, ledger_seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, start_ns));
    """,
    # 13: the query API's reads by device (custodes.query; the review page's device and recording pages,
    # /api/v1/segments?device=, /api/v1/findings?device=). segments_by_device_time orders a device's rows by time,
    # so every page of ``device_id = ? AND id > ? ORDER BY id LIMIT n`` read and sorted all the device's rows after
    # ``id``: 38 ms a page of 500 for a device of 10^5 segments; by (device_id, id) a page is read in order and
    # stops at n. Findings had no index: a device's findings, or one recording's, were a scan of every finding.
    """
    CREATE INDEX segments_by_device ON segments(device_id, id);
    CREATE INDEX findings_by_device ON findings(device_id, id);
    CREATE INDEX findings_by_device_segment ON findings(device_id, segment_id);
    """,
    # 14: an ingest notes, with each intent, the ledger entry it would record for each file of those bytes
    # (ingest_notes: JSON of every fact of the `ingest` entry but its segment id and time, the driver's findings of
    # the file, when the ingest began; a row a file, as a volume may hold the same bytes under many names). An
    # ingest killed after storing a file, whose file is gone from the volume before the re-run, left bytes in the
    # store that nothing recorded; the re-run, which finishes the interrupted ingest, records them from this
    # (custodes.ingest._recover). Run state, not a fact (replay.NOT_FACTS). An intent and its notes are dropped
    # when the ingest finishes with the object recorded (Ingests.finish): intents were kept for ever, one row per
    # object ever stored; what is left are the objects nothing records (verify: unrecorded). Those an older
    # custodes kept go here.
    """
    CREATE TABLE ingest_notes (
        ingest_id INTEGER NOT NULL REFERENCES ingests(id), sha256 TEXT NOT NULL, entry TEXT NOT NULL);
    CREATE INDEX ingest_notes_by_intent ON ingest_notes(ingest_id, sha256);
    DELETE FROM ingest_intents WHERE sha256 IN (SELECT sha256 FROM objects)
        AND ingest_id IN (SELECT id FROM ingests WHERE finished_ns IS NOT NULL);
    CREATE INDEX ingest_intents_by_ingest ON ingest_intents(ingest_id);
    """,
    # 15: the ctime of ledger/checkpoints/ right after a checkpoint's file was linked in (custodes.archive): the
    # next checkpoint looks for lost checkpoint files only when the folder's ctime moved since. The files' own
    # times would not do: a chmod, a backup's hard link or a copy put back moves them, and hid a deletion from
    # every later checkpoint (a hostile review). A cache: NULL in older and rebuilt rows (then it looks).
    """
    ALTER TABLE checkpoints ADD COLUMN folder_ctime_ns INTEGER;
    """,
    # 16: what the latest verify that looked at an object found wrong with it, by copy ("first", "replica"), until
    # a verify finds it sound again or a repair mends it (custodes.verify, custodes.repair): a report made without
    # re-hashing said integrity ok, 0 findings, after verify had found an object modified (a hostile review). Run
    # state, not a fact (replay.NOT_FACTS).
    """
    CREATE TABLE object_findings (
        sha256 TEXT NOT NULL, copy TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
        found_ns INTEGER NOT NULL, PRIMARY KEY (sha256, copy, kind));
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[str],
    transaction: Callable[[], AbstractContextManager[object]],
    newer: Callable[[int], Exception],
    failed: Callable[[str], Exception],
) -> None:
    """Bring the database behind ``conn`` from its ``PRAGMA user_version`` to ``len(migrations)``, one migration
    per ``transaction()`` (its statements and the new version commit together, or none of them); a version
    beyond ``migrations`` (a newer custodes wrote it) raises ``newer(version)``. A version no custodes wrote (below
    0, or lower than what the database already holds: set by hand) raises ``failed(why)`` before any step runs: a
    step run again over what it made can change rows before SQLite refuses one of its statements (a hostile review
    had adopt_pending set again that way, by a read-only command). The catalog and the web's accounts.sqlite both
    keep their schema so."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise newer(version)
    if version == len(migrations):
        return
    way_back = (
        f"Nothing was run. Set it back to the version it was (this custodes makes {len(migrations)}), then run "
        "`custodes verify`"
    )
    if version < 0:
        raise failed(f"its schema version (PRAGMA user_version) reads {version}, which no custodes writes. {way_back}")
    if ahead := _made_later(conn, migrations, version):
        raise failed(
            f"its schema version (PRAGMA user_version) reads {version}, yet it already holds {ahead}, which a later "
            f"version makes: the version was lowered by hand. {way_back}"
        )
    for v in range(version, len(migrations)):
        try:
            with transaction():
                for statement in migrations[v].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {v + 1}")
        except sqlite3.Error as e:  # the step's transaction was rolled back: it wrote nothing
            # A full disk, a read-only file: said as such by the caller, not as the schema's.
            if codes.of_the_environment(e):
                raise
            raise failed(
                f"bringing its schema from version {v} to {v + 1} failed ({e}); that step wrote nothing"
            ) from e


def _made_later(conn: sqlite3.Connection, migrations: Sequence[str], version: int) -> str:
    """The first object or column the database holds that only a step after ``version`` makes ("" if none)."""
    before, after, live = _shapes_at(migrations, version), _shapes_at(migrations, len(migrations)), _shapes(conn)
    for name, (kind, shape) in sorted(after.items()):
        if name not in before:
            if name in live:
                return f"{live[name][0]} {_shown(name)}"
        elif kind == "table" and live.get(name, ("",))[0] == "table":
            later = (_column_names(shape) - _column_names(before[name][1])) & _column_names(live[name][1])
            if later:
                return f"column {name}.{min(later)}"
    return ""


def _shapes_at(migrations: Sequence[str], version: int) -> dict[str, Shape]:
    """The schema the first ``version`` steps make, in memory."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in migrations[:version]:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        return _shapes(conn)
    finally:
        conn.close()


# --- the live schema against the one custodes makes ------------------------------------------------------

#: What one schema object is: its type, and what it is made of (a table's columns and keys, an index's table and
#: columns, a trigger's or view's table). Compared as a whole; a table's parts are named apart in the message.
Shape = tuple[str, tuple[object, ...]]


@dataclass(frozen=True)
class SchemaDifference:
    """One object of the live catalog's schema that is not as custodes makes it: ``missing`` (custodes makes it,
    the catalog lacks it), ``extra`` (the catalog has it, custodes makes none: a trigger, a view, an index or a
    table someone added) or ``changed`` (made otherwise: ``detail`` says how)."""

    kind: str
    type: str  # table, index, trigger, view
    name: str
    detail: str = ""
    columns_missing: tuple[str, ...] = ()  # a table's columns custodes makes that it lacks
    live_type: str = ""  # changed: what the catalog has under this name, when not a ``type``

    @property
    def unreadable(self) -> bool:
        """A table custodes reads that is gone, or lacks a column custodes reads from it."""
        return self.type == "table" and (self.kind == "missing" or bool(self.columns_missing or self.live_type))

    def message(self, of: str = "the catalog") -> str:
        what = f"{self.type} {self.name}"
        if self.kind == "missing":
            text = f"{what} is missing from {of}'s schema"
        elif self.kind == "extra":
            text = f"{what} is in {of}'s schema but custodes makes no such {self.type}"
        else:
            text = f"{what} is not as custodes makes it"
        return f"{text}{': ' + self.detail if self.detail else ''}"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _internal(kind: str, name: str, sql: str | None) -> bool:
    """SQLite's own objects, and only those: a table's UNIQUE and PRIMARY KEY indexes (an index with no CREATE
    statement; compared as part of its table, under whatever name a rename left it) and the statistics tables
    ANALYZE keeps (they change no row and no answer). Judged by what the object is, not by its name alone: a
    trigger named ``sqlite_stat_x`` (PRAGMA writable_schema makes one) hid from a check that went by the prefix."""
    if kind == "index":
        return name.startswith("sqlite_autoindex_") and sql is None
    return kind == "table" and name in _STATISTICS


_STATISTICS = frozenset({"sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"})


def _fold(name: object) -> object:
    """A name as SQLite matches it: names of tables, columns, indexes and collations, and declared types, are the
    same whatever their ASCII case (``ALTER TABLE cases RENAME TO CASES`` changes nothing custodes reads). Only
    ASCII: SQLite folds no other letter, and Python's own lower() made a decoy table named with a KELVIN SIGN
    (U+212A) stand for ``checkpoints`` while the real one was changed (a hostile review)."""
    return name.translate(_ASCII_LOWER) if isinstance(name, str) else name


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: A trigger's key among the shapes: triggers have a namespace of their own in SQLite, so a trigger may bear the
#: name of one of custodes' indexes (a hostile review's did, and was overwritten by that index's shape, unseen).
_TRIGGER = "\x00trigger"


def _shown(key: str) -> str:
    return key.split("\x00", 1)[0]


#: One token of an SQL statement: a string literal, a number, a name or keyword, an operator, or one character
#: of punctuation. Blanks and comments are skipped (they carry no meaning).
_TOKEN = re.compile(
    r"""\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$)"""  # blanks, comments: skipped
    r"""|(?P<string>'(?:[^']|'')*'?)"""  # a string literal, its case kept
    r"""|(?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)"""  # a quoted name
    r"""|(?P<word>[^\W\d]\w*|\$\w*)"""  # a name or keyword
    r"""|(?P<number>\d[\w.]*|\.\d[\w.]*)"""
    r"""|(?P<other>->>|->|<>|<=|>=|!=|==|\|\||<<|>>|.)""",  # an operator SQLite reads as one
    re.DOTALL,
)


def _tokens(sql: str) -> tuple[str, ...]:
    """A CREATE statement as SQLite reads it: names and keywords whatever their case and quoting (a rename
    rewrites a name as ``"cases"``), string literals as written, blanks and comments dropped. Two statements with
    the same tokens make the same object. The whole statement is compared, so a clause nothing else lists
    (a CHECK, a column's COLLATE or GENERATED ALWAYS, ON CONFLICT, DEFERRABLE, STRICT, a partial index's WHERE)
    cannot hide: a hostile review hid CHECKs from a search for the word CHECK behind comments."""
    out: list[str] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind is None:
            continue
        text = m.group(kind)
        if kind == "quoted":
            close = {"[": "]"}.get(text[0], text[0])
            inner = text[1:-1] if len(text) > 1 and text.endswith(close) else text[1:]
            text = inner.replace(close * 2, close) if close != "]" else inner
            out.append(text.translate(_ASCII_LOWER))
        elif kind in ("word", "number"):
            out.append(text.translate(_ASCII_LOWER))
        else:
            out.append(text)
    return tuple(out)


def _checks(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """The CHECK constraints of a table's statement (:func:`_tokens`), each its expression, in order."""
    found = []
    for i, t in enumerate(tokens):
        if t == "check" and i + 1 < len(tokens) and tokens[i + 1] == "(":
            depth, j = 0, i + 1
            while j < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                if depth == 0:
                    break
                j += 1
            found.append(" ".join(tokens[i + 2 : j]))
    return tuple(sorted(found))


def _index_columns(conn: sqlite3.Connection, db: str, index: str) -> tuple[tuple[object, ...], ...]:
    """An index's key columns in order: name (None for an expression), descending, collation."""
    rows = conn.execute(f"PRAGMA {db}.index_xinfo({_quoted(index)})").fetchall()
    return tuple((_fold(r[2]), r[3], _fold(r[4])) for r in rows if r[5])


def _shapes(conn: sqlite3.Connection, db: str = "main") -> dict[str, Shape]:
    """Every object of ``db``'s schema (SQLite's own left out, :func:`_internal`) by name, as SQLite matches names
    (:func:`_fold`). A table's and an index's shape end with their statement's tokens (:func:`_tokens`): the
    parts before them only name what differs."""
    out: dict[str, Shape] = {}
    master = conn.execute(f"SELECT type, name, tbl_name, sql FROM {db}.sqlite_master").fetchall()  # noqa: S608
    for kind, given, table, sql in master:
        if _internal(kind, given, sql):
            continue
        name, table_name, tokens = str(_fold(given)), _fold(table), _tokens(sql or "")
        if kind == "trigger":
            name += _TRIGGER
        while name in out:  # a second object of one name (writable_schema makes one): never in place of the first
            name += "\x00again"
        if kind == "table":
            # table_xinfo, not table_info: a generated column is hidden from the latter (one added by a plain
            # ALTER TABLE, NOT NULL ON CONFLICT IGNORE, made SQLite drop custodes' rows unseen).
            columns = tuple(
                (_fold(r[1]), _fold(r[2]), *r[3:7]) for r in conn.execute(f"PRAGMA {db}.table_xinfo({_quoted(given)})")
            )
            keys = tuple(
                sorted(
                    (r[2], r[3], _index_columns(conn, db, r[1]))
                    for r in conn.execute(f"PRAGMA {db}.index_list({_quoted(given)})")
                    if r[3] in ("pk", "u")
                )
            )
            # (table, from, to, on update, on delete, match) of each reference, in the order SQLite lists them.
            references = tuple(
                sorted(
                    (*map(_fold, r[2:5]), *r[5:8])
                    for r in conn.execute(f"PRAGMA {db}.foreign_key_list({_quoted(given)})")
                )
            )
            out[name] = (kind, (columns, keys, references, _checks(tokens), tokens))
        elif kind == "index":
            listed = {r[1]: r for r in conn.execute(f"PRAGMA {db}.index_list({_quoted(table)})")}
            unique, partial = (listed[given][2], listed[given][4]) if given in listed else (None, None)
            out[name] = (kind, (table_name, unique, partial, _index_columns(conn, db, given), tokens))
        else:
            out[name] = (kind, (table_name,))
    return out


def _first_difference(want: object, have: object) -> str:
    """Where two statements' tokens first part, a few tokens either side of it, as it is and as custodes makes it."""
    assert isinstance(want, tuple) and isinstance(have, tuple)
    at = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), min(len(want), len(have)))

    def around(tokens: tuple[str, ...]) -> str:
        part = " ".join(tokens[max(0, at - 4) : at + 6])
        return ("... " if at > 4 else "") + part + (" ..." if at + 6 < len(tokens) else "")

    return f"its statement reads `{around(have)}` where custodes makes `{around(want)}`"


def _made_shapes() -> dict[str, Shape]:
    """The schema this custodes makes: :data:`MIGRATIONS` applied to an empty catalog in memory, as
    :meth:`Catalog.open` applies them to a new archive and brings an older one forward (each migration only
    ever appended, so both end in the same schema). Made once per process."""
    if not _MADE:
        _MADE.update(_shapes_at(MIGRATIONS, len(MIGRATIONS)))
    return _MADE


_MADE: dict[str, Shape] = {}


def made_tables() -> set[str]:
    """The names of the tables custodes makes (as SQLite matches names: :func:`_fold`)."""
    return {name for name, (kind, _) in _made_shapes().items() if kind == "table"}


def table_names(conn: sqlite3.Connection) -> list[str]:
    """The names of the tables of ``main``, folded as :func:`made_tables`'s."""
    return [str(_fold(n)) for (n,) in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]


def _column_names(table: tuple[object, ...]) -> set[str]:
    columns = table[0]
    assert isinstance(columns, tuple)
    return {str(c[0]) for c in columns}


def _table_detail(made: tuple[object, ...], live: tuple[object, ...]) -> str:
    """How a table differs: its columns missing, extra or declared otherwise, its keys, references or CHECKs."""
    (want_columns, want_keys, want_references, want_checks, want_tokens) = made
    (have_columns, have_keys, have_references, have_checks, have_tokens) = live
    assert isinstance(want_columns, tuple) and isinstance(have_columns, tuple)
    want = {c[0]: c for c in want_columns}
    have = {c[0]: c for c in have_columns}
    parts = []
    if gone := [n for n in want if n not in have]:
        parts.append(f"column{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))} missing")
    if added := [n for n in have if n not in want]:
        parts.append(f"column{'s' if len(added) > 1 else ''} {', '.join(map(str, added))} extra")
    if other := [n for n in want if n in have and want[n] != have[n]]:
        parts.append(f"column{'s' if len(other) > 1 else ''} {', '.join(map(str, other))} declared otherwise")
    if not parts and [c[0] for c in want_columns] != [c[0] for c in have_columns]:
        parts.append("columns in another order")
    if want_keys != have_keys:
        parts.append("its primary key or UNIQUE constraints differ")
    if want_references != have_references:
        parts.append("its foreign keys (REFERENCES) differ")
    if want_checks != have_checks:
        assert isinstance(want_checks, tuple) and isinstance(have_checks, tuple)
        lost, planted = (
            [c for c in want_checks if c not in have_checks],
            [c for c in have_checks if c not in want_checks],
        )
        parts.append(
            "its CHECK constraints differ"
            + "".join(f"; CHECK ({c}) missing" for c in lost)
            + "".join(f"; CHECK ({c}) extra" for c in planted)
        )
    if not parts and want_tokens != have_tokens:  # a clause no pragma lists: COLLATE, ON CONFLICT, STRICT ...
        parts.append(_first_difference(want_tokens, have_tokens))
    return "; ".join(parts)


def _index_detail(made: tuple[object, ...], live: tuple[object, ...]) -> str:
    def columns(shape: tuple[object, ...]) -> str:
        cols = shape[3]
        assert isinstance(cols, tuple)
        return ", ".join(
            f"{c[0] if c[0] is not None else '<expression>'}{f' COLLATE {c[2]}' if c[2] != 'binary' else ''}"
            f"{' DESC' if c[1] else ''}"
            for c in cols
        )

    if made[0] != live[0]:
        return f"on table {live[0]}, not {made[0]}"
    if made[3] != live[3]:
        return f"over ({columns(live)}), not ({columns(made)})"
    if made[1] != live[1]:
        return "unique" if live[1] else "not unique"
    return _first_difference(made[4], live[4])  # partial, or its WHERE another


def differences(conn: sqlite3.Connection, migrations: Sequence[str] | None = None) -> list[SchemaDifference]:
    """The live catalog's schema (``main`` of ``conn``: never a scratch attached beside it) against the one this
    custodes makes (:func:`_made_shapes`; or the one ``migrations`` make, for accounts.sqlite): each table, index,
    trigger and view by name, a table and an index by their statement. An index gone with its table is the table's
    difference, not one of its own. Custodes' objects first (missing or changed), then the extra ones; each in name
    order."""
    made = _made_shapes() if migrations is None else _shapes_at(migrations, len(migrations))
    live = _shapes(conn)
    out: list[SchemaDifference] = []
    gone_tables = {n for n, (t, _) in made.items() if t == "table" and live.get(n, ("",))[0] != "table"}
    for name, (kind, shape) in sorted(made.items()):
        if name not in live:
            if kind == "index" and shape[0] in gone_tables:
                continue
            dropped = [i for i, (t, s) in sorted(made.items()) if t == "index" and s[0] == name and i not in live]
            detail = f"its index{'es' if len(dropped) > 1 else ''} {', '.join(dropped)} with it" if dropped else ""
            out.append(SchemaDifference("missing", kind, _shown(name), detail if kind == "table" else ""))
        elif live[name][0] != kind:
            now = live[name][0]
            out.append(SchemaDifference("changed", kind, _shown(name), f"a {now}, not a {kind}", live_type=now))
        elif live[name][1] != shape:
            detail = (_table_detail if kind == "table" else _index_detail)(shape, live[name][1])
            lacks = tuple(_column_names(shape) - _column_names(live[name][1])) if kind == "table" else ()
            out.append(SchemaDifference("changed", kind, _shown(name), detail, tuple(sorted(lacks))))
    for name, (kind, _) in sorted(live.items()):
        if name not in made:
            out.append(SchemaDifference("extra", kind, _shown(name)))
    return out
