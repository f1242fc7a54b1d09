"""The broker's HTTP API.

POST /v1/live-token   Authorization: Bearer <device token>
    200 {"token": "auth_tokens/...", "expire_time", "new_session_expire_time", "model",
         "api_version": "v1alpha"}
    401 unknown or missing device token; 502/503 Gemini refused or unreachable (retry later)
GET  /healthz         200 {"ok": true, "devices": N}

Neither the API key nor any token is ever logged: only device ids and outcomes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Header, HTTPException

from device.broker.devices import DeviceFileError, DeviceRegistry
from device.broker.mint import TokenMinter, UpstreamError

log = logging.getLogger(__name__)


def create_app(registry: DeviceRegistry, minter: TokenMinter) -> FastAPI:
    app = FastAPI(title="warehouse-voice token broker", docs_url=None, redoc_url=None)
    app.state.minted = 0

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
