"""Local barge-in: the echo gate's `BargeIn` stops the reply on the device, at once.

The full path (room, gate, session, emulator with the reply already sent) runs in
tests/wake/test_wake_e2e_echo.py; here the contract between the bus and the appliance.
"""

from __future__ import annotations

import asyncio

from device.audio.barge_in import LocalBargeIn
from device.audio.echo import BargeIn
from device.events import EventBus


class FakeAppliance:
    def __init__(self, speaking: bool) -> None:
        self.speaking = speaking
        self.calls: list[str] = []

    def interrupt(self, source: str = "gpio") -> None:
        self.calls.append(f"interrupt:{source}")
        self.speaking = False

    def talk_start(self) -> None:
        self.calls.append("talk_start")


async def step() -> None:
    await asyncio.sleep(0)


async def test_a_barge_in_over_a_reply_stops_it_on_the_device() -> None:
    bus = EventBus()
    appliance = FakeAppliance(speaking=True)
    local = LocalBargeIn(bus, appliance, manual_turns=False)
    bus.publish(BargeIn(level_db=-20.0, echo_db=-40.0))
    assert appliance.calls == []  # never inside the gate's own publish...
    await step()
    assert appliance.calls == ["interrupt:voice"]  # ...but in the very next loop step
    assert local.acted == 1
    # A second opening while nothing plays is nothing to stop.
    bus.publish(BargeIn(level_db=-20.0, echo_db=-40.0))
    await step()
    assert appliance.calls == ["interrupt:voice"]
    local.close()


async def test_manual_turns_also_tell_the_service_the_worker_started() -> None:
    bus = EventBus()
    appliance = FakeAppliance(speaking=True)
    local = LocalBargeIn(bus, appliance, manual_turns=True)
    bus.publish(BargeIn(level_db=-20.0, echo_db=-40.0))
    await step()
    assert appliance.calls == ["interrupt:voice", "talk_start"]
    local.close()
    appliance.speaking = True
    bus.publish(BargeIn(level_db=-20.0, echo_db=-40.0))
    await step()
    assert len(appliance.calls) == 2  # closed: no longer listening
