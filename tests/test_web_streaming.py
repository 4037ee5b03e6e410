"""Footage to the browser's player (custodes.web.streaming): RFC 9110 ranges against the stored bytes (local and S3
stores), flat memory streaming an object whole, ranges past 2**32 of a 4 GiB one, view tickets started inside an
approved window (each view one access-log entry, refusals logged), the downloadable inclusion proof checked
offline, and export bags downloaded as a tar by their requester alone; the routes through FastAPI's TestClient
(``https://testserver``) on CLI-made archives."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import json
import os
import re
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from custodes import access, proofs, retention
from custodes.archive import Archive, ArchiveError, open_archive, owned_output
from custodes.bags import validate_bag
from custodes.builtin.storage import LocalStore
from custodes.catalog.custody import AccessLogRow
from custodes.errors import CustodesError
from custodes.export import export_case, sweep_exports
from custodes.identity import Caller, acting_as
from custodes.storage import ObjectStore, Put
from custodes.web import create_app, streaming
from custodes.web.accounts import secret_digest
from custodes.web.streaming import ByteRange, RangeNotSatisfiable, Tickets, View, parse_range, ranged
from helpers import BACKENDS, FOOTAGE
from web_helpers import PASSWORD, add_own_account


@contextmanager
def as_tool(account: str) -> Iterator[Caller]:
    """Act as a local account the web front end authenticated (custodes.identity: via ``tool``)."""
    with acting_as(Caller(None, account, "tool")) as caller:
        yield caller


def stored_bytes(archive: Archive, segment: int) -> tuple[str, str, bytes]:
    """(original name, digest, every byte of the stored object) of ``segment``."""
    recorded = archive.catalog.segments.name_and_object(segment)
    assert recorded is not None
    name, digest = recorded
    with archive.store.open(digest) as f:
        return name, digest, f.read()


def streamed(archive: Archive, digest: str, r: ByteRange) -> bytes:
    chunks = list(ranged(archive.store, digest, r.first, r.last))
    assert all(0 < len(c) <= streaming.CHUNK for c in chunks)
    return b"".join(chunks)


def log_rows(archive: Archive, action: str) -> list[AccessLogRow]:
    return [r for r in archive.catalog.access.log_in_period(0, 2**63 - 1) if r.action == action]


def window_end(archive: Archive, request_id: int) -> int:
    row = archive.catalog.access.get(request_id)
    assert row is not None and row.valid_until_ns is not None
    return row.valid_until_ns


# ---- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-250", (750, 999)),
        ("bytes=-5000", (0, 999)),  # longer than the object: the whole of it (§14.1.3)
        ("bytes=990-5000", (990, 999)),  # past the end: clamped
        ("bytes=999-999", (999, 999)),
        ("BYTES = 5 - 6 ", (5, 6)),  # the unit is case-insensitive, whitespace allowed
    ],
)
def test_one_range_is_honoured(header: str, want: tuple[int, int]) -> None:
    r = parse_range(header, 1000)
    assert r is not None and (r.first, r.last) == want
    assert r.length == want[1] - want[0] + 1
    assert r.content_range() == f"bytes {want[0]}-{want[1]}/1000"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "bytes=0-1,5-6",  # several ranges: the whole object (RFC 9110 §14.2 lets a server ignore Range)
        "bytes=-1,0-0",
        "items=0-1",  # another unit
        "bytes=5-4",  # last-pos before first-pos: invalid (§14.1.1), ignored
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=1.5-3",
        "bytes=0x10-",
        "bytes=\u0661-",  # an Arabic-Indic digit one: not a DIGIT of the grammar
        "0-99",
    ],
)
def test_a_range_not_honoured_is_the_whole_object(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_with_the_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as e:
        parse_range(header, 1000)
    assert e.value.content_range() == "bytes */1000"


def test_an_empty_object_has_no_satisfiable_range() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-0", 0)
    assert parse_range("bytes=-10", 0) is None  # the last 10 bytes of nothing: the (empty) whole


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_ranges_agree_byte_for_byte_with_the_stored_recording(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        for segment in (1, 2, 3):
            name, digest, whole = stored_bytes(a, segment)
            original = next(FOOTAGE.rglob(os.path.basename(name)))
            assert whole == original.read_bytes()  # the stored object is the file ingested, unaltered
            size = len(whole)
            assert size > 3 * 1000
            headers = [
                "bytes=0-0",  # first byte
                "bytes=0-1023",  # first range
                f"bytes={size // 2 - 500}-{size // 2 + 499}",  # middle
                f"bytes={size - 1}-{size - 1}",  # last byte
                f"bytes={size - 1000}-{size - 1}",  # last range
                "bytes=-1",  # suffix: the last byte
                "bytes=-777",  # suffix
                f"bytes=-{size + 10}",  # suffix longer than the object
                f"bytes={size // 3}-",  # open-ended
                f"bytes=17-{size * 2}",  # past the end: clamped
            ]
            for header in headers:
                r = parse_range(header, size)
                assert r is not None
                assert streamed(a, digest, r) == whole[r.first : r.last + 1], (segment, header)
            full = ByteRange(0, size - 1, size)
            assert streamed(a, digest, full) == whole


def test_a_range_of_one_chunk_and_one_byte_comes_in_two_chunks(tmp_path: Path) -> None:
    store = LocalStore.connect(tmp_path / "store", {})
    data = os.urandom(streaming.CHUNK + 1)
    spooled = store.spool / "object"
    spooled.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert store.put_many([Put(spooled, len(data), {"sha256": digest})]) == [True]
    chunks = list(ranged(store, digest, 0, len(data) - 1))
    assert [len(c) for c in chunks] == [streaming.CHUNK, 1]
    assert b"".join(chunks) == data
    assert b"".join(ranged(store, digest, 5, 4)) == b""  # nothing asked, nothing opened


def test_a_stored_object_shorter_than_asked_is_cut_short_not_padded(tmp_path: Path) -> None:
    store = LocalStore.connect(tmp_path / "store", {})
    data = b"x" * 100
    spooled = store.spool / "object"
    spooled.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    store.put_many([Put(spooled, len(data), {"sha256": digest})])
    got = bytearray()
    with pytest.raises(streaming.StoreError, match="ended 50 bytes before byte 150"):
        for chunk in ranged(store, digest, 0, 149):
            got += chunk
    assert got == data


FOUR_GIB = 4 * 2**30
#: Python's allocation bound while an object streams, and the size of the objects streamed whole to show it:
#: sixteen times the bound, so a stream that held the object, or any fixed share of it, would break it. (They were
#: 4 GiB, 35 s of the suite's CPU hashing zeros; the bytes past 2**32 are read by ranges of a 4 GiB object.)
FLAT = 16 * 2**20
WHOLE = 16 * FLAT


@functools.cache
def zeros_sha256(size: int) -> str:
    """The SHA-256 of ``size`` zero bytes, by hashlib (OpenSSL): computed once a session per size."""
    zeros = bytes(2**20)
    expected = hashlib.sha256()
    for _ in range(size // len(zeros)):
        expected.update(zeros)
    expected.update(bytes(size % len(zeros)))
    return expected.hexdigest()


def put_sparse(store: ObjectStore, size: int) -> str:
    """A sparse file of ``size`` zero bytes (a hole: no disk space) put in ``store`` through the store API, named
    by its real SHA-256; returns the digest."""
    spooled = store.spool / f"sparse-{os.getpid()}"
    with open(spooled, "wb") as f:
        f.truncate(size)
    digest = zeros_sha256(size)
    assert store.put_many([Put(spooled, size, {"sha256": digest})]) == [True]
    stat = store.stat(digest)
    assert stat is not None and stat.size == size
    return digest


def test_an_object_streams_whole_with_flat_memory(tmp_path: Path) -> None:
    """A sparse object put in a local store through the store API, streamed whole: the bytes hash to the object's
    name and Python's peak allocation stays under a sixteenth of the object."""
    store = LocalStore.connect(tmp_path / "store", {})
    digest = put_sparse(store, WHOLE)
    got = hashlib.sha256()
    count = 0
    tracemalloc.start()
    try:
        for chunk in ranged(store, digest, 0, WHOLE - 1):
            got.update(chunk)
            count += len(chunk)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == WHOLE
    assert got.hexdigest() == digest
    assert peak < FLAT, f"peak {peak} bytes"


