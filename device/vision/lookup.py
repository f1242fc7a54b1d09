"""Does the inventory know this code? A read with no check of its own (a free-text Code 128,
or a bin label only a reduced view gave) counts when the bin or SKU exists.

Any doubt (not found, the API down, a slow answer) means no: the worker is asked to scan
again, which is better than a wrong SKU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from device.vision.barcodes import DecodedCode
from device.vision.checks import LOCATION

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 2.0


class Inventory(Protocol):
    async def get_item(self, sku: str) -> dict[str, Any]: ...

    async def get_location(self, code: str) -> dict[str, Any]: ...


def inventory_lookup(
    inventory: Inventory, *, timeout_s: float = LOOKUP_TIMEOUT_S
) -> Callable[[DecodedCode], Awaitable[bool]]:
    async def exists(code: DecodedCode) -> bool:
        if "\\" in code.text or code.truncated:
            return False  # control characters or a cut-off payload are no SKU or bin
        try:
            async with asyncio.timeout(timeout_s):
                if LOCATION.match(code.text):
                    await inventory.get_location(code.text)
                else:
                    await inventory.get_item(code.text)
        except Exception as exc:  # not found, or no answer: not confirmed
            log.info("scanned %r is not a known bin or SKU: %s", code.text, exc)
            return False
        return True

    return exists
