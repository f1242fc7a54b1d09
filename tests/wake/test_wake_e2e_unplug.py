"""The microphone vanishes and comes back; the daemon recovers without a restart.

A private PulseAudio server is the sound card. Stopping it kills the running capture stream
the way pulling a USB microphone does; the appliance must show the error, keep retrying, and
when the server is back, capture again and answer a wake word, in the same process.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_wake_e2e_rig import RATE, HandsFree, hands_free, worst_alignment_score, write_wav

from device.audio.capture import CaptureLost, CaptureRestored
from device.audio.source import PyAudioSource
from device.events import ErrorRaised, State, WakeDetected
from device.sim.pulse import PulseServer
from device.sim.scenario import load_scenario
from device.sim.speech import noise, synthesize_parts
from device.wake.models import ModelSet

needs_pulse = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("paplay") is None,
    reason="needs apt packages pulseaudio pulseaudio-utils libasound2-plugins",
)
# Paced by a real sound server: `make test` runs these on their own, after the rest.
pytestmark = pytest.mark.realtime


async def until(rig: HandsFree, done: Callable[[], bool], what: str, timeout_s: float) -> None:
    async with rig.bus.stream() as events:
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    await events.get()
        except TimeoutError:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s") from None


async def capturing(rig: HandsFree, timeout_s: float = 20.0) -> None:
    """Until the capture delivers audio (PulseAudio's null sinks start in big blocks)."""
    with rig.capture.subscribe() as frames:
        async with asyncio.timeout(timeout_s):
            await frames.get()


@pytest.mark.slow
@needs_pulse
async def test_capture_recovers_after_the_microphone_vanishes_and_returns(
    tmp_path: Path, model_set: ModelSet
) -> None:
    speech, _ = synthesize_parts(["hey jarvis", "where is SKU one zero four four one seven"])
    assert worst_alignment_score(model_set, speech) >= 0.8  # played in real time: any offset
    phrase = write_wav(
        tmp_path / "phrase.wav",
        noise(3.0, level_dbfs=-60, seed=5) + speech + noise(2.0, level_dbfs=-60, seed=6),
    )
    server = PulseServer(tmp_path / "pulse")
    scenario = load_scenario("where-is-sku").model_copy(update={"speed": 10.0})
    with server, server.as_default():
        mic = PyAudioSource("default", stall_timeout_s=0.5)
        async with hands_free(
            tmp_path, model_set, scenario, mic, retry_s=(0.2, 1.0), idle_timeout_s=5.0
        ) as rig:
            await rig.start()
            await capturing(rig)

            server.stop()  # the microphone is gone
            await until(rig, lambda: bool(rig.of(CaptureLost)), "noticing the loss", 15)
            await until(rig, lambda: rig.appliance.state == State.ERROR, "the error state", 5)
            assert any(e.where == "capture" for e in rig.of(ErrorRaised))
            lost_at = rig.capture.samples
            await asyncio.sleep(1.5)  # several retries fail meanwhile
            assert rig.capture.samples == lost_at and not rig.capture.available

            server.start()  # and back
            await until(rig, lambda: bool(rig.of(CaptureRestored)), "recovery", 20)
            await until(rig, lambda: rig.appliance.state == State.IDLE, "idle again", 5)
            await capturing(rig)

            # Not just audio: the whole device works again, wake word to answer.
            player = server.feed_mic(phrase)
            try:
                await until(rig, lambda: bool(rig.of(WakeDetected)), "the wake word", 30)
                await rig.emulator.wait_for_turns(1, timeout_s=30)
            finally:
                if player.poll() is None:
                    player.terminate()
                player.wait()
    assert rig.capture.outages == 1
    assert rig.emulator.record.tool_responses[0].id == "call-1"
    assert len(rig.emulator.record.connections[0].audio) > RATE  # the request's audio arrived
