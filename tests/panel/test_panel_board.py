"""A panel that cannot open says why, and the talk button works without the LEDs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from device.config import load_settings
from device.events import ErrorRaised, Event, EventBus
from device.panel.board import Board
from tests.pin_helpers import Handler

WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]


@pytest.fixture
def plain_mock_pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins without the PWM class, as GPIOZERO_PIN_FACTORY=mock gives."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


async def test_leds_that_cannot_open_say_why_and_the_button_still_works(
    plain_mock_pins: MockFactory, wait_until: WaitUntil, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[leds]\nkind = "rgb"\npwm = true\n[button]\npin = "GPIO17"\n')
    bus = EventBus()
    errors: list[str] = []

    def note(event: Event) -> None:
        if isinstance(event, ErrorRaised):
            errors.append(event.message)

    bus.subscribe(note)
    handler = Handler()
    board = Board(load_settings(config), bus=bus, handler=handler)
    board.open(asyncio.get_running_loop())
    try:
        assert board.leds is None
        assert len(errors) == 1
        assert errors[0].startswith("LEDs unavailable: PinPWMUnsupported")
        assert "leds.pwm = false" in errors[0]
        assert board.buttons is not None
        button = plain_mock_pins.pin("GPIO17")
        button.drive_low()
        await asyncio.sleep(0.05)
        button.drive_high()
        # A tap, or a hold if this loaded machine was slow to release: either way it got through.
        await wait_until(
            lambda: bool({"tap", "talk_end"} & set(handler.calls)), "the press to reach the handler"
        )
    finally:
        board.close()


def test_a_mock_pin_keeps_a_bounded_history_however_long_an_led_pulses() -> None:
    # The demo and the soak bench run the panel on mock pins for hours; gpiozero's own mock
    # pins remember every change, which grew the daemon by about 1 MB an hour.
    from device.config import REPO_CONFIG_DIR, settings_from_dict
    from device.panel.board import MOCK_PIN_HISTORY, pin_factory

    settings = settings_from_dict({"gpio": {"pin_factory": "mock"}}, base_dir=REPO_CONFIG_DIR)
    factory = pin_factory(settings)
    try:
        pin = factory.pin(12)
        pin.function = "output"
        for step in range(10 * MOCK_PIN_HISTORY):
            pin.state = step % 2
        assert MOCK_PIN_HISTORY <= len(pin.states) <= 2 * MOCK_PIN_HISTORY
        assert pin.states[-1].state == (10 * MOCK_PIN_HISTORY - 1) % 2  # the newest is kept
    finally:
        factory.close()
