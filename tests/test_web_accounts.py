"""The two-person rule against a custodian who sets or holds another person's credentials (issue 19).

A local account takes the role the policy gives its name, and a custodian sets passwords and issues tokens: so
a custodian could make (or reset) an approver's account, log in as them and approve her own request. Two
mitigations, tested here through the web app (FastAPI's TestClient) and the CLI:

- a password set by anyone but the account's person is one-time: its session reaches only /password, and the
  person's own new password is theirs (ledgered as theirs; the custodian's set ledgered as the custodian's);
- an API token reads and asks, but decides nothing: approving or denying is a person's, logged in.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from custodes import policy
from custodes.access import NOT_BY_TOKEN, AccessDenied, request_access
from custodes.archive import open_archive
from custodes.catalog.accounts import ACCOUNTS_FILE, MIGRATIONS, AccountStore
from custodes.identity import acting_as
from custodes.web import create_app
from custodes.web.accounts import (
    MIN_PASSWORD,
    add_account,
    issue_token,
    local_caller,
    set_password,
    token_caller,
)
from helpers import catalog_rows, policy_text, run_cli
from web_helpers import ONE_TIME, PASSWORD, add_own_account, csrf_in, deciding, logged_in

API = "/api/v1"
TEXT = {"accept": "text/html"}


def client(arch: Path) -> TestClient:
    return TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False, headers=TEXT)


def log_in(web: TestClient, name: str, password: str) -> Any:
    page = web.get("/login")
    return web.post("/login", data={"name": name, "password": password, "csrf": csrf_in(page.text), "next": "/"})


def ledgered(arch: Path, kind: str) -> list[dict[str, Any]]:
    with open_archive(arch) as a:
        return [json.loads(data) for _index, data in a.catalog.ledger.of_type(kind)]


def refusals(arch: Path, action: str) -> list[tuple[Any, ...]]:
    return catalog_rows(arch, "SELECT person, request_id, detail FROM access_log WHERE action = ? AND ok = 0",
                        (action,))  # fmt: skip


def test_a_one_time_passwords_session_reaches_only_the_password_page(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a, acting_as(local_caller("alice")):  # alice, a custodian, makes dave's
        add_account(a, "dave", ONE_TIME)
    web = client(cli_archive)
    answer = log_in(web, "dave", ONE_TIME)
    assert answer.status_code == 303 and answer.headers["location"] == "/password"
    for page in ("/", "/access", "/devices", "/tasks", "/report", "/recordings/1"):
        moved = web.get(page)
        assert (moved.status_code, moved.headers.get("location")) == (303, "/password"), page
    csrf = csrf_in(web.get("/password").text)
    # a form of another page is not acted on either: it lands on /password
    asked = web.post("/access/request", data={"csrf": csrf, "segments": "1", "reason": "r", "purpose": "view"})
    assert (asked.status_code, asked.headers.get("location")) == (303, "/password")
    for method, path in (("GET", "/segments"), ("GET", "/access/requests"), ("POST", "/access/requests")):
        body = {"segments": [1], "reason": "r"} if method == "POST" else None
        refused = web.request(method, API + path, json=body, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403, (path, refused.text)
        assert "one-time" in refused.json()["error"] and "/password" in refused.json()["error"]
    assert catalog_rows(cli_archive, "SELECT COUNT(*) FROM access_requests") == [(0,)]
    form = web.get("/password")
    assert form.status_code == 200 and 'action="/password"' in form.text
    assert 'href="/access"' not in form.text  # no way on but the change (and logout)

    def change(current: str, new: str, again: str, token: str = csrf) -> Any:
        return web.post("/password", data={"csrf": token, "current": current, "new": new, "again": again})

    assert change(ONE_TIME, PASSWORD, PASSWORD, "wrong").status_code == 403  # CSRF-checked
    assert "differ" in change(ONE_TIME, PASSWORD, PASSWORD + "!").text
    assert "current one" in change(ONE_TIME, ONE_TIME, ONE_TIME).text  # the custodian knows the one-time one
    short = "x" * (MIN_PASSWORD - 1)
    assert f"shorter than {MIN_PASSWORD}" in change(ONE_TIME, short, short).text
    assert "current password is wrong" in change("not it at all", PASSWORD, PASSWORD).text
    assert web.get("/").headers.get("location") == "/password"  # still one-time after each refusal
    done = change(ONE_TIME, PASSWORD, PASSWORD)
    assert (done.status_code, done.headers["location"]) == (303, "/")
    # now dave acts: his pages, and the API with his session
    assert web.get("/").status_code == 200
    mine = web.post(f"{API}/access/requests", json={"segments": [1], "reason": "audit"}, headers={"X-CSRF-Token": csrf})
    assert mine.status_code == 201 and mine.json()["requester"] == "dave"
    assert log_in(client(cli_archive), "dave", ONE_TIME).status_code == 401  # the one-time password is gone
    assert log_in(client(cli_archive), "dave", PASSWORD).headers["location"] == "/"
    # the records: alice made the account (one-time), dave set his own; the login said it was one-time
    (added,) = [e for e in ledgered(cli_archive, "account_added") if e["name"] == "dave"]
    assert (added["person"], added["account"], added["one_time"]) == ("alice", "alice", True)
    (own,) = [e for e in ledgered(cli_archive, "account_password_set") if e["name"] == "dave"]
    assert (own["person"], own["account"], own["one_time"]) == ("dave", "dave", False)
    first = [e for e in ledgered(cli_archive, "access_login") if e["person"] == "dave"][0]
    assert first["ok"] and "one-time" in first["detail"] and "from " in first["detail"]


def test_a_custodian_who_resets_a_password_is_named_and_the_persons_sessions_end(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        add_own_account(a, "dave")
    dave = logged_in(create_app(cli_archive), "dave")
    assert dave.get("/").status_code == 200
    with open_archive(cli_archive) as a, acting_as(local_caller("alice")):
        set_password(a, "dave", "alice knows this one")
    assert dave.get("/").headers["location"].startswith("/login")  # his session ended with it
    web = client(cli_archive)
    assert log_in(web, "dave", "alice knows this one").headers["location"] == "/password"
    assert web.get(f"{API}/segments").status_code == 403
    sets = [(e["person"], e["name"], e["one_time"]) for e in ledgered(cli_archive, "account_password_set")]
    assert sets == [("dave", "dave", False), ("alice", "dave", True)]
    # a custodian's own account: her own password is not one-time
    with open_archive(cli_archive) as a, acting_as(local_caller("alice")):
        add_account(a, "alice", PASSWORD)
    assert log_in(client(cli_archive), "alice", PASSWORD).headers["location"] == "/"


def test_an_approvers_token_reads_and_asks_but_decides_nothing(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        for name in ("alice", "carol", "dave"):
            add_own_account(a, name)
        with acting_as(local_caller("alice")):  # the custodian issues dave's token, as `custodes token add`
            _, token = issue_token(a, "dave", "approver", "alice's")
    app = create_app(cli_archive)
    web = TestClient(app, base_url="https://testserver", follow_redirects=False)
    bearer = {"Authorization": f"Bearer {token}"}
    asked = deciding(app, "carol").post(f"{API}/access/requests", json={"segments": [1], "reason": "complaint"})
    assert asked.status_code == 201, asked.text
    rid = asked.json()["id"]
    # the token reads, and asks for access as dave
    assert web.get(f"{API}/access/requests", headers=bearer).status_code == 200
    assert web.get(f"{API}/segments", headers=bearer).status_code == 200
    own = web.post(f"{API}/access/requests", json={"segments": [2], "reason": "audit"}, headers=bearer)
    assert own.status_code == 201 and own.json()["requester"] == "dave"
    # it decides nothing: API approve and deny, and the page's approve form, 403 and logged
    approve = web.post(f"{API}/access/requests/{rid}/approve", json={}, headers=bearer)
    assert approve.status_code == 403 and approve.json()["error"] == NOT_BY_TOKEN
    deny = web.post(f"{API}/access/requests/{rid}/deny", json={"reason": "no"}, headers=bearer)
    assert deny.status_code == 403 and deny.json()["error"] == NOT_BY_TOKEN
    form = web.post(f"/access/{rid}/approve", data={"hours": "1"}, headers={**bearer, **TEXT})
    assert form.status_code == 403 and NOT_BY_TOKEN in form.text
    assert refusals(cli_archive, "approve") == [("dave", rid, NOT_BY_TOKEN)] * 2
    # nor does it set dave's password (which would make the holder dave, as far as the records tell)
    assert web.get("/password", headers=bearer).status_code == 403
    assert refusals(cli_archive, "deny") == [("dave", rid, NOT_BY_TOKEN)]
    (row,) = [r for r in web.get(f"{API}/access/requests", headers=bearer).json()["requests"] if r["id"] == rid]
    assert row["status"] == "pending"
    # dave himself, logged in, decides
    decided = deciding(app, "dave").post(f"{API}/access/requests/{rid}/approve", json={"hours": 1})
    assert decided.status_code == 200 and decided.json()["decided_by"] == "dave"
    # the ledger and the catalog still agree
    assert run_cli("ledger", "verify", cli_archive).returncode == 0


def test_a_token_decides_no_policy_proposal(cli_archive: Path) -> None:
    proposed_file = cli_archive.parent / "proposed.toml"
    proposed_file.write_text(policy_text(cli_archive).replace("[people]", '[people]\neve = "viewer"', 1))
    with open_archive(cli_archive) as a:
        with acting_as(local_caller("bob")):
            proposal = policy.set_policy(a, str(proposed_file)).proposal
        assert proposal is not None
        for decide in (
            lambda: policy.approve_proposal(a, proposal.id),
            lambda: policy.deny_proposal(a, proposal.id, "no"),
        ):
            with acting_as(token_caller("dave")), pytest.raises(AccessDenied, match=re.escape(NOT_BY_TOKEN)):
                decide()
        with acting_as(token_caller("dave")):  # it still asks
            assert request_access(a, [1], "a look").requester == "dave"
        with acting_as(local_caller("dave")):  # dave logged in puts it in force
            assert policy.approve_proposal(a, proposal.id).status == "recorded"
    assert [(p, d) for p, _r, d in refusals(cli_archive, "approve_policy")] == [("dave", NOT_BY_TOKEN)]
    assert [(p, d) for p, _r, d in refusals(cli_archive, "deny_policy")] == [("dave", NOT_BY_TOKEN)]


def test_user_add_then_login_then_change_end_to_end(cli_archive: Path) -> None:
    added = run_cli("user", "add", cli_archive, "bob", "--password-stdin", input=ONE_TIME.encode() + b"\n")
    assert added.returncode == 0, added.stderr
    listed = run_cli("user", "list", cli_archive, "--json")
    assert json.loads(listed.stdout)["accounts"][0]["one_time"] is True
    assert "one-time password" in run_cli("user", "list", cli_archive).stdout.decode()
    web = client(cli_archive)
    assert log_in(web, "bob", ONE_TIME).headers["location"] == "/password"
    page = web.get("/password")
    changed = web.post(
        "/password", data={"csrf": csrf_in(page.text), "current": ONE_TIME, "new": PASSWORD, "again": PASSWORD}
    )
    assert changed.headers["location"] == "/"
    home = web.get("/")
    assert home.status_code == 200 and 'href="/password"' in home.text  # the header's link to change it again
    assert json.loads(run_cli("user", "list", cli_archive, "--json").stdout)["accounts"][0]["one_time"] is False
    # the archive's owner made it, bob set his own; replayed, the account entries make no rows
    assert [(e["person"], e["one_time"]) for e in ledgered(cli_archive, "account_added")] == [("root", True)]
    assert [(e["person"], e["one_time"]) for e in ledgered(cli_archive, "account_password_set")] == [("bob", False)]
    rebuilt = run_cli("ledger", "rebuild-catalog", cli_archive)
    assert rebuilt.returncode == 0 and b"EQUAL" in rebuilt.stdout, (rebuilt.stdout, rebuilt.stderr)


def test_accounts_from_before_one_time_passwords_must_change(tmp_path: Path) -> None:
    """Every password kept before the migration was set by a custodian: each account sets its own."""
    path = tmp_path / ACCOUNTS_FILE
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO accounts (name, hash, created_ns) VALUES ('dave', 'h', 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with AccountStore.open(tmp_path) as store:
        dave = store.account("dave")
        assert dave is not None and dave.must_change == 1 and dave.hash == "h"
