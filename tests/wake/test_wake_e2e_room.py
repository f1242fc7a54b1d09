"""The room of the faster-than-real-time echo tests: a loudspeaker and a microphone on one clock
(the room's, not the wall's), and a leash that keeps a paced file from outrunning the device.
Shared by the wake end-to-end tests through `test_wake_e2e_rig`.

(A module of helpers, named so that only the wake tests' own folder imports it; it holds no
tests.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from device.audio.resample import Resampler
from device.audio.source import AudioSource

RATE = 16_000
SAMPLE_BYTES = 2


class RoomSpeaker:
    """The room's loudspeaker: an `AudioSink` played by the room's clock, not the wall's.

    Each microphone chunk plays the same stretch of time from the speaker's queue, as a sound
    card with one crystal for both directions would, so echo tests can run faster than real
    time and still line up to the sample.
    """

    def __init__(self, rate: int = 24_000) -> None:
        self.rate = rate
        self._queue = bytearray()
        self._played = 0
        self._last_played_at: float | None = None
        self._progress = asyncio.Event()
        self.flushed_bytes = 0

    @property
    def playing(self) -> bool:
        return bool(self._queue)

    @property
    def played_bytes(self) -> int:
        return self._played

    @property
    def last_played_at(self) -> float | None:
        return self._last_played_at

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._queue.clear()
        self._progress.set()

    async def __aenter__(self) -> RoomSpeaker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, pcm: bytes) -> None:
        self._queue += pcm

    def flush(self) -> int:
        dropped = len(self._queue)
        self._queue.clear()
        self.flushed_bytes += dropped
        self._progress.set()
        return dropped

    async def drain(self) -> None:
        while self._queue:
            await self._wait()

    async def wait_played(self, nbytes: int) -> None:
        while self._played < nbytes:
            await self._wait()

    async def _wait(self) -> None:
        self._progress.clear()
        await self._progress.wait()

    def play(self, nbytes: int) -> bytes:
        """The room's clock ticks: `nbytes` of time pass; returns what was heard (padded)."""
        out = bytes(self._queue[:nbytes])
        del self._queue[:nbytes]
        if out:
            self._played += len(out)
            self._last_played_at = time.monotonic()
        self._progress.set()
        return out + bytes(nbytes - len(out))


