"""Confirmed writes that outlive an inventory outage: saved on the device, delivered once, in
order, when the API is back; refused ones become a hand-off ticket. Real API over HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.events import ErrorRaised, Event, EventBus, Transcript, WriteQueueChanged
from device.inventory.server import InventoryServer, RunningInventory
from device.service.metrics import MetricsCollector
from device.tools.declarations import WAREHOUSE_TOOLS
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import (
    CallContext,
    InventoryClient,
    InventoryError,
    move_request,
)
from device.tools.write_queue import QueueingInventoryClient, WriteQueue

MOVE = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01"}


class Api:
    """The real server on one fixed port, which the test stops and starts again."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.server = InventoryServer(db, seed="demo")
        self.running: RunningInventory = self.server.start()
        self.token = self.running.token
        self.port = int(self.running.base_url.split(":")[2].split("/")[0])
        self.base_url = self.running.base_url

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start(self) -> None:
        self.server = InventoryServer(self.db, port=self.port)
        await asyncio.to_thread(self.server.start)

    async def stock(self, location: str) -> int:
        async with InventoryClient(self.base_url, self.token) as client:
            rows = await client.get_stock(sku="104417", location=location)
        return int(rows[0]["quantity"]) if rows else 0

    async def audit(self, action: str) -> list[dict[str, Any]]:
        async with InventoryClient(self.base_url, self.token) as client:
            return list(reversed(await client.audit(action=action)))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    running = await asyncio.to_thread(Api, tmp_path / "inventory.db")
    yield running
    await running.stop()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


Made = tuple[WriteQueue, QueueingInventoryClient]


@pytest.fixture
async def make_queue(tmp_path: Path, bus: EventBus, api: Api) -> AsyncIterator[Callable[[], Any]]:
    made: list[Made] = []

    async def make() -> Made:
        queue = WriteQueue(tmp_path / "state" / "write-queue.db", bus=bus, retry_min_s=0.02,
                           retry_max_s=0.2)  # fmt: skip
        client = QueueingInventoryClient(
            api.base_url, api.token, queue=queue, timeout_s=2.0, connect_timeout_s=0.5
        )
        await queue.start()
        made.append((queue, client))
        return queue, client

    yield make
    for queue, client in made:
        await queue.aclose()
        await client.aclose()


def watch(bus: EventBus, change: str, count: int = 1) -> Awaitable[list[WriteQueueChanged]]:
    """The next `count` queue events of one change, from now on (the test's clock is events)."""
    seen: list[WriteQueueChanged] = []
    done: asyncio.Future[list[WriteQueueChanged]] = asyncio.get_running_loop().create_future()

    def on(event: Event) -> None:
        if isinstance(event, WriteQueueChanged) and event.change == change and not done.done():
            seen.append(event)
            if len(seen) == count:
                done.set_result(seen)
                unsubscribe()

    unsubscribe = bus.subscribe(on)
    return asyncio.wait_for(done, timeout=30)


class Worker:
    """A scripted conversation through the real dispatcher."""

    def __init__(self, dispatcher: ToolDispatcher, bus: EventBus) -> None:
        self.d, self.bus, self.n = dispatcher, bus, 0

    async def move_and_confirm(self, quantity: int) -> tuple[dict[str, Any], dict[str, Any]]:
        self.n += 1
        proposed = await self.d.call(
            session_id="s1", call_id=f"m{self.n}", name="move_stock",
            args={**MOVE, "quantity": quantity},
        )  # fmt: skip
        self.bus.publish(Transcript(session_id="s1", role="model", text=proposed["speakable"]))
        self.bus.publish(Transcript(session_id="s1", role="user", text="confirm"))
        done = await self.d.call(
            session_id="s1", call_id=f"c{self.n}", name="confirm_pending_action",
            args={"decision": "confirm"},
        )  # fmt: skip
        return proposed, done


