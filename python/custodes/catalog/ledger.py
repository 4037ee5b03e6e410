"""The ledger (append-only entries and their Merkle leaves) and the signed checkpoints over it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from custodes.catalog.evidence import Table, blob
from custodes.errors import CustodesError

_TEXT = "CAST(entry AS TEXT)"
#: An entry's own ``type`` as SQLite reads it: NULL when the entry is not JSON or its type is not a string,
#: the same rule :func:`custodes.ledger.entry_type` applies when the entry is appended.
_JSON_TYPE = (
    f"(CASE WHEN json_valid({_TEXT}) AND json_type({_TEXT}, '$.type') = 'text' "
    f"THEN json_extract({_TEXT}, '$.type') END)"
)


class MisfiledError(CustodesError):
    """An act refused: an entry of the ledger is filed under another type than its own, so a lookup through the
    type index (the proofs of an approval, a hold, a tombstone, the policy in force) could miss it."""


class LedgerRow(NamedTuple):
    seq: int
    entry: bytes
    leaf: bytes


@dataclass
class OwnEntries:
    """What this process wrote into one catalog's ledger and saw signed there, on any connection to it
    (custodes.catalog keeps one per file): what a checkpoint may sign as its command's own work, where an entry no
    checkpoint covers that some other hand put there is not signed (custodes.archive)."""

    #: index -> leaf of every entry this process appended and committed that no checkpoint it saw covers yet: an
    #: entry rewritten since (its leaf is another) is not its own any more.
    leaves: dict[int, bytes] = field(default_factory=dict)
    #: The largest size this process signed or found signed: a catalog whose checkpoints go back below it had
    #: some removed (or was put back from an older copy), and nothing is signed over it.
    signed: int = 0
    #: The index of the last entry it appended (-1: none).
    last: int = -1
    #: The ingests this process runs (begun here): every entry of theirs is its own, so one that is not was put
    #: in by another hand, not written by an ingest under way (custodes.archive).
    ingests: set[int] = field(default_factory=set)

    def seen_signed(self, size: int) -> None:
        """A checkpoint of ``size`` is signed: the leaves below it are forgotten. Whose an entry is matters only
        past the latest checkpoint (one that goes back below :attr:`signed` is refused before anything is asked),
        and kept for every entry, the archive service's memory grew by each one it ever appended."""
        if size > self.signed:
            self.signed = size
            self.leaves = {index: leaf for index, leaf in self.leaves.items() if index >= size}


