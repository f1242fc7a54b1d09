"""The FastAPI application: routes, problem+json error handling and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from json import dumps
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from device.inventory import idempotency, operators
from device.inventory.db import Database
from device.inventory.lockout import DEFAULT_POLICY, LockoutPolicy
from device.inventory.problems import PROBLEM_MEDIA_TYPE, ProblemError, problem_type
from device.inventory.routes import API_PREFIX, BEARER_SCHEME, authenticate, public, router

__all__ = ["API_PREFIX", "create_app", "open_app", "openapi_document"]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_FAILED",
}


def _problem_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="inventory"'
    if exc.code == "IDEMPOTENCY_IN_PROGRESS":
        headers["Retry-After"] = "1"
    if exc.code == "CHECK_DIGIT_LOCKED":
        headers["Retry-After"] = str(exc.extra["retry_after_s"])
    return _problem_response(exc.body(request.url.path), exc.status, headers)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(part) for part in err.get("loc", ())), "message": str(err["msg"])}
        for err in exc.errors()
    ]
    fields = ", ".join(e["field"] for e in errors) or "the request"
    problem = ProblemError("VALIDATION_FAILED", f"Fix {fields}.", errors=errors)
    return _problem_response(problem.body(request.url.path), 422)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL")
    body = {
        "type": problem_type(code),
        "title": str(exc.detail),
        "status": exc.status_code,
        "detail": f"{request.method} {request.url.path}: {exc.detail}",
        "code": code,
        "instance": request.url.path,
    }
    return _problem_response(body, exc.status_code, dict(exc.headers or {}))


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    problem = ProblemError("INTERNAL", "The inventory service failed; the change was not applied.")
    return _problem_response(problem.body(request.url.path), 500)


def _authenticated_operations() -> set[tuple[str, str]]:
    """(path, method) of every route that depends on `authenticate`."""
    secured: set[tuple[str, str]] = set()
    for mounted in (public, router, operators.router):
        for route in mounted.routes:
            if isinstance(route, APIRoute) and any(
                dep.call is authenticate for dep in route.dependant.dependencies
            ):
                secured.update((route.path, method.lower()) for method in route.methods or ())
    return secured


def _problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, with every error response typed as application/problem+json."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    schema.setdefault("components", {})["securitySchemes"] = BEARER_SCHEME
    secured = _authenticated_operations()
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if (path, method) in secured:
                op["security"] = [{name: []} for name in BEARER_SCHEME]
            for param in op.get("parameters", []):
                # Optional to FastAPI only so that a missing key gets our 400, not a 422.
                if param["name"] == "Idempotency-Key":
                    param["required"] = True
            for status, response in op.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
    app.openapi_schema = schema
    return schema


def _application(lifespan: Any = None) -> FastAPI:
    app = FastAPI(
        title="warehouse-voice reference inventory",
        version="1.0.0",
        description=(
            "Items, bins, stock, pick tasks, damage reports and handoffs for the warehouse-voice "
            "appliance. Writes need an Idempotency-Key unless `dry_run=true`; errors are RFC 9457 "
            "problem+json with a machine `code`."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    # The routes go straight into the app's own route list (each already carries the prefix
    # and its router's responses): an included router is matched once more per request at
    # every level, and that matching was about a third of FastAPI's work on a cheap request.
    # The routes most requests take come first.
    app.router.routes.extend([*router.routes, *public.routes, *operators.router.routes])
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)
    app.openapi = lambda: _problem_openapi(app)  # type: ignore[method-assign]
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, without a database behind it."""
    return _application().openapi()


def create_app(
    db: Database,
    *,
    own_db: bool = False,
    lockout_policy: LockoutPolicy = DEFAULT_POLICY,
    lease_s: float = idempotency.DEFAULT_LEASE_S,
) -> FastAPI:
    """The API over `db`. With `own_db`, the app closes the database when it shuts down.

    `lease_s` (the CLI's --idempotency-lease-s) is kept so existing commands still start; this
    server commits each write and its Idempotency-Key together, so its keys hold no lease.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db.write(idempotency.purge)
        try:
            yield
        finally:
            if own_db:
                db.close()

    app = _application(lifespan)
    app.state.db = db
    app.state.lockout = lockout_policy
    app.state.lease_s = lease_s
    return app


def open_app(db_path: Path) -> FastAPI:
    """An app that owns its database file (what the server and CLI use)."""
    return create_app(Database(db_path), own_db=True)
