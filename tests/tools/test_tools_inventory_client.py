"""The inventory client against the real server: retries that are safe, and only those."""

from __future__ import annotations

import pytest

from device.inventory.server import RunningInventory
from device.tools.inventory_client import (
    InventoryClient,
    InventoryError,
    InventoryUnavailable,
    move_request,
)
from tests.tools.transports import LoseResponses

MOVE = move_request("104417", "A-12-03", "A-14-01", 5)


async def stock(client: InventoryClient, location: str) -> int:
    rows = await client.get_stock(sku="104417", location=location)
    return int(rows[0]["quantity"]) if rows else 0


async def test_a_move_retried_five_times_after_lost_answers_moves_once(
    inventory: RunningInventory, client: InventoryClient
) -> None:
    lossy = LoseResponses(4)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=lossy, max_attempts=5, backoff_s=0.01
    ) as flaky:
        body = await flaky.commit(MOVE, idempotency_key="one-move")

    assert lossy.sent == 5
    assert body["after"] == {"A-12-03": 35, "A-14-01": 5}
    assert await stock(client, "A-12-03") == 35
    assert await stock(client, "A-14-01") == 5
    assert len(await client.audit(action="move")) == 1


async def test_five_separate_sends_with_one_key_move_once(
    inventory: RunningInventory, client: InventoryClient
) -> None:
    lossy = LoseResponses(4)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=lossy, max_attempts=1
    ) as flaky:
        for _ in range(4):
            with pytest.raises(InventoryUnavailable):
                await flaky.commit(MOVE, idempotency_key="same-key")
        await flaky.commit(MOVE, idempotency_key="same-key")

    assert lossy.sent == 5
    assert await stock(client, "A-12-03") == 35
    assert len(await client.audit(action="move")) == 1


async def test_reads_are_retried_after_a_lost_answer(inventory: RunningInventory) -> None:
    lossy = LoseResponses(2)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=lossy, max_attempts=3, backoff_s=0.01
    ) as flaky:
        item = await flaky.get_item("104417")
    assert item["total_quantity"] == 40
    assert lossy.sent == 3


async def test_problem_json_becomes_a_structured_error(client: InventoryClient) -> None:
    with pytest.raises(InventoryError) as caught:
        await client.commit(
            move_request("104417", "A-12-03", "A-14-01", 500), idempotency_key="too-many"
        )
    err = caught.value
    assert (err.status, err.code, err.retryable) == (409, "INSUFFICIENT_STOCK", False)
    assert err.extra["available"] == 40


async def test_a_business_error_is_not_retried(inventory: RunningInventory) -> None:
    counting = LoseResponses(0)
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=counting, max_attempts=5
    ) as c:
        with pytest.raises(InventoryError):
            await c.get_item("999999")
    assert counting.sent == 1


async def test_a_dead_server_is_unavailable_and_retryable(
    inventory: RunningInventory,
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with InventoryClient(
        f"http://127.0.0.1:{dead_port}/api/v1", "wvi_x", max_attempts=2, backoff_s=0.01
    ) as c:
        with pytest.raises(InventoryUnavailable) as caught:
            await c.next_pick()
    assert caught.value.retryable
    assert caught.value.code == "UNAVAILABLE"


async def test_a_wrong_token_is_unauthorized(inventory: RunningInventory) -> None:
    async with InventoryClient(inventory.base_url, "wvi_wrong") as c:
        with pytest.raises(InventoryError) as caught:
            await c.next_pick()
    assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="http://"):
        InventoryClient("ftp://x", "t")
    with pytest.raises(ValueError, match="token"):
        InventoryClient("http://x", "")
