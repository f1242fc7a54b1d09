"""The dispatcher's tools against the real inventory: what the worker hears, what changes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from device.events import EventBus, ToolCalled, ToolFinished, Transcript
from device.inventory.seed import check_digits_for
from device.inventory.server import RunningInventory
from device.tools.declarations import WAREHOUSE_TOOLS
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient, move_request


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def dispatcher(bus: EventBus, client: InventoryClient) -> AsyncIterator[ToolDispatcher]:
    d = ToolDispatcher(bus=bus, client=client, enabled=WAREHOUSE_TOOLS)
    yield d
    d.close()


class Session:
    """A scripted conversation: model calls and both sides' speech."""

    def __init__(self, dispatcher: ToolDispatcher, bus: EventBus) -> None:
        self.d, self.bus, self.n = dispatcher, bus, 0
        self.results: list[dict[str, Any]] = []

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        self.n += 1
        result = await self.d.call(session_id="s1", call_id=f"c{self.n}", name=name, args=args)
        self.results.append(result)
        if result["status"] != "error":
            self.say("model", result["speakable"])
        return result

    def say(self, role: str, text: str) -> None:
        self.bus.publish(Transcript(session_id="s1", role=role, text=text))


async def test_where_is_sku_104417(dispatcher: ToolDispatcher) -> None:
    result = await dispatcher.call(
        session_id="s1", call_id="c1", name="find_item", args={"sku": "104417"}
    )
    assert result["status"] == "ok"
    assert result["speakable"] == (
        'SKU 104417, "Nitrile gloves, blue, size M, box of 100": A-12-03, aisle A, bay twelve, '
        'level three, forty units. Careful: SKU 104471, "Nitrile gloves, blue, size L, box of '
        '100", is similar.'
    )
    assert result["data"]["locations"][0]["quantity"] == 40


async def test_a_misheard_sku_offers_the_close_ones(dispatcher: ToolDispatcher) -> None:
    result = await dispatcher.call(
        session_id="s1", call_id="c1", name="find_item", args={"sku": "140417"}
    )
    assert (result["status"], result["code"]) == ("error", "ITEM_NOT_FOUND")
    assert "104417" in result["valid_options"]
    assert "Did you mean" in result["speakable"]


async def test_the_vocollect_pick_flow_with_a_short_pick(
    dispatcher: ToolDispatcher, bus: EventBus, inventory: RunningInventory, client: InventoryClient
) -> None:
    s = Session(dispatcher, bus)
    digits = check_digits_for(inventory.db_path, "A-12-03")
    wrong = "111" if digits != "111" else "222"

    task = await s.call("get_next_pick")
    assert task["data"]["task"]["id"] == "P0001"
    assert "aisle A, bay twelve, level three" in task["speakable"]
    assert "Pick five of SKU 104417" in task["speakable"]

    too_early = await s.call("confirm_pick", task_id="P0001", quantity=2)
    assert (too_early["code"], too_early["valid_options"]) == (
        "LOCATION_NOT_VERIFIED",
        ["verify_location"],
    )
    mismatch = await s.call("verify_location", location="A-12-03", spoken_digits=wrong)
    assert (mismatch["code"], mismatch["retryable"]) == ("CHECK_DIGIT_MISMATCH", True)
    s.say("user", digits)
    assert (await s.call("verify_location", location="A-12-03", spoken_digits=digits))[
        "status"
    ] == "ok"

    short = await s.call("confirm_pick", task_id="P0001", quantity=2)
    assert short["status"] == "needs_confirmation"
    assert short["speakable"].startswith("Asked for five, you said two.")
    s.say("user", "confirm")
    done = await s.call("confirm_pending_action", decision="confirm")
    assert done["speakable"] == "Short pick of two recorded."

    rows = await client.get_stock(sku="104417", location="A-12-03")
    assert rows[0]["quantity"] == 38
    assert (await client.get_pick("P0001"))["status"] == "short"
    # The model never sees the label's check digits (the worker's own words aside).
    for result in s.results:
        assert not re.search(rf"\b{digits}\b", json.dumps(result))


async def test_three_wrong_check_digits_lock_the_bin_and_point_to_a_supervisor(
    dispatcher: ToolDispatcher, inventory: RunningInventory
) -> None:
    digits = check_digits_for(inventory.db_path, "A-12-03")
    wrong = [d for d in ("111", "222", "333", "444") if d != digits][:3]
    codes = []
    for i, guess in enumerate([*wrong, digits]):
        result = await dispatcher.call(
            session_id="s1",
            call_id=f"v{i}",
            name="verify_location",
            args={"location": "A-12-03", "spoken_digits": guess},
        )
        codes.append(result["code"])
    assert codes == [
        "CHECK_DIGIT_MISMATCH",
        "CHECK_DIGIT_MISMATCH",
        "TOO_MANY_TRIES",
        "TOO_MANY_TRIES",
    ]


async def test_a_count_is_read_back_with_the_difference(
    dispatcher: ToolDispatcher, bus: EventBus, client: InventoryClient
) -> None:
    s = Session(dispatcher, bus)
    proposed = await s.call("record_count", sku="104417", location="A-12-03", counted_quantity=38)
    assert proposed["speakable"] == (
        "Count of SKU 104417 at A-12-03: thirty-eight. The system shows forty, so two fewer. "
        "Say confirm, or press the button."
    )
    s.say("user", "yes confirm")
    assert (await s.call("confirm_pending_action", decision="confirm"))["status"] == "ok"
    assert (await client.get_stock(sku="104417", location="A-12-03"))[0]["quantity"] == 38