async def test_a_confirmed_move_during_an_outage_is_saved_then_applied_once_when_the_api_returns(
    api: Api, bus: EventBus, make_queue: Callable[[], Any], tmp_path: Path
) -> None:
    queue, client = await make_queue()
    worker = Worker(ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS), bus)
    # Read back while the API is up; the outage starts before the worker confirms.
    proposed = await worker.d.call(
        session_id="s1", call_id="m1", name="move_stock", args={**MOVE, "quantity": 5}
    )
    assert proposed["status"] == "needs_confirmation"
    await api.stop()
    bus.publish(Transcript(session_id="s1", role="model", text=proposed["speakable"]))
    bus.publish(Transcript(session_id="s1", role="user", text="confirm"))
    done = await worker.d.call(
        session_id="s1", call_id="c1", name="confirm_pending_action", args={"decision": "confirm"}
    )
    assert (done["status"], done["code"]) == ("ok", "QUEUED")
    assert "saved" in done["speakable"].lower() and "sync" in done["speakable"].lower()
    assert queue.summary()["depth"] == 1
    # Durable before the worker heard it: another connection reads the row from the file.
    with sqlite3.connect(tmp_path / "state" / "write-queue.db") as db:
        assert db.execute("SELECT count(*) FROM writes").fetchone() == (1,)
    delivered = watch(bus, "delivered")
    await api.start()
    await delivered
    assert await api.stock("A-12-03") == 35
    assert await api.stock("A-14-01") == 5
    assert len(await api.audit("move")) == 1
    assert queue.summary()["depth"] == 0 and queue.summary()["delivered"] == 1


async def test_a_move_proposed_while_offline_is_read_back_from_its_arguments_and_queued(
    api: Api, bus: EventBus, make_queue: Callable[[], Any]
) -> None:
    _queue, client = await make_queue()
    worker = Worker(ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS), bus)
    await api.stop()
    proposed, done = await worker.move_and_confirm(3)
    assert proposed["speakable"] == (
        "Move three of SKU 104417 from A-12-03 to A-14-01. Say confirm, or press the button."
    )
    assert done["code"] == "QUEUED"
    delivered = watch(bus, "delivered")
    await api.start()
    await delivered
    assert (await api.stock("A-12-03"), await api.stock("A-14-01")) == (37, 3)


async def test_a_read_still_fails_clearly_while_offline(
    api: Api, bus: EventBus, make_queue: Callable[[], Any]
) -> None:
    _queue, client = await make_queue()
    dispatcher = ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS)
    await api.stop()
    result = await dispatcher.call(
        session_id="s1", call_id="r1", name="get_stock", args={"location": "A-12-03"}
    )
    assert (result["code"], result["retryable"]) == ("UNAVAILABLE", True)


async def test_pending_writes_survive_a_restart_and_go_out_in_order_behind_older_ones(
    api: Api, bus: EventBus, make_queue: Callable[[], Any]
) -> None:
    queue, client = await make_queue()
    await api.stop()
    for n, quantity in enumerate((1, 2, 3)):
        body = await client.commit(
            move_request("104417", "A-12-03", "A-14-01", quantity), idempotency_key=f"k-{n}"
        )
        assert body["queued"] is True
    await queue.aclose()
    await client.aclose()
    await api.start()
    # A new device process: the queue loads from its file before anything else is sent.
    loaded = watch(bus, "loaded")
    delivered = watch(bus, "delivered", 4)
    queue2, client2 = await make_queue()
    assert (await loaded)[0].depth == 3
    # The API is up, but older writes wait: this one queues behind them, never overtakes.
    body = await client2.commit(
        move_request("104417", "A-14-01", "A-12-03", 6), idempotency_key="k-3"
    )
    assert body.get("queued") is True
    events = await delivered
    assert [e.idempotency_key for e in events] == ["k-0", "k-1", "k-2", "k-3"]
    moves = await api.audit("move")
    assert [m["idempotency_key"] for m in moves] == ["k-0", "k-1", "k-2", "k-3"]
    assert (await api.stock("A-12-03"), await api.stock("A-14-01")) == (40, 0)
    assert queue2.summary()["depth"] == 0


async def test_a_write_refused_on_delivery_becomes_a_handoff_ticket_and_an_event(
    api: Api, bus: EventBus, make_queue: Callable[[], Any]
) -> None:
    queue, client = await make_queue()
    await api.stop()
    await client.commit(move_request("104417", "A-12-03", "A-14-01", 30), idempotency_key="big")
    await client.commit(move_request("104417", "A-12-03", "A-14-01", 5), idempotency_key="small")
    await queue.aclose()
    await api.start()
    # Meanwhile someone else took most of the bin: the saved move would oversell now.
    async with InventoryClient(api.base_url, api.token) as other:
        await other.commit(move_request("104417", "A-12-03", "A-14-01", 20), idempotency_key="x")
    rejected = watch(bus, "rejected")
    delivered = watch(bus, "delivered")
    queue2, _client2 = await make_queue()
    event = (await rejected)[0]
    assert (event.code, event.idempotency_key) == ("INSUFFICIENT_STOCK", "big")
    assert event.handoff_id is not None
    await delivered  # the next write is not held up by the refused one
    handoffs = await api.audit("handoff")
    assert len(handoffs) == 1 and handoffs[0]["ref"] == f"handoff:{event.handoff_id}"
    assert (await api.stock("A-12-03"), await api.stock("A-14-01")) == (15, 25)
    assert queue2.summary()["rejected"] == 1 and queue2.summary()["depth"] == 0


