"""What a route works with: the archive to read, the archive to act on, and the page it renders.

- :func:`reading`: an Archive kept open per thread for reads (the catalog is SQLite in WAL mode: a read sees
  every commit before it, and never waits for the writer). Pages never take the write lock. It is opened again
  when the policy file changes, so a role given or taken away holds at the next request.
- :func:`acting`: every write. It takes the service's command lock (the catalog takes one writer, shared with
  the commands of the archive service's Unix socket), acts as the visitor
  (:func:`custodes.identity.acting_as`), and opens the archive fresh, refusing while custodes.toml differs
  from the ledgered policy, as the CLI does: the very library functions the CLI calls then run.
- :func:`render`: a Jinja2 template (autoescaped), with ``t(key)`` (labels in the visitor's language), the
  visitor and their CSRF token in every template.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from custodes import retention, tasks
from custodes.archive import (
    POLICY_FILE,
    Archive,
    CheckpointsGoneError,
    LatestCheckpointError,
    NotReadyToRecord,
    open_archive,
)
from custodes.catalog import SchemaDiffersError
from custodes.catalog.accounts import AccountsSchemaError, AccountStore
from custodes.defaults import MAX_TEXT
from custodes.errors import CustodesError
from custodes.identity import Caller, acting_as
from custodes.messages import CATALOGUE, LANGUAGES, WEB, kind_label, label
from custodes.web.i18n import LANG_COOKIE, language_of, translator

if TYPE_CHECKING:
    from custodes.web.auth import Visitor

__all__ = ["MAX_TEXT", "WebState", "acting", "acting_as_caller", "form_text", "reading", "render", "state", "status_of"]

TEMPLATES = Path(__file__).parent / "templates"


def form_text(field: str, value: str, *, single_line: bool = True) -> str:
    """A form's text field taken as the CLI's options and the API's bodies take free text
    (:func:`custodes.defaults.text_problem`: UTF-8, no control character; at most :data:`MAX_TEXT`): a 400
    naming the field otherwise. A reason with an escape sequence would be replayed on the terminal of whoever
    lists it later."""
    from fastapi import HTTPException

    from custodes.defaults import text_problem

    problem = text_problem(value, single_line=single_line)
    if problem is not None:
        raise HTTPException(400, f"{field}: {problem}")
    return value


@dataclass
class WebState:
    """What every request of one app shares: the archive's folder, the write lock (the archive service's
    command lock when served), the accounts store, the templates, and each thread's open archive."""

    root: Path
    lock: threading.Lock
    secure_cookies: bool
    store: AccountStore
    templates: jinja2.Environment
    _local: threading.local = field(default_factory=threading.local)


def state(request: Request) -> WebState:
    web: WebState = request.app.state.custodes
    return web


def _policy_stamp(root: Path) -> tuple[int, int]:
    st = os.stat(root / POLICY_FILE)
    return st.st_mtime_ns, st.st_size


def reading(request: Request) -> Archive:
    """This thread's archive for reads (opened on first use, and again when the policy file has changed)."""
    web = state(request)
    pending = getattr(request.state, CLOSE_AFTER, None)
    if pending:  # this request's, on a full disk (below): one for all its steps, whichever thread runs them
        return pending[0]  # type: ignore[no-any-return]
    stamp = _policy_stamp(web.root)
    held: tuple[tuple[int, int], Archive] | None = getattr(web._local, "archive", None)
    if held is not None and held[0] == stamp:
        return held[1]
    if held is not None:
        held[1].close()
        web._local.archive = None
    archive = open_archive(web.root)
    if archive.catalog.disk_full:
        # Read as it is on a full disk, the catalog held whole until this closes (catalog._alone_on_a_full_disk):
        # closed when the request ends (the app's middleware, :data:`CLOSE_AFTER`), never kept for the thread,
        # which held it for good and every other command of the service waited on it (a third hostile review).
        setattr(request.state, CLOSE_AFTER, [archive])
        return archive
    web._local.archive = (stamp, archive)
    return archive


#: The request's state key (``scope["state"]``) listing the archives to close once its answer has gone out.
CLOSE_AFTER = "custodes_close_after"


