"""Tools on Gemini 3.8 Live, through the real SDK: a NON_BLOCKING lookup lets the model talk
while it runs and its answer carries its scheduling; a BLOCKING write proposal that new input
cancels leaves nothing pending and commits nothing (device/live/tool_modes.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.audio.source import WavSource
from device.events import Event, EventBus, Speaking
from device.inventory.server import RunningInventory
from device.sim.record import EmulatorRecord
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from tests.live.conftest import RecordingTools

pytestmark = pytest.mark.slow

FIND = ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})
MOVE = ToolCallSpec(
    id="move-1",
    name="move_stock",
    args={"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01", "quantity": 5},
)


@dataclass
class GatedLookup(RecordingTools):
    """A lookup that finishes only once the model's voice reached the device: proof that the
    model kept talking while the tool ran, counted in events rather than seconds."""

    spoke: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        await self.spoke.wait()
        return await super().call(session_id=session_id, call_id=call_id, name=name, args=args)


async def test_a_lookup_runs_while_the_model_says_it_is_checking(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    scn = Scenario(
        name="async-lookup",
        speed=3.0,
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[FIND],
                tool_filler_text="Let me check.",
                reply_text="Aisle twelve, bay three.",
            )
        ],
    )
    seen: list[Event] = []
    lookup = GatedLookup()

    def tools(bus: EventBus) -> GatedLookup:
        def spoke(event: Event) -> None:
            seen.append(event)
            if isinstance(event, Speaking) and event.started:
                lookup.spoke.set()

        bus.subscribe(spoke)
        return lookup

    rig = await rig_factory(scn, tools=tools, idle_timeout_s=10.0)
    assert rig.appliance.conversation is None
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(
        lambda r: bool(r.turns) and r.turns[0].generation_complete, timeout_s=60, what="reply"
    )
    await rig.finish()

    record: EmulatorRecord = rig.emulator.record
    turn = record.turns[0]
    # The device declared the lookup NON_BLOCKING, and the model talked before the answer.
    assert turn.tool_behavior == {"call-1": "NON_BLOCKING"}
    assert turn.filler_pcm
    # The lookup could only finish once the model's voice had reached the device.
    assert lookup.spoke.is_set() and lookup.calls == [("call-1", "find_item", {"sku": "104417"})]
    # The answer came with its scheduling, as the emulator recorded it.
    (answer,) = record.tool_responses
    assert (answer.id, answer.scheduling, answer.expected) == ("call-1", "WHEN_IDLE", True)
    assert answer.response["status"] == "ok"
    # Filler then reply, every byte played.
    assert rig.emulator.reply_audio(0)
    out = (tmp_path / "reply.wav").read_bytes()
    assert out.endswith(b"".join(record.reply_pcm))


async def stock(inv: RunningInventory, location: str) -> int:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {inv.token}"}) as client:
        rows = (await client.get(f"{inv.base_url}/stock", params={"location": location})).json()
    return sum(row["quantity"] for row in rows["stock"] if row["sku"] == "104417")


class HeldProposal:
    """The real dispatcher, whose proposal (read-back ready, pending) is held back from the
    model until the device cancels the call: new input arrives while the call is open.

    Nothing else releases it. Releasing it when the emulator notes the barge-in raced the
    toolCallCancellation still on its way to the device, which then answered a call it did not
    yet know was cancelled (no client can avoid that), so the test failed by chance."""

    def __init__(self, dispatcher: ToolDispatcher) -> None:
        self.dispatcher = dispatcher
        self.results: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()

    def declarations(self) -> list[dict[str, Any]]:
        return self.dispatcher.declarations()

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        result = await self.dispatcher.call(
            session_id=session_id, call_id=call_id, name=name, args=args
        )
        self.results.append(result)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return result


async def test_new_input_cancels_a_blocking_write_proposal(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, inventory, tmp_path: Path
) -> None:
    scn = Scenario(
        name="blocking-move",
        speed=3.0,
        turns=[
            TurnSpec(
                user_transcript="Move five of 104417 from A-12-03 to A-14-01.",
                tool_calls=[MOVE],
                reply_text="Move five. Say confirm.",
            ),
            TurnSpec(user_transcript="No wait.", reply_text="Okay."),
        ],
    )
    # The worker speaks again 1.5 s after the question: during the open call.
    wav, _ = mic_script(2, gap_s=1.5)
    held: list[HeldProposal] = []

    def tools(bus: EventBus) -> HeldProposal:
        dispatcher = ToolDispatcher(
            bus=bus,
            client=InventoryClient(inventory.base_url, inventory.token),
            enabled=["find_item", "move_stock"],
            confirm_words=["confirm"],
            button_confirms=False,
        )
        held.append(HeldProposal(dispatcher))
        return held[0]

    rig = await rig_factory(
        scn,
        tools=tools,
        mic=WavSource(wav, speed=4, tail_silence_s=None),
        idle_timeout_s=10.0,
        # Only the service's cancellation may end the held call, never the device's own timeout.
        tool_timeout_s=600.0,
    )
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(
        lambda r: any(m.kind == "barge_in" for c in r.connections for m in c.markers),
        timeout_s=60,
        what="the worker speaking over the open call",
    )
    # The device stops the open call when the service's cancellation reaches it.
    await asyncio.wait_for(held[0].cancelled.wait(), timeout=60)
    await rig.emulator.wait_for(lambda r: len(r.finished_turns) >= 2, timeout_s=60, what="turns")
    await rig.finish()

    record: EmulatorRecord = rig.emulator.record
    first = record.turns[0]
    assert first.tool_behavior == {"move-1": "BLOCKING"}
    assert first.interrupted
    # The proposal had its read-back ready when the service cancelled the call.
    assert held[0].results[0]["status"] == "needs_confirmation"
    # The cancellation dropped it: nothing pending to confirm, no answer sent, nothing moved.
    assert held[0].dispatcher.pending is None
    assert not [r for r in record.tool_responses if r.id == "move-1"]
    assert await stock(inventory, "A-12-03") == 40
    assert await stock(inventory, "A-14-01") == 0