class Ledger(Table):
    def __init__(self, conn: sqlite3.Connection, own: OwnEntries | None = None) -> None:
        super().__init__(conn)
        #: (PRAGMA data_version, the first index not yet looked at) of :meth:`require_filed`'s last pass.
        self._filed_to: tuple[int, int] | None = None
        self.own = OwnEntries() if own is None else own
        self._appending: dict[int, bytes] = {}  # appended in the transaction under way (in order): own once committed
        self._signing = 0  # the size a checkpoint of the transaction under way signs: seen signed once committed

    def signing(self, size: int) -> None:
        """The transaction under way records a checkpoint of ``size``: :attr:`OwnEntries.signed` once it commits."""
        self._signing = max(self._signing, size)

    def is_own(self, index: int, leaf: bytes) -> bool:
        """Entry ``index``, as its ``leaf`` says it is now, is one this process appended: committed, or in the
        transaction under way on this connection."""
        return self.own.leaves.get(index) == leaf or self._appending.get(index) == leaf

    def committed(self) -> None:
        """The transaction under way committed: its entries are this process's own (:attr:`own`)."""
        self.own.leaves.update(self._appending)
        self.own.last = max(self.own.last, *self._appending, -1)
        self._appending.clear()
        self.own.seen_signed(self._signing)
        self._signing = 0

    def appended_mark(self) -> int:
        """Where :meth:`rolled_back` goes back to when the part of the transaction begun now is undone."""
        return len(self._appending)

    def rolled_back(self, mark: int = 0) -> None:
        """The entries appended since ``mark`` were undone (their indexes may go to another writer's entries); the
        whole transaction (``mark`` 0): its checkpoint too (a full disk at its COMMIT, a hostile review: the
        process then took its own failed checkpoint for one removed)."""
        for index in list(self._appending)[mark:]:
            del self._appending[index]
        if mark == 0:
            self._signing = 0

    def next_index(self) -> int:
        """The index the next entry gets: a row that names its own entry (a segment) is written first,
        inside the same transaction as the entry."""
        return int(self._one("SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger"))

    def append(self, entry: bytes, leaf: bytes, type: str | None) -> int:  # noqa: A002 - the entry's own word
        """Append one entry, filed under its ``type`` (the entry's own ``type`` field: what :meth:`of_type`
        finds it by), inside the caller's transaction; returns its index."""
        index = self.next_index()
        self._conn.execute(
            "INSERT INTO ledger (seq, entry, leaf, type) VALUES (?, ?, ?, ?)", (index, entry, leaf, type)
        )
        self._appending[index] = leaf
        return index

    def restore(self, rows: Iterable[LedgerRow]) -> None:
        """Copy another catalog's entries as they are (a rebuild), each filed under its own entry's type: the
        copy trusts no index of the catalog it comes from."""
        self._conn.executemany("INSERT INTO ledger (seq, entry, leaf) VALUES (?, ?, ?)", rows)
        self._conn.execute(f"UPDATE ledger SET type = {_JSON_TYPE}")

    def size(self) -> int:
        """The number of entries (a walk of the whole ledger's smallest index)."""
        return int(self._one("SELECT COUNT(*) FROM ledger"))

    def reaches(self, size: int) -> bool:
        """The ledger holds an entry at index ``size - 1`` (one lookup, where :meth:`size` counts them all)."""
        return size == 0 or self._one("SELECT 1 FROM ledger WHERE seq = ?", (size - 1,)) is not None

    def leaves_from(self, start: int, end: int | None = None, per_part: int = 4096) -> Iterator[bytes]:
        """The leaves from index ``start`` on (to ``end``, not included, where given), in order, ``per_part`` of
        them joined into each part: a Merkle accumulator takes them part by part (all at once, an ingest of 10^5
        files held them as 10^5 bytes objects and then joined, about 10 MiB at its checkpoint)."""
        bounds: tuple[int, ...] = (start,) if end is None else (start, end)
        where = "seq >= ?" if end is None else "seq >= ? AND seq < ?"
        rows = self._conn.execute(f"SELECT leaf FROM ledger WHERE {where} ORDER BY seq", bounds)  # noqa: S608
        while part := rows.fetchmany(per_part):
            yield b"".join(blob(leaf) for (leaf,) in part)

    def leaves(self, size: int | None = None) -> list[bytes]:
        """The first ``size`` leaves (all when None), in order."""
        if size is None:
            rows = self._conn.execute("SELECT leaf FROM ledger ORDER BY seq")
        else:
            rows = self._conn.execute("SELECT leaf FROM ledger ORDER BY seq LIMIT ?", (size,))
        return [blob(leaf) for (leaf,) in rows]

    def entry(self, index: int) -> bytes | None:
        data = self._one("SELECT entry FROM ledger WHERE seq = ?", (index,))
        return None if data is None else blob(data)

    def walk(self) -> Iterator[LedgerRow]:
        """Every entry in order, as stored (streamed)."""
        return (
            LedgerRow(seq, blob(entry), blob(leaf))
            for seq, entry, leaf in self._conn.execute("SELECT seq, entry, leaf FROM ledger ORDER BY seq")
        )

    def leaves_by_index(self, start: int) -> list[tuple[int, bytes]]:
        """(index, leaf) of every entry from ``start`` on, in order (the entries themselves not read)."""
        rows = self._conn.execute("SELECT seq, leaf FROM ledger WHERE seq >= ? ORDER BY seq", (start,))
        return [(seq, blob(leaf)) for seq, leaf in rows]

    def misnumbered(self, top: int) -> str | None:
        """What is wrong with the entries' indexes, which are 0 to n-1 when custodes alone appended them: rows no
        index places (:meth:`unplaceable`), or gaps past ``top`` (the size a checkpoint signs: below it, the signed
        root says what was removed) — rows inserted or removed by hand, which a lookup of the proofs of an act would
        read and no checkpoint covers; None when they are whole. Its work does not grow with the ledger: the lowest
        and highest index, and the rows past ``top``."""
        if why := self.unplaceable():
            return why
        high, count = self._conn.execute("SELECT MAX(seq), COUNT(*) FROM ledger WHERE seq >= ?", (top,)).fetchone()
        if count and high - top + 1 != count:
            return f"{high - top + 1 - count} indexes missing between {top} and {high}"
        return None

    def unplaceable(self, *, every_row: bool = False) -> str | None:
        """Rows at indexes no Merkle tree has a place for: below 0, or not whole numbers (a table re-made by hand
        without its integer key); None when there are none. By the lowest and the highest index (with the key,
        only whole numbers can be between: every act asks); ``every_row``: each row's (NULL or 2.5 between two
        whole numbers, in a table without it), as a rebuild, which refuses to copy them, asks (verify names each,
        verify._walk_ledger)."""
        if every_row:
            row = self._conn.execute("SELECT seq FROM ledger WHERE typeof(seq) != 'integer' OR seq < 0 LIMIT 1")
            if (found := row.fetchone()) is not None:
                return f"a row at index {found[0]!r}, not a whole number from 0 on"
        # Two subqueries: SQLite looks up MIN or MAX alone in a query by the key, and walks the table for both.
        low, high = self._conn.execute("SELECT (SELECT MIN(seq) FROM ledger), (SELECT MAX(seq) FROM ledger)").fetchone()
        if low is None:
            return None
        if type(low) is not int or type(high) is not int:
            return f"indexes that are not whole numbers ({low!r} to {high!r})"
        if low < 0:
            return f"rows at indexes below 0 (the first is {low})"
        return None

    def entries(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """(index, entry) of every entry from index ``start`` on, in order, as stored (streamed): :meth:`walk`
        without the leaves, which replaying the ledger does not read. The catalog's own ledger (``main``), never a
        scratch's attached to its connection (catalog.replay.scratch)."""
        rows = self._conn.execute("SELECT seq, entry FROM main.ledger WHERE seq >= ? ORDER BY seq", (start,))
        return ((seq, entry if type(entry) is bytes else blob(entry)) for seq, entry in rows)

    def ingests_without_segment(self) -> list[tuple[int, str | None, str | None, int]]:
        """(index, name, sha256, segment) of each ingest entry whose segment row the catalog does not have.
        SQLite reads the JSON (far faster than a Python pass over every entry); an entry that is not JSON
        is skipped here (the leaf check reports it)."""
        field = f"CASE WHEN json_valid({_TEXT}) THEN json_extract({_TEXT}, '$.%s') END"
        sql = (
            f"SELECT seq, {field % 'name'}, {field % 'digests.sha256'}, {field % 'segment'} FROM ledger "
            f"WHERE type = 'ingest' AND {field % 'type'} = 'ingest' AND typeof({field % 'segment'}) = 'integer' "
            f"AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.id = {field % 'segment'}) ORDER BY seq"
        )
        return self._conn.execute(sql).fetchall()

    def purge_done_index(self, sha256: str) -> int | None:
        """The index of the entry that records the object's purge as finished (its bytes removed), or None."""
        sql = (
            f"SELECT MIN(seq) FROM ledger WHERE type = 'purge_done' AND {_JSON_TYPE} = 'purge_done' "
            f"AND json_extract({_TEXT}, '$.sha256') = ?"
        )
        return self._one(sql, (sha256,))

    def of_types_below(self, kinds: tuple[str, ...], end: int) -> list[LedgerRow]:
        """Every entry of one of ``kinds`` (filed and typed so, as :meth:`of_type` checks) below index ``end``, with
        its leaf, in order: what a decision on the signed ledger reads, each to be held to its leaf."""
        self.require_filed()  # an entry filed under another type would be missed here
        marks = ", ".join("?" * len(kinds))
        sql = (
            f"SELECT seq, entry, leaf FROM ledger WHERE type IN ({marks}) AND {_JSON_TYPE} IN ({marks}) "  # noqa: S608
            "AND seq < ? ORDER BY seq"
        )
        return [LedgerRow(seq, blob(e), blob(leaf)) for seq, e, leaf in self._conn.execute(sql, (*kinds, *kinds, end))]

    def of_type(self, kind: str) -> list[tuple[int, bytes]]:
        """(index, entry) of every entry whose ``type`` is ``kind``, in order: the policy in force, read on every
        open, and the key rotations, read each time a checkpoint is signed. The index on the ``type`` column
        finds them without reading the rest of the ledger; the entry's own JSON is checked too, so an index row
        edited to file another entry under ``kind`` finds nothing (and :meth:`misfiled` reports both ways)."""
        sql = f"SELECT seq, entry FROM ledger WHERE type = ? AND {_JSON_TYPE} = ? ORDER BY seq"
        return [(seq, blob(entry)) for seq, entry in self._conn.execute(sql, (kind, kind))]

    def latest_of_type(self, kind: str) -> tuple[int, bytes] | None:
        """(index, entry) of the last entry whose ``type`` is ``kind`` (checked as :meth:`of_type` checks it), or
        None: the latest storage check, which a report shows, without reading every earlier one."""
        sql = f"SELECT seq, entry FROM ledger WHERE type = ? AND {_JSON_TYPE} = ? ORDER BY seq DESC LIMIT 1"
        row = self._conn.execute(sql, (kind, kind)).fetchone()
        return None if row is None else (row[0], blob(row[1]))

    def naming(self, kinds: tuple[str, ...], field: str, values: list[Any]) -> list[tuple[int, bytes]]:
        """(index, entry) of every entry of one of ``kinds`` whose own ``field`` is one of ``values``, in order: the
        entries that wrote some rows (catalog.replay.ledgered_rows). Found through the type index in one pass, so
        a lookup reads the entries of those types once, never the whole ledger; each entry's own JSON is checked
        as :meth:`of_type` checks it, and a value matches only its own JSON type (the text '1' is not 1)."""
        self.require_filed()  # an entry filed under another type would be missed here
        marks = ", ".join("?" * len(kinds))
        sql = (
            f"SELECT seq, entry FROM ledger WHERE type IN ({marks}) AND {_JSON_TYPE} IN ({marks}) "  # noqa: S608
            f"AND (CASE WHEN json_valid({_TEXT}) THEN json_extract({_TEXT}, '$.' || ?) END) "
            "IN (SELECT value FROM json_each(?)) ORDER BY seq"
        )
        rows = self._conn.execute(sql, (*kinds, *kinds, field, json.dumps(values)))
        return [(seq, blob(entry)) for seq, entry in rows]

    def ingest_begin_index(self, ingest: int) -> int | None:
        """The index of the ``ingest_begin`` entry of ``ingest`` (it holds the device's log and clock readings as
        the volume gave them), found through the type index."""
        sql = (
            f"SELECT seq FROM ledger WHERE type = 'ingest_begin' AND {_JSON_TYPE} = 'ingest_begin' "
            f"AND json_extract({_TEXT}, '$.ingest') = ? ORDER BY seq LIMIT 1"
        )
        return self._one(sql, (ingest,))

    def misfiled(self) -> list[tuple[int, str | None, str | None]]:
        """(index, filed type, entry's type) of each entry whose ``type`` column is not its entry's own ``type``:
        an edit of the index (the entry itself is covered by its leaf hash). Hiding the latest policy entry from
        :meth:`of_type` would put an older policy in force, so verify reports every one."""
        sql = f"SELECT seq, type, {_JSON_TYPE} AS own FROM ledger WHERE type IS NOT own ORDER BY seq"
        return self._conn.execute(sql).fetchall()

    def require_filed(self) -> None:
        """Raise :class:`MisfiledError` when any entry is filed under another type than its own (:meth:`misfiled`):
        a hostile review set the ``type`` of a hold's entry to NULL, and a purge found no hold to honour; of the
        latest policy entry, and the owner counted as alone. Run before an act that rests on a lookup by type: one
        pass over the ledger (the entries' own JSON), then, while no other connection has committed anything
        (``PRAGMA data_version`` unmoved), only the entries appended since (this connection's own: the review
        page grants each stream request, and a whole pass each time would be a second per request at 10^6)."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        start = self._filed_to[1] if self._filed_to is not None and self._filed_to[0] == version else 0
        sql = (
            f"SELECT seq, type, {_JSON_TYPE} AS own FROM ledger WHERE seq >= ? AND type IS NOT own ORDER BY seq LIMIT 1"
        )
        found = self._conn.execute(sql, (start,)).fetchone()
        self._filed_to = None if found is not None else (version, self.next_index())
        if found is not None:
            seq, filed, own = found
            what = "not a custodes entry (no type)" if own is None else f"a {own!r} entry"
            raise MisfiledError(
                f"ledger entry {seq} is filed as {filed!r} but is {what} (its type column was edited by "
                "hand): custodes does not act on what a lookup by type could miss; `custodes verify` names it, and "
                "`custodes ledger rebuild-catalog --replace` files every entry under its own type again"
            )

    def actors(self) -> list[tuple[str, str | None]]:
        """Every (name, account) that an entry names as the person who acted (``person``, or ``by`` of a hold or
        retention change), refusals included; the account is None in an entry that does not record it (one
        written before entries did). Policy entries are left out: init and the owner's first people are
        recorded before anyone has a name. Read when a policy is proposed or put in force (custodes.policy)."""
        field = f"CASE WHEN json_valid({_TEXT}) THEN json_extract({_TEXT}, '$.%s') END"
        who = f"COALESCE({field % 'person'}, {field % 'by'})"
        sql = (
            f"SELECT DISTINCT {who}, {field % 'account'} FROM ledger "
            f"WHERE {_JSON_TYPE} IS NOT 'policy' AND typeof({who}) = 'text'"
        )
        return [(name, account if isinstance(account, str) else None) for name, account in self._conn.execute(sql)]

    def tombstone_entry(self, sha256: str) -> bytes | None:
        """The ledger entry an object's tombstone points at (None: no tombstone)."""
        sql = "SELECT l.entry FROM tombstones t JOIN ledger l ON l.seq = t.ledger_seq WHERE t.sha256 = ?"
        data = self._one(sql, (sha256,))
        return None if data is None else blob(data)


class CheckpointRow(NamedTuple):
    size: int
    root: bytes
    note: str


class Checkpoints(Table):
    def add(self, size: int, root: bytes, note: str, now: int, frontier: bytes | None = None) -> str:
        """Record a signed checkpoint and the Merkle frontier of its size (the subtree roots packed back to
        back); returns the note recorded at that size (the first one signed)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO checkpoints (size, root, note, created_ns, frontier) VALUES (?, ?, ?, ?, ?)",
            (size, root, note, now, frontier),
        )
        return self.note_at(size)

    def latest_frontier(self) -> tuple[int, str, bytes] | None:
        """(size, signed note, frontier) of the latest checkpoint that kept its frontier (as bytes: anything else
        there is an edit, and not read)."""
        sql = (
            "SELECT size, note, frontier FROM checkpoints WHERE typeof(frontier) = 'blob' "
            "AND typeof(note) = 'text' ORDER BY size DESC LIMIT 1"
        )
        try:
            row = self._conn.execute(sql).fetchone()
        except sqlite3.OperationalError as e:  # a note that is not UTF-8: an edit; the frontier is not used
            if "decode" not in str(e):
                raise
            return None
        return None if row is None else (int(row[0]), str(row[1]), blob(row[2]))

    def all(self) -> list[CheckpointRow]:
        rows = self._conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [CheckpointRow(size, blob(root), note) for size, root, note in rows]

    def sizes(self) -> list[int]:
        """The size of every signed checkpoint, smallest first (without the notes: cheap to check at every
        checkpoint that each has its file)."""
        return [int(size) for (size,) in self._conn.execute("SELECT size FROM checkpoints ORDER BY size")]

    def note_at(self, size: int) -> str:
        return str(self._one("SELECT note FROM checkpoints WHERE size = ?", (size,)))

    def has(self, size: int, root: bytes) -> bool:
        return self._one("SELECT 1 FROM checkpoints WHERE size = ? AND root = ?", (size, root)) is not None

    def latest(self) -> tuple[int, bytes] | None:
        row = self._conn.execute("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), blob(row[1]))

    def folder_seen(self, size: int, ctime_ns: int) -> None:
        """The checkpoint folder's ctime once the file of checkpoint ``size`` was in it (custodes.archive)."""
        self._conn.execute("UPDATE checkpoints SET folder_ctime_ns = ? WHERE size = ?", (ctime_ns, size))

    def latest_folder_seen(self) -> tuple[int, int | None] | None:
        """(size, the checkpoint folder's ctime once its file was in it, None when not recorded) of the latest
        checkpoint; None when there is none."""
        row = self._conn.execute("SELECT size, folder_ctime_ns FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), row[1] if isinstance(row[1], int) else None
