"""Every panel state's pattern, as it appears on gpiozero mock PWM pins, driven by bus events."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Mapping

import gpiozero.mixins
import pytest
from gpiozero.pins.mock import MockFactory
from gpiozero.threads import GPIOThread

from device.events import (
    CameraUnavailable,
    ConfirmationRequested,
    Event,
    EventBus,
    MuteChanged,
    PanelStateChanged,
    Speaking,
    State,
    StateChanged,
    ToolCalled,
    UserSpeech,
    WakeDetected,
)
from device.panel.distinct import look
from device.panel.leds import GpioLeds, LedPanel, LedSettings
from device.panel.patterns import DEFAULT_PATTERNS, Effect, Pattern
from device.panel.pins import PanelConfigError
from device.panel.state import PanelState, PanelStateTracker

# The `wait_until` fixture (tests/panel/conftest.py): poll a condition, never time it.
WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]

RGB = {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
RED_GREEN = {"red": "GPIO20", "green": "GPIO21"}
CHANNELS = ("red", "green", "blue")

# (kind, pins, pwm): an RGB LED on PWM, and a two-LED on/off panel (red + green).
HARDWARE = {
    "rgb-pwm": ("rgb", RGB, True),
    "red-green-onoff": ("discrete", RED_GREEN, False),
}


def quick(
    patterns: Mapping[PanelState, Pattern], factor: float = 0.05
) -> dict[PanelState, Pattern]:
    """The default patterns, twenty times faster: same shapes, shorter test."""
    return {
        state: dataclasses.replace(
            p,
            on=p.on * factor,
            off=p.off * factor,
            fade_in=p.fade_in * factor,
            fade_out=p.fade_out * factor,
        )
        for state, p in patterns.items()
    }


def conversing() -> StateChanged:
    return StateChanged(state=State.CONVERSING, previous=State.CONNECTING)


EVENTS_FOR: dict[PanelState, list[Event]] = {
    PanelState.IDLE: [StateChanged(state=State.IDLE, previous=State.CLOSING)],
    PanelState.WAKE: [WakeDetected(model="hey_jarvis", score=0.97)],
    PanelState.LISTENING: [StateChanged(state=State.LISTENING, previous=State.IDLE)],
    PanelState.THINKING: [conversing(), UserSpeech(active=False, source="vad")],
    PanelState.SPEAKING: [conversing(), Speaking(started=True)],
    PanelState.TOOL_RUNNING: [
        conversing(),
        ToolCalled(session_id="s", call_id="c1", name="get_stock", args={}),
    ],
    PanelState.AWAITING_CONFIRMATION: [
        conversing(),
        ToolCalled(session_id="s", call_id="c2", name="move_stock", args={}),
        ConfirmationRequested(
            session_id="s1", call_id="c2", tool="move_stock", readback="Move five."
        ),
    ],
    PanelState.ERROR: [StateChanged(state=State.ERROR, previous=State.CONNECTING)],
    PanelState.OFFLINE: [StateChanged(state=State.OFFLINE, previous=State.IDLE)],
    PanelState.MUTED: [MuteChanged(muted=True, source="switch")],
}


def lit(color: tuple[float, float, float], pins: Mapping[str, str], pwm: bool) -> tuple[float, ...]:
    """What the pins read when the pattern is at full colour."""
    values = [color[CHANNELS.index(ch)] for ch in CHANNELS if ch in pins]
    return tuple(round(v, 3) if pwm else (1.0 if v > 0 else 0.0) for v in values)


def reader(factory: MockFactory, pins: Mapping[str, str]) -> Callable[[], tuple[float, ...]]:
    ordered = [factory.pin(pins[ch]) for ch in CHANNELS if ch in pins]
    return lambda: tuple(round(float(p.state), 3) for p in ordered)


async def steady(
    read: Callable[[], tuple[float, ...]], samples: int = 40
) -> set[tuple[float, ...]]:
    """Every distinct reading over a few blink periods of the quick patterns."""
    seen = set()
    for _ in range(samples):
        seen.add(read())
        await asyncio.sleep(0.003)
    return seen


@pytest.mark.parametrize("hardware", list(HARDWARE))
@pytest.mark.parametrize("state", list(PanelState))
async def test_each_state_shows_its_pattern_on_the_pins(
    pin_factory: MockFactory, wait_until: WaitUntil, hardware: str, state: PanelState
) -> None:
    kind, pins, pwm = HARDWARE[hardware]
    patterns = quick(DEFAULT_PATTERNS)
    settings = LedSettings(kind=kind, pins=pins, pwm=pwm, patterns=patterns)  # type: ignore[arg-type]
    bus = EventBus()
    shown: list[str] = []
    bus.subscribe(lambda e: shown.append(e.state) if isinstance(e, PanelStateChanged) else None)
    panel = LedPanel(
        GpioLeds(settings, pin_factory=pin_factory),
        tracker=PanelStateTracker(wake_flash_s=60, warning_s=60),
        patterns=patterns,
    )
    panel.attach(bus)
    try:
        for event in EVENTS_FOR[state]:
            bus.publish(event)
        assert panel.shown is state
        assert shown[-1] == state.value

        read = reader(pin_factory, pins)
        pattern = patterns[state]
        on = lit(pattern.color, pins, pwm)
        dark = tuple(0.0 for _ in on)
        seen: set[tuple[float, ...]] = set()

        def saw(value: tuple[float, ...]) -> bool:
            seen.add(read())
            return value in seen

        await wait_until(lambda: saw(on), f"{state} at full colour {on}")
        if pattern.effect is Effect.SOLID:
            assert await steady(read) == {on}
        else:
            await wait_until(lambda: saw(dark), f"{state} going dark between flashes")
            # Every reading is a shade of the state's colour: no channel of another state.
            for reading in await steady(read):
                assert all(r <= o + 1e-6 for r, o in zip(reading, on, strict=True)), reading
    finally:
        panel.close()


@pytest.mark.parametrize("hardware", list(HARDWARE))
async def test_a_new_state_replaces_every_channel_of_a_blinking_one(
    pin_factory: MockFactory, wait_until: WaitUntil, hardware: str
) -> None:

    kind, pins, pwm = HARDWARE[hardware]
    patterns = quick(DEFAULT_PATTERNS)
    leds = GpioLeds(LedSettings(kind=kind, pins=pins, pwm=pwm), pin_factory=pin_factory)  # type: ignore[arg-type]
    read = reader(pin_factory, pins)
    target = Pattern((0.0, 1.0, 0.0))  # solid green: lit on both kinds of hardware
    try:
        for state, pattern in patterns.items():
            if pattern.effect is Effect.SOLID:
                continue
            on = lit(pattern.color, pins, pwm)
            leds.show(pattern)
            await wait_until(lambda on=on: read() == on, f"{state} lit")  # type: ignore[misc]
            leds.show(target)
            assert await steady(read) == {lit(target.color, pins, pwm)}, state
    finally:
        leds.close()


async def test_common_anode_led_is_driven_inverted(pin_factory: MockFactory) -> None:
    settings = LedSettings(kind="rgb", pins=RGB, active_high=False)
    leds = GpioLeds(settings, pin_factory=pin_factory)
    try:
        leds.show(Pattern((1.0, 0.0, 0.0)))
        # Current flows into the pin: full red is the red pin low, the others high.
        assert reader(pin_factory, RGB)() == (0.0, 1.0, 1.0)
    finally:
        leds.close()


async def test_warning_flashes_error_then_returns(pin_factory: MockFactory) -> None:
    now = [100.0]
    timers: list[tuple[float, Callable[[], None]]] = []

    def call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        timers.append((delay, callback))
        return asyncio.get_running_loop().call_later(3600, lambda: None)

    bus = EventBus()
    panel = LedPanel(
        GpioLeds(LedSettings(kind="rgb", pins=RGB), pin_factory=pin_factory),
        tracker=PanelStateTracker(warning_s=3.0, clock=lambda: now[0]),
        call_later=call_later,
    )
    panel.attach(bus)
    try:
        bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
        bus.publish(Speaking(started=True))
        bus.publish(CameraUnavailable(backend="directory", reason="unplugged"))
        shown = [panel.shown]
        delay, callback = timers[-1]
        assert delay == pytest.approx(3.0, abs=0.01)
        now[0] += delay
        callback()
        shown.append(panel.shown)
        assert shown == [PanelState.ERROR, PanelState.SPEAKING]
        assert reader(pin_factory, RGB)() == lit(
            DEFAULT_PATTERNS[PanelState.SPEAKING].color, RGB, True
        )
    finally:
        panel.close()


def test_led_settings_explain_mistakes() -> None:
    with pytest.raises(PanelConfigError, match=r"needs a pin for blue"):
        LedSettings(kind="rgb", pins={"red": "GPIO12", "green": "GPIO13"})
    with pytest.raises(PanelConfigError, match=r"'pin 12' is not a BCM pin name.*GPIO17"):
        LedSettings(kind="discrete", pins={"red": "pin 12"})
    with pytest.raises(PanelConfigError, match=r"unknown channel\(s\) amber"):
        LedSettings(kind="discrete", pins={"amber": "GPIO5"})
    with pytest.raises(PanelConfigError, match=r"share a pin"):
        LedSettings(kind="discrete", pins={"red": "GPIO5", "green": "BCM5"})
    with pytest.raises(PanelConfigError, match=r"'rgbw' is not supported"):
        LedSettings(kind="rgbw", pins=RGB)  # type: ignore[arg-type]


@pytest.mark.parametrize("hardware", list(HARDWARE))
async def test_the_new_patterns_first_frame_is_on_the_pins_when_show_returns(
    pin_factory: MockFactory,
    wait_until: WaitUntil,
    hardware: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`show` puts the new pattern's first frame on the pins before it returns, however late
    the animation's thread starts: a reading taken at once is never the old state's colour.
    (The thread used to set the first frame; on a loaded machine it ran late, the old colour
    stayed lit meanwhile, and a panel test saw it at random.)"""
    kind, pins, pwm = HARDWARE[hardware]
    leds = GpioLeds(LedSettings(kind=kind, pins=pins, pwm=pwm), pin_factory=pin_factory)  # type: ignore[arg-type]
    read = reader(pin_factory, pins)
    red = Pattern((1.0, 0.0, 0.0), Effect.BLINK, on=0.02, off=0.02)
    green = Pattern((0.0, 1.0, 0.0), Effect.BLINK, on=0.02, off=0.02)
    greens = {value for value, _ in look(green, [ch for ch in CHANNELS if ch in pins], pwm)}
    go = threading.Event()

    class Late(GPIOThread):  # type: ignore[misc]
        """An animation thread on a loaded machine: it starts work when the test says."""

        def run(self) -> None:
            go.wait()
            super().run()

    try:
        leds.show(red)
        await wait_until(lambda: read() == lit(red.color, pins, pwm), "red lit")
        monkeypatch.setattr(gpiozero.mixins, "GPIOThread", Late)
        leds.show(green)
        reading = tuple(round(v, 2) for v in read())
        go.set()
        assert reading in greens, (reading, greens)
    finally:
        go.set()
        leds.close()
