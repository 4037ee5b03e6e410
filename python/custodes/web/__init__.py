"""The review page and HTTP API on the archive (issue 19): ``create_app(root)`` is the ASGI application.

FastAPI (on Starlette) serves it: its routes are typed, and the OpenAPI document it publishes at
``/openapi.json`` is built from those types, so agency tools read a description that cannot drift from the
code; Starlette underneath gives plain ASGI middleware, streaming responses and static files. uvicorn runs it
inside the archive service (``custodes serve ARCHIVE --http HOST:PORT``), sharing the service's command lock.

Every action goes through the same library functions as the CLI, as the visitor's local account
(``Caller(uid=None, account=NAME, via="tool")``), whose role comes from the policy's ``[people]``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from custodes.archive import open_archive
from custodes.catalog.accounts import AccountStore
from custodes.errors import CustodesError

__all__ = ["READERS", "WebError", "create_app"]

#: Threads that run the routes at once (anyio's default is 40). Each keeps an archive open for reads
#: (custodes.web.context.reading: 6-10 MiB each, its catalog's page cache and what the archive holds), so the
#: server's memory is bounded by them; and on two cores more threads run no more at once, they only hold more.
READERS = 8


@asynccontextmanager
async def _bounded_threads(app: FastAPI) -> AsyncIterator[None]:
    """The server's lifespan: the routes' thread pool bounded to :data:`READERS` (set inside the event loop it
    belongs to)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = READERS
    yield


class WebError(CustodesError):
    """The web front end cannot start as asked (an archive it cannot open, a bad listen address)."""


def create_app(
    root: str | os.PathLike[str], *, lock: threading.Lock | None = None, secure_cookies: bool = True
) -> FastAPI:
    """The application for the archive at ``root``. ``lock``: the lock every write takes (the archive service's
    command lock when served beside its socket; a lock of its own otherwise). ``secure_cookies``: cookies only
    over HTTPS (off only for a test over plain HTTP that is not on loopback's ``https://testserver``)."""
    from custodes.web.app import build_app
    from custodes.web.context import WebState, templates

    folder = Path(root).absolute()
    with open_archive(folder) as archive:  # an archive that cannot be opened is refused now, not at the first request
        # Its accounts store is made now, and a request's files (a bag for download) later: as the archive's
        # account only (an app run by root made them root's, which the archive's service could not read: a
        # third hostile review). The page runs in the service (`custodes serve --http`), as that account.
        archive.require_its_account()
    app = FastAPI(
        title="custodes",
        summary="The review page and HTTP API of a custodes archive",
        docs_url=None,  # the interactive docs load scripts from a CDN, which the CSP forbids
        redoc_url=None,
        lifespan=_bounded_threads,
    )
    app.state.custodes = WebState(
        folder, lock if lock is not None else threading.Lock(), secure_cookies, AccountStore.open(folder), templates()
    )
    return build_app(app)
