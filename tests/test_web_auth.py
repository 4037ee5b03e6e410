"""The web front end's accounts, sessions, CSRF, lockout, throttling and tokens (issue 19), on real CLI-made
archives, through FastAPI's TestClient (``https://testserver``, so the Secure cookie is sent) and a real
``custodes serve --http`` process."""

from __future__ import annotations

import errno
import json
import re
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from custodes.archive import open_archive
from custodes.web import auth, create_app
from custodes.web.accounts import LOCK_AFTER
from custodes.web.app import CSP
from helpers import (
    FORGED_APPROVAL,
    appended_by_hand,
    build_cli_archive,
    fill,
    peer,
    policy_text,
    run_cli,
    set_policy,
    small_tmpfs,
)
from web_helpers import ONE_TIME, PASSWORD, add_own_account, free_port, start_service, stop_service_by_pid

MINUTE = 60 * 1_000_000_000


def client(arch: Path) -> TestClient:
    return TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)


def login_form(web: TestClient) -> str:
    page = web.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(web: TestClient, name: str, password: str, next_path: str = "/whoami") -> httpx.Response:
    token = login_form(web)
    return web.post("/login", data={"name": name, "password": password, "csrf": token, "next": next_path})


def with_account(arch: Path, name: str = "alice", password: str = PASSWORD) -> Path:
    with open_archive(arch) as a:  # the archive's owner, working on it directly (the tests run as root)
        add_own_account(a, name, password)
    return arch


