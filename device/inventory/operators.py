"""Operators: who may sign on to a device. `GET /operators/{operator_id}` checks one.

A worker signs on at the start of a shift by scanning their badge or saying their operator
number; the device asks this endpoint whether that operator exists and is active, and then
sends the operator's id with every write (the `X-Operator` header the audit log records).
The table is in schema.sql; the demo seed adds `DEMO_OPERATORS`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from device.inventory.db import Conn, Database
from device.inventory.problems import Problem, ProblemError
from device.inventory.routes import API_PREFIX, Device

OPERATOR_ID_PATTERN = r"^[0-9]{3,8}$"
DEMO_OPERATORS = [("1001", "Dana Whitfield"), ("1002", "Sam Okafor"), ("4711", "Alex Moreno")]


class Operator(BaseModel):
    id: str
    name: str


def seed_operators(conn: Conn) -> None:
    conn.executemany("INSERT INTO operators (id, name, active) VALUES (?, ?, 1)", DEMO_OPERATORS)


def find_operator(conn: Conn, operator_id: str) -> Operator:
    row = conn.execute(
        "SELECT id, name FROM operators WHERE id = ? AND active = 1", (operator_id,)
    ).fetchone()
    if row is None:
        raise ProblemError(
            "OPERATOR_NOT_FOUND", f"No active operator {operator_id}; check the badge or number."
        )
    return Operator(id=row[0], name=row[1])


router = APIRouter(
    prefix=API_PREFIX,
    responses={
        401: {"model": Problem, "description": "Missing or unknown device token"},
        422: {"model": Problem, "description": "Invalid request"},
    },
)


@router.get(
    "/operators/{operator_id}",
    response_model=Operator,
    responses={404: {"model": Problem, "description": "No active operator with that id"}},
    summary="Check an operator id (badge or spoken number) before signing on",
)
async def get_operator(
    request: Request,
    _device: Device,
    operator_id: Annotated[str, Path(pattern=OPERATOR_ID_PATTERN)],
) -> Response:
    db: Database = request.app.state.db
    found = db.read(lambda c: find_operator(c, operator_id))
    return Response(found.model_dump_json(), media_type="application/json")
