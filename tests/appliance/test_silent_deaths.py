"""Failures that used to vanish: a TypeError of our own in the receive path."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from device.audio.sink import WavSink
from device.events import ErrorRaised, Event
from device.sim.scenario import load_scenario


class BuggySpeaker(WavSink):
    async def write(self, pcm: bytes) -> None:
        raise TypeError("a bug in the daemon's own code")


async def test_a_type_error_of_ours_is_not_taken_for_an_unparsable_frame(
    rig_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = BuggySpeaker(tmp_path / "reply.wav", speed=math.inf)
    rig = await rig_factory(load_scenario("where-is-sku"), speaker=speaker)
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    await rig.start()
    try:
        with caplog.at_level(logging.WARNING):
            rig.appliance.press("control")
            async with rig.bus.stream() as events, asyncio.timeout(30):
                while not any(
                    isinstance(e, ErrorRaised) and "daemon's own code" in e.message for e in seen
                ):
                    await events.get()
            rig.appliance.release("control")
    finally:
        await rig.finish()
    assert "could not parse" not in caplog.text
    assert any(
        isinstance(e, ErrorRaised) and "a bug in the daemon's own code" in e.message for e in seen
    )
