"""The catalog is a view of the ledger: the one place that turns a ledger entry into catalog rows.

Every workflow records a fact by appending its entry and applying it (:func:`record`), so the live row is
made by the very code that rebuilds it: :func:`replay` applies the whole ledger to a fresh catalog, which
``verify`` compares table by table, row by row, with the live one (:func:`differences`), and
``custodes ledger rebuild-catalog`` writes out (:func:`rebuild`).

Entry types and the rows they make (see :data:`HANDLERS`):

- ``ingest_begin``: the device (as the volume describes it), the ingest, the device's own log and clock
  readings; ``ingest``: the object and its segment (times, corrected times, marks, officer, container);
  ``ingest_end``: the ingest's findings and result.
- ``access_<action>``: an access-log row each; ``access_request`` (granted) the request; ``access_approve`` /
  ``access_deny`` the decision; ``access_classify`` the classification; ``access_refusal_count`` (the refusals
  of an account without a role counted beyond the policy's limit in one window, see custodes.access) only
  its row, like every refusal.
- ``hold``, ``hold_release``, ``retention_change`` (long-term mark or case link), ``purge`` (tombstone).
- ``task``, ``annotation`` (gap explanation).
- ``catalog_adopt``: rows an archive written before this custodes held without an entry (see :func:`adopt`).
- No rows: ``purge_done``, ``export``, ``export_failed``, ``key_rotation``, ``policy`` (the ledger is their
  record). Any other type (one a newer custodes writes) makes no rows here and is counted as unknown.

Not facts, so neither replayed nor compared (:data:`NOT_FACTS`): the ledger and its checkpoints (the proof
itself, and a cache of the signed notes in ``ledger/checkpoints/``), ``ingest_intents`` (an ingest in flight:
what it is about to link), ``objects.last_verified_ns`` (when verify last re-hashed it), ``ingests.finished_ns``
(set once the ingest's checkpoint is signed, after its last entry), ``replay_state`` and ``refusal_windows``
(refusals being counted in a window still open: the count becomes an ``access_refusal_count`` entry when it
closes; a rebuild carries it over).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import merkle
from custodes.catalog.custody import RefusalWindow, TaskRow
from custodes.catalog.devices import DeviceIdentity, FindingRow
from custodes.catalog.evidence import NewSegment, blob

if TYPE_CHECKING:
    from custodes.catalog import Catalog

__all__ = ["Difference", "Replay", "adopt_pending", "apply", "differences", "next_id", "record", "replay"]

#: Each fact table: its key columns, and the columns that are not facts (caches and run state, see above).
FACT_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "devices": (("device_id",), ()),
    "ingests": (("id",), ("finished_ns",)),
    "segments": (("id",), ()),
    "objects": (("sha256",), ("last_verified_ns",)),
    "findings": (("id",), ()),
    "clock_readings": (("id",), ()),
    "device_events": (("id",), ()),
    "tasks": (("id",), ()),
    "gap_explanations": (("id",), ()),
    "access_requests": (("id",), ()),
    "access_log": (("id",), ()),
    "cases": (("id",), ()),
    "case_segments": (("case_id", "segment_id"), ()),
    "long_term": (("segment_id",), ()),
    "holds": (("id",), ()),
    "tombstones": (("sha256",), ()),
}
NOT_FACTS = ("ledger", "checkpoints", "ingest_intents", "replay_state", "refusal_windows")


def unclassified_tables(catalog: Catalog) -> list[str]:
    """Tables of the schema that are neither a fact table nor named as not one: a new table must be one or
    the other, or verify would never look at it (tests/test_catalog_tamper.py holds the schema to this)."""
    names = _conn(catalog).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return sorted(n for (n,) in names if n not in FACT_TABLES and n not in NOT_FACTS)


#: Types that are ledgered on purpose without any catalog row.
LEDGER_ONLY = ("purge_done", "export", "export_failed", "key_rotation", "policy")

Key = tuple[Any, ...]
Touched = list[tuple[str, Key]]


def _conn(catalog: Catalog) -> sqlite3.Connection:
    return catalog._conn  # noqa: SLF001 - this package's own connection; replay writes rows of every table


def next_id(catalog: Catalog, table: str) -> int:
    """The id a new row of ``table`` gets: workflows name it in the entry, so the entry alone makes the row."""
    if table not in ("segments", "ingests", "access_requests", "holds", "gap_explanations"):
        raise ValueError(table)
    return int(_conn(catalog).execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0])  # noqa: S608


def record(catalog: Catalog, entry: dict[str, Any]) -> int:
    """Append ``entry`` to the ledger and make its rows, inside the caller's transaction; returns its index.

    The rows are made from the entry as the ledger holds it (its canonical JSON read back), exactly as
    :func:`replay` makes them."""
    from custodes.ledger import canonical_json  # the ledger module imports the catalog for its types only

    if adopt_pending(catalog):  # the first write since the migration: the ledger takes the older rows first
        adopt(catalog, int(entry.get("time") or 0))
    data = canonical_json(entry)
    index = catalog.ledger.append(data, merkle.leaf_hash(data))
    apply(catalog, index, json.loads(data))
    return index


# --- the handlers: one per entry type ---------------------------------------------------------------------


def _ingest_begin(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    ident = e.get("identity") or {}
    device = e["device"]
    c.devices.upsert(DeviceIdentity(device, *(ident.get(k) for k in DeviceIdentity._fields[1:])), e["time"])
    c.ingests.start(e["ingest"], e["volume"], e["driver"], device, e["time"])
    touched: Touched = [("devices", (device,)), ("ingests", (e["ingest"],))]
    for time_ns, kind, detail in e.get("events", []):
        rowid = c.devices.add_event(device, time_ns, kind, detail, e["ingest"])
        touched += [("device_events", (rowid,))] if rowid else []
    for device_ns, trusted_ns, source in e.get("clock_readings", []):
        rowid = c.devices.add_clock_reading(device, device_ns, trusted_ns, source, e["ingest"])
        touched += [("clock_readings", (rowid,))] if rowid else []
    return touched


def _ingest(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    digests = e["digests"]
    sha = digests["sha256"]
    # An entry written before this custodes holds no head digest: "" until its catalog_adopt entry says.
    c.objects.add(sha, e["size"], json.dumps(digests, sort_keys=True), e.get("head_sha256", ""), e["time"])
    raw = e.get("name_b64")
    c.segments.insert(
        e["segment"],
        NewSegment(
            device_id=e["device"],
            original_name=e["name"],
            kind=e.get("kind", "file"),
            sha256=sha,
            size=e["size"],
            start_ns=e.get("start"),
            end_ns=e.get("end"),
            start_source=e.get("start_source"),
            corrected_start_ns=e.get("corrected_start"),
            corrected_end_ns=e.get("corrected_end"),
            sequence=e.get("sequence"),
            important=int(bool(e.get("important"))),
            recording=e.get("recording"),
            chapter=e.get("chapter"),
            officer_id=e.get("officer"),
            container=e.get("container"),
            ingest_id=e["ingest"],
            ingested_ns=e["time"],
            ledger_seq=seq,
            original_name_bytes=None if raw is None else base64.b64decode(raw),
        ),
    )
    return [("objects", (sha,)), ("segments", (e["segment"],))]


def _ingest_end(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    touched: Touched = [("ingests", (e["ingest"],))]
    for f in e.get("findings", []):
        rowid = c.findings.add(FindingRow(ingest_id=e["ingest"], **f))  # the row's fields but its ingest
        touched.append(("findings", (rowid,)))
    c.ingests.set_result(e["ingest"], e["result"])
    return touched


def _access(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    action = e["type"].removeprefix("access_")
    request, segment, ok = e.get("request"), e.get("segment"), bool(e.get("ok"))
    rowid = c.access.log(request, e["person"], action, segment, ok, e["detail"], e["time"], seq)
    touched: Touched = [("access_log", (rowid,))]
    if not ok:
        return touched
    if action == "request" and "segments" in e:  # an entry written before this custodes: adopted instead
        c.access.add(e["request"], e["person"], json.dumps(e["segments"]), e["reason"], e["purpose"], e["time"])
        touched.append(("access_requests", (request,)))
    elif action in ("approve", "deny") and "valid_until" in e:
        status = "approved" if action == "approve" else "denied"
        c.access.decide(e["request"], status, e["person"], e["time"], e["valid_until"])
        touched.append(("access_requests", (request,)))
    elif action == "classify" and "level" in e:
        c.segments.set_classification(e["segment"], e["level"])
        touched.append(("segments", (segment,)))
    return touched


def _hold(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    hold = c.retention.place_hold(e.get("hold"), e["segment"], e["reason"], e["by"], e["time"])
    return [("holds", (hold,))]


def _hold_release(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    c.retention.release_hold(e["hold"], e["by"], e["time"])
    return [("holds", (e["hold"],))]


def _retention_change(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    if "long_term" in e:
        c.retention.mark_long_term(e["segment"], e["long_term"], e["by"], e["time"])
        return [("long_term", (e["segment"],))]
    c.retention.link_case(e["case"], e["until"], e.get("description", ""), e["segments"])
    return [("cases", (e["case"],))] + [("case_segments", (e["case"], s)) for s in e["segments"]]


def _purge(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    seg, sha = e["segment"], e["sha256"]
    c.segments.mark_purged(seg, e["time"])
    touched: Touched = [("segments", (seg,))]
    if not c.segments.live_for_object(sha):  # the object goes only when no live recording needs it
        c.objects.mark_purged(sha, e["time"])
        c.retention.add_tombstone(sha, json.dumps([seg]), e["request"], e["by"], e["time"], seq)
        touched += [("objects", (sha,)), ("tombstones", (sha,))]
    return touched


def _task(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    row = TaskRow(e["task"], e["task_type"], e["start"], e["end"], json.dumps(e["officers"]), json.dumps(e["devices"]))
    c.tasks.upsert(row, e["time"], seq)
    return [("tasks", (e["task"],))]


def _annotation(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    annotation = c.gap_explanations.add(
        e.get("annotation"),
        e["device"],
        e["start"],
        e["end"],
        e["cause"],
        e["note"],
        e["segment"],
        e["offset"],
        e["by"],
        e["time"],
        seq,
    )
    return [("gap_explanations", (annotation,))]


def _adopt(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    touched: Touched = []
    for table, held in e["tables"].items():
        keys, _ = FACT_TABLES[table]
        columns = held["columns"]
        # An upsert, never a delete and insert: rows of other tables point at these (segments, objects).
        others = [col for col in columns if col not in keys]
        update = f"DO UPDATE SET {', '.join(f'{col} = excluded.{col}' for col in others)}" if others else "DO NOTHING"
        for values in held["rows"]:
            row = [_unpack(v) for v in values]
            _conn(c).execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(row))}) "  # noqa: S608
                f"ON CONFLICT ({', '.join(keys)}) {update}",
                row,
            )
            touched.append((table, tuple(row[columns.index(k)] for k in keys)))
    return touched


def _nothing(c: Catalog, seq: int, e: dict[str, Any]) -> Touched:
    return []


HANDLERS: dict[str, Callable[[Catalog, int, dict[str, Any]], Touched]] = {
    "ingest_begin": _ingest_begin,
    "ingest": _ingest,
    "ingest_end": _ingest_end,
    "hold": _hold,
    "hold_release": _hold_release,
    "retention_change": _retention_change,
    "purge": _purge,
    "task": _task,
    "annotation": _annotation,
    "catalog_adopt": _adopt,
    **{t: _nothing for t in LEDGER_ONLY},
}


def apply(catalog: Catalog, seq: int, entry: dict[str, Any]) -> Touched | None:
    """Make the rows of ledger entry ``seq``; returns the (table, key) of each row it wrote, or None when this
    custodes does not know the entry's type (it makes no rows)."""
    kind = entry.get("type")
    if isinstance(kind, str) and kind.startswith("access_"):
        return _access(catalog, seq, entry)
    handler = HANDLERS.get(kind) if isinstance(kind, str) else None
    return None if handler is None else handler(catalog, seq, entry)


