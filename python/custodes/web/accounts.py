"""Local accounts and API tokens of the web front end: the one implementation the CLI (``custodes user``,
``custodes token``) and the web's login both use.

A local account NAME acts as ``Caller(uid=None, account=NAME, via="tool")``: its person and role come from the
policy's ``[people]`` (and ``[identity]``) exactly as an OS account's do, so a role given or taken away in the
policy holds for it at its next request. Passwords are kept as argon2id hashes (argon2-cffi's defaults, RFC 9106);
tokens and session cookies as their sha256 (they are random, 32 bytes: nothing to stretch). Ten wrong passwords in
a row lock an account until a custodian unlocks it or sets a new password.

A password set by anyone but the account's own person (``custodes user add|passwd`` by a custodian) is
**one-time**: a session opened with it reaches only the change of password (custodes.web.password), and the
person's own new password (:func:`change_own_password`, through their session) is theirs alone. The roles come
from the account's name, and a custodian sets the passwords: so a custodian could set an approver's and act as
them. With one-time passwords that cannot go unnoticed: the person finds their password changed, and the ledger
names who set it and every login.

Every change (``account_added``, ``account_password_set``, ``account_disabled``, ``account_enabled``,
``account_unlocked``, ``token_issued``, ``token_revoked``) is a ledger entry naming who made it, never the
secret; the catalog makes no rows of them (custodes.catalog.replay). Only a custodian makes them: through the
archive service or the web (the caller's role checked by :func:`custodes.access.require_role`), or the archive's
owner working on it directly (the station itself, as for every command run embedded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from custodes._faults import crashpoint
from custodes.access import ROLES, UNNAMED, log_step, person_of, person_role, require_role
from custodes.archive import Archive
from custodes.catalog import Catalog, replay
from custodes.catalog.accounts import AccountRow, AccountStore, TokenRow
from custodes.errors import CustodesError
from custodes.identity import Caller, current_caller

__all__ = [
    "LOCK_AFTER",
    "AccountError",
    "Login",
    "PasswordCheck",
    "add_account",
    "change_own_password",
    "check_password",
    "count_password",
    "disable_account",
    "enable_account",
    "issue_token",
    "ledgered",
    "list_accounts",
    "list_tokens",
    "local_caller",
    "log_login",
    "login_step",
    "new_secret",
    "revoke_token",
    "secret_digest",
    "set_password",
    "token_caller",
    "unlock_account",
]

#: Wrong passwords in a row that lock an account (the issue's "ten").
LOCK_AFTER = 10
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASHER = PasswordHasher()  # argon2id, with argon2-cffi's RFC 9106 low-memory parameters


class AccountError(CustodesError):
    """A bad account name, password or token, or one that does not exist."""


def local_caller(name: str) -> Caller:
    """The caller a local account acts as: no uid (no OS account vouches for it); the web front end did."""
    return Caller(None, name, "tool")


def token_caller(name: str) -> Caller:
    """The caller an API token of account ``name`` acts as: ``via="token"``, so the library knows no person
    logged in (custodes.access refuses it every decision)."""
    return Caller(None, name, "token")


def new_secret() -> str:
    """32 random bytes, URL-safe base64 (a session cookie, a token, a CSRF token)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def secret_digest(secret: str) -> str:
    """What is stored of a session cookie or token: its sha256 (hex)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AccountError(
            f"account name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def _custodian(archive: Archive, action: str) -> str:
    """The person making an account change: a custodian, or the archive's owner working on it directly."""
    if current_caller().via == "process":  # embedded: the CLI let only the archive's owner get this far
        return person_of(archive.policy, current_caller().account)
    return require_role(archive, ("custodian",), action)


