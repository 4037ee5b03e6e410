"""The policy is ledgered: custodes.toml is in force only as the ledger's latest ``policy`` entry says.

A ``policy`` entry holds the policy file's exact text, its SHA-256, who set it,
when, and how (``init``: the archive's first entry; ``adopt``: an archive from
before policy entries took its file as it was, the first time it was opened;
``set``: `custodes policy set`, by an approver). Roles, retention and every
other setting are read from that entry's text, never from the file as it is
now: a hand edit (``minimum_days = 730`` to ``0``, a new approver in
``[people]``) changes nothing that custodes does. While the file differs from
the ledgered policy, every command that acts on evidence or records refuses
(:func:`require_current`) and ``custodes verify`` reports ``policy_mismatch``.

``policy set`` checks the new file with the same loader, needs the approver role
(while the ledgered policy names no approver, the archive's owner may set it: the
first people of a new archive), appends the entry, then replaces the file
atomically. A crash between the two leaves the ledger ahead: the file is
*behind*, said as such, and `policy set` with the same file finishes the change.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodes import ledger
from custodes._durable import replace_file
from custodes._faults import crashpoint
from custodes.errors import CustodesError
from custodes.findings import rfc3339
from custodes.identity import account_name, current_caller

if TYPE_CHECKING:
    from custodes.archive import Archive, Policy
    from custodes.catalog import Catalog

__all__ = [
    "POLICY",
    "POLICY_MISMATCH",
    "LedgeredPolicy",
    "PolicyMismatch",
    "SetResult",
    "adopt",
    "digest",
    "history",
    "latest",
    "mismatch",
    "record_init",
    "require_current",
    "set_policy",
    "show",
]

#: The ledger entry type of a policy.
POLICY = "policy"
#: The verify finding kind of a policy file that is not the ledgered policy.
POLICY_MISMATCH = "policy_mismatch"


class PolicyMismatch(CustodesError):
    """custodes.toml is not the policy the ledger says is in force: commands that act refuse."""

    kind = POLICY_MISMATCH


@dataclass(frozen=True)
class LedgeredPolicy:
    """One ``policy`` entry of the ledger."""

    index: int
    text: str
    sha256: str
    person: str
    time: int
    action: str  # init, adopt, set

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sha256": self.sha256,
            "person": self.person,
            "time": rfc3339(self.time),
            "action": self.action,
        }


def digest(data: str | bytes) -> str:
    """The SHA-256 (hex) of a policy's text as the file holds it (UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _entry(text: str, person: str, now: int, action: str) -> dict[str, Any]:
    return {"type": POLICY, "text": text, "sha256": digest(text), "person": person, "time": now, "action": action}


def history(catalog: Catalog) -> list[LedgeredPolicy]:
    """Every policy entry, oldest first. An entry that does not parse as one is left out here: it cannot be
    in force, and verify's leaf and checkpoint checks report whatever changed it."""
    found = []
    for index, data in catalog.ledger.of_type(POLICY):
        try:
            e = json.loads(data)
            text, sha, person, at, action = e["text"], e["sha256"], e["person"], e["time"], e["action"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(text, str) and sha == digest(text) and isinstance(person, str) and isinstance(at, int):
            found.append(LedgeredPolicy(index, text, sha, person, at, str(action)))
    return found


def latest(catalog: Catalog) -> LedgeredPolicy | None:
    """The policy in force: the latest policy entry (None: an archive from before policy entries)."""
    entries = history(catalog)
    return entries[-1] if entries else None


def where(root: Path, entry: LedgeredPolicy) -> str:
    """How an error in a ledgered policy names it."""
    return f"{root / 'custodes.toml'} (as ledger entry {entry.index} holds it)"


def _file(archive: Archive) -> Path:
    from custodes.archive import POLICY_FILE

    return archive.root / POLICY_FILE


def _owner(archive: Archive) -> int:
    return os.stat(archive.root).st_uid


def record_init(archive: Archive, text: str) -> int:
    """The first entry of a new archive: the policy init wrote, set by whoever ran init."""
    with archive.transaction() as tx:
        index = ledger.append(tx, _entry(text, current_caller().account, time.time_ns(), "init"))
    archive.ledgered_policy = latest(archive.catalog)
    return index


def adopt(archive: Archive) -> None:
    """An archive from before policy entries takes its custodes.toml (already loaded and checked) as its
    ledgered policy, set by the archive's owner (who alone could write the file), and says so once."""
    raw = _file(archive).read_bytes()
    text = raw.decode("utf-8")  # Policy.load read it as UTF-8 already
    with archive.transaction() as tx:
        if latest(tx) is not None:  # another process adopted it meanwhile
            archive.ledgered_policy = latest(tx)
            return
        index = ledger.append(tx, _entry(text, account_name(_owner(archive)), time.time_ns(), "adopt"))
    archive.ledgered_policy = latest(archive.catalog)
    archive.checkpoint()
    sys.stderr.write(
        f"custodes: {_file(archive)}: adopted as the archive's ledgered policy (ledger entry {index}); from now on "
        "it changes only through `custodes policy set`, and a hand edit makes commands refuse\n"
    )
    sys.stderr.flush()


def _file_digest(archive: Archive) -> str:
    return digest(_file(archive).read_bytes())


def mismatch(archive: Archive) -> str | None:
    """One line naming the file and the ledgered policy when they differ; None when they agree."""
    current = archive.ledgered_policy
    if current is None:
        return None  # only while init writes the first entry
    file_sha = _file_digest(archive)
    if file_sha == current.sha256:
        return None
    path = _file(archive)
    said = (
        f"{path} (sha256 {file_sha[:16]}) differs from the ledgered policy (ledger entry {current.index}, "
        f"set by {current.person} at {rfc3339(current.time)}, sha256 {current.sha256[:16]})"
    )
    older = [p for p in history(archive.catalog)[:-1] if p.sha256 == file_sha]
    if older:
        return (
            f"{said}: the file is behind the ledger (it holds the policy of entry {older[-1].index}); run "
            "`custodes policy set ARCHIVE FILE` with the ledgered policy again to finish writing it"
        )
    return (
        f"{said}: an edit by hand is not the policy (roles and retention stay the ledger's); put the file back "
        "(`custodes policy show ARCHIVE --json` holds the ledgered text) or have an approver record the change "
        "with `custodes policy set ARCHIVE FILE`"
    )


def require_current(archive: Archive) -> None:
    """Refuse (one line naming both) while custodes.toml differs from the ledgered policy: called before every
    command that acts on evidence or records (the CLI's archive argument does it)."""
    line = mismatch(archive)
    if line is not None:
        raise PolicyMismatch(f"refusing to act: {line}")


# ---- policy show / policy set --------------------------------------------------------------


def _may_read(archive: Archive) -> None:
    """The owner, or anyone with a role; anyone else is refused and logged (the policy names the people)."""
    from custodes.access import ROLES, require_role

    if current_caller().uid != _owner(archive):
        require_role(archive, ROLES, "show_policy")


def show(archive: Archive) -> dict[str, Any]:
    """The ledgered policy (its entry, text and history) and whether custodes.toml matches it."""
    _may_read(archive)
    current = archive.ledgered_policy
    assert current is not None  # an archive opened for work has one (init records it, an old one adopts it)
    file_sha = _file_digest(archive)
    return {
        "policy": current.to_json(),
        "text": current.text,
        "file": {
            "path": str(_file(archive)),
            "sha256": file_sha,
            "matches": file_sha == current.sha256,
            "mismatch": mismatch(archive),
        },
        "history": [p.to_json() for p in history(archive.catalog)],
    }


@dataclass(frozen=True)
class SetResult:
    policy: LedgeredPolicy
    #: recorded: a new entry; unchanged: the ledger and the file already held it; file_rewritten: the ledger
    #: held it (a change a crash cut short), and only the file was written.
    status: str

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "policy": self.policy.to_json()}


