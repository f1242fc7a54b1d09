"""HTTP routes of the reference inventory API, mounted under /api/v1."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel

from device.inventory import lockout, operations, queries
from device.inventory.db import Conn, Database
from device.inventory.models import (
    GTIN_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    LOCATION_PATTERN,
    PICK_ID_PATTERN,
    SKU_PATTERN,
    AuditList,
    CountRequest,
    CountResult,
    DamageRequest,
    DamageResult,
    Handoff,
    HandoffRequest,
    Health,
    Item,
    ItemList,
    Location,
    MoveRequest,
    MoveResult,
    NextPick,
    PickConfirmRequest,
    PickResult,
    PickTask,
    StockList,
    Verification,
    VerifyRequest,
)
from device.inventory.problems import Problem, ProblemError
from device.inventory.tokens import device_for_token
from device.inventory.writes import REPLAYED_HEADER, CallHeaders, run_write

API_PREFIX = "/api/v1"

# The OpenAPI security scheme every authenticated operation names (added in app.py, since
# `authenticate` reads the header itself rather than through a FastAPI security dependency).
BEARER_SCHEME = {
    "HTTPBearer": {
        "type": "http",
        "description": "Per-device token: `Bearer wvi_...`",
        "scheme": "bearer",
    }
}


async def authenticate(request: Request) -> str:
    """The device behind the request's bearer token. It reads the header directly: a FastAPI
    `Security(HTTPBearer)` sub-dependency cost about a tenth of a cheap request's CPU."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ProblemError("UNAUTHORIZED", "Send 'Authorization: Bearer <device token>'.")
    device = device_for_token(_db(request), token)
    if device is None:
        raise ProblemError("UNAUTHORIZED", "The bearer token is unknown or revoked.")
    return device


Device = Annotated[str, Depends(authenticate)]


async def call_headers(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Required on every write; one key per intended change, reused only "
            "for retries of it. Ignored by dry runs.",
        ),
    ] = None,
    x_operator: Annotated[str | None, Header(alias="X-Operator", max_length=128)] = None,
    x_session_id: Annotated[str | None, Header(alias="X-Session-Id", max_length=128)] = None,
    x_call_id: Annotated[str | None, Header(alias="X-Call-Id", max_length=128)] = None,
) -> CallHeaders:
    return CallHeaders(
        idempotency_key=idempotency_key,
        operator=x_operator,
        session_id=x_session_id,
        call_id=x_call_id,
    )


Headers = Annotated[CallHeaders, Depends(call_headers)]
DryRun = Annotated[
    bool,
    Query(description="Validate and return the would-be before/after without changing anything"),
]
SkuQuery = Query(pattern=SKU_PATTERN)
LocationPath = Path(pattern=LOCATION_PATTERN)

_PROBLEM = {"model": Problem}
_UNPARSEABLE = {**_PROBLEM, "description": "The body is not JSON text (say, not UTF-8)"}
_LOCKED = {
    **_PROBLEM,
    "description": "Too many wrong check digits from this device at this location",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_PROBLEM, "description": "Idempotency-Key missing, or the body is not JSON text"},
    404: {**_PROBLEM, "description": "Unknown item, location or task"},
    409: {**_PROBLEM, "description": "Conflict (stock, key in progress, task closed)"},
    412: {**_PROBLEM, "description": "Stale count version"},
}


