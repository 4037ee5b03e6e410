"""Witnesses: the archive's signed checkpoints published to an outside append-only place, and the proof that
the archive's tree still extends every one of them.

``custodes ledger publish ARCHIVE DIR`` writes each signed checkpoint that DIR does not hold yet as
``DIR/<size>`` (the signed note, byte for byte). DIR stands for a place the archive's own account cannot
rewrite: another disk, another machine's folder, a write-once bucket. A published file is never rewritten:
each is written whole under a hidden temporary name, flushed, and linked to its name only where no file
has it (:func:`custodes._durable.write_once`), so a crash leaves a hidden temp that is never read, not
half a checkpoint.

``verify --witness DIR`` checks the archive's current tree against every checkpoint published there: it
must extend each one (an RFC 9162 consistency proof from the published size to the current size, checked
against the published root). Whoever holds the signing key can rewrite the ledger and re-sign every
checkpoint, but cannot make the new tree consistent with roots published before: a rewritten or
rolled-back ledger is ``witness_mismatch``. Each published note must also verify with the trusted key
chain (:mod:`custodes.keys`): a note re-signed by another key is a mismatch too.

Whoever may write in DIR may put anything there, and the archive service reads DIR for its callers: each
file is read by :func:`_read_note` only, which never blocks and never reads much. Anything but a small
regular file under a name (a FIFO, a device, a socket, a link, a folder, a file bigger than any note) is a
``witness_mismatch`` naming it (and so ``ledger publish`` publishes nothing), never a read that hangs the
service or fills its memory.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import merkle
from custodes._durable import file_kind, write_once
from custodes.errors import CustodesError
from custodes.keys import KeyChain, archive_chain
from custodes.ledger import LedgerError, checkpoint_body

if TYPE_CHECKING:
    from custodes.archive import Archive
    from custodes.verify import VerifyFinding

__all__ = ["MISMATCH", "PublishResult", "WitnessError", "check_witness", "publish"]

#: The finding kind of a published checkpoint the archive no longer agrees with.
MISMATCH = "witness_mismatch"
#: The most a published file may hold: a signed note is a few hundred bytes, a few key rotations' signatures
#: included; anything bigger is not a checkpoint, and is not read into memory to find that out.
MAX_NOTE = 64 * 1024


class WitnessError(CustodesError):
    """A witness folder that cannot be used as asked (missing, not a folder, holding nothing to check)."""

    kind = "witness"


def _published(folder: Path) -> list[Path]:
    """The published checkpoint files (hidden names are temps of a publish in flight or cut short)."""
    if not folder.is_dir():
        raise WitnessError(f"{folder}: not a folder; name the folder checkpoints are published to")
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def check_witness(archive: Archive, folder: Path, chain: KeyChain) -> list[VerifyFinding]:
    """One ``witness_mismatch`` finding for each checkpoint published in ``folder`` that the archive's current
    tree does not extend, that names another archive, or that the trusted key chain did not sign."""
    from custodes.verify import VerifyFinding

    files = _published(folder)
    if not files:
        raise WitnessError(
            f"{folder}: no checkpoint is published there, so there is nothing to check against; "
            "publish with `custodes ledger publish ARCHIVE DIR`"
        )
    leaves = archive.leaves()
    size, root = len(leaves), merkle.root(leaves)
    findings = []
    for path in files:
        why = _disagreement(archive, path, chain, leaves, size, root)
        if why is not None:
            findings.append(VerifyFinding(MISMATCH, f"published checkpoint {path}: {why}"))
    return findings


def _disagreement(
    archive: Archive, path: Path, chain: KeyChain, leaves: list[bytes], size: int, root: bytes
) -> str | None:
    """Why the archive's tree (``size`` leaves, ``root``) disagrees with the note published at ``path``."""
    try:
        note = _read_note(path)
        origin, published, published_root = checkpoint_body(note)
    except _NotANote as e:
        return str(e)
    except (OSError, UnicodeDecodeError, LedgerError) as e:
        return f"not a readable checkpoint ({e})"
    if origin != archive.policy.origin:
        return f"it is a checkpoint of {origin!r}, not of this archive ({archive.policy.origin!r})"
    if path.name != str(published):
        return f"its file name does not match its size {published}"
    if published > size:
        return f"it signs {published} entries, the ledger now has {size} (rolled back)"
    if published == size:
        consistent = published_root == root
    elif published == 0:
        consistent = published_root == merkle.root([])
    else:
        proof = merkle.consistency_proof(leaves, published)
        consistent = merkle.verify_consistency(published, size, proof, published_root, root)
    if not consistent:
        return (
            f"the ledger's tree of {size} entries is not consistent with the tree of {published} entries "
            "published there (its history was rewritten)"
        )
    try:
        chain.parse(note)
    except LedgerError as e:
        return f"not signed by the trusted key chain: {e}"
    return None


class _NotANote(Exception):
    """A published name that holds no small regular file: why, as the finding says it."""


def _read_note(path: Path) -> str:
    """The text of the file published at ``path``, read without following a link and without blocking (a FIFO
    opened O_NONBLOCK returns at once), and only when the descriptor is a regular file of at most
    :data:`MAX_NOTE` bytes; else :class:`_NotANote`. Checked on the descriptor, so nothing swapped in after a
    look by name is read. A device is not even opened (opening one may act on it): a look first skips it."""
    if not stat.S_ISREG(mode := os.lstat(path).st_mode):
        raise _NotANote(f"{file_kind(mode)}, not a checkpoint file; a witness folder holds only the notes published")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise _NotANote("a link, not a checkpoint file; a witness folder holds only the notes published") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise _NotANote(f"{file_kind(opened.st_mode)}, not a checkpoint file (it changed while it was read)")
        data = b""
        while len(data) <= MAX_NOTE and (chunk := os.read(fd, MAX_NOTE + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_NOTE:
        raise _NotANote(f"more than {MAX_NOTE} bytes, bigger than any checkpoint note; not read further")
    return data.decode("utf-8")


@dataclass(frozen=True)
class PublishResult:
    folder: str
    published: list[int]  # sizes written this time
    already: int  # checkpoints the folder held before

    def to_json(self) -> dict[str, Any]:
        return {"folder": self.folder, "published": self.published, "already_published": self.already}


def publish(archive: Archive, folder: Path) -> tuple[PublishResult, list[VerifyFinding]]:
    """Append every signed checkpoint ``folder`` does not hold yet. When the archive disagrees with what is
    published already, nothing is published and the findings say why (publishing would bury the evidence)."""
    from custodes.archive import refuse_inside_archive

    refuse_inside_archive(archive, folder, "DIR")  # a witness inside the archive is rewritten with it
    folder.mkdir(parents=True, exist_ok=True)
    chain = archive_chain(archive)
    existing = _published(folder)
    findings = check_witness(archive, folder, chain) if existing else []
    if findings:
        return PublishResult(str(folder), [], len(existing)), findings
    names = {p.name for p in existing}
    written = []
    for size, _root, note in archive.catalog.checkpoints.all():
        if str(size) in names:
            continue
        chain.parse(note)  # only what the archive's keys signed leaves it
        write_once(folder / str(size), note, mode=0o644)  # public: any witness reads it
        written.append(size)
    return PublishResult(str(folder), written, len(existing)), []
