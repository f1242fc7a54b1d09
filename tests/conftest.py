"""Suite-wide checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device import state_table


@pytest.fixture(autouse=True)
def no_illegal_state_transitions() -> Iterator[None]:
    """Any state change the appliance's table does not allow fails the test that caused it."""
    state_table.ILLEGAL.clear()
    yield
    illegal = list(state_table.ILLEGAL)
    state_table.ILLEGAL.clear()
    assert not illegal, f"illegal state transitions: {illegal}"


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins with PWM (the LEDs dim and pulse), restored afterwards."""
    previous = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous
