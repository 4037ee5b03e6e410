"""The web front end's accounts, sessions, CSRF, lockout, throttling and tokens (issue 19), on real CLI-made
archives, through FastAPI's TestClient (``https://testserver``, so the Secure cookie is sent) and a real
``custodes serve --http`` process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from custodes.archive import open_archive  # noqa: E402
from custodes.web import create_app  # noqa: E402
from custodes.web.accounts import add_account  # noqa: E402

PASSWORD = "correct horse battery"


def client(arch: Path) -> TestClient:
    return TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)


def login_form(web: TestClient) -> str:
    page = web.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(web: TestClient, name: str, password: str, next_path: str = "/whoami"):
    token = login_form(web)
    return web.post("/login", data={"name": name, "password": password, "csrf": token, "next": next_path})


def with_account(arch: Path, name: str = "alice", password: str = PASSWORD) -> Path:
    with open_archive(arch) as a:  # the archive's owner, working on it directly (the tests run as root)
        add_account(a, name, password)
    return arch


def test_login_with_a_local_account_acts_as_its_person(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    assert web.get("/whoami").status_code == 401  # an API-style call without a session
    answer = log_in(web, "alice", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/whoami"
    cookie = answer.headers["set-cookie"]
    assert "custodes_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "samesite=strict" in cookie.lower()
    me = web.get("/whoami")
    assert me.json() == {"account": "alice", "person": "alice", "role": "custodian", "token": None}
