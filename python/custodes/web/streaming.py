"""Footage to the browser's player: byte ranges of a stored object, and the view tickets that allow them.

**Ranges** (RFC 9110 §14). One range is honoured: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` (the last n).
A ``Range`` header this module does not honour is ignored and the whole object is sent (200), as §14.2 lets
a server do: several ranges (a player asks one at a time; a multipart answer would be a second way of
sending the same bytes for no reader of ours), another unit, or a header that does not parse (a
``last-pos`` before the ``first-pos`` is invalid, §14.1.1). A single range that parses but is not
satisfiable (it starts at or after the end, or asks for the last 0 bytes) is :class:`RangeNotSatisfiable`:
416 with ``Content-Range: bytes */SIZE`` (§15.5.17).

**Ranged reads**: :func:`ranged` reads through :meth:`custodes.storage.ObjectStore.open` (the one way to stored
bytes, local folder or bucket alike) in chunks of :data:`CHUNK`, so a stream holds one chunk in memory
whatever the object's size.

**View tickets**. A view starts inside an approved, unexpired ``view`` request: :func:`start_view` checks and
logs it with :func:`custodes.access.grant_for` once (one access-log entry and ledger entry per view, action
``stream``; a refusal is logged the same way), then hands out a random ticket bound to the account, the
recording, the request, the object and an expiry (the request's window, at most :data:`TICKET_HOURS`). The
player then asks ``/stream/TICKET`` for range after range; each is checked against the ticket alone (the
visitor's account, the expiry), with no catalog read or write: a view is one entry in the log, not one per
range. Tickets live in memory (:class:`Tickets`, per app, bounded): a restarted service forgets them and the
visitor starts the view again.

**Export bags for download**. The web page has no folder of the person's to write a bag to (the CLI writes
one where its caller says; the service stages it in the request's outbox and hands it over at once). So an
export made through the page (:func:`export_for_download`) runs the same :func:`custodes.export.export_case`
into a new folder of the archive's own ``exports/`` (custodes.archive.exports_folder), named, once written,
by the export's ledger entry: ``exports/<entry>/``. The requester downloads it as an uncompressed tar built
on the fly (:func:`bag_tar`: headers computed, files read a chunk at a time, so memory stays flat and the
length is known before the first byte); each download is checked and logged by
:func:`custodes.access.grant_for` under the export request (action ``download``): only the person the
export was approved for, only while its window is open. A bag is kept no longer than that window
(:func:`sweep_exports`, before each export and download on the page): it is a copy of the footage.

**Routes** (:data:`router`): POST ``/recordings/{segment}/view`` starts a view (303 to the recording's page
with ``?view=TICKET``, or JSON ``{"src": "/stream/TICKET", ...}`` for an API caller); GET and HEAD
``/stream/{ticket}`` send the footage (200, 206, 416); GET ``/recordings/{segment}/proof.json`` is the
recording's inclusion proof (custodes.proofs.ledger_proof, checkable offline with custodes.proofs.verify);
POST ``/exports`` exports a case for download and GET ``/exports/{export}/bag.tar`` downloads it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from custodes import access, proofs
from custodes._durable import fsync_dir
from custodes.archive import Archive, CheckpointFileError, exports_folder, owned_output
from custodes.errors import CustodesError
from custodes.export import NEW_BAG as _NEW
from custodes.export import export_case, sweep_exports
from custodes.findings import rfc3339
from custodes.identity import current_caller
from custodes.ledger import LedgerError
from custodes.storage import ObjectMissingError, ObjectStore, StoreError
from custodes.web.auth import Visitor, csrf_checked, visitor
from custodes.web.context import acting, form_text, reading

__all__ = [
    "CHUNK",
    "TICKET_HOURS",
    "BagTar",
    "ByteRange",
    "Download",
    "RangeNotSatisfiable",
    "Tickets",
    "View",
    "bag_tar",
    "export_for_download",
    "media_type",
    "open_download",
    "parse_range",
    "ranged",
    "router",
    "start_view",
    "tickets_of",
    "view_request",
]

_log = logging.getLogger("custodes.web")

#: Bytes read and sent at a time: a player's range requests are served in a few of these, and ten streams at
#: once hold ten of them.
CHUNK = 2**20

#: The longest a view ticket lasts, even inside a longer approval window: a page left open overnight does not
#: keep a licence to the footage; the visitor starts the view again (a new access-log entry).
TICKET_HOURS = 4

# RFC 9110 §14.1.2: byte-range-spec = first-pos "-" [ last-pos ] / suffix-range = "-" suffix-length, each
# 1*DIGIT; the unit is case-insensitive (§14.1), whitespace allowed around the set (OWS of the list rule).
_ONE_RANGE = re.compile(r"^\s*bytes\s*=\s*(?:(\d+)\s*-\s*(\d*)|-\s*(\d+))\s*$", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``first`` to ``last`` (both included, as HTTP counts them) of an object of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        """The ``Content-Range`` value of a 206 answer."""
        return f"bytes {self.first}-{self.last}/{self.size}"


class RangeNotSatisfiable(CustodesError):
    """A single byte range that starts at or past the object's end (or asks for its last 0 bytes): the answer
    is 416 with ``Content-Range: bytes */SIZE``."""

    kind = "range_not_satisfiable"

    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"Range {header!r} is outside the recording's {size} bytes")
        self.size = size

    def content_range(self) -> str:
        return f"bytes */{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range ``header`` (a ``Range`` value) asks of an object of ``size`` bytes, clamped to the object; None
    when the whole object is to be sent (no header, or one this module ignores: see the module's docstring);
    :class:`RangeNotSatisfiable` when it is one range outside the object."""
    if header is None:
        return None
    m = _ONE_RANGE.match(header)
    if m is None:
        return None  # several ranges, another unit, or not a range at all: ignored (RFC 9110 §14.2)
    first, last, suffix = m.groups()
    if suffix is not None:
        n = int(suffix)
        if n == 0:
            raise RangeNotSatisfiable(header, size)
        if size == 0:
            return None  # the last n bytes of nothing: the whole (empty) object
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid (§14.1.1): ignored
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    return ByteRange(start, size - 1 if last == "" else min(int(last), size - 1), size)


