"""What the review page's tests share (issue 19): the one password of their local accounts, and a browser of one
person's, logged in through the login form as a person logs in (its CSRF field, the Secure cookie kept because
the client speaks to ``https://testserver``)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"


def logged_in(app: FastAPI, name: str, password: str = PASSWORD) -> TestClient:
    """A client of ``app`` with ``name``'s session (its own cookies: one person per client), asking for pages."""
    web = TestClient(app, base_url="https://testserver", follow_redirects=False, headers={"accept": "text/html"})
    page = web.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text
    answer = web.post("/login", data={"name": name, "password": password, "csrf": token.group(1), "next": "/"})
    assert answer.status_code == 303, answer.text
    return web
