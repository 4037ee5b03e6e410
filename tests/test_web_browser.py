"""The review page in a real browser (issue 19, "Must show"): Debian's Chromium driven by Playwright against a real
``custodes serve ARCHIVE --http 127.0.0.1:PORT`` process, run as root on a root-owned archive made through the CLI
with real footage, its local accounts made with ``custodes user add --password-stdin``.

carol (viewer) logs in, sees the dashboard, follows a finding to its recording and asks to view it; bob (approver,
in a second browser context: his own cookies) approves; carol plays the video, downloads the recording's inclusion
proof (verified offline against the archive's verifier key) and exports a case (an approved export request, the
bag downloaded, untarred and validated with bagit-python). All along: no request leaves the server, no console
error and no Content-Security-Policy violation; the language switch shows Chinese labels. Each page is saved as a
screenshot in the test's folder and its path printed.

One archive and one server for the module; the server is stopped by its pid at the end, every wait bounded.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from custodes import proofs, query
from custodes.archive import open_archive
from custodes.findings import rfc3339
from custodes.messages import label
from custodes.web.svg import COLOURS
from helpers import THREE_RECORDINGS, build_cli_archive, run_cli
from web_helpers import ONE_TIME, PASSWORD, free_port, own_password, start_service, stop_service_by_pid, wait_listening

CHROMIUM = Path("/usr/bin/chromium")
#: The custody people, root a custodian too: the archive's owner imports tasks and links the case through the CLI.
POLICY = """
[people]
alice = "custodian"
bob = "approver"
carol = "viewer"
root = "custodian"

[access]
window_hours = 72
"""
CASE = "C-7"
#: For each recording drawn on the page's time line (a rect of the given fill): whether a person sees it, i.e. it
#: lies inside the picture and is what the browser finds at its (visible) right end, not something drawn over it.
RECORDINGS_SEEN = """(fill) => {
  const svg = document.querySelector("svg.timeline"), box = svg.getBoundingClientRect();
  return [...svg.querySelectorAll(`rect[fill="${fill}"]`)].map((r) => {
    const b = r.getBoundingClientRect();
    const x = Math.min(b.right, box.right) - 0.5, y = b.top + b.height / 2;
    return b.left < box.right - 0.5 && document.elementFromPoint(x, y) === r;
  });
}"""
#: The mean brightness (0-255) of the player's current frame, drawn small on a canvas (same origin: readable).
FRAME_BRIGHTNESS = """() => {
  const v = document.querySelector("video"), c = document.createElement("canvas");
  c.width = 64; c.height = 36;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
  return sum / (d.length / 4) / 3;
}"""
#: Every wait on the browser or the server, in milliseconds (Playwright) or seconds.
WAIT_MS = 15_000


@dataclass
class Site:
    """The served archive: its folder, the server's base URL, the task, recording and device the flow visits."""

    archive: Path
    url: str
    task: str
    recording: int
    device: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A CLI-made archive (three real recordings; androidx-sample.mp4, H.264 in MP4, is recording 1 and a late
    ingest), a task around recording 1 (so it has uncovered stretches), case C-7 linking recordings 1 and 3,
    accounts alice, bob and carol, served over HTTP on a free loopback port until the module ends."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium, which these tests drive")
    folder = tmp_path_factory.mktemp("browser")
    arch = build_cli_archive(folder / "archive", people=POLICY, recordings=THREE_RECORDINGS, ingest_exit=(1,))
    with open_archive(arch) as a:  # read only, to name the task's window
        seg = query.segment(a, 1)
    assert seg.name == "androidx-sample.mp4" and seg.start is not None and seg.end is not None
    tasks = folder / "tasks.csv"
    minute = 60 * 10**9
    tasks.write_text(
        "id,type,start,end,officers,devices\n"
        f"T-1,patrol,{rfc3339(seg.start - 2 * minute)},{rfc3339(seg.end + 2 * minute)},,{seg.device}\n"
    )
    for args in (
        ("task", "import", arch, tasks),
        ("retention", "case", arch, "--case", CASE, "--segment", "1", "--segment", "3"),
    ):
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
    for name in ("alice", "bob", "carol"):
        out = run_cli("user", "add", arch, name, "--password-stdin", input=ONE_TIME.encode() + b"\n")
        assert out.returncode == 0, out.stderr
        with open_archive(arch) as a:  # the person sets their own (the one-time password reaches only /password)
            own_password(a, name, ONE_TIME, PASSWORD)
    port = free_port()
    log_path = folder / "server.log"
    server = start_service(arch, log_path, "--http", f"127.0.0.1:{port}")
    try:
        wait_listening(server, log_path, port)
        yield Site(arch, f"http://127.0.0.1:{port}", "T-1", 1, seg.device)
    finally:
        code = stop_service_by_pid(server)
    assert code == 0, log_path.read_text()


