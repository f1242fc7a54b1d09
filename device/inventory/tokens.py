"""Per-device bearer tokens. Only a SHA-256 of each token is stored.

Tokens are 256-bit random strings, so a fast hash is enough: nobody can brute-force the
preimage, and unlike a password KDF it keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

from device.inventory.db import Conn, Database, open_database
from device.inventory.operations import now_iso

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_PREFIX = "wvi_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_PATTERN.match(device_id):
        raise ValueError(
            f"bad device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. dock-03)"
        )
    return device_id


def store_token(conn: Conn, device_id: str) -> str:
    """Mint a new token for `device_id`, replacing any earlier one. Returns the plain token."""
    check_device_id(device_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO devices (device_id, token_sha256, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET token_sha256 = excluded.token_sha256, "
        "created_at = excluded.created_at, revoked_at = NULL",
        (device_id, hash_token(token), now_iso()),
    )
    return token


def revoke_token(conn: Conn, device_id: str) -> bool:
    cur = conn.execute(
        "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
        (now_iso(), device_id),
    )
    return cur.rowcount == 1


def list_devices(conn: Conn) -> list[tuple[str, str, str | None]]:
    """(device_id, created_at, revoked_at) of every device that ever had a token."""
    rows = conn.execute(
        "SELECT device_id, created_at, revoked_at FROM devices ORDER BY device_id"
    ).fetchall()
    return [(row["device_id"], row["created_at"], row["revoked_at"]) for row in rows]


def device_for_hash(conn: Conn, digest: str) -> str | None:
    row = conn.execute(
        "SELECT device_id FROM devices WHERE token_sha256 = ? AND revoked_at IS NULL", (digest,)
    ).fetchone()
    return None if row is None else str(row["device_id"])


def mint_token(target: str | Path, device_id: str) -> str:
    """Mint a token straight into the database (CLI use; safe while a server runs)."""
    db = open_database(target)
    try:
        return db.write(lambda c: store_token(c, device_id))
    finally:
        db.close()


def device_for_token(db: Database, token: str) -> str | None:
    """The device a bearer token belongs to; looked up on every request, so a new or revoked
    token takes effect at once."""
    digest = hash_token(token)
    return db.read_one(lambda conn: device_for_hash(conn, digest))