def test_ranges_past_2_32_of_a_4_gib_object(tmp_path: Path) -> None:
    store = LocalStore.connect(tmp_path / "store", {})
    digest = put_sparse(store, FOUR_GIB)
    assert list(ranged(store, digest, FOUR_GIB - 3, FOUR_GIB - 1)) == [b"\0\0\0"]
    assert b"".join(ranged(store, digest, 2**31 - 2, 2**31 + 1)) == bytes(4)  # across a signed 32-bit offset's end


# ---- media types -------------------------------------------------------------------------------


def test_the_content_type_comes_from_the_name_and_is_only_ever_media() -> None:
    assert streaming.media_type("VID_0001.MP4") == "video/mp4"
    assert streaming.media_type("bt601.mov") == "video/quicktime"
    assert streaming.media_type("call.wav") == "audio/wav"
    for hostile in ("page.html", "x.svg", "script.js", "noextension", "a.mp4.html"):
        assert streaming.media_type(hostile) == "application/octet-stream"


# ---- view tickets ------------------------------------------------------------------------------


def approved_view(a: Archive, segments: list[int], requester: str = "carol", hours: float | None = None) -> int:
    with as_tool(requester):
        req = access.request_access(a, segments, "complaint 2024-17 review", "view")
    with as_tool("bob"):
        access.approve(a, req.id, hours)
    return req.id