@dataclass
class Watch:
    """What the pages of one browser context did: every request's URL, every console error and page error."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> Any:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "console", lambda m: self.errors.append(f"console: {m.text} at {m.location}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("response", lambda r: self.errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        page.set_default_timeout(WAIT_MS)
        return page

    def check(self, base: str) -> None:
        """Nothing left the server, and the browser saw no error (a CSP violation is a console error)."""
        assert self.requests, "no request was recorded"
        away = [u for u in self.requests if not u.startswith(base + "/")]
        assert not away, f"requests that left {base}: {away}"
        assert not self.errors, self.errors


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: scripts/setup installs it (the package's test extra)")
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium, which these tests drive")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), timeout=WAIT_MS)
        try:
            yield browser
        finally:
            browser.close()


def shot(folder: Path, page: Any, name: str) -> Path:
    """``page`` as a person sees it, whole, saved as ``folder/name.png`` (its path printed: pytest -s shows it)."""
    wide = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert wide[0] <= wide[1], f"the {name} page is wider than the window: {wide[0]} > {wide[1]} px"
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot {name}: {path}")
    return path


def api(context: Any, site: Site, path: str) -> Any:
    """``GET /api/v1/PATH`` as the context's visitor (its session cookie), the JSON answer."""
    answer = context.request.get(f"{site.url}/api/v1{path}", timeout=WAIT_MS)
    assert answer.status == 200, answer.text()
    return answer.json()


