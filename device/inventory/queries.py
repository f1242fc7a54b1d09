"""Read-only queries. Each takes a connection already inside a read transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from device.inventory.db import Conn
from device.inventory.models import (
    AuditEntry,
    ConfusableRef,
    Item,
    Location,
    NextPick,
    PickTask,
    StockEntry,
    Zone,
)
from device.inventory.problems import ProblemError

MAX_LIST = 500

_STOCK_SELECT = """
SELECT s.location, l.spoken, l.zone, s.sku, s.quantity, s.version
FROM stock s JOIN locations l ON l.code = s.location
"""


def _stock_entry(row: Any) -> StockEntry:
    return StockEntry(
        location=row["location"],
        spoken_location=row["spoken"],
        zone=Zone(row["zone"]),
        sku=row["sku"],
        quantity=row["quantity"],
        version=row["version"],
    )


def stock_entries(
    conn: Conn,
    *,
    sku: str | None = None,
    location: str | None = None,
    include_empty: bool = True,
    limit: int = 100,
) -> list[StockEntry]:
    where: list[str] = []
    params: list[object] = []
    if sku is not None:
        where.append("s.sku = ?")
        params.append(sku)
    if location is not None:
        where.append("s.location = ?")
        params.append(location)
    if not include_empty:
        where.append("s.quantity > 0")
    sql = _STOCK_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY s.location, s.sku LIMIT ?"
    params.append(min(limit, MAX_LIST))
    return [_stock_entry(row) for row in conn.execute(sql, params)]


def sku_neighbours(sku: str) -> list[str]:
    """SKUs one slip away: two adjacent digits swapped, or one digit misheard."""
    out: list[str] = []
    digits = list(sku)
    for i in range(len(digits) - 1):
        swapped = digits.copy()
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        out.append("".join(swapped))
    for i, original in enumerate(digits):
        for d in "0123456789":
            if d != original:
                out.append("".join([*digits[:i], d, *digits[i + 1 :]]))
    return [s for s in dict.fromkeys(out) if s != sku]


def sku_suggestions(conn: Conn, sku: str) -> list[str]:
    candidates = sku_neighbours(sku)
    marks = ",".join("?" * len(candidates))
    rows = conn.execute(f"SELECT sku FROM items WHERE sku IN ({marks}) ORDER BY sku", candidates)
    return [row["sku"] for row in rows][:5]


def _items(conn: Conn, rows: Iterable[Any]) -> list[Item]:
    rows = list(rows)
    if not rows:
        return []
    skus = [row["sku"] for row in rows]
    marks = ",".join("?" * len(skus))
    stock: dict[str, list[StockEntry]] = {sku: [] for sku in skus}
    for srow in conn.execute(
        _STOCK_SELECT + f" WHERE s.sku IN ({marks}) AND s.quantity > 0 ORDER BY s.location",
        skus,
    ):
        stock[srow["sku"]].append(_stock_entry(srow))
    confusables: dict[str, list[ConfusableRef]] = {sku: [] for sku in skus}
    for crow in conn.execute(
        f"SELECT c.sku, c.other_sku, c.reason, i.name FROM confusables c "
        f"JOIN items i ON i.sku = c.other_sku WHERE c.sku IN ({marks}) ORDER BY c.other_sku",
        skus,
    ):
        confusables[crow["sku"]].append(
            ConfusableRef(sku=crow["other_sku"], name=crow["name"], reason=crow["reason"])
        )
    return [
        Item(
            sku=row["sku"],
            gtin=row["gtin"],
            name=row["name"],
            unit=row["unit"],
            zone=Zone(row["zone"]),
            total_quantity=sum(e.quantity for e in stock[row["sku"]]),
            locations=stock[row["sku"]],
            confusable_with=confusables[row["sku"]],
        )
        for row in rows
    ]


def item(conn: Conn, sku: str) -> Item:
    found = _items(conn, conn.execute("SELECT * FROM items WHERE sku = ?", (sku,)))
    if not found:
        raise ProblemError(
            "ITEM_NOT_FOUND",
            f"There is no item with SKU {sku}.",
            suggestions=sku_suggestions(conn, sku),
        )
    return found[0]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_items(
    conn: Conn,
    *,
    q: str | None = None,
    sku: str | None = None,
    gtin: str | None = None,
    limit: int = 5,
) -> list[Item]:
    where: list[str] = []
    params: list[object] = []
    if sku is not None:
        where.append("sku = ?")
        params.append(sku)
    if gtin is not None:
        where.append("gtin = ?")
        params.append(gtin)
    for word in (q or "").split():
        where.append("name LIKE ? ESCAPE '\\'")
        params.append(f"%{_like_escape(word)}%")
    sql = "SELECT * FROM items"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY sku LIMIT ?"
    params.append(min(limit, MAX_LIST))
    return _items(conn, conn.execute(sql, params))


def _location_row(conn: Conn, code: str) -> Any:
    row: Any = conn.execute("SELECT * FROM locations WHERE code = ?", (code,)).fetchone()
    if row is None:
        raise ProblemError("LOCATION_NOT_FOUND", f"There is no location {code}.", location=code)
    return row


def location(conn: Conn, code: str) -> Location:
    row = _location_row(conn, code)
    return Location(
        code=row["code"],
        spoken=row["spoken"],
        zone=Zone(row["zone"]),
        stock=stock_entries(conn, location=code, include_empty=False),
    )


def digits_match(conn: Conn, code: str, check_digits: str) -> bool:
    row = _location_row(conn, code)
    return bool(row["check_digits"] == check_digits)


_PICK_SELECT = """
SELECT p.*, i.name AS item_name, l.spoken, l.zone
FROM pick_tasks p JOIN items i ON i.sku = p.sku JOIN locations l ON l.code = p.location
"""


def pick_task_from_row(row: Any) -> PickTask:
    return PickTask(
        id=row["id"],
        sku=row["sku"],
        item_name=row["item_name"],
        location=row["location"],
        spoken_location=row["spoken"],
        zone=Zone(row["zone"]),
        quantity=row["quantity"],
        picked_quantity=row["picked_quantity"],
        status=row["status"],
    )


def pick_task(conn: Conn, task_id: str) -> PickTask:
    row = conn.execute(_PICK_SELECT + " WHERE p.id = ?", (task_id,)).fetchone()
    if row is None:
        raise ProblemError("PICK_NOT_FOUND", f"There is no pick task {task_id}.")
    return pick_task_from_row(row)


def next_pick(conn: Conn) -> NextPick:
    row = conn.execute(_PICK_SELECT + " WHERE p.status = 'open' ORDER BY p.seq LIMIT 1").fetchone()
    open_tasks = conn.execute("SELECT count(*) FROM pick_tasks WHERE status = 'open'").fetchone()
    return NextPick(
        task=pick_task_from_row(row) if row is not None else None, open_tasks=open_tasks[0]
    )


def audit(
    conn: Conn,
    *,
    sku: str | None = None,
    location: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    where: list[str] = []
    params: list[object] = []
    if sku is not None:
        where.append("sku = ?")
        params.append(sku)
    if action is not None:
        where.append("action = ?")
        params.append(action)
    if location is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(audit_log.before) WHERE key = ?)")
        params.append(location)
    sql = "SELECT * FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(min(limit, MAX_LIST))
    return [
        AuditEntry(
            id=row["id"],
            at=row["at"],
            action=row["action"],
            device_id=row["device_id"],
            operator=row["operator"],
            session_id=row["session_id"],
            call_id=row["call_id"],
            idempotency_key=row["idempotency_key"],
            sku=row["sku"],
            ref=row["ref"],
            before=json.loads(row["before"]),
            after=json.loads(row["after"]),
            delta=json.loads(row["delta"]),
        )
        for row in conn.execute(sql, params)
    ]