def ranged(store: ObjectStore, digest: str, first: int, last: int) -> Iterator[bytes]:
    """Bytes ``first`` to ``last`` (included) of object ``digest``, in chunks of at most :data:`CHUNK`: memory
    stays flat whatever the range. An object shorter than the range (damaged since it was stored) raises
    StoreError once what it has was sent, so the answer is cut short, never padded or passed off as whole."""
    left = last - first + 1
    if left <= 0:
        return
    with store.open(digest, first, left) as f:
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise StoreError(
                    f"{store.describe(digest)}: ended {left} bytes before byte {last + 1}; run `custodes verify`"
                )
            left -= len(chunk)
            yield chunk


#: What a recording's file name says its bytes are. Only audio and video types: anything else is sent as
#: application/octet-stream, so a stored file named .html or .svg is never rendered as a page of this site.
_MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".qt": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".3gp": "video/3gpp",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".amr": "audio/amr",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
}


def media_type(name: str) -> str:
    """The ``Content-Type`` of a recording named ``name`` (its original file name)."""
    dot = name.rfind(".")
    return _MEDIA_TYPES.get(name[dot:].lower(), "application/octet-stream") if dot >= 0 else "application/octet-stream"


# ---- view tickets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What a ticket lets its holder stream: one recording's object, for the account that started the view,
    under the request that allowed it, until ``expires_ns``."""

    account: str
    segment: int
    request: int
    digest: str
    size: int
    name: str
    expires_ns: int

    def open_at(self, now: int) -> bool:
        return now < self.expires_ns


class Tickets:
    """The view tickets one app has handed out, in memory: at most ``limit``; expired ones are dropped as new
    ones come, and when full the one closest to its expiry makes room (its player has to start the view
    again, which is logged again: never a silent extension)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._views: dict[str, View] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._views)

    def issue(self, view: View, now: int | None = None) -> str:
        """A new random ticket (256 bits, URL-safe) for ``view``."""
        ticket = secrets.token_urlsafe(32)
        now = time.time_ns() if now is None else now
        with self._lock:
            for t in [t for t, v in self._views.items() if not v.open_at(now)]:
                del self._views[t]
            while len(self._views) >= self._limit:
                del self._views[min(self._views, key=lambda t: self._views[t].expires_ns)]
            self._views[ticket] = view
        return ticket

    def check(self, ticket: str, account: str, now: int | None = None) -> View | None:
        """The view of ``ticket`` if ``account`` started it and it has not expired; None otherwise (an unknown
        ticket, another account's, or an expired one, which is dropped)."""
        now = time.time_ns() if now is None else now
        with self._lock:
            view = self._views.get(ticket)
            if view is not None and not view.open_at(now):
                del self._views[ticket]
                return None
        if view is None or not secrets.compare_digest(view.account, account):
            return None
        return view


