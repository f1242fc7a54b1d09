"""The detector hears the microphone, not the session's noise suppression.

Suppression that helps the service can cost wake detections (issue 14: WebRTC NS pulled a
clean clip from .657 to .325). So the capture stage's output goes to the session, while the
detector takes the audio from before it, whenever the detector is suppressed while the device
speaks (then the unprocessed echo cannot wake it). A stand-in processor that removes
everything makes the point without depending on how much one suppressor takes off one clip.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from test_wake_e2e_rig import write_wav

from device.audio.capture import Capture
from device.audio.source import WavSource
from device.events import EventBus
from device.sim.speech import noise, synthesize_parts
from device.wake.detector import WakeDetector, WakeHit
from device.wake.listener import WakeListener
from device.wake.models import ModelSet


class SwallowEverything:
    """A capture stage that suppresses all of it: the session hears silence."""

    async def process(self, pcm: bytes) -> bytes:
        return bytes(len(pcm))


class MuteFrontEnd:
    name = "mute"

    def process(self, pcm: bytes) -> bytes:
        return bytes(len(pcm))


async def _hits(
    tmp_path: Path,
    model_set: ModelSet,
    *,
    ignore_while_speaking: bool,
    front_end: MuteFrontEnd | None = None,
) -> tuple[list[WakeHit], bytes]:
    speech, _ = synthesize_parts(["hey jarvis", "where is SKU one zero four four one seven"])
    quiet = noise(2.0, level_dbfs=-60, seed=4)
    mic = quiet + speech + quiet
    bus = EventBus()
    capture = Capture(
        WavSource(write_wav(tmp_path / "mic.wav", mic), speed=math.inf),
        bus=bus,
        processor=SwallowEverything(),
    )
    woke: list[WakeHit] = []
    detector = WakeDetector.from_model_set(model_set)
    heard_all = asyncio.Event()
    process = detector.process

    async def counting(pcm: bytes) -> WakeHit | None:
        hit = await process(pcm)
        if detector.samples_seen >= len(mic) // 2:
            heard_all.set()
        return hit

    detector.process = counting  # type: ignore[method-assign]
    listener = WakeListener(
        detector,
        capture,
        bus=bus,
        on_wake=woke.append,
        on_end=lambda end: None,
        ignore_while_speaking=ignore_while_speaking,
        front_end=front_end,
    )
    await listener.load()
    task = asyncio.create_task(listener.run())
    session = bytearray()
    try:
        async with asyncio.timeout(60):
            await asyncio.sleep(0)
            async for frame in capture.frames():
                session += frame.pcm
            await heard_all.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.close()
    return woke, bytes(session)


async def test_the_detector_hears_the_microphone_when_the_session_gets_suppressed_audio(
    tmp_path: Path, model_set: ModelSet
) -> None:
    woke, session = await _hits(tmp_path, model_set, ignore_while_speaking=True)
    assert not any(session)  # the session got the stage's output
    assert len(woke) == 1


async def test_without_suppression_while_speaking_the_detector_keeps_the_processed_audio(
    tmp_path: Path, model_set: ModelSet
) -> None:
    # Full duplex with the detector live during replies: only the processed (echo-cancelled)
    # audio is safe from the device's own voice, so that is what the detector gets.
    woke, _ = await _hits(tmp_path, model_set, ignore_while_speaking=False)
    assert woke == []


async def test_the_detector_hears_its_own_front_end(tmp_path: Path, model_set: ModelSet) -> None:
    woke, _ = await _hits(tmp_path, model_set, ignore_while_speaking=True, front_end=MuteFrontEnd())
    assert woke == []
