"""A checkpoint hashes only the entries appended since the last one: it goes on from the Merkle frontier the last
checkpoint kept (migration 9). Its root must be the root of every leaf, whatever the catalog's copy of the
frontier says."""

from __future__ import annotations

from pathlib import Path

import pytest

from custodes import merkle
from custodes.archive import init_archive, open_archive
from custodes.ingest import ingest
from custodes.verify import verify
from helpers import catalog_edit, catalog_rows


def _volume(root: Path, n: int) -> Path:
    vol = root / f"vol{n}"
    vol.mkdir()
    for i in range(n):
        (vol / f"{i}.LOG").write_bytes(b"entry %d of %d" % (i, n))
    return vol


def _root_of_every_leaf(arch: Path) -> tuple[int, bytes]:
    leaves = [bytes(leaf) for (leaf,) in catalog_rows(arch, "SELECT leaf FROM ledger ORDER BY seq")]
    return len(leaves), merkle.root(leaves)


def test_each_checkpoint_goes_on_from_the_last_frontier(tmp_path: Path) -> None:
    arch = tmp_path / "archive"
    init_archive(arch).close()
    # Volumes of 1..6 files: the ledger passes sizes with every pattern of perfect subtrees.
    for n in range(1, 7):
        with open_archive(arch) as a:
            cp = ingest(a, _volume(tmp_path, n), driver="generic").checkpoint
        assert cp is not None and (cp["size"], bytes.fromhex(cp["root"])) == _root_of_every_leaf(arch)
    kept = catalog_rows(arch, "SELECT size, length(frontier) FROM checkpoints ORDER BY size")
    # Each frontier holds one 32-byte root per set bit of its size.
    assert [(size, length) for size, length in kept] == [(size, 32 * bin(size).count("1")) for size, _ in kept]
    with open_archive(arch) as a:
        assert verify(a).findings == []


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE checkpoints SET frontier = zeroblob(length(frontier))",  # the right length, the wrong roots
        "UPDATE checkpoints SET frontier = zeroblob(length(frontier) + 32)",  # a root too many
        "UPDATE checkpoints SET frontier = NULL",  # written before migration 9
    ],
)
def test_a_frontier_that_is_not_its_checkpoints_is_not_used(tmp_path: Path, edit: str) -> None:
    arch = tmp_path / "archive"
    init_archive(arch).close()
    with open_archive(arch) as a:
        ingest(a, _volume(tmp_path, 3), driver="generic")
    with catalog_edit(arch) as db:
        db.execute(edit)
    with open_archive(arch) as a:
        cp = ingest(a, _volume(tmp_path, 5), driver="generic").checkpoint
    assert cp is not None and (cp["size"], bytes.fromhex(cp["root"])) == _root_of_every_leaf(arch)


def test_a_frontier_edited_with_its_root_column_is_not_signed(tmp_path: Path) -> None:
    # Found by a hostile review: a frontier was checked against the catalog's own root column, so an edit of both
    # had the next ingest sign a checkpoint over roots the ledger does not have. It is checked against the note.
    arch = tmp_path / "archive"
    init_archive(arch).close()
    with open_archive(arch) as a:
        ingest(a, _volume(tmp_path, 3), driver="generic")
    ((size, length),) = catalog_rows(arch, "SELECT size, length(frontier) FROM checkpoints ORDER BY size DESC LIMIT 1")
    forged = merkle.Accumulator.resume(size, [bytes(32)] * (length // 32)).root()
    with catalog_edit(arch) as db:
        db.execute("UPDATE checkpoints SET frontier = ?, root = ? WHERE size = ?", (bytes(length), forged, size))
    with open_archive(arch) as a:
        cp = ingest(a, _volume(tmp_path, 5), driver="generic").checkpoint
    assert cp is not None and (cp["size"], bytes.fromhex(cp["root"])) == _root_of_every_leaf(arch)
    # A frontier that is not what SQLite holds it as (text that is not UTF-8) is not read either.
    with catalog_edit(arch) as db:
        db.execute("UPDATE checkpoints SET frontier = CAST(x'ff' AS TEXT)")
    with open_archive(arch) as a:
        cp = ingest(a, _volume(tmp_path, 7), driver="generic").checkpoint
    assert cp is not None and (cp["size"], bytes.fromhex(cp["root"])) == _root_of_every_leaf(arch)