@contextmanager
def ledgered(
    archive: Archive, store: AccountStore | None = None
) -> Iterator[tuple[Catalog, AccountStore, Callable[[], None]]]:
    """The catalog's write transaction, and inside it the accounts store's own (``store``, else the archive's
    accounts.sqlite, opened only then): for a change of accounts.sqlite and its ledger entry (an account change,
    a login counted). Yields the catalog (to record the entry in), the store, and the function that commits the
    store at once; else it commits after the catalog.

    The catalog's transaction is taken first: a catalog custodes writes nothing into (catalog.SchemaDiffersError)
    refuses before accounts.sqlite is touched, and its write lock makes these changes one at a time. The two files
    cannot commit as one, so the order is the one whose crash between the two commits is harmless:
    accounts.sqlite never lets anyone do more than the ledger records. A change that grants (an account, a
    password, enabling, unlocking, a token, a right password ending the count of wrong ones) leaves the commit
    to after the ledger entry's; a crash then leaves an entry whose change never took effect (the command failed:
    run again, it makes the change and a second entry). A change that takes away (disabling, revoking a token, a
    wrong password counted) calls the function before the block ends: a crash then leaves an account or token
    that can do less than the ledger says, never more."""
    with ExitStack() as accounts:
        with archive.transaction() as tx:
            if store is None:  # opened (made, when there is none yet) only once the catalog took the write
                store = accounts.enter_context(AccountStore.open(archive.root))
            commit = accounts.enter_context(store.held())  # after the catalog's lock: one order everywhere

            def commit_first() -> None:
                commit()
                crashpoint("accounts_committed_before_entry")

            yield tx, store, commit_first
        crashpoint("account_entry_committed")
        commit()


def _change(
    archive: Archive, kind: str, person: str, change: Callable[[AccountStore], dict[str, Any]], *, grants: bool
) -> None:
    """An account change and its ledger entry (type ``kind``, by ``person``, with the facts ``change`` returns;
    never a secret), made by :func:`ledgered` (``grants``: whether the change gives rather than takes away), then
    signed into a checkpoint. ``change`` makes the change in the store it is given, or raises (AccountError) and
    nothing is written anywhere."""
    with ledgered(archive) as (tx, store, commit_accounts):
        replay.record(tx, _entry(kind, person, change(store)))
        if not grants:
            commit_accounts()
    archive.checkpoint()


