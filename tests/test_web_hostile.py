"""The review page and HTTP API tried as an attacker would (issue 19): each test is a hole found by trying the
served archive from the README alone, kept shut here."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from custodes.archive import open_archive
from custodes.web import auth, create_app
from helpers import policy_text, run_cli, set_policy
from web_helpers import (
    PASSWORD,
    add_own_account,
    free_port,
    logged_in,
    start_service,
    stop_service_by_pid,
    wait_listening,
)

#: No approver: the archive's owner (who runs the tests) may set the policy alone, embedded.
OWNER_SETS_POLICY = '[people]\nalice = "custodian"\nroot = "custodian"\n'


def failed_login(web: TestClient, name: str) -> int:
    page = web.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return web.post("/login", data={"name": name, "password": "not it", "csrf": token.group(1)}).status_code


def test_failed_logins_by_names_of_no_account_leave_the_policy_changeable(make_cli_archive, monkeypatch) -> None:
    # A failed login used to be ledgered as by the person the typed name names, acting as account "?": the
    # policy's rule that an account keeps its name then refused every later policy, for anyone on the login page.
    arch = make_cli_archive(people=OWNER_SETS_POLICY)
    with open_archive(arch) as a:
        add_own_account(a, "alice", PASSWORD)
    web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)
    clock = [time.time_ns()]
    monkeypatch.setattr(auth, "now_ns", lambda: clock[0])
    for name in ["nobody", "root", "ALICE"] + [f"guess{i}" for i in range(auth.CLIENT_FAILURES)]:
        assert failed_login(web, name) in (401, 429)
    clock[0] += auth.CLIENT_WINDOW_NS  # the throttled window closes: its count is ledgered at the next login
    assert failed_login(web, "alice") == 401
    changed = set_policy(arch, policy_text(arch).replace("[people]\n", '[people]\ncarol = "viewer"\n'))
    assert changed.returncode == 0, changed.stderr
    with open_archive(arch) as a:
        steps = [json.loads(data) for _index, data in a.catalog.ledger.of_type("access_login")]
    assert len(steps) == auth.CLIENT_FAILURES + 2
    first, count, last = steps[0], steps[-2], steps[-1]
    assert first["person"] == "account:?" and "name tried: 'nobody'" in str(first["detail"])  # no person, the name kept
    assert count["person"] == "account:?" and "further logins from testclient" in str(count["detail"])
    assert last["person"] == "alice" and last["account"] == "alice"


def test_plain_http_is_refused_on_an_address_other_than_loopback(cli_archive) -> None:
    # Over plain HTTP on the network passwords, cookies and tokens cross it in clear, and a browser keeps no
    # Secure cookie from a plain-HTTP site that is not loopback: the login form would only ever say its CSRF
    # token is missing. 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is ever bound there.
    out = run_cli("serve", cli_archive, "--http", "192.0.2.1:8470", timeout=60)
    assert out.returncode == 2 and b"Traceback" not in out.stderr, out.stderr
    assert b"--tls-cert" in out.stderr and b"loopback" in out.stderr, out.stderr
    assert not (cli_archive / "run" / "custodes.sock").exists()  # nothing half-started is left


def _failed_login_through_a_served_page(arch: Path, log: Path, *extra: str) -> str:
    """``custodes serve ARCH --http 127.0.0.1:PORT EXTRA``, one failed login sent with a forged
    X-Forwarded-For, the service stopped by its pid; the login step's detail."""
    port = free_port()
    service = start_service(arch, log, "--http", f"127.0.0.1:{port}", *extra)
    try:
        wait_listening(service, log, port)
        page = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, page.text
        headers = {"cookie": f"custodes_login={found.group(1)}", "x-forwarded-for": "203.0.113.9"}
        form = {"name": "alice", "password": "not it", "csrf": found.group(1)}
        assert httpx.post(f"http://127.0.0.1:{port}/login", data=form, headers=headers, timeout=30).status_code == 401
    finally:
        stop_service_by_pid(service)
    with open_archive(arch) as a:
        return str(json.loads([data for _i, data in a.catalog.ledger.of_type("access_login")][-1])["detail"])


