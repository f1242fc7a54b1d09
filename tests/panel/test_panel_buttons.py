"""Button gestures on mock pins: tap, hold to talk, long press, barge-in, confirm, mute switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from gpiozero.pins.mock import MockFactory

from device.events import (
    ButtonEvent,
    ButtonGesture,
    ConfirmationRequested,
    Event,
    EventBus,
    MuteChanged,
    Speaking,
    State,
    StateChanged,
    UserSpeech,
)
from device.panel.buttons import ButtonAction, ButtonRouter, ButtonSettings, PanelButtons
from device.panel.leds import GpioLeds, LedPanel, LedSettings
from device.panel.pins import PanelConfigError
from device.panel.state import ButtonContext, PanelState, PanelStateTracker

# The `wait_until` fixture (tests/panel/conftest.py): poll a condition, never time it.
WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]

BUTTON, MUTE = "GPIO17", "GPIO27"
TAP_ONLY = ButtonSettings(pin=BUTTON, bounce_s=None, hold_s=5.0, long_press_s=0)
HOLDS = ButtonSettings(pin=BUTTON, bounce_s=None, hold_s=0.05, long_press_s=0)
LONG = ButtonSettings(pin=BUTTON, bounce_s=None, hold_s=0.05, long_press_s=0.15)


class Appliance:
    """Records what the buttons asked of the appliance."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def talk_start(self) -> None:
        self.calls.append("talk_start")

    def talk_end(self) -> None:
        self.calls.append("talk_end")

    def tap(self) -> None:
        self.calls.append("tap")

    def long_press(self) -> None:
        self.calls.append("long_press")

    def confirm(self) -> None:
        self.calls.append("confirm")

    def interrupt(self) -> None:
        self.calls.append("interrupt")

    def set_muted(self, muted: bool) -> None:
        self.calls.append(f"muted={muted}")


@dataclass
class Rig:
    factory: MockFactory
    bus: EventBus
    appliance: Appliance
    events: list[Event] = field(default_factory=list)

    @property
    def button(self):  # type: ignore[no-untyped-def]
        return self.factory.pin(BUTTON)

    async def settle(self) -> None:
        # Edges cross into the loop with call_soon_threadsafe; two turns deliver them.
        for _ in range(3):
            await asyncio.sleep(0)

    async def tap(self) -> None:
        self.button.drive_low()
        await self.settle()
        self.button.drive_high()
        await self.settle()