def view_request(archive: Archive, segment: int, now: int | None = None) -> int | None:
    """The current person's approved, unexpired ``view`` request that names ``segment`` (the one open longest,
    when there are several), or None."""
    person = access.current_person(archive)
    now = time.time_ns() if now is None else now
    best: tuple[int, int] | None = None
    for row in archive.catalog.access.all():
        if row.requester != person or row.status != "approved" or row.purpose != "view":
            continue
        until = row.valid_until_ns if row.valid_until_ns is not None else 2**63 - 1
        if until <= now or segment not in json.loads(row.segments):
            continue
        if best is None or until > best[1]:
            best = (row.id, until)
    return None if best is None else best[0]


def start_view(archive: Archive, tickets: Tickets, segment: int, request_id: int | None = None) -> tuple[str, View]:
    """Start a view of recording ``segment`` by the current person (run it acting as them: custodes.identity)
    under ``request_id``, or their approved view request that names it: the one access-log entry of the view
    (action ``stream``, checked and logged by :func:`custodes.access.grant_for`, as ``access open`` is), then a
    ticket. Raises :class:`custodes.access.AccessDenied`, the refusal logged, when no request allows it."""
    if request_id is None:
        request_id = view_request(archive, segment)
        if request_id is None:
            raise access.refuse(
                archive,
                None,
                "stream",
                segment,
                f"no approved, unexpired view request of {access.current_person(archive)}'s names recording "
                f"{segment}; request access first",
            )
    req = access.grant_for(archive, request_id, [segment], "view", "stream", gives=True)
    recorded = archive.catalog.segments.name_and_object(segment)
    stored = None if recorded is None else archive.catalog.objects.get(recorded[1])
    if recorded is None or stored is None:  # grant_for refused unknown and purged recordings
        raise CustodesError(f"recording {segment} has no stored object; run `custodes verify`")
    now = time.time_ns()
    until = now + TICKET_HOURS * 3600 * 10**9
    if req.valid_until is not None:
        until = min(until, req.valid_until)
    name, digest = recorded
    view = View(current_caller().account, segment, request_id, digest, stored.size, name, until)
    return tickets.issue(view, now), view


# ---- export bags for download ----------------------------------------------------------------


def export_for_download(archive: Archive, case: str, request_id: int, description: str = "") -> int:
    """Export ``case`` under ``request_id`` as the current person (custodes.export.export_case: its checks, its
    ledger entries) into the archive's ``exports/`` folder, for download; returns the export's ledger entry,
    which names the bag (``exports/<entry>/``) and the download (``/exports/<entry>/bag.tar``)."""
    folder = exports_folder(archive)
    folder.mkdir(mode=0o700, exist_ok=True)
    sweep_exports(archive)
    target = folder / f"{_NEW}{time.time_ns()}-{secrets.token_hex(4)}"
    with owned_output(archive, target):
        export_case(archive, case, request_id, target, description)
    entry = _export_entry_of(target)
    os.rename(target, folder / str(entry))
    fsync_dir(folder)
    return entry


