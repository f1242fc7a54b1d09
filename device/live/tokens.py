"""Ephemeral Live tokens from the site's token broker (`live.auth = "ephemeral"`).

The device never holds the long-lived Gemini API key. It presents its own broker token to
`POST {broker_url}/v1/live-token` and gets a single-use ephemeral token (`auth_tokens/...`)
locked to the site's model and config. A new session always takes a new token; a resume reuses
the session's token while it is valid (resuming does not use a token up), and takes a new one
when it is about to expire or the service refuses it.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from device.live.failures import Kind, LiveUnavailable

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/live-token"
# A token this close to its expiry is not used to resume: the resumed session would die soon.
REFRESH_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class EphemeralToken:
    name: str
    expire_time: datetime
    new_session_expire_time: datetime
    model: str
    api_version: str

    def usable_until(self, now: datetime) -> bool:
        return now + REFRESH_MARGIN < self.expire_time


def _timestamp(value: Any, key: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{key} missing")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class BrokerTokens:
    def __init__(
        self,
        broker_url: str,
        device_token: str,
        *,
        ca_file: Path | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = broker_url.rstrip("/") + TOKEN_PATH
        self._device_token = device_token
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._timeout_s = timeout_s
        self.minted = 0

    async def mint(self) -> EphemeralToken:
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout_s) as http:
                response = await http.post(
                    self._url, headers={"Authorization": f"Bearer {self._device_token}"}
                )
        except httpx.TransportError as exc:
            raise LiveUnavailable(
                f"token broker unreachable at {self._url} ({exc})", "offline"
            ) from exc
        if response.status_code in (401, 403):
            raise LiveUnavailable(
                f"token broker refused this device ({response.status_code}): {_detail(response)}",
                "fatal",
                denied=True,
            )
        if response.status_code != 200:
            kind: Kind = (
                "retry" if response.status_code >= 500 or response.status_code == 429 else "fatal"
            )
            raise LiveUnavailable(
                f"token broker answered {response.status_code}: {_detail(response)}", kind
            )
        try:
            body = response.json()
            token = EphemeralToken(
                name=str(body["token"]),
                expire_time=_timestamp(body.get("expire_time"), "expire_time"),
                new_session_expire_time=_timestamp(
                    body.get("new_session_expire_time"), "new_session_expire_time"
                ),
                model=str(body.get("model") or ""),
                api_version=str(body.get("api_version") or "v1alpha"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LiveUnavailable(
                f"token broker sent an unreadable token ({exc})", "fatal"
            ) from exc
        if not token.name.startswith("auth_tokens/"):
            raise LiveUnavailable("token broker sent something that is not an auth token", "fatal")
        self.minted += 1
        return token


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)[:200]
    return str(body)[:200]
