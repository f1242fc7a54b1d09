"""A local stand-in for the Gemini Live API that the real google-genai client connects to.

It serves TLS on loopback at the SDK's websocket path, plays a scenario (see `scenario.py`),
injects the faults the scenario asks for, and records everything for tests to inspect:

    async with Emulator(load_scenario("where-is-sku"), workdir=tmp_path) as emu:
        client = genai.Client(api_key="test", http_options=types.HttpOptions(
            base_url=emu.url, api_version="v1beta",
            async_client_args={"ssl": client_ssl_context(emu.ca_file)}))
        ...
        await emu.wait_for_turns(1)
        assert emu.record.turns[0].tool_responses[0].id == "call-1"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from device.sim import wire
from device.sim.auth_tokens import TokenServer, TokenStore
from device.sim.connection import Connection
from device.sim.record import ConnectionRecord, EmulatorRecord, Watch
from device.sim.reply_audio import render_turn_audio, synthesize_cached
from device.sim.scenario import Scenario, TurnSpec
from device.sim.script import Script
from device.sim.tls import ensure_certificates, server_ssl_context

log = logging.getLogger(__name__)

WS_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
_PATH = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(?P<version>[^./]+)\.GenerativeService\."
    r"(?P<method>BidiGenerateContent(?:Constrained)?)$"
)
_MODEL_GET = re.compile(r"^/v1(?:alpha|beta)?/models/(?P<model>[A-Za-z0-9._-]+)$")
_MAX_CLIENT_FRAME = 16 * 2**20
_INVALID_KEY = "API key not valid. Please pass a valid API key."
_SETUP_WAIT_S = 10.0


class Emulator:
    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workdir: Path,
        api_key: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.workdir = Path(workdir)
        self.api_key = api_key
        self.record = EmulatorRecord()
        self._requested_port = port
        self._port: int | None = None
        self._server: Server | None = None
        self._script: Script | None = None
        self._watch: Watch | None = None
        self._ca_file = self.workdir / "tls" / "ca.pem"
        # Ephemeral tokens: minted over REST (`rest_url`), checked on the Constrained endpoint.
        self.tokens = TokenStore()
        self._token_server: TokenServer | None = None

    # Addresses.

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running; await start() first")
        return self._port

    @property
    def url(self) -> str:
        """The https base URL for `HttpOptions(base_url=...)`; the SDK turns it into wss://."""
        host = self._client_host()
        return f"https://{f'[{host}]' if ':' in host else host}:{self.port}"

    def _client_host(self) -> str:
        # A wildcard listener is reached on loopback.
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def rest_url(self) -> str:
        """Base URL of the REST side (`auth_tokens`); it has its own port."""
        if self._token_server is None:
            raise RuntimeError("the emulator is not running; await start() first")
        host = self._client_host()
        return f"https://{f'[{host}]' if ':' in host else host}:{self._token_server.port}"

    @property
    def ws_path(self) -> str:
        return WS_PATH

    @property
    def ca_file(self) -> Path:
        return self._ca_file

    def reply_audio(self, turn: int) -> bytes:
        """The 24 kHz PCM16 reply the emulator has ready for scenario turn `turn`."""
        if self._script is None:
            raise RuntimeError("the emulator renders replies in start(); await it first")
        return self._script.audio[turn]

    # Lifecycle.

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._watch = Watch()
        loop = asyncio.get_running_loop()
        tls_hosts = ["127.0.0.1", "localhost", self._client_host()]
        paths = await loop.run_in_executor(
            None, ensure_certificates, self.workdir / "tls", tls_hosts
        )
        self._ca_file = paths.ca_file
        cache = self.workdir / "audio-cache"
        # Each distinct reply is rendered once and shared: two renderings of one text would
        # race on one cache file, and a long shift's script would hold a copy per turn.
        firsts: dict[tuple[Path | None, str], TurnSpec] = {}
        for turn in self.scenario.turns:
            firsts.setdefault((turn.reply_audio, turn.reply_text), turn)
        rendered = await asyncio.gather(
            *(loop.run_in_executor(None, render_turn_audio, t, cache) for t in firsts.values())
        )
        replies = dict(zip(firsts, rendered, strict=True))
        texts = sorted(
            {t.tool_filler_text for t in self.scenario.turns if t.tool_filler_text.strip()}
        )
        said = await asyncio.gather(
            *(loop.run_in_executor(None, synthesize_cached, text, cache) for text in texts)
        )
        fillers = dict(zip(texts, said, strict=True))
        self._script = Script(
            self.scenario,
            [replies[(t.reply_audio, t.reply_text)] for t in self.scenario.turns],
            [fillers.get(t.tool_filler_text, b"") for t in self.scenario.turns],
        )
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            ssl=server_ssl_context(paths),
            process_request=self._check_request,
            max_size=_MAX_CLIENT_FRAME,
            compression=None,
        )
        sockname = self._server.sockets[0].getsockname()
        self._port = int(sockname[1])
        self._token_server = TokenServer(self.tokens, self.api_key, server_ssl_context(paths))
        await self._token_server.start(self.host)
        log.info("Live API emulator for scenario %s on %s", self.scenario.name, self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._token_server is not None:
            await self._token_server.stop()
        server.close()
        await server.wait_closed()
        if self._watch is not None:
            self._watch.notify()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # Waiting on the record.

    async def wait_for(
        self,
        predicate: Callable[[EmulatorRecord], bool],
        timeout_s: float = 10.0,
        what: str = "",
    ) -> EmulatorRecord:
        """Return once `predicate(record)` holds; raise TimeoutError naming `what` otherwise.

        The timeout is a failure bound, not a measurement: waiting wakes on every recorded
        change, never on a sleep.
        """
        if self._watch is None:
            raise RuntimeError("the emulator is not running; await start() first")
        return await self._watch.wait_for(self.record, predicate, timeout_s, what)

    async def wait_for_turns(self, count: int, timeout_s: float = 10.0) -> EmulatorRecord:
        """Until `count` turns have sent their last frame (turnComplete, or a fault close)."""
        return await self.wait_for(
            lambda r: len(r.finished_turns) >= count, timeout_s, f"{count} finished turn(s)"
        )

    async def wait_for_close(
        self, connection: int = 0, timeout_s: float = 10.0
    ) -> ConnectionRecord:
        """Until connection number `connection` (0 = first) has closed, either way."""
        await self.wait_for(
            lambda r: (
                len(r.connections) > connection and r.connections[connection].close_code is not None
            ),
            timeout_s,
            f"close of connection {connection}",
        )
        return self.record.connections[connection]

    # Connections.

    def _notify(self) -> None:
        if self._watch is not None:
            self._watch.notify()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = "/" + urlsplit(request.path).path.lstrip("/")
        model = _MODEL_GET.match(path)
        if model is not None and "upgrade" not in request.headers.get("connection", "").lower():
            return self._model_info(connection, request, model["model"])
        match = _PATH.match(path)
        if match is None:
            return connection.respond(
                404,
                f"no Live API endpoint at {path}; the SDK connects to {WS_PATH} "
                "(build the client with http_options api_version='v1beta')\n",
            )
        if match["method"].endswith("Constrained") and match["version"] != "v1alpha":
            return connection.respond(
                404,
                "ephemeral tokens connect through v1alpha only; "
                "pin HttpOptions(api_version='v1alpha')\n",
            )
        if match["version"] not in ("v1alpha", "v1beta"):
            return connection.respond(
                404,
                f"Live API version {match['version']!r} is not served; "
                "pin HttpOptions(api_version='v1beta')\n",
            )
        return None

    def _model_info(self, connection: ServerConnection, request: Request, model: str) -> Response:
        """`GET /v1beta/models/NAME`: how `selftest` checks a key without opening a session."""
        key = (
            self._presented_key(request)
            or parse_qs(urlsplit(request.path).query).get("key", [None])[0]
        )
        if self.api_key is not None and key != self.api_key:
            response = connection.respond(400, json.dumps({"error": {"message": _INVALID_KEY}}))
        else:
            body = {
                "name": f"models/{model}",
                "supportedGenerationMethods": ["bidiGenerateContent"],
            }
            response = connection.respond(200, json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    @staticmethod
    def _presented_key(request: Request) -> str | None:
        key = request.headers.get("x-goog-api-key")
        if key:
            return key
        auth = request.headers.get("authorization", "")
        if auth.startswith("Token "):
            return auth.removeprefix("Token ")
        values = parse_qs(urlsplit(request.path).query).get("key")
        return values[0] if values else None

    async def _handle(self, ws: ServerConnection) -> None:
        assert self._script is not None and ws.request is not None
        record = ConnectionRecord(
            index=len(self.record.connections),
            path=ws.request.path,
            api_key=self._presented_key(ws.request),
        )
        self.record.connections.append(record)
        self._notify()
        constrained = urlsplit(ws.request.path).path.endswith("Constrained")
        if constrained:
            # An ephemeral token, never the API key, opens this endpoint.
            auth = ws.request.headers.get("authorization", "")
            record.api_key = auth.removeprefix("Token ") if auth.startswith("Token ") else None
        gate = self.tokens.admit if constrained else None
        conn = Connection(ws, record, self._script, self._notify, gate)
        if not constrained and self.api_key is not None and record.api_key != self.api_key:
            # Like the service, answer the setup with the close: a client that is still
            # sending its setup then sees the close code rather than a broken pipe.
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(ws.recv(), _SETUP_WAIT_S)
            await conn.close_now(wire.CLOSE_POLICY, _INVALID_KEY)
            return
        try:
            await conn.run()
        finally:
            if record.close_code is None:
                # The server shut down under the client (stop()): websockets closes with 1001.
                record.close_code, record.closed_by = ws.close_code or 1001, "server"
            self._notify()