# --- replaying the whole ledger -------------------------------------------------------------------------


@dataclass
class Replay:
    """What replaying a ledger made: per row, the entries that wrote it (the first made it); entries of unknown
    types (type -> count), and entries that could not be applied (index, why)."""

    written_by: dict[tuple[str, Key], list[int]] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[int, str]] = field(default_factory=list)


def replay(source: Catalog, target: Catalog) -> Replay:
    """Apply every entry of ``source``'s ledger, in order, to the empty catalog ``target`` (one transaction).
    Foreign keys are off there: a row of an older entry may refer to one only its adoption makes."""
    out = Replay()
    _conn(target).execute("PRAGMA foreign_keys=OFF")
    with target.transaction():
        for seq, data, _leaf in source.ledger.walk():
            try:
                entry = json.loads(data)
            except ValueError:
                out.failed.append((seq, "not JSON (verify's leaf and checkpoint checks say more)"))
                continue
            if not isinstance(entry, dict):
                out.failed.append((seq, "not a JSON object"))
                continue
            _conn(target).execute("SAVEPOINT entry")  # an entry that cannot be applied leaves no part of its rows
            try:
                touched = apply(target, seq, entry)
            except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
                _conn(target).execute("ROLLBACK TO entry")
                out.failed.append((seq, f"cannot be applied: {type(exc).__name__}: {exc}"))
                continue
            finally:
                _conn(target).execute("RELEASE entry")
            if touched is None:
                kind = str(entry.get("type"))
                out.unknown[kind] = out.unknown.get(kind, 0) + 1
                continue
            for key in touched:
                out.written_by.setdefault(key, []).append(seq)
    return out