class RoomMic:
    """The room's microphone, an `AudioSource`: the worker's voice, the speaker's echo (delayed,
    attenuated and smeared by a short reverb) and a noise floor, one chunk per tick of the
    room's clock, paced at up to `speed` times real time.

    The room's clock also waits while `backlog()` (the wake listener's queue, or the session's
    unsent audio) holds more than `max_backlog_s`: on a loaded machine the room runs slower
    instead of the listener or the outbox dropping audio, so what happens depends on samples,
    not on how busy the machine is. Tests wait on the room's clock too (`until`), never on the
    wall's.
    """

    def __init__(
        self,
        speaker: RoomSpeaker,
        *,
        speed: float = 10.0,
        chunk_ms: int = 20,
        echo_delay_ms: int = 30,
        echo_gain_db: float = -15.0,
        noise_dbfs: float = -60.0,
        seed: int = 7,
    ) -> None:
        self.speaker = speaker
        self.rate = RATE
        self.chunk_ms = chunk_ms
        self.speed = speed
        self.chunk = RATE * chunk_ms // 1000
        self.position = 0
        self._rng = np.random.default_rng(seed)
        self._noise_rms = 32768 * 10 ** (noise_dbfs / 20)
        # A direct path plus a decaying tail, as a small room gives.
        taps = np.zeros(RATE * 80 // 1000)
        taps[0] = 1.0
        taps[1:] = self._rng.normal(0, 0.08, taps.size - 1) * np.exp(
            -np.arange(1, taps.size) / (RATE * 0.015)
        )
        self._ir = np.concatenate([np.zeros(RATE * echo_delay_ms // 1000), taps]) * 10 ** (
            echo_gain_db / 20
        )
        self._history = np.zeros(self._ir.size, dtype=np.float64)
        self._voice = np.zeros(0, dtype=np.float64)  # what the worker still has to say
        self._resampler = Resampler(speaker.rate, RATE)
        self._played = bytearray()
        self._ticked = asyncio.Event()
        self._closed = False
        self._delivered = 0
        self.backlog: Callable[[], int] | None = None
        self.max_backlog_s = 0.25
        self.throttled_ticks = 0

    @property
    def samples_delivered(self) -> int:
        return self._delivered

    def say(self, pcm: bytes, gain_db: float = 0.0) -> None:
        """The worker starts speaking now (mixed over anything they are still saying)."""
        voice = np.frombuffer(pcm, dtype="<i2").astype(np.float64) * 10 ** (gain_db / 20)
        if voice.size > self._voice.size:
            voice[: self._voice.size] += self._voice
            self._voice = voice
        else:
            self._voice[: voice.size] += voice

    @property
    def talking(self) -> bool:
        return self._voice.size > 0

    async def wait_quiet(self, after_s: float = 0.0) -> None:
        """Until the worker has finished, and `after_s` more has passed on the room's clock."""
        while self.talking:
            await self._tick()
        until = self.position + round(after_s * RATE)
        while self.position < until:
            await self._tick()

    async def _tick(self) -> None:
        self._ticked.clear()
        await self._ticked.wait()

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def __aenter__(self) -> RoomMic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _next(self) -> bytes:
        n = self.chunk
        self._played += self._resampler.process(self.speaker.play(n * 3 // 2 * SAMPLE_BYTES))
        # The resampler hands back a few samples more or less each time: keep the stream whole.
        take = bytes(self._played[: 2 * n])
        del self._played[: 2 * n]
        far = np.frombuffer(take + bytes(2 * n - len(take)), dtype="<i2").astype(np.float64)
        signal = np.concatenate([self._history, far])
        full = np.convolve(signal, self._ir, mode="full")
        echo = full[self._history.size : self._history.size + n]
        self._history = signal[-self._ir.size :]
        voice = np.zeros(n)
        take = min(n, self._voice.size)
        voice[:take] = self._voice[:take]
        self._voice = self._voice[take:]
        noise = self._rng.normal(0, self._noise_rms, n)
        mixed = np.clip(np.round(voice + echo + noise), -32768, 32767).astype("<i2")
        self.position += n
        return mixed.tobytes()

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        start, count = loop.time(), 0
        interval = self.chunk_ms / 1000 / self.speed
        limit = round(self.max_backlog_s * RATE)
        while not self._closed:
            count += 1
            await asyncio.sleep(max(0.0, start + count * interval - loop.time()))
            if self.backlog is not None and self.backlog() > limit:
                while self.backlog() > limit and not self._closed:
                    self.throttled_ticks += 1
                    await asyncio.sleep(interval)
                start, count = loop.time(), 0  # no burst to catch up afterwards
            chunk = self._next()
            self._delivered += self.chunk
            self._ticked.set()
            yield chunk


class Leashed:
    """A microphone (any `AudioSource`) that runs at most `max_ahead_s` ahead of the device.

    A file paced at 4x real time outruns a wake listener on a loaded machine without end; a
    real microphone at 1x does not outrun one that keeps up. So the file waits while the
    listener's queue or the session's unsent audio holds more than `max_ahead_s`: the lag can
    still exceed the pre-roll (what the pre-roll must survive), but what happens next depends
    on samples, not on how busy the machine is.
    """

    def __init__(self, source: AudioSource, *, max_ahead_s: float = 8.0) -> None:
        self.source = source
        self.rate = source.rate
        self.chunk_ms = source.chunk_ms
        self.max_ahead_s = max_ahead_s
        self.backlog: Callable[[], int] | None = None
        self.waits = 0

    @property
    def samples_delivered(self) -> int:
        return int(getattr(self.source, "samples_delivered", 0))

    async def open(self) -> None:
        await self.source.open()

    async def close(self) -> None:
        await self.source.close()

    async def __aenter__(self) -> Leashed:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        limit = round(self.max_ahead_s * RATE)
        async for chunk in self.source.chunks():
            while self.backlog is not None and self.backlog() > limit:
                self.waits += 1
                await asyncio.sleep(self.chunk_ms / 1000)
            yield chunk


async def until(
    mic: RoomMic, done: Callable[[], bool], *, room_s: float, what: str = "the condition"
) -> None:
    """Until `done()` holds, checked at every tick of the room's clock. Fails when `room_s` of
    room time has passed without it: a budget in samples, whatever the machine's load."""
    limit = mic.position + round(room_s * RATE)
    while not done():
        if mic.position >= limit:
            raise AssertionError(f"{what} did not happen within {room_s:g} s of room time")
        await mic._tick()
