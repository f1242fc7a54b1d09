"""While only the wake word listens, the microphone wakes the event loop once per
`IDLE_HANDOVER_MS` of audio (the idle daemon's CPU: `device.bench.idle_wake`); once a score
starts to rise it hands over every detector frame, so the wake word is not kept waiting for the
rest of a batch; in a conversation, every chunk.

The real capture stage and listener with the installed models, on a spoken wake phrase. The
microphone is a stand-in that honours `handover_ms` as `PyAudioSource` does (its batching is
tested on real PyAudio in tests/audio) and hands over its next item once the listener has
scored the last: a real microphone is that far ahead of a listener that keeps up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from device.audio.capture import Capture
from device.audio.source import PyAudioSource, _Source
from device.events import EventBus, State, StateChanged
from device.sim.speech import noise, synthesize_parts
from device.wake.detector import WakeDetector, WakeHit
from device.wake.listener import FRAME_MS, IDLE_HANDOVER_MS, WakeListener
from device.wake.models import ModelSet

MS = 32  # bytes per millisecond: 16 kHz, 16-bit


class LockstepMic(_Source):
    def __init__(self, pcm: bytes, scored: Callable[[], int]) -> None:
        super().__init__(rate=16_000, chunk_ms=20)
        self.pcm = pcm
        self.scored = scored  # samples the listener has scored so far
        self.handover_ms = self.chunk_ms
        self.items: list[tuple[int, int]] = []  # (first sample, ms) of each item

    async def open(self) -> None:
        self._opened = True

    async def close(self) -> None:
        self._opened = False

    async def chunks(self) -> AsyncIterator[bytes]:
        offset = 0
        while offset < len(self.pcm):
            size = self.handover_ms * MS
            self.items.append((offset // 2, self.handover_ms))
            item = self.pcm[offset : offset + size]
            offset += len(item)
            self._samples_delivered += len(item) // 2
            yield item
            async with asyncio.timeout(60):
                while self.scored() < offset // 2:  # noqa: ASYNC110 - samples, no event
                    await asyncio.sleep(0.005)


async def test_batches_while_idle_frames_once_a_score_rises_and_chunks_in_a_conversation(
    model_set: ModelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = noise(3.2, level_dbfs=-55, seed=4)
    speech, _ = synthesize_parts(["hey jarvis", "where is SKU one zero four four one seven"])
    phrase_at = len(quiet) // 2
    pcm = quiet + speech + quiet + quiet
    bus = EventBus()
    hits: list[WakeHit] = []
    detector = WakeDetector.from_model_set(model_set)
    scored = [0]  # samples the listener has scored (and so chosen the next hand-over for)
    process = detector.process

    async def scoring(pcm: bytes) -> WakeHit | None:
        hit = await process(pcm)
        scored[0] = detector.samples_seen
        return hit

    monkeypatch.setattr(detector, "process", scoring)
    mic = LockstepMic(pcm, lambda: scored[0])
    capture = Capture(mic, bus=bus)
    listener = WakeListener(
        detector, capture, bus=bus, on_wake=hits.append, on_end=lambda _sample: None
    )
    talk_at = len(pcm) // 2 - 2 * 16_000  # the last two seconds: a conversation

    async def read() -> None:
        talking = False
        while mic.handover_ms != IDLE_HANDOVER_MS:  # noqa: ASYNC110 - the listener sets it
            await asyncio.sleep(0)  # so every run cuts the same batches
        async for frame in capture.frames():
            if frame.end >= talk_at and not talking:
                talking = True
                bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE))

    await listener.load()
    run = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(read(), 120)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await listener.close()

    assert len(hits) == 1, hits
    starts = np.array([start for start, _ in mic.items])
    sizes = [ms for _, ms in mic.items]
    assert sizes[0] == IDLE_HANDOVER_MS
    # Floor noise before the phrase: whole batches, once the models' first second is past
    # (their features start from nothing, and scores twitch up to 0.05 there).
    settled = int(np.searchsorted(starts, 26_000))
    before = sizes[settled : int(np.searchsorted(starts, phrase_at))]
    assert before and set(before) == {IDLE_HANDOVER_MS}, before
    # The item that completed the hit (its confirming frame) was one frame, not a batch.
    confirm = hits[0].detected_sample + 1280
    holding = int(np.searchsorted(starts, confirm)) - 1
    assert sizes[holding] == FRAME_MS, (sizes, holding)
    # The score falls after the phrase: batches again, until the conversation: chunks.
    talk = int(np.searchsorted(starts, talk_at))
    after = sizes[holding + 1 : talk]
    assert IDLE_HANDOVER_MS in after, after
    assert after[-3:] == [IDLE_HANDOVER_MS] * 3, after
    assert sizes[talk + 1 :] and set(sizes[talk + 1 :]) == {mic.chunk_ms}, sizes[talk:]


@pytest.mark.parametrize(
    ("chunk_ms", "idle_ms", "frame_ms"), [(20, 480, 80), (30, 480, 60), (50, 450, 50)]
)
async def test_hand_overs_are_whole_chunks_of_any_configured_size(
    model_set: ModelSet, chunk_ms: int, idle_ms: int, frame_ms: int
) -> None:
    # `[audio] chunk_ms` may be 20 to 50; the microphone hands over whole chunks only.
    bus = EventBus()
    mic = PyAudioSource("vmic", chunk_ms=chunk_ms)  # never opened: only told how to hand over
    listener = WakeListener(
        WakeDetector.from_model_set(model_set),
        Capture(mic, bus=bus),
        bus=bus,
        on_wake=lambda _hit: None,
        on_end=lambda _sample: None,
    )
    run = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(30):
            while mic.handover_ms != idle_ms and not run.done():  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.01)
        assert not run.done(), run.exception()
        bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE))
        assert mic.handover_ms == chunk_ms
        bus.publish(StateChanged(state=State.IDLE, previous=State.LISTENING))
        assert mic.handover_ms == idle_ms
        listener._hand_over(FRAME_MS)
        assert mic.handover_ms == frame_ms
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await listener.close()