async def test_a_count_that_went_stale_before_the_confirm_is_not_applied(
    dispatcher: ToolDispatcher, bus: EventBus, client: InventoryClient
) -> None:
    s = Session(dispatcher, bus)
    await s.call("record_count", sku="104417", location="A-12-03", counted_quantity=38)
    # Someone else picks from the bin while the worker is still answering.
    await client.commit(move_request("104417", "A-12-03", "A-14-01", 1), idempotency_key="other")
    s.say("user", "confirm")
    result = await s.call("confirm_pending_action", decision="confirm")
    assert (result["code"], result["speakable"]) == (
        "STALE_COUNT",
        "The stock changed while you were counting. Please count again.",
    )
    assert (await client.get_stock(sku="104417", location="A-12-03"))[0]["quantity"] == 39
    assert dispatcher.pending is None


async def test_a_move_that_would_oversell_is_refused_before_any_read_back(
    dispatcher: ToolDispatcher,
) -> None:
    result = await dispatcher.call(
        session_id="s1",
        call_id="c1",
        name="move_stock",
        args={"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
              "quantity": 41},
    )  # fmt: skip
    assert (result["code"], result["valid_options"]) == ("INSUFFICIENT_STOCK", ["40"])
    assert result["speakable"] == "There are only forty of SKU 104417 at A-12-03."
    assert dispatcher.pending is None


async def test_a_call_for_help_is_sent_at_once(
    dispatcher: ToolDispatcher, client: InventoryClient
) -> None:
    result = await dispatcher.call(
        session_id="s1",
        call_id="h1",
        name="handoff_to_human",
        args={"reason": "injury", "summary": "Worker cut their hand at A-12-03."},
    )
    assert result["status"] == "ok"
    assert result["speakable"] == "I've called a supervisor. Please stay where you are."
    [entry] = await client.audit(action="handoff")
    assert entry["call_id"] == "h1"


@pytest.mark.parametrize(
    ("name", "args", "field"),
    [
        ("move_stock", {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
                        "quantity": 0}, "quantity"),
        ("move_stock", {"sku": "104417", "from_location": "a-12-03", "to_location": "A-14-01",
                        "quantity": 5}, "from_location"),
        ("move_stock", {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
                        "quantity": 5, "confirmed": True}, "confirmed"),
        ("move_stock", {"sku": "104417", "from_location": "A-12-03", "quantity": 5},
         "to_location"),
        ("verify_location", {"location": "A-12-03", "spoken_digits": "4821"}, "spoken_digits"),
        ("report_damage", {"sku": "104417", "location": "A-12-03", "quantity": 1,
                           "damage": "sad"}, "damage"),
        ("get_stock", {"location": "A-12-03\n"}, "location"),
    ],
)  # fmt: skip
async def test_bad_arguments_name_the_field_and_never_reach_the_api(
    dispatcher: ToolDispatcher, client: InventoryClient, name: str, args: dict[str, Any], field: str
) -> None:
    result = await dispatcher.call(session_id="s1", call_id="c1", name=name, args=args)
    assert (result["status"], result["code"], result["field"]) == (
        "error",
        "INVALID_ARGUMENT",
        field,
    )
    assert field.replace("_", " ") in result["speakable"]
    assert dispatcher.pending is None
    assert await client.audit() == []


async def test_enum_errors_list_the_valid_options(dispatcher: ToolDispatcher) -> None:
    result = await dispatcher.call(
        session_id="s1",
        call_id="c1",
        name="handoff_to_human",
        args={"reason": "bored", "summary": "x"},
    )
    assert "worker_request" in result["valid_options"]


async def test_integral_floats_from_protobuf_are_accepted(dispatcher: ToolDispatcher) -> None:
    result = await dispatcher.call(
        session_id="s1",
        call_id="c1",
        name="move_stock",
        args={"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
              "quantity": 5.0},
    )  # fmt: skip
    assert result["status"] == "needs_confirmation"


async def test_an_unknown_or_disabled_tool_is_a_structured_error(
    bus: EventBus, client: InventoryClient
) -> None:
    d = ToolDispatcher(bus=bus, client=client, enabled=["find_item"])
    try:
        for name in ("move_stock", "confirm_pending_action", "launch_rocket"):
            result = await d.call(session_id="s1", call_id=name, name=name, args={})
            assert (result["code"], result["valid_options"]) == ("UNKNOWN_TOOL", ["find_item"])
    finally:
        d.close()


def test_unknown_tools_in_the_config_are_named(bus: EventBus, client: InventoryClient) -> None:
    with pytest.raises(ValueError, match="'teleport'"):
        ToolDispatcher(bus=bus, client=client, enabled=["find_item", "teleport"])


async def test_every_call_has_a_time_limit(bus: EventBus) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[Any] = []
    bus.subscribe(events.append)
    try:
        async with InventoryClient(f"http://127.0.0.1:{port}/api/v1", "wvi_x", timeout_s=30) as c:
            d = ToolDispatcher(bus=bus, client=c, enabled=["find_item"], timeout_s=0.2)
            result = await d.call(
                session_id="s1", call_id="t1", name="find_item", args={"sku": "104417"}
            )
            d.close()
    finally:
        server.close()
        await server.wait_closed()
    assert (result["status"], result["code"], result["retryable"]) == ("error", "TIMEOUT", True)
    assert [type(e) for e in events] == [ToolCalled, ToolFinished]
