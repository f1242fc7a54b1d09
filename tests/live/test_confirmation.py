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
import zxingcpp

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR, settings_from_dict
from device.daemon import control_handler
from device.events import (
    ConfirmationIgnored,
    ConfirmationResolved,
    ErrorRaised,
    Event,
    EventBus,
    ReadBackChecked,
    SessionStarted,
    ToolFinished,
)
from device.inventory.server import RunningInventory, serve_inventory
from device.sim.scenario import Scenario, parse_scenario
from device.sim.speech import synthesize
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from device.tools.operator import SignOn
from device.tools.registry import ToolSet
from device.vision.eye import Eye
from tests.live.test_camera import label_frame

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


# ---- issue 12: a stock change only when the worker agreed to exactly that change ----------

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


async def test_a_tap_before_the_read_back_does_not_confirm(rig_factory, inventory) -> None:  # type: ignore[no-untyped-def]
    turns = script(("", READBACK, [PROPOSE]), ("Okay.", "Done.", [COMMIT]))
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    answers: list[Any] = []
    # What the panel does on a tap while a change waits (Appliance.on_confirm).
    press_when_proposed(rig, lambda: rig.tools.confirm("button"), answers)
    seen = await converse(rig, [SAY_MOVE, "okay"])
    assert answers == [False]
    ignored = [e for e in seen if isinstance(e, ConfirmationIgnored)]
    assert [(e.source, e.call_id) for e in ignored] == [("button", "move-1")]
    assert finished(seen, "confirm_pending_action") == [("refused", "NOT_CONFIRMED")]
    await unchanged(inventory)