def test_x_forwarded_for_is_trusted_only_behind_a_proxy_the_operator_names(cli_archive: Path, tmp_path: Path) -> None:
    # Served on loopback without a proxy, every local process is "127.0.0.1": trusting its X-Forwarded-For let
    # it forge the address the access log records, and count its failed logins under as many clients as it liked
    # (the per-client throttle is what bounds the ledger's growth).
    with open_archive(cli_archive) as a:
        add_own_account(a, "alice", PASSWORD)
    direct = _failed_login_through_a_served_page(cli_archive, tmp_path / "direct.log")
    assert "from 127.0.0.1" in direct and "203.0.113.9" not in direct
    proxied = _failed_login_through_a_served_page(cli_archive, tmp_path / "proxied.log", "--behind-proxy")
    assert "from 203.0.113.9" in proxied


def _ledgered(arch: Path, kind: str) -> list[dict[str, object]]:
    with open_archive(arch) as a:
        return [json.loads(data) for _index, data in a.catalog.ledger.of_type(kind)]


def test_page_forms_take_free_text_as_the_cli_and_the_api_do(cli_archive: Path) -> None:
    # The API and the CLI refuse a control character in a reason (an escape sequence ledgered in a reason is
    # replayed on the terminal of whoever lists it later), and more than 4000 characters; the page's forms took
    # both and ledgered them.
    with open_archive(cli_archive) as a:
        add_own_account(a, "alice", PASSWORD)
    web = logged_in(create_app(cli_archive), "alice")
    csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/access").text)
    assert csrf is not None
    token = csrf.group(1)
    holds, requests = len(_ledgered(cli_archive, "hold")), len(_ledgered(cli_archive, "access_request"))
    for path, form in [
        ("/holds", {"segment": "1", "reason": "court order \x1b[2J"}),
        ("/holds", {"segment": "1", "reason": "x" * 4001}),
        ("/access/request", {"segments": "1", "reason": "complaint\x07", "purpose": "view"}),
        ("/access/request", {"segments": "1", "reason": "two\nlines", "purpose": "view"}),
        ("/exports", {"case": "C\x1b1", "request": "1"}),
    ]:
        answer = web.post(path, data={"csrf": token, **form})
        assert answer.status_code in (400, 422) and "Traceback" not in answer.text, (path, answer.status_code)
        assert "control character" in answer.text or "4000" in answer.text, answer.text
    assert len(_ledgered(cli_archive, "hold")) == holds
    assert len(_ledgered(cli_archive, "access_request")) == requests
    fine = web.post("/holds", data={"csrf": token, "segment": "1", "reason": "court order 17"})
    assert fine.status_code == 303 and len(_ledgered(cli_archive, "hold")) == holds + 1


def test_a_reason_cannot_turn_its_own_text_around(cli_archive: Path) -> None:
    # U+202E (right-to-left override) made "complaint \u202e RTL" show on /access as "complaint LTR": a reason,
    # a note or a case id could read on the page, in a report or a terminal otherwise than it was ledgered.
    with open_archive(cli_archive) as a:
        add_own_account(a, "alice", PASSWORD)
    web = logged_in(create_app(cli_archive), "alice")
    csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/access").text)
    assert csrf is not None
    for mark in ("\u202e", "\u202d", "\u2066", "\u2069"):
        body = {"segments": [1], "reason": f"complaint {mark}71", "purpose": "view"}
        answer = web.post("/api/v1/access/requests", json=body, headers={"x-csrf-token": csrf.group(1)})
        assert answer.status_code == 422 and "control character" in answer.json()["error"], answer.text
        page = web.post("/holds", data={"csrf": csrf.group(1), "segment": "1", "reason": f"order {mark}17"})
        assert page.status_code == 400 and "control character" in page.text
    assert _ledgered(cli_archive, "hold") == [] and _ledgered(cli_archive, "access_request") == []
    fine = web.post("/holds", data={"csrf": csrf.group(1), "segment": "1", "reason": "法院令 17"})
    assert fine.status_code == 303
