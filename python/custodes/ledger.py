"""The ledger: an append-only RFC 9162 Merkle log of canonical-JSON entries,
with C2SP tlog-checkpoint signed notes.

Entries live in the catalog's ``ledger`` table (index, entry bytes, leaf
hash) and are appended inside the same SQLite transaction as the catalog
change they record. A checkpoint is a signed note over (origin, size, root):

    custodes.example/1b3c...\\n
    42\\n
    <base64 root>\\n
    \\n
    — custodes.example/1b3c... <base64(key id || Ed25519 signature)>\\n

written to ``ledger/checkpoints/<size>`` (never rewritten) and to
``ledger/checkpoint`` (the latest). The public key travels with the archive
as a verifier key (``keys/checkpoint.vkey``); the private key lives where the
policy says, outside the object store. Which key must sign a checkpoint once
the key was rotated, and which key to trust at all, is :mod:`custodes.keys`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custodes import merkle
from custodes._durable import read_small, write_new_file
from custodes.errors import CustodesError

if TYPE_CHECKING:
    from custodes.catalog import Catalog

__all__ = [
    "Checkpoint",
    "LedgerError",
    "VerifierKey",
    "append",
    "canonical_json",
    "checkpoint_body",
    "entry_type",
    "make_checkpoint",
    "parse_checkpoint",
]

EM_DASH = "\u2014"
ED25519 = 0x01


class LedgerError(CustodesError):
    """A ledger or checkpoint that cannot be read or does not verify."""

    kind = "ledger"


class NotAKeyFile(LedgerError):
    """A key path that names no regular file of a key's size (a FIFO, a device, a file too large): said as what
    it is, not as a file whose bytes are no key."""


def canonical_json(entry: dict[str, Any]) -> bytes:
    """The one byte form of an entry: sorted keys, no spaces, UTF-8 (RFC 8785
    for the integers and strings entries are made of; entries carry no floats)."""

    def no_floats(v: Any) -> None:
        if isinstance(v, float):
            raise LedgerError(f"ledger entries carry no floats (got {v!r}); use integers (ns, bytes)")
        if isinstance(v, dict):
            for x in v.values():
                no_floats(x)
        elif isinstance(v, list):
            for x in v:
                no_floats(x)

    no_floats(entry)
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_type(entry: dict[str, Any]) -> str | None:
    """What an entry is filed under in the ledger's index: its ``type`` when that is a string."""
    kind = entry.get("type")
    return kind if isinstance(kind, str) else None


def append(catalog: Catalog, entry: dict[str, Any]) -> int:
    """Append ``entry`` (canonical JSON, its Merkle leaf, filed under its type) inside the caller's transaction;
    returns its index."""
    data = canonical_json(entry)
    return catalog.ledger.append(data, merkle.leaf_hash(data), entry_type(entry))


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier key: ``<name>+<hex key id>+<base64(0x01 || public key)>``."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + bytes([ED25519]) + self.public).digest()[:4]

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        try:
            name, key_id, blob = text.strip().split("+", 2)  # base64 may hold "+"; names may not
            raw = base64.b64decode(blob, validate=True)
        except ValueError as e:
            raise LedgerError(f"not a verifier key: {text[:60]!r}") from e
        if len(raw) != 33 or raw[0] != ED25519:
            raise LedgerError("verifier key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if key.key_id.hex() != key_id:
            raise LedgerError("verifier key id does not match its key")
        return key


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "note": self.note}


def _body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def make_checkpoint(private: Ed25519PrivateKey, origin: str, size: int, root: bytes) -> Checkpoint:
    body = _body(origin, size, root)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = VerifierKey(origin, public)
    sig = private.sign(body.encode())
    note = body + "\n" + f"{EM_DASH} {origin} {base64.b64encode(key.key_id + sig).decode()}\n"
    return Checkpoint(origin, size, root, note)


def checkpoint_body(note: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note, its signatures not yet checked: which key must have
    signed it depends on its size once the key was rotated (:mod:`custodes.keys`)."""
    body, sep, _sigs = note.partition("\n\n")
    if not sep:
        raise LedgerError("checkpoint has no signature block")
    lines = (body + "\n").split("\n")
    if len(lines) < 4:
        raise LedgerError("checkpoint body needs origin, size and root")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    try:
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except ValueError as e:
        raise LedgerError(f"checkpoint size or root unreadable: {e}") from e
    if size < 0 or len(root) != 32 or str(size) != size_text:
        raise LedgerError("checkpoint size or root malformed")
    return origin, size, root


def parse_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """Parse a signed checkpoint note and check its signature with ``key``."""
    origin, size, root = checkpoint_body(note)
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or parts[1] != key.name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if blob[:4] != key.key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key.public).verify(blob[4:], body.encode())
        except InvalidSignature:
            raise LedgerError(
                "checkpoint signature does not verify: the note was altered or signed by another key"
            ) from None
        return Checkpoint(origin, size, root, note)
    raise LedgerError(f"checkpoint carries no signature by {key.name}")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path`` (which may be a link: the policy may keep it elsewhere), read only as a
    regular file of at most 64 KiB (a FIFO hung every signing command, /dev/zero ran it out of memory)."""
    try:
        pem = read_small(path, 64 * 1024, follow=True)
    except ValueError as e:
        raise NotAKeyFile(f"{path}: {e}, not a key file") from None
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"{path} is not an Ed25519 private key")
    return key


def new_private_key(path: Path) -> Ed25519PrivateKey:
    """Create the signing key, readable only by its owner, never replacing one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_new_file(path, pem, 0o600)
    return key
