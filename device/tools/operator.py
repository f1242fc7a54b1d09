"""Operator sign-on: who is working this device, sent with every write for the audit log.

At the start of a shift the worker scans their badge (a barcode) or says their operator
number; the inventory API checks it (`GET /operators/{id}`). From then on every write carries
the operator's id. Without a sign-on, `tools.unsigned_writes` decides: "refuse" the write, or
record it as by "unknown".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from device.tools import results
from device.tools.inventory_client import InventoryClient, InventoryError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
UNSIGNED_POLICIES = ("refuse", UNKNOWN)
OPERATOR_ID = r"^[0-9]{3,8}$"
# A badge holds the operator number, optionally after "OP" ("OP-1001").
_BADGE = re.compile(r"^\s*(?:OP[-: ]?)?([0-9]{3,8})\s*$", re.IGNORECASE)

SIGN_ON: dict[str, Any] = {
    "name": "sign_on",
    "description": (
        "Sign the worker on at the start of a shift. If they say their operator number, pass "
        "it as operator_id (digits only). If they hold up their badge, pass badge=true and the "
        "device scans it itself. The device checks the operator with the inventory system."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "operator_id": {
                "type": "string",
                "pattern": OPERATOR_ID,
                "description": "Operator number as the worker said it, digits only, e.g. 1001.",
            },
            "badge": {"type": "boolean", "description": "Scan the badge with the camera."},
        },
        "required": [],
    },
}
SIGN_OFF: dict[str, Any] = {
    "name": "sign_off",
    "description": "Sign the worker off at the end of their shift or when they hand over.",
}
TOOLS = ("sign_on", "sign_off")

BadgeScanner = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True)
class Operator:
    id: str
    name: str


def badge_operator(payload: str) -> str | None:
    """The operator number a badge's barcode holds, or None if it is not a badge."""
    match = _BADGE.match(payload)
    return match.group(1) if match else None


class SignOn:
    """The operator signed on to this device (one per device: a shift spans sessions)."""

    def __init__(
        self,
        client: InventoryClient,
        *,
        unsigned_writes: str = UNKNOWN,
        scan_badge: BadgeScanner | None = None,
    ) -> None:
        if unsigned_writes not in UNSIGNED_POLICIES:
            raise ValueError(
                f"unsigned_writes must be one of {UNSIGNED_POLICIES}, got {unsigned_writes!r}"
            )
        self._client = client
        self._unsigned = unsigned_writes
        self.scan_badge = scan_badge
        self.current: Operator | None = None

    def declarations(self) -> list[dict[str, Any]]:
        return [dict(SIGN_ON), dict(SIGN_OFF)]

    def operator_for_writes(self) -> str | None:
        """The id every write is sent with; None means writes are refused (nobody signed on)."""
        if self.current is not None:
            return self.current.id
        return UNKNOWN if self._unsigned == UNKNOWN else None

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "sign_off":
            who, self.current = self.current, None
            if who is None:
                return results.ok("Nobody is signed on.")
            log.info("operator %s signed off", who.id)
            return results.ok("Signed off. Thanks.", {"operator_id": who.id})
        return await self._sign_on(args if isinstance(args, dict) else {})

    async def _sign_on(self, args: dict[str, Any]) -> dict[str, Any]:
        spoken = args.get("operator_id")
        operator_id: str
        if isinstance(spoken, str) and re.match(OPERATOR_ID, spoken):
            operator_id = spoken
        elif args.get("badge") is True:
            found = await self._badge()
            if isinstance(found, dict):
                return found
            operator_id = found
        else:
            return results.invalid_argument(
                "operator_id",
                "give operator_id as 3 to 8 digits, or badge=true to scan the worker's badge",
            )
        try:
            body = await self._client.get_operator(operator_id)
        except InventoryError as err:
            if err.code in ("OPERATOR_NOT_FOUND", "NOT_FOUND", "VALIDATION_FAILED"):
                return results.error(
                    "OPERATOR_NOT_FOUND",
                    f"I don't know operator {' '.join(operator_id)}. Please try again.",
                    retryable=True,
                )
            raise
        self.current = Operator(str(body["id"]), str(body["name"]))
        log.info("operator %s signed on", self.current.id)
        return results.ok(
            f"Signed on as {results.quote(self.current.name, 40)}.",
            {"operator_id": self.current.id},
            detail=results.OUTSIDE_TEXT,
        )

    async def _badge(self) -> str | dict[str, Any]:
        if self.scan_badge is None:
            return results.error(
                "NO_CAMERA",
                "I can't scan badges here. Please say your operator number.",
                valid_options=["operator_id"],
            )
        payloads = await self.scan_badge()
        for payload in payloads:
            operator_id = badge_operator(payload)
            if operator_id is not None:
                return operator_id
        return results.error(
            "NOT_A_BADGE",
            "I can't read a badge. Hold it closer, or say your operator number.",
            retryable=True,
            valid_options=["operator_id"],
        )
