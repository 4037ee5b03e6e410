"""The review page's reads run on a bounded pool of threads, each with its archive open for reads: however many
requests come at once, the server holds at most custodes.web.READERS archives (the load test's flat memory: with
anyio's 40 threads, each opening an archive when a burst reached it and dropping it when idle, the server's memory
climbed through the minute)."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from custodes.archive import open_archive
from custodes.web import READERS, context, create_app, views
from web_helpers import PASSWORD, add_own_account


def test_requests_at_once_share_a_bounded_set_of_reader_archives(cli_archive: Path, monkeypatch) -> None:
    with open_archive(cli_archive) as a:
        add_own_account(a, "bob", PASSWORD)
    opened: list[int] = []  # the thread of each archive opened for reads
    real_open = context.open_archive

    def counted(root: Any) -> Any:
        opened.append(threading.get_ident())
        return real_open(root)

    monkeypatch.setattr(context, "open_archive", counted)
    real_board = views.needs_a_person

    def slow_board(*args: Any, **kw: Any) -> Any:  # every request still running when the next ones come
        time.sleep(0.2)
        return real_board(*args, **kw)

    monkeypatch.setattr(views, "needs_a_person", slow_board)
    with TestClient(create_app(cli_archive), base_url="https://testserver", follow_redirects=False) as web:
        form = web.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        done = web.post("/login", data={"name": "bob", "password": PASSWORD, "csrf": csrf.group(1), "next": "/"})
        assert done.status_code == 303, done.text
        opened.clear()
        with ThreadPoolExecutor(4 * READERS) as clients:
            answers = list(clients.map(lambda _: web.get("/", headers={"accept": "text/html"}), range(4 * READERS)))
    assert [a.status_code for a in answers] == [200] * (4 * READERS)
    assert 1 < len(set(opened)) <= READERS, len(set(opened))
