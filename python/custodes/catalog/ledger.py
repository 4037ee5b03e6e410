"""The ledger (append-only entries and their Merkle leaves) and the signed checkpoints over it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

from custodes.catalog.evidence import Table, blob


class LedgerRow(NamedTuple):
    seq: int
    entry: bytes
    leaf: bytes


class Ledger(Table):
    def next_index(self) -> int:
        """The index the next entry gets: a row that names its own entry (a segment) is written first,
        inside the same transaction as the entry."""
        return int(self._one("SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger"))

    def append(self, entry: bytes, leaf: bytes) -> int:
        """Append one entry inside the caller's transaction; returns its index."""
        index = self.next_index()
        self._conn.execute("INSERT INTO ledger (seq, entry, leaf) VALUES (?, ?, ?)", (index, entry, leaf))
        return index

    def size(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM ledger"))

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

    def ingests_without_segment(self) -> list[tuple[int, str | None, str | None, int]]:
        """(index, name, sha256, segment) of each ingest entry whose segment row the catalog does not have.
        SQLite reads the JSON (far faster than a Python pass over every entry); an entry that is not JSON
        is skipped here (the leaf check reports it)."""
        text = "CAST(entry AS TEXT)"
        field = f"CASE WHEN json_valid({text}) THEN json_extract({text}, '$.%s') END"
        sql = (
            f"SELECT seq, {field % 'name'}, {field % 'digests.sha256'}, {field % 'segment'} FROM ledger "
            f"WHERE {field % 'type'} = 'ingest' AND typeof({field % 'segment'}) = 'integer' "
            f"AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.id = {field % 'segment'}) ORDER BY seq"
        )
        return self._conn.execute(sql).fetchall()

    def purge_done_index(self, sha256: str) -> int | None:
        """The index of the entry that records the object's purge as finished (its bytes removed), or None.
        Scans the ledger: verify asks only for a purged object whose bytes are still in the store."""
        text = "CAST(entry AS TEXT)"
        field = f"CASE WHEN json_valid({text}) THEN json_extract({text}, '$.%s') END"
        sql = f"SELECT MIN(seq) FROM ledger WHERE {field % 'type'} = 'purge_done' AND {field % 'sha256'} = ?"
        return self._one(sql, (sha256,))

    def of_type(self, kind: str) -> list[tuple[int, bytes]]:
        """(index, entry) of every entry whose ``type`` is ``kind``, in order (the key rotations, read each time a
        checkpoint is signed). A byte search for the canonical ``"type":"<kind>"`` skips the other entries before
        SQLite parses any JSON; the JSON check then keeps only entries of that type (a quote inside a name is
        escaped, so a name cannot hold the marker)."""
        text = "CAST(entry AS TEXT)"
        marker = f'"type":{json.dumps(kind)}'.encode()
        sql = (
            f"SELECT seq, entry FROM ledger WHERE instr(entry, ?) > 0 AND json_valid({text}) "
            f"AND json_extract({text}, '$.type') = ? ORDER BY seq"
        )
        return [(seq, blob(entry)) for seq, entry in self._conn.execute(sql, (marker, kind))]

    def actors(self) -> list[tuple[str, str | None]]:
        """Every (name, account) that an entry names as the person who acted (``person``, or ``by`` of a hold or
        retention change), refusals included; the account is None in an entry that does not record it (one
        written before entries did). Policy entries are left out: init and the owner's first people are
        recorded before anyone has a name. Read when a policy is proposed or put in force (custodes.policy)."""
        text = "CAST(entry AS TEXT)"
        field = f"CASE WHEN json_valid({text}) THEN json_extract({text}, '$.%s') END"
        who = f"COALESCE({field % 'person'}, {field % 'by'})"
        sql = (
            f"SELECT DISTINCT {who}, {field % 'account'} FROM ledger "
            f"WHERE {field % 'type'} IS NOT 'policy' AND typeof({who}) = 'text'"
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
    def add(self, size: int, root: bytes, note: str, now: int) -> str:
        """Record a signed checkpoint; returns the note recorded at that size (the first one signed)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO checkpoints (size, root, note, created_ns) VALUES (?, ?, ?, ?)",
            (size, root, note, now),
        )
        return str(self._one("SELECT note FROM checkpoints WHERE size = ?", (size,)))

    def all(self) -> list[CheckpointRow]:
        rows = self._conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")
        return [CheckpointRow(size, blob(root), note) for size, root, note in rows]

    def has(self, size: int, root: bytes) -> bool:
        return self._one("SELECT 1 FROM checkpoints WHERE size = ? AND root = ?", (size, root)) is not None

    def latest(self) -> tuple[int, bytes] | None:
        row = self._conn.execute("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), blob(row[1]))
