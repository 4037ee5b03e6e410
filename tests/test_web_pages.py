"""The review page's recording, task, access and report pages and their forms (issue 19), through FastAPI's
TestClient (``https://testserver``, so the Secure cookie is sent) on real CLI-made archives, each person logged in
with a local account that the policy's [people] maps to their role (helpers.PEOPLE: alice custodian, bob and
dave approvers, carol viewer)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from custodes import query, retention
from custodes.access import requests
from custodes.archive import open_archive
from custodes.defaults import NS
from custodes.findings import rfc3339
from custodes.identity import acting_as
from custodes.reports import build_report
from custodes.tasks import Task, import_tasks, task_coverage
from custodes.web import create_app
from custodes.web.accounts import local_caller
from custodes.web.pages import FLASH_COOKIE
from helpers import THREE_RECORDINGS, build_cli_archive, copy_archive
from web_helpers import PASSWORD, add_own_account
from web_helpers import logged_in as _logged_in

PEOPLE = ("alice", "bob", "carol", "dave")
#: A name or note that would run a script if a page did not escape it (no "/": it is also a file name).
HOSTILE = "<img src=x onerror=\"alert('x')\">"
ESCAPED = str(escape(HOSTILE))


def logged_in(app: FastAPI, name: str, lang: str = "en") -> TestClient:
    """``name``'s browser asking for pages in ``lang`` (English: the flash messages these tests read; the
    Chinese page has its own tests)."""
    web = _logged_in(app, name)
    web.headers["accept-language"] = lang
    return web


def with_accounts(arch: Path) -> Path:
    with open_archive(arch) as a:  # the archive's owner, working on it directly (the tests run as root)
        for name in PEOPLE:
            add_own_account(a, name, PASSWORD)
    return arch


def csrf_of(web: TestClient, path: str = "/access") -> str:
    page = web.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def post(web: TestClient, path: str, **fields: object) -> object:
    return web.post(path, data={"csrf": csrf_of(web), **{k: str(v) for k, v in fields.items()}})


def flash(web: TestClient, answer: object, pattern: str) -> str:
    """The page a form answered 303 to, followed; its flash message must match ``pattern``."""
    assert answer.status_code == 303, answer.text  # type: ignore[attr-defined]
    assert FLASH_COOKIE in answer.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    page = web.get(answer.headers["location"])  # type: ignore[attr-defined]
    assert page.status_code == 200, page.text
    said = re.search(r'<p class="flash ok">(.*?)</p>', page.text, re.S)
    assert said is not None and re.search(pattern, unescape(said.group(1))), page.text
    return page.text


@pytest.fixture(scope="module")
def accounts_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive as ``cli_archive`` with PEOPLE's accounts, made once a module (their password hashes are a
    second of each test)."""
    return with_accounts(build_cli_archive(tmp_path_factory.mktemp("site") / "archive", recordings=THREE_RECORDINGS))


@pytest.fixture
def site(accounts_made: Path, tmp_path: Path) -> tuple[Path, FastAPI]:
    arch = copy_archive(accounts_made, tmp_path / "archive")
    return arch, create_app(arch)


