"""A speaker that fails during a reply: the session's end is observed, the device comes back."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from device.audio.sink import WavSink
from device.events import ErrorRaised, Event, State
from device.service.supervisor import Health, PartHealth, Supervisor, speaker_probe
from device.sim.scenario import load_scenario


class FailingOnce(WavSink):
    """A WAV speaker whose device raises on its `fail_at`-th buffer, once, and on drain."""

    fail_at = 3

    def _device_play(self, pcm: bytes) -> None:
        self.fail_at -= 1
        if self.fail_at == 0:
            raise OSError(5, "Input/output error")
        super()._device_play(pcm)


async def test_a_speaker_error_ends_in_a_settled_state_and_the_speaker_is_reopened(
    rig_factory: Any, tmp_path: Path
) -> None:
    speaker = FailingOnce(tmp_path / "reply.wav", speed=math.inf)
    rig = await rig_factory(load_scenario("where-is-sku"), speaker=speaker)
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)
    supervisor = Supervisor(rig.bus, probe_interval_s=0.05, backoff_initial_s=0.05)
    supervisor.add("speaker", probe=speaker_probe(speaker, stall_s=5.0), heal=speaker.open)
    supervising = asyncio.create_task(supervisor.run())
    await rig.start()
    try:
        rig.appliance.press("control")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        rig.appliance.release("control")
        await rig.wait_until_idle_after_session()
        assert rig.appliance.state in (State.IDLE, State.ERROR)
        assert speaker.failures == 1
        async with rig.bus.stream() as events, asyncio.timeout(10):
            while not any(isinstance(e, ErrorRaised) and e.where == "speaker" for e in seen):
                await events.get()
        health = [(e.part, e.health) for e in seen if isinstance(e, PartHealth)]
        assert health[0] == ("speaker", Health.RECOVERING)

        # Same process, same speaker object: the supervisor reopened it and it plays.
        async with rig.bus.stream() as events, asyncio.timeout(10):
            while supervisor.faults():
                await events.get()
        played = speaker.played_bytes
        await speaker.write(bytes(4_800))
        async with asyncio.timeout(10):
            await speaker.drain()
        assert speaker.played_bytes == played + 4_800
        assert speaker.fault is None
        assert supervisor.faults() == {} and supervisor.healthy()
    finally:
        supervising.cancel()
        await rig.finish()
