"""Listening TCP sockets for every server we ship, with Nagle's algorithm off.

asyncio sets TCP_NODELAY on an accepted connection only when the listening socket was made
with proto=IPPROTO_TCP; `socket.socket(AF_INET, SOCK_STREAM)` and `socket.create_server` give
proto=0, so a server handed such a socket (uvicorn's `sockets=[...]`) leaves Nagle on. A
response written in two pieces (headers, then body) then waits for the client's delayed ACK:
about 40 ms per keep-alive request. Linux also copies TCP_NODELAY from a listening socket to
the connections it accepts, so setting it here covers servers that never look at proto.
"""

from __future__ import annotations

import socket


def set_nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listen(host: str, port: int, *, backlog: int = 2048, reuse_addr: bool = True) -> socket.socket:
    """A bound, listening TCP socket whose accepted connections have TCP_NODELAY set.

    Raises the OSError of bind() or listen(); the caller names the setting to change.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        set_nodelay(sock)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
