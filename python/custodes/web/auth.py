"""Who is asking: sessions, CSRF, login throttling and API tokens, as FastAPI dependencies.

- A **session** is the cookie ``custodes_session``: 32 random bytes, kept in accounts.sqlite as its sha256
  (a copy of the file lets nobody in), HttpOnly, SameSite=Strict, Secure, Path=/. It ends after
  :data:`IDLE_NS` without a request or :data:`ABSOLUTE_NS` after the login, whichever comes first; logging out
  deletes it. Each session has its own CSRF token, which every form carries (field ``csrf``) and a
  cookie-authenticated API call sends as ``X-CSRF-Token``.
- An **API token** (``Authorization: Bearer TOKEN``) acts as its account with the role it was issued for, and
  only while the account still has that role in the policy, is not disabled, and the token is not revoked. A
  bearer call needs no CSRF token: a browser never sends one by itself. A token reads and asks; it decides
  nothing (custodes.access.refuse_token_decision: its caller is ``via="token"``).
- A **one-time password** (set by a custodian, custodes.web.accounts) opens a session that reaches only
  ``/password`` (:func:`session_visitor`): :func:`visitor` answers every other request with
  :class:`PasswordChangeRequired` (a page redirects there, an API call is 403 saying why).
- **Logins**: every login and failed login is an access-log step (action ``login``). Ten wrong passwords in a
  row lock the account (custodes.web.accounts). Failed logins per client are throttled: past
  :data:`CLIENT_FAILURES` in :data:`CLIENT_WINDOW_NS`, a login from that client is answered 429 without a
  look at the password, and such attempts are counted (accounts.sqlite), not ledgered one by one; the count
  is ledgered as one step when the window has closed, at the next login from anywhere. So a client adds at
  most ``CLIENT_FAILURES + 1`` entries to the ledger per window, however fast it tries.
"""

from __future__ import annotations

import contextlib
import hmac
import sqlite3
import time
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from custodes.access import person_of, person_role
from custodes.catalog.accounts import SessionEndNotWritten
from custodes.findings import rfc3339
from custodes.identity import Caller
from custodes.web.accounts import local_caller, log_login, secret_digest, token_caller
from custodes.web.context import acting_as_caller, lang_of, reading, state

__all__ = [
    "ABSOLUTE_NS",
    "CLIENT_FAILURES",
    "CLIENT_WINDOW_NS",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "IDLE_NS",
    "SESSION_COOKIE",
    "LoginRequired",
    "PasswordChangeRequired",
    "Visitor",
    "client_of",
    "now_ns",
    "close_throttle_windows",
    "csrf_checked",
    "csrf_checked_any",
    "session_visitor",
    "throttled_for",
    "visitor",
]

SESSION_COOKIE = "custodes_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_S = 1_000_000_000
IDLE_NS = 30 * 60 * _S
ABSOLUTE_NS = 12 * 3600 * _S
#: Failed logins one client may make in one window before it is throttled, and the window.
CLIENT_FAILURES = 20
CLIENT_WINDOW_NS = 15 * 60 * _S
#: How often a session's last-seen time is written (not at every request: a page of many requests is one visit).
_TOUCH_NS = 30 * _S


def now_ns() -> int:
    """The clock sessions, tokens and throttle windows are timed by (one place, so a test can move it)."""
    return time.time_ns()


@dataclass(frozen=True)
class Visitor:
    """The person behind a request: their local account, the person and role the policy gives it, the caller
    they act as (``via="tool"``, or ``"token"`` for a bearer token), their session's CSRF token ("" for a bearer
    token), their language, the token they came with (None for a session), and whether the session was opened
    with a one-time password (it then reaches only ``/password``)."""

    account: str
    person: str
    role: str
    caller: Caller
    csrf: str
    lang: str
    token_id: int | None = None
    one_time: bool = False


