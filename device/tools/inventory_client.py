"""Async client of the inventory API: bearer token, timeouts, and retries only where safe.

A request is retried only if repeating it cannot change stock twice: reads, dry runs, and
writes that carry an Idempotency-Key (the server replays the first answer). A check-digit
verify counts an attempt on the server, so it is sent again only when it provably never
arrived (the connection did not open). A lockout (CHECK_DIGIT_LOCKED) is never retried.
Errors come back as `InventoryError`, built from the server's RFC 9457 problem+json.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Retrying these statuses is safe whenever retrying the request is safe at all.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 2.0
# Raised before any byte of the request left the device: safe to resend anything.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class InventoryError(Exception):
    """A failed inventory request: the problem's `code`, plus whether a retry may help."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int = 0,
        title: str = "",
        retryable: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.title = title
        self.retryable = retryable
        self.extra = extra or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> InventoryError:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code") or f"HTTP_{response.status_code}")
        known = {"type", "title", "status", "detail", "code", "instance"}
        extra = {k: v for k, v in body.items() if k not in known}
        after = response.headers.get("Retry-After", "")
        if after.isdigit():
            extra.setdefault("retry_after_s", int(after))
        # Asking again while locked out only hits the lock again: the wait is the answer.
        locked = code == "CHECK_DIGIT_LOCKED"
        return cls(
            code,
            str(body.get("detail") or response.reason_phrase or "no detail"),
            status=response.status_code,
            title=str(body.get("title") or ""),
            retryable=not locked
            and (
                response.status_code in RETRY_STATUSES
                or code == "IDEMPOTENCY_IN_PROGRESS"
                or response.status_code >= 500
            ),
            extra=extra,
        )


class InventoryUnavailable(InventoryError):
    """No answer at all: connection refused, timed out, or cut off."""

    def __init__(self, detail: str) -> None:
        super().__init__("UNAVAILABLE", detail, status=0, retryable=True)


@dataclass(frozen=True)
class CallContext:
    """Who is asking, for the server's audit log."""

    session_id: str | None = None
    call_id: str | None = None
    operator: str | None = None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.session_id:
            out["X-Session-Id"] = self.session_id[:128]
        if self.call_id:
            out["X-Call-Id"] = self.call_id[:128]
        if self.operator:
            out["X-Operator"] = self.operator[:128]
        return out


@dataclass(frozen=True)
class WriteRequest:
    """A stock-changing request, kept as data so it can be previewed, then committed."""

    path: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def counts_attempt(self) -> bool:
        """Check digits in it: the server counts a miss even on a dry run."""
        return "check_digits" in self.body


def move_request(sku: str, from_location: str, to_location: str, quantity: int) -> WriteRequest:
    return WriteRequest(
        "/moves",
        {"sku": sku, "from_location": from_location, "to_location": to_location,
         "quantity": quantity},
    )  # fmt: skip


def count_request(sku: str, location: str, counted: int, expected_version: int) -> WriteRequest:
    return WriteRequest(
        "/counts",
        {"sku": sku, "location": location, "counted_quantity": counted,
         "expected_version": expected_version},
    )  # fmt: skip


def damage_request(
    sku: str, location: str, quantity: int, damage: str, note: str = ""
) -> WriteRequest:
    return WriteRequest(
        "/damage-reports",
        {"sku": sku, "location": location, "quantity": quantity, "damage": damage, "note": note},
    )


def pick_request(task_id: str, quantity: int, check_digits: str) -> WriteRequest:
    return WriteRequest(
        f"/picks/{task_id}/confirm", {"quantity": quantity, "check_digits": check_digits}
    )


def handoff_request(reason: str, summary: str, **extra: str) -> WriteRequest:
    return WriteRequest("/handoffs", {"reason": reason, "summary": summary, **extra})


