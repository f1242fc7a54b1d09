"""Every server we ship sets TCP_NODELAY on the connections it accepts.

Without it, a response written in two pieces (uvicorn writes headers, then body) waits for the
client's delayed ACK: about 40 ms per keep-alive request. These tests read the option on the
server's own end of a real connection: among this process's descriptors for in-process
servers, and through pidfd_getfd(2) for servers in a child process.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.inventory.server import InventoryServer
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario
from device.sim.tls import client_ssl_context, ensure_certificates
from device.tcp import listen

HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
_SYS_PIDFD_GETFD = 438  # same number on x86_64 and aarch64


def _fds_of(pid: int) -> Iterator[int]:
    """Duplicates (in this process) of `pid`'s socket descriptors."""
    own = pid == os.getpid()
    pidfd = -1 if own else os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            if own:
                try:
                    yield os.dup(int(name))
                except OSError:
                    continue
            else:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(name), 0)
                if fd < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"pidfd_getfd on pid {pid}: {os.strerror(err)}")
                yield fd
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def server_end_of(client: socket.socket, pid: int | None = None) -> socket.socket:
    """The accepted socket, in process `pid` (default: this one), whose peer is `client`."""
    want = client.getsockname()
    for fd in _fds_of(os.getpid() if pid is None else pid):
        sock = socket.socket(fileno=fd)
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername() == want:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no accepted socket for {want} in pid {pid or os.getpid()}")


def nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def read_response(client: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = client.recv(4096)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head


def http_health(client: socket.socket) -> None:
    client.sendall(HEALTH)
    assert read_response(client).startswith(b"HTTP/1.1 200")


def test_the_shared_listener_hands_out_connections_with_nodelay() -> None:
    server = listen("127.0.0.1", 0)
    try:
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        with client, accepted:
            assert nodelay(accepted) != 0
    finally:
        server.close()


def test_the_inventory_api_sets_nodelay_on_a_keep_alive_connection(tmp_path: Path) -> None:
    server = InventoryServer(tmp_path / "inv.db")
    running = server.start()
    try:
        host, port = running.base_url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as client:
            http_health(client)
            with server_end_of(client) as accepted:
                assert nodelay(accepted) != 0
            http_health(client)  # the same connection keeps serving
    finally:
        server.stop()


def _first_line_url(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            return line.strip().rsplit(" ", 1)[-1]
    raise AssertionError(f"the server exited without printing {marker!r}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_inventory_serve_as_a_process_sets_nodelay(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.inventory.cli", "serve", "--db", str(tmp_path / "i.db"),
         "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        url = _first_line_url(proc, "inventory API on")
        host, port = url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as client:
            http_health(client)
            with server_end_of(client, proc.pid) as accepted:
                assert nodelay(accepted) != 0
    finally:
        _stop(proc)


@pytest.mark.slow
def test_the_token_broker_sets_nodelay(tmp_path: Path) -> None:
    # The broker serves HTTPS only, as shipped.
    tls = ensure_certificates(tmp_path / "tls", ["127.0.0.1"])
    config = tmp_path / "broker.toml"
    config.write_text(
        '[broker]\nlisten = "127.0.0.1:0"\ndevices_file = "devices.json"\n'
        f'tls_cert_file = "{tls.cert_file}"\ntls_key_file = "{tls.key_file}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.broker", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "GEMINI_API_KEY": "AIza-nodelay-test"},
    )  # fmt: skip
    try:
        url = _first_line_url(proc, "token broker listening on")
        host, port = url.split("//")[1].split(":")
        raw = socket.create_connection((host, int(port)))
        context = client_ssl_context(tls.ca_file)
        with context.wrap_socket(raw, server_hostname=host) as client:
            client.sendall(b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(client).startswith(b"HTTP/1.1 404")
            with server_end_of(client, proc.pid) as accepted:
                assert nodelay(accepted) != 0
    finally:
        _stop(proc)


@pytest.mark.slow
async def test_the_live_emulator_sets_nodelay(tmp_path: Path) -> None:
    async with Emulator(load_scenario("where-is-sku"), workdir=tmp_path) as emu:
        context = client_ssl_context(emu.ca_file)
        token_port = int(emu.rest_url.rsplit(":", 1)[1])

        def check(port: int) -> int:
            raw = socket.create_connection(("127.0.0.1", port))
            # A finished handshake means the server has made its transport for this socket.
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                accepted = server_end_of(client)
                with accepted:
                    return nodelay(accepted)

        # The emulator runs on this test's loop, so the blocking client runs on a thread.
        for port in (emu.port, token_port):
            assert await asyncio.to_thread(check, port) != 0