class LoginRequired(Exception):
    """No valid session or token: a page redirects to /login, an API call is answered 401."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class PasswordChangeRequired(HTTPException):
    """A session opened with a one-time password asks for anything but ``/password``: a page redirects there
    (custodes.web.app), an API call is answered 403 with :attr:`why` (an HTTPException, as every route
    answers those)."""

    def __init__(self, account: str) -> None:
        self.why = f"the password of {account} was set by someone else and is one-time: set your own at /password first"
        super().__init__(403, self.why)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise LoginRequired("the Authorization header is not 'Bearer TOKEN'")
    return value.strip()


def visitor(request: Request) -> Visitor:
    """The visitor of ``request`` (bearer token or session cookie), or :class:`LoginRequired`; a session opened
    with a one-time password is :class:`PasswordChangeRequired`."""
    who = session_visitor(request)
    if who.one_time:
        raise PasswordChangeRequired(who.account)
    return who


def session_visitor(request: Request) -> Visitor:
    """:func:`visitor`, also while the session's password is one-time: only the change of password and logout
    take this one."""
    web = state(request)
    now = now_ns()
    token = _bearer(request)
    if token is not None:
        row = web.store.token(secret_digest(token))
        if row is None or row.revoked_ns is not None:
            raise LoginRequired("the token is unknown or revoked")
        account, role, token_id, csrf = row.account, row.role, row.id, ""
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise LoginRequired("not logged in")
        digest = secret_digest(cookie)
        session = web.store.session(digest)
        if session is None:
            raise LoginRequired("no such session")
        if now >= session.expires_ns or now - session.last_seen_ns >= IDLE_NS:
            with contextlib.suppress(SessionEndNotWritten):  # ended all the same (AccountStore.delete_session)
                web.store.delete_session(digest)
            raise LoginRequired("the session has ended")
        if now - session.last_seen_ns >= _TOUCH_NS:
            # Not written on a full disk: the session is seen less recently than it was, and every page of a
            # logged-in person was a 503 there once the first 30 s had gone (reads work on a full disk).
            with contextlib.suppress(sqlite3.Error):
                web.store.touch_session(digest, now)
        account, role, token_id, csrf = session.account, "", None, session.csrf
    found = web.store.account(account)
    if found is None or found.disabled:
        raise LoginRequired(f"the account {account} is disabled")
    archive = reading(request)
    person = person_of(archive.policy, account)
    has = person_role(archive, person)
    if has is None:
        raise HTTPException(403, f"{person} has no role in this archive's policy now")
    if token_id is not None and has != role:  # a token acts only with the role it was issued for
        raise HTTPException(403, f"token {token_id} acts as {role}, and the policy gives {person} the role {has} now")
    caller = local_caller(account) if token_id is None else token_caller(account)
    one_time = token_id is None and bool(found.must_change)
    return Visitor(account, person, has, caller, csrf, lang_of(request), token_id, one_time)


async def csrf_checked(request: Request, who: Visitor = Depends(visitor)) -> Visitor:  # noqa: B008
    """:func:`visitor`, for a request that changes something: a session's request must carry its CSRF token
    (form field ``csrf`` or header ``X-CSRF-Token``); 403 otherwise. A bearer token needs none."""
    return await _csrf(request, who)


async def csrf_checked_any(request: Request, who: Visitor = Depends(session_visitor)) -> Visitor:  # noqa: B008
    """:func:`csrf_checked`, also while the session's password is one-time (the change of password, logout)."""
    return await _csrf(request, who)


def same_token(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the CSRF token ``expected``, compared in constant time (the one comparison of both
    the login form's token and a session's): an empty one never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


async def _csrf(request: Request, who: Visitor) -> Visitor:
    if who.token_id is not None:
        return who
    given = request.headers.get(CSRF_HEADER)
    if given is None and "form" in request.headers.get("content-type", ""):
        field = (await request.form()).get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if not same_token(given, who.csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return who


def client_of(request: Request) -> str:
    """The client a login is counted against: its address (the proxy's, behind a reverse proxy that uvicorn
    does not trust for X-Forwarded-For; see the README)."""
    return request.client.host if request.client is not None else "unknown"


def close_throttle_windows(request: Request, now: int) -> None:
    """Ledger the count of each client's closed throttle window that counted attempts (one ``login`` step,
    ok False), and end every closed window."""
    web = state(request)
    for w in web.store.throttles_started_by(now - CLIENT_WINDOW_NS):
        if w.counted:
            detail = (
                f"{w.counted} further logins from {w.client} between {rfc3339(w.first_ns or now)} and "
                f"{rfc3339(w.last_ns or now)} refused unread: past {CLIENT_FAILURES} failed logins in the window "
                f"from {rfc3339(w.started_ns)}, counted"
            )
            with acting_as_caller(request, local_caller("?")) as archive:
                log_login(archive, "?", False, detail)
        web.store.end_throttle(w.client)


def throttled_for(request: Request, now: int) -> int | None:
    """Seconds until ``request``'s client may try again, when it is throttled (the attempt is then counted);
    None when it may try now."""
    web = state(request)
    client = client_of(request)
    close_throttle_windows(request, now)
    window = web.store.throttle(client)
    if window is None or window.failures < CLIENT_FAILURES:
        return None
    web.store.note_client_counted(client, now)
    return max(1, (window.started_ns + CLIENT_WINDOW_NS - now) // _S)
