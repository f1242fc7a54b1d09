"""Writes are confirmed by the worker on the device, never by the model (bus level).

Each test drives the dispatcher the way the Live session will: the model's function calls go
through `call()`, the model's speech and the worker's speech arrive as bus transcripts, and
the button as a bus ButtonEvent. Stock is read back from the real inventory server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from device.events import ButtonEvent, ErrorRaised, Event, EventBus, ToolFinished, Transcript
from device.inventory.server import RunningInventory
from device.tools.confirmation import ConfirmationResolved
from device.tools.declarations import WAREHOUSE_TOOLS
from device.tools.dispatcher import ToolDispatcher, idempotency_key
from device.tools.inventory_client import InventoryClient

MOVE = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01", "quantity": 5}
READBACK = "Move five of SKU 104417 from A-12-03 to A-14-01. Say confirm, or press the button."


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def events(bus: EventBus) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe(seen.append)
    return seen


@pytest.fixture
async def dispatcher(bus: EventBus, client: InventoryClient) -> AsyncIterator[ToolDispatcher]:
    d = ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS)
    yield d
    d.close()


def say(bus: EventBus, role: str, text: str) -> None:
    bus.publish(Transcript(session_id="s1", role=role, text=text))


async def propose(d: ToolDispatcher, call_id: str = "c1", **args: Any) -> dict[str, Any]:
    return await d.call(session_id="s1", call_id=call_id, name="move_stock", args={**MOVE, **args})


async def commit(d: ToolDispatcher, call_id: str = "c9") -> dict[str, Any]:
    return await d.call(
        session_id="s1",
        call_id=call_id,
        name="confirm_pending_action",
        args={"decision": "confirm"},
    )


async def stock(client: InventoryClient) -> tuple[int, int]:
    rows = {r["location"]: r["quantity"] for r in await client.get_stock(sku="104417")}
    return rows.get("A-12-03", 0), rows.get("A-14-01", 0)


async def test_the_model_gets_a_read_back_and_nothing_changes_yet(
    dispatcher: ToolDispatcher, client: InventoryClient
) -> None:
    result = await propose(dispatcher)
    assert result["status"] == "needs_confirmation"
    assert result["speakable"] == READBACK
    assert result["valid_options"] == ["confirm", "cancel"]
    assert result["data"]["after"] == {"A-12-03": 35, "A-14-01": 5}
    assert await stock(client) == (40, 0)


async def test_without_the_workers_confirm_nothing_changes(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    await propose(dispatcher)
    say(bus, "model", READBACK)
    say(bus, "user", "hmm, let me look at the shelf first")
    result = await commit(dispatcher)
    assert (result["status"], result["code"]) == ("refused", "NOT_CONFIRMED")
    assert await stock(client) == (40, 0)
    assert await client.audit() == []


async def test_a_confirm_word_after_the_read_back_commits_exactly_once(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    await propose(dispatcher, call_id="call-orig")
    say(bus, "model", READBACK)
    say(bus, "user", " Confirm.")
    done = await commit(dispatcher)
    again = await commit(dispatcher, call_id="c10")

    assert done["status"] == "ok"
    assert done["speakable"] == "Done. Moved five of SKU 104417 to A-14-01."
    assert again["code"] == "NO_PENDING_ACTION"
    assert await stock(client) == (35, 5)
    [entry] = await client.audit()
    assert (entry["session_id"], entry["call_id"]) == ("s1", "call-orig")
    assert entry["idempotency_key"] == idempotency_key("s1", "call-orig")


async def test_a_commit_without_confirmation_is_refused_and_logged(
    dispatcher: ToolDispatcher,
    client: InventoryClient,
    events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await propose(dispatcher)
    with caplog.at_level(logging.WARNING, logger="device.tools.dispatcher"):
        result = await commit(dispatcher)

    assert (result["status"], result["code"]) == ("refused", "NOT_READ_BACK")
    assert "Say confirm, or press the button." in result["speakable"]
    errors = [e for e in events if isinstance(e, ErrorRaised)]
    assert len(errors) == 1 and "not confirmed" in errors[0].message
    assert "not confirmed" in caplog.text
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [e.status for e in finished] == ["needs_confirmation", "refused"]
    assert await stock(client) == (40, 0)


async def test_a_confirm_said_before_the_read_back_does_not_count(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    say(bus, "user", "move five from A-12-03 to A-14-01, confirm")
    await propose(dispatcher)
    # The same breath's transcript can land after the tool call, before the model speaks.
    say(bus, "user", "confirm")
    early = await commit(dispatcher, call_id="c2")
    assert early["code"] == "NOT_READ_BACK"
    assert await stock(client) == (40, 0)

    say(bus, "model", READBACK)
    say(bus, "user", "confirm")
    assert (await commit(dispatcher, call_id="c3"))["status"] == "ok"
    assert await stock(client) == (35, 5)


async def test_a_button_press_after_the_read_back_confirms(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus, events: list[Event]
) -> None:
    bus.publish(ButtonEvent(action="press", source="gpio"))  # before the proposal: ignored
    await propose(dispatcher)
    say(bus, "model", READBACK)
    bus.publish(ButtonEvent(action="release", source="gpio"))
    assert dispatcher.pending is not None and not dispatcher.pending.confirmed
    bus.publish(ButtonEvent(action="press", source="gpio"))
    assert (await commit(dispatcher))["status"] == "ok"
    assert await stock(client) == (35, 5)
    outcomes = [(e.outcome, e.source) for e in events if isinstance(e, ConfirmationResolved)]
    assert outcomes == [("confirmed", "button:gpio"), ("committed", "button:gpio")]


@pytest.mark.parametrize(
    "answer", ["that's not correct", "no", "wait, cancel that", "confirm... no, wrong bin"]
)
async def test_a_negative_answer_never_confirms(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus, answer: str
) -> None:
    await propose(dispatcher)
    say(bus, "model", READBACK)
    for fragment in answer.split(" "):
        say(bus, "user", fragment + " ")
    assert (await commit(dispatcher))["code"] == "DECLINED"
    assert await stock(client) == (40, 0)


async def test_the_worker_can_cancel(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    await propose(dispatcher)
    say(bus, "model", READBACK)
    say(bus, "user", "cancel")
    cancelled = await dispatcher.call(
        session_id="s1", call_id="c5", name="confirm_pending_action", args={"decision": "cancel"}
    )
    assert cancelled["status"] == "cancelled"
    say(bus, "user", "confirm")
    assert (await commit(dispatcher))["code"] == "DECLINED"  # nothing to commit: the worker said no
    assert await stock(client) == (40, 0)


async def test_the_appliance_can_confirm_and_commit_directly(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    await propose(dispatcher)
    assert not dispatcher.confirm("control")  # before the read-back: ignored
    say(bus, "model", READBACK)
    assert dispatcher.confirm("control")
    result = await dispatcher.commit_pending()
    assert result["status"] == "ok"
    assert await stock(client) == (35, 5)
    assert not dispatcher.confirm("control")  # nothing pending any more


class LoseCommitAnswers(httpx.AsyncBaseTransport):
    """The commit reaches the server, but its answer is lost `n` times (Wi-Fi drop)."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        is_commit = request.method == "POST" and b"dry_run" not in request.url.query
        if is_commit and self.lost > 0:
            self.lost -= 1
            raise httpx.ReadTimeout("injected", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_commit_whose_answer_was_lost_is_retried_without_applying_twice(
    inventory: RunningInventory, client: InventoryClient, bus: EventBus
) -> None:
    async with InventoryClient(
        inventory.base_url, inventory.token, transport=LoseCommitAnswers(1), max_attempts=1
    ) as flaky:
        d = ToolDispatcher(bus=bus, client=flaky, enabled=["move_stock"])
        await propose(d)
        say(bus, "model", READBACK)
        say(bus, "user", "correct")
        lost = await commit(d)
        assert (lost["code"], lost["retryable"]) == ("UNAVAILABLE", True)
        retried = await commit(d, call_id="c11")
        d.close()
    assert retried["status"] == "ok"
    assert await stock(client) == (35, 5)
    assert len(await client.audit()) == 1


async def test_a_duplicated_function_call_id_runs_once(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus, events: list[Event]
) -> None:
    first = await propose(dispatcher, call_id="dup")
    second = await propose(dispatcher, call_id="dup")
    assert first == second
    assert sum(isinstance(e, ToolFinished) for e in events) == 1


class HoldCommits(httpx.AsyncBaseTransport):
    """Holds each commit's answer until the test releases it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if request.method == "POST" and b"dry_run" not in request.url.query:
            self.holding.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_new_proposal_during_a_commit_stays_pending(
    inventory: RunningInventory, client: InventoryClient, bus: EventBus
) -> None:
    hold = HoldCommits()
    async with InventoryClient(inventory.base_url, inventory.token, transport=hold) as slow:
        d = ToolDispatcher(bus=bus, client=slow, enabled=["move_stock"])
        await propose(d, call_id="first")
        say(bus, "model", READBACK)
        say(bus, "user", "confirm")
        committing = asyncio.create_task(commit(d))
        await hold.holding.wait()
        second = await propose(d, call_id="second", quantity=1)
        hold.release.set()
        done = await committing
        pending = d.pending
        d.close()
    assert (done["status"], second["status"]) == ("ok", "needs_confirmation")
    assert pending is not None and pending.call_id == "second" and not pending.confirmed
    assert await stock(client) == (35, 5)


async def test_a_push_to_talk_button_can_be_kept_from_confirming(
    client: InventoryClient, bus: EventBus
) -> None:
    d = ToolDispatcher(bus=bus, client=client, enabled=["move_stock"], button_confirms=False)
    try:
        await propose(d)
        say(bus, "model", READBACK)
        bus.publish(ButtonEvent(action="press", source="gpio"))
        assert (await commit(d))["code"] == "NOT_CONFIRMED"
        assert d.confirm("button")  # the appliance's own confirm gesture
        assert (await commit(d, call_id="c12"))["status"] == "ok"
    finally:
        d.close()
    assert await stock(client) == (35, 5)


async def test_two_wrong_read_backs_drop_the_change_and_call_a_person(
    dispatcher: ToolDispatcher, client: InventoryClient, bus: EventBus
) -> None:
    await propose(dispatcher)
    say(bus, "model", "Moving fifty of SKU 104417 from A-12-03 to A-14-01.")
    say(bus, "user", "confirm")
    first = await commit(dispatcher)
    assert first["code"] == "READBACK_MISMATCH" and READBACK in first["speakable"]
    say(bus, "model", "Moving five hundred of 104417.")
    say(bus, "user", "confirm")
    second = await commit(dispatcher, call_id="c10")
    assert second["code"] == "HANDED_OFF"
    for _ in range(100):  # the hand-off goes out in the background
        if await client.audit(action="handoff"):
            break
        await asyncio.sleep(0.02)
    [handoff] = await client.audit(action="handoff")
    assert handoff["session_id"] == "s1"
    assert await stock(client) == (40, 0)
    assert await client.audit(action="move") == []
