"""The ASGI application: security headers, login and logout, error pages, the stylesheet.

FastAPI, not bare Starlette (which it is built on, and whose middleware and responses it uses as they are):
the routes are typed, and the OpenAPI document agency tools read (``/openapi.json``) is built from those
types, so the API and its description cannot drift apart. uvicorn runs it (custodes.service, ``serve --http``).

Every response carries a Content-Security-Policy that lets the page load nothing from anywhere but this server
(no inline script or style either), and pages are not cached. An error is a page (or, under ``/api/``, a JSON
object) saying what went wrong in one line, never a traceback; an unexpected one is logged for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from custodes.access import AccessDenied, person_of, person_role
from custodes.catalog.accounts import SessionEndNotWritten
from custodes.errors import CustodesError
from custodes.messages import LANGUAGES
from custodes.web import auth, pages, password, streaming
from custodes.web.accounts import (
    Login,
    check_password,
    count_password,
    ledgered,
    local_caller,
    login_step,
    new_secret,
    secret_digest,
)
from custodes.web.auth import (
    ABSOLUTE_NS,
    SESSION_COOKIE,
    LoginRequired,
    PasswordChangeRequired,
    Visitor,
    client_of,
    csrf_checked_any,
    throttled_for,
    visitor,
)
from custodes.web.context import (
    CLOSE_AFTER,
    acting_as_caller,
    reading,
    render,
    server_condition,
    state,
    status_of,
)
from custodes.web.i18n import LANG_COOKIE

__all__ = ["CSP", "build_app"]

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; media-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
#: The login form's own CSRF cookie (double submit: no session exists yet to hold a token).
LOGIN_COOKIE = "custodes_login"
_log = logging.getLogger("custodes.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class SecurityHeaders:
    """Pure ASGI middleware (streams pass through untouched): the security headers on every response, and
    ``Cache-Control: no-store`` on those that do not set their own (the stylesheet does). It also answers an
    unexpected error itself (logged, a 500 page without a traceback): Starlette's own last resort sits outside
    every middleware, and its answer would go out without these headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(_HEADERS)]
                headers += _HEADERS
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await with_headers(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:  # part of the answer went out: nothing to do but end the connection
                raise
            request = Request(scope)
            _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            if (condition := server_condition(request, exc)) is not None:
                answer = await _error(request, 503, condition)
            else:
                answer = await _error(request, 500, "internal error; the server's log has the details")
            await answer(scope, receive, with_headers)
        finally:
            for archive in scope.get("state", {}).get(CLOSE_AFTER, ()):  # (context.reading: on a full disk)
                archive.close()


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")


def _local_path(target: str | None) -> str:
    """Where to send a visitor after login or a language switch: a path on this site only, never elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _visitor_or_none(request: Request) -> Visitor | None:
    """The logged-in visitor, for an error page's navigation and logout form; None when there is none."""
    try:
        return visitor(request)
    except Exception:  # noqa: BLE001 - an error page must render whatever made the visitor unknown
        return None


async def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
    key = f"error_{status}" if status in (400, 401, 403, 404, 405, 413, 422, 429, 500) else "error"
    who = None if status == 401 else await run_in_threadpool(_visitor_or_none, request)
    page = render(request, who, "error.html", status_code=status, title_key=key, message=message)
    for k, v in (headers or {}).items():
        page.headers[k] = v
    return page


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"error": exc.why, "status": 401}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return await _error(request, 401, exc.why)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": exc.why, "status": 403}, status_code=403)
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return await _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'not valid')}" for e in exc.errors()
        )
        return await _error(request, 422, where or "the request is not valid")

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> Response:
        return await _error(request, 403, str(exc))

    @app.exception_handler(CustodesError)
    async def refused(request: Request, exc: CustodesError) -> Response:
        return await _error(request, status_of(exc, 400), str(exc))


def _login_page(request: Request, status: int = 200, message_key: str | None = None, next_path: str = "/") -> Response:
    token = new_secret()
    page = render(
        request, None, "login.html", status_code=status, csrf=token, message_key=message_key, next_path=next_path
    )
    page.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=state(request).secure_cookies,
        path="/login",
        max_age=3600,
    )
    return page


def _end_session(request: Request, digest: str, response: Response) -> None:
    """Log out the session ``digest``. Where its end cannot be written (a full disk), it is ended all the same
    (AccountStore.delete_session: kept aside, or in this server alone where even that fails) and for the
    browser: the answer, 503, says which, and why, and still clears the cookie."""
    try:
        state(request).store.delete_session(digest)
    except SessionEndNotWritten as e:
        why = server_condition(request, e.cause) or f"the accounts store cannot be written ({e.cause})"
        said = (
            "logged out; its end is kept aside and written into the accounts store once it can be"
            if e.kept
            else "logged out of this server only: its end could not be kept, and a server started before the disk "
            "has room would let the session in again; once there is room, change your password, which ends "
            "every other session of yours"
        )
        raise StarletteHTTPException(
            503, f"{said}: {why}", headers={"set-cookie": response.headers["set-cookie"]}
        ) from None


