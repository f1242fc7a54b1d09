"""Failures that used to vanish: a TypeError of our own, in the receive path or the speaker's."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from device.audio.sink import WavSink
from device.events import ErrorRaised, Event
from device.live.player import ReplyPlayer
from device.sim.scenario import load_scenario

BUG = "a bug in the daemon's own code"


class BuggySpeaker(WavSink):
    async def write(self, pcm: bytes) -> None:
        raise TypeError(BUG)


def _buggy_put(self: ReplyPlayer, pcm: bytes, **_: Any) -> None:
    raise TypeError(BUG)


async def _ask_until_the_bug_is_reported(rig: Any, caplog: pytest.LogCaptureFixture) -> list[Event]:
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    await rig.start()
    try:
        with caplog.at_level(logging.WARNING):
            rig.appliance.press("control")
            async with rig.bus.stream() as events, asyncio.timeout(30):
                while not any(isinstance(e, ErrorRaised) and BUG in e.message for e in seen):
                    await events.get()
            rig.appliance.release("control")
    finally:
        await rig.finish()
    return seen


async def test_a_type_error_of_ours_is_not_taken_for_an_unparsable_frame(
    rig_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    # The receive loop hands reply audio to the player synchronously: a TypeError there is
    # raised inside the link's receive loop, where the SDK's unknown-frame TypeError is caught.
    monkeypatch.setattr(ReplyPlayer, "put", _buggy_put)
    rig = await rig_factory(load_scenario("where-is-sku"))
    seen = await _ask_until_the_bug_is_reported(rig, caplog)
    assert "could not parse" not in caplog.text
    assert any(isinstance(e, ErrorRaised) and f"TypeError: {BUG}" in e.message for e in seen)


async def test_a_type_error_of_ours_in_the_speaker_is_reported(
    rig_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The speaker is fed off the receive path (the player's task); its own bug must still
    # surface as an error, not only as a dropped-audio warning.
    speaker = BuggySpeaker(tmp_path / "reply.wav", speed=math.inf)
    rig = await rig_factory(load_scenario("where-is-sku"), speaker=speaker)
    seen = await _ask_until_the_bug_is_reported(rig, caplog)
    assert "could not parse" not in caplog.text
    bugs = [e for e in seen if isinstance(e, ErrorRaised) and BUG in e.message]
    assert (bugs[0].where, bugs[0].message) == (
        "speaker",
        f"reply playback failed: TypeError: {BUG}",
    )
    # Reported once until the speaker works again, not once per piece of the reply.
    assert len(bugs) == 1
