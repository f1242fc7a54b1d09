"""A button press while the device speaks stops the reply, and none of it plays afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR
from device.events import Event, Interrupted, Speaking
from device.sim.scenario import parse_scenario
from device.sim.speech import silence, synthesize

NOTES = (
    "Today's safety notes. Aisle B is closed for racking inspection until noon. "
    "Keep the freezer doors shut between loads. Report any spill at once."
)
SCENARIO = f"""
name = "barge-in"
speed = 1.0
[[turns]]
user_transcript = "Read me today's safety notes."
reply_text = "{NOTES}"
[[turns]]
user_transcript = "Stop."
reply_text = "Okay."
"""


async def test_press_while_speaking_stops_the_reply_for_good(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = parse_scenario(SCENARIO, name="barge-in", base_dir=tmp_path)
    mic = CuedWavSource(REPO_CONFIG_DIR / "demo" / "where-is-sku.wav", speed=4.0)
    rig = await rig_factory(scenario, mic=mic, speaker_speed=4.0, idle_timeout_s=1.0)
    started = asyncio.Event()
    seen: list[Event] = []

    def watch(event: Event) -> None:
        seen.append(event)
        if isinstance(event, Speaking) and event.started:
            started.set()

    rig.bus.subscribe(watch)
    runner = asyncio.create_task(rig.appliance.run())
    try:
        mic.say(synthesize("read me today's safety notes"))
        rig.appliance.press("gpio")
        await mic.wait_said()
        rig.appliance.release("gpio")
        await started.wait()
        await asyncio.sleep(0.5)
        # The service is still streaming the reply (real time); the worker cuts in.
        assert not rig.emulator.record.turns[0].finished
        # A breath before the word: the service hears nothing for a moment and keeps talking.
        mic.say(silence(2.0) + synthesize("stop"))
        rig.appliance.press("gpio")
        played_at_press = rig.speaker.played_bytes
        await mic.wait_said()
        rig.appliance.release("gpio")
        await rig.emulator.wait_for_turns(2, timeout_s=30)
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    first_reply = rig.emulator.record.reply_pcm[0]
    second_reply = rig.emulator.record.reply_pcm[1]
    played = (tmp_path / "reply.wav").read_bytes()[44:]
    # Whatever played of the first reply stopped at the press (give or take one buffer)...
    cut = len(played) - len(second_reply)
    assert played[cut:] == second_reply
    assert first_reply.startswith(played[:cut])
    assert cut <= played_at_press + 960
    # ...even though the service went on sending it for a while after the press.
    assert len(first_reply) > cut + 4800
    sources = [e.source for e in seen if isinstance(e, Interrupted)]
    assert sources == ["gpio"]
