"""gpiozero's mock pins (with PWM), a fresh factory per test, and a helper to watch pins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin


@pytest.fixture
def pin_factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]


async def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll until `predicate` holds. The limit only turns a hang into a failure; nothing here
    asserts how fast anything happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.002)


@pytest.fixture
def wait_until() -> WaitUntil:
    return _wait_until
