"""The review page read in Chinese or in English (issue 19): every word a supervisor reads on it comes from the one
message catalogue (custodes.messages) in their language — what a form did (its flash message, times in the
archive's zone), their role, a finding's kind, severity and recording kind, the grounds a recording is kept on,
the report's scope and time — and no raw code (``late_ingest``, ``warning``, ``video``, ``archive``) or raw
RFC 3339 time is shown instead. Also the layout a reader trips on: the recording page's player and findings
before its ledger entry (folded), a task's uncovered interval said once, a window's end shown the same way twice.

A real archive: a GA/T 947 recorder's clips of 2024 (so each is a late ingest) in an archive whose devices'
zone is Asia/Shanghai, tasks imported by `custodes task import`, one recording linked to an open case."""

from __future__ import annotations

import re
from datetime import datetime
from html import unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from custodes import query, retention
from custodes.access import ROLES, requests
from custodes.archive import open_archive
from custodes.defaults import NS
from custodes.drivers import IDENTITY_KINDS, SEGMENT_KINDS
from custodes.findings import ARTICLES, Finding
from custodes.identity import Caller, acting_as
from custodes.messages import FINDING_KINDS, WEB
from custodes.reports import SCOPES
from custodes.tasks import task_coverage
from custodes.web import create_app
from helpers import PEOPLE_AND_ROOT, policy_text, run_cli, set_policy
from query_sql import TASKS, recorder
from web_helpers import PASSWORD, add_own_account
from web_helpers import logged_in as _logged_in

ZONE = ZoneInfo("Asia/Shanghai")
CASE = "C-7"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web-labels")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    policy = policy_text(arch).replace("[devices]\n", '[devices]\ntime_zone = "Asia/Shanghai"\n', 1)
    policy += PEOPLE_AND_ROOT
    assert set_policy(arch, policy).returncode == 0, policy
    vol = recorder(root, "BWCA", "001234", [0, 2, 4, 6, 8, 20, 22])
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1  # late_ingest: footage of 2024
    (root / "tasks.csv").write_text(TASKS)
    assert run_cli("task", "import", arch, root / "tasks.csv").returncode == 0
    with open_archive(arch) as a:
        for name in ("alice", "bob", "carol"):
            add_own_account(a, name, PASSWORD)
        with acting_as(Caller(uid=None, account="alice", via="tool")):
            retention.link_case(a, CASE, [2], None)
    return arch


def browser(arch: Path, name: str, lang: str) -> TestClient:
    web = _logged_in(create_app(arch), name)
    web.headers["accept-language"] = lang
    return web


def page(web: TestClient, path: str) -> str:
    answer = web.get(path)
    assert answer.status_code == 200, answer.text
    return answer.text


