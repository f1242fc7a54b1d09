"""The broker's HTTP API.

POST /v1/live-token   Authorization: Bearer <device token>
    200 {"token": "auth_tokens/...", "expire_time", "new_session_expire_time", "model",
         "api_version": "v1alpha"}
    401 unknown or missing device token; 429 the device is over its mint rate (Retry-After);
    502/503 Gemini refused or unreachable (retry later)
GET  /healthz         200 {"ok": true, "devices": N}

Neither the API key nor any token is ever logged: only device ids and outcomes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Header, HTTPException

from device.broker.devices import DeviceFileError, DeviceRegistry
from device.broker.mint import TokenMinter, UpstreamError

log = logging.getLogger(__name__)


class MintLimiter:
    """At most `limit` mints per device in any `window_s`; counts attempts, not successes,
    so a device hammering a failing upstream is held back too."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._recent: dict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, device_id: str) -> float | None:
        """None when the device may mint now (and counts it), else seconds until it may."""
        now = self._clock()
        recent = self._recent[device_id]
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.limit:
            return recent[0] + self.window_s - now
        recent.append(now)
        return None


def create_app(
    registry: DeviceRegistry, minter: TokenMinter, limiter: MintLimiter | None = None
) -> FastAPI:
    app = FastAPI(title="warehouse-voice token broker", docs_url=None, redoc_url=None)
    app.state.minted = 0
    limiter = limiter or MintLimiter(30, 3600.0)

    @app.post("/v1/live-token")
    async def live_token(authorization: str = Header(default="")) -> dict[str, Any]:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("send Authorization: Bearer <this device's broker token>")
        try:
            device_id = registry.authenticate(presented.strip())
        except DeviceFileError as exc:
            log.error("%s", exc)
            raise HTTPException(503, "the broker's device list is unreadable") from None
        if device_id is None:
            log.warning("token request with an unknown device token refused")
            raise _unauthorized("unknown or revoked device token")
        wait = limiter.retry_after(device_id)
        if wait is not None:
            log.warning("token for %s refused: over %d mints", device_id, limiter.limit)
            raise HTTPException(
                429,
                f"this device asked for more than {limiter.limit} tokens in "
                f"{limiter.window_s:.0f} s; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        started = time.monotonic()
        try:
            minted = await minter.mint()
        except UpstreamError as exc:
            log.error("token for %s not minted: %s", device_id, exc)
            raise HTTPException(exc.status, str(exc)) from None
        app.state.minted += 1
        log.info(
            "minted a token for %s (%.0f ms, expires %s)",
            device_id,
            (time.monotonic() - started) * 1000,
            minted.expire_time.isoformat(timespec="seconds"),
        )
        return minted.to_json()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "devices": len(registry.devices()), "minted": app.state.minted}

    return app


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="broker"'})
