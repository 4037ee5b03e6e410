"""The review page's views (issue 19): the dashboard of what needs a person and the SVG time line, on a real
archive (GA/T 947 recorders made with ffmpeg, real footage, one file cut short, a device named like markup, tasks
imported by `custodes task import`): the dashboard names exactly what the report and the query API name, and the
picture is well-formed XML with one element per recording and every name inert."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from custodes import access, retention
from custodes.archive import Archive, open_archive
from custodes.identity import Caller, acting_as
from custodes.reports import build_report
from custodes.web import create_app
from custodes.web.accounts import list_accounts
from custodes.web.dashboard import CLOCK_FAULTS, DAMAGED, KINDS, needs_a_person
from custodes.web.svg import COLOURS, Mark, Span, Timeline, timeline_of, timeline_svg
from helpers import FOOTAGE, PEOPLE_AND_ROOT, policy_text, run_cli, set_policy
from query_sql import T0_NS, TASKS, S, recorder
from web_helpers import PASSWORD, add_own_account

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>"onload=x'
DAY = 86_400 * S


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorders (BWCA: 0-9 s and 20-23 s; BWCB: 0-3 s and 14-23 s, a low battery logged), a volume of real
    footage (a clip without a clock, two files cut short) whose device is named like markup, and tasks T1-T3."""
    root = tmp_path_factory.mktemp("web-views")
    arch = root / "archive"
    assert run_cli("init", arch).returncode == 0
    assert set_policy(arch, policy_text(arch) + PEOPLE_AND_ROOT).returncode == 0  # root: a custodian
    for vol in (
        recorder(root, "BWCA", "001234", [0, 2, 4, 6, 8, 20, 22]),
        recorder(root, "BWCB", "005678", [0, 2, 14, 16, 18, 20, 22], events="2024-03-01 18:00:03 battery_low 5%\n"),
    ):
        assert run_cli("ingest", vol, "--archive", arch).returncode == 1  # late_ingest: footage of 2024
    hostile = root / HOSTILE
    hostile.mkdir()
    for src in (
        FOOTAGE / "encoders" / "androidx-sample.mp4",
        FOOTAGE / "encoders" / "go-mp4-sample.mp4",  # no creation time: clock_unset
        FOOTAGE / "broken" / "sample_mdat_too_long.mp4",  # truncated
        FOOTAGE / "broken" / "large_stbl_truncated_after_moov.m4b",
    ):
        shutil.copy(src, hostile / src.name)
    assert run_cli("ingest", hostile, "--archive", arch, "--driver", "generic").returncode == 1
    (root / "tasks.csv").write_text(TASKS)
    assert run_cli("task", "import", arch, root / "tasks.csv").returncode == 0
    return arch


@pytest.fixture
def arch(reviewed: Path) -> Iterator[Archive]:
    with open_archive(reviewed) as a:
        yield a


def as_person(account: str) -> Caller:
    return Caller(uid=None, account=account, via="tool")


def _report(a: Archive, **kw: object):
    return build_report(a, sections=("integrity", "completeness", "clocks", "timeliness", "retention", "access",
                                      "concerns", "findings"), **kw)  # fmt: skip


def test_dashboard_names_what_the_report_and_query_api_name(arch: Archive) -> None:
    board = needs_a_person(arch)
    assert [s.name for s in board.sections] == list(KINDS)
    report = _report(arch)
    queried = list(arch.findings())

    gaps = board.section("task_gaps")
    assert gaps.count == report["completeness"]["unexplained_gaps_in_tasks"] == 1  # T1, T3: the battery explains
    assert {(i.task, i.start, i.end) for i in gaps.items} == {
        (f.task, f.start, f.end) for f in queried if f.kind == "gap_unexplained"
    }
    (t2,) = gaps.items
    assert (t2.task, t2.device) == ("T2", "BWCA")  # one device: the page links it

    late = board.section("late_ingests")
    assert late.count == report["timeliness"]["late_ingest"] > 0
    assert sorted(i.segment for i in late.items) == sorted(f.segment for f in queried if f.kind == "late_ingest")

    clocks = board.section("clock_faults")
    open_clock = [f for f in report["findings"] if f["kind"] in CLOCK_FAULTS and not f.get("resolved_by")]
    assert report["clocks"]["name_time_mismatch"] == 0  # so the open ones are the report's count
    assert clocks.count == len(open_clock) == report["clocks"]["clock_findings_open"] > 0
    assert sorted(i.segment for i in clocks.items) == sorted(f["segment"] for f in open_clock)
    assert {i.device for i in clocks.items} == {HOSTILE}

    damaged = board.section("damaged")
    concern = next(c for c in report["concerns"] if c["concern"] == "concern_damaged")
    assert damaged.count == concern["count"] > 0
    assert sorted(i.segment for i in damaged.items) == sorted(
        f.segment for f in queried if f.kind in DAMAGED and f.segment is not None
    )
    assert board.section("access_requests").count == 0 and board.section("holds").count == 0