class InventoryClient:
    """One per device. `base_url` ends in /api/v1, e.g. http://127.0.0.1:8080/api/v1."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 2.0,
        connect_timeout_s: float = 1.0,
        max_attempts: int = 3,
        backoff_s: float = 0.1,
        operator: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"inventory URL {base_url!r} must start with http:// or https://")
        if not token or any(c.isspace() for c in token):
            raise ValueError("inventory token is empty or contains whitespace; check the file")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.base_url = base_url.rstrip("/")
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._operator = operator
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    async def __aenter__(self) -> InventoryClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (after := response.headers.get("Retry-After", "")).isdigit():
            return min(float(after), MAX_RETRY_AFTER_S)
        # Full jitter keeps a fleet of devices from retrying in lock step after an outage.
        return random.uniform(0, self._backoff_s * 2**attempt)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool,
        counts_attempt: bool = False,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        attempts = self._max_attempts if retry_safe else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:  # timeouts, refused and dropped connections
                # A read timeout or a cut connection may come after the server counted it.
                if last or (counts_attempt and not isinstance(exc, NOT_SENT)):
                    raise InventoryUnavailable(
                        f"{method} {path}: {type(exc).__name__} after {attempt + 1} attempt(s)"
                    ) from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.is_success:
                return response.json()
            error = InventoryError.from_response(response)
            if last or not error.retryable or counts_attempt:
                raise error
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return await self._request("GET", path, params=query, retry_safe=True)

    # ---- reads ---------------------------------------------------------------------------

    async def find_items(
        self, *, sku: str | None = None, gtin: str | None = None, name: str | None = None,
        limit: int = 5,
    ) -> list[dict[str, Any]]:  # fmt: skip
        body = await self._get("/items", sku=sku, gtin=gtin, q=name, limit=limit)
        return list(body["items"])

    async def get_item(self, sku: str) -> dict[str, Any]:
        return dict(await self._get(f"/items/{sku}"))

    async def get_stock(
        self, *, sku: str | None = None, location: str | None = None
    ) -> list[dict[str, Any]]:
        return list((await self._get("/stock", sku=sku, location=location))["stock"])

    async def get_location(self, code: str) -> dict[str, Any]:
        return dict(await self._get(f"/locations/{code}"))

    async def next_pick(self) -> dict[str, Any]:
        return dict(await self._get("/picks/next"))

    async def get_pick(self, task_id: str) -> dict[str, Any]:
        return dict(await self._get(f"/picks/{task_id}"))

    async def audit(
        self, *, sku: str | None = None, location: str | None = None, action: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        body = await self._get("/audit", sku=sku, location=location, action=action, limit=limit)
        return list(body["entries"])

    async def get_operator(self, operator_id: str) -> dict[str, Any]:
        """The operator with this id (badge or spoken number); OPERATOR_NOT_FOUND if none."""
        return dict(await self._get(f"/operators/{operator_id}"))

    async def verify(self, code: str, check_digits: str) -> dict[str, Any]:
        """The server's verdict: `match`, and `attempts_left` before a lockout."""
        # It changes no stock, but the server counts the attempt toward a lockout.
        body = await self._request(
            "POST", f"/locations/{code}/verify", json={"check_digits": check_digits},
            retry_safe=True, counts_attempt=True,
        )  # fmt: skip
        return dict(body)

    async def verify_location(self, code: str, check_digits: str) -> bool:
        return bool((await self.verify(code, check_digits))["match"])

    # ---- writes --------------------------------------------------------------------------

    async def preview(
        self, write: WriteRequest, context: CallContext | None = None
    ) -> dict[str, Any]:
        """The dry run: what `write` would do, with nothing changed."""
        # The server wants a key on every write and ignores it for a dry run.
        headers = {**self._context_headers(context), "Idempotency-Key": f"dry-{uuid.uuid4().hex}"}
        body = await self._request(
            "POST", write.path, json=write.body, params={"dry_run": "true"}, headers=headers,
            retry_safe=True, counts_attempt=write.counts_attempt,
        )  # fmt: skip
        return dict(body)

    async def commit(
        self, write: WriteRequest, *, idempotency_key: str, context: CallContext | None = None
    ) -> dict[str, Any]:
        """Apply `write` once. Retried under the same key, so a lost answer never doubles it."""
        if not idempotency_key:
            raise ValueError("a commit needs an idempotency key")
        headers = {**self._context_headers(context), "Idempotency-Key": idempotency_key}
        return dict(
            await self._request(
                "POST", write.path, json=write.body, headers=headers, retry_safe=True
            )
        )

    def _context_headers(self, context: CallContext | None) -> dict[str, str]:
        context = context or CallContext()
        if context.operator is None and self._operator:
            context = CallContext(context.session_id, context.call_id, self._operator)
        return context.headers()