def test_a_view_is_one_access_log_entry_and_a_ticket_bound_to_its_account(cli_archive: Path) -> None:
    tickets = Tickets()
    with open_archive(cli_archive) as a:
        rid = approved_view(a, [1, 3])
        _name, digest, whole = stored_bytes(a, 3)
        with as_tool("carol"):
            ticket, view = streaming.start_view(a, tickets, 3)  # the request is found by its segment
        assert (view.account, view.segment, view.request, view.digest, view.size) == (
            "carol",
            3,
            rid,
            digest,
            len(whole),
        )
        assert view.expires_ns <= window_end(a, rid)
        assert view.expires_ns <= time.time_ns() + streaming.TICKET_HOURS * 3600 * 10**9
        logged = log_rows(a, "stream")
        assert [(r.person, r.segment_id, r.ok, r.request_id) for r in logged] == [("carol", 3, 1, rid)]
        # each range is checked against the ticket alone: no further entry however many ranges are read
        seq = a.catalog.ledger.size()
        for _ in range(5):
            assert tickets.check(ticket, "carol") == view
        assert a.catalog.ledger.size() == seq
        assert tickets.check(ticket, "dave") is None  # another visitor's ticket is no ticket for them
        assert tickets.check(ticket + "x", "carol") is None
        assert len(ticket) >= 43  # 256 random bits


def test_a_ticket_never_outlasts_its_window(cli_archive: Path) -> None:
    tickets = Tickets()
    with open_archive(cli_archive) as a:
        rid = approved_view(a, [2], hours=0.5)
        with as_tool("carol"):
            ticket, view = streaming.start_view(a, tickets, 2, rid)
        assert view.expires_ns == window_end(a, rid)
        assert tickets.check(ticket, "carol", now=view.expires_ns - 1) == view
        assert tickets.check(ticket, "carol", now=view.expires_ns) is None
        assert len(tickets) == 0  # an expired ticket is dropped
        assert tickets.check(ticket, "carol") is None


def test_no_window_no_view_and_the_refusal_is_logged(cli_archive: Path) -> None:
    tickets = Tickets()
    with open_archive(cli_archive) as a:
        with as_tool("carol"):
            with pytest.raises(access.AccessDenied, match="no approved, unexpired view request of carol's"):
                streaming.start_view(a, tickets, 1)
        with as_tool("carol"):
            pending = access.request_access(a, [1], "complaint", "view")
            with pytest.raises(access.AccessDenied, match=f"request {pending.id} is pending"):
                streaming.start_view(a, tickets, 1, pending.id)
        rid = approved_view(a, [2])
        with as_tool("carol"):
            with pytest.raises(access.AccessDenied, match=r"segment\(s\) \[1\] are not in request"):
                streaming.start_view(a, tickets, 1, rid)
        with as_tool("dave"):  # dave's role may view, but the request is carol's
            with pytest.raises(access.AccessDenied, match="carol's, not dave's"):
                streaming.start_view(a, tickets, 2, rid)
        refusals = [(r.person, r.segment_id, r.ok) for r in log_rows(a, "stream")]
        assert refusals == [("carol", 1, 0), ("carol", 1, 0), ("carol", 1, 0), ("dave", 2, 0)]
        assert len(tickets) == 0