def logins(arch: Path) -> list[dict[str, object]]:
    """The archive's login steps, as its ledger holds them."""
    with open_archive(arch) as a:
        return [json.loads(data) for _index, data in a.catalog.ledger.of_type("access_login")]


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def test_login_with_a_local_account_acts_as_its_person(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    assert web.get("/whoami").status_code == 401  # an API-style call without a session
    answer = log_in(web, "alice", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/whoami"
    cookie = answer.headers["set-cookie"]
    assert "custodes_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "samesite=strict" in cookie.lower() and "Path=/" in cookie
    me = web.get("/whoami")
    assert me.json() == {"account": "alice", "person": "alice", "role": "custodian", "token": None}
    steps = logins(cli_archive)
    assert [(s["person"], s["ok"], s["account"]) for s in steps] == [("alice", True, "alice")]


def test_a_wrong_password_is_refused_and_logged(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    answer = log_in(web, "alice", "not the password")
    assert answer.status_code == 401 and "custodes_session" not in answer.headers.get("set-cookie", "")
    assert "账号或密码错误" in answer.text  # Chinese unless the visitor chose English
    nobody = log_in(web, "nobody", PASSWORD)
    assert nobody.status_code == 401
    assert web.get("/whoami").status_code == 401
    steps = logins(cli_archive)
    assert [(s["person"], s["ok"]) for s in steps] == [("alice", False), ("account:?", False)]  # no such person
    assert "wrong password" in str(steps[0]["detail"]) and "no such local account" in str(steps[1]["detail"])
    # A failed login is no refused access to a recording: the report's Art. 22 refusals do not count it.
    out = run_cli("report", cli_archive, "--format", "json", "--out", cli_archive.parent / "r.json")
    assert out.returncode == 0, out.stderr
    assert json.loads((cli_archive.parent / "r.json").read_text())["access"]["refusals"] == 0


def test_a_login_beside_an_entry_another_hand_put_in_the_ledger_is_the_server_s_condition(cli_archive: Path) -> None:
    """A login is recorded, and nothing is while the ledger holds an entry no checkpoint covers that no command
    under way wrote: the page said so as a 400, the visitor's fault (a hostile review). It is the server's
    condition: 503, the page, naming the entry, nothing recorded."""
    web = client(with_account(cli_archive))
    web.headers["accept"] = "text/html,application/xhtml+xml"  # as a browser asks
    seq = appended_by_hand(cli_archive, FORGED_APPROVAL, "access_approve")
    answer = log_in(web, "alice", PASSWORD)
    assert answer.status_code == 503 and "text/html" in answer.headers["content-type"], answer.text
    assert f"{seq} (access_approve)" in answer.text and "custodes_session" not in answer.headers.get("set-cookie", "")
    assert logins(cli_archive) == []


def test_logout_ends_the_session_and_needs_the_csrf_token(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    assert log_in(web, "alice", PASSWORD, "/login").status_code == 303
    page = web.get("/lang/en?next=/whoami")
    assert page.status_code == 303
    cookie = web.cookies.get("custodes_session")
    assert cookie
    assert web.post("/logout").status_code == 403  # no CSRF token
    assert web.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert web.get("/whoami").status_code == 200  # still logged in
    # The session's token, as every page of a logged-in visitor carries it (the error page's logout form).
    token = csrf_of(web.get("/no-such-page", headers={"accept": "text/html"}))
    assert web.post("/logout", headers={"x-csrf-token": "forged"}).status_code == 403
    assert web.post("/logout", headers={"x-csrf-token": token}).status_code == 303  # as an API call sends it
    stale = TestClient(web.app, base_url="https://testserver", cookies={"custodes_session": cookie})
    assert stale.get("/whoami").status_code == 401  # the row is gone, not just the cookie


def test_the_login_form_without_its_csrf_token_is_refused(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    answer = web.post("/login", data={"name": "alice", "password": PASSWORD, "next": "/whoami"})
    assert answer.status_code == 403 and "custodes_session" not in answer.headers.get("set-cookie", "")
    assert logins(cli_archive) == []


def test_ten_wrong_passwords_lock_the_account_until_unlocked(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    for _ in range(LOCK_AFTER):
        assert log_in(web, "alice", "not the password").status_code == 401
    locked = log_in(web, "alice", PASSWORD)
    assert locked.status_code == 401 and "已锁定" in locked.text
    listed = run_cli("user", "list", cli_archive, "--json")
    assert listed.returncode == 0, listed.stderr
    (alice,) = json.loads(listed.stdout)["accounts"]
    assert alice["locked"] is True and alice["failures"] == LOCK_AFTER
    out = run_cli("user", "unlock", cli_archive, "alice")
    assert out.returncode == 0, out.stderr
    assert log_in(web, "alice", PASSWORD).status_code == 303
    steps = logins(cli_archive)
    assert [s["ok"] for s in steps] == [False] * (LOCK_AFTER + 1) + [True]
    assert "locked" in str(steps[LOCK_AFTER]["detail"])
    with open_archive(cli_archive) as a:  # the unlock is ledgered, by whom, without a secret
        (entry,) = [json.loads(d) for _i, d in a.catalog.ledger.of_type("account_unlocked")]
    assert entry["name"] == "alice" and entry["person"] == "root"


def test_a_disabled_account_is_refused_and_its_session_ends(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    assert log_in(web, "alice", PASSWORD).status_code == 303
    out = run_cli("user", "disable", cli_archive, "alice")
    assert out.returncode == 0, out.stderr
    assert web.get("/whoami").status_code == 401
    assert log_in(web, "alice", PASSWORD).status_code == 401
    assert logins(cli_archive)[-1]["ok"] is False


def test_sessions_end_after_30_idle_minutes_and_after_12_hours(cli_archive: Path, monkeypatch) -> None:
    web = client(with_account(cli_archive))
    clock = [time.time_ns()]
    monkeypatch.setattr(auth, "now_ns", lambda: clock[0])
    assert log_in(web, "alice", PASSWORD).status_code == 303
    for _ in range(24):  # a request every 29 minutes keeps it alive ... for 11 h 36 min
        clock[0] += 29 * MINUTE
        assert web.get("/whoami").status_code == 200
    clock[0] += 25 * MINUTE  # 12 h 01 min after the login, 25 min after the last request
    assert web.get("/whoami").status_code == 401
    assert log_in(web, "alice", PASSWORD).status_code == 303
    clock[0] += 30 * MINUTE
    assert web.get("/whoami").status_code == 401


def test_failed_logins_from_one_client_are_throttled_and_counted(cli_archive: Path, monkeypatch) -> None:
    web = client(with_account(cli_archive))
    clock = [time.time_ns()]
    monkeypatch.setattr(auth, "now_ns", lambda: clock[0])
    for i in range(auth.CLIENT_FAILURES):
        assert log_in(web, f"guess{i}", PASSWORD).status_code == 401
    for _ in range(5):  # answered without a look at the password, even the right one; counted, not ledgered
        throttled = log_in(web, "alice", PASSWORD)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert len(logins(cli_archive)) == auth.CLIENT_FAILURES
    clock[0] += auth.CLIENT_WINDOW_NS
    # The count's checkpoint file refused (a full disk) is not the login's to say (it answered the login 400).
    import custodes.archive

    written, refused = custodes.archive.write_once, []

    def full_once(path: Path, *args: object, **kwargs: object) -> None:
        if not refused:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(custodes.archive, "write_once", full_once)
    assert log_in(web, "alice", PASSWORD).status_code == 303
    assert refused  # (the count's, before the login)
    steps = logins(cli_archive)
    assert len(steps) == auth.CLIENT_FAILURES + 2
    count, ok = steps[-2:]
    assert (
        count["ok"] is False
        and count["person"] == "account:?"
        and "5 further logins from testclient" in str(count["detail"])
    )
    assert ok["ok"] is True and ok["person"] == "alice"


def test_api_tokens_act_with_their_role_until_revoked(cli_archive: Path) -> None:
    with_account(cli_archive, "carol")  # a viewer in the policy
    issued = run_cli("token", "add", cli_archive, "carol", "--role", "viewer", "--label", "case system", "--json")
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)
    wrong_role = run_cli("token", "add", cli_archive, "carol", "--role", "approver", "--json")
    web = client(cli_archive)
    bearer = {"authorization": f"Bearer {token['token']}"}
    assert web.get("/whoami", headers=bearer).json() == {
        "account": "carol",
        "person": "carol",
        "role": "viewer",
        "token": token["id"],
    }
    assert web.post("/logout", headers=bearer).status_code == 303  # no CSRF token needed with a bearer token
    other = {"authorization": f"Bearer {json.loads(wrong_role.stdout)['token']}"}
    assert web.get("/whoami", headers=other).status_code == 403  # carol is no approver
    assert web.get("/whoami", headers={"authorization": "Bearer " + "x" * 43}).status_code == 401
    listed = run_cli("token", "list", cli_archive, "--json")
    assert token["token"] not in listed.stdout.decode() and "case system" in listed.stdout.decode()
    assert run_cli("token", "revoke", cli_archive, str(token["id"])).returncode == 0
    refused = web.get("/whoami", headers=bearer)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    with open_archive(cli_archive) as a:  # ledgered without the token
        ledger = b"".join(d for _i, d in a.catalog.ledger.of_type("token_issued"))
    assert token["token"].encode() not in ledger and b"case system" in ledger


def test_pages_carry_the_csp_and_no_external_url(cli_archive: Path) -> None:
    web = client(with_account(cli_archive))
    for answer in (web.get("/login"), web.get("/nowhere", headers={"accept": "text/html"}), log_in(web, "x", "y")):
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cache-control"] == "no-store"
        assert not re.search(r"(https?:)?//[a-z0-9]", answer.text, re.I), answer.text
        assert "Traceback" not in answer.text
    css = web.get("/static/custodes.css")
    assert css.status_code == 200 and "url(" not in css.text and css.headers["content-security-policy"] == CSP


def test_the_account_commands_are_a_custodians(cli_archive: Path) -> None:
    out = run_cli("user", "add", cli_archive, "eve", "--password-stdin", input=b"short\n")
    assert out.returncode == 2 and b"shorter than" in out.stderr
    out = run_cli("user", "add", cli_archive, "../eve", "--password-stdin", input=PASSWORD.encode() + b"\n")
    assert out.returncode == 2 and b"account name" in out.stderr
    assert run_cli("user", "passwd", cli_archive, "eve", "--password-stdin", input=b"x" * 12).returncode == 2


def _first_answer(service: subprocess.Popen[bytes], log: Path, url: str, **kw: object) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        assert service.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=5, **kw)  # type: ignore[arg-type]
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def _stop(service: subprocess.Popen[bytes], log: Path) -> None:
    assert stop_service_by_pid(service) == 0, log.read_text()


def test_serve_http_answers_login_beside_the_socket(cli_archive: Path, tmp_path: Path) -> None:
    with_account(cli_archive, "bob")
    port = free_port()
    log = tmp_path / "service.log"
    service = start_service(cli_archive, log, "--http", f"127.0.0.1:{port}")
    try:
        page = _first_answer(service, log, f"http://127.0.0.1:{port}/login")
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        form = {"name": "bob", "password": PASSWORD, "csrf": csrf_of(page), "next": "/whoami"}
        # The login cookie is Secure: httpx keeps it from plain HTTP (browsers send it to loopback), so by hand.
        pre = re.search(r"custodes_login=([^;]+)", page.headers["set-cookie"])
        assert pre is not None and "Secure" in page.headers["set-cookie"]
        headers = {"cookie": f"custodes_login={pre.group(1)}"}
        answer = httpx.post(f"http://127.0.0.1:{port}/login", data=form, headers=headers, timeout=30)
        assert answer.status_code == 303, answer.text
        assert "Secure" in answer.headers["set-cookie"]
        # Through the service's socket, root is an auditor here: the account commands are a custodian's.
        refused = run_cli("user", "add", cli_archive, "eve", "--password-stdin", input=PASSWORD.encode() + b"\n")
        assert refused.returncode == 1 and b"needs custodian" in refused.stderr, refused.stderr
    finally:
        _stop(service, log)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
    steps = logins(cli_archive)
    assert [(s["person"], s["ok"]) for s in steps] == [("bob", True)]


def test_serve_https_with_certificate_files_and_accounts_made_through_the_service(
    two_clip_archive: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = peer(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    trust = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    log = tmp_path / "service.log"
    service = start_service(
        two_clip_archive, log, "--http", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)
    )
    try:
        url = f"https://127.0.0.1:{port}"
        page = _first_answer(service, log, f"{url}/login", verify=trust)
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        # root is a custodian in this archive: the account is made through the service, the password sent with
        # the request (read from stdin by the client), and the token printed once.
        added = run_cli("user", "add", two_clip_archive, "carol", "--password-stdin", input=ONE_TIME.encode() + b"\n")
        assert added.returncode == 0, added.stderr
        issued = run_cli("token", "add", two_clip_archive, "carol", "--role", "viewer", "--json")
        assert issued.returncode == 0, issued.stderr
        with httpx.Client(base_url=url, verify=trust, timeout=30) as browser:
            form = {"name": "carol", "password": ONE_TIME, "csrf": "", "next": "/whoami"}
            form["csrf"] = csrf_of(browser.get("/login"))
            assert browser.post("/login", data=form).headers["location"] == "/password"  # a custodian set it
            change = {
                "current": ONE_TIME,
                "new": PASSWORD,
                "again": PASSWORD,
                "csrf": csrf_of(browser.get("/password")),
            }
            assert browser.post("/password", data=change).headers["location"] == "/"
            assert browser.get("/whoami").json()["role"] == "viewer"  # the Secure cookie went back over HTTPS
        token = {"authorization": f"Bearer {json.loads(issued.stdout)['token']}"}
        assert httpx.get(f"{url}/whoami", headers=token, verify=trust).json()["account"] == "carol"
    finally:
        _stop(service, log)
    rebuilt = run_cli("ledger", "rebuild-catalog", two_clip_archive)  # the account entries replay: no rows
    assert rebuilt.returncode == 0 and b"EQUAL" in rebuilt.stdout, (rebuilt.stdout, rebuilt.stderr)
    assert [(s["person"], s["ok"]) for s in logins(two_clip_archive)] == [("carol", True)]


def test_an_unexpected_error_is_a_page_without_a_traceback(cli_archive: Path, monkeypatch, caplog) -> None:
    from custodes.web import app as web_app

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug, with a secret path /srv/archive/keys")

    monkeypatch.setattr(web_app, "check_password", broken)
    web = client(with_account(cli_archive))
    token = login_form(web)
    form = {"name": "alice", "password": PASSWORD, "csrf": token}
    answer = web.post("/login", data=form, headers={"accept": "text/html"})
    assert answer.status_code == 500 and answer.headers["content-security-policy"] == CSP
    assert "Traceback" not in answer.text and "secret path" not in answer.text and "内部错误" in answer.text
    assert "a bug, with a secret path" in caplog.text  # the operator's log has it
    api = web.post("/login", data=form)
    assert api.status_code == 500 and api.json() == {
        "error": "internal error; the server's log has the details",
        "status": 500,
    }


def test_every_label_the_templates_use_is_in_the_catalogue() -> None:
    from custodes.messages import CATALOGUE, WEB
    from custodes.web.context import TEMPLATES

    assert set(WEB) & set(CATALOGUE) == set()  # one meaning per key
    used = {k for f in TEMPLATES.glob("*.html") for k in re.findall(r"""\bt\(['"]([a-z0-9_]+)['"]\)""", f.read_text())}
    assert {"login", "logout", "dashboard", "devices"} <= used
    assert used - set(WEB) - set(CATALOGUE) == set()
    assert all(zh and en and zh != en for zh, en in WEB.values())


def test_a_role_taken_away_in_the_policy_holds_at_the_next_request(make_cli_archive, tmp_path: Path) -> None:
    # No approver named: the owner may still set the policy alone (custodes.policy's bootstrap).
    arch = make_cli_archive(people='[people]\nalice = "custodian"\nroot = "custodian"\n')
    with_account(arch, "alice")
    issued = run_cli("token", "add", arch, "alice", "--role", "custodian", "--json")
    assert issued.returncode == 0, issued.stderr
    bearer = {"authorization": f"Bearer {json.loads(issued.stdout)['token']}"}
    web = client(arch)
    assert log_in(web, "alice", PASSWORD).status_code == 303
    assert web.get("/whoami").json()["role"] == "custodian"
    assert web.get("/whoami", headers=bearer).json()["role"] == "custodian"
    changed = set_policy(arch, policy_text(arch).replace('alice = "custodian"', 'alice = "viewer"'))
    assert changed.returncode == 0, changed.stderr
    assert web.get("/whoami").json()["role"] == "viewer"  # a session has the role the person has now
    refused = web.get("/whoami", headers=bearer)  # a token acts only with the role it was issued for
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    gone = set_policy(arch, policy_text(arch).replace('alice = "viewer"\n', ""))
    assert gone.returncode == 0, gone.stderr
    assert web.get("/whoami").status_code == 403
    assert log_in(web, "alice", PASSWORD).status_code == 401  # no role: no login either
    assert "no role" in str(logins(arch)[-1]["detail"])


def test_the_http_address_is_loopback_unless_a_host_is_named(tmp_path: Path) -> None:
    from custodes.service import HttpListen, ServiceError, http_address

    assert http_address("8470") == ("127.0.0.1", 8470)
    assert http_address("0.0.0.0:8443") == ("0.0.0.0", 8443)
    assert http_address("[::1]:8470") == ("::1", 8470)
    assert HttpListen("::1", 8470).url == "http://[::1]:8470/"
    assert HttpListen("127.0.0.1", 8443, "c.pem", "k.pem").url == "https://127.0.0.1:8443/"
    for bad in ("", "host:", ":8470", "host:0", "host:65536", "host:http", "[::1]"):
        with pytest.raises(ServiceError, match="HOST:PORT"):
            http_address(bad)
    out = run_cli("serve", tmp_path, "--tls-cert", __file__, "--tls-key", __file__)
    assert out.returncode == 2 and b"are for --http" in out.stderr, out.stderr
    out = run_cli("serve", tmp_path, "--http", "8470", "--tls-cert", __file__)
    assert out.returncode == 2 and b"go together" in out.stderr, out.stderr
    out = run_cli("serve", tmp_path, "--http", "localhost:")
    assert out.returncode == 2 and b"HOST:PORT" in out.stderr and b"Traceback" not in out.stderr, out.stderr


def test_logout_on_a_full_disk_ends_the_session_for_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging out on a full disk was a 500, and the session stayed valid: the cookie a person believed ended
    still opened every page (a fourth hostile review); then, ended in memory alone, a server started again before
    the disk had room let it in again (a fifth and a sixth, the second with a server started on the full disk,
    whose store is read as it is). Its end is written over the pages the accounts store's write-ahead log already
    has; where that cannot be, it is kept aside in accounts.ended, a file made whole while there was room, and
    every store opened later refuses the session; where even that fails, the answer says so."""
    from custodes.catalog.accounts import ENDED_FILE, AccountStore, EndedSessions

    def restarted(arch: Path, cookie: str | None, web: TestClient) -> TestClient:
        web.app.state.custodes.store.close()
        return TestClient(create_app(arch), base_url="https://testserver", cookies={"custodes_session": cookie or ""})

    def answers(web: TestClient) -> int:
        """``/whoami``'s status, then the app's accounts store closed: a store left open keeps its -shm sized,
        and a server started later on the full disk then wrote as any does (which one, the garbage collector
        decided: a fresh clone's run)."""
        try:
            return web.get("/whoami").status_code
        finally:
            web.app.state.custodes.store.close()

    def logged_in_one(arch: Path) -> tuple[TestClient, str | None, str]:
        web = client(arch)
        assert log_in(web, "alice", PASSWORD, "/login").status_code == 303
        return (
            web,
            web.cookies.get("custodes_session"),
            csrf_of(web.get("/no-such-page", headers={"accept": "text/html"})),
        )

    def log_out(web: TestClient, csrf: str) -> httpx.Response:
        answer = web.post("/logout", headers={"x-csrf-token": csrf, "accept": "text/html"})
        assert 'custodes_session=""' in answer.headers.get("set-cookie", ""), answer.headers  # the browser's ends
        return answer

    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        arch = with_account(build_cli_archive(disk / "archive"))
        web, cookie, csrf = logged_in_one(arch)
        filler = fill(disk)
        logged_in_at = auth.now_ns()
        later = logged_in_at + 31 * 1_000_000_000  # past the time a session's last visit is written
        monkeypatch.setattr(auth, "now_ns", lambda: later)
        assert web.get("/whoami").status_code == 200  # a read on a full disk (was 503: the visit not written)
        # The visit is written: 30 min after the login (10 s past the idle limit) the person is still logged in.
        later = logged_in_at + auth.IDLE_NS + 10 * 1_000_000_000
        assert web.get("/whoami").status_code == 200
        assert log_out(web, csrf).status_code == 303
        assert answers(restarted(arch, cookie, web)) == 401  # the disk still full: on it
        monkeypatch.undo()
        filler.unlink()

        # A server started on the full disk reads its accounts store as it is: the end is kept aside.
        web, cookie, csrf = logged_in_one(arch)
        web.app.state.custodes.store.close()
        filler = fill(disk)
        web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False,
                         cookies={"custodes_session": cookie or ""})  # fmt: skip
        answer = log_out(web, csrf)
        assert answer.status_code == 503 and "its end is kept aside" in answer.text, answer.text
        web = restarted(arch, cookie, web)
        assert web.get("/whoami").status_code == 401  # the disk still full
        assert EndedSessions(arch / ENDED_FILE).read() != set()
        filler.unlink()
        assert answers(restarted(arch, cookie, web)) == 401
        again = client(arch)
        assert log_in(again, "alice", PASSWORD, "/login").status_code == 303  # a write: the end with it
        assert EndedSessions(arch / ENDED_FILE).read() == set()  # (written in the store: its slot freed)
        assert answers(restarted(arch, cookie, again)) == 401

        # Where even that fails (no file to keep it in), the answer says so; this server refuses the session.
        web, cookie, csrf = logged_in_one(arch)
        (arch / ENDED_FILE).unlink()

        def full(*_args: object) -> None:
            refused = sqlite3.OperationalError("database or disk is full")
            refused.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it  # type: ignore[attr-defined]
            raise refused

        with monkeypatch.context() as refusing:
            refusing.setattr(AccountStore, "_commit", full)
            answer = log_out(web, csrf)
            assert answer.status_code == 503 and "logged out of this server only" in answer.text, answer.text
            stale = TestClient(web.app, base_url="https://testserver", cookies={"custodes_session": cookie or ""})
            assert stale.get("/whoami").status_code == 401


def test_a_login_and_a_password_set_whose_checkpoint_file_cannot_be_written_are_made(
    cli_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person's new password set and ledgered, then its checkpoint's file refused (a full disk): the form came
    back with a 400, the person sent it again, and that "current password" (the old one) was wrong and counted
    towards the lock (a hostile review). The page goes back as after the change, saying it is recorded; a login
    so recorded is made."""
    from urllib.parse import unquote

    import custodes.archive
    from custodes.catalog.accounts import AccountStore

    def full(path: Path, *_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    web = client(with_account(cli_archive))
    monkeypatch.setattr(custodes.archive, "write_once", full)
    # The login too: recorded as made (ok), it made no session and answered 400 (a hostile review, from the code).
    assert log_in(web, "alice", PASSWORD, "/login").status_code == 303
    assert web.get("/whoami").status_code == 200
    csrf = csrf_of(web.get("/password", headers={"accept": "text/html"}))
    new = "another horse battery staple"
    answer = web.post("/password", data={"current": PASSWORD, "new": new, "again": new, "csrf": csrf})
    assert (answer.status_code, answer.headers.get("location")) == (303, "/"), answer.text
    flash = unquote(web.cookies.get("custodes_flash") or "")
    assert "custodes ledger checkpoint" in flash and "No space left on device" in flash, flash
    monkeypatch.undo()
    with AccountStore.open(cli_archive) as store:
        found = store.account("alice")
        assert found is not None and found.failures == 0
    assert log_in(client(cli_archive), "alice", new).status_code == 303


def test_the_file_of_ended_sessions_is_made_whole_and_noted_in_only_when_it_is(tmp_path: Path) -> None:
    """accounts.ended (custodes.catalog.accounts.EndedSessions) is noted in only where it is read back: a file left
    short (a disk that filled, a kill, while it was made) stayed short for good, and one grown by a hand took a
    note that no store read, so a logout said "kept aside" of an end that was not (a third hostile review)."""
    from custodes.catalog.accounts import EndedSessions

    ended = EndedSessions(tmp_path / "accounts.ended")
    whole = EndedSessions.SLOT * EndedSessions.SLOTS
    ended.path.write_bytes(bytes(8192))  # left short
    ended.make()
    assert ended.path.stat().st_size == whole  # completed
    digest = "ab" * 32
    assert ended.note(digest) and ended.read() == {digest}
    ended.free([digest])
    assert ended.read() == set() and ended.path.stat().st_size == whole
    with open(ended.path, "ab") as f:
        f.write(b"0123456789")  # grown by a hand: read() refuses it, so note() must not say it kept anything
    assert not ended.note(digest) and ended.read() == set()
    ended.path.unlink()
    ended.path.symlink_to(tmp_path / "elsewhere")
    ended.make()  # never through a link
    assert not (tmp_path / "elsewhere").exists() and not ended.note(digest)
