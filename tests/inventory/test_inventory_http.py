"""Each response leaves the server in one piece: the headers wait for the body, not for a timer."""

from __future__ import annotations

import asyncio
import socket

from device.inventory.http import CoalescingTransport
from device.inventory.server import InventoryServer


class Recorder:
    """A transport that records what reaches the socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


async def test_headers_and_body_go_out_as_one_write() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert raw.sent == []  # held for the body
    transport.write(b"{}")
    assert raw.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]  # at once
    await asyncio.sleep(0)
    assert len(raw.sent) == 1
    assert transport.get_extra_info("peername") == "extra peername"


async def test_a_write_nothing_follows_goes_out_on_the_loops_next_turn() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_closing_sends_what_is_held_first() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert raw.sent == [b"last words"] and raw.closed


def test_a_keep_alive_answer_arrives_in_one_segment(tmp_path: object) -> None:
    server = InventoryServer(f"{tmp_path}/inventory.db")
    running = server.start()
    try:
        host, port = running.base_url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as sock:
            for _ in range(3):
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                data = sock.recv(65536)  # one segment: headers and body together
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert body == b'{"status":"ok"}'
    finally:
        server.stop()