def test_each_page_renders_on_a_real_archive(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    web = logged_in(app, "alice")
    with open_archive(arch) as a:
        seg = query.segment(a, 1)
        stored = a.catalog.objects.get(seg.sha256)
    assert stored is not None
    page = web.get("/recordings/1")
    assert page.status_code == 200, page.text
    for fact in (seg.name, seg.device, seg.sha256, str(seg.size), "/recordings/1/proof.json"):
        assert fact in unescape(page.text)
    for algorithm, digest in json.loads(stored.digests).items():
        assert algorithm in page.text and digest in page.text
    # the ledger entry that recorded it: its own entry, as the ledger holds it
    with open_archive(arch) as a:
        entry = json.loads(a.catalog.ledger.entry(seg.ledger_index) or b"{}")
    assert entry and f"{entry['type']}" in unescape(page.text)
    # no window open for alice: the page asks for one and has no player
    assert 'action="/access/request"' in page.text and "<video" not in page.text
    for path in ("/tasks", "/access", "/report"):
        assert web.get(path).status_code == 200, path
    missing = web.get("/recordings/999")
    assert missing.status_code == 404 and "no segment 999" in missing.text
    assert web.get("/tasks/nope").status_code == 404
    for path in ("/recordings/1", "/tasks", "/access", "/report"):  # nobody logged in: to the login page
        answer = TestClient(app, base_url="https://testserver", follow_redirects=False).get(
            path, headers={"accept": "text/html"}
        )
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_request_approve_deny_and_nobody_approves_their_own(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    carol, bob, dave = logged_in(app, "carol"), logged_in(app, "bob"), logged_in(app, "dave")
    text = flash(
        carol, post(carol, "/access/request", segments="1 3", reason="complaint 17", purpose="view"), r"request \d+"
    )
    with open_archive(arch) as a:
        (req,) = requests(a)
    assert req.requester == "carol" and req.segments == (1, 3) and req.status == "pending"
    assert f'id="request-{req.id}"' in text and f"/access/{req.id}/approve" not in text  # a viewer gets no form
    # the recording page: a pending request opens no window
    assert "<video" not in carol.get("/recordings/1").text
    # a viewer cannot approve: the library refuses, in its words, with 403
    refused = post(carol, f"/access/{req.id}/approve", hours="2", note="")
    assert refused.status_code == 403 and "carol is not an approver" in unescape(refused.text)  # type: ignore[attr-defined]
    # the approver sees the forms for carol's request, and none for a request of his own
    flash(bob, post(bob, "/access/request", segments="2", reason="training", purpose="view"), r"pending")
    with open_archive(arch) as a:
        own = max(r.id for r in requests(a))
    listed = bob.get("/access").text
    assert f"/access/{req.id}/approve" in listed and f"/access/{own}/approve" not in listed
    refused = post(bob, f"/access/{own}/approve", hours="2")
    assert refused.status_code == 403 and "nobody approves their own request" in unescape(refused.text)  # type: ignore[attr-defined]
    flash(bob, post(bob, f"/access/{req.id}/approve", hours="2", note="checked"), rf"request {req.id} approved until")
    flash(dave, post(dave, f"/access/{own}/deny", reason="no training case"), rf"request {own} denied")
    with open_archive(arch) as a:
        decided = {r.id: r for r in requests(a)}
    assert decided[req.id].status == "approved" and decided[req.id].decided_by == "bob"
    assert decided[own].status == "denied" and decided[own].decided_by == "dave"
    assert decided[req.id].valid_until is not None and decided[req.id].valid_from is not None
    assert decided[req.id].valid_until - decided[req.id].valid_from == 2 * 3600 * NS
    # a viewer sees their own requests only
    mine = carol.get("/access").text
    assert f'id="request-{req.id}"' in mine and f'id="request-{own}"' not in mine
    # with the window open, carol's recording page offers the player (a POST to STREAM's view route), not a form
    page = carol.get("/recordings/1").text
    assert 'action="/recordings/1/view"' in page and f'name="request" value="{req.id}"' in page
    assert 'action="/access/request"' not in page
    # not for a recording the request does not name, nor for another person
    assert 'action="/recordings/2/view"' not in carol.get("/recordings/2").text
    assert 'action="/recordings/1/view"' not in bob.get("/recordings/1").text
    # the ticket the view route sends the page back with plays in its <video>; anything else is never put in it
    ticket = "A" * 43
    video = carol.get(f"/recordings/1?view={ticket}").text
    assert f'<video controls preload="metadata" src="/stream/{ticket}">' in video
    assert "<video" not in carol.get('/recordings/1?view="><script>').text
    # a decision already made is not made again
    again = post(dave, f"/access/{req.id}/deny", reason="late")
    assert again.status_code == 400 and "already approved" in again.text  # type: ignore[attr-defined]


def test_forms_need_their_csrf_token(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    carol = logged_in(app, "carol")
    for path in ("/access/request", "/holds", "/tasks/T/explain", "/access/1/approve", "/holds/1/release"):
        answer = carol.post(path, data={"segments": "1", "reason": "x", "csrf": "forged"})
        assert answer.status_code == 403, path
        answer = carol.post(path, data={"segments": "1", "reason": "x"})
        assert answer.status_code == 403, path
    with open_archive(arch) as a:
        assert requests(a) == []


def test_bad_input_is_named_never_a_traceback(site: tuple[Path, FastAPI]) -> None:
    _, app = site
    alice = logged_in(app, "alice")
    for path, fields, pattern in (
        ("/access/request", {"segments": "1 x", "reason": "r"}, r"segments: 'x' is not an id"),
        ("/access/request", {"segments": "", "reason": "r"}, r"segments: name at least one"),
        ("/access/request", {"segments": "77", "reason": "r"}, r"no such segment\(s\): \[77\]"),
        ("/holds", {"segment": "1", "reason": ""}, r"reason: a hold says why"),
        ("/access/1/approve", {"hours": "nan"}, r"hours: 'nan' is not a number"),
    ):
        answer = post(alice, path, **fields)
        assert answer.status_code == 400, (path, answer.text)  # type: ignore[attr-defined]
        assert re.search(pattern, unescape(answer.text)), answer.text  # type: ignore[attr-defined]
        assert "Traceback" not in answer.text  # type: ignore[attr-defined]
    answer = alice.get("/report?start=yesterday")
    assert answer.status_code == 400 and "is not an RFC 3339 time" in unescape(answer.text)
    answer = alice.get("/report?scope=device")
    assert answer.status_code == 400 and "value: a device scope names the device's id" in unescape(answer.text)


def test_a_gap_explained_through_the_form_shows_in_coverage_and_the_ledger(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    with open_archive(arch) as a:
        seg = query.segment(a, 1)
        assert seg.start is not None and seg.end is not None
        task = Task("T-1", "patrol", seg.start - 120 * NS, seg.end + 120 * NS, (), (seg.device,))
        with acting_as(local_caller("alice")):
            import_tasks(a, [task])
        (before,) = task_coverage(a, ["T-1"])
    assert len(before.findings) == 2  # the two minutes before and after the recording
    alice, bob = logged_in(app, "alice"), logged_in(app, "bob")
    listed = alice.get("/tasks").text
    assert 'href="/tasks/T-1"' in listed
    page = alice.get("/tasks/T-1").text
    assert 'action="/tasks/T-1/explain"' in page
    a0, b0 = before.findings[0].start, before.findings[0].end
    assert a0 is not None and b0 is not None
    # the form comes filled in with the first gap nothing explains, on the task's device
    assert (
        f'name="start" required value="{rfc3339(a0)}"' in page and f'name="end" required value="{rfc3339(b0)}"' in page
    )
    assert f'<option value="{seg.device}">' in page
    fields = {"device": seg.device, "start": rfc3339(a0), "end": rfc3339(b0), "cause": "battery", "note": HOSTILE}
    text = flash(bob, post(bob, "/tasks/T-1/explain", **fields), r"annotation \d+ recorded")
    assert HOSTILE not in text and ESCAPED in text  # the note is shown, escaped
    with open_archive(arch) as a:
        (after,) = task_coverage(a, ["T-1"])
        annotations = [json.loads(e) for _, e in a.catalog.ledger.of_type("annotation")]
    assert len(after.findings) == 1 and after.explained[0]["cause"] == "battery"
    assert after.explained[0]["note"] == HOSTILE
    (entry,) = annotations
    assert entry["by"] == "bob" and entry["start"] == a0 and entry["end"] == b0 and entry["note"] == HOSTILE
    assert f"{entry['annotation']}" in text
    # a viewer may not explain gaps: the library refuses (and logs it)
    carol = logged_in(app, "carol")
    refused = post(carol, "/tasks/T-1/explain", **fields)
    assert refused.status_code == 403  # type: ignore[attr-defined]
    # a task the archive does not know is named, and nothing is recorded
    unknown = post(bob, "/tasks/T-9/explain", **fields)
    assert unknown.status_code == 400 and "no task 'T-9'" in unescape(unknown.text)  # type: ignore[attr-defined]
    with open_archive(arch) as a:
        assert len(a.catalog.ledger.of_type("annotation")) == 1
    # after it, the form offers the gap still unexplained
    b1 = before.findings[1].start
    assert b1 is not None and f'name="start" required value="{rfc3339(b1)}"' in alice.get("/tasks/T-1").text
    # a cause the law does not know is named
    bad = post(bob, "/tasks/T-1/explain", **(fields | {"cause": "lunch"}))
    assert bad.status_code == 400 and "unknown cause 'lunch'" in unescape(bad.text)  # type: ignore[attr-defined]


def test_hold_placed_and_released(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    alice, bob, carol = logged_in(app, "alice"), logged_in(app, "bob"), logged_in(app, "carol")
    refused = post(carol, "/holds", segment="2", reason="court order")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    text = flash(
        alice,
        post(alice, "/holds", segment="2", reason=HOSTILE, back="/recordings/2"),
        r"hold \d+ placed on recording 2",
    )
    with open_archive(arch) as a:
        (held,) = retention.status(a, [2])
    assert len(held.holds) == 1
    hold_id = held.holds[0]
    assert ESCAPED in text  # back on the recording's page, with its hold and the reason given
    # the custodian places holds; only an approver releases them (the library's rule): the form is the approver's
    assert ESCAPED in alice.get("/access").text and "/release" not in alice.get("/access").text + text
    assert f'action="/holds/{hold_id}/release"' in bob.get("/recordings/2").text
    assert f'action="/holds/{hold_id}/release"' in bob.get("/access").text
    refused = post(alice, f"/holds/{hold_id}/release")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    flash(bob, post(bob, f"/holds/{hold_id}/release"), rf"hold {hold_id} released")
    with open_archive(arch) as a:
        (released,) = retention.status(a, [2])
    assert released.holds == []
    gone = post(bob, f"/holds/{hold_id}/release")
    assert gone.status_code == 400 and f"no active hold {hold_id}" in gone.text  # type: ignore[attr-defined]
    # a back link to another site is not followed
    answer = post(alice, "/holds", segment="2", reason="r", back="//evil.example/")
    assert answer.status_code == 303 and answer.headers["location"] == "/access"  # type: ignore[attr-defined]


def test_exports_are_listed_for_their_person_with_the_download_and_the_form(
    site: tuple[Path, FastAPI], tmp_path: Path
) -> None:
    from custodes.export import export_case
    from custodes.retention import link_case

    arch, app = site
    with open_archive(arch) as a, acting_as(local_caller("alice")):
        link_case(a, "C-7", [1, 3], None)
    carol, bob = logged_in(app, "carol"), logged_in(app, "bob")
    flash(carol, post(carol, "/access/request", segments="1,3", reason="court", purpose="export"), r"pending")
    with open_archive(arch) as a:
        (req,) = requests(a)
    flash(bob, post(bob, f"/access/{req.id}/approve", hours="1"), "approved")
    page = carol.get("/access").text
    # the export form posts to the export route (custodes.web.streaming), with the fields it takes
    form = re.search(r'<form method="post" action="/exports">(.*?)</form>', page, re.S)
    assert form is not None
    assert all(f'name="{name}"' in form.group(1) for name in ("csrf", "case", "request", "description"))
    assert "/bag.tar" not in page  # nothing exported yet
    with open_archive(arch) as a, acting_as(local_caller("carol")):
        export_case(a, "C-7", req.id, tmp_path / "bag")
    with open_archive(arch) as a:
        ((index, _),) = a.catalog.ledger.of_type("export")
    page = carol.get("/access").text
    assert f'href="/exports/{index}/bag.tar"' in page and "C-7" in page
    assert "/bag.tar" not in bob.get("/access").text  # another person's export is not theirs to download


def _counts(html: str) -> list[tuple[str, int]]:
    return [(unescape(h), int(n)) for h, n in re.findall(r'<a class="count" href="([^"]+)">(\d+)</a>', html)]


def test_report_counts_equal_build_report_and_link_to_their_items(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    alice, carol = logged_in(app, "alice"), logged_in(app, "carol")
    from custodes.devices import parse_devices, register_devices

    with open_archive(arch) as a, acting_as(local_caller("alice")):  # a registry: the devices section counts
        device = query.segment(a, 1).device
        register_devices(a, parse_devices([{"id": device, "kind": "body_camera", "unit": "U-1"}], "test"))
    post(carol, "/holds", segment="1", reason="r")  # a refusal, for the access section to count
    flash(alice, post(alice, "/holds", segment="3", reason="case"), "hold")
    page = alice.get("/report?lang=en")
    assert page.status_code == 200, page.text
    with open_archive(arch) as a:
        model = build_report(a, lang="en")
    counts = _counts(page.text)
    assert len(counts) >= 20
    seen = set()
    for link, shown in counts:
        params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        section, count = params["section"], params["count"]
        if section == "concerns":
            expected = next(c["count"] for c in model["concerns"] if c["concern"] == count)
        elif section == "devices":
            unit = next(u for u in model["devices"]["units"] if (u["unit"] or "") == params.get("unit", ""))
            expected = unit[count]["count"]  # type: ignore[literal-required]
        else:
            expected = model[section][count]  # type: ignore[literal-required]
        assert shown == expected, (section, count)
        items = alice.get(link)
        assert items.status_code == 200, items.text
        rows = len(re.findall(r'<tr class="item">', items.text))
        total = re.search(r'<span id="total">(\d+)</span>', items.text)
        assert total is not None and int(total.group(1)) == rows
        if (section, count) == ("access", "refusals"):  # one finding may carry a count of refusals
            assert rows == sum(1 for f in model["findings"] if f["kind"] == "unapproved_access")
        else:
            assert rows == shown, (section, count, rows, shown)
        seen.add((section, count))
    # the counts the test set up are non-zero, and listed
    assert ("completeness", "segments") in seen and model["completeness"]["segments"] == 3
    assert ("devices", "unassigned") in seen and ("recording", "checks") in seen
    assert model["retention"]["held"] == 1 and model["access"]["refusals"] >= 1
    held = alice.get(next(link for link, _ in counts if "count=held" in link)).text
    assert 'href="/recordings/3"' in held
    # the period and scope narrow it, as build_report does
    scoped = alice.get(f"/report?scope=device&value={device}&lang=en")
    assert scoped.status_code == 200
    with open_archive(arch) as a:
        narrow = build_report(a, scope="device", value=device, lang="en")
    shown = dict(
        (re.search(r"count=(\w+)", h).group(1), n) for h, n in _counts(scoped.text) if "section=completeness" in h
    )  # type: ignore[union-attr]
    assert shown["segments"] == narrow["completeness"]["segments"]


def test_report_downloads_through_the_report_writers(site: tuple[Path, FastAPI]) -> None:
    arch, app = site
    alice = logged_in(app, "alice")
    answer = alice.get("/report/download?format=json&lang=en")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    got = answer.json()
    with open_archive(arch) as a:
        model = build_report(a, lang="en")
    assert got["completeness"] == json.loads(json.dumps(model["completeness"]))
    assert len(got["findings"]) == len(model["findings"])
    csv = alice.get("/report/download?format=csv&lang=en")
    assert csv.status_code == 200 and csv.content.startswith(b"\xef\xbb\xbfkind,severity")
    assert csv.content.count(b"\n") == len(model["findings"]) + 1
    pdf = alice.get("/report/download?format=pdf&lang=en")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    bad = alice.get("/report/download?format=xlsx")
    assert bad.status_code == 400 and "format: 'xlsx'" in unescape(bad.text)


def test_hostile_names_and_notes_are_escaped(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    from helpers import PEOPLE as POLICY_PEOPLE
    from helpers import THREE_RECORDINGS

    volume = tmp_path / "BWC&quot;<b>x"
    arch = make_cli_archive(
        people=POLICY_PEOPLE,
        recordings={f"{HOSTILE}.mp4": THREE_RECORDINGS[0]},
        volume=volume,
        ingest_exit=(0, 1),
        init_args=("--time-zone", "Asia/Shanghai"),
    )
    app = create_app(with_accounts(arch))
    alice, carol = logged_in(app, "alice"), logged_in(app, "carol")
    with open_archive(arch) as a:
        seg = query.segment(a, 1)
    assert seg.name.startswith(HOSTILE) and "<b>" in seg.device
    flash(carol, post(carol, "/access/request", segments="1", reason=HOSTILE), "pending")
    flash(alice, post(alice, "/holds", segment="1", reason=HOSTILE), "hold")
    for web, path in ((alice, "/recordings/1"), (alice, "/access"), (carol, "/access"), (alice, "/report")):
        text = web.get(path).text
        assert "<img" not in text and "<b>" not in text, path
    page = alice.get("/recordings/1").text
    # times in the archive's zone, with their offset; the UTC instant beside them for a machine
    assert seg.start is not None
    local = datetime.fromtimestamp(seg.start // NS, tz=ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<time datetime="{rfc3339(seg.start)}">{local} +0800</time>' in page
    assert f"{ESCAPED}.mp4" in page and "BWC&amp;quot;&lt;b&gt;x" in page
    assert page.count(ESCAPED) >= 2  # the file name, and the hold's reason
    assert alice.get("/access").text.count(ESCAPED) >= 2  # the request's reason, the hold's
    assert ESCAPED in carol.get("/access").text  # her request's reason
    items = alice.get(next(h for h, _ in _counts(alice.get("/report").text) if "count=segments" in h)).text
    assert "<img" not in items and f"{ESCAPED}.mp4" in items


def test_one_segment_and_every_request_from_the_library(cli_archive: Path) -> None:
    from custodes.query import QueryError

    with open_archive(cli_archive) as a:
        every = list(query.segments(a))
        assert [query.segment(a, s.id) for s in every] == every
        for wrong in (0, 4, -1, 2**63, True):
            with pytest.raises(QueryError, match="no segment"):
                query.segment(a, wrong)
        assert requests(a) == []
        with acting_as(local_caller("carol")):
            from custodes.access import request_access

            made = [request_access(a, [2], "first"), request_access(a, [1, 3], "second", "export")]
        assert requests(a) == made and [r.id for r in made] == sorted(r.id for r in made)
