"""Ephemeral tokens, as the emulator mints and checks them.

`POST /v1alpha/auth_tokens` (what google-genai's `client.aio.auth_tokens.create` calls) mints a
token with the caller's long-lived API key. A device then connects with the token to the
`v1alpha ... BidiGenerateContentConstrained` endpoint, where `TokenStore.admit` applies the
service's rules:

- the token must exist and not be past `expireTime`;
- a new session (no resumption handle) also needs `newSessionExpireTime` in the future and a
  use left (`uses`, default 1; 0 means unlimited); resuming a session does not use it up;
- the token's `bidiGenerateContentSetup` overrides the client's setup: only the `fieldMask`
  paths when a mask is given, the whole setup (global lock) when not.

Every refusal closes the socket with 1008 and a reason naming the rule. The REST endpoint gets
its own port: the websocket server cannot read request bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from device.sim import wire
from device.sim.record import ConnectionRecord

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1alpha/auth_tokens"
DEFAULT_EXPIRE = timedelta(minutes=30)
DEFAULT_NEW_SESSION_EXPIRE = timedelta(seconds=60)
_MAX_BODY = 1 << 20


class TokenError(Exception):
    """A mint request the service would refuse; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MintedToken:
    name: str
    expire_time: datetime
    new_session_expire_time: datetime
    uses: int  # 0: unlimited
    setup: dict[str, Any] | None  # snake_case, as the Live setup is normalized
    field_mask: list[str] | None  # snake_case dotted paths
    used: int = 0
    connections: list[int] = field(default_factory=list)


def _time(value: Any, key: str, default: datetime) -> datetime:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TokenError(400, f"{key} must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TokenError(400, f"{key} {value!r} is not an RFC 3339 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TokenStore:
    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.tokens: dict[str, MintedToken] = {}
        self._clock = clock or (lambda: datetime.now(UTC))
        self._skew = timedelta()

    def now(self) -> datetime:
        return self._clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward, so a test can expire tokens without waiting."""
        self._skew += timedelta(seconds=seconds)

    def mint(self, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        expire = _time(body.get("expireTime"), "expireTime", now + DEFAULT_EXPIRE)
        new_session = _time(
            body.get("newSessionExpireTime"),
            "newSessionExpireTime",
            now + DEFAULT_NEW_SESSION_EXPIRE,
        )
        if expire <= now or expire > now + timedelta(hours=20):
            raise TokenError(400, "expireTime must be in the future and less than 20 hours away")
        uses = body.get("uses", 1)
        if not isinstance(uses, int) or uses < 0:
            raise TokenError(400, "uses must be a non-negative integer (0 means unlimited)")
        setup = body.get("bidiGenerateContentSetup")
        if setup is not None and not isinstance(setup, dict):
            raise TokenError(400, "bidiGenerateContentSetup must be an object")
        mask = body.get("fieldMask")
        if mask is not None and not isinstance(mask, str):
            raise TokenError(400, "fieldMask must be a comma-separated string of paths")
        name = f"auth_tokens/{secrets.token_hex(16)}"
        self.tokens[name] = MintedToken(
            name=name,
            expire_time=expire,
            new_session_expire_time=new_session,
            uses=uses,
            setup=wire.normalize_keys(setup) if setup else None,
            field_mask=[wire.to_snake_path(p) for p in mask.split(",") if p.strip()]
            if mask
            else None,
        )
        stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
        return {
            "name": name,
            "expireTime": expire.astimezone(UTC).strftime(stamp),
            "newSessionExpireTime": new_session.astimezone(UTC).strftime(stamp),
        }

    def admit(self, record: ConnectionRecord, setup: dict[str, Any]) -> dict[str, Any]:
        """The setup in force for a Constrained connection, or a 1008 WireError."""
        name = record.api_key or ""
        record.token = name
        token = self.tokens.get(name)
        if token is None:
            raise wire.WireError("ephemeral token not valid", wire.CLOSE_POLICY)
        now = self.now()
        if now >= token.expire_time:
            raise wire.WireError("ephemeral token expired", wire.CLOSE_POLICY)
        resumption = setup.get("session_resumption")
        resuming = isinstance(resumption, dict) and bool(resumption.get("handle"))
        if not resuming:
            if now >= token.new_session_expire_time:
                raise wire.WireError(
                    "ephemeral token can no longer start new sessions", wire.CLOSE_POLICY
                )
            if token.uses and token.used >= token.uses:
                raise wire.WireError("ephemeral token already used", wire.CLOSE_POLICY)
            token.used += 1
        token.connections.append(record.index)
        effective = _constrain(setup, token)
        record.effective_setup = effective
        return effective


def _constrain(setup: dict[str, Any], token: MintedToken) -> dict[str, Any]:
    if token.setup is None:
        return setup
    if token.field_mask is None:
        # A global lock: the token's setup is the whole setup.
        effective = copy.deepcopy(token.setup)
    else:
        effective = copy.deepcopy(setup)
        for path in token.field_mask:
            keys = path.split(".")
            source: Any = token.setup
            for key in keys:
                source = source.get(key) if isinstance(source, dict) else None
            target = effective
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            if source is None:
                target.pop(keys[-1], None)
            else:
                target[keys[-1]] = copy.deepcopy(source)
    # A resumption handle names this connection's session; no lock can fix it in advance.
    resumption = setup.get("session_resumption")
    if isinstance(resumption, dict) and resumption.get("handle"):
        locked = effective.get("session_resumption")
        effective["session_resumption"] = {
            **(locked if isinstance(locked, dict) else {}),
            "handle": resumption["handle"],
        }
    return effective


class TokenServer:
    """`POST /v1alpha/auth_tokens` over HTTPS, one request per connection."""

    def __init__(self, store: TokenStore, api_key: str | None, ssl_context: ssl.SSLContext):
        self.store = store
        self.api_key = api_key
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self.port = 0
        self.requests: list[dict[str, Any]] = []

    async def start(self, host: str) -> None:
        self._server = await asyncio.start_server(self._serve, host, 0, ssl=self._ssl)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._answer(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            status, body = 400, {"error": {"code": 400, "message": f"bad request: {exc}"}}
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            writer.write(head.encode() + payload)
            await writer.drain()
            writer.close()
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        method, target, _ = [*request_line.split(" "), "", "", ""][:3]
        url = urlsplit(target)
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            return 413, _error(413, "request body too large")
        raw = await reader.readexactly(length) if length else b""
        if method != "POST" or url.path != TOKEN_PATH:
            return 404, _error(
                404, f"no endpoint {method} {url.path}; tokens are minted at POST {TOKEN_PATH}"
            )
        key = headers.get("x-goog-api-key") or parse_qs(url.query).get("key", [""])[0]
        if self.api_key is not None and key != self.api_key:
            return 400, _error(400, "API key not valid. Please pass a valid API key.")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            return 400, _error(400, f"invalid JSON payload: {exc}")
        if not isinstance(body, dict):
            return 400, _error(400, "the request body must be a JSON object")
        self.requests.append(body)
        try:
            return 200, self.store.mint(body)
        except TokenError as exc:
            return exc.status, _error(exc.status, str(exc))


def _error(code: int, message: str) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "INVALID_ARGUMENT"}.get(code, "")
    return {"error": {"code": code, "message": message, "status": status}}
