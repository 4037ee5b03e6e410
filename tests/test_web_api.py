"""The JSON API (issue 19, custodes.web.api) on real CLI-made archives, through FastAPI's TestClient
(``https://testserver``): tokens of real local accounts read what the query API reads, act through the CLI's
library functions with the CLI's roles and refusals, answer with the CLI's ``--json`` objects, and never a
traceback."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from custodes import proofs, query
from custodes.access import requests
from custodes.archive import open_archive
from custodes.findings import rfc3339
from custodes.identity import acting_as
from custodes.tasks import import_tasks, parse_tasks
from custodes.web import api as api_routes
from custodes.web import create_app
from custodes.web.accounts import issue_token, local_caller, revoke_token, secret_digest
from helpers import (
    THREE_RECORDINGS,
    as_,
    build_cli_archive,
    catalog_rows,
    copy_archive,
    fill,
    hand_back,
    run_cli,
    small_tmpfs,
)
from web_helpers import PASSWORD, add_own_account, csrf_in, deciding, logged_in

API = "/api/v1"
ROLES = {"alice": "custodian", "bob": "approver", "carol": "viewer", "dave": "approver"}


@pytest.fixture(scope="module")
def with_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An archive as ``cli_archive`` with a bearer token for each person (issued by the archive's owner through
    custodes.web.accounts, as `custodes token add` does), made once a module: its password hashes are a second."""
    arch = build_cli_archive(tmp_path_factory.mktemp("api") / "archive", recordings=THREE_RECORDINGS)
    tokens = {}
    with open_archive(arch) as a:  # the tests run as root, the archive's owner
        for name, role in ROLES.items():
            add_own_account(a, name, PASSWORD)
            tokens[name] = issue_token(a, name, role, "tests")[1]
    return arch, tokens


@pytest.fixture
def api(with_tokens: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, TestClient, dict[str, str]]:
    """A copy of :func:`with_tokens`'s archive, a client of its app, and each person's token."""
    template, tokens = with_tokens
    arch = copy_archive(template, tmp_path / "archive")
    web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)
    return arch, web, tokens


