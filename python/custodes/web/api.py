"""The JSON API (``/api/v1``): the same reads and actions as the pages and the CLI, for agency tools.

Reads (any role): the query API's segments, findings, device events and devices, paged with a cursor
(:mod:`custodes.query`: the same filters, as query parameters, times as RFC 3339 or int ns); one segment; the
access requests; a task's coverage; the compliance report; a segment's ledger proof. Actions: request access,
approve or deny, explain a gap, place and release a hold. Each action calls the very library function the CLI
command calls, inside :func:`custodes.web.context.acting` as the visitor, so roles, refusals (logged by the
library), the ledger and the access log are the CLI's. Each answer is the CLI's ``--json`` object, built by the
same ``to_json()`` or function and described by the same TypedDict (one schema), which the OpenAPI document
at ``/openapi.json`` publishes for every route.

Who: a bearer token (``Authorization: Bearer TOKEN``) or a session cookie, whose POSTs also send
``X-CSRF-Token`` (custodes.web.auth). Every error is ``{"error": "...", "status": N}``: 400 a body that is not
JSON or a cursor this API did not give; 401 no valid session or token; 403 refused (the refusal is in the
access log and the ledger); 404 a request, hold, segment, task, device, officer or case the archive does not
hold; 409 the archive's state refuses it now (a request decided already, a hold released already, a window
longer than the policy allows); 422 a value that is not valid; 503 the catalog's schema is not the one
custodes makes, so it writes nothing into it (catalog.SchemaDiffersError: the message names the way out), the
catalog is busy or the disk full. An act done and recorded whose checkpoint could not be written is 202,
``{"recorded": true, "warning": "..."}``: it stands, and must not be sent again. Never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, TypedDict, TypeVar

import typing_extensions
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.exceptions import HTTPException

from custodes import query
from custodes.access import PURPOSES, AccessDenied, AccessRequestJSON, approve, deny, request_access, requests
from custodes.archive import CheckpointFileError
from custodes.defaults import INT64_MAX, INT64_MIN, TimeRangeError, ns_from_seconds, says_something, text_problem
from custodes.errors import CustodesError, UnknownRecordError
from custodes.proofs import LedgerProofJSON, ledger_proof
from custodes.records import Device, DeviceEvent, RecordedFinding, Segment
from custodes.reports import SCOPES, Report, ReportError, build_report, default_lang, report_schema
from custodes.retention import HoldJSON, ReleaseJSON, hold, hold_json, release, release_json
from custodes.tasks import CAUSES, AnnotationJSON, CoverageCheckJSON, annotation_json, coverage_check, explain_gap
from custodes.web.auth import LoginRequired, Visitor, csrf_checked, visitor
from custodes.web.context import MAX_TEXT, acting, reading, server_condition, status_of

__all__ = ["MAX_LIMIT", "PREFIX", "ErrorJSON", "router"]

PREFIX = "/api/v1"
#: The most records one page of a read holds (``limit``); more is a 422, not a page that holds the archive.
MAX_LIMIT = 1000
#: Records per page when ``limit`` is not given.
DEFAULT_LIMIT = 100
#: The most segments one access request names.
MAX_SEGMENTS = 10_000

_log = logging.getLogger("custodes.web")
T = TypeVar("T")


class ErrorJSON(TypedDict):
    """Every error of the API: what went wrong, in one line, and the HTTP status."""

    error: str
    status: int


class RecordedJSON(TypedDict):
    """An act done and recorded in the ledger whose checkpoint could not be written or signed (a full disk): 202,
    ``recorded`` true, and why in ``warning``. It stands and must not be sent again: a status no client retries
    by itself (a 503 is retried by many, and the hold placed twice: a hostile review)."""

    recorded: bool
    status: int
    warning: str


# ---- the library's TypedDicts, as pydantic reads them ------------------------------------------------------

#: Each TypedDict remade once: the OpenAPI document then names it once.
_REMADE: dict[Any, Any] = {}
#: Called with a name made at run time (a class statement cannot be).
_TYPED_DICT: Any = typing_extensions.TypedDict


def pydantic_typed(tp: Any, made: dict[Any, Any] | None = None, open_records: frozenset[str] = frozenset()) -> Any:
    """``tp`` with every ``typing.TypedDict`` in it remade as a ``typing_extensions.TypedDict`` of the same keys,
    required keys and docstring, which pydantic (and so FastAPI's OpenAPI document) takes on Python 3.11; the
    library's types stay plain ``typing`` (custodes does not depend on typing_extensions). Records named in
    ``open_records`` keep keys beyond their type's (a report finding carries the facts of its kind)."""
    made = _REMADE if made is None else made
    if typing.is_typeddict(tp):
        if tp not in made:
            hints = typing.get_type_hints(tp)
            fields = {
                key: (
                    pydantic_typed(hint, made, open_records)
                    if key in tp.__required_keys__
                    else typing_extensions.NotRequired[pydantic_typed(hint, made, open_records)]
                )
                for key, hint in hints.items()
            }
            remade: Any = _TYPED_DICT(tp.__name__, fields)
            remade.__doc__ = tp.__doc__
            if tp.__name__ in open_records:
                remade.__pydantic_config__ = ConfigDict(extra="allow")
            made[tp] = remade
        return made[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return typing.Union[tuple(pydantic_typed(a, made, open_records) for a in args)]  # noqa: UP007
    if origin is list:
        return types.GenericAlias(list, (pydantic_typed(args[0], made, open_records),))
    if origin is dict:
        return types.GenericAlias(dict, (args[0], pydantic_typed(args[1], made, open_records)))
    return tp


def _open_report_records() -> frozenset[str]:
    """The report's records whose JSON may hold more keys than their type (as report_schema() says)."""
    return frozenset(name for name, d in report_schema()["$defs"].items() if d.get("additionalProperties") is True)


# ---- errors: one JSON shape, the status the failure means ----------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _invalid(exc: RequestValidationError) -> JSONResponse:
    """A body that is not JSON is 400; a value that is not valid is 422, naming where it is."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(400, "the request body is not JSON")
    where = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', 'not valid')}"
        for e in errors
    )
    return _error(422, where or "the request is not valid")


def _status_of(exc: CustodesError) -> int:
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ValueError):
        return 422
    return status_of(exc, 409)


class ApiRoute(APIRoute):
    """A route of this API: whatever fails, the answer is :class:`ErrorJSON` with the status the failure means
    (the module's docstring), never a traceback; an unexpected failure is logged for the operator, and answered
    500 without its details."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return _invalid(e)
            except LoginRequired as e:
                return _error(401, e.why, {"WWW-Authenticate": "Bearer"})
            except HTTPException as e:
                return _error(e.status_code, str(e.detail), dict(e.headers or {}))
            except CheckpointFileError as e:
                # After the act (its checkpoint alone is missing): done, and said so (it was 409, an error like any
                # other, and a client sent it again: a second hold).
                recorded = RecordedJSON(recorded=True, status=202, warning=str(e))
                return JSONResponse(recorded, status_code=202)
            except CustodesError as e:
                return _error(_status_of(e), str(e))
            except Exception as e:
                _log.exception("%s %s failed", request.method, request.url.path)
                if (condition := server_condition(request, e)) is not None:
                    return _error(503, condition)
                return _error(500, "internal error; the server's log has the details")

        return answer


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": pydantic_typed(ErrorJSON), "description": why}
    for status, why in (
        (400, "The body is not JSON, or the cursor is not one this API gave."),
        (401, "No valid session or token."),
        (403, "Refused: the visitor's role may not, or a session's POST lacks its CSRF token (logged)."),
        (404, "A request, hold, segment, task, device, officer or case the archive does not hold."),
        (409, "The archive's state refuses it now (decided already, released already, beyond the policy)."),
        (422, "A value that is not valid."),
    )
}
#: The answer an action may give besides its own (:class:`RecordedJSON`), on every action's route.
_RECORDED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": pydantic_typed(RecordedJSON),
        "description": "Done and recorded, its checkpoint not written (a full disk): it stands; do not send it again.",
    }
}

