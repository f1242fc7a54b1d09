"""The local control socket: `warehouse-voice ctl press|release|confirm|hangup|status`.

One JSON request per line, one JSON answer per line, over a unix socket that only the service
user (and root) may open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]
COMMANDS = ("press", "release", "confirm", "status", "hangup")


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["cmd"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'send one JSON object per line, e.g. {"cmd": "status"}'}
        if command not in COMMANDS:
            return {"ok": False, "error": f"unknown command {command!r}; use one of {COMMANDS}"}
        try:
            return {"ok": True, **self._handler(command, request)}
        except Exception as exc:  # the socket must answer, whatever the handler did
            return {"ok": False, "error": f"{command} failed: {exc}"}


def request(path: Path, command: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """Send one command to a running daemon (blocking; used by the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ConnectionError(
                f"no daemon is listening on {path}; is warehouse-voice running? "
                "(set device.control_socket or pass --socket)"
            ) from None
        sock.sendall(json.dumps({"cmd": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
