"""Stock changes are confirmed on the device, through the emulator and the real SDK.

The model proposes a move; the dispatcher answers with a read-back; the worker's own
transcribed answer (or the button) decides. The model's call alone never commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR
from device.events import ErrorRaised, Event, EventBus, ToolFinished
from device.inventory.server import RunningInventory, serve_inventory
from device.sim.scenario import Scenario, parse_scenario
from device.sim.speech import synthesize
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient

MOVE = 'sku = "104417", from_location = "A-12-03", to_location = "A-14-01", quantity = 5'


def scenario(answer: str) -> Scenario:
    text = f"""
name = "confirm-move"
speed = 20.0
[[turns]]
user_transcript = "Move five of 104417 from A-12-03 to A-14-01."
reply_text = "Move five of SKU 104417 from A-12-03 to A-14-01. Say confirm, or press the button."
[[turns.tool_calls]]
id = "move-1"
name = "move_stock"
args = {{ {MOVE} }}
[[turns]]
user_transcript = "{answer}"
reply_text = "Done."
[[turns.tool_calls]]
id = "commit-1"
name = "confirm_pending_action"
args = {{ decision = "confirm" }}
"""
    return parse_scenario(text, name="confirm-move", base_dir=REPO_CONFIG_DIR / "scenarios")


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[RunningInventory]:
    async with serve_inventory(tmp_path / "inventory.db", seed="demo") as inv:
        yield inv


async def stock(inv: RunningInventory, location: str) -> int:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {inv.token}"}) as client:
        rows = (await client.get(f"{inv.base_url}/stock", params={"location": location})).json()
    return sum(row["quantity"] for row in rows["stock"] if row["sku"] == "104417")


async def audit(inv: RunningInventory) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {inv.token}"}) as client:
        entries: list[dict[str, Any]] = (await client.get(f"{inv.base_url}/audit")).json()[
            "entries"
        ]
    return entries


async def converse(rig: Any, utterances: list[str]) -> list[Event]:
    """Hold the talk button for each utterance in turn, then let the session close."""
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    runner = asyncio.create_task(rig.appliance.run())
    await asyncio.sleep(0)
    try:
        for turn, text in enumerate(utterances, start=1):
            rig.mic.say(synthesize(text))
            rig.appliance.press("gpio")
            await rig.mic.wait_said()
            rig.appliance.release("gpio")
            await rig.emulator.wait_for_turns(turn, timeout_s=30)
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    return seen


def dispatcher_for(inv: RunningInventory) -> Any:
    def make(bus: EventBus) -> ToolDispatcher:
        return ToolDispatcher(
            bus=bus,
            client=InventoryClient(inv.base_url, inv.token),
            enabled=["find_item", "move_stock"],
            confirm_words=["confirm", "correct"],
            button_confirms=False,
        )

    return make


def mic() -> CuedWavSource:
    return CuedWavSource(REPO_CONFIG_DIR / "demo" / "where-is-sku.wav", speed=8.0)


async def test_worker_confirms_and_the_move_is_applied_once(rig_factory, inventory) -> None:  # type: ignore[no-untyped-def]
    rig = await rig_factory(scenario("Confirm."), mic=mic(), tools=dispatcher_for(inventory))
    seen = await converse(rig, ["move five of one zero four four one seven", "confirm"])
    results = [(e.name, e.status) for e in seen if isinstance(e, ToolFinished)]
    assert results == [("move_stock", "needs_confirmation"), ("confirm_pending_action", "ok")]
    assert await stock(inventory, "A-12-03") == 35
    assert await stock(inventory, "A-14-01") == 5
    moves = [e for e in await audit(inventory) if e["action"] == "move"]
    assert len(moves) == 1
    assert moves[0]["call_id"] == "move-1"  # the key derives from the original call


async def test_model_commit_without_the_workers_confirmation_is_refused(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    rig = await rig_factory(scenario("Hmm, wait."), mic=mic(), tools=dispatcher_for(inventory))
    seen = await converse(rig, ["move five of one zero four four one seven", "hmm wait"])
    results = [(e.name, e.status) for e in seen if isinstance(e, ToolFinished)]
    assert results == [("move_stock", "needs_confirmation"), ("confirm_pending_action", "refused")]
    # The refusal reached the model and the event log.
    answer = rig.emulator.record.tool_responses[-1]
    assert answer.id == "commit-1" and answer.response["status"] == "refused"
    assert any(isinstance(e, ErrorRaised) and "confirm" in e.message.lower() for e in seen)
    assert await stock(inventory, "A-12-03") == 40
    assert not [e for e in await audit(inventory) if e["action"] == "move"]


async def test_no_answer_changes_nothing(rig_factory, inventory) -> None:  # type: ignore[no-untyped-def]
    base = scenario("")
    rig = await rig_factory(
        base.model_copy(update={"turns": base.turns[:1]}),
        mic=mic(),
        tools=dispatcher_for(inventory),
    )
    seen = await converse(rig, ["move five of one zero four four one seven"])
    assert [e.status for e in seen if isinstance(e, ToolFinished)] == ["needs_confirmation"]
    assert await stock(inventory, "A-12-03") == 40
    assert await stock(inventory, "A-14-01") == 0
    assert not [e for e in await audit(inventory) if e["action"] == "move"]