# --- comparing a catalog with its replay -----------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    kind: str  # missing (ledgered, no row), unexpected (a row the ledger does not explain), ledger_mismatch
    table: str
    key: Key
    entries: tuple[int, ...]  # the ledger entries that wrote the row, the first made it; none for an unexpected one
    columns: tuple[str, ...] = ()  # ledger_mismatch: the columns that differ
    values: dict[str, Any] = field(default_factory=dict)  # the row as the ledger has it (unexpected: as found)

    @property
    def entry(self) -> int | None:
        """The entry that made the row."""
        return self.entries[0] if self.entries else None

    def message(self) -> str:
        row = f"{self.table} row {', '.join(map(str, self.key))}"
        named = f"{'entries' if len(self.entries) > 1 else 'entry'} {', '.join(map(str, self.entries))}"
        if self.kind == "missing":
            return f"{row} is in the ledger ({named}) but not in the catalog"
        if self.kind == "unexpected":
            return f"{row} is in the catalog but no ledger entry explains it"
        verb = "differs" if len(self.columns) == 1 else "differ"
        return f"{row}: {', '.join(self.columns)} {verb} from what ledger {named} recorded"


def _columns(catalog: Catalog, table: str) -> list[str]:
    excluded = FACT_TABLES[table][1]
    return [r[1] for r in _conn(catalog).execute(f"PRAGMA table_info({table})") if r[1] not in excluded]