def test_an_export_request_does_not_open_a_view(cli_archive: Path) -> None:
    tickets = Tickets()
    with open_archive(cli_archive) as a:
        with as_tool("carol"):
            req = access.request_access(a, [1], "case file", "export")
        with as_tool("bob"):
            access.approve(a, req.id)
        with as_tool("carol"):
            with pytest.raises(access.AccessDenied, match="no approved, unexpired view request"):
                streaming.start_view(a, tickets, 1)
            with pytest.raises(access.AccessDenied, match="approved for export, not view"):
                streaming.start_view(a, tickets, 1, req.id)


def test_tickets_are_bounded_and_make_room_by_expiry() -> None:
    tickets = Tickets(limit=3)
    views = [View("carol", 1, 1, "0" * 64, 10, "a.mp4", expires_ns=1000 + i) for i in range(4)]
    issued = [tickets.issue(v, now=0) for v in views]
    assert len(tickets) == 3
    assert tickets.check(issued[0], "carol", now=0) is None  # the one closest to its expiry made room
    assert [tickets.check(t, "carol", now=0) for t in issued[1:]] == views[1:]
    tickets.issue(views[0], now=1002)  # the expired ones are dropped as a new one comes
    assert len(tickets) == 2


# ---- export bags for download ------------------------------------------------------------------


def exported_case(a: Archive, requester: str = "carol") -> tuple[int, int]:
    """Case C-7 (segments 1 and 3) linked by alice, exported through the web's folder by ``requester`` under an
    export request bob approved: (request, export entry)."""
    with as_tool("alice"):
        retention.link_case(a, "C-7", [1, 3], None)
    with as_tool(requester):
        req = access.request_access(a, [1, 3], "case file for the prosecutor", "export")
    with as_tool("bob"):
        access.approve(a, req.id)
    with as_tool(requester):
        return req.id, streaming.export_for_download(a, "C-7", req.id, "Body camera footage of the stop")


def untar(tar: streaming.BagTar, into: Path) -> Path:
    data = b"".join(tar.chunks())
    assert len(data) == tar.size and tar.size % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        t.extractall(into, filter="data")
    return into


def test_a_web_export_is_kept_in_the_archive_and_downloads_as_a_valid_bag(cli_archive: Path, tmp_path: Path) -> None:
    with open_archive(cli_archive) as a:
        rid, export = exported_case(a)
        entry = json.loads(a.catalog.ledger.entry(export) or b"{}")
        assert (entry["type"], entry["case"], entry["request"], entry["segments"]) == ("export", "C-7", rid, [1, 3])
        bag = cli_archive / "exports" / str(export)
        assert validate_bag(bag).valid
        assert [p.name for p in (cli_archive / "exports").iterdir()] == [str(export)]  # no staging left
        with as_tool("carol"):
            download = streaming.open_download(a, export)
        assert (download.export, download.case, download.bag) == (export, "C-7", bag)
        assert [(r.person, r.segment_id, r.ok) for r in log_rows(a, "download")] == [("carol", 1, 1), ("carol", 3, 1)]
        out = untar(download.tar, tmp_path / "downloaded")
        report = validate_bag(out / f"custodes-export-{export}", a.verifier_key)
        assert report.valid, report.problems
        for f in bag.rglob("*"):  # every file, byte for byte
            if f.is_file():
                assert (out / f"custodes-export-{export}" / f.relative_to(bag)).read_bytes() == f.read_bytes()