def _read_new(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CustodesError(f"{path}: cannot read the policy: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CustodesError(f"{path}: the policy is not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def _same_archive(archive: Archive, new: Policy, path: str) -> None:
    """What a policy may not change: the archive's id and origin (they name every signed checkpoint), its
    storage (the objects live there) and its signing key (a path must hold the same key)."""
    from custodes.archive import _key_place, _signing_key

    old = archive.policy
    for table, key, was, now in (
        ("archive", "id", old.archive_id, new.archive_id),
        ("archive", "origin", old.origin, new.origin),
        ("storage", "backend", old.storage, new.storage),
    ):
        if was != now:
            raise CustodesError(
                f"{path}: [{table}] {key} = {now!r}, but this archive's is {was!r} and cannot change; keep it"
            )
    _key_place(archive.root, new.signing_key, f"{path}: [keys] signing_key")
    if new.signing_key != old.signing_key:
        moved = Path(new.signing_key) if os.path.isabs(new.signing_key) else archive.root / new.signing_key
        same = _signing_key(moved).public_key().public_bytes_raw() == (
            _signing_key(archive.signing_key_path).public_key().public_bytes_raw()
        )
        if not same:
            raise CustodesError(
                f"{path}: [keys] signing_key {new.signing_key!r} holds another key than {old.signing_key!r}; "
                "move the key file itself there first (a new key is `custodes ledger rotate-key`)"
            )


def _may_set(archive: Archive) -> str:
    """The person setting the policy: an approver, or, while the ledgered policy names no approver, the
    archive's owner (a new archive's first people). Anyone else is refused, and the refusal is logged."""
    from custodes.access import current_person, require_role

    people = archive.policy.extra.get("people", {})
    if "approver" not in people.values() and current_caller().uid == _owner(archive):
        return current_person(archive)
    return require_role(archive, ("approver",), "set_policy")


def set_policy(archive: Archive, path: str) -> SetResult:
    """Record the policy in the file at ``path`` as the archive's policy, then write it to custodes.toml."""
    from custodes.archive import Policy

    text = _read_new(path)
    new = Policy.parse(text, path)  # the same loader as every open: a bad file is refused before anything
    _same_archive(archive, new, path)
    person = _may_set(archive)
    current = archive.ledgered_policy
    status = "unchanged"
    if current is None or current.sha256 != digest(text):
        with archive.transaction() as tx:
            ledger.append(tx, _entry(text, person, time.time_ns(), "set"))
        status = "recorded"
        crashpoint("policy_entry_committed")
    if _file_digest(archive) != digest(text):
        # The ledger first, the file after: a crash between them leaves the file behind, never ahead.
        (archive.root / "tmp").mkdir(exist_ok=True)
        replace_file(_file(archive), text, archive.root / "tmp")
        status = "file_rewritten" if status == "unchanged" else status
    archive.ledgered_policy = latest(archive.catalog)
    archive.policy = new
    archive.checkpoint()  # also signs an entry a crash left unsigned
    assert archive.ledgered_policy is not None
    return SetResult(archive.ledgered_policy, status)