def rows(catalog: Catalog, table: str, columns: list[str]) -> dict[Key, tuple[Any, ...]] | None:
    """The table's rows by key (BLOBs as bytes), or None when it cannot be read (dropped, a column gone)."""
    keys = FACT_TABLES[table][0]
    at = [columns.index(k) for k in keys]
    try:
        got = _conn(catalog).execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()  # noqa: S608
    except sqlite3.Error:
        return None
    out = {}
    for r in got:
        values = tuple(blob(v) if isinstance(v, memoryview) else v for v in r)
        out[tuple(values[i] for i in at)] = values
    return out


def differences(live: Catalog, replayed: Catalog, made: Replay) -> list[Difference]:
    """Every fact table of ``live`` against ``replayed``, row by row, in table and key order."""
    out: list[Difference] = []
    for table in FACT_TABLES:
        columns = _columns(replayed, table)
        want = rows(replayed, table, columns) or {}
        have = rows(live, table, columns) or {}
        for key in sorted(want.keys() | have.keys(), key=_sortable):
            entry = tuple(made.written_by.get((table, key), ()))
            values = dict(zip(columns, want.get(key) or have[key], strict=True))
            if key not in have:
                out.append(Difference("missing", table, key, entry, (), values))
            elif key not in want:
                out.append(Difference("unexpected", table, key, (), (), values))
            elif have[key] != want[key]:
                differ = tuple(c for c, a, b in zip(columns, have[key], want[key], strict=True) if a != b)
                out.append(Difference("ledger_mismatch", table, key, entry, differ, values))
    return out


