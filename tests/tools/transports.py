"""HTTP transports that lose or refuse requests on purpose, for the inventory client's tests."""

from __future__ import annotations

import httpx


class LoseResponses(httpx.AsyncBaseTransport):
    """Delivers each request to the server, then loses the first `n` answers as timeouts."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = n
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if self.lost > 0:
            self.lost -= 1
            await response.aclose()
            raise httpx.ReadTimeout("injected: answer lost on the way back", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
