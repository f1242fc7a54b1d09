"""The panel never lies: a cancelled tool call ends "tool running" on the pins, and a write
that still waits keeps its pattern after a confirmation is taken back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from device.events import (
    ConfirmationRequested,
    ConfirmationResolved,
    EventBus,
    State,
    StateChanged,
    ToolCalled,
    ToolFinished,
    UserSpeech,
)
from device.panel.leds import GpioLeds, LedPanel, LedSettings
from device.panel.patterns import DEFAULT_PATTERNS
from device.panel.state import PanelState, PanelStateTracker
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from device.tools.registry import ToolSet

WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]

RGB = {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
SCAN = {"name": "scan_barcode", "description": "scan"}


def pins(factory: MockFactory) -> tuple[float, ...]:
    return tuple(round(float(factory.pin(RGB[c]).state), 3) for c in ("red", "green", "blue"))


def solid(state: PanelState) -> tuple[float, ...]:
    return tuple(round(c, 3) for c in DEFAULT_PATTERNS[state].color)


async def test_a_cancelled_scan_ends_with_the_led_out_of_tool_running(
    pin_factory: MockFactory, wait_until: WaitUntil
) -> None:
    bus = EventBus()
    finished: list[ToolFinished] = []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, ToolFinished) else None)
    panel = LedPanel(
        GpioLeds(LedSettings(kind="rgb", pins=RGB), pin_factory=pin_factory),
        tracker=PanelStateTracker(),
    )
    panel.attach(bus)
    dispatcher = ToolDispatcher(
        bus=bus, client=InventoryClient("http://127.0.0.1:9/api/v1", "unused"), enabled=[]
    )
    toolset = ToolSet(dispatcher, bus=bus, timeout_s=30.0)
    started = asyncio.Event()

    async def slow_scan(args: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never finishes")

    toolset.add([SCAN], {"scan_barcode": slow_scan})
    try:
        bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
        bus.publish(UserSpeech(active=False, source="vad"))
        call = asyncio.create_task(
            toolset.call(session_id="s", call_id="c1", name="scan_barcode", args={})
        )
        await started.wait()
        assert panel.shown is PanelState.TOOL_RUNNING
        call.cancel()  # toolCallCancellation
        with contextlib.suppress(asyncio.CancelledError):
            await call
        assert [(f.call_id, f.status) for f in finished] == [("c1", "cancelled")]
        shown: PanelState | None = panel.shown
        assert shown is PanelState.THINKING
        # Thinking pulses blue: purple's red goes dark and stays dark.
        await wait_until(lambda: pins(pin_factory)[0] == 0.0, "the purple pulse to stop")
        for _ in range(20):
            assert pins(pin_factory)[0] == 0.0
            await asyncio.sleep(0.002)
    finally:
        panel.close()
        await toolset.aclose()


async def test_a_cancelled_warehouse_call_is_finished_too(pin_factory: MockFactory) -> None:
    bus = EventBus()
    finished: list[ToolFinished] = []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, ToolFinished) else None)

    # An inventory API that accepts the request and never answers: the call is in flight.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dispatcher = ToolDispatcher(
        bus=bus,
        client=InventoryClient(f"http://127.0.0.1:{port}/api/v1", "t"),
        enabled=["get_stock"],
    )
    tracker = PanelStateTracker()
    bus.subscribe(tracker.handle)
    in_flight = asyncio.Event()
    bus.subscribe(lambda e: in_flight.set() if isinstance(e, ToolCalled) else None)
    bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    call = asyncio.create_task(
        dispatcher.call(session_id="s", call_id="c9", name="get_stock", args={"location": "A-1"})
    )
    await in_flight.wait()
    assert tracker.state() is PanelState.TOOL_RUNNING
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    assert [(f.call_id, f.status) for f in finished] == [("c9", "cancelled")]
    assert tracker.state() is not PanelState.TOOL_RUNNING
    await dispatcher.aclose()
    server.close()


@pytest.mark.parametrize("step", ["confirmed", "revoked"])
def test_a_write_still_waiting_keeps_its_pattern(step: str) -> None:
    tracker = PanelStateTracker()
    tracker.handle(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    tracker.handle(
        ConfirmationRequested(session_id="s", call_id="c1", tool="move_stock", readback="Move.")
    )
    tracker.handle(
        ConfirmationResolved(
            session_id="s", call_id="c1", tool="move_stock", outcome="confirmed", source="voice"
        )
    )
    if step == "revoked":
        tracker.handle(
            ConfirmationResolved(
                session_id="s", call_id="c1", tool="move_stock", outcome="revoked", source="voice"
            )
        )
    assert tracker.state() is PanelState.AWAITING_CONFIRMATION
    tracker.handle(
        ConfirmationResolved(session_id="s", call_id="c1", tool="move_stock", outcome="cancelled")
    )
    assert tracker.state() is not PanelState.AWAITING_CONFIRMATION


def test_a_replaced_write_leaves_the_new_one_waiting() -> None:
    tracker = PanelStateTracker()
    tracker.handle(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    for call_id in ("c1", "c2"):
        tracker.handle(
            ConfirmationRequested(session_id="s", call_id=call_id, tool="move_stock", readback="")
        )
    tracker.handle(
        ConfirmationResolved(session_id="s", call_id="c1", tool="move_stock", outcome="replaced")
    )
    assert tracker.state() is PanelState.AWAITING_CONFIRMATION