def _entry(kind: str, person: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The ledger entry of an account change: who made it, through which account, when, and its facts."""
    return {"type": kind, "person": person, "account": current_caller().account, "time": time.time_ns(), **facts}


def _existing(store: AccountStore, name: str) -> AccountRow:
    row = store.account(name)
    if row is None:
        raise AccountError(f"no local account {name!r}; add it with `custodes user add`")
    return row


def _one_time(archive: Archive, person: str, name: str) -> bool:
    """Whether a password ``person`` sets for account ``name`` is one-time: set by anyone but its own person."""
    return person != person_of(archive.policy, name)


def add_account(archive: Archive, name: str, password: str) -> None:
    """A new local account ``name`` with ``password`` (hashed with argon2id): one-time, unless the custodian
    makes their own account."""
    person = _custodian(archive, "user_add")
    check_name(name)
    hashed = _HASHER.hash(_check_password(password))
    one_time = _one_time(archive, person, name)

    def add(store: AccountStore) -> dict[str, Any]:
        if not store.add_account(name, hashed, time.time_ns(), one_time=one_time):
            raise AccountError(f"local account {name!r} exists already; `custodes user passwd` sets its password")
        return {"name": name, "one_time": one_time}

    _change(archive, "account_added", person, add, grants=True)


def set_password(archive: Archive, name: str, password: str) -> None:
    """A new password for ``name``, by a custodian: one-time (unless it is the custodian's own account); it
    unlocks the account, and its sessions end."""
    person = _custodian(archive, "user_passwd")
    hashed = _HASHER.hash(_check_password(password))
    one_time = _one_time(archive, person, name)

    def set_hash(store: AccountStore) -> dict[str, Any]:
        _existing(store, name)
        store.set_hash(name, hashed, one_time=one_time)
        return {"name": name, "one_time": one_time}

    _change(archive, "account_password_set", person, set_hash, grants=True)


def change_own_password(archive: Archive, name: str, current: str, new: str, *, session: str | None = None) -> None:
    """The person of account ``name``, logged in as it, sets their own password: ``current`` must be right (a
    wrong one counts towards the lock, as at login) and ``new`` another one (a one-time password stays
    known to whoever set it). The account's other sessions end (``session``: the digest of the one kept); the
    ledger names the person as the maker (``account_password_set``, ``one_time`` false)."""
    caller = current_caller()
    if caller.via != "tool" or caller.account != name:
        raise AccountError(f"only {name}'s own person, logged in as {name}, sets {name}'s own password")
    _check_password(new)
    if hmac.compare_digest(new.encode("utf-8", "surrogateescape"), current.encode("utf-8", "surrogateescape")):
        raise AccountError("the new password is the current one; choose another")
    with AccountStore.open(archive.root) as store:
        checked = check_password(store, name, current)  # argon2id's time, before any lock is taken
        hashed = _HASHER.hash(new)
        # As at login: on a catalog custodes writes nothing into, refused before the password is counted.
        with ledgered(archive, store) as (tx, _, commit_accounts):
            counted = count_password(store, checked)
            if not counted.ok:
                # A wrong one counts towards the lock (it takes away: it may stand alone); nothing is ledgered.
                commit_accounts()
                raise AccountError(counted.why if counted.locked else "the current password is wrong")
            store.set_hash(name, hashed, one_time=False, keep_session=session)
            facts = {"name": name, "one_time": False}
            replay.record(tx, _entry("account_password_set", person_of(archive.policy, name), facts))
    archive.checkpoint()


def _custodial_change(
    archive: Archive, action: str, entry: str, name: str, change: Callable[[AccountStore], object], *, grants: bool
) -> None:
    """A custodian's ``change`` to the existing account ``name`` (refused and logged as ``action`` for anyone
    else) and its ledger entry of type ``entry`` (:func:`_change`: ``grants`` says which commits first)."""
    person = _custodian(archive, action)

    def made(store: AccountStore) -> dict[str, Any]:
        _existing(store, name)
        change(store)
        return {"name": name}

    _change(archive, entry, person, made, grants=grants)


def disable_account(archive: Archive, name: str) -> None:
    """``name`` may no longer log in; its sessions end and its tokens stop acting."""
    _custodial_change(
        archive, "user_disable", "account_disabled", name, lambda store: store.set_disabled(name, True), grants=False
    )


def enable_account(archive: Archive, name: str) -> None:
    _custodial_change(
        archive, "user_enable", "account_enabled", name, lambda store: store.set_disabled(name, False), grants=True
    )


def unlock_account(archive: Archive, name: str) -> None:
    """End the lock ten wrong passwords put on ``name``."""
    _custodial_change(archive, "user_unlock", "account_unlocked", name, lambda store: store.unlock(name), grants=True)


@dataclass(frozen=True)
class AccountInfo:
    """A local account as ``custodes user list`` shows it: never its hash."""

    name: str
    person: str
    role: str | None
    disabled: bool
    locked: bool
    failures: int
    #: The password is one-time: someone else set it, and the person has not yet set their own.
    one_time: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "person": self.person,
            "role": self.role,
            "disabled": self.disabled,
            "locked": self.locked,
            "failures": self.failures,
            "one_time": self.one_time,
        }


def list_accounts(archive: Archive) -> list[AccountInfo]:
    _custodian(archive, "user_list")
    with AccountStore.open(archive.root) as store:
        rows = store.accounts()
    out = []
    for r in rows:
        person = person_of(archive.policy, r.name)
        out.append(
            AccountInfo(
                r.name,
                person,
                person_role(archive, person),
                bool(r.disabled),
                bool(r.locked),
                r.failures,
                bool(r.must_change),
            )
        )
    return out


@dataclass(frozen=True)
class TokenInfo:
    """An API token as ``custodes token list`` shows it: never the token, nor its digest."""

    id: int
    account: str
    role: str
    label: str
    created_ns: int
    revoked_ns: int | None

    @classmethod
    def of(cls, row: TokenRow) -> TokenInfo:
        return cls(row.id, row.account, row.role, row.label, row.created_ns, row.revoked_ns)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "role": self.role,
            "label": self.label,
            "created_ns": self.created_ns,
            "revoked_ns": self.revoked_ns,
        }


def issue_token(archive: Archive, name: str, role: str, label: str = "") -> tuple[TokenInfo, str]:
    """A new API token for account ``name``, acting with ``role`` (and only while the account has that role in
    the policy). Returns it with the token itself, which is shown once and kept nowhere but as its sha256."""
    person = _custodian(archive, "token_add")
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(label) > 200:
        raise AccountError("the token's label is longer than 200 characters")
    secret = new_secret()
    issued: list[TokenRow] = []

    def add(store: AccountStore) -> dict[str, Any]:
        _existing(store, name)
        token_id = store.add_token(secret_digest(secret), name, role, label, time.time_ns())
        row = store.token_by_id(token_id)
        assert row is not None
        issued.append(row)
        return {"name": name, "token": token_id, "role": role, "label": label}

    _change(archive, "token_issued", person, add, grants=True)
    return TokenInfo.of(issued[0]), secret


def revoke_token(archive: Archive, token_id: int) -> None:
    person = _custodian(archive, "token_revoke")

    def revoke(store: AccountStore) -> dict[str, Any]:
        row = store.token_by_id(token_id)
        if row is None:
            raise AccountError(f"no token {token_id}")
        if not store.revoke_token(token_id, time.time_ns()):
            raise AccountError(f"token {token_id} is revoked already")
        return {"name": row.account, "token": token_id}

    _change(archive, "token_revoked", person, revoke, grants=False)


def list_tokens(archive: Archive) -> list[TokenInfo]:
    _custodian(archive, "token_list")
    with AccountStore.open(archive.root) as store:
        return [TokenInfo.of(r) for r in store.tokens()]


@dataclass(frozen=True)
class Login:
    """What a password check found: ``ok``, else ``why`` (said in the access log; the visitor is only told the
    name or password is wrong, or that the account is locked)."""

    ok: bool
    why: str
    locked: bool = False
    #: The password is one-time (someone else set it): the session may only change it.
    one_time: bool = False


@dataclass(frozen=True)
class PasswordCheck:
    """What :func:`check_password` found, before anything is counted (:func:`count_password`)."""

    name: str
    #: The account is there, enabled and not locked, and the password is its own.
    right: bool
    #: Why not, when the account is missing, disabled or locked (the password was not looked at).
    refused: Login | None = None


def check_password(store: AccountStore, name: str, password: str) -> PasswordCheck:
    """Check ``password`` for local account ``name``, writing nothing (argon2id takes its time: no lock is held
    for it). A locked or disabled account is refused whatever the password."""
    row = store.account(name) if _NAME.fullmatch(name) else None
    if row is None:
        _HASHER.hash("a password to spend the time a real check takes")  # no telling names by the answer's speed
        return PasswordCheck(name, False, Login(False, "no such local account"))
    if row.disabled:
        return PasswordCheck(name, False, Login(False, "the account is disabled"))
    if row.locked:
        return PasswordCheck(
            name, False, Login(False, f"the account is locked after {LOCK_AFTER} wrong passwords", locked=True)
        )
    try:
        _HASHER.verify(row.hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return PasswordCheck(name, False)
    return PasswordCheck(name, True)


def count_password(store: AccountStore, checked: PasswordCheck) -> Login:
    """Count what :func:`check_password` found: a wrong password counts towards the lock (:data:`LOCK_AFTER` in
    a row), a right one ends the count. The login's ledger entry is the caller's to write with it
    (:func:`ledgered`: nothing counted that is not ledgered)."""
    if checked.refused is not None:
        return checked.refused
    name = checked.name
    if not checked.right:
        after = store.note_failure(name, LOCK_AFTER)
        if after is not None and after.locked:
            return Login(False, f"wrong password; the account is now locked after {LOCK_AFTER} in a row", locked=True)
        return Login(False, "wrong password")
    row = store.note_success(name)
    return Login(True, "", one_time=row is not None and bool(row.must_change))


def log_login(archive: Archive, name: str, ok: bool, detail: str) -> None:
    """One access-log step (action ``login``) for a login or a failed one, by the person of the account tried
    when the step is that account's (the caller acting is it). A name that is no account's names no person: the
    step is by ``account:?`` and says the name tried in its detail. Were it written as the step's person, account
    ``?`` would have acted under every name anyone typed, and the policy's rule that an account keeps its name
    (custodes.policy) would refuse every later policy: anyone on the login page could freeze it."""
    with archive.transaction() as tx:
        login_step(archive, tx, name, ok, detail)
    archive.checkpoint_going_on()  # housekeeping before a login (auth.close_throttle_windows): not the login's


def login_step(archive: Archive, tx: Catalog, name: str, ok: bool, detail: str) -> None:
    """The access-log step of :func:`log_login`, in the caller's transaction ``tx`` (with the count of the
    password it logs, :func:`ledgered`)."""
    if name == current_caller().account and _NAME.fullmatch(name):
        person = person_of(archive.policy, name)
    else:
        person = UNNAMED + "?"
        detail = detail if name == "?" else f"{detail} (name tried: {name[:100]!r})"
    log_step(tx, None, person, "login", None, ok, detail, time.time_ns())