@pytest.fixture
async def rig(pin_factory: MockFactory, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    settings: ButtonSettings = getattr(request, "param", TAP_ONLY)
    bus = EventBus()
    tracker = PanelStateTracker()
    bus.subscribe(tracker.handle)
    rig = Rig(pin_factory, bus, Appliance())
    bus.subscribe(rig.events.append)
    buttons = PanelButtons(
        settings,
        handler=rig.appliance,
        bus=bus,
        context=tracker.context,
        loop=asyncio.get_running_loop(),
        pin_factory=pin_factory,
    )
    yield rig
    buttons.close()


async def test_tap_starts_or_stops_a_session(rig: Rig, wait_until: WaitUntil) -> None:
    await rig.tap()
    await wait_until(lambda: rig.appliance.calls == ["tap"], "a tap")
    assert [e.action for e in rig.events if isinstance(e, ButtonEvent)] == ["press", "release"]
    assert [(e.gesture, e.action) for e in rig.events if isinstance(e, ButtonGesture)] == [
        ("release", "tap")
    ]


@pytest.mark.parametrize("rig", [HOLDS], indirect=True)
async def test_hold_to_talk(rig: Rig, wait_until: WaitUntil) -> None:
    rig.button.drive_low()
    await wait_until(lambda: rig.appliance.calls == ["talk_start"], "talk to start while held")
    rig.button.drive_high()
    await wait_until(lambda: rig.appliance.calls == ["talk_start", "talk_end"], "talk to end")
    speech = [(e.active, e.source) for e in rig.events if isinstance(e, UserSpeech)]
    assert speech == [(True, "button"), (False, "button")]


@pytest.mark.parametrize("rig", [LONG], indirect=True)
async def test_long_press_hangs_up_and_drops_the_talk(rig: Rig, wait_until: WaitUntil) -> None:
    rig.button.drive_low()
    await wait_until(lambda: "long_press" in rig.appliance.calls, "the long press")
    rig.button.drive_high()
    await rig.settle()
    assert rig.appliance.calls == ["talk_start", "long_press"]


async def test_press_while_speaking_interrupts_at_once(rig: Rig, wait_until: WaitUntil) -> None:
    rig.bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    rig.bus.publish(Speaking(started=True))
    rig.button.drive_low()
    # Before the release: barge-in does not wait to tell a tap from a hold.
    await wait_until(lambda: rig.appliance.calls == ["interrupt"], "the interrupt")
    rig.button.drive_high()
    await rig.settle()
    assert rig.appliance.calls == ["interrupt"]  # not also a tap that would hang up


@pytest.mark.parametrize("rig", [HOLDS], indirect=True)
async def test_barge_in_then_keep_holding_to_talk(rig: Rig, wait_until: WaitUntil) -> None:
    rig.bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    rig.bus.publish(Speaking(started=True))
    rig.button.drive_low()
    await wait_until(
        lambda: rig.appliance.calls == ["interrupt", "talk_start"], "talk after barge-in"
    )
    rig.button.drive_high()
    await wait_until(lambda: rig.appliance.calls[-1] == "talk_end", "talk to end")


async def test_press_during_confirmation_confirms(rig: Rig, wait_until: WaitUntil) -> None:
    rig.bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    rig.bus.publish(
        ConfirmationRequested(
            session_id="s1", call_id="c1", tool="move_stock", readback="Move five."
        )
    )
    rig.bus.publish(Speaking(started=True))  # the read-back is still playing
    await rig.tap()
    await wait_until(lambda: rig.appliance.calls == ["confirm"], "the confirm")


@pytest.mark.parametrize("rig", [LONG], indirect=True)
async def test_long_press_during_confirmation_never_confirms(
    rig: Rig, wait_until: WaitUntil
) -> None:
    rig.bus.publish(StateChanged(state=State.CONVERSING, previous=State.CONNECTING))
    rig.bus.publish(
        ConfirmationRequested(
            session_id="s1", call_id="c1", tool="move_stock", readback="Move five."
        )
    )
    rig.button.drive_low()
    await wait_until(lambda: "long_press" in rig.appliance.calls, "the long press")
    rig.button.drive_high()
    await rig.settle()
    assert "confirm" not in rig.appliance.calls


@pytest.mark.parametrize(
    "rig",
    [ButtonSettings(pin=BUTTON, bounce_s=None, hold_s=5, long_press_s=0, mute_pin=MUTE)],
    indirect=True,
)
async def test_mute_switch(rig: Rig, wait_until: WaitUntil) -> None:
    switch = rig.factory.pin(MUTE)
    switch.drive_low()
    await wait_until(lambda: rig.appliance.calls == ["muted=True"], "mute")
    switch.drive_high()
    await wait_until(lambda: rig.appliance.calls == ["muted=True", "muted=False"], "unmute")
    assert [e.muted for e in rig.events if isinstance(e, MuteChanged)] == [True, False]


async def test_mute_switch_turns_the_leds_to_muted(
    pin_factory: MockFactory, wait_until: WaitUntil
) -> None:

    bus = EventBus()
    tracker = PanelStateTracker()
    pins = {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
    panel = LedPanel(
        GpioLeds(LedSettings(kind="rgb", pins=pins), pin_factory=pin_factory), tracker=tracker
    )
    panel.attach(bus)
    buttons = PanelButtons(
        ButtonSettings(pin=None, mute_pin=MUTE),
        handler=Appliance(),
        bus=bus,
        context=tracker.context,
        loop=asyncio.get_running_loop(),
        pin_factory=pin_factory,
    )
    try:
        pin_factory.pin(MUTE).drive_low()
        await wait_until(lambda: panel.shown is PanelState.MUTED, "the muted pattern")
        assert [pin_factory.pin(p).state for p in pins.values()] == [1.0, 0.0, 0.0]
    finally:
        buttons.close()
        panel.close()


def test_router_gestures_without_hardware() -> None:
    idle, speaking = ButtonContext(), ButtonContext(in_session=True, speaking=True)
    confirming = ButtonContext(in_session=True, speaking=True, awaiting_confirmation=True)
    router = ButtonRouter()
    assert router.press(idle) == [] and router.release() == [ButtonAction.TAP]
    assert router.press(idle) == [] and router.held() == [ButtonAction.TALK_START]
    assert router.release() == [ButtonAction.TALK_END]
    assert router.press(speaking) == [ButtonAction.INTERRUPT] and router.release() == []
    assert router.press(confirming) == [] and router.release() == [ButtonAction.CONFIRM]
    router.press(confirming)
    assert router.held() == [ButtonAction.TALK_START]  # say "confirm" or "cancel" instead
    assert router.long_held() == [ButtonAction.LONG_PRESS]
    assert router.release() == []
    # Stray edges (a release without a press, a second press) do nothing.
    assert router.release() == [] and router.held() == [] and router.long_held() == []
    assert router.press(idle) == [] and router.press(speaking) == []
    assert router.release() == [ButtonAction.TAP]


def test_button_settings_explain_mistakes() -> None:
    with pytest.raises(PanelConfigError, match=r"long_press_s: 0.3 must be longer than hold_s"):
        ButtonSettings(hold_s=0.5, long_press_s=0.3)
    with pytest.raises(PanelConfigError, match=r"mute switch needs its own pin"):
        ButtonSettings(pin="GPIO17", mute_pin="BCM17")
    with pytest.raises(PanelConfigError, match=r"button.pin: 'D17' is not a BCM pin name"):
        ButtonSettings(pin="D17")