def _sortable(key: Key) -> tuple[tuple[int, str], ...]:
    return tuple((0, f"{v:020d}") if isinstance(v, int) and v >= 0 else (1, str(v)) for v in key)


# --- archives written before: adoption ------------------------------------------------------------------


def adopt_pending(catalog: Catalog) -> bool:
    """The catalog was migrated from before this custodes and its first write has not adopted it yet."""
    try:
        row = _conn(catalog).execute("SELECT adopt_pending FROM replay_state WHERE id = 1").fetchone()
    except sqlite3.Error:  # the table edited away: nothing is adopted, and verify compares every row
        return False
    return bool(row and row[0])


def adopt(catalog: Catalog, now: int) -> int | None:
    """Run by the first write transaction after the migration (:meth:`Catalog.transaction`): the rows the ledger
    of an archive written before does not explain (findings, device logs, a segment's officer ...) are appended
    as one ``catalog_adopt`` entry, so from here the ledger explains every row. Rows the ledger has and the
    catalog lost are not adopted: they stay ``missing``. Done at most once: never when the ledger holds an
    adoption already, whatever the flag says. Returns the entry's index, or None when nothing was adopted."""
    _conn(catalog).execute("UPDATE replay_state SET adopt_pending = 0")
    if catalog.ledger.of_type("catalog_adopt"):
        return None
    from custodes.catalog import Catalog as _Catalog

    with _Catalog.open(Path(":memory:")) as fresh:
        made = replay(catalog, fresh)
        tables: dict[str, Any] = {}
        for d in differences(catalog, fresh, made):
            if d.kind == "missing":
                continue
            columns = _columns(fresh, d.table)
            have = rows(catalog, d.table, columns) or {}
            held = tables.setdefault(d.table, {"columns": columns, "rows": []})
            held["rows"].append([_pack(v) for v in have[d.key]])
    if not tables:
        return None
    return record(catalog, {"type": "catalog_adopt", "tables": tables, "time": now})


def _pack(value: Any) -> Any:
    return {"b64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def _unpack(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


# --- rebuilding the catalog file ------------------------------------------------------------------------


def rebuild(live: Catalog, path: Path) -> tuple[Replay, list[Difference]]:
    """Write a new catalog at ``path`` from ``live``'s ledger alone: its ledger and checkpoints copied, every
    row replayed, the run state an archive needs (an ingest finished, refusals being counted) taken from the
    live catalog where it can be read. Returns the replay and its differences from ``live``."""
    from custodes.catalog import Catalog as _Catalog

    with _Catalog.open(path) as new:
        _conn(new).execute("UPDATE replay_state SET adopt_pending = 0")
        with new.transaction():
            for seq, data, leaf in live.ledger.walk():
                _conn(new).execute("INSERT INTO ledger (seq, entry, leaf) VALUES (?, ?, ?)", (seq, data, leaf))
            _copy(live, new, "checkpoints", ("size", "root", "note", "created_ns"))
            # Refusals counted in a window still open are in no entry yet: the rebuilt catalog keeps counting them.
            _copy(live, new, "refusal_windows", RefusalWindow._fields)
        made = replay(live, new)
        with new.transaction():
            try:
                finished = _conn(live).execute("SELECT id, finished_ns FROM ingests").fetchall()
            except sqlite3.Error:
                finished = []
            _conn(new).executemany("UPDATE ingests SET finished_ns = ? WHERE id = ?", [(f, i) for i, f in finished])
        _conn(new).execute("PRAGMA foreign_keys=ON")
        return made, differences(live, new, made)


def _copy(live: Catalog, new: Catalog, table: str, columns: Iterable[str]) -> None:
    names = ", ".join(columns)
    try:
        got = _conn(live).execute(f"SELECT {names} FROM {table}").fetchall()  # noqa: S608
    except sqlite3.Error:
        return
    marks = ", ".join("?" * len(names.split(", ")))
    _conn(new).executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", got)  # noqa: S608