async def test_a_server_error_queues_the_write_and_a_refusal_is_not_queued(
    bus: EventBus, tmp_path: Path
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Idempotency-Key"] == "down":
            return httpx.Response(503, json={"code": "HTTP_503", "detail": "restarting"})
        return httpx.Response(409, json={"code": "INSUFFICIENT_STOCK", "detail": "only 1"})

    write = move_request("104417", "A-12-03", "A-14-01", 2)
    for n, key in enumerate(("down", "refused")):
        queue = WriteQueue(tmp_path / f"q{n}.db", bus=bus, retry_min_s=60.0)
        client = QueueingInventoryClient(
            "http://inventory.invalid/api/v1", "t", queue=queue, max_attempts=1,
            transport=httpx.MockTransport(handler),
        )  # fmt: skip
        try:
            if key == "down":
                assert (await client.commit(write, idempotency_key=key))["queued"] is True
                assert queue.summary()["depth"] == 1
                continue
            # A refusal is the worker's to hear now, not the queue's to hide.
            with pytest.raises(InventoryError) as refused:
                await client.commit(write, idempotency_key=key)
            assert refused.value.code == "INSUFFICIENT_STOCK"
            assert queue.summary()["depth"] == 0
        finally:
            await queue.aclose()
            await client.aclose()


async def test_an_api_that_hangs_gets_the_write_saved_before_the_tool_call_times_out(
    bus: EventBus, tmp_path: Path
) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.Event().wait()  # accepts the request, never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = WriteQueue(tmp_path / "q.db", bus=bus, retry_min_s=60.0)
    client = QueueingInventoryClient(
        f"http://127.0.0.1:{port}/api/v1", "t", queue=queue, direct_timeout_s=0.5,
        timeout_s=30.0,
    )  # fmt: skip
    worker = Worker(ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS), bus)
    try:
        # The tool's limit is 5 s; the client gives up on the API after 0.5 s and saves.
        proposed, done = await worker.move_and_confirm(4)
        assert proposed["status"] == "needs_confirmation"
        assert (done["code"], queue.summary()["depth"]) == ("QUEUED", 1)
    finally:
        server.close()
        await queue.aclose()
        await client.aclose()


async def test_a_damaged_queue_file_is_kept_aside_and_the_device_carries_on(
    bus: EventBus, tmp_path: Path
) -> None:
    path = tmp_path / "write-queue.db"
    path.write_bytes(b"not a database, a torn write " * 200)
    errors: list[ErrorRaised] = []
    bus.subscribe(lambda e: errors.append(e) if isinstance(e, ErrorRaised) else None)
    queue = WriteQueue(path, bus=bus, retry_min_s=60.0)
    try:
        await queue.start()
        aside = list(tmp_path.glob("write-queue.db.corrupt-*"))  # noqa: ASYNC240
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a database")
        assert [e.where for e in errors] == ["tools.write_queue"]
        assert str(aside[0]) in errors[0].message and queue.summary()["depth"] == 0
        write = move_request("104417", "A-12-03", "A-14-01", 1)
        await queue.save(write, "k", CallContext())
        assert queue.summary()["depth"] == 1
    finally:
        await queue.aclose()


async def test_the_metrics_show_the_queue(bus: EventBus) -> None:
    collector = MetricsCollector(bus, device_id="q-01")
    try:
        bus.publish(WriteQueueChanged(change="queued", depth=2, oldest_ts=1.0))
        bus.publish(WriteQueueChanged(change="delivered", depth=1, oldest_ts=2.0))
        bus.publish(WriteQueueChanged(change="rejected", depth=0, code="STALE_COUNT"))
        text = collector.families.exposition().decode()
    finally:
        collector.close()
    assert "warehouse_voice_write_queue_depth 0.0" in text
    assert "warehouse_voice_write_queue_oldest_age_seconds 0.0" in text
    assert "warehouse_voice_write_queue_delivered_total 1.0" in text
    assert "warehouse_voice_write_queue_rejected_total 1.0" in text