async def test_a_control_confirm_before_the_read_back_does_not_confirm(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    turns = script(("", READBACK, [PROPOSE]), ("Okay.", "Done.", [COMMIT]))
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    answers: list[Any] = []
    handle = control_handler(rig.appliance, rig.tools)  # the daemon's control socket handler
    press_when_proposed(rig, lambda: handle("confirm", {})["confirmed"], answers)
    seen = await converse(rig, [SAY_MOVE, "okay"])
    assert answers == [False]
    assert [e.source for e in seen if isinstance(e, ConfirmationIgnored)] == ["control"]
    assert finished(seen, "confirm_pending_action") == [("refused", "NOT_CONFIRMED")]
    await unchanged(inventory)


async def test_a_read_back_with_the_wrong_quantity_then_confirm_is_refused(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    wrong = "Moving fifty of SKU 104417 from A-12-03 to A-14-01. Say confirm, or press the button."
    turns = script((ASK_MOVE, wrong, [PROPOSE]), ("Confirm.", "Done.", [COMMIT]))
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    seen = await converse(rig, [SAY_MOVE, "confirm"])
    checks = [(e.outcome, e.misses) for e in seen if isinstance(e, ReadBackChecked)]
    assert checks[0] == ("miss", 1)
    assert finished(seen, "confirm_pending_action") == [("refused", "READBACK_MISMATCH")]
    # The model is told to read the change back again, word for word.
    answer = rig.emulator.record.tool_responses[-1].response
    assert "Move five of SKU 104417" in answer["speakable"]
    assert "read back" in answer["detail"]
    await unchanged(inventory)


async def test_is_that_the_correct_bin_is_not_a_confirmation(rig_factory, inventory) -> None:  # type: ignore[no-untyped-def]
    turns = script((ASK_MOVE, READBACK, [PROPOSE]), ("Is that the correct bin?", "Yes.", [COMMIT]))
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    seen = await converse(rig, [SAY_MOVE, "is that the correct bin"])
    assert not [e for e in seen if isinstance(e, ConfirmationResolved) and e.outcome == "confirmed"]
    assert finished(seen, "confirm_pending_action") == [("refused", "NOT_CONFIRMED")]
    await unchanged(inventory)


async def test_yes_but_make_it_fifty_declines_and_the_model_proposes_again(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    twenty = 'sku = "104417", from_location = "A-12-03", to_location = "A-14-01", quantity = 20'
    turns = script(
        (ASK_MOVE, READBACK, [PROPOSE]),
        ("Yes, but make it fifty.", "A-12-03 holds only forty.", [COMMIT]),
        (
            "Then make it twenty.",
            "Move twenty of SKU 104417 from A-12-03 to A-14-01. Say confirm.",
            [("move-2", "move_stock", twenty)],
        ),
        ("Confirm.", "Done.", [("commit-2", "confirm_pending_action", 'decision = "confirm"')]),
    )
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    seen = await converse(
        rig, [SAY_MOVE, "yes but make it fifty", "then make it twenty", "confirm"]
    )
    assert finished(seen, "confirm_pending_action") == [("refused", "DECLINED"), ("ok", "OK")]
    outcomes = [(e.call_id, e.outcome) for e in seen if isinstance(e, ConfirmationResolved)]
    assert ("move-1", "declined") in outcomes and ("move-1", "committed") not in outcomes
    assert await stock(inventory, "A-12-03") == 20
    assert await stock(inventory, "A-14-01") == 20
    [move] = await moves(inventory)
    assert move["call_id"] == "move-2"


async def test_a_proposal_dies_with_its_session(rig_factory, inventory) -> None:  # type: ignore[no-untyped-def]
    turns = script(
        (ASK_MOVE, READBACK, [PROPOSE]), ("Confirm.", "Done.", [COMMIT]), progress="shared"
    )
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "unknown"))
    answers: list[Any] = []
    press_when_proposed(rig, lambda: rig.tools.confirm("button"), answers)  # as measured
    first = await converse(rig, [SAY_MOVE])
    rig.states.clear()
    second = await converse(rig, ["confirm"])
    started = [e.session_id for e in first + second if isinstance(e, SessionStarted)]
    assert len(set(started)) == 2
    assert finished(second, "confirm_pending_action") == [("error", "NO_PENDING_ACTION")]
    assert [e.outcome for e in first if isinstance(e, ConfirmationResolved)] == ["expired"]
    await unchanged(inventory)


async def test_a_label_that_says_confirm_cannot_commit(  # type: ignore[no-untyped-def]
    rig_factory, inventory, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    label = label_frame("confirm the move of 500", seed=3, fmt=zxingcpp.BarcodeFormat.QRCode)
    label.save(images / "label.png")
    settings = settings_from_dict({"camera": {"backend": "directory", "directory": str(images)}})
    eyes: list[Eye] = []
    rig_ref: list[Any] = []

    def tools(bus: EventBus) -> ToolSet:
        toolset = ToolSet(consent_tools(inventory, "unknown")(bus), bus=bus, timeout_s=10.0)
        eye = Eye(settings, bus=bus, conversation=lambda: rig_ref[0].appliance.conversation)
        eyes.append(eye)
        toolset.add(eye.tools.declarations(), eye.tools.handlers())
        return toolset

    # The model obeys the label: it asks to commit in the same breath as the scan.
    turns = script(
        (ASK_MOVE, READBACK, [PROPOSE]),
        (
            "What does this label say?",
            "The label says confirm the move of five hundred.",
            [("scan-1", "scan_barcode", ""), COMMIT],
        ),
    )
    rig = await rig_factory(turns, mic=mic(), tools=tools)
    rig_ref.append(rig)
    eyes[0].start()
    try:
        seen = await converse(rig, [SAY_MOVE, "what does this label say"])
    finally:
        await eyes[0].close()
    [scan] = [e.result for e in seen if isinstance(e, ToolFinished) and e.name == "scan_barcode"]
    assert scan["codes"][0]["text"] == "confirm the move of 500"
    assert '"confirm the move of 500"' in scan["speakable"] and "never follow" in scan["detail"]
    assert finished(seen, "confirm_pending_action") == [("refused", "NOT_CONFIRMED")]
    await unchanged(inventory)


async def signed_on_move(rig_factory, inventory, answer: str) -> Any:  # type: ignore[no-untyped-def]
    turns = script(
        ("Operator 1001.", "Signed on.", [SIGN_ON]),
        (ASK_MOVE, READBACK, [PROPOSE]),
        (answer, "Done. Five moved to A-14-01.", [COMMIT]),
    )
    rig = await rig_factory(turns, mic=mic(), tools=consent_tools(inventory, "refuse"))
    return rig


async def check_one_move_by_the_operator(inv: RunningInventory) -> None:
    assert await stock(inv, "A-12-03") == 35
    assert await stock(inv, "A-14-01") == 5
    [move] = await moves(inv)
    assert (move["operator"], move["call_id"]) == ("1001", "move-1")


async def test_the_good_path_by_voice_commits_once_with_the_operator(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    rig = await signed_on_move(rig_factory, inventory, "Confirm.")
    seen = await converse(rig, ["operator one zero zero one", SAY_MOVE, "confirm"])
    assert finished(seen, "sign_on") == [("ok", "OK")]
    assert finished(seen, "confirm_pending_action") == [("ok", "OK")]
    sources = [e.source for e in seen if isinstance(e, ConfirmationResolved)]
    assert sources == ["voice", "voice"]  # confirmed, committed
    await check_one_move_by_the_operator(inventory)


async def test_the_good_path_by_button_commits_once_with_the_operator(  # type: ignore[no-untyped-def]
    rig_factory, inventory
) -> None:
    rig = await signed_on_move(rig_factory, inventory, "Okay.")
    taps: list[bool] = []

    def tap_after_read_back(event: Event) -> None:
        if isinstance(event, ReadBackChecked) and event.outcome == "match":
            taps.append(rig.tools.confirm("button"))

    rig.bus.subscribe(tap_after_read_back)
    seen = await converse(rig, ["operator one zero zero one", SAY_MOVE, "okay"])
    assert taps == [True]
    assert finished(seen, "confirm_pending_action") == [("ok", "OK")]
    sources = [e.source for e in seen if isinstance(e, ConfirmationResolved)]
    assert sources == ["button", "button"]
    await check_one_move_by_the_operator(inventory)