router = APIRouter(prefix=PREFIX, route_class=ApiRoute, responses=_ERRORS, tags=["api"])

Reader = Annotated[Visitor, Depends(visitor)]
Actor = Annotated[Visitor, Depends(csrf_checked)]


# ---- values in queries and bodies -------------------------------------------------------------------------


def _instant(value: int | str | None, name: str) -> int | None:
    """A time given as int ns since 1970 UTC (a number, or its digits) or as RFC 3339 with an offset."""
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise TimeRangeError(f"{name}={value}: outside the 64-bit nanoseconds a time is kept in")
        return value
    from custodes.tasks import parse_time

    return parse_time(value, name)


def _line(value: str) -> str:
    problem = text_problem(value, single_line=True)
    if problem is not None:
        raise ValueError(problem)
    return value


def _text(value: str) -> str:
    problem = text_problem(value, single_line=False)
    if problem is not None:
        raise ValueError(problem)
    return value


def _said(value: str) -> str:
    if not says_something(value):  # (blank, ".", or characters that show nothing: custodes.defaults)
        raise ValueError("say why, in words")
    return value


TextLine = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_line)]
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_text)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_line), AfterValidator(_said)]
CatalogId = Annotated[int, Field(ge=1, le=INT64_MAX)]
Time = StrictInt | StrictStr
TimeQuery = Annotated[str | None, Query(description="RFC 3339 with an offset, or int ns since 1970 UTC")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Records in the page (at most {MAX_LIMIT}).")]
Cursor = Annotated[str | None, Query(max_length=200, description="The `next` of the page before.")]
Filter = Annotated[str | None, Query(max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessRequestBody(_Body):
    """Ask to view, export or purge recordings (``custodes access request``)."""

    segments: list[CatalogId] = Field(min_length=1, max_length=MAX_SEGMENTS)
    reason: Reason
    purpose: str = "view"

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str) -> str:
        if value not in PURPOSES:
            raise ValueError(f"one of {', '.join(PURPOSES)}")
        return value


class ApproveBody(_Body):
    """Approve a request for a window of ``hours`` (default the policy's ``[access] window_hours``)."""

    hours: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    note: TextLine = ""


class DenyBody(_Body):
    """Deny a request; the reason is logged and ledgered."""

    reason: Reason


class GapExplainBody(_Body):
    """Why ``device`` did not record from ``start`` to ``end`` (``custodes gap explain``); times RFC 3339 with an
    offset or int ns; ``offset``: seconds into ``segment`` where the officer states it."""

    device: TextLine = Field(min_length=1)
    start: Time
    end: Time
    cause: str
    note: Text = ""
    segment: CatalogId | None = None
    offset: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("cause")
    @classmethod
    def _cause(cls, value: str) -> str:
        if value not in CAUSES:
            raise ValueError(f"one of {', '.join(CAUSES)}")
        return value


class HoldBody(_Body):
    """Place a legal hold on a recording (``custodes retention hold``)."""

    segment: CatalogId
    reason: Reason


# ---- pages of the query API -------------------------------------------------------------------------------


def _cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def _position(cursor: str | None, after: type) -> dict[str, Any]:
    """The position a cursor this API gave stands for (``after``: the type of the key it resumes after)."""
    if cursor is None:
        return {}
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        position = None
    if (
        not isinstance(position, dict)
        or not isinstance(position.get("after"), after)
        or isinstance(position.get("after"), bool)
        or not isinstance(position.get("skip", 0), int)
        or (after is int and not 0 <= position["after"] <= INT64_MAX)
        or not 0 <= position.get("skip", 0) <= INT64_MAX
    ):
        raise HTTPException(400, f"cursor {cursor!r} is not one this API gave: pass the `next` of a page")
    return position


def _take(items: Iterator[T], limit: int, skip: int = 0) -> tuple[list[T], bool]:
    """``limit`` items after the first ``skip``, and whether there are more; the walk is closed (its catalog
    reads end)."""
    try:
        got = list(itertools.islice(items, skip, skip + limit + 1))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
    return got[:limit], len(got) > limit


class SegmentPage(TypedDict):
    """A page of segments (custodes.records.Segment; times int ns UTC) and the cursor of the next (None: the
    last page)."""

    segments: list[Segment]
    next: str | None


class FindingPage(TypedDict):
    """A page of findings (custodes.records.RecordedFinding) and the cursor of the next."""

    findings: list[RecordedFinding]
    next: str | None


class EventPage(TypedDict):
    """A page of device log entries (custodes.records.DeviceEvent) and the cursor of the next."""

    events: list[DeviceEvent]
    next: str | None


class DevicePage(TypedDict):
    """A page of devices (custodes.records.Device) and the cursor of the next."""

    devices: list[Device]
    next: str | None


class AccessRequestList(TypedDict):
    """Every access request, by id, each as ``custodes access request --json`` prints one."""

    requests: list[AccessRequestJSON]


@router.get("/segments", response_model=pydantic_typed(SegmentPage))
def get_segments(
    request: Request,
    who: Reader,
    device: Filter = None,
    officer: Filter = None,
    case: Filter = None,
    task: Filter = None,
    start: TimeQuery = None,
    end: TimeQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> SegmentPage:
    """The segments the filters select (custodes.query.segments), by id."""
    after = _position(cursor, int).get("after", 0)
    walk = query.segments(
        reading(request),
        device=device,
        officer=officer,
        case=case,
        task=task,
        start=_instant(start, "start"),
        end=_instant(end, "end"),
        after=after,
    )
    page, more = _take(walk, limit)
    return {"segments": page, "next": _cursor({"after": page[-1].id}) if more else None}


@router.get("/segments/{segment}", response_model=Segment)
def get_segment(request: Request, who: Reader, segment: CatalogId) -> Segment:
    """One segment, as the query API gives it."""
    return _segment(request, segment)


def _segment(request: Request, segment: int) -> Segment:
    found, _ = _take(query.segments(reading(request), after=segment - 1), 1)
    if not found or found[0].id != segment:
        raise UnknownRecordError(f"no segment {segment}")
    return found[0]


@router.get("/findings", response_model=pydantic_typed(FindingPage))
def get_findings(
    request: Request,
    who: Reader,
    device: Filter = None,
    officer: Filter = None,
    case: Filter = None,
    task: Filter = None,
    start: TimeQuery = None,
    end: TimeQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> FindingPage:
    """The findings the filters select (custodes.query.findings): those ingests recorded, by id, then the tasks'
    unexplained gaps, then the device registry's."""
    position = _position(cursor, int)
    after, skip = position.get("after", 0), position.get("skip", 0)
    walk = query.findings(
        reading(request),
        device=device,
        officer=officer,
        case=case,
        task=task,
        start=_instant(start, "start"),
        end=_instant(end, "end"),
        after=after,
    )
    # Recorded findings resume after their id; the derived ones, which have none, by how many were given.
    page, more = _take(walk, limit, skip)
    if not more:
        return {"findings": page, "next": None}
    ids = [i for i, f in enumerate(page) if f.id is not None]
    if ids:
        last = ids[-1]
        after, skip = page[last].id or 0, len(page) - last - 1
    else:
        skip += len(page)
    return {"findings": page, "next": _cursor({"after": after, "skip": skip})}


@router.get("/events", response_model=pydantic_typed(EventPage))
def get_events(
    request: Request,
    who: Reader,
    device: Filter = None,
    officer: Filter = None,
    task: Filter = None,
    start: TimeQuery = None,
    end: TimeQuery = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> EventPage:
    """The device log entries the filters select (custodes.query.events), by id."""
    after = _position(cursor, int).get("after", 0)
    walk = query.events(
        reading(request),
        device=device,
        officer=officer,
        task=task,
        start=_instant(start, "start"),
        end=_instant(end, "end"),
        after=after,
    )
    page, more = _take(walk, limit)
    return {"events": page, "next": _cursor({"after": page[-1].id}) if more else None}


@router.get("/devices", response_model=pydantic_typed(DevicePage))
def get_devices(request: Request, who: Reader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> DevicePage:
    """Every device the archive knows (custodes.query.devices), by id."""
    after = _position(cursor, str).get("after", "")
    page, more = _take(query.devices(reading(request), after=after), limit)
    return {"devices": page, "next": _cursor({"after": page[-1].id}) if more else None}


# ---- other reads ------------------------------------------------------------------------------------------


@router.get("/access/requests", response_model=pydantic_typed(AccessRequestList))
def get_access_requests(request: Request, who: Reader) -> AccessRequestList:
    """Every access request (custodes.access.requests), as the CLI prints each."""
    return {"requests": [r.to_json() for r in requests(reading(request), seen_by=who.person)]}


@router.get("/tasks/{task}/coverage", response_model=pydantic_typed(CoverageCheckJSON))
def get_task_coverage(request: Request, who: Reader, task: str) -> CoverageCheckJSON:
    """The task's coverage and its recording checklist, as ``custodes task coverage --task ID --json`` prints it."""
    archive = reading(request)
    if archive.catalog.tasks.get(task) is None:
        raise UnknownRecordError(f"no task {task!r} in this archive")
    return coverage_check(archive, [task]).to_json()


@router.get(
    "/report",
    response_model=pydantic_typed(Report, open_records=_open_report_records()),
    response_description="The report, byte for byte as `custodes report --format json` writes it.",
)
def get_report(
    request: Request,
    who: Reader,
    start: Annotated[str | None, Query(alias="from", description="Period start, RFC 3339 with an offset.")] = None,
    end: Annotated[str | None, Query(alias="to", description="Period end (exclusive), RFC 3339.")] = None,
    scope: Annotated[str, Query(description=f"One of {', '.join(SCOPES)}.")] = "archive",
    value: Annotated[str | None, Query(max_length=200, description="The unit, officer, device or case.")] = None,
    lang: Annotated[str | None, Query(description="zh or en (default: the policy's, else zh).")] = None,
    at: Annotated[str | None, Query(description="The moment the report speaks for (default now), RFC 3339.")] = None,
) -> Response:
    """The compliance report for a period and scope (custodes.reports.build_report), as the ``json`` reporter
    writes it for ``custodes report --format json`` (docs/report.schema.json)."""
    from custodes.plugins import plugin_manager
    from custodes.tasks import parse_time

    archive = reading(request)
    try:  # the scope, the period and the language are the library's to judge (build_report), once
        model = build_report(
            archive,
            start=None if start is None else parse_time(start, "from"),
            end=None if end is None else parse_time(end, "to"),
            scope=scope,
            value=value or None,
            lang=lang or default_lang(archive),
            at=None if at is None else parse_time(at, "at"),
        )
    except ReportError as e:
        raise HTTPException(422, str(e)) from None
    body = io.BytesIO()
    plugin_manager().reporters.get("json").render(model, body)
    return Response(body.getvalue(), media_type="application/json")


@router.get("/proofs/segments/{segment}", response_model=pydantic_typed(LedgerProofJSON))
def get_segment_proof(request: Request, who: Reader, segment: CatalogId) -> LedgerProofJSON:
    """The inclusion proof of the segment's ingest entry against the latest signed checkpoint, as ``custodes
    ledger proof --segment ID`` prints it; checkable offline with custodes.proofs.verify."""
    _segment(request, segment)
    return ledger_proof(reading(request), segment=segment)


# ---- actions: the CLI's library functions, as the visitor --------------------------------------------------


@router.post("/access/requests", status_code=201, response_model=pydantic_typed(AccessRequestJSON), responses=_RECORDED)
def post_access_request(request: Request, who: Actor, body: AccessRequestBody) -> AccessRequestJSON:
    """Ask to view, export or purge recordings, as ``custodes access request``."""
    with acting(request, who) as archive:
        return request_access(archive, list(body.segments), body.reason, body.purpose).to_json()


@router.post(
    "/access/requests/{request_id}/approve", response_model=pydantic_typed(AccessRequestJSON), responses=_RECORDED
)
def post_approve(
    request: Request, who: Actor, request_id: CatalogId, body: Annotated[ApproveBody | None, Body()] = None
) -> AccessRequestJSON:
    """Approve another person's request (approvers only) for a window, as ``custodes access approve``; without a
    body, for the policy's window and without a note."""
    given = body if body is not None else ApproveBody()
    with acting(request, who) as archive:
        return approve(archive, request_id, given.hours, given.note).to_json()


@router.post(
    "/access/requests/{request_id}/deny", response_model=pydantic_typed(AccessRequestJSON), responses=_RECORDED
)
def post_deny(request: Request, who: Actor, request_id: CatalogId, body: DenyBody) -> AccessRequestJSON:
    """Deny a request (approvers only), as ``custodes access deny``."""
    with acting(request, who) as archive:
        return deny(archive, request_id, body.reason).to_json()


@router.post("/gaps/explain", status_code=201, response_model=pydantic_typed(AnnotationJSON), responses=_RECORDED)
def post_gap_explain(request: Request, who: Actor, body: GapExplainBody) -> AnnotationJSON:
    """Record why a device did not record from ``start`` to ``end``, as ``custodes gap explain``."""
    start, end = _instant(body.start, "start"), _instant(body.end, "end")
    assert start is not None and end is not None  # both are required fields
    offset = None if body.offset is None else ns_from_seconds(body.offset, "offset")
    with acting(request, who) as archive:
        annotation = explain_gap(archive, body.device, start, end, body.cause, body.note, body.segment, offset)
    return annotation_json(annotation)


@router.post("/holds", status_code=201, response_model=pydantic_typed(HoldJSON), responses=_RECORDED)
def post_hold(request: Request, who: Actor, body: HoldBody) -> HoldJSON:
    """Place a legal hold on a recording (custodians and approvers), as ``custodes retention hold``."""
    with acting(request, who) as archive:
        return hold_json(hold(archive, body.segment, body.reason), body.segment)


@router.post("/holds/{hold_id}/release", response_model=pydantic_typed(ReleaseJSON), responses=_RECORDED)
def post_release(request: Request, who: Actor, hold_id: CatalogId) -> ReleaseJSON:
    """Release a legal hold (approvers only), as ``custodes retention release``."""
    with acting(request, who) as archive:
        release(archive, hold_id)
    return release_json(hold_id)
