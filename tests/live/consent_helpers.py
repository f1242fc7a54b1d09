"""Shared by the confirmation tests: scenarios, a consent dispatcher, stock and audit reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR
from device.events import (
    Event,
    EventBus,
    Speaking,
    ToolFinished,
)
from device.inventory.server import RunningInventory
from device.live.session import Conversation
from device.sim.scenario import Scenario, parse_scenario
from device.sim.speech import synthesize
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from device.tools.operator import SignOn

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


async def converse(rig: Any, utterances: list[str], *, answer_at: float = 1.0) -> list[Event]:
    """Hold the talk button for each utterance in turn, then let the session close.

    The worker answers a reply once they have heard `answer_at` of it, counted in samples at
    the speaker: 1.0 waits for its end, less talks over the rest of it."""
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    changed = asyncio.Event()
    heard = 0  # replies the device has played to their end (or cut)
    began: list[int] = []  # the speaker's played bytes when each reply began

    def on_event(event: Event) -> None:
        nonlocal heard
        if isinstance(event, Speaking):
            if event.started:
                began.append(rig.speaker.played_bytes)
            else:
                heard += 1
            changed.set()

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            changed.clear()
            await changed.wait()

    rig.bus.subscribe(on_event)
    runner = asyncio.create_task(rig.appliance.run())
    await asyncio.sleep(0)
    try:
        spoken = 0
        for turn, text in enumerate(utterances, start=1):
            rig.mic.say(synthesize(text))
            rig.appliance.press("gpio")
            await rig.mic.wait_said()
            rig.appliance.release("gpio")
            record = await rig.emulator.wait_for_turns(turn, timeout_s=30)
            # The worker answers once they have heard the reply (a read-back), not when the
            # service has sent it: under load its last frames can still be on their way to
            # the device, and a press then cuts the reply short.
            reply = len(record.finished_turns[turn - 1].reply_pcm)
            spoken += bool(reply)
            async with asyncio.timeout(30):
                if reply and answer_at < 1.0 and turn < len(utterances):
                    await until(lambda n=spoken: len(began) >= n)
                    await rig.speaker.wait_played(began[spoken - 1] + int(reply * answer_at))
                else:
                    await until(lambda n=spoken: heard >= n)
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    return seen


def lag_device(monkeypatch: Any, seconds: float) -> None:
    """The device handles each of the service's messages `seconds` late, as on a loaded
    machine: the service has sent a whole reply while the device is still on its first words."""
    if not seconds:
        return
    handle = Conversation.on_message

    async def late(self: Conversation, message: Any) -> None:
        await asyncio.sleep(seconds)
        await handle(self, message)

    monkeypatch.setattr(Conversation, "on_message", late)


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


READBACK = "Move five of SKU 104417 from A-12-03 to A-14-01. Say confirm, or press the button."
ASK_MOVE = "Move five of 104417 from A-12-03 to A-14-01."
SAY_MOVE = "move five of one zero four four one seven"
PROPOSE = ("move-1", "move_stock", MOVE)
COMMIT = ("commit-1", "confirm_pending_action", 'decision = "confirm"')
SIGN_ON = ("sign-1", "sign_on", 'operator_id = "1001"')
Turn = tuple[str, str, list[tuple[str, str, str]]]


def script(*turns: Turn, progress: str = "connection") -> Scenario:
    """A scenario: each turn is (what the worker said, the model's reply, its tool calls)."""
    parts = [f'name = "consent"\nspeed = 20.0\nprogress = "{progress}"']
    for user, reply, calls in turns:
        parts.append(f"[[turns]]\nuser_transcript = {user!r}\nreply_text = {reply!r}")
        for call_id, name, args in calls:
            parts.append(
                f'[[turns.tool_calls]]\nid = "{call_id}"\nname = "{name}"\nargs = {{ {args} }}'
            )
    return parse_scenario(
        "\n".join(parts).replace("'", '"'),
        name="consent",
        base_dir=REPO_CONFIG_DIR / "scenarios",
    )


def consent_tools(inv: RunningInventory, unsigned: str = "refuse") -> Any:
    def make(bus: EventBus) -> ToolDispatcher:
        client = InventoryClient(inv.base_url, inv.token)
        return ToolDispatcher(
            bus=bus,
            client=client,
            enabled=["find_item", "move_stock"],
            confirm_words=["confirm", "confirmed", "correct"],
            button_confirms=False,
            sign_on=SignOn(client, unsigned_writes=unsigned),
        )

    return make


def finished(seen: list[Event], name: str) -> list[tuple[str, str]]:
    return [
        (e.status, str(e.result.get("code")))
        for e in seen
        if isinstance(e, ToolFinished) and e.name == name
    ]


async def moves(inv: RunningInventory) -> list[dict[str, Any]]:
    return [e for e in await audit(inv) if e["action"] == "move"]


async def unchanged(inv: RunningInventory) -> None:
    assert await stock(inv, "A-12-03") == 40
    assert await stock(inv, "A-14-01") == 0
    assert await moves(inv) == []


def press_when_proposed(rig: Any, press: Any, answers: list[Any]) -> None:
    """Press right as the proposal is made: before the model can have read anything back."""

    def on(event: Event) -> None:
        if isinstance(event, ToolFinished) and event.name == "move_stock":
            answers.append(press())

    rig.bus.subscribe(on)