def as_json(value: Any) -> Any:
    """A record as the API writes it: its dataclass fields (times int ns), through JSON."""
    return json.loads(json.dumps(dataclasses.asdict(value)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def walk(web: TestClient, path: str, token: str, key: str, **params: Any) -> list[Any]:
    """Every record of a paged read, page after page through its cursor."""
    out: list[Any] = []
    cursor = None
    while True:
        answer = web.get(f"{API}/{path}", params={**params, **({"cursor": cursor} if cursor else {})},
                         headers=bearer(token))  # fmt: skip
        assert answer.status_code == 200, answer.text
        out += answer.json()[key]
        cursor = answer.json()["next"]
        if cursor is None:
            return out


def refused_steps(arch: Path, action: str) -> list[tuple[Any, ...]]:
    return catalog_rows(arch, "SELECT person, request_id, detail FROM access_log WHERE action = ? AND ok = 0",
                        (action,))  # fmt: skip


def test_each_persons_token_reads_what_the_query_api_reads(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    arch, web, tokens = api
    with open_archive(arch) as a:
        segments = [as_json(s) for s in query.segments(a)]
        findings = [as_json(f) for f in query.findings(a)]
        devices = [as_json(d) for d in query.devices(a)]
        events = [as_json(e) for e in query.events(a)]
        device = devices[0]["id"]
        on_device = [as_json(s) for s in query.segments(a, device=device)]
        timed = [s for s in query.segments(a) if s.start is not None]
        t0 = min(s.start for s in timed if s.start is not None)
        before = [as_json(s) for s in query.segments(a, end=t0 + 1)]
    assert len(segments) == 3 and findings and devices and on_device
    assert len(before) == 1  # the time filter selects: only the earliest recording starts before t0 + 1 ns
    for name in ("alice", "bob", "carol"):
        answer = web.get(f"{API}/segments", headers=bearer(tokens[name]))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"segments": segments, "next": None}
        # page by page, one record a page: the same records, each once
        assert walk(web, "segments", tokens[name], "segments", limit=1) == segments
    token = tokens["carol"]
    assert walk(web, "findings", token, "findings", limit=1) == findings
    assert walk(web, "findings", token, "findings", limit=2) == findings
    assert walk(web, "devices", token, "devices", limit=1) == devices
    assert walk(web, "events", token, "events", limit=1) == events
    assert walk(web, "segments", token, "segments", device=device) == on_device
    # a time as RFC 3339 or as int ns selects the same
    assert walk(web, "segments", token, "segments", end=str(t0 + 1)) == before
    assert walk(web, "segments", token, "segments", end=rfc3339(t0 + 1)) == before
    one = web.get(f"{API}/segments/2", headers=bearer(token))
    assert one.status_code == 200 and one.json() == segments[1]


def test_a_viewer_cannot_approve_and_the_refusal_is_logged(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    arch, web, tokens = api
    asked = web.post(f"{API}/access/requests", json={"segments": [1], "reason": "complaint 17"},
                     headers=bearer(tokens["carol"]))  # fmt: skip
    assert asked.status_code == 201, asked.text
    rid = asked.json()["id"]
    assert asked.json()["status"] == "pending" and asked.json()["requester"] == "carol"
    answer = web.post(f"{API}/access/requests/{rid}/approve", headers=bearer(tokens["carol"]))  # no body: defaults
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "carol is not an approver"
    assert refused_steps(arch, "approve") == [("carol", rid, "carol is not an approver")]
    # nor a custodian; and the request is still pending
    assert web.post(f"{API}/access/requests/{rid}/deny", json={"reason": "no"},
                    headers=bearer(tokens["alice"])).status_code == 403  # fmt: skip
    assert refused_steps(arch, "deny") == [("alice", rid, "alice is not an approver")]
    listed = web.get(f"{API}/access/requests", headers=bearer(tokens["carol"])).json()["requests"]
    assert [r["status"] for r in listed] == ["pending"]


def test_an_approver_approves_a_viewers_request(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    arch, web, tokens = api
    bob, dave = deciding(web.app, "bob"), deciding(web.app, "dave")  # decisions: people logged in, not tokens
    rid = web.post(f"{API}/access/requests", json={"segments": [1, 3], "reason": "complaint 17"},
                   headers=bearer(tokens["carol"])).json()["id"]  # fmt: skip
    answer = bob.post(f"{API}/access/requests/{rid}/approve", json={"hours": 2, "note": "for the review"})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["status"] == "approved" and got["decided_by"] == "bob" and got["segments"] == [1, 3]
    with open_archive(arch) as a:
        (row,) = [r for r in requests(a) if r.id == rid]
    assert row.valid_until is not None and row.valid_from is not None
    assert row.valid_until - row.valid_from == 2 * 3600 * 10**9
    # decided already: the archive's state refuses it (409); nobody approves their own request (403, logged)
    again = dave.post(f"{API}/access/requests/{rid}/approve", json={})
    assert again.status_code == 409 and again.json()["error"] == f"request {rid} is already approved"
    own = web.post(f"{API}/access/requests", json={"segments": [2], "reason": "audit"}, headers=bearer(tokens["bob"]))
    mine = bob.post(f"{API}/access/requests/{own.json()['id']}/approve", json={})
    assert mine.status_code == 403 and mine.json()["error"] == "nobody approves their own request"
    denied = dave.post(f"{API}/access/requests/{own.json()['id']}/deny", json={"reason": "not needed"})
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    # a window longer than the policy allows is refused before anything is logged
    third = web.post(f"{API}/access/requests", json={"segments": [2], "reason": "r"}, headers=bearer(tokens["carol"]))
    long = bob.post(f"{API}/access/requests/{third.json()['id']}/approve", json={"hours": 10_000})
    assert long.status_code == 409 and "max_window_hours" in long.json()["error"]
    for hours in ("1e300", "NaN", "-1", "0", '"two"'):
        bad = bob.post(f"{API}/access/requests/{third.json()['id']}/approve", content=f'{{"hours": {hours}}}',
                       headers={"Content-Type": "application/json"})  # fmt: skip
        assert bad.status_code == 422 and "hours" in bad.json()["error"], bad.text
    # every step (the refusals too) is ledgered, the catalog is what the ledger says, all under a checkpoint
    assert run_cli("verify", arch).returncode == 0
    assert run_cli("ledger", "verify", arch).returncode == 0


def test_the_api_and_the_cli_print_one_access_request_alike(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    arch, web, tokens = api
    asked = web.post(f"{API}/access/requests", json={"segments": [3], "reason": "complaint 17", "purpose": "export"},
                     headers=bearer(tokens["carol"]))  # fmt: skip
    assert asked.status_code == 201
    rid = asked.json()["id"]
    # bob approves with the CLI, through the archive's service, as his own account
    cli = as_("bob", "access", "approve", arch, str(rid), "--json")
    assert cli.returncode == 0, cli.stderr
    approved = json.loads(cli.stdout)
    # carol asks again with the CLI
    cli = as_("carol", "access", "request", arch, "--segment", "1", "--reason", "second look", "--json")
    assert cli.returncode == 0, cli.stderr
    second = json.loads(cli.stdout)
    hand_back(arch)
    listed = {r["id"]: r for r in web.get(f"{API}/access/requests", headers=bearer(tokens["alice"])).json()["requests"]}
    assert listed[rid] == approved and listed[second["id"]] == second
    # the API's answer to the request had the same keys and facts the CLI prints
    assert asked.json().keys() == approved.keys()
    assert {k: asked.json()[k] for k in ("id", "requester", "segments", "reason", "purpose")} == {
        k: approved[k] for k in ("id", "requester", "segments", "reason", "purpose")
    }


def test_coverage_report_and_proof_are_the_clis(api: tuple[Path, TestClient, dict[str, str]], tmp_path: Path) -> None:
    arch, web, tokens = api
    with open_archive(arch) as a:
        seg = next(s for s in query.segments(a) if s.start is not None and s.end is not None)
        assert seg.start is not None and seg.end is not None
        window = {"id": "T-1", "type": "patrol", "start": rfc3339(seg.start - 60 * 10**9),
                  "end": rfc3339(seg.end + 60 * 10**9), "officers": "", "devices": seg.device}  # fmt: skip
        with acting_as(local_caller("alice")):
            import_tasks(a, parse_tasks([window], "test"))
    cli = run_cli("task", "coverage", arch, "--task", "T-1", "--json")
    assert cli.returncode == 1, cli.stderr  # the minute before and after are not recorded
    # the task's unexplained gaps are findings without an id: a cursor walks past them too, each once
    with open_archive(arch) as a:
        findings = [as_json(f) for f in query.findings(a)]
        of_task = [as_json(f) for f in query.findings(a, task="T-1")]
    assert [f["kind"] for f in findings if f["id"] is None].count("gap_unexplained") == 2
    for limit in (1, 2, 3):
        assert walk(web, "findings", tokens["carol"], "findings", limit=limit) == findings
    assert walk(web, "findings", tokens["carol"], "findings", task="T-1", limit=1) == of_task
    coverage = web.get(f"{API}/tasks/T-1/coverage", headers=bearer(tokens["carol"]))
    assert coverage.status_code == 200 and coverage.json() == json.loads(cli.stdout)
    assert coverage.json()["ok"] is False
    assert web.get(f"{API}/tasks/T-9/coverage", headers=bearer(tokens["carol"])).status_code == 404
    # alice explains the first minute; coverage shows it explained, by that annotation
    gap = {"device": seg.device, "start": window["start"], "end": seg.start, "cause": "battery", "note": "swap"}
    refused = web.post(f"{API}/gaps/explain", json=gap, headers=bearer(tokens["carol"]))
    assert refused.status_code == 403 and refused_steps(arch, "gap_explain")
    explained = web.post(f"{API}/gaps/explain", json=gap, headers=bearer(tokens["alice"]))
    assert explained.status_code == 201, explained.text
    annotation = explained.json()["annotation"]
    cli = run_cli("task", "coverage", arch, "--task", "T-1", "--json")
    after = web.get(f"{API}/tasks/T-1/coverage", headers=bearer(tokens["carol"])).json()
    assert after == json.loads(cli.stdout)
    assert [e["annotation"] for e in after["tasks"][0]["explained"]] == [annotation]
    # the report, as `custodes report --format json` writes it for the same moment
    at = rfc3339(seg.end + 3600 * 10**9)
    out = tmp_path / "report.json"
    assert run_cli("report", arch, "--format", "json", "--out", out, "--at", at, "--lang", "en").returncode == 0
    report = web.get(f"{API}/report", params={"at": at, "lang": "en"}, headers=bearer(tokens["carol"]))
    assert report.status_code == 200 and report.content == out.read_bytes()
    scoped = web.get(
        f"{API}/report", params={"scope": "device", "value": seg.device, "at": at}, headers=bearer(tokens["bob"])
    )
    assert scoped.status_code == 200 and scoped.json()["scope"]["devices"] == [seg.device]
    assert web.get(f"{API}/report", params={"scope": "planet"}, headers=bearer(tokens["bob"])).status_code == 422
    # what build_report refuses, the API answers 422 with its reason: no scope id, an unknown device, a language,
    # a period that ends before it starts
    for params in (
        {"scope": "device"},
        {"scope": "device", "value": "NO-SUCH-DEVICE"},
        {"lang": "fr"},
        {"from": "2024-03-02T00:00:00Z", "to": "2024-03-01T00:00:00Z"},
    ):
        refused = web.get(f"{API}/report", params=params, headers=bearer(tokens["bob"]))
        assert refused.status_code == 422, (params, refused.text)
    # the proof of a segment's ingest entry checks offline against the archive's key
    proof = web.get(f"{API}/proofs/segments/{seg.id}", headers=bearer(tokens["carol"]))
    assert proof.status_code == 200
    with open_archive(arch) as a:
        proven = proofs.verify(proof.json(), trusted_key=a.verifier_key)
    assert proven.index == seg.ledger_index and proven.entry["type"] == "ingest"


def test_holds_are_placed_and_released_by_the_roles_the_cli_asks(
    api: tuple[Path, TestClient, dict[str, str]],
) -> None:
    arch, web, tokens = api
    assert (
        web.post(f"{API}/holds", json={"segment": 2, "reason": "court"}, headers=bearer(tokens["carol"])).status_code
        == 403
    )
    placed = web.post(f"{API}/holds", json={"segment": 2, "reason": "court"}, headers=bearer(tokens["alice"]))
    assert placed.status_code == 201 and placed.json() == {"hold": 1, "segment": 2}
    assert web.post(f"{API}/holds/1/release", headers=bearer(tokens["alice"])).status_code == 403
    released = web.post(f"{API}/holds/1/release", headers=bearer(tokens["bob"]))
    assert released.status_code == 200 and released.json() == {"hold": 1, "released": True}
    again = web.post(f"{API}/holds/1/release", headers=bearer(tokens["bob"]))
    assert again.status_code == 409 and again.json()["error"] == "no active hold 1"
    assert web.post(f"{API}/holds/7/release", headers=bearer(tokens["bob"])).status_code == 404
    assert (
        web.post(f"{API}/holds", json={"segment": 99, "reason": "x"}, headers=bearer(tokens["bob"])).status_code == 404
    )
    assert [p for p, *_ in refused_steps(arch, "hold")] == ["carol"]
    assert [p for p, *_ in refused_steps(arch, "release")] == ["alice"]


def test_openapi_describes_every_api_route_with_its_schemas(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    _, web, _ = api
    answer = web.get("/openapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    routes = {(route.path, method.lower()) for route in api_routes.router.routes for method in route.methods}  # type: ignore[attr-defined]
    assert len(routes) == 15  # 9 reads, 6 actions
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes <= described
    schemas = doc["components"]["schemas"]
    for path, method in routes:
        responses = doc["paths"][path][method]["responses"]
        ok = [r for status, r in responses.items() if status.startswith("2") and status != "202"]
        assert len(ok) == 1, (path, method)
        # An action may answer 202 too: done and recorded, its checkpoint not written (a full disk).
        recorded = responses.get("202", {}).get("content", {}).get("application/json", {}).get("schema")
        assert recorded == ({"$ref": "#/components/schemas/RecordedJSON"} if method == "post" else None), (path, method)
        ref = ok[0]["content"]["application/json"]["schema"]
        assert ref, (path, method)
        for status in ("401", "403", "422"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorJSON"
            }
        if "$ref" in ref:
            assert ref["$ref"].removeprefix("#/components/schemas/") in schemas
    # the CLI's shapes, by the library's TypedDicts and records
    assert set(schemas["AccessRequestJSON"]["properties"]) == {
        "id", "requester", "segments", "reason", "purpose", "status", "decided_by", "valid_from", "valid_until"
    }  # fmt: skip
    assert {"segments", "next"} <= set(schemas["SegmentPage"]["properties"])
    assert set(schemas["Report"]["required"]) >= {"report", "version", "archive", "period", "scope"}
    assert doc["paths"][f"{API}/access/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AccessRequestBody"
    }


def test_a_revoked_token_is_refused(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    arch, web, tokens = api
    with open_archive(arch) as a:
        info, token = issue_token(a, "carol", "viewer", "case system")
    assert web.get(f"{API}/segments", headers=bearer(token)).status_code == 200
    with open_archive(arch) as a:
        revoke_token(a, info.id)
    answer = web.get(f"{API}/segments", headers=bearer(token))
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"] == "the token is unknown or revoked"
    assert (
        web.post(f"{API}/access/requests", json={"segments": [1], "reason": "r"}, headers=bearer(token)).status_code
        == 401
    )
    assert web.get(f"{API}/segments").status_code == 401  # no token, no session
    # a token for a role its account no longer has acts no more: carol's approver token
    with open_archive(arch) as a:
        _, wrong = issue_token(a, "carol", "approver", "")
    assert web.get(f"{API}/segments", headers=bearer(wrong)).status_code == 403


def test_a_session_posts_with_its_csrf_token(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    _, web, _ = api
    page = web.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    logged = web.post("/login", data={"name": "carol", "password": PASSWORD, "csrf": csrf.group(1), "next": "/"})
    assert logged.status_code == 303
    assert web.get(f"{API}/segments").status_code == 200
    body = {"segments": [1], "reason": "complaint 17"}
    without = web.post(f"{API}/access/requests", json=body)
    assert without.status_code == 403 and "CSRF" in without.json()["error"]
    # the page gives the session's token to its forms; here it is read from the session's row
    store = web.app.state.custodes.store  # type: ignore[attr-defined]
    session = store.session(secret_digest(web.cookies["custodes_session"]))
    wrong = web.post(f"{API}/access/requests", json=body, headers={"X-CSRF-Token": "x" + session.csrf})
    assert wrong.status_code == 403
    right = web.post(f"{API}/access/requests", json=body, headers={"X-CSRF-Token": session.csrf})
    assert right.status_code == 201 and right.json()["requester"] == "carol"


BAD = [
    ("get", "/segments/999", None, 404, "no segment 999"),
    ("get", "/segments/0", None, 422, None),
    ("get", "/segments/99999999999999999999", None, 422, None),
    ("get", "/segments?limit=100000000", None, 422, None),
    ("get", "/segments?limit=99999999999999999999999999", None, 422, None),
    ("get", "/segments?limit=0", None, 422, None),
    ("get", "/segments?cursor=not-a-cursor", None, 400, "cursor"),
    ("get", "/segments?cursor=eyJhZnRlciI6MWUzMDB9", None, 400, "cursor"),
    ("get", "/segments?start=yesterday", None, 422, "start"),
    ("get", "/segments?start=99999999999999999999999", None, 422, "start"),
    ("get", "/segments?start=2024-01-02T00:00:00", None, 422, "time zone"),
    ("get", "/segments?device=NOPE", None, 404, "no device 'NOPE'"),
    ("get", "/findings?case=C-404", None, 404, "no case 'C-404'"),
    ("get", "/events?officer=0000", None, 404, "no officer '0000'"),
    ("get", "/proofs/segments/999", None, 404, "no segment 999"),
    ("post", "/access/requests", b"{not json", 400, "not JSON"),
    ("post", "/access/requests", b"[1, 2]", 422, None),
    ("post", "/access/requests", b'{"segments": [1], "reason": "r", "extra": 1}', 422, "extra"),
    ("post", "/access/requests", b'{"segments": [999], "reason": "r"}', 404, "no such segment"),
    ("post", "/access/requests", b'{"segments": [], "reason": "r"}', 422, "segments"),
    ("post", "/access/requests", b'{"segments": [1], "reason": "  "}', 422, "reason"),
    ("post", "/access/requests", b'{"segments": [1], "reason": "a\\nb"}', 422, "control character"),
    ("post", "/access/requests", b'{"segments": [1], "reason": "\\ud800"}', 422, None),
    ("post", "/access/requests", b'{"segments": [1], "reason": "r", "purpose": "sell"}', 422, "purpose"),
    ("post", "/access/requests/999/approve", b"{}", 404, "no access request 999"),
    ("post", "/access/requests/1/approve", b'{"hours": NaN}', 422, "hours"),
    ("post", "/gaps/explain", b'{"device": "D", "start": 1, "end": "x", "cause": "battery"}', 422, "end"),
    ("post", "/gaps/explain", b'{"device": "D", "start": 1, "end": 2, "cause": "aliens"}', 422, "cause"),
]


def test_bad_input_is_a_json_error_never_a_traceback(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    _, web, tokens = api
    headers = {**bearer(tokens["bob"]), "Content-Type": "application/json"}
    for method, path, body, status, says in BAD:
        answer = web.request(method.upper(), API + path, content=body, headers=headers)
        case = (method, path, body, answer.status_code, answer.text)
        assert answer.status_code == status, case
        assert answer.headers["content-type"] == "application/json", case
        assert set(answer.json()) == {"error", "status"} and answer.json()["status"] == status, case
        assert "Traceback" not in answer.text and 'File "' not in answer.text, case
        if says is not None:
            assert says in answer.json()["error"], case


def test_a_viewer_lists_only_their_own_requests(api: tuple[Path, TestClient, dict[str, str]]) -> None:
    # A request's reason and recordings are for those who decide on it or audit it, and for its requester: the
    # API, the /access page and the dashboard list through one rule (custodes.access.requests(seen_by=)).
    _arch, web, tokens = api
    asked = {}
    for person in ("carol", "alice"):
        answer = web.post(f"{API}/access/requests", json={"segments": [1], "reason": f"asked by {person}"},
                          headers=bearer(tokens[person]))  # fmt: skip
        asked[person] = answer.json()["id"]

    def listed(person: str) -> set[int]:
        return {r["id"] for r in web.get(f"{API}/access/requests", headers=bearer(tokens[person])).json()["requests"]}

    assert listed("carol") == {asked["carol"]}
    assert listed("bob") == listed("dave") == set(asked.values())  # the approvers see them all
    carol = logged_in(web.app, "carol")
    page = carol.get("/").text + carol.get("/access").text
    assert "asked by carol" in page and "asked by alice" not in page


def test_a_catalog_another_command_holds_is_503_busy_not_an_internal_error(
    api: tuple[Path, TestClient, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read kept waiting past the catalog's busy timeout (a verify on a full disk holds the catalog whole until it
    ends) was answered 500, "internal error" (a hostile review): it is the server's condition, 503, and says so."""
    import sqlite3

    from custodes.web.context import BUSY

    arch, web, tokens = api
    db = tmp_path / "held.sqlite"
    holder, waiter = sqlite3.connect(db, isolation_level=None), sqlite3.connect(db, timeout=0)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        waiter.execute("SELECT * FROM t")
    except sqlite3.OperationalError as e:  # SQLite's own "database is locked", its code and all
        locked = e
    finally:
        holder.close()
        waiter.close()

    def held(*_args: Any, **_kwargs: Any) -> Any:
        raise locked

    monkeypatch.setattr(api_routes.query, "segments", held)
    monkeypatch.setattr(api_routes.query, "segment", held)
    answer = web.get(f"{API}/segments", headers=bearer(tokens["carol"]))
    assert (answer.status_code, answer.json()) == (503, {"error": BUSY, "status": 503})
    page = logged_in(web.app, "carol").get("/recordings/1")  # a page: the same, as a page says it
    assert page.status_code == 503 and BUSY.split(":")[0] in page.text, page.text
    # A full disk, as SQLite says it at an act's COMMIT: the server's condition too, named (a fourth review: 500).
    full = sqlite3.OperationalError("database or disk is full")

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise full

    monkeypatch.setattr(api_routes.query, "segments", refused)
    answer = web.get(f"{API}/segments", headers=bearer(tokens["carol"]))
    assert answer.status_code == 503 and answer.json()["error"].startswith("the disk is full ("), answer.text


def test_a_read_on_a_full_disk_leaves_the_catalog_to_the_next_command(tmp_path: Path) -> None:
    """On a full disk a read takes the catalog whole until it closes (catalog._alone_on_a_full_disk); the review
    page kept each thread's archive open, so after one API read every command of the service, verify included,
    waited 60 s and was told the catalog was busy, until a restart (a third hostile review). The page's archive is
    closed as its answer goes out; the next command reads at once."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        arch = build_cli_archive(disk / "archive", recordings=THREE_RECORDINGS[:1], volume=tmp_path / "BWC0001")
        with open_archive(arch) as a:
            add_own_account(a, "alice", PASSWORD)
            token = issue_token(a, "alice", "custodian", "tests")[1]
        fill(disk)
        web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)
        answer = web.get(f"{API}/segments", headers=bearer(token))
        assert answer.status_code == 200 and len(answer.json()["segments"]) == 1, answer.text
        started = time.monotonic()
        # An act in a request that has read: refused at once, naming the full disk (it waited 60 s on the
        # request's own read and said "busy").
        held = web.post(f"{API}/holds", json={"segment": 1, "reason": "court"}, headers=bearer(token))
        assert held.status_code == 503 and "the disk is full" in held.json()["error"], held.text
        assert time.monotonic() - started < 30
        out = run_cli("verify", arch, "--json")
        assert out.returncode == 0 and time.monotonic() - started < 30, out.stderr
        assert json.loads(out.stdout)["run"]["not_recorded"] == "the disk is full"


def test_the_review_page_of_another_account_s_archive_is_not_made(tmp_path: Path) -> None:
    """The review page runs in the archive's service, as its account. An app made by root on another account's
    archive made its accounts store (and, at a request, a bag's folder) root's, which the service could not read:
    every later `custodes user add` and export through it failed (a third hostile review). Refused at once now,
    and nothing is made."""
    from custodes.archive import ArchiveError

    arch = build_cli_archive(tmp_path / "archive", recordings=THREE_RECORDINGS[:1])
    (arch / "accounts.sqlite").unlink(missing_ok=True)
    subprocess.run(["chown", "-R", "custodes-svc:", str(arch)], check=True)
    with pytest.raises(ArchiveError, match="runs as root and the archive belongs to custodes-svc"):
        create_app(arch)
    assert not (arch / "accounts.sqlite").exists()
    assert [p for p in arch.rglob("*") if p.owner() == "root"] == []


def test_an_act_whose_checkpoint_file_cannot_be_written_is_answered_as_done(
    api: tuple[Path, TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold recorded, then its checkpoint's file refused (a full disk, a running service's catalog still
    writable): the API answered 409 and the page "refused" (400), and a person placed it again (a fourth hostile
    review). The API says it is recorded (202, ``recorded``: a 503 is retried by many clients, a fifth), the page
    goes back as after the act, saying so."""
    import custodes.archive

    arch, web, tokens = api

    def full(path: Path, *_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    page = logged_in(web.app, "alice")  # (a login is signed too)
    page.get("/lang/en?next=/")
    form = {"segment": "1", "reason": "court order 12", "back": "/recordings/1", "csrf": csrf_in(page.get("/").text)}
    monkeypatch.setattr(custodes.archive, "write_once", full)
    answer = web.post(f"{API}/holds", json={"segment": 1, "reason": "court"}, headers=bearer(tokens["alice"]))
    said = answer.json()
    assert (answer.status_code, said["status"], said.get("recorded")) == (202, 202, True), said
    assert "what this command recorded stands, so do not repeat an act" in said["warning"], said
    placed = page.post("/holds", data=form)
    assert (placed.status_code, placed.headers["location"]) == (303, "/recordings/1"), placed.text
    shown = page.get("/recordings/1").text
    assert "done and recorded in the ledger (do not do it again), but its checkpoint is not written" in shown, shown
    assert "No space left on device" in shown and "free space on the disk" in shown, shown
    monkeypatch.undo()
    assert len(catalog_rows(arch, "SELECT id FROM holds WHERE segment_id = 1")) == 2  # the two asked for, no more
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    assert run_cli("verify", arch).returncode == 0


def test_a_view_granted_whose_checkpoint_file_cannot_be_written_is_shown(
    api: tuple[Path, TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view logged as started (action ``stream``, allowed), then its checkpoint's file refused (a full disk): the
    page answered 400 "Bad request" and showed nothing, and each try logged another view, so the access log said
    a person saw footage she never got (a hostile review). What is granted and recorded is given."""
    from urllib.parse import unquote

    import custodes.archive

    arch, web, tokens = api
    bob = deciding(web.app, "bob")
    rid = web.post(f"{API}/access/requests", json={"segments": [1], "reason": "complaint 17", "purpose": "view"},
                   headers=bearer(tokens["carol"])).json()["id"]  # fmt: skip
    assert bob.post(f"{API}/access/requests/{rid}/approve", json={"hours": 2}).status_code == 200
    carol = logged_in(web.app, "carol")
    csrf = csrf_in(carol.get("/recordings/1").text)

    def full(path: Path, *_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(custodes.archive, "write_once", full)
    started = carol.post("/recordings/1/view", data={"request": str(rid), "csrf": csrf})
    assert started.status_code == 303 and "?view=" in started.headers["location"], started.text
    ticket = started.headers["location"].split("?view=")[1]
    # Said (silent, verify later called the missing file a rollback, and nobody had been told to sign it).
    assert "custodes ledger checkpoint" in unquote(carol.cookies.get("custodes_flash") or ""), carol.cookies
    played = carol.get(f"/stream/{ticket}")
    assert played.status_code == 200 and len(played.content) > 0
    monkeypatch.undo()
    views = catalog_rows(arch, "SELECT person, ok FROM access_log WHERE action = 'stream'")
    assert views == [("carol", 1)]  # one view, one entry
    assert run_cli("ledger", "checkpoint", arch).returncode == 0
    assert run_cli("verify", arch).returncode == 0