def _export_entry_of(bag: Path) -> int:
    """The ledger index of the ``export`` entry a bag's own custody files prove (the bag was just written)."""
    for line in (bag / "custody" / "ledger-entries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if json.loads(base64.b64decode(row["entry"])).get("type") == "export":
            return int(row["index"])
    raise CustodesError(f"{bag}: the bag holds no export entry")


def open_download(archive: Archive, export: int) -> Download:
    """The bag of export ``export`` for the current person, the download checked and logged by
    :func:`custodes.access.grant_for` under the export's request (action ``download``: the requester only,
    while the request is approved and unexpired, for every recording of the bag); a refusal is logged and
    raised as :class:`custodes.access.AccessDenied`. An export that is not in the ledger, or whose bag the web
    page did not write (an export by the CLI went to its caller's folder), is a CustodesError, before anything
    is logged."""
    sweep_exports(archive, keep=export)
    data = archive.catalog.ledger.entry(export) if export >= 0 else None
    entry: dict[str, Any] = json.loads(data) if data is not None else {}
    if entry.get("type") != "export":
        raise CustodesError(f"no export {export} in this archive's ledger")
    bag = exports_folder(archive) / str(export)
    if bag.is_symlink() or not bag.is_dir():
        raise CustodesError(
            f"export {export} (case {entry.get('case')}) has no bag kept in the archive: a bag exported on the page "
            "is kept only while its export request's window is open, and one exported with the CLI went to the "
            "folder its exporter named"
        )
    tar = bag_tar(bag, f"custodes-export-{export}")  # before the grant: a bag that cannot be sent is not logged
    segments = [int(s) for s in entry.get("segments", [])]
    access.grant_for(archive, int(entry["request"]), segments, "export", "download", gives=True)
    return Download(export, str(entry.get("case")), bag, tar)


@dataclass(frozen=True)
class BagTar:
    """An uncompressed POSIX (pax) tar of a bag, ready to send: its exact ``size`` in bytes, and its bytes
    from :meth:`chunks`, made as they are sent."""

    size: int
    members: tuple[tuple[bytes, Path | None, int], ...]  # (header, the file or None for a folder, its size)

    def chunks(self) -> Iterator[bytes]:
        """The tar's bytes: each header, then the file a chunk at a time and its padding, then the end."""
        sent = 0
        for header, path, size in self.members:
            yield header
            sent += len(header)
            if path is not None:
                yield from _file_chunks(path, size)
                sent += size + _padding(size)
                if _padding(size):
                    yield bytes(_padding(size))
        yield bytes(self.size - sent)  # two zero blocks, and zeros to the end of the last record


@dataclass(frozen=True)
class Download:
    """A bag its requester may download now: the export's ledger entry, its case, the bag's folder, and the
    tar it is sent as (entries under ``custodes-export-<entry>/``)."""

    export: int
    case: str
    bag: Path
    tar: BagTar


def bag_tar(bag: Path, top: str) -> BagTar:
    """The tar of the bag folder ``bag``, its entries under ``top/`` (what a person's ``tar -x`` makes), in
    name order. A link or anything but a plain file or folder inside the bag is refused (the web page wrote
    the bag; something else put it there)."""
    members: list[tuple[bytes, Path | None, int]] = []
    size = 0
    for rel, path, st in _walk(bag):
        info = tarfile.TarInfo(f"{top}/{rel}" if rel else top)
        info.mtime = int(st.st_mtime)
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            members.append((info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), None, 0))
        else:
            info.size, info.mode = st.st_size, 0o644
            members.append((info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), path, st.st_size))
            size += st.st_size + _padding(st.st_size)
        size += len(members[-1][0])
    size += 2 * tarfile.BLOCKSIZE
    size += -size % tarfile.RECORDSIZE
    return BagTar(size, tuple(members))


def _walk(bag: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(path relative to the bag, path, lstat) of the bag's folder and everything in it, folders before their
    contents, names in order; never through a link."""
    pending = [("", bag)]
    while pending:
        rel, path = pending.pop()
        st = os.lstat(path)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise CustodesError(f"{path}: not a plain file or folder; the bag is not served")
        yield rel, path, st
        if stat.S_ISDIR(st.st_mode):
            names = sorted(os.listdir(path), reverse=True)
            pending += [(f"{rel}/{n}" if rel else n, path / n) for n in names]


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    """``size`` bytes of the file at ``path`` (never through a link), a chunk at a time; a file that changed
    size since the tar's headers were made stops the download (the headers promised other bytes)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        left = size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
        if left or f.read(1):
            raise CustodesError(f"{path}: changed while the bag was sent")


# ---- the routes ----------------------------------------------------------------------------------

#: The routes of this module (custodes.web.app includes them).
router = APIRouter()

_tickets_lock = threading.Lock()


def tickets_of(app: FastAPI) -> Tickets:
    """The view tickets of ``app`` (made on first use)."""
    with _tickets_lock:
        tickets: Tickets | None = getattr(app.state, "view_tickets", None)
        if tickets is None:
            tickets = app.state.view_tickets = Tickets()
    return tickets


def _wants_json(request: Request) -> bool:
    """An API caller (a bearer token, or a client that does not ask for HTML) gets JSON, a browser a redirect."""
    return request.headers.get("authorization") is not None or "text/html" not in request.headers.get("accept", "")


@router.post("/recordings/{segment}/view", response_model=None)
def view_recording(
    request: Request,
    segment: int,
    request_id: int | None = Form(None, alias="request"),  # noqa: B008
    who: Visitor = Depends(csrf_checked),  # noqa: B008
) -> Response:
    """Start a view of a recording inside the visitor's approved, unexpired view request (``request``, or the
    one that names the recording): one access-log entry, then the player's source. 403, the refusal logged,
    without one."""
    with acting(request, who) as archive:
        ticket, view = start_view(archive, tickets_of(request.app), segment, request_id)
        unsigned = _said_unsigned(archive)
    src = f"/stream/{ticket}"
    if _wants_json(request):
        said = {"src": src, "segment": segment, "request": view.request, "expires": rfc3339(view.expires_ns)}
        return JSONResponse({**said, **({"recorded_unsigned": str(unsigned)} if unsigned else {})})
    if unsigned is not None:
        from custodes.web.pages import recorded_back

        return recorded_back(request, who, f"/recordings/{segment}?view={ticket}", unsigned)
    return RedirectResponse(f"/recordings/{segment}?view={ticket}", status_code=303)


def _said_unsigned(archive: Archive) -> CheckpointFileError | None:
    """The grant's checkpoint that could not be written (Archive.unsigned), said in the service's log."""
    if archive.unsigned is not None:
        _log.warning("%s: %s", access.UNSIGNED_GRANT, archive.unsigned)
    return archive.unsigned


@router.get("/stream/{ticket}", response_model=None, operation_id="stream_recording")
@router.head("/stream/{ticket}", response_model=None, operation_id="stream_recording_head")
def stream(request: Request, ticket: str, who: Visitor = Depends(visitor)) -> Response:  # noqa: B008
    """The recording a view ticket opened: whole (200) or the one range asked (206), 416 for a range outside
    it. Only for the visitor who started the view, and only until the ticket expires (the window's end at the
    latest); checked in memory, with no catalog read or write."""
    view = tickets_of(request.app).check(ticket, who.account)
    if view is None:
        raise HTTPException(
            403,
            "this view is not open for you (not yours, or its window has closed); start it again from the "
            "recording's page",
        )
    etag = f'"{view.digest}"'  # the object's name: its bytes never change
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store",
        "ETag": etag,
        "Content-Type": media_type(view.name),
    }
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # RFC 9110 §13.1.5: the range was asked of other bytes, so the whole is sent
    try:
        span = parse_range(wanted, view.size)
    except RangeNotSatisfiable as e:
        return Response(status_code=416, headers={**headers, "Content-Range": e.content_range()})
    status = 200 if span is None else 206
    if span is None:
        span = ByteRange(0, view.size - 1, view.size)
    else:
        headers["Content-Range"] = span.content_range()
    headers["Content-Length"] = str(max(span.length, 0))
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    store = reading(request).store
    chunks = ranged(store, view.digest, span.first, span.last)
    try:
        first = next(chunks, b"")  # a missing object is an error page, not a 200 cut off at once
    except ObjectMissingError as e:
        raise HTTPException(410, f"recording {view.segment}'s object is not in the store: {e}") from None
    return StreamingResponse(_then(first, chunks), status_code=status, headers=headers)


