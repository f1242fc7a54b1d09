"""Running the inventory API: in-process for tests and the demo, or as the CLI's server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from device.inventory.app import API_PREFIX, create_app
from device.inventory.db import Database, is_postgres_url, sqlite_path
from device.inventory.db import open_database as connect_database
from device.inventory.http import CoalescingHTTPProtocol
from device.inventory.seed import DEFAULT_SEED_NUMBER, SeedError, SeedReport, is_seeded, seed_demo
from device.tcp import listen

SEEDS = ("demo",)


@dataclass(frozen=True)
class RunningInventory:
    base_url: str  # ends in /api/v1, ready for InventoryClient
    db: str  # the SQLite file or the postgresql:// URL
    seed: SeedReport | None

    @property
    def db_path(self) -> Path:
        if is_postgres_url(self.db):
            raise RuntimeError(f"the inventory runs on PostgreSQL ({self.db}), not a file")
        return sqlite_path(self.db)

    @property
    def token(self) -> str:
        if self.seed is None:
            raise RuntimeError("no demo token: the server was started without seed='demo'")
        return self.seed.token

    @property
    def device_id(self) -> str:
        if self.seed is None:
            raise RuntimeError("no demo device: the server was started without seed='demo'")
        return self.seed.device_id


def open_database(
    target: str | Path,
    *,
    seed: str | None = None,
    seed_number: int = DEFAULT_SEED_NUMBER,
    token_file: Path | None = None,
) -> tuple[Database, SeedReport | None]:
    """Open (and with seed="demo", fill) the database. An already seeded database is opened
    as it is, so a restart with the same command keeps its stock: the report is then None."""
    if seed is not None and seed not in SEEDS:
        raise SeedError(f"unknown seed {seed!r}: the available seed is 'demo'")
    db = connect_database(target)
    try:
        report = None
        if seed == "demo" and not is_seeded(db):
            report = seed_demo(db, number=seed_number, token_file=token_file)
    except BaseException:
        db.close()
        raise
    return db, report


def bind_socket(host: str, port: int) -> socket.socket:
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise OSError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from exc
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: object, *, log_level: str = "warning", tls: tuple[Path, Path] | None = None
) -> uvicorn.Config:
    """`tls` is (certificate, key), PEM files: the server then speaks HTTPS only."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        log_level=log_level,
        access_log=False,
        # The reference server is for one site's devices on a LAN: keep-alive saves a TCP and
        # HTTP handshake per tool call, and the loop/http implementations are the fastest
        # ones installed (uvloop/httptools when present).
        timeout_keep_alive=30,
        http=CoalescingHTTPProtocol,  # one send() per response
        lifespan="on",
    )


class InventoryServer:
    """The API on a background thread with its own event loop (tests, the demo).

    `start()` blocks until the server accepts connections; `stop()` shuts it down and closes
    the database. Port 0 picks a free port.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        seed: str | None = None,
        seed_number: int = DEFAULT_SEED_NUMBER,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self._tls = tls
        self._target = str(db)
        self._seed = seed
        self._seed_number = seed_number
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._db: Database | None = None
        self._sock: socket.socket | None = None

    def start(self, timeout_s: float = 30.0) -> RunningInventory:
        db, report = open_database(self._target, seed=self._seed, seed_number=self._seed_number)
        self._db = db
        try:
            self._sock = bind_socket(self._host, self._port)
            port = self._sock.getsockname()[1]
            server = uvicorn.Server(uvicorn_config(create_app(db, own_db=True), tls=self._tls))
            self._server = server
            failure: list[BaseException] = []
            sock = self._sock

            def run() -> None:
                try:
                    asyncio.run(server.serve(sockets=[sock]))
                except BaseException as exc:  # handed to start() below
                    failure.append(exc)

            self._thread = threading.Thread(target=run, name=f"inventory-{port}", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout_s
            while not server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"inventory server did not start: {failure or 'timed out'}")
                time.sleep(0.005)
        except BaseException:
            self.stop()
            raise
        url_host = f"[{self._host}]" if ":" in self._host else self._host
        return RunningInventory(
            base_url=f"{'https' if self._tls else 'http'}://{url_host}:{port}{API_PREFIX}",
            db=self._target,
            seed=report,
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._db is not None:
            self._db.close()  # a no-op when the app's lifespan already closed it
            self._db = None


@contextlib.asynccontextmanager
async def serve_inventory(
    db: str | Path,
    *,
    seed: str | None = None,
    seed_number: int = DEFAULT_SEED_NUMBER,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[RunningInventory]:
    """Serve the API while the block runs, without blocking the caller's event loop.

    Usage: `async with serve_inventory(tmp_path / "inv.db", seed="demo") as inv:` then talk
    to `inv.base_url` with `inv.token`. Leaving the block stops the server.
    """
    server = InventoryServer(db, seed=seed, seed_number=seed_number, host=host, port=port)
    running = await asyncio.to_thread(server.start)
    try:
        yield running
    finally:
        await asyncio.to_thread(server.stop)