def _write_doc(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    return {
        **_WRITE_RESPONSES,
        200: {"model": model, "description": f"Dry run: what the {what} would do"},
        201: {
            "model": model,
            "description": f"The {what} was applied (or replayed for a repeated key)",
            "headers": {REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true", "false"]}}},
        },
    }


def _json(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


public = APIRouter(prefix=API_PREFIX)
router = APIRouter(
    prefix=API_PREFIX,
    responses={
        401: {**_PROBLEM, "description": "Missing or unknown device token"},
        422: {**_PROBLEM, "description": "Invalid request"},
    },
)


@public.get("/health", response_model=Health)
async def health() -> Response:
    return _json(Health(status="ok"))


@router.get(
    "/items", response_model=ItemList, summary="Find items by SKU, barcode or words of the name"
)
async def find_items(
    request: Request,
    _device: Device,
    q: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
    sku: Annotated[str | None, SkuQuery] = None,
    gtin: Annotated[str | None, Query(pattern=GTIN_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Response:
    found = _db(request).read(lambda c: queries.find_items(c, q=q, sku=sku, gtin=gtin, limit=limit))
    return _json(ItemList(items=found))


@router.get("/items/{sku}", response_model=Item, responses={404: _PROBLEM})
async def get_item(
    request: Request, _device: Device, sku: Annotated[str, Path(pattern=SKU_PATTERN)]
) -> Response:
    return _json(_db(request).read(lambda c: queries.item(c, sku)))


@router.get("/stock", response_model=StockList, summary="Stock rows, filtered by SKU/location")
async def get_stock(
    request: Request,
    _device: Device,
    sku: Annotated[str | None, SkuQuery] = None,
    location: Annotated[str | None, Query(pattern=LOCATION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    rows = _db(request).read_one(  # one statement
        lambda c: queries.stock_entries(c, sku=sku, location=location, limit=limit)
    )
    return _json(StockList(stock=rows))


@router.get("/locations/{code}", response_model=Location, responses={404: _PROBLEM})
async def get_location(
    request: Request, _device: Device, code: Annotated[str, LocationPath]
) -> Response:
    return _json(_db(request).read(lambda c: queries.location(c, code)))


@router.post(
    "/locations/{code}/verify",
    response_model=Verification,
    responses={400: _UNPARSEABLE, 404: _PROBLEM, 429: _LOCKED},
    summary="Compare the check digits a worker spoke with the bin label (counts the attempt)",
)
async def verify_location(
    request: Request, device: Device, code: Annotated[str, LocationPath], body: VerifyRequest
) -> Response:
    policy: lockout.LockoutPolicy = request.app.state.lockout

    def attempt(conn: Conn) -> Verification:
        match = queries.digits_match(conn, code, body.check_digits)
        left = lockout.record(conn, device, code, match, policy)
        return Verification(location=code, match=match, attempts_left=left)

    return _json(_db(request).write(attempt))


@router.post(
    "/moves", status_code=201, response_model=MoveResult, responses=_write_doc(MoveResult, "move")
)
async def move_stock(
    request: Request, device: Device, headers: Headers, body: MoveRequest, dry_run: DryRun = False
) -> Response:
    return await run_write(
        request,
        device_id=device,
        headers=headers,
        dry_run=dry_run,
        body=body,
        operation=lambda c, ctx: operations.move(c, ctx, body),
    )


@router.post(
    "/counts",
    status_code=201,
    response_model=CountResult,
    responses=_write_doc(CountResult, "count"),
)
async def record_count(
    request: Request, device: Device, headers: Headers, body: CountRequest, dry_run: DryRun = False
) -> Response:
    return await run_write(
        request,
        device_id=device,
        headers=headers,
        dry_run=dry_run,
        body=body,
        operation=lambda c, ctx: operations.count(c, ctx, body),
    )


@router.post(
    "/damage-reports",
    status_code=201,
    response_model=DamageResult,
    responses=_write_doc(DamageResult, "damage report"),
)
async def report_damage(
    request: Request, device: Device, headers: Headers, body: DamageRequest, dry_run: DryRun = False
) -> Response:
    return await run_write(
        request,
        device_id=device,
        headers=headers,
        dry_run=dry_run,
        body=body,
        operation=lambda c, ctx: operations.report_damage(c, ctx, body),
    )


@router.get("/picks/next", response_model=NextPick, summary="The next open pick task")
async def next_pick(request: Request, _device: Device) -> Response:
    return _json(_db(request).read(queries.next_pick))


@router.get("/picks/{task_id}", response_model=PickTask, responses={404: _PROBLEM})
async def get_pick(
    request: Request, _device: Device, task_id: Annotated[str, Path(pattern=PICK_ID_PATTERN)]
) -> Response:
    return _json(_db(request).read(lambda c: queries.pick_task(c, task_id)))


@router.post(
    "/picks/{task_id}/confirm",
    status_code=201,
    response_model=PickResult,
    responses={**_write_doc(PickResult, "pick confirmation"), 429: _LOCKED},
)
async def confirm_pick(
    request: Request,
    device: Device,
    headers: Headers,
    task_id: Annotated[str, Path(pattern=PICK_ID_PATTERN)],
    body: PickConfirmRequest,
    dry_run: DryRun = False,
) -> Response:
    db = _db(request)
    policy: lockout.LockoutPolicy = request.app.state.lockout

    def locked_out(conn: Conn) -> str:
        location = queries.pick_task(conn, task_id).location
        lockout.check(conn, device, location)
        return location

    where = db.read(locked_out)
    try:
        response = await run_write(
            request,
            device_id=device,
            headers=headers,
            dry_run=dry_run,
            body=body,
            operation=lambda c, ctx: operations.confirm_pick(c, ctx, task_id, body),
        )
    except ProblemError as problem:  # a dry run raises its problem
        if problem.code == "CHECK_DIGIT_MISMATCH":
            db.write(lambda c: lockout.record(c, device, where, False, policy))
        raise
    # A replay repeats an earlier answer: it is not a new guess.
    if response.headers.get(REPLAYED_HEADER) == "false":
        if response.status_code == 201:
            db.write(lambda c: lockout.record(c, device, where, True, policy))
        elif json.loads(bytes(response.body)).get("code") == "CHECK_DIGIT_MISMATCH":
            db.write(lambda c: lockout.record(c, device, where, False, policy))
    return response


@router.post(
    "/handoffs", status_code=201, response_model=Handoff, responses=_write_doc(Handoff, "handoff")
)
async def create_handoff(
    request: Request,
    device: Device,
    headers: Headers,
    body: HandoffRequest,
    dry_run: DryRun = False,
) -> Response:
    return await run_write(
        request,
        device_id=device,
        headers=headers,
        dry_run=dry_run,
        body=body,
        operation=lambda c, ctx: operations.create_handoff(c, ctx, body),
    )


@router.get("/audit", response_model=AuditList, summary="Audit log, newest first")
async def get_audit(
    request: Request,
    _device: Device,
    sku: Annotated[str | None, SkuQuery] = None,
    location: Annotated[str | None, Query(pattern=LOCATION_PATTERN)] = None,
    action: Annotated[str | None, Query(pattern=r"^(move|count|damage|pick|handoff)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    entries = _db(request).read_one(  # one statement
        lambda c: queries.audit(c, sku=sku, location=location, action=action, limit=limit)
    )
    return _json(AuditList(entries=entries))