def test_dashboard_requests_and_holds_come_and_go(reviewed: Path) -> None:
    with open_archive(reviewed) as a:
        with acting_as(as_person("carol")):
            req = access.request_access(a, [3], "complaint review")
        with acting_as(as_person("alice")):
            hold = retention.hold(a, 5, "litigation")
        board = needs_a_person(a)
        report = _report(a)
        (pending,) = board.section("access_requests").items
        acc = report["access"]
        assert (pending.request, pending.segment) == (req.id, 3)
        assert acc["requests"] - acc["approved"] - acc["denied"] == 1
        (held,) = board.section("holds").items
        assert (held.hold, held.segment) == (hold, 5) and report["retention"]["held"] == 1
        with acting_as(as_person("bob")):
            access.approve(a, req.id)
            retention.release(a, hold)
        board = needs_a_person(a)
        assert board.section("access_requests").count == 0 and board.section("holds").count == 0


def test_dashboard_overdue_objects_are_the_reports(arch: Archive) -> None:
    assert needs_a_person(arch).section("overdue").count == 0  # just stored: none due
    later = T0_NS + 40 * 365 * DAY  # long past any verification window
    overdue = needs_a_person(arch, now=later).section("overdue")
    verification = _report(arch, at=later)["integrity"]["verification"]
    assert overdue.count == verification["overdue"] > 0
    assert [i.object for i in overdue.items] == [o["object"] for o in verification["overdue_objects"]]
    assert all(isinstance(i.segment, int) for i in overdue.items)  # each links to a recording of its bytes


def test_dashboard_lists_at_most_the_limit_and_counts_all(arch: Archive) -> None:
    full = needs_a_person(arch).section("late_ingests")
    short = needs_a_person(arch, limit=2).section("late_ingests")
    assert short.count == full.count > 2 and len(short.items) == 2 and short.more == full.count - 2
    assert short.items == full.items[:2]
    with pytest.raises(ValueError, match="limit"):
        needs_a_person(arch, limit=-1)