def log_in(site: Site, page: Any, name: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{site.url}/")


def test_the_must_show_flow_in_chromium(site: Site, chromium: Any, tmp_path: Path) -> None:
    carol_ctx = chromium.new_context(accept_downloads=True, locale="en-US")
    bob_ctx = chromium.new_context(locale="en-US")
    carol_watch, bob_watch = Watch(), Watch()
    try:
        carol = carol_watch.attach(carol_ctx.new_page())
        carol.goto(f"{site.url}/")
        assert carol.url.startswith(f"{site.url}/login")  # nobody logged in: the login page
        shot(tmp_path, carol, "login")
        log_in(site, carol, "carol")
        assert carol.locator("header .who strong").inner_text() == "carol"
        shot(tmp_path, carol, "dashboard")

        # A finding on the dashboard (recording 1 is a late ingest) leads to its recording.
        carol.locator(f"#late_ingests a[href='/recordings/{site.recording}']").first.click()
        carol.wait_for_url(f"{site.url}/recordings/{site.recording}")
        assert "androidx-sample.mp4" in carol.locator("h1").inner_text()
        assert carol.locator("video").count() == 0  # no window open for carol yet
        # A viewer is offered no form her role cannot use: one she tried would be refused and listed in the report
        # as an unapproved access of hers.
        assert carol.locator("form[action='/holds']").count() == 0
        carol.fill("form[action='/access/request'] input[name=reason]", "complaint 2024-17 review")
        carol.click("form[action='/access/request'] button[type=submit]")
        carol.wait_for_url(f"{site.url}/recordings/{site.recording}")
        assert "pending" in carol.locator("p.flash").inner_text()
        (asked,) = api(carol_ctx, site, "/access/requests")["requests"]  # what the server holds, through its API
        assert (asked["requester"], asked["segments"], asked["purpose"], asked["status"]) == (
            "carol",
            [site.recording],
            "view",
            "pending",
        )

        # bob, in a browser of his own, approves it on the access page.
        bob = bob_watch.attach(bob_ctx.new_page())
        log_in(site, bob, "bob")
        bob.goto(f"{site.url}/access")
        assert bob.locator("form[action='/holds']").count() == 1  # an approver may place a hold
        bob.click(f"#request-{asked['id']} form.approve button[type=submit]")
        bob.wait_for_url(f"{site.url}/access**")
        assert bob.locator(f"#request-{asked['id']}").get_attribute("class") == "approved"
        shot(tmp_path, bob, "access")

        # carol plays it: the view starts inside the window, and Chromium decodes the H.264 frames it streams.
        carol.goto(f"{site.url}/recordings/{site.recording}")
        carol.click(f"form[action='/recordings/{site.recording}/view'] button[type=submit]")
        carol.wait_for_url(f"{site.url}/recordings/{site.recording}?view=*")
        video = carol.locator("video")
        assert video.get_attribute("src").startswith("/stream/")
        video.scroll_into_view_if_needed()  # as a person would: Chromium decodes no frame of a player out of view
        carol.wait_for_function("() => document.querySelector('video').readyState >= 2")
        assert carol.evaluate("() => document.querySelector('video').videoWidth") == 1080
        # A decoded picture, not only its size: the frame drawn on a canvas is the footage's (bright, Y about 144),
        # not the black of a player with nothing to show.
        carol.wait_for_function(f"() => ({FRAME_BRIGHTNESS})() > 60")
        # And it plays (muted: a page may start sound only after a gesture) through the ranges it asks for.
        carol.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
        carol.wait_for_function("() => document.querySelector('video').currentTime > 0.3")
        carol.evaluate("() => document.querySelector('video').pause()")
        shot(tmp_path, carol, "recording")

        # The inclusion proof, downloaded and checked offline against the archive's verifier key.
        with carol.expect_download() as got:
            carol.click(f"a[href='/recordings/{site.recording}/proof.json']")
        proof_path = tmp_path / "proof.json"
        got.value.save_as(proof_path)
        key = (site.archive / "keys" / "checkpoint.vkey").read_text().strip()
        proven = proofs.verify(proof_path.read_bytes(), trusted_key=key)
        assert proven.index == api(carol_ctx, site, f"/segments/{site.recording}")["ledger_index"]
        assert proven.entry is not None and proven.entry["type"] == "ingest"

        # The case, exported: an export request approved by bob, then the bag downloaded and validated.
        carol.goto(f"{site.url}/access")
        form = carol.locator("form[action='/access/request']")
        form.locator("input[name=segments]").fill("1 3")
        form.locator("input[name=reason]").fill("case file for the prosecutor")
        form.locator("select[name=purpose]").select_option("export")
        form.locator("button[type=submit]").click()
        carol.wait_for_url(f"{site.url}/access**")
        (wanted,) = [r for r in api(carol_ctx, site, "/access/requests")["requests"] if r["purpose"] == "export"]
        assert wanted["segments"] == [1, 3] and wanted["status"] == "pending"
        bob.goto(f"{site.url}/access")
        bob.click(f"#request-{wanted['id']} form.approve button[type=submit]")
        bob.wait_for_url(f"{site.url}/access**")
        assert bob.locator(f"#request-{wanted['id']}").get_attribute("class") == "approved"
        carol.goto(f"{site.url}/access")
        form = carol.locator("form[action='/exports']")
        form.locator("input[name=case]").fill(CASE)
        form.locator("input[name=request]").fill(str(wanted["id"]))
        form.locator("input[name=description]").fill("Body camera footage of the stop")
        with carol.expect_download(timeout=60_000) as got:
            form.locator("button[type=submit]").click()
        tar_path = tmp_path / "bag.tar"
        got.value.save_as(tar_path)
        assert got.value.suggested_filename.startswith("custodes-export-")
        with tarfile.open(tar_path, mode="r:") as t:
            t.extractall(tmp_path / "bag", filter="data")
        (bag_dir,) = (tmp_path / "bag").iterdir()
        import bagit

        bag = bagit.Bag(str(bag_dir))
        bag.validate()  # raises bagit.BagValidationError naming what is wrong
        assert len([p for p in bag.payload_files() if p.endswith(".mp4") or p.endswith(".mov")]) == 2
        carol.goto(f"{site.url}/access")
        assert carol.locator("table.exports a[href$='/bag.tar']").count() == 1  # listed for her to fetch again

        # The other pages, as a person sees them.
        for name, path in (
            ("device", f"/devices/{site.device}"),
            ("task", f"/tasks/{site.task}"),
            ("report", "/report"),
        ):
            answer = carol.goto(f"{site.url}{path}")
            assert answer is not None and answer.status == 200, (path, answer)
            shot(tmp_path, carol, name)
            if name == "device":  # each recording on its time line is there to see, however short
                seen = carol.evaluate(RECORDINGS_SEEN, COLOURS["recorded"])
                assert seen and all(seen), seen
            if name == "task":  # explaining a gap is a custodian's or an approver's
                assert carol.locator("form[action$='/explain']").count() == 0
        # The report counts what carol did: two requests, both approved, and her one view in the player.
        rows = [row.split("\t") for row in carol.locator("table#access tr").all_inner_texts()]
        counts = {th.strip(): td.strip() for th, td in rows}
        for key, want in (("requests", "2"), ("approved", "2"), ("views", "1")):
            assert counts[label(key, "en")] == want, counts

        # The language switch: the navigation in Chinese, from the one catalogue.
        carol.goto(f"{site.url}/")
        nav = carol.locator("nav.main a")
        assert nav.first.inner_text() == label("dashboard", "en")
        carol.click("span.langs a[href^='/lang/zh']")
        carol.wait_for_url(f"{site.url}/")
        assert carol.locator("html").get_attribute("lang") == "zh-CN"
        assert [nav.nth(i).inner_text() for i in range(5)] == [
            label(k, "zh") for k in ("dashboard", "devices", "tasks", "access_nav", "report_nav")
        ]
        assert label("dashboard", "zh") != label("dashboard", "en")
        shot(tmp_path, carol, "dashboard-zh")

        carol_watch.check(site.url)
        bob_watch.check(site.url)
    finally:
        carol_ctx.close()
        bob_ctx.close()


def test_the_browser_enforces_the_csp_and_the_watch_sees_a_violation(site: Site, chromium: Any) -> None:
    """The watch the flow relies on is not blind: content the CSP forbids (an image from elsewhere, an inline
    script, an inline style), put in a served page, is refused by Chromium and reported."""
    context = chromium.new_context(locale="en-US")
    watch = Watch()
    try:
        page = watch.attach(context.new_page())
        page.goto(f"{site.url}/login")
        page.evaluate(
            """() => {
              const img = document.createElement("img");
              img.src = "http://192.0.2.1/pixel.png";
              document.body.append(img);
              const script = document.createElement("script");
              script.textContent = "document.title = 'ran'";
              document.body.append(script);
              const div = document.createElement("div");
              div.setAttribute("style", "color: red");
              document.body.append(div);
            }"""
        )
        page.wait_for_timeout(300)  # the violations are reported as the elements are added; a moment for them
        assert page.title() != "ran"
        refused = [e for e in watch.errors if "Content Security Policy" in e]
        assert len(refused) >= 3, watch.errors
        with pytest.raises(AssertionError, match="192.0.2.1|Content Security Policy"):
            watch.check(site.url)
    finally:
        context.close()
