"""What the review page's tests share (issue 19): the one password of their local accounts, how an account is
made (a custodian's one-time password, then the person's own), and a browser of one person's, logged in
through the login form as a person logs in (its CSRF field, the Secure cookie kept because the client speaks
to ``https://testserver``), and a real ``custodes serve`` started, found listening and stopped by its pid."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from custodes.archive import Archive
from custodes.identity import acting_as
from custodes.web.accounts import add_account, change_own_password, local_caller

PASSWORD = "correct horse battery"
#: The password a custodian sets (``custodes user add``): one-time, the person replaces it with their own.
ONE_TIME = "one-time by the custodian"


def own_password(archive: Archive, name: str, current: str = ONE_TIME, password: str = PASSWORD) -> None:
    """``name``'s person sets their own ``password`` in place of the one-time one, logged in as ``name`` (as
    the /password page does it)."""
    with acting_as(local_caller(name)):
        change_own_password(archive, name, current, password)


def add_own_account(archive: Archive, name: str, password: str = PASSWORD) -> None:
    """Local account ``name`` as it is before a person's first act: added by the archive's owner with a one-time
    password, which the person has replaced with their own ``password``."""
    add_account(archive, name, ONE_TIME)
    own_password(archive, name, ONE_TIME, password)


def csrf_in(page: str) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None, page
    return token.group(1)


def logged_in(app: FastAPI, name: str, password: str = PASSWORD) -> TestClient:
    """A client of ``app`` with ``name``'s session (its own cookies: one person per client), asking for pages."""
    web = TestClient(app, base_url="https://testserver", follow_redirects=False, headers={"accept": "text/html"})
    page = web.get("/login")
    answer = web.post("/login", data={"name": name, "password": password, "csrf": csrf_in(page.text), "next": "/"})
    assert answer.status_code == 303, answer.text
    return web


def deciding(app: FastAPI, name: str) -> TestClient:
    """``name`` logged in, calling the API with their session and its CSRF token: decisions are made by a
    person logged in, never by a token."""
    web = logged_in(app, name)
    web.headers["X-CSRF-Token"] = csrf_in(web.get("/access").text)
    return web


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(arch: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``custodes serve ARCH EXTRA`` as this account (root, the archive's owner in these tests), its output in
    ``log``; stop it with :func:`stop_service_by_pid`."""
    with open(log, "wb") as said:
        return subprocess.Popen(
            [sys.executable, "-m", "custodes", "serve", str(arch), *extra],
            stdin=subprocess.DEVNULL,
            stdout=said,
            stderr=said,
        )


def wait_listening(service: subprocess.Popen[bytes], log: Path, port: int, within: float = 60) -> None:
    """Until the service accepts connections on 127.0.0.1:``port``; fails with its output if it exits or takes
    longer than ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        assert service.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listened in {within} s: {log.read_text()}"
            time.sleep(0.1)


def stop_service_by_pid(service: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the service's own stop), SIGKILL if it has not gone in 20 s; its exit code."""
    if service.poll() is None:
        os.kill(service.pid, signal.SIGTERM)
        try:
            service.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(service.pid, signal.SIGKILL)
            service.wait(10)
    return service.returncode
