"""The person's own password (``GET/POST /password``): the one page a one-time password's session reaches.

A password a custodian set (``custodes user add|passwd``) is one-time (custodes.web.accounts): the person's
first login lands here, and every other page redirects here until they have set their own. A logged-in
person may change theirs here at any time too (the header links to it). The form asks for the current
password and the new one twice; the change is the person's own act, through their session
(:func:`custodes.web.accounts.change_own_password`): ledgered as ``account_password_set`` by them, and their
other sessions end. A bearer token changes no password: it shows no person is there.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from custodes.archive import CheckpointFileError
from custodes.errors import CustodesError
from custodes.web.accounts import MAX_PASSWORD, MIN_PASSWORD, change_own_password, secret_digest
from custodes.web.auth import SESSION_COOKIE, Visitor, csrf_checked_any, session_visitor
from custodes.web.context import acting, render, status_of
from custodes.web.pages import recorded_back

__all__ = ["router"]

router = APIRouter()


def _person(who: Visitor) -> Visitor:
    if who.token_id is not None:
        raise HTTPException(403, "a token changes no password: the person logs in and sets their own at /password")
    return who


def _form_page(request: Request, who: Visitor, status: int = 200, message: str | None = None) -> Response:
    return render(
        request,
        who,
        "password.html",
        status_code=status,
        message=message,
        shortest=MIN_PASSWORD,
        longest=MAX_PASSWORD,
    )


@router.get("/password")
def password_form(request: Request, who: Visitor = Depends(session_visitor)) -> Response:  # noqa: B008
    """The form: current password, the new one twice."""
    return _form_page(request, _person(who))


@router.post("/password")
async def change_password(request: Request, who: Visitor = Depends(csrf_checked_any)) -> Response:  # noqa: B008
    """Set the visitor's own password; back to the dashboard when done, else the form with the reason."""
    _person(who)
    form = await request.form()
    fields = {k: form.get(k) for k in ("current", "new", "again")}
    given = {k: v if isinstance(v, str) else "" for k, v in fields.items()}
    if any(len(v) > MAX_PASSWORD for v in given.values()):
        return _form_page(request, who, 400, f"a password is at most {MAX_PASSWORD} characters")
    if given["new"] != given["again"]:
        return _form_page(request, who, 400, "the new password and its repetition differ")
    cookie = request.cookies.get(SESSION_COOKIE, "")

    def change() -> None:
        with acting(request, who) as archive:
            change_own_password(archive, who.account, given["current"], given["new"], session=secret_digest(cookie))

    try:
        await run_in_threadpool(change)  # argon2id takes its time: not on the event loop
    except CheckpointFileError as e:
        # The password is set (the form again had the person send it twice: the second "current password" was
        # wrong, and counted towards the lock: a hostile review).
        return recorded_back(request, who, "/", e)
    except CustodesError as e:
        return _form_page(request, who, status_of(e, 400), str(e))
    return RedirectResponse("/", status_code=303)
