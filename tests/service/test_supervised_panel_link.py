"""The panel and the link as supervised parts: restarted when they die, named in `status`.

The panel runs on gpiozero's own mock pins, the default factory as on a Pi; the link is the
real appliance's session runner against the Live emulator.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.audio.cued import CuedWavSource
from device.audio.sink import WavSink
from device.config import settings_from_dict
from device.events import Event, EventBus, State, StateChanged
from device.live.session import Conversation
from device.panel.board import Board
from device.panel.state import PanelState
from device.service.parts import supervise_parts
from device.service.supervisor import Health, PartHealth, Supervisor
from device.sim.scenario import load_scenario
from tests import pin_helpers
from tests.pin_helpers import Handler

# The appliance rigs of tests/live (loaded under another name, as tests/appliance does).
if "live_rigs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "live_rigs", Path(__file__).parents[1] / "live" / "conftest.py"
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["live_rigs"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["live_rigs"])
rig_factory = sys.modules["live_rigs"].rig_factory

RED, GREEN, BLUE = "GPIO12", "GPIO13", "GPIO19"


class BusyOnce(MockFactory):
    """Mock pins whose first LED pin is busy once (another process held the GPIO line)."""

    def __init__(self) -> None:
        super().__init__(pin_class=MockPWMPin)
        self.refused = 0

    def pin(self, spec: Any, **kwargs: Any) -> Any:
        if not self.refused and str(spec) == RED:
            self.refused += 1
            raise OSError(16, "Device or resource busy")
        return super().pin(spec, **kwargs)


@pytest.fixture
def busy_once() -> Iterator[BusyOnce]:
    previous = Device.pin_factory
    factory = BusyOnce()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


async def until(bus: EventBus, done: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    """Wait on the bus until `done()`; the bound only turns a hang into a failure."""
    try:
        async with bus.stream() as events, asyncio.timeout(timeout_s):
            while not done():
                await events.get()
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


poll = functools.partial(pin_helpers.poll, timeout_s=20)


def forever() -> Any:
    return asyncio.Event().wait()


async def test_a_panel_whose_pins_are_busy_once_recovers_and_shows_the_current_state(
    busy_once: BusyOnce, tmp_path: Path
) -> None:
    bus = EventBus()
    health: list[PartHealth] = []
    bus.subscribe(lambda e: health.append(e) if isinstance(e, PartHealth) else None)
    handler = Handler()
    button_settings = {"pin": "GPIO17", "hold_s": 5.0, "long_press_s": 0, "bounce_s": 0}
    settings = settings_from_dict({"button": button_settings})
    board = Board(settings, bus=bus, handler=handler)
    supervisor = Supervisor(bus, backoff_initial_s=0.2, settle_s=0.2)
    unsubscribe = supervise_parts(
        supervisor,
        bus,
        speaker=WavSink(tmp_path / "out.wav"),
        capture=forever,
        wake=None,
        camera=None,
        budget_s=60.0,
        panel=board.run,
    )
    running = asyncio.create_task(supervisor.run())
    try:
        await until(bus, lambda: "panel" in supervisor.faults(), "the panel's fault")
        status = supervisor.snapshot()["panel"]
        assert status["health"] == "recovering" and status["required"] is False
        assert "LEDs unavailable" in status["reason"] and "busy" in status["reason"]
        assert supervisor.healthy()  # a dark panel never stops the watchdog
        # The talk button opened anyway: a dark LED must not cost the worker it.
        button = busy_once.pin("GPIO17")
        button.drive_low()
        await poll(lambda: "talk_start" in handler.calls or "tap" in handler.calls, "the press")
        button.drive_high()
        # The device's state moves on while the LEDs are dark...
        bus.publish(StateChanged(state=State.ERROR, previous=State.IDLE, reason="mic lost"))

        await until(bus, lambda: not supervisor.faults(), "the panel to recover", 30)
        assert [(h.part, h.health) for h in health] == [
            ("panel", Health.RECOVERING),
            ("panel", Health.OK),
        ]
        assert supervisor.snapshot()["panel"]["restarts"] == 1
        # ...and the reopened LEDs show it: the error blink, red only.
        assert board.leds is not None and board.leds.shown is PanelState.ERROR
        red, green, blue = (busy_once.pin(p) for p in (RED, GREEN, BLUE))
        await poll(lambda: red.state == 1.0, "the red LED to light")
        assert (green.state, blue.state) == (0, 0)
        bus.publish(StateChanged(state=State.IDLE, previous=State.ERROR, reason="healed"))
        await poll(lambda: board.leds is not None and board.leds.shown is PanelState.IDLE, "idle")
        await poll(lambda: (red.state, blue.state) == (0, 0) and green.state > 0, "dim green")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        unsubscribe()
        board.close()
    assert busy_once.refused == 1


class FlakyPin(MockPWMPin):
    """A PWM pin whose next write fails once `failing` is set (a GPIO line lost mid-shift)."""

    failing = False

    def _set_state(self, value: float) -> None:
        if FlakyPin.failing:
            FlakyPin.failing = False
            raise OSError(5, "Input/output error")
        super()._set_state(value)


@pytest.fixture
def flaky_pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory(pin_class=FlakyPin)
    Device.pin_factory = factory
    yield factory
    FlakyPin.failing = False
    factory.reset()
    Device.pin_factory = previous


async def test_leds_that_fail_mid_shift_are_reopened_and_show_the_state(
    flaky_pins: MockFactory, tmp_path: Path
) -> None:
    bus = EventBus()
    health: list[PartHealth] = []
    bus.subscribe(lambda e: health.append(e) if isinstance(e, PartHealth) else None)
    settings = settings_from_dict({"button": {"enabled": False}})
    board = Board(settings, bus=bus, handler=Handler())
    supervisor = Supervisor(bus, backoff_initial_s=0.2, settle_s=0.2)
    supervisor.add("panel", required=False, run=board.run)
    running = asyncio.create_task(supervisor.run())
    try:
        await poll(lambda: board.leds is not None and board.leds.shown is PanelState.IDLE, "idle")
        first = board.leds
        FlakyPin.failing = True
        # A solid colour is written from here, so the failure reaches the panel.
        bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE, reason="press"))
        await until(bus, lambda: "panel" in supervisor.faults(), "the panel's fault")
        assert "LEDs failed" in supervisor.snapshot()["panel"]["reason"]
        await until(bus, lambda: not supervisor.faults(), "the panel to recover", 30)
        assert board.leds is not None and board.leds is not first
        # After the fault's brief warning, the reopened LEDs show the state the device is in.
        await poll(
            lambda: board.leds is not None and board.leds.shown is PanelState.LISTENING, "blue"
        )
        blue = flaky_pins.pin(BLUE)
        await poll(lambda: blue.state == 1.0, "the blue LED to light")
        assert supervisor.snapshot()["panel"]["restarts"] == 1
        assert [h.health for h in health] == [Health.RECOVERING, Health.OK]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        board.close()


async def test_a_link_that_dies_of_a_bug_is_named_in_status_and_restarted(
    rig_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = Conversation.run
    bugs = 0

    async def buggy_once(self: Conversation) -> Any:
        nonlocal bugs
        if not bugs:
            bugs += 1
            raise TypeError("a bug in the daemon's own code")
        return await real_run(self)

    monkeypatch.setattr(Conversation, "run", buggy_once)
    # The worker asks each time the device listens (so again after the failed session).
    mic = CuedWavSource(sys.modules["live_rigs"].REQUEST_WAV, speed=8.0)
    rig = await rig_factory(load_scenario("where-is-sku"), mic=mic)
    appliance = rig.appliance
    rig.bus.subscribe(
        lambda e: mic.cue() if isinstance(e, StateChanged) and e.state == State.LISTENING else None
    )
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    supervisor = appliance.supervisor = Supervisor(rig.bus, backoff_initial_s=0.2, settle_s=0.5)
    unsubscribe = supervise_parts(
        supervisor,
        rig.bus,
        speaker=rig.speaker,
        capture=appliance.capture_loop,
        wake=None,
        camera=None,
        budget_s=60.0,
        link=appliance.link.run,
    )
    appliance.status_sections["health"] = supervisor.snapshot
    await rig.start()
    try:
        appliance.press("control")
        await until(rig.bus, lambda: "link" in supervisor.faults(), "the link's fault")
        appliance.release("control")
        await until(rig.bus, lambda: appliance.state == State.ERROR, "the error state")
        status = appliance.snapshot()
        assert "TypeError" in status["health"]["link"]["reason"]
        assert status["health"]["link"]["health"] == "recovering"
        assert "link" in status["faults"]

        # Restarted: the fault ends by itself, and the device is idle, not stuck in error.
        await until(rig.bus, lambda: appliance.state == State.IDLE, "idle after the restart", 30)
        status = appliance.snapshot()
        assert status["faults"] == {}
        assert status["health"]["link"] == {"health": "ok", "restarts": 1, "required": True}
        links = [(e.health, e.restarts) for e in seen if isinstance(e, PartHealth)]
        assert links == [(Health.RECOVERING, 0), (Health.OK, 1)]

        # And the next press gets a working conversation.
        appliance.press("control")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        appliance.release("control")
    finally:
        await rig.finish()
        unsubscribe()
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
