"""One capture stream: every consumer gets the same numbered audio, the pre-roll keeps the
recent past, and a microphone that is missing is waited for and picked up when it appears."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from audio_helpers import noise, write_wav

from device.audio.capture import Capture, CaptureLost, CaptureRestored, Frame
from device.audio.errors import AudioError
from device.audio.source import PyAudioSource, WavSource
from device.events import ErrorRaised, Event, EventBus
from device.sim.alsa import virtual_alsa

RATE = 16_000


def wav_source(tmp_path: Path, pcm: bytes) -> WavSource:
    return WavSource(write_wav(tmp_path / "mic.wav", pcm, rate=RATE), speed=math.inf)


async def test_every_consumer_gets_the_same_audio_numbered_by_sample(tmp_path: Path) -> None:
    pcm = noise(RATE + 123, seed=1)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus())
    with capture.subscribe() as subscription:
        frames = [frame async for frame in capture.frames()]
        taken = [await subscription.get() for _ in frames]

    assert b"".join(f.pcm for f in frames) == pcm
    assert taken == frames
    # Offsets count samples from the start, with no gaps or overlaps.
    assert [f.start for f in frames] == [
        sum(g.samples for g in frames[:i]) for i in range(len(frames))
    ]
    assert capture.samples == len(pcm) // 2


async def test_the_preroll_keeps_the_recent_past_and_says_where_it_starts(tmp_path: Path) -> None:
    pcm = noise(3 * RATE, seed=2)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus(), preroll_s=1.0)
    async for _ in capture.frames():
        pass

    recent = capture.since(2 * RATE + 100)
    assert recent == Frame(2 * RATE + 100, pcm[2 * (2 * RATE + 100) :], recent.at)
    # Older than the window: what is kept, from its first sample, and the frame says so.
    oldest = capture.since(10)
    assert oldest.start == 2 * RATE
    assert oldest.pcm == pcm[4 * RATE :]
    assert capture.since(capture.samples + 50).pcm == b""


async def test_a_slow_subscriber_loses_the_oldest_audio_and_is_told_how_much(
    tmp_path: Path,
) -> None:
    pcm = noise(2 * RATE, seed=3)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus())
    with capture.subscribe(max_queued_s=0.5) as slow:
        async for _ in capture.frames():
            pass
        first = await slow.get()
    assert slow.dropped_samples == 2 * RATE - RATE // 2
    assert first.start == slow.dropped_samples
    assert slow.gap_before(first) == 0  # nothing taken before: no gap to report yet
    second = await slow.get()
    assert slow.gap_before(second) == 0


class Halve:
    """A processor that halves the level, as a stand-in for an echo stage."""

    async def process(self, pcm: bytes) -> bytes:
        import numpy as np

        return (np.frombuffer(pcm, "<i2") // 2).astype("<i2").tobytes()


class Truncate:
    async def process(self, pcm: bytes) -> bytes:
        return pcm[:-2]


async def test_the_processor_shapes_what_every_consumer_and_the_preroll_get(
    tmp_path: Path,
) -> None:
    import numpy as np

    pcm = noise(RATE // 2, seed=4)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus(), processor=Halve())
    with capture.subscribe() as subscription:
        frames = [frame async for frame in capture.frames()]
        first = await subscription.get()
    halved = (np.frombuffer(pcm, "<i2") // 2).astype("<i2").tobytes()
    assert b"".join(f.pcm for f in frames) == halved
    assert first.pcm == frames[0].pcm
    assert capture.since(0).pcm == halved


async def test_a_processor_that_changes_the_length_is_refused(tmp_path: Path) -> None:
    capture = Capture(
        wav_source(tmp_path, noise(RATE, seed=5)), bus=EventBus(), processor=Truncate()
    )
    with pytest.raises(AudioError, match="must keep the length"):
        async for _ in capture.frames():
            pass


def test_bad_settings_say_what_to_fix(tmp_path: Path) -> None:
    source = wav_source(tmp_path, noise(RATE, seed=6))
    with pytest.raises(ValueError, match="preroll_s must be a positive"):
        Capture(source, bus=EventBus(), preroll_s=0)
    with pytest.raises(ValueError, match="retry_initial_s <= retry_max_s"):
        Capture(source, bus=EventBus(), retry_initial_s=5, retry_max_s=1)


@pytest.mark.slow
async def test_a_missing_microphone_is_retried_until_it_appears(tmp_path: Path) -> None:
    """The device is not there at start (unplugged): capture says so, keeps trying, and takes
    the audio bit for bit once the device is plugged in."""
    speech = noise(RATE // 2, seed=7)
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    with virtual_alsa(tmp_path, speech) as alsa:
        saved = alsa.infile.read_bytes()
        alsa.infile.unlink()  # ALSA drops a file device whose infile is missing
        source = PyAudioSource(alsa.mic, max_queued_ms=600_000)
        capture = Capture(source, bus=bus, retry_initial_s=0.05, retry_max_s=0.2)
        received = bytearray()

        async def listen() -> None:
            async for frame in capture.frames():
                received.extend(frame.pcm)
                if len(received) >= len(speech):
                    return

        async with bus.stream() as stream, asyncio.timeout(20):
            task = asyncio.create_task(listen())
            while not any(isinstance(e, CaptureLost) for e in events):
                await stream.get()
            assert not capture.available
            await asyncio.sleep(0.5)  # a few retries fail
            alsa.infile.write_bytes(saved)  # plugged in
            await task
        await source.close()

    lost = [e for e in events if isinstance(e, CaptureLost)]
    assert len(lost) == 1 and "vmic" in lost[0].reason
    assert any(isinstance(e, ErrorRaised) and e.where == "capture" for e in events)
    assert [type(e) for e in events if isinstance(e, CaptureRestored)] == [CaptureRestored]
    assert capture.available and capture.outages == 1
    assert bytes(received[: len(speech)]) == speech


async def test_the_preroll_counts_behind_a_lagging_subscriber_and_a_hold(tmp_path: Path) -> None:
    """A wake listener 5 s behind capture has not heard the wake word yet: the audio after it
    must still be there when it does, and while it refines the end (a hold)."""
    pcm = noise(8 * RATE, seed=6)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus(), preroll_s=1.0)
    with capture.subscribe() as listener:
        frames = capture.frames()
        while capture.samples < 6 * RATE:
            await anext(frames)
        while (await listener.get()).end < RATE:
            pass  # the listener has heard one second of six
        # One second of pre-roll behind what the listener heard, not behind the microphone.
        assert capture.since(0).start == 0
        assert capture.since(RATE // 2).pcm == pcm[RATE : 12 * RATE]
        capture.hold("wake", RATE // 2)
        while await anext(frames, None) is not None:
            pass
        while listener.queued_samples:
            await listener.get()  # the listener caught up; the hold keeps what it asked for
        assert capture.since(RATE // 2).pcm == pcm[RATE:]
        capture.release("wake")


async def test_a_hold_is_bounded_so_a_lost_release_cannot_grow_the_ring(tmp_path: Path) -> None:
    pcm = noise(5 * RATE, seed=7)
    capture = Capture(wav_source(tmp_path, pcm), bus=EventBus(), preroll_s=1.0, max_lag_s=2.0)
    capture.hold("forgotten", 0)
    async for _ in capture.frames():
        pass
    assert capture.since(0).start == 2 * RATE  # pre-roll plus max_lag_s, no more
