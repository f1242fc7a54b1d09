"""The API's check-digit lockout seen from the device, over real HTTP.

A verify counts an attempt on the server, so the client never repeats one that may have
arrived, and a lockout (429 CHECK_DIGIT_LOCKED) is spoken with when to try again instead of
being retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from device.events import EventBus
from device.inventory.seed import check_digits_for
from device.inventory.server import RunningInventory
from device.tools.declarations import WAREHOUSE_TOOLS
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient, InventoryError, InventoryUnavailable
from tests.tools.transports import LoseResponses

BIN = "A-12-03"


class RefuseFirstConnects(httpx.AsyncBaseTransport):
    """Fails the first `n` requests as refused connections: they never reach the server."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = n
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.refused > 0:
            self.refused -= 1
            raise httpx.ConnectError("injected: connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def wrong_digits(inventory: RunningInventory, n: int = 3) -> list[str]:
    right = check_digits_for(inventory.db_path, BIN)
    return [d for d in ("111", "222", "333", "444", "555") if d != right][:n]


async def attempts_left(inventory: RunningInventory, digits: str) -> Any:
    """One more verify, straight over HTTP: the server's own count of tries left."""
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {inventory.token}"}, timeout=10.0
    ) as raw:
        response = await raw.post(
            f"{inventory.base_url}/locations/{BIN}/verify", json={"check_digits": digits}
        )
    return response.json().get("attempts_left", response.status_code)


def new_dispatcher(client: InventoryClient) -> ToolDispatcher:
    """A fresh device-side memory, as after a restart: only the server remembers the tries."""
    return ToolDispatcher(bus=EventBus(), client=client, enabled=WAREHOUSE_TOOLS)


async def verify(d: ToolDispatcher, digits: str, n: int) -> dict[str, Any]:
    return await d.call(
        session_id="s1",
        call_id=f"v{n}",
        name="verify_location",
        args={"location": BIN, "spoken_digits": digits},
    )


@pytest.fixture
async def dispatchers(client: InventoryClient) -> AsyncIterator[list[ToolDispatcher]]:
    made: list[ToolDispatcher] = []
    yield made
    for d in made:
        d.close()


async def test_a_verify_whose_answer_was_lost_is_not_sent_again(
    inventory: RunningInventory,
) -> None:
    first, second = wrong_digits(inventory, 2)
    lossy = LoseResponses(1)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=lossy, max_attempts=3, backoff_s=0.01
    ) as flaky:
        with pytest.raises(InventoryUnavailable):
            await flaky.verify_location(BIN, first)
    assert lossy.sent == 1
    # One lost try and one more: the server counted two of three, not three.
    assert await attempts_left(inventory, second) == 1


async def test_a_verify_that_never_reached_the_server_is_retried(
    inventory: RunningInventory,
) -> None:
    refusing = RefuseFirstConnects(2)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=refusing, max_attempts=3, backoff_s=0.01
    ) as flaky:
        assert await flaky.verify_location(BIN, wrong_digits(inventory, 1)[0]) is False
    assert refusing.calls == 3
    assert await attempts_left(inventory, wrong_digits(inventory, 2)[1]) == 1


async def test_a_locked_verify_is_not_retried_and_says_how_long(
    inventory: RunningInventory, client: InventoryClient
) -> None:
    for guess in wrong_digits(inventory):
        assert await client.verify_location(BIN, guess) is False
    counting = LoseResponses(0)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=counting, max_attempts=5
    ) as c:
        with pytest.raises(InventoryError) as caught:
            await c.verify_location(BIN, check_digits_for(inventory.db_path, BIN))
    err = caught.value
    assert (err.status, err.code, err.retryable) == (429, "CHECK_DIGIT_LOCKED", False)
    assert 0 < err.extra["retry_after_s"] <= 120
    assert counting.sent == 1


async def test_the_api_lockout_is_spoken_with_when_to_try_again(
    inventory: RunningInventory, client: InventoryClient, dispatchers: list[ToolDispatcher]
) -> None:
    guesses = wrong_digits(inventory)
    before_restart = new_dispatcher(client)
    after_restart = new_dispatcher(client)
    dispatchers += [before_restart, after_restart]
    codes = [(await verify(before_restart, g, i))["code"] for i, g in enumerate(guesses[:2])]
    # The device restarts: its own count is gone; the server's third miss locks the bin.
    codes.append((await verify(after_restart, guesses[2], 2))["code"])
    assert codes == ["CHECK_DIGIT_MISMATCH", "CHECK_DIGIT_MISMATCH", "TOO_MANY_TRIES"]

    again = new_dispatcher(client)
    dispatchers.append(again)
    locked = await verify(again, check_digits_for(inventory.db_path, BIN), 3)
    assert (locked["status"], locked["code"], locked["retryable"]) == (
        "error",
        "TOO_MANY_TRIES",
        False,
    )
    assert locked["speakable"] == (
        f"Too many wrong check digits at {BIN}. Try again in two minutes, or call a supervisor."
    )
    assert locked["valid_options"] == ["handoff_to_human"]
    assert 0 < locked["data"]["retry_after_s"] <= 120
    # The device now knows: asking again is answered on the device, not sent to the server.
    counting = await verify(again, check_digits_for(inventory.db_path, BIN), 4)
    assert counting["code"] == "TOO_MANY_TRIES"
    assert counting["retryable"] is False


async def test_a_pick_at_a_locked_bin_is_spoken_as_the_lockout(
    inventory: RunningInventory, client: InventoryClient, dispatchers: list[ToolDispatcher]
) -> None:
    d = new_dispatcher(client)
    dispatchers.append(d)
    assert (await verify(d, check_digits_for(inventory.db_path, BIN), 0))["status"] == "ok"
    # Someone keeps guessing at the bin with this device's token: the server locks it.
    for guess in wrong_digits(inventory):
        assert await attempts_left(inventory, guess) in (0, 1, 2)

    result = await d.call(
        session_id="s1", call_id="p1", name="confirm_pick", args={"task_id": "P0001", "quantity": 5}
    )
    assert (result["code"], result["retryable"]) == ("TOO_MANY_TRIES", False)
    assert "Try again in two minutes" in result["speakable"]
    assert (await client.get_pick("P0001"))["status"] == "open"
