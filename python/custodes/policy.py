"""The policy is ledgered: custodes.toml is in force only as the ledger's latest ``policy`` entry says.

A ``policy`` entry holds the policy file's exact text, its SHA-256, who set it,
when, and how (``init``: the archive's first entry; ``adopt``: an archive from
before policy entries took its file as it was, the first time it was opened;
``set``: the owner's first people, or a proposal put in force by a second person). Roles, retention and every
other setting are read from that entry's text, never from the file as it is
now: a hand edit (``minimum_days = 730`` to ``0``, a new approver in
``[people]``) changes nothing that custodes does. While the file differs from
the ledgered policy, every command that acts on evidence or records refuses
(:func:`require_current`) and ``custodes verify`` reports ``policy_mismatch``.

No approver acts alone through the policy: the policy says who may do
everything else, so changing it needs two people on two accounts.
``policy set`` checks the new file with the same loader, needs the approver
role, and only **proposes** the change: an ``access_propose_policy`` entry (its
access-log row; the entry holds the full text, its SHA-256, the proposer's
account and the policy entry it is based on), whose ledger index is the
proposal's id. ``policy approve N`` by another person on another account puts
it in force as a ``policy`` entry (action ``set``, naming the proposer, the
approver and the proposal); ``policy deny N`` closes it. A proposal no longer
based on the policy in force (another change was approved meanwhile) cannot be
approved. While the ledgered policy names no approver, the archive's owner
sets the policy directly (the first people of a new archive). Either way the
entry comes first and the file after: a crash between the two leaves the file
*behind*, said as such, and the same `policy set` (or `policy approve`) again
finishes the change.

An account keeps its name: a policy that renames an account that has acted
(the ledger names it as the person of an act or a refusal), or gives a name
another account has acted under to a new account, is refused
(:func:`_keeps_names`), so the records, decisions and reports name each person
one way, and self-approval compares accounts as well as names.
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
from custodes.defaults import given_reason
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
    "Proposal",
    "SetResult",
    "adopt",
    "approve_proposal",
    "deny_proposal",
    "digest",
    "history",
    "latest",
    "mismatch",
    "owner_account",
    "owner_alone",
    "proposals",
    "record_init",
    "require_current",
    "set_policy",
    "show",
]

#: The ledger entry type of a policy.
POLICY = "policy"
#: The verify finding kind of a policy file that is not the ledgered policy.
POLICY_MISMATCH = "policy_mismatch"
#: The access actions of a policy change: their entries are ``access_<action>`` (an access-log row each, see
#: catalog.replay), refusals included.
PROPOSE, APPROVE, DENY = "propose_policy", "approve_policy", "deny_policy"
#: Who may put another person's proposal in force, or deny it. An approver, or a custodian: a station with one
#: approver must still be able to change its policy, and the custodian is the other person answerable for the
#: archive. Since only an approver proposes, every change has an approver's and a second person's consent.
DECIDERS = ("approver", "custodian")


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
    proposal: int | None = None  # set from a proposal: its id, and who proposed it
    proposed_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sha256": self.sha256,
            "person": self.person,
            "time": rfc3339(self.time),
            "action": self.action,
            "proposal": self.proposal,
            "proposed_by": self.proposed_by,
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
            proposal, by = e.get("proposal"), e.get("proposed_by")
            proposal = proposal if isinstance(proposal, int) else None
            found.append(LedgeredPolicy(index, text, sha, person, at, str(action), proposal, by))
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
    older = _behind(archive, file_sha)
    if older is not None:
        return (
            f"{said}: the file is behind the ledger (it holds the policy of entry {older}); run "
            "`custodes policy set ARCHIVE FILE` with the ledgered policy again to finish writing it"
        )
    return (
        f"{said}: an edit by hand is not the policy (roles and retention stay the ledger's); put the file back "
        "(`custodes policy show ARCHIVE --json` holds the ledgered text) or have an approver propose the change "
        "with `custodes policy set ARCHIVE FILE` and a second person approve it (`custodes policy approve`)"
    )


def _behind(archive: Archive, file_sha: str) -> int | None:
    """The ledger entry of the earlier policy custodes.toml holds (a crash between a policy's entry and its file),
    or None."""
    older = [p for p in history(archive.catalog)[:-1] if p.sha256 == file_sha]
    return older[-1].index if older else None


def require_current(archive: Archive, *, behind_ok: bool = False) -> None:
    """Refuse (one line naming both) while custodes.toml differs from the ledgered policy: called before every
    command that acts on evidence or records (the CLI's archive argument does it). ``behind_ok``: a file that
    holds an earlier ledgered policy is let through (`ledger checkpoint`: the policy's entry a crash left unsigned
    is signed before `policy set` finishes the file), never one edited by hand."""
    line = mismatch(archive)
    if line is not None and not (behind_ok and _behind(archive, _file_digest(archive)) is not None):
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
        # With their text: whoever approves a change reads what they put in force.
        "proposals": [p.to_json() | {"text": p.text} for p in proposals(archive.catalog)],
    }


@dataclass(frozen=True)
class Proposal:
    """A policy change an approver proposed: its ``access_propose_policy`` entry, whose index is its id."""

    id: int
    text: str
    sha256: str
    person: str
    account: str
    time: int
    base: int  # the ledger index of the policy in force when it was proposed
    status: str = "pending"  # pending, approved, denied
    decided_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "person": self.person,
            "time": rfc3339(self.time),
            "base": self.base,
            "status": self.status,
            "decided_by": self.decided_by,
        }


def proposals(catalog: Catalog) -> list[Proposal]:
    """Every policy proposal, oldest first, with its status: approved when a policy entry names it, denied when
    a granted deny_policy entry does, else pending."""
    decided: dict[int, tuple[str, str]] = {
        p.proposal: ("approved", p.person) for p in history(catalog) if p.proposal is not None
    }
    for _index, data in catalog.ledger.of_type(f"access_{DENY}"):
        e = json.loads(data)
        if e.get("ok") and isinstance(e.get("proposal"), int):
            decided.setdefault(e["proposal"], ("denied", str(e.get("person"))))
    found = []
    for index, data in catalog.ledger.of_type(f"access_{PROPOSE}"):
        try:
            e = json.loads(data)
            if not e["ok"]:
                continue
            text, sha, person, account, at, base = (
                e["text"],
                e["sha256"],
                e["person"],
                e["account"],
                e["time"],
                e["base"],
            )
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(text, str) and sha == digest(text) and isinstance(base, int) and isinstance(at, int):
            status, by = decided.get(index, ("pending", None))
            found.append(Proposal(index, text, sha, str(person), str(account), at, base, status, by))
    return found


def _propose(archive: Archive, person: str, text: str, current: LedgeredPolicy) -> Proposal:
    """Record ``text`` as a proposal on the policy in force (its entry and access-log row); nothing changes."""
    from custodes.access import log_step

    sha = digest(text)
    detail = f"policy sha256 {sha} proposed on the policy of ledger entry {current.index}"
    with archive.transaction() as tx:
        index = log_step(
            tx, None, person, PROPOSE, None, True, detail, time.time_ns(), text=text, sha256=sha, base=current.index
        )
    archive.checkpoint()
    return next(p for p in proposals(archive.catalog) if p.id == index)


def _proposal(archive: Archive, proposal_id: int) -> Proposal:
    found = [p for p in proposals(archive.catalog) if p.id == proposal_id]
    if not found:
        raise CustodesError(f"no policy proposal {proposal_id} (`custodes policy show ARCHIVE` lists them)")
    return found[0]


def _may_decide(archive: Archive, proposal: Proposal, action: str) -> str:
    """The person deciding ``proposal``: an approver or a custodian (see :data:`DECIDERS`) and, to approve it,
    another person on another account than the proposer, through the service. Refusals are logged."""
    from custodes.access import refuse, refuse_token_decision, require_role

    person = require_role(archive, DECIDERS, action)
    refuse_token_decision(archive, None, person, action)  # approving or denying: a person logged in decides
    if action != APPROVE:
        return person  # a proposer may withdraw their own proposal: that changes nothing
    if person == proposal.person or current_caller().account == proposal.account:
        raise refuse(archive, None, action, None, f"nobody approves their own policy proposal ({proposal.id})")
    if current_caller().via == "process":
        # The embedded CLI acts as one account, the archive's owner: it cannot be the second person.
        raise refuse(
            archive,
            None,
            action,
            None,
            "a policy change needs a second person: run it through the archive service (`custodes serve`), "
            "where each person acts as their own account",
        )
    return person


def approve_proposal(archive: Archive, proposal_id: int) -> SetResult:
    """Put proposal ``proposal_id`` in force: its policy entry (naming proposer, approver and proposal) first,
    then custodes.toml. Approving it again after a crash between the two finishes writing the file."""
    from custodes.access import refuse, require_role
    from custodes.archive import Policy

    proposal = _proposal(archive, proposal_id)
    current = archive.ledgered_policy
    assert current is not None
    if proposal.status == "approved" and current.proposal == proposal.id:
        require_role(archive, DECIDERS, APPROVE)  # finishing it takes the role that may decide it
        archive.ready_to_record()  # refused beside entries no checkpoint covers: before the file is written
        status = "file_rewritten" if _write_file(archive, proposal.text) else "unchanged"
        return SetResult(_in_force(archive, Policy.parse(proposal.text, where(archive.root, current))), status)
    if proposal.status != "pending":
        raise CustodesError(f"policy proposal {proposal.id} is already {proposal.status} by {proposal.decided_by}")
    person = _may_decide(archive, proposal, APPROVE)
    if proposal.base != current.index:
        raise refuse(
            archive,
            None,
            APPROVE,
            None,
            f"policy proposal {proposal.id} was made on the policy of ledger entry {proposal.base}, but entry "
            f"{current.index} is in force now: it cannot be approved; propose the change again on the policy in force",
        )
    label = f"policy proposal {proposal.id}"
    new = Policy.parse(proposal.text, label)  # it parsed when proposed; the same custodes parses it the same way
    _keeps_names(archive, new, label)  # someone may have acted under a name it gives since it was proposed
    now = time.time_ns()
    with archive.transaction() as tx:
        _decision(tx, APPROVE, person, proposal, f"{label} by {proposal.person} put in force", now)
        ledger.append(
            tx,
            _entry(proposal.text, person, now, "set")
            | {"proposal": proposal.id, "proposed_by": proposal.person, "account": current_caller().account},
        )
    crashpoint("policy_entry_committed")
    _write_file(archive, proposal.text)
    return SetResult(_in_force(archive, new), "recorded", _proposal(archive, proposal_id))


def deny_proposal(archive: Archive, proposal_id: int, reason: str) -> Proposal:
    """Close proposal ``proposal_id`` without putting it in force."""
    given_reason(reason, "a denial")
    proposal = _proposal(archive, proposal_id)
    if proposal.status != "pending":
        raise CustodesError(f"policy proposal {proposal.id} is already {proposal.status} by {proposal.decided_by}")
    person = _may_decide(archive, proposal, DENY)
    with archive.transaction() as tx:
        _decision(tx, DENY, person, proposal, reason, time.time_ns())
    archive.checkpoint()
    return _proposal(archive, proposal_id)


def _decision(tx: Catalog, action: str, person: str, proposal: Proposal, detail: str, now: int) -> None:
    """A granted decision on ``proposal``: its access-log row, naming the proposal (refusals go through
    access.refuse)."""
    from custodes.access import log_step

    log_step(tx, None, person, action, None, True, detail, now, proposal=proposal.id)


@dataclass(frozen=True)
class SetResult:
    """What :func:`set_policy` did with the file: the policy in force after it and how it got there."""

    policy: LedgeredPolicy
    #: recorded: a new entry; unchanged: the ledger and the file already held it; file_rewritten: the ledger
    #: held it (a change a crash cut short), and only the file was written; proposed: a proposal was recorded
    #: and the policy in force (``policy``) is unchanged.
    status: str
    proposal: Proposal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "policy": self.policy.to_json(),
            "proposal": None if self.proposal is None else self.proposal.to_json(),
        }


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
    from custodes.archive import ArchiveError, _key_place, _key_protected, _signing_key

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
        try:  # said of the proposed file (a hostile review: told to restore custodes.toml, where all was well)
            named = _signing_key(
                moved,
                missing="move the key file there before a policy names it",
                not_a_key="a policy names the file that holds the archive's key",
            )
        except ArchiveError as e:
            raise CustodesError(f"{path}: [keys] signing_key = {new.signing_key!r}: {e}") from None
        # Held to init's rule at once (a hostile review: a key moved into a folder anyone could write was accepted,
        # and signed until another account deleted it); a key already in force is verify's to report.
        _key_protected(moved, f"{path}: [keys] signing_key = {new.signing_key!r}")
        same = named.public_key().public_bytes_raw() == (
            _signing_key(archive.signing_key_path).public_key().public_bytes_raw()
        )
        if not same:
            raise CustodesError(
                f"{path}: [keys] signing_key {new.signing_key!r} holds another key than {old.signing_key!r}; "
                "move the key file itself there first (a new key is `custodes ledger rotate-key`)"
            )


def owner_alone(archive: Archive) -> bool:
    """Whether the caller is the archive's owner while its policy names no approver (what ``custodes init``
    makes: no ``[people]``): with no second person to answer to, the owner acts as the station itself. The one
    rule of what such an owner may do without a role: set the policy directly (a new archive's first people),
    and make the catalog again from the ledger (``custodes ledger rebuild-catalog --replace``), the way out of
    a catalog custodes writes nothing into."""
    # The policy in force is the latest policy entry found by type: one filed otherwise would leave an older
    # policy, perhaps one naming no approver, in force (catalog.ledger.MisfiledError).
    archive.catalog.ledger.require_filed()
    people = archive.policy.extra.get("people", {})
    return "approver" not in people.values() and current_caller().uid == _owner(archive)


def owner_account(archive: Archive) -> str:
    """The account that owns the archive's folder (its embedded owner)."""
    return account_name(_owner(archive))


def _may_set(archive: Archive) -> tuple[str, bool]:
    """The person setting the policy, and whether they set it directly: the archive's owner while the ledgered
    policy names no approver (a new archive's first people); else an approver, who proposes. Anyone else is
    refused, and the refusal is logged."""
    from custodes.access import current_person, require_role

    if owner_alone(archive):
        return current_person(archive), True
    return require_role(archive, ("approver",), "set_policy"), False


def _keeps_names(archive: Archive, new: Policy, path: str) -> None:
    """Refuse a policy that gives an account that has acted another name, or gives a name that an account has
    acted under to another account: the log, the decisions and the reports name a person by it, and a second
    name for one account (or one name for two) would let one person pass for two or hide behind another."""
    from custodes.access import UNNAMED, accounts_named, identities, name_holder, person_of

    acted: dict[str, set[str]] = {}
    for name, account in archive.catalog.ledger.actors():
        if name.startswith(UNNAMED):
            continue  # no name: an account [identity] took the name of, refused; the records name the account
        # An entry from before entries recorded the account: the accounts the policy in force gives that name.
        acted.setdefault(name, set()).update({account} if account else accounts_named(archive.policy, name))
    # A name given to another account first: it also leaves the account that acted under it unnamed
    # (custodes.access.person_of), and this says the cause.
    for account, name in sorted(identities(new).items()):
        others = acted.get(name, set()) - {account}
        if others and account not in acted.get(name, set()):
            raise CustodesError(
                f"{path}: [identity] gives account {account} the name {name!r}, which account "
                f"{sorted(others)[0]} has acted under; a name stays with its account: choose another"
            )
    for name, accounts in sorted(acted.items()):
        for account in sorted(accounts):
            if person_of(new, account) != name:
                holder = name_holder(new, account)
                given = (
                    repr(person_of(new, account)) if holder is None else f"nothing (it gives {account!r} to {holder})"
                )
                raise CustodesError(
                    f"{path}: [identity] names account {account} {given}, but it has acted as "
                    f"{name!r}, and an account keeps its name in the records; keep {account} = {name!r}"
                )


def _write_file(archive: Archive, text: str) -> bool:
    """custodes.toml takes ``text`` (after its entry: a crash between them leaves the file behind, never ahead);
    False when it held it already."""
    if _file_digest(archive) == digest(text):
        return False
    (archive.root / "tmp").mkdir(exist_ok=True)
    replace_file(_file(archive), text, archive.root / "tmp")
    return True


def _in_force(archive: Archive, new: Policy) -> LedgeredPolicy:
    archive.ledgered_policy = latest(archive.catalog)
    archive.policy = new
    archive.checkpoint()  # also signs an entry a crash left unsigned
    assert archive.ledgered_policy is not None
    return archive.ledgered_policy


def set_policy(archive: Archive, path: str) -> SetResult:
    """Propose the policy in the file at ``path`` (an approver), or record it and write it to custodes.toml (the
    owner while no approver is named; anyone allowed to set it, when the ledger already holds it)."""
    from custodes.archive import Policy

    text = _read_new(path)
    new = Policy.parse(text, path)  # the same loader as every open: a bad file is refused before anything
    from custodes.archive import check_storage_place

    # Where the copies go, by the rules init applies: a second copy inside the archive's folder would make the
    # archive one that no command can open any more, this one included.
    check_storage_place(archive.root, new)
    _same_archive(archive, new, path)
    _keeps_names(archive, new, path)
    person, directly = _may_set(archive)
    current = archive.ledgered_policy
    assert current is not None  # an archive opened for work has one (init records it, an old one adopts it)
    if current.sha256 == digest(text):  # in force already; the file may still be behind (a crash)
        archive.ready_to_record()  # refused beside entries no checkpoint covers: before the file is written
        status = "file_rewritten" if _write_file(archive, text) else "unchanged"
        return SetResult(_in_force(archive, new), status)
    if not directly:
        return SetResult(current, "proposed", _propose(archive, person, text, current))
    with archive.transaction() as tx:
        ledger.append(tx, _entry(text, person, time.time_ns(), "set"))
    crashpoint("policy_entry_committed")
    _write_file(archive, text)
    return SetResult(_in_force(archive, new), "recorded")
