"""The one path every write takes: a dry run, or the change and its Idempotency-Key record
committed together in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from fastapi import Request, Response
from pydantic import BaseModel

from device.inventory import idempotency
from device.inventory.db import Conn, Database
from device.inventory.operations import WriteContext
from device.inventory.problems import PROBLEM_MEDIA_TYPE, ProblemError

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class CallHeaders:
    """Request headers that say who is writing and on behalf of which conversation."""

    idempotency_key: str | None
    operator: str | None
    session_id: str | None
    call_id: str | None


def stored_response(outcome: idempotency.Replay, *, replayed: bool) -> Response:
    media = PROBLEM_MEDIA_TYPE if outcome.status_code >= 400 else "application/json"
    headers = {REPLAYED_HEADER: "true" if replayed else "false"}
    return Response(
        outcome.body, status_code=outcome.status_code, media_type=media, headers=headers
    )


def _key(raw: str | None) -> str:
    # Structured-header form ("abc") and the plain form (abc) name the same key.
    key = (raw or "").strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key:
        raise ProblemError(
            "IDEMPOTENCY_KEY_REQUIRED",
            "Send an Idempotency-Key header: a unique string per intended change, reused only "
            "to retry that same change.",
        )
    return key


async def run_write(
    request: Request,
    *,
    device_id: str,
    headers: CallHeaders,
    dry_run: bool,
    body: BaseModel,
    operation: Callable[[Conn, WriteContext], BaseModel],
    success_status: int = 201,
) -> Response:
    db: Database = request.app.state.db
    ctx = WriteContext(
        device_id=device_id,
        operator=headers.operator,
        session_id=headers.session_id,
        call_id=headers.call_id,
        dry_run=dry_run,
    )
    key = _key(headers.idempotency_key)
    if dry_run:
        # Nothing is stored for a dry run: the key is required for uniformity, then ignored.
        preview = db.dry_run(lambda conn: operation(conn, ctx))
        return Response(preview.model_dump_json(), status_code=200, media_type="application/json")

    instance = request.url.path
    fp = idempotency.fingerprint(request.method, instance, body.model_dump(mode="json"))
    keyed = replace(ctx, idempotency_key=key)

    def once(conn: Conn) -> tuple[idempotency.Replay, bool]:
        return idempotency.run_once(
            conn,
            device_id,
            key,
            fp,
            lambda c: operation(c, keyed).model_dump_json().encode(),
            instance,
            success_status=success_status,
        )

    try:
        outcome, replayed = db.write(once)
    except ProblemError:
        raise
    except Exception as exc:
        # Rolled back whole, key included: a retry runs the write afresh. Answered here as a
        # problem, so the connection stays usable (an exception that leaves the app makes
        # uvicorn close it right after the 500).
        log.exception("write %s failed; nothing was stored under its Idempotency-Key", instance)
        raise ProblemError(
            "INTERNAL", "The inventory service failed; the change was not applied."
        ) from exc
    return stored_response(outcome, replayed=replayed)