def post(web: TestClient, path: str, back: str = "/access", **fields: object) -> str:
    """A form sent from ``back``; the flash message of the page it answers to."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', page(web, back))
    assert csrf is not None
    answer = web.post(path, data={"csrf": csrf.group(1), **{k: str(v) for k, v in fields.items()}})
    assert answer.status_code == 303, answer.text
    said = re.search(r'<p class="flash ok">(.*?)</p>', page(web, answer.headers["location"]), re.S)
    assert said is not None
    return unescape(said.group(1))


def local(ns: int) -> str:
    """A time as every page shows it: in the archive's zone, with its offset."""
    return datetime.fromtimestamp(ns // NS, tz=ZONE).strftime("%Y-%m-%d %H:%M:%S %z")


def zh(key: str) -> str:
    return WEB[key][0]


def en(key: str) -> str:
    return WEB[key][1]


def test_every_code_a_page_shows_has_its_label() -> None:
    # the finding kinds: one label for one finding (not the report's plural section titles)
    assert set(ARTICLES) | {"access_request", "overdue_object"} <= set(FINDING_KINDS)
    assert FINDING_KINDS["late_ingest"][1] == "Late ingest"
    assert all(zh_ and en_ and zh_ != en_ for zh_, en_ in FINDING_KINDS.values())
    severities = {Finding(kind, "").severity for kind in ARTICLES} | {"warning"}
    codes = {"role_": ROLES, "severity_": severities, "media_": SEGMENT_KINDS, "scope_": SCOPES}
    codes["device_kind_"] = IDENTITY_KINDS
    codes["long_term_"] = retention.LONG_TERM_REASONS
    for prefix, values in codes.items():
        assert {f"{prefix}{v}" for v in values} <= set(WEB), prefix


def test_the_role_in_the_header_is_labelled(site: Path) -> None:
    assert f"({zh('role_viewer')})" in page(browser(site, "carol", "zh"), "/")
    chinese = page(browser(site, "alice", "zh"), "/")
    assert f"({zh('role_custodian')})" in chinese and "(custodian)" not in chinese
    assert f"({en('role_approver')})" in page(browser(site, "bob", "en"), "/")


def test_the_recording_page_labels_its_codes_and_puts_the_ledger_entry_last(site: Path) -> None:
    with open_archive(site) as a:
        (late,) = [f for f in query.findings(a, device="BWCA") if f.kind == "late_ingest" and f.segment == 2]
        seg = query.segment(a, 2)
        (kept,) = retention.status(a, [2])
    days = kept.grounds[0].value
    assert seg.kind == "video" and late.severity == "warning" and kept.grounds[-1].value == CASE
    chinese = page(browser(site, "carol", "zh"), "/recordings/2")
    for shown in (FINDING_KINDS["late_ingest"][0], zh("severity_warning"), zh("media_video")):
        assert f"<td>{shown}</td>" in chinese
    assert zh("keep_minimum").format(days=days) in chinese and zh("keep_case_open").format(case=CASE) in chinese
    raw = ("late_ingest", "warning", "video", "minimum", "(open)")
    body = chinese.split("<details", 1)[0]  # the ledger entry holds its own codes, as the ledger does
    assert not [code for code in raw if code in body]
    english = page(browser(site, "carol", "en"), "/recordings/2")
    assert "<td>Late ingest</td>" in english and "<td>warning</td>" in english and "<td>video</td>" in english
    assert f"minimum {days} days; case {CASE} (open)" in english
    # what a person came for first: the facts, the player (here: the form to request access), the findings;
    # the ledger entry last, folded, pretty-printed
    order = [chinese.index(f"<h2>{WEB[key][0]}") for key in ("facts", "player", "findings", "holds")]
    order.append(chinese.index("<h2>账本条目"))
    assert order == sorted(order) and chinese.index('action="/access/request"') < order[2]
    details = chinese[chinese.index("<details") :]
    assert re.match(r'<details class="entry">\s*<summary>[^<]+</summary>\s*<pre class="entry">\{\n  &#34;', details)


def test_flash_messages_are_in_the_visitors_language_with_local_times(site: Path) -> None:
    carol, bob = browser(site, "carol", "zh"), browser(site, "bob", "zh")
    said = post(carol, "/access/request", segments="1 3", reason="投诉 17", purpose="view")
    with open_archive(site) as a:
        asked = requests(a)[-1]
    assert said == f"调阅申请 {asked.id} 已提交，待审批（查看：投诉 17）"
    said = post(bob, f"/access/{asked.id}/approve", hours="2")
    with open_archive(site) as a:
        (approved,) = [r for r in requests(a) if r.id == asked.id]
    assert approved.valid_until is not None
    assert said == f"调阅申请 {asked.id} 已批准，有效期至 {local(approved.valid_until)}"
    assert "+0800" in said and not re.search(r"\d{4}-\d\d-\d\dT", said)  # not RFC 3339 UTC
    said = post(browser(site, "alice", "zh"), "/holds", segment="3", reason="案件")
    with open_archive(site) as a:
        (hold,) = retention.status(a, [3])[0].holds
    assert said == f"已对录像 3 设置保全 {hold}"
    assert post(bob, f"/holds/{hold}/release") == f"保全 {hold} 已解除"
    english = browser(site, "carol", "en")
    said = post(english, "/access/request", segments="1", reason="court", purpose="export")
    assert re.fullmatch(r"request \d+ pending \(export: court\)", said)
    with open_archive(site) as a:
        denied = requests(a)[-1].id
    assert post(browser(site, "bob", "en"), f"/access/{denied}/deny", reason="no case") == f"request {denied} denied"


def test_a_gap_explained_is_said_in_chinese(site: Path) -> None:
    with open_archive(site) as a:
        (cov,) = task_coverage(a, ["T2"])
    a_, b_ = cov.uncovered[0]
    start, end = (datetime.fromtimestamp(t // NS, tz=ZONE).isoformat() for t in (a_, -(-b_ // NS) * NS))
    fields = {"device": "BWCA", "start": start, "end": end, "cause": "battery", "note": "电池耗尽"}
    said = post(browser(site, "bob", "zh"), "/tasks/T2/explain", back="/tasks/T2", **fields)
    assert re.fullmatch(r"已记录中断说明（说明记录 \d+）", said)


def test_the_report_labels_its_scope_and_shows_its_time_in_the_archives_zone(site: Path) -> None:
    chinese = page(browser(site, "carol", "zh"), "/report?lang=zh")
    for scope in SCOPES:
        assert f'<option value="{scope}"' in chinese and f">{scope}</option>" not in chinese
    assert f">{zh('scope_archive')}</option>" in chinese and f"<td>{zh('scope_archive')} </td>" in chinese
    generated = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', chinese)
    assert generated is not None and generated.group(1).endswith("Z")
    assert generated.group(2).endswith("+0800") and generated.group(1) not in generated.group(2)
    english = page(browser(site, "carol", "en"), "/report?lang=en")
    assert f">{en('scope_device')}</option>" in english


def test_a_late_ingest_item_is_one_late_ingest(site: Path) -> None:
    late = FINDING_KINDS["late_ingest"]
    english = page(browser(site, "carol", "en"), "/")
    assert f"<strong>{late[1]}</strong>" in english and "<strong>Late ingests</strong>" not in english
    assert f"<strong>{late[0]}</strong>" in page(browser(site, "carol", "zh"), "/")
    device = page(browser(site, "carol", "en"), "/devices/BWCA")
    assert "body camera" in device and "body_camera" not in device
    assert "<td>执法记录仪</td>" in page(browser(site, "carol", "zh"), "/devices")
    assert f"<td>{late[1]}</td>" in device and "<td>Late ingests</td>" not in device


def test_a_tasks_uncovered_interval_is_said_once(site: Path) -> None:
    with open_archive(site) as a:
        (cov,) = task_coverage(a, ["T1"])
    assert cov.uncovered and cov.findings
    text = page(browser(site, "carol", "en"), "/tasks/T1")
    table = text[text.index('<table class="gaps">') : text.index("</table>", text.index('<table class="gaps">'))]
    for a_, b_ in cov.uncovered:
        assert table.count(local(a_)) == 1 and table.count(local(b_)) == 1
    wholly = [
        (a_, b_) for a_, b_ in cov.uncovered if [(f.start, f.end) for f in cov.findings if f.start == a_] == [(a_, b_)]
    ]
    assert table.count(en("wholly_unexplained")) == len(wholly) > 0


def test_the_window_heading_and_its_form_show_the_same_end(site: Path) -> None:
    text = page(browser(site, "carol", "en"), "/devices/BWCA")
    start_field = re.search(r'name="start" step="1" value="([^"]+)"', text)
    end_field = re.search(r'name="end" step="1" value="([^"]+)"', text)
    heading = re.search(r'<span class="muted">([^<]+) – ([^<]+)</span></h2>', text)
    assert start_field is not None and end_field is not None and heading is not None
    assert (heading.group(1), heading.group(2)) == (
        start_field.group(1).replace("T", " "),
        end_field.group(1).replace("T", " "),
    )
    with open_archive(site) as a:
        last = max(s.end for s in query.segments(a) if s.end is not None)
    # the window ends at the last recording's end; shown rounded up to the second, so the form sent again holds it
    assert heading.group(2) >= datetime.fromtimestamp(last / NS, tz=ZONE).strftime("%Y-%m-%d %H:%M:%S")


def test_the_items_of_a_report_count_are_headed_by_its_label(site: Path) -> None:
    chinese = page(browser(site, "carol", "zh"), "/report?lang=zh")
    link = re.search(r'href="(/report/items\?[^"]*count=late_ingest[^"]*)"', chinese)
    assert link is not None
    items = page(browser(site, "carol", "zh"), unescape(link.group(1)))
    heading = re.search(r"<h1>([^<]+)</h1>", items)
    assert heading is not None and heading.group(1) == "及时存储 · 超时导入"  # the section's and the count's labels
    assert "<td>超时导入</td>" in items and "late_ingest" not in heading.group(1)