def test_a_bag_is_only_for_the_person_the_export_was_approved_for(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        _rid, export = exported_case(a)
        with as_tool("dave"):
            with pytest.raises(access.AccessDenied, match="carol's, not dave's"):
                streaming.open_download(a, export)
        with as_tool("carol"):
            with pytest.raises(CustodesError, match="no export 1 in this archive's ledger"):
                streaming.open_download(a, 1)  # an entry that is not an export
            with pytest.raises(CustodesError, match="no export 99999"):
                streaming.open_download(a, 99999)
        assert [(r.person, r.ok) for r in log_rows(a, "download")] == [("dave", 0)]


def test_a_bag_is_kept_only_while_its_window_is_open(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        with as_tool("alice"):
            retention.link_case(a, "C-7", [1], None)
        with as_tool("carol"):
            req = access.request_access(a, [1], "case file", "export")
        with as_tool("bob"):
            access.approve(a, req.id, 3 / 3600)  # a three-second window
        with as_tool("carol"):
            export = streaming.export_for_download(a, "C-7", req.id)
            assert sweep_exports(a) == []  # still open: kept
            assert streaming.open_download(a, export).export == export
            time.sleep(max(0.0, (window_end(a, req.id) - time.time_ns()) / 1e9) + 0.1)
            with pytest.raises(access.AccessDenied, match=f"request {req.id} expired"):
                streaming.open_download(a, export)  # refused and logged before the bag goes
            assert (cli_archive / "exports" / str(export)).is_dir()
            assert sweep_exports(a) == [str(export)]
            assert not (cli_archive / "exports" / str(export)).exists()
            with pytest.raises(CustodesError, match=f"export {export} .case C-7. has no bag kept in the archive"):
                streaming.open_download(a, export)
        assert [r.ok for r in log_rows(a, "download")] == [1, 0]


def test_a_purge_removes_the_bags_that_hold_its_recordings(cli_archive: Path) -> None:
    # A bag kept for download is a copy of the footage: the purge that lawfully removes a recording removes the
    # bags holding it then, not at the next export or download that sweeps exports/.
    with open_archive(cli_archive) as a:
        with as_tool("alice"):
            retention.link_case(a, "C-7", [1], 1)  # a case closed long ago: it keeps the 2016 recording no more
        with as_tool("carol"):
            req = access.request_access(a, [1], "case file", "export")
        with as_tool("bob"):
            access.approve(a, req.id)
        with as_tool("carol"):
            export = streaming.export_for_download(a, "C-7", req.id)
        bag = cli_archive / "exports" / str(export)
        assert bag.is_dir()
        with as_tool("alice"):
            purge = access.request_access(a, [1], "retention period over", "purge")
        with as_tool("bob"):
            access.approve(a, purge.id)
        with as_tool("alice"):
            assert retention.purge(a, purge.id).purged == [1]
        assert not bag.exists()


def test_a_bag_a_crash_left_unnamed_is_ledgered_failed_and_removed(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        with as_tool("alice"):
            retention.link_case(a, "C-7", [1], None)
        with as_tool("carol"):
            req = access.request_access(a, [1], "case file", "export")
        with as_tool("bob"):
            access.approve(a, req.id)
        left = cli_archive / "exports" / "new-1-0badc0de"
        with as_tool("carol"), owned_output(a, left):
            export_case(a, "C-7", req.id, left)  # the export, then a crash before its bag was named by its entry
        exported = [i for i, _ in a.catalog.ledger.of_type("export")]
        assert validate_bag(left).valid and len(exported) == 1
        assert sweep_exports(a) == ["new-1-0badc0de"]
        assert not left.exists()
        failed = [json.loads(d) for _, d in a.catalog.ledger.of_type("export_failed")]
        assert [f["export"] for f in failed] == exported
        assert "the bag was removed" in failed[0]["reason"]


def test_a_bag_with_a_link_planted_in_it_is_not_served(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        _rid, export = exported_case(a)
        bag = cli_archive / "exports" / str(export)
        (bag / "data" / "planted").symlink_to(cli_archive / "private")
        with pytest.raises(CustodesError, match="planted: not a plain file or folder"):
            streaming.bag_tar(bag, "x")


def test_the_export_folder_is_the_only_place_inside_the_archive_an_export_may_go(cli_archive: Path) -> None:
    with open_archive(cli_archive) as a:
        with as_tool("alice"):
            retention.link_case(a, "C-7", [1], None)
        with as_tool("carol"):
            req = access.request_access(a, [1], "case file", "export")
        with as_tool("bob"):
            access.approve(a, req.id)
        with as_tool("carol"), pytest.raises(ArchiveError, match="inside the archive"):
            export_case(a, "C-7", req.id, cli_archive / "exports" / "mine")  # a path a person names: refused
        with pytest.raises(ArchiveError, match="not a folder of"):
            with owned_output(a, cli_archive / "objects"):
                pass


# ---- the routes, through FastAPI's TestClient --------------------------------------------------


def web_for(arch: Path) -> TestClient:
    return TestClient(create_app(arch), base_url="https://testserver", follow_redirects=False)


def with_accounts(arch: Path, *names: str) -> Path:
    with open_archive(arch) as a:  # the archive's owner adds the local accounts (the tests run as root)
        for name in names:
            add_own_account(a, name, PASSWORD)
    return arch


def logged_in(web: TestClient, name: str) -> str:
    """Log ``name`` in through the login form; returns their session's CSRF token (what every page carries)."""
    form = web.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    answer = web.post("/login", data={"name": name, "password": PASSWORD, "csrf": token.group(1), "next": "/whoami"})
    assert answer.status_code == 303, answer.text
    session = web.app.state.custodes.store.session(secret_digest(web.cookies["custodes_session"]))
    return session.csrf


HTML = {"Accept": "text/html"}


def test_a_viewer_without_an_approved_window_is_refused_and_it_is_logged(cli_archive: Path) -> None:
    web = web_for(with_accounts(cli_archive, "carol"))
    csrf = logged_in(web, "carol")
    no_csrf = web.post("/recordings/1/view", headers=HTML)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    answer = web.post("/recordings/1/view", data={"csrf": csrf}, headers=HTML)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "no approved, unexpired view request of carol&#39;s names recording 1" in answer.text
    assert "Traceback" not in answer.text
    as_api = web.post("/recordings/1/view", headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert as_api.status_code == 403 and "no approved" in as_api.json()["error"]
    unknown = web.post("/recordings/999/view", headers={"X-CSRF-Token": csrf})
    assert unknown.status_code == 403 and "names recording 999" in unknown.json()["error"]
    assert web.post("/recordings/one/view", headers={"X-CSRF-Token": csrf}).status_code == 422
    with open_archive(cli_archive) as a:
        assert [(r.person, r.segment_id, r.ok) for r in log_rows(a, "stream")] == [
            ("carol", 1, 0),
            ("carol", 1, 0),
            ("carol", 999, 0),
        ]


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_inside_a_window_ranges_stream_byte_for_byte(cli_archive: Path) -> None:
    web = web_for(with_accounts(cli_archive, "carol"))
    with open_archive(cli_archive) as a:
        rid = approved_view(a, [1, 2, 3])
        mov = next(s for s in (1, 2, 3) if stored_bytes(a, s)[0].endswith(".mov"))  # bt601.mov, a QuickTime file
        name, _digest, whole = stored_bytes(a, mov)
        other = next(s for s in (1, 2, 3) if s != mov)
    csrf = logged_in(web, "carol")
    started = web.post(f"/recordings/{mov}/view", data={"csrf": csrf}, headers=HTML)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(f"/recordings/{mov}?view=")
    src = "/stream/" + location.partition("?view=")[2]
    size = len(whole)
    full = web.get(src)
    assert full.status_code == 200 and full.content == whole
    assert full.headers["content-length"] == str(size)
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == streaming.media_type(name) == "video/quicktime"
    assert full.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in full.headers["content-security-policy"]
    for first, last in [
        (0, 0),
        (0, 65535),
        (size // 2, size // 2 + 4095),
        (size - 1, size - 1),
        (size - 100, size - 1),
    ]:
        part = web.get(src, headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert part.content == whole[first : last + 1]
    suffix = web.get(src, headers={"Range": "bytes=-500"})
    assert suffix.status_code == 206 and suffix.content == whole[-500:]
    opened = web.get(src, headers={"Range": f"bytes={size - 10}-"})
    assert opened.status_code == 206 and opened.content == whole[-10:]
    several = web.get(src, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == whole
    outside = web.get(src, headers={"Range": f"bytes={size}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{size}"
    head = web.head(src, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == "10" and head.headers["content-range"] == f"bytes 10-19/{size}"
    stale = web.get(src, headers={"Range": "bytes=0-9", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == whole
    current = web.get(src, headers={"Range": "bytes=0-9", "If-Range": full.headers["etag"]})
    assert current.status_code == 206 and current.content == whole[:10]
    # an API caller gets the player's source as JSON; it is a second view, a second entry
    as_api = web.post(f"/recordings/{other}/view", data={"request": str(rid)}, headers={"X-CSRF-Token": csrf})
    assert as_api.status_code == 200
    assert as_api.json()["src"].startswith("/stream/") and as_api.json()["request"] == rid
    assert web.get(as_api.json()["src"], headers={"Range": "bytes=0-3"}).status_code == 206
    with open_archive(cli_archive) as a:
        assert [(r.person, r.segment_id, r.ok, r.request_id) for r in log_rows(a, "stream")] == [
            ("carol", mov, 1, rid),
            ("carol", other, 1, rid),
        ]


def test_another_visitors_ticket_is_refused(cli_archive: Path) -> None:
    arch = with_accounts(cli_archive, "carol", "dave")
    carol, dave = web_for(arch), web_for(arch)
    with open_archive(arch) as a:
        approved_view(a, [2])
    csrf = logged_in(carol, "carol")
    src = carol.post("/recordings/2/view", headers={"X-CSRF-Token": csrf}).json()["src"]
    assert carol.get(src, headers={"Range": "bytes=0-0"}).status_code == 206
    logged_in(dave, "dave")
    refused_page = dave.get(src, headers={"Range": "bytes=0-0", **HTML})
    assert refused_page.status_code == 403 and "not open for you" in refused_page.text
    assert dave.get("/stream/" + "A" * 43).status_code == 403  # a guessed ticket is no ticket either
    assert web_for(arch).get(src).status_code in (401, 303)  # nobody logged in: no stream at all


def test_an_expired_window_stops_streaming(cli_archive: Path) -> None:
    web = web_for(with_accounts(cli_archive, "carol"))
    with open_archive(cli_archive) as a:
        rid = approved_view(a, [1], hours=3 / 3600)  # a three-second window
        end = window_end(a, rid)
    csrf = logged_in(web, "carol")
    src = web.post("/recordings/1/view", headers={"X-CSRF-Token": csrf}).json()["src"]
    assert web.get(src, headers={"Range": "bytes=0-99"}).status_code == 206
    time.sleep(max(0.0, (end - time.time_ns()) / 1e9) + 0.1)
    assert web.get(src, headers={"Range": "bytes=100-199"}).status_code == 403
    again = web.post("/recordings/1/view", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 403 and "no approved, unexpired view request" in again.json()["error"]
    again = web.post("/recordings/1/view", data={"request": str(rid)}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 403 and f"request {rid} expired at" in again.json()["error"]
    with open_archive(cli_archive) as a:
        assert [(r.ok, r.request_id) for r in log_rows(a, "stream")] == [(1, rid), (0, None), (0, rid)]


def test_the_proof_downloads_and_verifies_offline_with_the_archive_key(cli_archive: Path) -> None:
    web = web_for(with_accounts(cli_archive, "carol"))
    logged_in(web, "carol")  # a viewer: any role may fetch a proof
    answer = web.get("/recordings/2/proof.json")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="recording-2-proof.json"'
    with open_archive(cli_archive) as a:
        key, index = a.verifier_key, a.catalog.segments.ledger_index(2)
        _name, digest, _bytes = stored_bytes(a, 2)
    proven = proofs.verify(answer.content, trusted_key=key)
    assert proven.index == index and proven.entry is not None and proven.entry["type"] == "ingest"
    assert proven.entry_bytes is not None and digest.encode() in proven.entry_bytes  # the recording's own entry
    tampered = json.loads(answer.content)
    tampered["inclusion"]["entry_base64"] = base64.b64encode(b'{"type":"ingest"}').decode()
    with pytest.raises(proofs.ProofError):
        proofs.verify(tampered, trusted_key=key)
    missing = web.get("/recordings/999/proof.json", headers=HTML)
    assert missing.status_code == 404 and "no segment 999" in missing.text
    assert web.get("/recordings/x/proof.json").status_code == 422


def test_an_export_made_on_the_page_downloads_as_a_valid_bag_for_its_requester_alone(
    cli_archive: Path, tmp_path: Path
) -> None:
    arch = with_accounts(cli_archive, "carol", "dave")
    with open_archive(arch) as a:
        with as_tool("alice"):
            retention.link_case(a, "C-7", [1, 3], None)
        with as_tool("carol"):
            req = access.request_access(a, [1, 3], "case file for the prosecutor", "export")
        with as_tool("bob"):
            access.approve(a, req.id)
        key = a.verifier_key
    carol, dave = web_for(arch), web_for(arch)
    csrf = logged_in(carol, "carol")
    forged = carol.post("/exports", data={"case": "C-7", "request": str(req.id)}, headers=HTML)
    assert forged.status_code == 403 and "CSRF" in forged.text  # a form without the token does nothing
    assert not (arch / "exports").exists()
    made = carol.post("/exports", data={"csrf": csrf, "case": "C-7", "request": str(req.id)}, headers=HTML)
    assert made.status_code == 303
    href = made.headers["location"]
    export = int(href.split("/")[2])
    assert href == f"/exports/{export}/bag.tar"
    tar = carol.get(href)
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
    assert tar.headers["content-length"] == str(len(tar.content))
    assert tar.headers["content-disposition"] == f'attachment; filename="custodes-export-{export}.tar"'
    with tarfile.open(fileobj=io.BytesIO(tar.content), mode="r:") as t:
        t.extractall(tmp_path / "got", filter="data")
    report = validate_bag(tmp_path / "got" / f"custodes-export-{export}", key)
    assert report.valid, report.problems
    logged_in(dave, "dave")
    refused_tar = dave.get(href, headers=HTML)
    assert refused_tar.status_code == 403 and "carol&#39;s, not dave&#39;s" in refused_tar.text
    assert carol.get("/exports/1/bag.tar").status_code == 400  # not an export entry
    with open_archive(arch) as a:
        assert [(r.person, r.ok) for r in log_rows(a, "download")] == [("carol", 1), ("carol", 1), ("dave", 0)]


def asgi_get(web: TestClient, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], int, str, int]:
    """GET ``path`` from the whole app (middleware, session, ticket check, StreamingResponse), driven as ASGI with
    a receiver that hashes what it is sent and a client that never hangs up: the response's start message, the
    bytes sent, their SHA-256 and Python's peak allocation meanwhile."""
    cookie = f"custodes_session={web.cookies['custodes_session']}".encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 443),
    }
    got, start = hashlib.sha256(), {}
    count = 0

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client never hangs up
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal count
        if message["type"] == "http.response.start":
            start.update(status=message["status"], headers=dict(message["headers"]))
        elif message["type"] == "http.response.body":
            got.update(message.get("body", b""))
            count += len(message.get("body", b""))

    tracemalloc.start()
    try:
        asyncio.run(web.app(scope, receive, send))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return start, count, got.hexdigest(), peak


def test_the_stream_route_sends_an_object_whole_with_flat_memory_and_ranges_past_2_32(cli_archive: Path) -> None:
    """The whole app sending an object sixteen times the memory bound, every byte arriving while Python's peak
    allocation stays under the bound; and the end of a 4 GiB object by a range, its sizes past 2**32 in the
    headers. The objects are put in the archive's store through the store API and their tickets issued to the
    app's own Tickets directly: ingesting them would copy them for real, which is ingest's test, not this one."""
    web = web_for(with_accounts(cli_archive, "carol"))
    logged_in(web, "carol")
    with open_archive(cli_archive) as a:
        whole, big = put_sparse(a.store, WHOLE), put_sparse(a.store, FOUR_GIB)
    tickets = streaming.tickets_of(cast(FastAPI, web.app))
    until = time.time_ns() + 3600 * 10**9

    ticket = tickets.issue(View("carol", 1, 1, whole, WHOLE, "whole.mp4", until))
    start, count, digest, peak = asgi_get(web, f"/stream/{ticket}", [])
    assert start["status"] == 200
    assert start["headers"][b"content-length"] == str(WHOLE).encode()
    assert count == WHOLE and digest == whole
    assert peak < FLAT, f"peak {peak} bytes"

    ticket = tickets.issue(View("carol", 1, 1, big, FOUR_GIB, "big.mp4", until))
    start, count, digest, _peak = asgi_get(web, f"/stream/{ticket}", [(b"range", b"bytes=-3")])
    assert start["status"] == 206
    assert start["headers"][b"content-range"] == f"bytes {FOUR_GIB - 3}-{FOUR_GIB - 1}/{FOUR_GIB}".encode()
    assert start["headers"][b"content-length"] == b"3"
    assert count == 3 and digest == hashlib.sha256(bytes(3)).hexdigest()


def test_the_routes_are_in_the_openapi_document(cli_archive: Path) -> None:
    paths = web_for(cli_archive).get("/openapi.json").json()["paths"]
    assert set(paths["/stream/{ticket}"]) >= {"get", "head"}
    assert "post" in paths["/recordings/{segment}/view"]
    assert "get" in paths["/recordings/{segment}/proof.json"]
    assert "post" in paths["/exports"] and "get" in paths["/exports/{export}/bag.tar"]