@contextmanager
def acting_as_caller(request: Request, caller: Caller) -> Iterator[Archive]:
    """Write to the archive as ``caller``, under the command lock, on a freshly opened archive whose
    custodes.toml is the ledgered policy (see the module's docstring)."""
    from custodes.policy import require_current

    web = state(request)
    with web.lock, acting_as(caller):
        # On a full disk, the archive this request read already holds the catalog (:func:`reading`): a second would
        # wait on it for the busy timeout and answer "busy"; on it, the act is refused at once, naming the full disk.
        pending = getattr(request.state, CLOSE_AFTER, None)
        archive = pending[0] if pending else open_archive(web.root)
        try:
            require_current(archive)
            yield archive
        finally:
            if not pending:
                archive.close()


def acting(request: Request, visitor: Visitor) -> AbstractContextManager[Archive]:
    """Write to the archive as ``visitor`` (see :func:`acting_as_caller`)."""
    return acting_as_caller(request, visitor.caller)


def status_of(error: CustodesError, default: int) -> int:
    """The HTTP status of a library error: 503 for a catalog or an accounts store custodes writes nothing into
    (catalog.SchemaDiffersError, catalog.accounts.AccountsSchemaError), and for an archive that records nothing now
    (archive.NotReadyToRecord: a disk, a key, entries no checkpoint covers; CheckpointsGoneError,
    LatestCheckpointError): the server's
    condition, not the request's fault; else ``default``."""
    server = SchemaDiffersError | AccountsSchemaError | NotReadyToRecord | CheckpointsGoneError | LatestCheckpointError
    return 503 if isinstance(error, server) else default


#: The answer to a request the catalog kept waiting past its busy timeout: another command holds it (a verify on
#: a full disk holds it whole until it ends); the server's condition, 503, not an internal error.
BUSY = "the catalog is busy: another custodes command holds it; try again once it is done"


def server_condition(request: Request, error: BaseException) -> str | None:
    """What to answer 503 for an error of SQLite's that is the server's condition, not the request's fault nor a
    bug: another command holds the catalog (:data:`BUSY`), or the archive's disk is full (an act on the API
    answered 500 "internal error" there: a hostile review); None for any other error."""
    from custodes._durable import disk_full_line
    from custodes.catalog import codes

    if codes.result_code(error) in (codes.BUSY, codes.LOCKED):
        return BUSY
    if codes.full_disk(error, state(request).root):
        return f"{disk_full_line(state(request).root)} (what was not finished was not recorded)"
    return None


def lang_of(request: Request) -> str:
    return language_of(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


#: The roles the library lets take each action a page has a form for (``may(action)`` in the templates): a form
#: is shown only to them, since an action the library refuses is an access-log refusal, an unapproved access that
#: the report lists against the person the page invited to try it.
FORM_ROLES = {"hold": retention.HOLDERS, "release": retention.RELEASERS, "explain_gap": tasks.RECORDERS}


def render(
    request: Request, visitor: Visitor | None, template: str, *, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """``template`` rendered for ``visitor`` (None: nobody logged in, the login and error pages)."""
    web = state(request)
    lang = visitor.lang if visitor is not None else lang_of(request)
    values = {
        "request": request,
        "visitor": visitor,
        "lang": lang,
        "languages": LANGUAGES,
        "t": translator(lang),
        "csrf": visitor.csrf if visitor is not None else ctx.pop("csrf", ""),
        "path": request.url.path,
        "may": lambda action: visitor is not None and visitor.role in FORM_ROLES[action],
        "kind_label": lambda kind: kind_label(kind, lang),
        "labelled": lambda prefix, value: _labelled(prefix, value, lang),
        **ctx,
    }
    return HTMLResponse(web.templates.get_template(template).render(values), status_code=status_code)


def _labelled(prefix: str, value: object, lang: str) -> str:
    """``labelled(prefix, value)`` in a template: the label ``prefix + value`` (a role, a severity, a media kind, a
    report scope: ``labelled("role_", visitor.role)``), or the value as it is when the catalogue has none (a value
    a newer library or a plugin brought)."""
    key = f"{prefix}{value}"
    return label(key, lang) if key in WEB or key in CATALOGUE else str(value)


def templates() -> jinja2.Environment:
    """The Jinja2 environment of the pages: every template autoescaped (.html or not), undefined names an error."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
