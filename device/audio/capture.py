"""One capture stream for the whole appliance, fanned out to the wake word and the session.

A single loop reads the microphone. Every chunk is numbered by its stream offset (samples since
capture started), passed through the echo stage, kept in a pre-roll ring buffer, copied to each
subscriber's queue (the wake listener) and handed to the caller of `frames()` (the appliance,
which feeds the open conversation). Offsets are samples, never wall-clock time, so a wake hit
says exactly which audio to send even when audio runs faster than real time.

A microphone that fails (a USB mic unplugged: `PyAudioSource.chunks()` raises `AudioError`, or
the device cannot be found when reopened) is closed and reopened with exponential backoff.
`CaptureLost` and `CaptureRestored` are published on the bus so the panel and the status socket
show the error, and capture carries on by itself when the device comes back. The offsets do not
jump across the outage: they count audio delivered, and no audio was.

The pre-roll is counted in samples behind the slowest subscriber, not behind the microphone: a
wake listener that falls behind (a loaded machine, a slow inference) has not heard the wake
word yet, so the audio after it must still be kept when it does. A listener that has heard it
holds the audio from there (`hold`) until the session has taken it. Both are bounded by
`max_lag_s`, so a stuck subscriber cannot grow the ring without limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.errors import AudioError
from device.audio.source import AudioSource
from device.events import ErrorRaised, Event, EventBus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One captured chunk: 16 kHz PCM16 mono, starting at stream offset `start` (samples)."""

    start: int
    pcm: bytes
    at: float = 0.0  # time.monotonic() when it was captured (for latency figures)
    # The microphone's audio before the capture stage (echo gate, AEC, noise suppression),
    # when a stage ran: the wake detector may take it (device.wake.listener).
    raw: bytes | None = None

    @property
    def samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def end(self) -> int:
        return self.start + self.samples

    def pieces(self, wanted_from: int, piece_ms: int = 20) -> list[bytes]:
        """The audio in microphone-sized pieces; warns if it starts after `wanted_from`
        (the pre-roll did not reach back that far)."""
        if self.start > wanted_from:
            log.warning(
                "pre-roll too short: %d ms after the wake word were lost (raise audio.preroll_s)",
                1000 * (self.start - wanted_from) // CAPTURE_RATE,
            )
        step = CAPTURE_RATE * piece_ms // 1000 * SAMPLE_WIDTH
        return [self.pcm[offset : offset + step] for offset in range(0, len(self.pcm), step)]


@dataclass(frozen=True, kw_only=True)
class CaptureLost(Event):
    """The microphone stopped delivering audio; capture retries every `retry_in_s` or so."""

    kind: ClassVar[str] = "capture_lost"
    device: str
    reason: str
    retry_in_s: float


@dataclass(frozen=True, kw_only=True)
class CaptureRestored(Event):
    """The microphone works again after `down_s` seconds without audio."""

    kind: ClassVar[str] = "capture_restored"
    device: str
    down_s: float


class ChunkProcessor(Protocol):
    """A stage between the microphone and everything else (see `device.audio.echo`)."""

    async def process(self, pcm: bytes) -> bytes:
        """Return exactly as many bytes as were given (offsets must stay aligned)."""
        ...


