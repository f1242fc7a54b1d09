"""Check-digit attempt limit per device and location, enforced by the API.

Check digits prove the worker stands at the bin. Three digits are 1,000 guesses, so a device
that may guess without limit proves nothing: after `attempts` misses in a row at a location,
that device is locked out of it for `lockout_s` seconds (verify and pick confirm both answer
429 CHECK_DIGIT_LOCKED with Retry-After). A match resets the count. Other devices and other
locations are not affected: a lockout is about one worker at one bin.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from device.inventory.db import Conn
from device.inventory.problems import ProblemError


@dataclass(frozen=True)
class LockoutPolicy:
    # The device's own limit (device/tools/handlers.py) is the same, so both lock together.
    attempts: int = 3
    lockout_s: float = 120.0


DEFAULT_POLICY = LockoutPolicy()


def _row(conn: Conn, device_id: str, location: str) -> Any:
    row: Any = conn.execute(
        "SELECT failures, locked_until FROM check_digit_attempts "
        "WHERE device_id = ? AND location = ?",
        (device_id, location),
    ).fetchone()
    return row


def check(conn: Conn, device_id: str, location: str, *, now: float | None = None) -> None:
    """Raise CHECK_DIGIT_LOCKED while `device_id` is locked out of `location`."""
    now = time.time() if now is None else now
    row = _row(conn, device_id, location)
    if row is not None and row["locked_until"] is not None and row["locked_until"] > now:
        wait = max(1, math.ceil(row["locked_until"] - now))
        raise ProblemError(
            "CHECK_DIGIT_LOCKED",
            f"Too many wrong check digits at {location} from this device; try again in "
            f"{wait} s or ask a supervisor.",
            location=location,
            retry_after_s=wait,
        )


def record(
    conn: Conn,
    device_id: str,
    location: str,
    match: bool,
    policy: LockoutPolicy,
    *,
    now: float | None = None,
) -> int:
    """Count one attempt (raising CHECK_DIGIT_LOCKED if locked); returns the attempts left."""
    now = time.time() if now is None else now
    check(conn, device_id, location, now=now)
    if match:
        conn.execute(
            "DELETE FROM check_digit_attempts WHERE device_id = ? AND location = ?",
            (device_id, location),
        )
        return policy.attempts
    row = _row(conn, device_id, location)
    # A lockout that has run out starts a fresh set of attempts.
    failures = 1 if row is None or row["locked_until"] is not None else row["failures"] + 1
    locked_until = now + policy.lockout_s if failures >= policy.attempts else None
    conn.execute(
        "INSERT INTO check_digit_attempts (device_id, location, failures, locked_until) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (device_id, location) DO UPDATE SET "
        "failures = excluded.failures, locked_until = excluded.locked_until",
        (device_id, location, failures, locked_until),
    )
    return max(0, policy.attempts - failures)
