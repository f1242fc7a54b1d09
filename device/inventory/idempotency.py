"""Idempotency-Key store (after draft-ietf-httpapi-idempotency-key-header).

A write runs in two transactions. `claim` records the key as in progress, with a lease;
`apply` (same transaction as the stock change) stores the final response and marks it done.
So a duplicate that arrives meanwhile sees "in progress" (409) instead of running twice, and a
key whose server died between the two steps becomes claimable again once its lease runs out:
its change never committed, because the change and the "done" mark commit together.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.inventory.db import Conn
from device.inventory.problems import ProblemError

DEFAULT_LEASE_S = 30.0
RETENTION_S = 24 * 3600.0


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: bytes


@dataclass(frozen=True)
class Claim:
    lease: str


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """Same request, same fingerprint, regardless of key order or whitespace in the JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def claim(
    conn: Conn,
    device_id: str,
    key: str,
    fp: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    now: float | None = None,
) -> Replay | Claim:
    now = time.time() if now is None else now
    row = conn.execute(
        "SELECT fingerprint, state, lease_until, status_code, body FROM idempotency "
        "WHERE device_id = ? AND key = ?",
        (device_id, key),
    ).fetchone()
    lease = secrets.token_hex(8)
    if row is None:
        conn.execute(
            "INSERT INTO idempotency (device_id, key, fingerprint, state, lease, lease_until, "
            "created_at) VALUES (?, ?, ?, 'in_progress', ?, ?, ?)",
            (device_id, key, fp, lease, now + lease_s, now),
        )
        return Claim(lease)
    if row["fingerprint"] != fp:
        raise ProblemError(
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used with a different request body or path; "
            "use a new key for a new request.",
        )
    if row["state"] == "done":
        return Replay(int(row["status_code"]), bytes(row["body"], "utf-8"))
    if row["lease_until"] > now:
        raise ProblemError(
            "IDEMPOTENCY_IN_PROGRESS",
            "The first request with this Idempotency-Key is still running; retry shortly.",
        )
    conn.execute(
        "UPDATE idempotency SET lease = ?, lease_until = ? WHERE device_id = ? AND key = ?",
        (lease, now + lease_s, device_id, key),
    )
    return Claim(lease)


def apply(
    conn: Conn,
    device_id: str,
    key: str,
    lease: str,
    operation: Callable[[Conn], bytes],
    instance: str,
    *,
    success_status: int,
) -> Replay:
    """Run `operation` and store its outcome under the key, in the caller's transaction.

    A `ProblemError` from the operation is an outcome too (say, INSUFFICIENT_STOCK): its
    partial changes are rolled back to a savepoint and the problem is stored, so a retry of
    the same request gets the same answer.
    """
    row = conn.execute(
        "SELECT lease, state FROM idempotency WHERE device_id = ? AND key = ?",
        (device_id, key),
    ).fetchone()
    if row is None or row["state"] != "in_progress" or row["lease"] != lease:
        raise ProblemError(
            "IDEMPOTENCY_IN_PROGRESS",
            "Another request took over this Idempotency-Key; retry to get its result.",
        )
    conn.execute("SAVEPOINT operation")
    try:
        body = operation(conn)
        status = success_status
        conn.execute("RELEASE SAVEPOINT operation")
    except ProblemError as problem:
        conn.execute("ROLLBACK TO SAVEPOINT operation")
        conn.execute("RELEASE SAVEPOINT operation")
        body = problem.encoded(instance)
        status = problem.status
    conn.execute(
        "UPDATE idempotency SET state = 'done', lease = NULL, lease_until = NULL, "
        "status_code = ?, body = ? WHERE device_id = ? AND key = ?",
        (status, body.decode("utf-8"), device_id, key),
    )
    return Replay(status, body)


def release(conn: Conn, device_id: str, key: str, lease: str) -> None:
    """Forget an in-progress key after an unexpected failure, so a retry can run."""
    conn.execute(
        "DELETE FROM idempotency WHERE device_id = ? AND key = ? AND lease = ? "
        "AND state = 'in_progress'",
        (device_id, key, lease),
    )


def purge(conn: Conn, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    cur = conn.execute(
        "DELETE FROM idempotency WHERE created_at < ? AND state = 'done'", (now - RETENTION_S,)
    )
    return cur.rowcount
