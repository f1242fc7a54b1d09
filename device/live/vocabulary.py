"""The site's words for the service's speech recognition: `custom_vocabulary` (3.8).

SKUs, bin codes with their spoken forms, product names of the device's zone and the confirm
words, read from the inventory API (GET /stock, then /items/{sku} for the names). The first
session waits at most `timeout_s` for them;
later sessions take the cached list at once and refresh it in the background once it is older
than `refresh_s`. The list is bounded (`max_terms`), the site's own words first in a fixed
order, so the setup stays small and the same from one session to the next. A failed fetch
keeps the last list (or the confirm words alone): recognition bias is never worth a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from device.tools.inventory_client import InventoryClient

log = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[list[str]]]
# Product names looked up per session refresh (one GET each): bounded like the list.
_MAX_NAME_LOOKUPS = 40


def _in_zone(row: dict[str, Any], zone: str) -> bool:
    return not zone or str(row.get("zone", "")).upper() == zone.upper()


def build_terms(
    stock: Iterable[dict[str, Any]],
    names: dict[str, str],
    *,
    zone: str,
    confirm_words: Sequence[str],
    max_terms: int,
) -> list[str]:
    """Confirm words, then for each stock row of the zone its bin (code and spoken form), SKU
    and product name; no repeats."""
    rows = [r for r in stock if _in_zone(r, zone)]
    terms: list[str] = [*confirm_words]
    for row in rows:
        sku = str(row.get("sku") or "")
        terms += [
            str(row.get("location") or ""),
            str(row.get("spoken_location") or ""),
            sku,
            names.get(sku, ""),
        ]
    unique: dict[str, str] = {}
    for term in terms:
        if term:
            unique.setdefault(term.lower(), term)
    return list(unique.values())[:max_terms]


def inventory_fetch(
    base_url: str, token: str, *, zone: str, confirm_words: Sequence[str], max_terms: int
) -> Fetch:
    """Reads the terms from the inventory API's listing endpoints (GET /stock, /items/{sku})."""

    async def fetch() -> list[str]:
        async with InventoryClient(base_url, token, max_attempts=1) as client:
            stock = await client.get_stock()
            zoned = [r for r in stock if not zone or str(r.get("zone", "")).upper() == zone.upper()]
            skus = list(dict.fromkeys(str(r["sku"]) for r in zoned))[:_MAX_NAME_LOOKUPS]
            items = await asyncio.gather(
                *(client.get_item(s) for s in skus), return_exceptions=True
            )
            names = {
                sku: str(item.get("name") or "")
                for sku, item in zip(skus, items, strict=True)
                if isinstance(item, dict)
            }
        return build_terms(
            stock, names, zone=zone, confirm_words=confirm_words, max_terms=max_terms
        )

    return fetch


class SiteVocabulary:
    def __init__(
        self,
        fetch: Fetch,
        *,
        fallback: Sequence[str] = (),
        refresh_s: float = 600.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._fetch = fetch
        self._terms: list[str] | None = None
        self._fallback = list(fallback)
        self._fetched_at = 0.0
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._refreshing: asyncio.Task[None] | None = None
        self.fetches = 0

    async def terms(self) -> list[str]:
        """The list for a session starting now."""
        if self._terms is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout_s):
                    await self._refresh()
            return list(self._terms if self._terms is not None else self._fallback)
        stale = time.monotonic() - self._fetched_at >= self._refresh_s
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh(), name="vocabulary-refresh")
        return list(self._terms)

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            terms = await self._fetch()
        except Exception as exc:
            log.warning("custom vocabulary not refreshed (%s); keeping the last list", exc)
            return
        self._terms, self._fetched_at = terms, time.monotonic()
        log.info("custom vocabulary: %d terms from the inventory", len(terms))
