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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from custodes.access import ROLES, UNNAMED, log_step, person_of, person_role, require_role
from custodes.archive import Archive
from custodes.catalog import replay
from custodes.catalog.accounts import AccountRow, AccountStore, TokenRow
from custodes.errors import CustodesError
from custodes.identity import Caller, current_caller

__all__ = [
    "LOCK_AFTER",
    "AccountError",
    "Login",
    "add_account",
    "change_own_password",
    "disable_account",
    "enable_account",
    "issue_token",
    "list_accounts",
    "list_tokens",
    "local_caller",
    "log_login",
    "new_secret",
    "revoke_token",
    "secret_digest",
    "set_password",
    "token_caller",
    "unlock_account",
    "verify_password",
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


def _ledger(archive: Archive, kind: str, person: str, **facts: Any) -> None:
    """One ledger entry of an account change (no secret in it), signed into a checkpoint."""
    entry = {"type": kind, "person": person, "account": current_caller().account, "time": time.time_ns(), **facts}
    with archive.transaction() as tx:
        replay.record(tx, entry)
    archive.checkpoint()


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
    with AccountStore.open(archive.root) as store:
        if not store.add_account(name, hashed, time.time_ns(), one_time=one_time):
            raise AccountError(f"local account {name!r} exists already; `custodes user passwd` sets its password")
    _ledger(archive, "account_added", person, name=name, one_time=one_time)


def set_password(archive: Archive, name: str, password: str) -> None:
    """A new password for ``name``, by a custodian: one-time (unless it is the custodian's own account); it
    unlocks the account, and its sessions end."""
    person = _custodian(archive, "user_passwd")
    hashed = _HASHER.hash(_check_password(password))
    one_time = _one_time(archive, person, name)
    with AccountStore.open(archive.root) as store:
        _existing(store, name)
        store.set_hash(name, hashed, one_time=one_time)
    _ledger(archive, "account_password_set", person, name=name, one_time=one_time)


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
        checked = verify_password(store, name, current)
        if not checked.ok:
            why = checked.why if checked.locked else "the current password is wrong"
            raise AccountError(why)
        store.set_hash(name, _HASHER.hash(new), one_time=False, keep_session=session)
    _ledger(archive, "account_password_set", person_of(archive.policy, name), name=name, one_time=False)


def _custodial_change(
    archive: Archive, action: str, entry: str, name: str, change: Callable[[AccountStore], object]
) -> None:
    """A custodian's ``change`` to the existing account ``name`` (refused and logged as ``action`` for anyone
    else), then its ledger entry of type ``entry``."""
    person = _custodian(archive, action)
    with AccountStore.open(archive.root) as store:
        _existing(store, name)
        change(store)
    _ledger(archive, entry, person, name=name)


def disable_account(archive: Archive, name: str) -> None:
    """``name`` may no longer log in; its sessions end and its tokens stop acting."""
    _custodial_change(archive, "user_disable", "account_disabled", name, lambda store: store.set_disabled(name, True))


def enable_account(archive: Archive, name: str) -> None:
    _custodial_change(archive, "user_enable", "account_enabled", name, lambda store: store.set_disabled(name, False))


def unlock_account(archive: Archive, name: str) -> None:
    """End the lock ten wrong passwords put on ``name``."""
    _custodial_change(archive, "user_unlock", "account_unlocked", name, lambda store: store.unlock(name))


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
    with AccountStore.open(archive.root) as store:
        _existing(store, name)
        token_id = store.add_token(secret_digest(secret), name, role, label, time.time_ns())
        row = store.token_by_id(token_id)
    assert row is not None
    _ledger(archive, "token_issued", person, name=name, token=token_id, role=role, label=label)
    return TokenInfo.of(row), secret


def revoke_token(archive: Archive, token_id: int) -> None:
    person = _custodian(archive, "token_revoke")
    with AccountStore.open(archive.root) as store:
        row = store.token_by_id(token_id)
        if row is None:
            raise AccountError(f"no token {token_id}")
        if not store.revoke_token(token_id, time.time_ns()):
            raise AccountError(f"token {token_id} is revoked already")
    _ledger(archive, "token_revoked", person, name=row.account, token=token_id)


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


def verify_password(store: AccountStore, name: str, password: str) -> Login:
    """Check ``password`` for local account ``name`` (at login, or before the person's own change of it); a
    wrong one counts towards the lock (:data:`LOCK_AFTER` in a row), a right one ends the count.
    A locked or disabled account is refused whatever the password."""
    row = store.account(name) if _NAME.fullmatch(name) else None
    if row is None:
        _HASHER.hash("a password to spend the time a real check takes")  # no telling names by the answer's speed
        return Login(False, "no such local account")
    if row.disabled:
        return Login(False, "the account is disabled")
    if row.locked:
        return Login(False, f"the account is locked after {LOCK_AFTER} wrong passwords", locked=True)
    try:
        _HASHER.verify(row.hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        after = store.note_failure(name, LOCK_AFTER)
        if after is not None and after.locked:
            return Login(False, f"wrong password; the account is now locked after {LOCK_AFTER} in a row", locked=True)
        return Login(False, "wrong password")
    store.note_success(name)
    return Login(True, "", one_time=bool(row.must_change))


def log_login(archive: Archive, name: str, ok: bool, detail: str) -> None:
    """One access-log step (action ``login``) for a login or a failed one, by the person of the account tried
    when the step is that account's (the caller acting is it). A name that is no account's names no person: the
    step is by ``account:?`` and says the name tried in its detail. Were it written as the step's person, account
    ``?`` would have acted under every name anyone typed, and the policy's rule that an account keeps its name
    (custodes.policy) would refuse every later policy: anyone on the login page could freeze it."""
    if name == current_caller().account and _NAME.fullmatch(name):
        person = person_of(archive.policy, name)
    else:
        person = UNNAMED + "?"
        detail = detail if name == "?" else f"{detail} (name tried: {name[:100]!r})"
    with archive.transaction() as tx:
        log_step(tx, None, person, "login", None, ok, detail, time.time_ns())
    archive.checkpoint()
