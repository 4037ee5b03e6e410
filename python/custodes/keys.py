"""Pinned keys and key rotation: which Ed25519 key must have signed each checkpoint.

Trust starts at one verifier key (C2SP note verifier-key text), the **trusted key**: the one a person
kept outside the archive when ``custodes init`` printed it (``--trusted-key``), or else the archive's own
``keys/checkpoint.vkey`` (a bag's ``custody/checkpoint.vkey``), which whoever can write the archive can
replace, so the output says which it was. Its **fingerprint** is the SHA-256 of the verifier-key text
(one line, no line end), in hex: short enough to read out, print on the evidence receipt or compare by eye.

A **key rotation** is a ledger entry ``key_rotation`` naming the new verifier key and the previous one,
with an endorsement: the previous key's Ed25519 signature over :func:`rotation_statement`. The entry is
signed into the tree by the previous key's checkpoint; from the next entry on the new key signs. So the key
that must sign the checkpoint of size ``n`` follows from the trusted key and the rotations among the first
``n - 1`` entries (:meth:`KeyChain.key_for`): a rotation that the key in force did not endorse is not
followed (it is reported), and every checkpoint its key signed then fails to verify.

The new private key is written (durably, never over a file) beside the first one, named by its key id,
before its entry is appended: a crash between the two leaves an unused file and the old key in force.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from custodes import ledger
from custodes._durable import key_exposure, write_new_file
from custodes._faults import crashpoint
from custodes.ledger import Checkpoint, LedgerError, VerifierKey

if TYPE_CHECKING:
    from custodes.archive import Archive

__all__ = [
    "ROTATION",
    "UNTRUSTED_KEY",
    "Fingerprint",
    "KeyChain",
    "archive_chain",
    "chain_from_entries",
    "describe_trust",
    "fingerprint",
    "is_fingerprint",
    "load_trusted",
    "rotate_key",
    "rotated_key_path",
    "rotation_statement",
    "signing_key",
    "untrusted",
]

#: The ledger entry type of a key rotation.
ROTATION = "key_rotation"
#: The finding kind of a key that is not the trusted one, or a rotation the key in force did not make.
UNTRUSTED_KEY = "untrusted_key"


def fingerprint(key: VerifierKey) -> str:
    """SHA-256 of the verifier-key text (``name+keyid+base64``, no line end), hex."""
    return hashlib.sha256(str(key).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """``--trusted-key`` given as the fingerprint init printed (what people keep: short enough to write down).
    A fingerprint cannot check a signature, so it picks the key the archive or bag holds itself, and only if
    that key has this fingerprint; otherwise nothing that key signed is trusted (:func:`untrusted`)."""

    hex: str


def is_fingerprint(value: str) -> bool:
    """Whether ``value`` is a fingerprint as printed: 64 hex digits (a file of such a name is given as ./NAME)."""
    text = value.strip()
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def load_trusted(value: str) -> VerifierKey | Fingerprint:
    """``--trusted-key KEY|FINGERPRINT|FILE``: the verifier-key text itself, its fingerprint, or a file holding
    the key (as init printed them)."""
    try:
        return VerifierKey.parse(value)
    except LedgerError:
        pass  # not the key text: its fingerprint, or a file holding it
    if is_fingerprint(value):
        return Fingerprint(value.strip().lower())
    path = Path(value)
    if not path.is_file():
        raise LedgerError(
            f"--trusted-key {value!r}: neither a verifier key (name+keyid+base64, as `custodes init` printed it), "
            "nor its fingerprint (64 hex digits), nor a file holding the key"
        )
    try:
        return VerifierKey.parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, LedgerError) as e:
        raise LedgerError(f"--trusted-key {value}: the file does not hold a verifier key ({e})") from None


def rotation_statement(origin: str, previous: VerifierKey, new: VerifierKey) -> bytes:
    """What the previous key signs to hand over to the new one (bound to the archive's origin)."""
    return f"custodes key rotation\n{origin}\n{previous}\n{new}\n".encode()


@dataclass
class KeyChain:
    """The trusted key and the rotations followed from it, in ledger order."""

    root: VerifierKey
    #: "trusted-key" (given by the person), "fingerprint" (the archive's or bag's own key, picked by the
    #: fingerprint the person gave), "archive" (keys/checkpoint.vkey), "bag" (custody/)
    source: str
    rotations: list[tuple[int, VerifierKey]] = field(default_factory=list)
    #: (ledger index, why) of each rotation entry not followed: not endorsed by the key in force.
    refused: list[tuple[int, str]] = field(default_factory=list)
    #: The fingerprint the person gave (source "fingerprint"): ``root`` is trusted only if it has it.
    pinned: str | None = None

    def key_for(self, size: int) -> VerifierKey:
        """The key that must sign the checkpoint of ``size`` entries: a rotation at index ``i`` is signed
        into the tree by the previous key (size ``i + 1``) and hands over from size ``i + 2`` on."""
        key = self.root
        for index, new in self.rotations:
            if index + 1 < size:
                key = new
        return key

    @property
    def current(self) -> VerifierKey:
        """The key in force after every rotation (the one that signs the next checkpoint past them)."""
        return self.rotations[-1][1] if self.rotations else self.root

    def parse(self, note: str) -> Checkpoint:
        """A checkpoint note checked against the key that must have signed it."""
        _origin, size, _root = ledger.checkpoint_body(note)
        key = self.key_for(size)
        try:
            return ledger.parse_checkpoint(note, key)
        except LedgerError as e:
            raise LedgerError(f"{e} (the key in force at size {size} has fingerprint {fingerprint(key)})") from None

    def to_json(self) -> dict[str, Any]:
        pinned = {} if self.pinned is None else {"given_fingerprint": self.pinned, "matched": self.matched}
        return {
            "key": str(self.root),
            "fingerprint": fingerprint(self.root),
            "source": self.source,
            "rotations": [{"index": i, "key": str(k), "fingerprint": fingerprint(k)} for i, k in self.rotations],
        } | pinned

    @property
    def matched(self) -> bool:
        """The root has the fingerprint the person gave (always, when none was given)."""
        return self.pinned is None or fingerprint(self.root) == self.pinned

    @classmethod
    def start(cls, trusted: VerifierKey | Fingerprint | None, own: VerifierKey, own_source: str) -> KeyChain:
        """The chain's root before any rotation: the key the person gave, else the archive's or bag's own key
        (``own``, from ``own_source``), picked by the fingerprint the person gave when that is what they gave."""
        if trusted is None:
            return cls(own, own_source)
        if isinstance(trusted, Fingerprint):
            return cls(own, "fingerprint", pinned=trusted.hex)
        return cls(trusted, "trusted-key")


def describe_trust(trust: dict[str, Any]) -> str:
    """One line for people from :meth:`KeyChain.to_json`: which key was trusted, from where, and the witness."""
    where = {
        "trusted-key": "given with --trusted-key",
        "fingerprint": "its own key, matched by the fingerprint given with --trusted-key",
        "archive": "taken from the archive itself (keys/checkpoint.vkey); pin it with --trusted-key",
        "bag": "taken from the bag itself (custody/checkpoint.vkey); pin it with --trusted-key",
    }[trust["source"]]
    rotated = f", {len(trust['rotations'])} key rotation(s) followed" if trust["rotations"] else ""
    witness = f"; witness {trust['witness']}" if trust.get("witness") else ""
    if not trust.get("matched", True):
        return (
            f"trusted fingerprint {trust['given_fingerprint']} (given with --trusted-key) does NOT match its own "
            f"key {trust['fingerprint']}: nothing that key signed is trusted{witness}"
        )
    return f"trusted key {trust['fingerprint']} ({where}){rotated}{witness}"


def chain_from_entries(root: VerifierKey | KeyChain, source: str, entries: Iterable[tuple[int, bytes]]) -> KeyChain:
    """The chain from ``root`` (a key, or a chain just started by :meth:`KeyChain.start`) through the
    ``key_rotation`` entries among ``entries`` ((index, bytes), in order)."""
    import json

    chain = root if isinstance(root, KeyChain) else KeyChain(root, source)
    for index, data in entries:
        try:
            entry = json.loads(data)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") != ROTATION:
            continue
        why = _endorsement_problem(chain.current, entry)
        if why is None:
            chain.rotations.append((index, VerifierKey.parse(entry["key"])))
        else:
            chain.refused.append((index, why))
    return chain


def _endorsement_problem(in_force: VerifierKey, entry: dict[str, Any]) -> str | None:
    """Why a rotation entry does not hand over from the key in force (None: it does)."""
    try:
        new = VerifierKey.parse(str(entry.get("key")))
        previous = VerifierKey.parse(str(entry.get("previous")))
        signature = base64.b64decode(str(entry.get("endorsement")), validate=True)
    except (LedgerError, ValueError) as e:
        return f"key rotation entry is malformed ({e})"
    if previous != in_force:
        return (
            f"key rotation names previous key {fingerprint(previous)}, but the key in force is {fingerprint(in_force)}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(in_force.public).verify(
            signature, rotation_statement(in_force.name, previous, new)
        )
    except InvalidSignature:
        return f"key rotation to {fingerprint(new)} is not signed by the key in force {fingerprint(in_force)}"
    return None


def untrusted(chain: KeyChain, own: VerifierKey, where: str) -> list[tuple[str, int | None]]:
    """(message, ledger index) of what is wrong with a chain: the archive's or bag's own key (at ``where``)
    not being the trusted key, and each rotation entry the key in force did not endorse."""
    out: list[tuple[str, int | None]] = []
    if not chain.matched:
        out.append(
            (
                f"{where} (fingerprint {fingerprint(own)}) does not have the trusted fingerprint {chain.pinned} "
                "given with --trusted-key: nothing it signed can be trusted",
                None,
            )
        )
    if chain.root != own:
        out.append(
            (
                f"{where} (fingerprint {fingerprint(own)}) is not the trusted key (fingerprint "
                f"{fingerprint(chain.root)}): its checkpoints must verify with the trusted key",
                None,
            )
        )
    out += [(f"ledger entry {index}: {why}", index) for index, why in chain.refused]
    return out


def archive_chain(archive: Archive, trusted: VerifierKey | Fingerprint | None = None) -> KeyChain:
    """The archive's chain from ``trusted`` (else its own keys/checkpoint.vkey) through its ledger's rotations."""
    start = KeyChain.start(trusted, archive.verifier_key, "archive")
    return chain_from_entries(start, start.source, archive.catalog.ledger.of_type(ROTATION))


def rotated_key_path(first: Path, key: VerifierKey) -> Path:
    """Where a rotated-in signing key lives: beside the first one, named by its key id."""
    return first.with_name(f"{first.name}.{key.key_id.hex()}")


def signing_key(archive: Archive, key: VerifierKey) -> Ed25519PrivateKey:
    """The private key of ``key``: the policy's signing key for the archive's first key, else the rotated-in
    file beside it."""
    from custodes.archive import _signing_key as load  # the one reader that says what is wrong with a key file

    path = archive.signing_key_path if key == archive.verifier_key else rotated_key_path(archive.signing_key_path, key)
    private = load(path)
    _refuse_an_exposed_key(archive, path)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if public != key.public:
        raise LedgerError(
            f"{path}: this signing key is not the key in force ({fingerprint(key)}); restore the right key file"
        )
    return private


def _refuse_an_exposed_key(archive: Archive, path: Path) -> None:
    """A key others may read or replace signs nothing: what it signed anyone with it could have signed (a hostile
    review: a key at 0644, or in a folder anyone may write, signed every act without a word, and only verify
    called it ``unprotected``). Judged by the one rule verify uses (:func:`custodes._durable.key_exposure`),
    against the archive folder's owner. The way out: chmod, or chown it back."""
    from custodes.archive import ArchiveError

    try:
        owner = os.stat(archive.root).st_uid
    except OSError:
        return  # (the key was just read: a folder that vanished since is the act's own failure to meet)
    exposed = key_exposure(path, owner)
    if exposed is not None:
        place, secret, wrong = exposed
        what = "the signing key" if secret else f"the folder that holds the signing key {path}"
        raise ArchiveError(
            f"{place}: {'; '.join(wrong)}: {what} must be the archive's account's alone; it signs nothing so "
            f"({'chmod 600' if secret else 'chmod go-w'} {place}, and chown it back to that account)"
        )


def rotate_key(archive: Archive) -> dict[str, Any]:
    """Make a new signing key and hand over to it with a ledger entry endorsed and signed by the old one."""
    from custodes.access import require_role

    person = require_role(archive, ("custodian",), "rotate_key")
    old = archive_chain(archive).current
    old_private = signing_key(archive, old)
    new_private = Ed25519PrivateKey.generate()
    public = new_private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    new = VerifierKey(archive.policy.origin, public)
    path = rotated_key_path(archive.signing_key_path, new)
    pem = new_private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    endorsement = old_private.sign(rotation_statement(archive.policy.origin, old, new))
    # The key file is written inside the transaction, after the catalog took the write (a catalog custodes
    # writes nothing into refuses it, catalog.SchemaDiffersError) and after the check that nobody rotated
    # meanwhile: a refused rotation leaves no key behind. It is durable before the entry names it: a crash
    # between the two leaves a key file no entry names, and the old key in force.
    written = False
    try:
        with archive.transaction() as tx:
            in_force = chain_from_entries(archive.verifier_key, "archive", tx.ledger.of_type(ROTATION)).current
            if in_force != old:  # another rotation committed meanwhile: this endorsement speaks for a retired key
                raise LedgerError(
                    "the key was rotated by someone else meanwhile; run `custodes ledger rotate-key` again"
                )
            try:
                write_new_file(path, pem, 0o600)
                written = True
            except OSError as e:  # the transaction rolls back: said so (a hostile review: the disk's words alone)
                mend = (
                    "free space on its disk"
                    if e.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "give its folder to the archive's account, writable by it (chmod u+w)"
                )
                raise LedgerError(
                    f"{path}: the new key file cannot be written ({e.strerror or e}): nothing was recorded; {mend}, "
                    "then run the command again"
                ) from None
            crashpoint("rotate_key_file_written")
            now = time.time_ns()
            index = ledger.append(
                tx,
                {
                    "type": ROTATION,
                    "key": str(new),
                    "previous": str(old),
                    "endorsement": base64.b64encode(endorsement).decode(),
                    "by": person,
                    "time": now,
                },
            )
    except BaseException:
        # The entry was not recorded (refused, or its commit failed: an immutable catalog): the key it would have
        # named is no one's, and a re-run made another (a hostile review found two stray private keys).
        if written:
            path.unlink(missing_ok=True)
        raise
    crashpoint("rotate_key_entry_committed")  # `ledger checkpoint` then signs the entry, with the old key
    cp = archive.checkpoint()  # signed by the old key: the entry's own checkpoint
    return {
        "index": index,
        "previous_key": str(old),
        "previous_fingerprint": fingerprint(old),
        "key": str(new),
        "fingerprint": fingerprint(new),
        "signing_key": str(path),
        "checkpoint": cp.to_json(),
        "by": person,
    }
