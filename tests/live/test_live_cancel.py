"""toolCallCancellation: a stock change the model takes back can never be committed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from device.events import ConfirmationResolved, Event, EventBus, ToolFinished
from device.inventory.server import RunningInventory
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from tests.live.conftest import Rig, TurnPacedMic

pytestmark = pytest.mark.slow

MOVE = ToolCallSpec(
    id="move-1",
    name="move_stock",
    args={"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01", "quantity": 5},
)
COMMIT = ToolCallSpec(id="commit-1", name="confirm_pending_action", args={"decision": "confirm"})


async def stock(inv: RunningInventory, location: str) -> int:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {inv.token}"}) as client:
        rows = (await client.get(f"{inv.base_url}/stock", params={"location": location})).json()
    return sum(row["quantity"] for row in rows["stock"] if row["sku"] == "104417")


async def moves(inv: RunningInventory) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {inv.token}"}) as client:
        entries = (await client.get(f"{inv.base_url}/audit")).json()["entries"]
    return [e for e in entries if e["action"] == "move"]


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled", "control"])
async def test_a_cancelled_uncommitted_write_is_never_committed(  # type: ignore[no-untyped-def]
    rig_factory, inventory: RunningInventory, cancelled: bool
) -> None:
    # Turn 1: the model proposes the move, then takes the call back (toolCallCancellation)
    # while the read-back waits for the worker. Turn 2: the worker says "confirm" and the
    # model asks to commit. Only the control run, without the cancellation, may move stock.
    scenario = Scenario(
        name="cancel-write",
        speed=10.0,
        turns=[
            TurnSpec(
                user_transcript="Move five of 104417 from A-12-03 to A-14-01.",
                tool_calls=[MOVE],
                cancel_tool_calls=cancelled,
                reply_text="Move five of SKU 104417 from A-12-03 to A-14-01. Say confirm.",
            ),
            TurnSpec(user_transcript="Confirm.", tool_calls=[COMMIT], reply_text="Done."),
        ],
    )

    def dispatcher(bus: EventBus) -> ToolDispatcher:
        return ToolDispatcher(
            bus=bus,
            client=InventoryClient(inventory.base_url, inventory.token),
            enabled=["find_item", "move_stock"],
            confirm_words=["confirm"],
            button_confirms=False,
        )

    rigs: list[Rig] = []

    def read_back_played(n: int) -> bool:
        # A worker confirms what they heard: "Confirm." waits until the read-back has played
        # (on a loaded machine the speaker lags the 8x microphone, and a confirm spoken over
        # the read-back is refused, as it must be).
        rig = rigs[0]
        replies = sum(len(rig.emulator.reply_audio(turn)) for turn in range(n))
        return rig.speaker.played_bytes >= replies

    rig = await rig_factory(
        scenario,
        mic=TurnPacedMic(read_back_played, times=2, gap_s=2.0),
        tools=dispatcher,
        idle_timeout_s=10.0,
        # The speaker slower than the microphone, as on a loaded machine: with the old
        # file-paced worker the control's confirm came over the read-back and was refused.
        speaker_speed=2.0,
    )
    rigs.append(rig)
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for_turns(2, timeout_s=60)
    await rig.finish()
    await rig.tools.aclose()

    finished = [(e.call_id, e.status) for e in seen if isinstance(e, ToolFinished)]
    outcomes = [(e.call_id, e.outcome) for e in seen if isinstance(e, ConfirmationResolved)]
    if cancelled:
        assert "cancel_tool_calls" in [f.kind for f in rig.emulator.record.faults]
        assert finished == [("move-1", "needs_confirmation"), ("commit-1", "error")]
        assert outcomes == [("move-1", "cancelled")]
        assert rig.emulator.record.tool_responses[-1].response["code"] == "NO_PENDING_ACTION"
        assert await stock(inventory, "A-12-03") == 40
        assert await stock(inventory, "A-14-01") == 0
        assert await moves(inventory) == []
    else:
        assert finished == [("move-1", "needs_confirmation"), ("commit-1", "ok")]
        assert await stock(inventory, "A-14-01") == 5
        assert [m["call_id"] for m in await moves(inventory)] == ["move-1"]