def _install_login(app: FastAPI) -> None:
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
        return _login_page(request, next_path=_local_path(next))

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        name: str = Form(..., max_length=200),  # noqa: B008
        password: str = Form(..., max_length=1024),  # noqa: B008
        csrf: str = Form(""),  # noqa: B008
        next: str = Form("/"),  # noqa: A002, B008
    ) -> Response:
        """Log in with a local account's name and password: a session cookie and a redirect to ``next``."""
        web = state(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not auth.same_token(csrf, expected):
            raise StarletteHTTPException(403, "the login form's CSRF token is missing or wrong; reload the page")
        now = auth.now_ns()
        reading(request).catalog.require_own_schema()  # nothing counted that cannot be ledgered
        wait = throttled_for(request, now)
        if wait is not None:
            page = _login_page(request, 429, "login_throttled", _local_path(next))
            page.headers["Retry-After"] = str(wait)
            return page
        checked = check_password(web.store, name, password)  # argon2id's time, before any lock is taken
        caller = local_caller(name if web.store.account(name) is not None else "?")
        with acting_as_caller(request, caller) as archive:
            # The count of the password and the login's ledger entry: refused together (the catalog's schema
            # differs: 503, nothing counted), and a crash between them never leaves more allowed than ledgered.
            with ledgered(archive, web.store) as (tx, _, commit_accounts):
                result = count_password(web.store, checked)
                if result.ok and person_role(archive, person_of(archive.policy, name)) is None:
                    result = Login(False, "the account's person has no role in this archive's policy")
                if not result.ok:
                    web.store.note_client_failure(client_of(request), now)
                    commit_accounts()  # a failure counted takes away: it may stand without its entry, not more
                detail = f"from {client_of(request)}" + ("" if result.ok else f": {result.why}")
                if result.one_time:
                    detail += " with a one-time password (set by a custodian): it may only set its own"
                login_step(archive, tx, name, result.ok, detail)
            if (unsigned := archive.checkpoint_going_on()) is not None:  # a login recorded is a login made
                _log.warning("%s's login is recorded, its checkpoint is not: %s", name, unsigned)
        if not result.ok:
            key = "login_locked" if result.locked else "login_failed"
            return _login_page(request, 401, key, _local_path(next))
        session, csrf_token = new_secret(), new_secret()
        web.store.add_session(secret_digest(session), name, csrf_token, now, now + ABSOLUTE_NS)
        # A one-time password's session reaches only the page where the person sets their own.
        response = RedirectResponse("/password" if result.one_time else _local_path(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session,
            httponly=True,
            samesite="strict",
            secure=web.secure_cookies,
            path="/",
            max_age=ABSOLUTE_NS // 1_000_000_000,
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, who: Visitor = Depends(csrf_checked_any)) -> Response:  # noqa: B008
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            _end_session(request, secret_digest(cookie), response)
        return response

    @app.get("/lang/{lang}", include_in_schema=False)
    def switch_language(lang: str, next: str = "/") -> Response:  # noqa: A002
        if lang not in LANGUAGES:
            raise StarletteHTTPException(404, f"no language {lang!r}; one of {', '.join(LANGUAGES)}")
        response = RedirectResponse(_local_path(next), status_code=303)
        response.set_cookie(LANG_COOKIE, lang, samesite="strict", path="/", max_age=365 * 86400, httponly=True)
        return response

    @app.get("/whoami")
    def whoami(who: Visitor = Depends(visitor)) -> dict[str, str | int | None]:  # noqa: B008
        """Who the request acts as: the account, the person and role the policy gives it, the token used."""
        return {"account": who.account, "person": who.person, "role": who.role, "token": who.token_id}


def build_app(app: FastAPI) -> FastAPI:
    """Install the middleware, error handlers, login routes and stylesheet on ``app``."""
    from pathlib import Path

    app.add_middleware(SecurityHeaders)
    _install_errors(app)
    _install_login(app)
    # The route modules, one line each. The HTML pages stay out of the OpenAPI document: the API is /api/v1.
    app.include_router(pages.router, include_in_schema=False)
    app.include_router(streaming.router)
    app.include_router(password.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    from custodes.web import api, views

    app.include_router(views.router, include_in_schema=False)
    app.include_router(api.router)
    return app
