"""Stock-changing operations. Each runs inside the writer's `BEGIN IMMEDIATE` transaction.

Every decrement is conditional (`... WHERE quantity >= ?`) and every count is conditional on
the version the counter saw, so the database itself refuses an oversell or a lost update even
if a check above it were wrong. Each operation appends exactly one audit row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from device.inventory import queries
from device.inventory.db import Conn
from device.inventory.models import (
    CountRequest,
    CountResult,
    DamageRequest,
    DamageResult,
    Handoff,
    HandoffRequest,
    MoveRequest,
    MoveResult,
    PickConfirmRequest,
    PickResult,
)
from device.inventory.problems import ProblemError


@dataclass(frozen=True)
class WriteContext:
    """Who asked for a write; copied into the audit row."""

    device_id: str
    operator: str | None = None
    session_id: str | None = None
    call_id: str | None = None
    idempotency_key: str | None = None
    dry_run: bool = False


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _item_zone(conn: Conn, sku: str) -> str:
    row = conn.execute("SELECT zone FROM items WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise ProblemError(
            "ITEM_NOT_FOUND",
            f"There is no item with SKU {sku}.",
            suggestions=queries.sku_suggestions(conn, sku),
        )
    return str(row["zone"])


def _location_zone(conn: Conn, code: str) -> str:
    row = conn.execute("SELECT zone FROM locations WHERE code = ?", (code,)).fetchone()
    if row is None:
        raise ProblemError("LOCATION_NOT_FOUND", f"There is no location {code}.", location=code)
    return str(row["zone"])


def _on_hand(conn: Conn, location: str, sku: str) -> tuple[int, int]:
    """(quantity, version); (0, 0) when the SKU has no stock row at that location."""
    row = conn.execute(
        "SELECT quantity, version FROM stock WHERE location = ? AND sku = ?", (location, sku)
    ).fetchone()
    return (0, 0) if row is None else (int(row["quantity"]), int(row["version"]))


def _decrement(conn: Conn, location: str, sku: str, quantity: int) -> None:
    cur = conn.execute(
        "UPDATE stock SET quantity = quantity - ?, version = version + 1 "
        "WHERE location = ? AND sku = ? AND quantity >= ?",
        (quantity, location, sku, quantity),
    )
    if cur.rowcount != 1:
        available, _ = _on_hand(conn, location, sku)
        raise ProblemError(
            "INSUFFICIENT_STOCK",
            f"Only {available} of SKU {sku} at {location}; {quantity} requested.",
            available=available,
            requested=quantity,
        )


def _increment(conn: Conn, location: str, sku: str, quantity: int) -> None:
    conn.execute(
        "INSERT INTO stock (location, sku, quantity, version) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (location, sku) DO UPDATE SET "
        "quantity = stock.quantity + excluded.quantity, version = stock.version + 1",
        (location, sku, quantity),
    )


def _audit(
    conn: Conn,
    ctx: WriteContext,
    action: str,
    *,
    sku: str | None,
    before: dict[str, int],
    after: dict[str, int],
    ref: str | None = None,
) -> int | None:
    delta = {loc: after[loc] - before.get(loc, 0) for loc in after}
    cur = conn.execute(
        "INSERT INTO audit_log (at, action, device_id, operator, session_id, call_id, "
        "idempotency_key, sku, ref, before, after, delta) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            now_iso(),
            action,
            ctx.device_id,
            ctx.operator,
            ctx.session_id,
            ctx.call_id,
            ctx.idempotency_key,
            sku,
            ref,
            json.dumps(before),
            json.dumps(after),
            json.dumps(delta),
        ),
    )
    audit_id = int(cur.fetchone()[0])
    return None if ctx.dry_run else audit_id


def _not_on_hold(location: str, zone: str, what: str) -> None:
    if zone == "QA-HOLD":
        raise ProblemError(
            "LOCATION_ON_HOLD",
            f"{location} is a QA-hold location; a supervisor must release stock before it is "
            f"{what}.",
        )


def _move_facts(conn: Conn, req: MoveRequest) -> Any:
    """Item zone, both locations' zones and the SKU's quantity at each, in one statement (five
    lookups that were five round trips to PostgreSQL)."""
    return conn.execute(
        "SELECT (SELECT zone FROM items WHERE sku = ?) AS item_zone, "
        "(SELECT zone FROM locations WHERE code = ?) AS from_zone, "
        "(SELECT zone FROM locations WHERE code = ?) AS to_zone, "
        "(SELECT quantity FROM stock WHERE location = ? AND sku = ?) AS from_quantity, "
        "(SELECT quantity FROM stock WHERE location = ? AND sku = ?) AS to_quantity",
        (req.sku, req.from_location, req.to_location, req.from_location, req.sku,
         req.to_location, req.sku),
    ).fetchone()  # fmt: skip


def move(conn: Conn, ctx: WriteContext, req: MoveRequest) -> MoveResult:
    facts = _move_facts(conn, req)
    item_zone, from_zone, to_zone = facts["item_zone"], facts["from_zone"], facts["to_zone"]
    if item_zone is None:
        _item_zone(conn, req.sku)  # raises ITEM_NOT_FOUND with suggestions
    for code, zone in ((req.from_location, from_zone), (req.to_location, to_zone)):
        if zone is None:
            _location_zone(conn, code)  # raises LOCATION_NOT_FOUND
    if req.from_location == req.to_location:
        raise ProblemError("SAME_LOCATION", f"Both locations are {req.from_location}.")
    _not_on_hold(req.from_location, from_zone, "moved")
    if to_zone not in (item_zone, "QA-HOLD"):
        raise ProblemError(
            "ZONE_MISMATCH",
            f"SKU {req.sku} is stored in {item_zone}; {req.to_location} is a {to_zone} location.",
            item_zone=item_zone,
            location_zone=to_zone,
        )
    before = {
        req.from_location: int(facts["from_quantity"] or 0),
        req.to_location: int(facts["to_quantity"] or 0),
    }
    _decrement(conn, req.from_location, req.sku, req.quantity)
    _increment(conn, req.to_location, req.sku, req.quantity)
    after = {
        req.from_location: before[req.from_location] - req.quantity,
        req.to_location: before[req.to_location] + req.quantity,
    }
    audit_id = _audit(conn, ctx, "move", sku=req.sku, before=before, after=after)
    return MoveResult(
        dry_run=ctx.dry_run,
        audit_id=audit_id,
        sku=req.sku,
        before=before,
        after=after,
        delta={loc: after[loc] - before[loc] for loc in after},
        from_location=req.from_location,
        to_location=req.to_location,
        quantity=req.quantity,
    )


def count(conn: Conn, ctx: WriteContext, req: CountRequest) -> CountResult:
    _item_zone(conn, req.sku)
    _location_zone(conn, req.location)
    quantity, version = _on_hand(conn, req.location, req.sku)
    if version != req.expected_version:
        raise ProblemError(
            "STALE_COUNT",
            f"SKU {req.sku} at {req.location} is at version {version}, not "
            f"{req.expected_version}: read the stock again and recount.",
            current_version=version,
            current_quantity=quantity,
        )
    if version == 0:
        conn.execute(
            "INSERT INTO stock (location, sku, quantity, version) VALUES (?, ?, ?, 1)",
            (req.location, req.sku, req.counted_quantity),
        )
    else:
        cur = conn.execute(
            "UPDATE stock SET quantity = ?, version = version + 1 "
            "WHERE location = ? AND sku = ? AND version = ?",
            (req.counted_quantity, req.location, req.sku, version),
        )
        if cur.rowcount != 1:  # pragma: no cover - guarded by the writer lock
            raise ProblemError("STALE_COUNT", "The stock changed during the count.")
    before = {req.location: quantity}
    after = {req.location: req.counted_quantity}
    audit_id = _audit(conn, ctx, "count", sku=req.sku, before=before, after=after)
    return CountResult(
        dry_run=ctx.dry_run,
        audit_id=audit_id,
        sku=req.sku,
        before=before,
        after=after,
        delta={req.location: req.counted_quantity - quantity},
        location=req.location,
        counted_quantity=req.counted_quantity,
        previous_quantity=quantity,
        version=version + 1,
    )


def _hold_location(conn: Conn) -> str | None:
    row = conn.execute(
        "SELECT code FROM locations WHERE zone = 'QA-HOLD' ORDER BY code LIMIT 1"
    ).fetchone()
    return None if row is None else str(row["code"])


def report_damage(conn: Conn, ctx: WriteContext, req: DamageRequest) -> DamageResult:
    _item_zone(conn, req.sku)
    zone = _location_zone(conn, req.location)
    # Damaged units leave pickable stock for QA hold; already-held stock stays where it is.
    hold = _hold_location(conn) if zone != "QA-HOLD" else None
    hold = hold or req.location
    before = {req.location: _on_hand(conn, req.location, req.sku)[0]}
    after = dict(before)
    if hold != req.location:
        before[hold] = _on_hand(conn, hold, req.sku)[0]
        _decrement(conn, req.location, req.sku, req.quantity)
        _increment(conn, hold, req.sku, req.quantity)
        after = {
            req.location: before[req.location] - req.quantity,
            hold: before[hold] + req.quantity,
        }
    elif before[req.location] < req.quantity:
        raise ProblemError(
            "INSUFFICIENT_STOCK",
            f"Only {before[req.location]} of SKU {req.sku} at {req.location}.",
            available=before[req.location],
            requested=req.quantity,
        )
    cur = conn.execute(
        "INSERT INTO damage_reports (sku, location, hold_location, quantity, damage, note, "
        "device_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            req.sku,
            req.location,
            hold,
            req.quantity,
            req.damage.value,
            req.note,
            ctx.device_id,
            now_iso(),
        ),
    )
    report_id = int(cur.fetchone()[0])
    audit_id = _audit(
        conn, ctx, "damage", sku=req.sku, before=before, after=after, ref=f"damage:{report_id}"
    )
    return DamageResult(
        dry_run=ctx.dry_run,
        audit_id=audit_id,
        sku=req.sku,
        before=before,
        after=after,
        delta={loc: after[loc] - before[loc] for loc in after},
        report_id=None if ctx.dry_run else report_id,
        location=req.location,
        hold_location=hold,
        quantity=req.quantity,
        damage=req.damage,
    )


def confirm_pick(
    conn: Conn, ctx: WriteContext, task_id: str, req: PickConfirmRequest
) -> PickResult:
    task = queries.pick_task(conn, task_id)
    if task.status != "open":
        raise ProblemError("PICK_NOT_OPEN", f"Pick {task_id} is already {task.status}.")
    if not queries.digits_match(conn, task.location, req.check_digits):
        raise ProblemError(
            "CHECK_DIGIT_MISMATCH",
            f"Those check digits are not the ones at {task.location}.",
            location=task.location,
        )
    if req.quantity > task.quantity:
        raise ProblemError(
            "OVER_PICK",
            f"Pick {task_id} asks for {task.quantity}; {req.quantity} is too many.",
            requested=task.quantity,
        )
    before = {task.location: _on_hand(conn, task.location, task.sku)[0]}
    if req.quantity > 0:
        _decrement(conn, task.location, task.sku, req.quantity)
    after = {task.location: before[task.location] - req.quantity}
    short = req.quantity < task.quantity
    conn.execute(
        "UPDATE pick_tasks SET status = ?, picked_quantity = ?, completed_at = ?, "
        "completed_by = ? WHERE id = ? AND status = 'open'",
        ("short" if short else "picked", req.quantity, now_iso(), ctx.device_id, task_id),
    )
    audit_id = _audit(conn, ctx, "pick", sku=task.sku, before=before, after=after, ref=task_id)
    return PickResult(
        dry_run=ctx.dry_run,
        audit_id=audit_id,
        sku=task.sku,
        before=before,
        after=after,
        delta={task.location: -req.quantity},
        task=queries.pick_task(conn, task_id),
        short=short,
        requested=task.quantity,
        picked=req.quantity,
    )


def create_handoff(conn: Conn, ctx: WriteContext, req: HandoffRequest) -> Handoff:
    cur = conn.execute(
        "INSERT INTO handoffs (reason, summary, sku, location, device_id, operator, session_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            req.reason.value,
            req.summary,
            req.sku,
            req.location,
            ctx.device_id,
            ctx.operator,
            ctx.session_id,
            now_iso(),
        ),
    )
    handoff_id = int(cur.fetchone()[0])
    audit_id = _audit(
        conn, ctx, "handoff", sku=req.sku, before={}, after={}, ref=f"handoff:{handoff_id}"
    )
    return Handoff(
        dry_run=ctx.dry_run,
        id=None if ctx.dry_run else handoff_id,
        reason=req.reason,
        summary=req.summary,
        status="open",
        audit_id=audit_id,
    )
