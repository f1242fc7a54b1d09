"""Idempotency-Key store (after draft-ietf-httpapi-idempotency-key-header).

A write runs in one transaction that holds the database's write lock: it looks the key up,
runs the change and stores the response under the key, and all of it commits together. So a
duplicate (on this server or another one on the same database) waits for the lock and then
replays the stored answer, and a server killed mid-write leaves neither the change nor the key
behind: a retry runs it afresh.

A key can still be found "in progress" (claimed, with a lease): `claim` writes that marker in
a transaction of its own, as servers that ran a write in two steps did. While the lease runs,
the key answers 409 IDEMPOTENCY_IN_PROGRESS; once it has run out, the next request with the
key takes it over.
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


def run_once(
    conn: Conn,
    device_id: str,
    key: str,
    fp: str,
    operation: Callable[[Conn], bytes],
    instance: str,
    *,
    success_status: int,
    now: float | None = None,
) -> tuple[Replay, bool]:
    """Run `operation` once for this key, in the caller's write transaction, and store its
    outcome: (the answer, whether it is a replay of an earlier one).

    A `ProblemError` from the operation is an outcome too (say, INSUFFICIENT_STOCK): its
    partial changes are rolled back to a savepoint and the problem is stored, so a retry of
    the same request gets the same answer. Any other exception rolls the whole transaction
    back, key included, so a retry can run.
    """
    now = time.time() if now is None else now
    row = conn.execute(
        "SELECT fingerprint, state, lease_until, status_code, body FROM idempotency "
        "WHERE device_id = ? AND key = ?",
        (device_id, key),
    ).fetchone()
    if row is not None:
        if row["fingerprint"] != fp:
            raise ProblemError(
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used with a different request body or "
                "path; use a new key for a new request.",
            )
        if row["state"] == "done":
            return Replay(int(row["status_code"]), bytes(row["body"], "utf-8")), True
        if row["lease_until"] is not None and row["lease_until"] > now:
            raise ProblemError(
                "IDEMPOTENCY_IN_PROGRESS",
                "The first request with this Idempotency-Key is still running; retry shortly.",
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
    # An in-progress row whose lease ran out is taken over: it becomes this answer.
    conn.execute(
        "INSERT INTO idempotency (device_id, key, fingerprint, state, status_code, body, "
        "created_at) VALUES (?, ?, ?, 'done', ?, ?, ?) ON CONFLICT (device_id, key) DO UPDATE "
        "SET state = 'done', lease = NULL, lease_until = NULL, "
        "status_code = excluded.status_code, body = excluded.body",
        (device_id, key, fp, status, body.decode("utf-8"), now),
    )
    return Replay(status, body), False


def purge(conn: Conn, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    cur = conn.execute(
        "DELETE FROM idempotency WHERE created_at < ? AND state = 'done'", (now - RETENTION_S,)
    )
    return cur.rowcount