def _parsed(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed, or this raises
    assert root.tag == f"{SVG}svg"
    for el in root.iter():
        assert "style" not in el.attrib and not el.tag.endswith("script") and not el.tag.endswith("foreignObject")
        for name, value in el.attrib.items():
            assert not name.startswith("on"), (el.tag, name)
            if name == "href":
                assert value.startswith("/") and not value.startswith("//"), value
    return root


def _rects(root: ET.Element, fill: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("fill") == fill]


def test_device_time_line(arch: Archive) -> None:
    lo, hi = T0_NS - 5 * S, T0_NS + 30 * S
    line = timeline_of(arch, device="BWCA", start=lo, end=hi)
    segments = list(arch.segments(device="BWCA", start=lo, end=hi))
    root = _parsed(timeline_svg(line, zone=timezone(timedelta(hours=8))))
    recorded = _rects(root, COLOURS["recorded"])
    assert len(recorded) == len(segments) == 7
    links = {a.get("href") for a in root.iter(f"{SVG}a")}
    assert {f"/recordings/{s.id}" for s in segments} <= links
    assert {"/tasks/T1", "/tasks/T2"} <= links  # its tasks' windows (T3 is BWCB's alone)
    assert "/tasks/T3" not in links
    # T2's unexplained 10-20 s, on the task row, linking to T2; the device's own gap (9-20 s), no cause: unexplained
    task_gaps = [r for r in _rects(root, COLOURS["unexplained"]) if float(r.get("y", 0)) < 20]
    assert task_gaps and len(_rects(root, COLOURS["unexplained"])) > len(task_gaps)
    assert not _rects(root, COLOURS["explained"])


def test_officer_time_line_and_explained_gap(arch: Archive) -> None:
    lo, hi = T0_NS - 5 * S, T0_NS + 30 * S
    mine = timeline_of(arch, officer="005678", start=lo, end=hi)
    assert len(mine.recorded) == len(list(arch.segments(officer="005678", start=lo, end=hi))) == 7
    # BWCB's gap after its battery_low event at 3 s is explained by it (custodes.tasks.Explanations)
    assert mine.explained and all("battery" in s.label for s in mine.explained)
    root = _parsed(timeline_svg(mine))
    assert len(_rects(root, COLOURS["explained"])) == len(mine.explained)
    with pytest.raises(Exception, match="no officer"):
        timeline_of(arch, officer="nobody", start=lo, end=hi)


def test_hostile_device_name_is_inert(arch: Archive) -> None:
    line = timeline_of(arch, device=HOSTILE, start=0, end=T0_NS + DAY)
    svg = timeline_svg(line)
    assert "<script" not in svg and "&lt;script&gt;" in svg  # as text; no attribute onload (_parsed)
    root = _parsed(svg)
    assert root.get("aria-label") == HOSTILE and root.find(f"{SVG}title").text == HOSTILE  # the name, as text
    # its two timed recordings overlap (an overlap finding): one run on the line, linked to the window it covers
    assert len(line.recorded) == 2
    (run,) = _rects(root, COLOURS["recorded"])
    assert HOSTILE in run.find(f"{SVG}title").text
    zoomed = _parsed(timeline_svg(line, zoom=lambda a, b: f"/devices/x?start={a}&end={b}"))
    assert [a.get("href")[:17] for a in zoomed.iter(f"{SVG}a")] == ["/devices/x?start="] * 1


def test_axis_in_the_archive_zone_and_bounded_size() -> None:
    lo = T0_NS  # 2024-03-01 10:00 UTC, 18:00 in Beijing
    line = Timeline("x", lo, lo + 2 * 3600 * S)
    labels = {t.text for t in _parsed(timeline_svg(line, zone=timezone(timedelta(hours=8)))).iter(f"{SVG}text")}
    assert {"18:00", "18:30", "19:00"} <= labels
    assert {"10:00", "11:00"} <= {t.text for t in _parsed(timeline_svg(line, zone=UTC)).iter(f"{SVG}text")}
    # 10^5 recordings a millisecond apart in two hours: drawn as a few runs, linked to the window each covers
    many = Timeline(
        "busy",
        lo,
        lo + 2 * 3600 * S,
        recorded=[
            Span(lo + i * S // 20, lo + i * S // 20 + S // 40, f"/recordings/{i}", f"r{i}") for i in range(10**5)
        ],
        corrections=[Mark(lo + i * S, f"/recordings/{i}", "moved") for i in range(0, 7200, 2)],
    )
    svg = timeline_svg(many, width=800, zoom=lambda a, b: f"/devices/x?start={a}&end={b}")
    root = _parsed(svg)
    assert len(_rects(root, COLOURS["recorded"])) <= 400 and len(list(root.iter(f"{SVG}polygon"))) <= 800 // 6 + 1
    assert all(a.get("href", "").startswith("/devices/x?start=") for a in root.iter(f"{SVG}a"))
    assert len(svg) < 200_000
    with pytest.raises(ValueError, match="end after"):
        timeline_svg(Timeline("x", lo, lo))


def test_only_paths_on_this_server_are_linked() -> None:
    line = Timeline(
        "x", 0, 10 * S, recorded=[Span(S, 2 * S, "javascript:alert(1)", "a"), Span(4 * S, 5 * S, "//evil/x", "b")]
    )
    root = _parsed(timeline_svg(line))
    assert not list(root.iter(f"{SVG}a")) and len(_rects(root, COLOURS["recorded"])) == 2


# ---- the routes (custodes.web.views), through FastAPI's TestClient as a logged-in person ----------------------


def _web(arch: Path, account: str) -> TestClient:
    """A client logged in as ``account`` (a local account made here, as the archive's owner would)."""
    with open_archive(arch) as a:
        if account not in {row.name for row in list_accounts(a)}:
            add_own_account(a, account, PASSWORD)
    web = TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)
    form = web.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text
    answer = web.post("/login", data={"name": account, "password": PASSWORD, "csrf": csrf.group(1), "next": "/"})
    assert answer.status_code == 303, answer.text
    return web


def _picture(page: str) -> ET.Element:
    """The page's time line (the legend's swatches are SVG too, without a namespace of their own)."""
    found = re.search(r'<svg xmlns="http://www.w3.org/2000/svg".*?</svg>', page, re.S)
    assert found is not None
    return _parsed(found.group(0))


def _inert(page: str) -> None:
    """What the CSP and the escaping promise of every page: no script, no inline style, no hostile name raw."""
    assert "<script" not in page and "style=" not in page and HOSTILE not in page


def test_pages_need_a_login(reviewed: Path) -> None:
    web = TestClient(create_app(reviewed), base_url="https://testserver", follow_redirects=False)
    for path in ("/", "/devices", "/devices/BWCA", "/officers/005678"):
        answer = web.get(path, headers={"accept": "text/html"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path


def test_dashboard_page(reviewed: Path, arch: Archive) -> None:
    web = _web(reviewed, "carol")  # a viewer: the dashboard is a read
    page = web.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200
    _inert(page.text)
    board = needs_a_person(arch)
    assert "执法任务中未说明的中断" in page.text  # Chinese unless the visitor asks for English
    assert 'href="/tasks/T2"' in page.text
    for item in board.section("clock_faults").items + board.section("damaged").items:
        assert f'href="/recordings/{item.segment}"' in page.text
    assert f'href="/devices/{quote(HOSTILE, safe="")}"' in page.text and "&lt;script&gt;" in page.text
    for s in board.sections:  # each section's count, as needs_a_person counts it
        assert re.search(rf'id="{s.name}">\s*<h2>[^<]*<span class="muted">\({s.count}\)</span>', page.text), s.name
    assert web.get("/lang/en", params={"next": "/"}).status_code in (302, 303)  # the visitor's choice, kept
    english = web.get("/", headers={"accept": "text/html"})
    assert "Unexplained gaps inside tasks" in english.text and "执法任务中未说明的中断" not in english.text


def test_devices_page(reviewed: Path, arch: Archive) -> None:
    page = _web(reviewed, "carol").get("/devices", headers={"accept": "text/html"})
    assert page.status_code == 200
    _inert(page.text)
    for d in arch.devices():
        assert f'href="/devices/{quote(d.id, safe="")}"' in page.text


def test_device_page_time_line_recordings_and_findings(reviewed: Path, arch: Archive) -> None:
    web = _web(reviewed, "carol")
    page = web.get("/devices/BWCA", headers={"accept": "text/html"})  # the last seven days with recordings
    assert page.status_code == 200
    _inert(page.text)
    segments = list(arch.segments(device="BWCA"))
    for s in segments:  # each in the list of recordings
        assert f'href="/recordings/{s.id}"' in page.text
    found = list(arch.findings(device="BWCA"))
    assert {"late_ingest", "gap", "gap_unexplained"} <= {f.kind for f in found}
    assert all(f.message in page.text for f in found) and "/tasks/T2" in page.text  # its findings, listed
    # Seven days on 960 pixels: its 24 s of recordings are one run, linked to the window it covers, where each
    # recording is its own rectangle linked to its page.
    picture = _picture(page.text)
    (run,) = _rects(picture, COLOURS["recorded"])
    # The default window runs on past the last recording, which stands inside the picture, clear of its right
    # edge: a window ending at the last recording drew a short one as a pixel under the border.
    right = float(run.get("x", 0)) + float(run.get("width", 0))
    assert right < 0.97 * float(picture.get("viewBox", "0 0 0 0").split()[2])
    (zoom,) = [a.get("href") for a in picture.iter(f"{SVG}a") if a.find(f"{SVG}rect") is run]
    assert zoom.startswith("/devices/BWCA?start=")
    closer = _picture(web.get(zoom, headers={"accept": "text/html"}).text)
    assert len(_rects(closer, COLOURS["recorded"])) == len(segments) == 7
    assert {f"/recordings/{s.id}" for s in segments} | {"/tasks/T2"} <= {a.get("href") for a in closer.iter(f"{SVG}a")}
    # a window of its own, in UTC here: the recordings that overlap it, and no other
    lo, hi = "2024-03-01T10:00:15Z", "2024-03-01T10:00:30Z"
    narrow = web.get("/devices/BWCA", params={"start": lo, "end": hi}, headers={"accept": "text/html"})
    inside = list(arch.segments(device="BWCA", start=T0_NS + 15 * S, end=T0_NS + 30 * S))
    assert len(_rects(_picture(narrow.text), COLOURS["recorded"])) == len(inside) == 2
    by_ns = web.get("/devices/BWCA", params={"start": T0_NS + 15 * S, "end": T0_NS + 30 * S})
    assert len(_rects(_picture(by_ns.text), COLOURS["recorded"])) == 2


def test_hostile_device_page_is_escaped(reviewed: Path) -> None:
    page = _web(reviewed, "carol").get(f"/devices/{quote(HOSTILE, safe='')}", headers={"accept": "text/html"})
    assert page.status_code == 200
    _inert(page.text)
    assert "&lt;script&gt;&#34;onload=x" in page.text  # the name, shown as text
    _picture(page.text)


def test_officer_page(reviewed: Path, arch: Archive) -> None:
    page = _web(reviewed, "carol").get("/officers/005678", headers={"accept": "text/html"})
    assert page.status_code == 200
    _inert(page.text)
    theirs = list(arch.segments(officer="005678"))
    assert len(theirs) == 7 and all(s.device == "BWCB" for s in theirs)
    assert all(f'href="/recordings/{s.id}"' in page.text for s in theirs)
    picture = _picture(page.text)
    (run,) = _rects(picture, COLOURS["recorded"])  # a week: one run, as on the device's page
    zoom = next(a.get("href") for a in picture.iter(f"{SVG}a") if a.find(f"{SVG}rect") is run)
    closer = _picture(_web(reviewed, "carol").get(zoom, headers={"accept": "text/html"}).text)
    assert len(_rects(closer, COLOURS["recorded"])) == 7
    assert len(_rects(closer, COLOURS["explained"])) >= 1  # its gap after the low battery, explained by it


def test_bad_requests_are_pages_that_name_the_thing(reviewed: Path) -> None:
    web = _web(reviewed, "carol")
    html = {"accept": "text/html"}
    missing = web.get("/devices/NOPE", headers=html)
    assert missing.status_code == 404 and "NOPE" in missing.text and "Traceback" not in missing.text
    assert web.get("/officers/nobody", headers=html).status_code == 404
    bad = web.get("/devices/BWCA", params={"start": "yesterday"}, headers=html)
    assert bad.status_code == 400 and "start=" in bad.text and "Traceback" not in bad.text
    backwards = web.get("/devices/BWCA", params={"start": T0_NS, "end": T0_NS - S}, headers=html)
    assert backwards.status_code == 400


def test_long_lists_show_their_first_rows(reviewed: Path, arch: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    from custodes.web import views

    monkeypatch.setattr(views, "LISTED", 3)
    page = _web(reviewed, "carol").get("/devices/BWCA", headers={"accept": "text/html"}).text
    shown = [s.id for s in arch.segments(device="BWCA")][:3]
    rows = re.findall(r'<td><a href="/recordings/(\d+)">', page)
    assert rows == [str(i) for i in shown]  # the first three recordings, not the fourth
    assert page.count("仅显示前 3 项") == 2  # under the recordings and under the findings