def _then(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


@router.get("/recordings/{segment}/proof.json", response_model=None)
def proof(request: Request, segment: int, who: Visitor = Depends(visitor)) -> Response:  # noqa: B008
    """The inclusion proof of a recording's ledger entry in the latest signed checkpoint, with the checkpoint
    and verifier key, as ``custodes ledger proof --segment`` prints it: checkable offline with
    :func:`custodes.proofs.verify` and the archive's verifier key. Any role may fetch it."""
    try:
        made = proofs.ledger_proof(reading(request), segment=segment)
    except LedgerError as e:
        raise HTTPException(404 if f"no segment {segment}" == str(e) else 409, str(e)) from None
    return JSONResponse(made, headers={"Content-Disposition": f'attachment; filename="recording-{segment}-proof.json"'})


@router.post("/exports", response_model=None)
def export(
    request: Request,
    case: str = Form(..., min_length=1, max_length=200),  # noqa: B008
    request_id: int = Form(..., alias="request"),  # noqa: B008
    description: str = Form("", max_length=2000),  # noqa: B008
    who: Visitor = Depends(csrf_checked),  # noqa: B008
) -> Response:
    """Export a case as a bag under the visitor's approved export request (custodes.export.export_case, the
    CLI's own), kept in the archive for them to download: 303 to the download, or JSON for an API caller."""
    form_text("case", case)
    form_text("description", description, single_line=False)
    with acting(request, who) as archive:
        entry = export_for_download(archive, case, request_id, description)
    href = f"/exports/{entry}/bag.tar"
    if _wants_json(request):
        return JSONResponse({"export": entry, "case": case, "request": request_id, "href": href})
    return RedirectResponse(href, status_code=303)


@router.get("/exports/{export}/bag.tar", response_model=None)
def bag_download(request: Request, export: int, who: Visitor = Depends(visitor)) -> Response:  # noqa: B008
    """The bag of an export made through the page, as an uncompressed tar built as it is sent: only for the
    person the export was approved for, while its window is open; each download an access-log entry."""
    with acting(request, who) as archive:
        download = open_download(archive, export)
        _said_unsigned(archive)
    headers = {
        "Content-Length": str(download.tar.size),
        "Content-Disposition": f'attachment; filename="custodes-export-{download.export}.tar"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(download.tar.chunks(), media_type="application/x-tar", headers=headers)