class Subscription:
    """A subscriber's own queue of frames, so a slow subscriber never stalls capture.

    When more than `max_queued_s` is waiting, the oldest frames are dropped and counted in
    `dropped_samples`; `gap_before(frame)` tells the subscriber how much audio went missing.
    """

    def __init__(self, capture: Capture, max_queued_s: float) -> None:
        self._capture = capture
        self._max_samples = round(max_queued_s * CAPTURE_RATE)
        self._queue: collections.deque[Frame] = collections.deque()
        self._queued_samples = 0
        self._ready = asyncio.Event()
        self._expected: int | None = None
        self.dropped_samples = 0

    def put(self, frame: Frame) -> None:
        self._queue.append(frame)
        self._queued_samples += frame.samples
        while self._queued_samples > self._max_samples and len(self._queue) > 1:
            old = self._queue.popleft()
            self._queued_samples -= old.samples
            self.dropped_samples += old.samples
        self._ready.set()

    @property
    def heard_to(self) -> int | None:
        """Stream offset of the oldest frame not yet taken (None when nothing is queued)."""
        return self._queue[0].start if self._queue else None

    @property
    def queued_samples(self) -> int:
        return self._queued_samples

    def gap_before(self, frame: Frame) -> int:
        """Samples missing between the previous frame taken and `frame` (0 when contiguous)."""
        gap = 0 if self._expected is None else max(0, frame.start - self._expected)
        self._expected = frame.end
        return gap

    async def get(self) -> Frame:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        self._queued_samples -= frame.samples
        return frame

    def close(self) -> None:
        self._capture._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Capture:
    """Reads `source` once and shares it: `frames()` for the caller, `subscribe()` for others.

    `preroll_s` of the most recent audio is kept; `since(sample)` returns it from any offset
    still inside that window, which is how the words said right after the wake word reach a
    session that did not exist yet when they were spoken.
    """

    def __init__(
        self,
        source: AudioSource,
        *,
        bus: EventBus,
        preroll_s: float = 2.0,
        processor: ChunkProcessor | None = None,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        device: str = "",
        clock: Callable[[], float] = time.monotonic,
        max_lag_s: float = 60.0,
    ) -> None:
        if not preroll_s > 0:
            raise ValueError(f"preroll_s must be a positive number of seconds, not {preroll_s!r}")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                f"retry delays must satisfy 0 < retry_initial_s <= retry_max_s, got "
                f"{retry_initial_s!r} and {retry_max_s!r}"
            )
        self.source = source
        self.bus = bus
        # A stage that pairs audio by time (the echo canceller) learns when chunks were heard.
        bind = getattr(processor, "bind_source", None)
        if bind is not None:
            bind(source)
        self.preroll_s = preroll_s
        self.processor = processor
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.device = device or str(getattr(source, "device", "")) or type(source).__name__
        self._clock = clock
        self._ring = bytearray()
        self._ring_start = 0  # stream offset of the first byte in _ring
        self._ring_max = round(preroll_s * CAPTURE_RATE) * SAMPLE_WIDTH
        # The most the ring keeps for a lagging subscriber or a hold, beyond the pre-roll.
        self._lag_max = round(max_lag_s * CAPTURE_RATE)
        self._samples = 0
        self._subscribers: list[Subscription] = []
        self._holds: dict[object, int] = {}
        self._lost_at: float | None = None
        self.outages = 0
        self.last_frame_at: float | None = None

    @property
    def samples(self) -> int:
        """Stream offset just past the last frame captured."""
        return self._samples

    @property
    def available(self) -> bool:
        """False while the microphone is lost and being retried."""
        return self._lost_at is None

    @property
    def backlog_samples(self) -> int:
        """The most audio any subscriber has queued and not yet taken (a slow wake listener)."""
        return max((s.queued_samples for s in self._subscribers), default=0)

    def subscribe(self, *, max_queued_s: float = 30.0) -> Subscription:
        """A queue of every frame captured from now on (use as a context manager)."""
        if not max_queued_s > 0:
            raise ValueError(f"max_queued_s must be positive, not {max_queued_s!r}")
        subscription = Subscription(self, max_queued_s)
        self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    def hold(self, owner: object, sample: int) -> None:
        """Keep the audio from offset `sample` on (within `max_lag_s`) until `release(owner)`:
        the wake word's end is known only after the listener has heard more."""
        self._holds[owner] = sample

    def release(self, owner: object) -> None:
        self._holds.pop(owner, None)

    def since(self, sample: int) -> Frame:
        """The kept audio from offset `sample` to now. If `sample` is older than the pre-roll
        window, the frame starts at the oldest sample kept (check `frame.start`)."""
        start = min(max(sample, self._ring_start), self._samples)
        offset = (start - self._ring_start) * SAMPLE_WIDTH
        return Frame(start, bytes(self._ring[offset:]))

    async def frames(self) -> AsyncIterator[Frame]:
        """Capture until the source ends (a WAV file) or the caller stops; reopen on failure."""
        delay = self.retry_initial_s
        while True:
            chunks = self.source.chunks()
            try:
                while True:
                    # Only the microphone's own failures mean "lost": anything raised while
                    # handling a chunk is a bug and propagates.
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                    except (AudioError, OSError) as exc:
                        self._lost(exc, delay)
                        break
                    if self._lost_at is not None:
                        self._restored()
                        delay = self.retry_initial_s
                    yield await self._accept(chunk)
            finally:
                # Close the source's generator now, not whenever it is garbage collected, so a
                # source opened by `chunks()` releases the device before it is opened again.
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            # The stream is dead; close it so the next `chunks()` opens the device afresh.
            with contextlib.suppress(Exception):
                await self.source.close()
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.retry_max_s)

    async def _accept(self, pcm: bytes) -> Frame:
        arrived = self._clock()
        raw = None
        if self.processor is not None:
            raw = pcm
            processed = await self.processor.process(pcm)
            if len(processed) != len(pcm):
                raise AudioError(
                    f"capture processor {type(self.processor).__name__} returned "
                    f"{len(processed)} bytes for {len(pcm)}; it must keep the length"
                )
            pcm = processed
        frame = Frame(self._samples, pcm, arrived, raw)
        self._samples = frame.end
        self.last_frame_at = frame.at
        self._ring += pcm
        for subscription in list(self._subscribers):
            subscription.put(frame)
        self._trim()
        return frame

    def _trim(self) -> None:
        """Drop from the ring what nobody can still ask for: older than the pre-roll behind the
        slowest subscriber, and older than every hold."""
        preroll = self._ring_max // SAMPLE_WIDTH
        keep_from = self._samples - preroll
        for subscription in self._subscribers:
            heard = subscription.heard_to
            if heard is not None:
                keep_from = min(keep_from, heard - preroll)
        for sample in self._holds.values():
            keep_from = min(keep_from, sample)
        keep_from = max(keep_from, self._samples - preroll - self._lag_max)
        excess = keep_from - self._ring_start
        if excess > 0:
            del self._ring[: excess * SAMPLE_WIDTH]
            self._ring_start = keep_from

    def _lost(self, exc: Exception, retry_in_s: float) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock()
            self.outages += 1
            log.error("microphone %r lost: %s; retrying", self.device, exc)
            self.bus.publish(
                CaptureLost(device=self.device, reason=str(exc), retry_in_s=retry_in_s)
            )
            self.bus.publish(
                ErrorRaised(
                    where="capture",
                    message=f"microphone {self.device!r} lost: {exc}; capture resumes by "
                    "itself when the device is back (check the cable or USB port)",
                )
            )
        else:
            log.debug("microphone %r still unavailable: %s", self.device, exc)

    def _restored(self) -> None:
        assert self._lost_at is not None
        down = self._clock() - self._lost_at
        self._lost_at = None
        log.warning("microphone %r is back after %.1f s", self.device, down)
        self.bus.publish(CaptureRestored(device=self.device, down_s=round(down, 3)))
