"""Microphones: where 16 kHz PCM16 mono chunks come from.

`PyAudioSource` captures from a sound card; `WavSource` (`device.audio.wav_source`) plays a
file as if it were being spoken into one, paced like a real microphone (optionally faster, for
tests and demos). Both are re-exported here, with the `AudioSource` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pyaudio

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.devices import ProbeResult, choose_format, find_device
from device.audio.errors import AudioError
from device.audio.resample import Resampler, to_mono
from device.audio.source_base import AudioSource, _Source, check_chunk_ms
from device.audio.wav_source import WavSource
from device.loop_inbox import LoopInbox

__all__ = ["AudioSource", "PyAudioSource", "WavSource", "_Source", "check_chunk_ms"]

log = logging.getLogger(__name__)


# Put in the queue by the watchdog when no audio came for `stall_timeout_s`.
_STALLED: tuple[bytes, float | None] = (b"", None)


class PyAudioSource(_Source):
    """Capture from the input device whose name contains `device`.

    PortAudio's callback thread hands each buffer to the event loop through a `LoopInbox`
    (not a `call_soon_threadsafe` per buffer: see `device.loop_inbox`); the loop converts it
    and queues whole chunks. When the consumer falls more than `max_queued_ms` behind, the
    oldest chunks are dropped (and counted in `overruns`): for a live conversation fresh audio
    matters more than complete audio.

    `handover_ms` (a multiple of `chunk_ms`) is how much audio is gathered before the loop is
    woken, and how much `chunks()` then yields as one item: `chunk_ms` in a conversation, more
    while only the wake word listens. Every item costs the loop one pass through capture, the
    echo stage and the wake listener, whatever its length (`device.bench.idle_wake`).
    """

    def __init__(
        self,
        device: str,
        *,
        rate: int = CAPTURE_RATE,
        chunk_ms: int = 20,
        max_queued_ms: int = 2000,
        stall_timeout_s: float = 2.0,
        device_rate: int | None = None,
    ) -> None:
        super().__init__(rate=rate, chunk_ms=chunk_ms)
        if max_queued_ms < chunk_ms:
            raise ValueError(
                f"max_queued_ms must be at least chunk_ms ({chunk_ms}), not {max_queued_ms}"
            )
        self.device = device
        self.device_rate = device_rate
        self.max_queued_chunks = max_queued_ms // chunk_ms
        self._queued_bytes = 0  # audio in `_queue`, whatever the size of its items
        self.stall_timeout_s = stall_timeout_s
        self.overruns = 0
        self.input_overflows = 0
        self.format: ProbeResult | None = None
        self._pa: pyaudio.PyAudio | None = None
        self._stream: Any = None
        self._queue: asyncio.Queue[tuple[bytes, float | None] | None] = asyncio.Queue()
        self._pending = bytearray()
        self._pending_at: float | None = None  # when `_pending`'s first sample was captured
        # When the first sample of the chunk `chunks()` last yielded reached the converter,
        # on `time.monotonic()` (PortAudio's `input_buffer_adc_time`): the echo canceller
        # pairs the chunk with what the speaker was playing then.
        self.chunk_adc_time: float | None = None
        self._resampler: Resampler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: LoopInbox | None = None
        # How much audio PortAudio's thread gathers before it wakes the event loop: one chunk
        # for the lowest latency (a conversation), more while only the wake word listens (its
        # frames are 80 ms anyway). Each wake-up of the loop costs about as much CPU as the
        # audio's own handling; see `device.bench.idle_wake`.
        self._handover_ms = chunk_ms
        self._held: list[bytes] = []
        self._held_adc: float | None = None
        self._held_frames = 0
        self._held_status = 0

    @property
    def handover_ms(self) -> int:
        return self._handover_ms

    @handover_ms.setter
    def handover_ms(self, ms: int) -> None:
        if ms < self.chunk_ms or ms % self.chunk_ms:
            raise ValueError(
                f"handover_ms must be a multiple of chunk_ms ({self.chunk_ms}), not {ms}"
            )
        self._handover_ms = ms

    async def open(self) -> None:
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        self._inbox = LoopInbox(self._loop)
        self._queue = asyncio.Queue()
        self._queued_bytes = 0
        self._pending.clear()
        self._pending_at = None
        self._held, self._held_frames, self._held_status = [], 0, 0
        self._held_adc = None
        self._opened = True
        try:
            await asyncio.to_thread(self._open_stream)
        except BaseException:
            self._opened = False
            raise

    def _open_stream(self) -> None:
        pa = pyaudio.PyAudio()
        try:
            device = find_device(self.device, "input", pa=pa)
            fmt = choose_format(pa, device, "input", self.rate, device_rate=self.device_rate)
            # Everything the loop needs to convert audio is in place before the first callback.
            self._resampler = Resampler(fmt.rate, self.rate)
            self.format = fmt
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=fmt.channels,
                    rate=fmt.rate,
                    input=True,
                    input_device_index=device.index,
                    # One chunk per buffer. 40 ms buffers cost PortAudio's thread less, but
                    # on the PulseAudio path they doubled the device-added round trip
                    # (`warehouse-voice bench`: 24 -> 48 ms median), so the conversation's
                    # latency wins; while idle, `handover_ms` saves the loop's wake-ups.
                    frames_per_buffer=fmt.rate * self.chunk_ms // 1000,
                    stream_callback=self._callback,
                    start=False,
                )
                self._pa, self._stream = pa, stream
                stream.start_stream()
            except OSError as exc:
                raise AudioError(
                    f"cannot open input device {device.name!r} ({fmt.describe()}): {exc}; "
                    "check that no other program holds it"
                ) from None
        except BaseException:
            self._stream = self._pa = None
            pa.terminate()
            raise
        log.info("capturing from %s", fmt.describe())

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status: int
    ) -> tuple[None, int]:
        # PortAudio's thread: do nothing here but hand over; the loop does the work.
        inbox = self._inbox
        fmt = self.format
        if inbox is None or in_data is None or fmt is None:
            return None, pyaudio.paContinue
        if not self._held:
            # The batch's first buffer dates it. PortAudio's times are on its own clock: only
            # the difference is used, read against ours at the same moment.
            self._held_adc = None
            try:
                now = float(time_info["current_time"])
                adc = float(time_info["input_buffer_adc_time"])
                # A host API with no times reports zeros; an absurd age is no time either.
                if adc > 0 and math.isfinite(now - adc) and 0 <= now - adc < 1.0:
                    self._held_adc = time.monotonic() - (now - adc)
            except (KeyError, TypeError, ValueError):
                self._held_adc = None
        self._held.append(in_data)
        self._held_frames += frame_count
        self._held_status |= status
        if self._held_frames < fmt.rate * self._handover_ms // 1000:
            return None, pyaudio.paContinue
        data = in_data if len(self._held) == 1 else b"".join(self._held)
        status, adc_at = self._held_status, self._held_adc
        self._held, self._held_frames, self._held_status = [], 0, 0
        try:
            inbox.call(self._on_audio, data, status, adc_at)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    def _on_audio(self, data: bytes, status: int, adc_at: float | None = None) -> None:
        if not self._opened or self.format is None or self._resampler is None:
            return
        if status & pyaudio.paInputOverflow:
            self.input_overflows += 1
        if adc_at is not None:
            # This buffer's first sample is `adc_at`; what is pending came just before it.
            self._pending_at = adc_at - len(self._pending) / SAMPLE_WIDTH / self.rate
        self._pending += self._resampler.process(to_mono(data, self.format.channels))
        # One item per handover (what the loop was woken for), in whole chunks.
        per_item = max(1, self._handover_ms // self.chunk_ms)
        size = self.chunk_bytes * per_item
        if len(self._pending) >= self.chunk_bytes and self._loop is not None:
            self._last_audio = self._loop.time()
        limit = self.max_queued_chunks * self.chunk_bytes
        while len(self._pending) >= self.chunk_bytes:
            if len(self._pending) < size:
                # Less than a batch left (the handover just shrank, or a short buffer): whole
                # chunks go now rather than wait, so a conversation never starts late.
                size = len(self._pending) // self.chunk_bytes * self.chunk_bytes
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            at = self._pending_at
            if at is not None:
                self._pending_at = at + len(chunk) / SAMPLE_WIDTH / self.rate
            while self._queued_bytes + len(chunk) > limit and not self._queue.empty():
                old = self._queue.get_nowait()
                if old is not None and old is not _STALLED:
                    self._queued_bytes -= len(old[0])
                    self.overruns += 1
            self._queued_bytes += len(chunk)
            self._queue.put_nowait((chunk, at))

    @property
    def backlog_ms(self) -> int:
        """Captured audio waiting for the consumer: how far behind the room it is."""
        return self._queued_bytes // SAMPLE_WIDTH * 1000 // self.rate

    async def chunks(self) -> AsyncIterator[bytes]:
        opened_here = not self._opened
        await self.open()
        queue = self._queue
        # One watchdog timer per stall period, not a timeout per chunk: 50 timers a second
        # were a measurable part of the idle daemon's CPU.
        loop = asyncio.get_running_loop()
        self._last_audio = loop.time()
        self._watchdog = loop.call_later(self.stall_timeout_s, self._watch, loop)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if item is _STALLED:
                    await self._check_alive()
                    continue
                chunk, self.chunk_adc_time = item
                self._queued_bytes -= len(chunk)
                self._samples_delivered += len(chunk) // SAMPLE_WIDTH
                yield chunk
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = None
            if opened_here:
                await self.close()

    _last_audio = 0.0
    _watchdog: asyncio.TimerHandle | None = None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """No chunk for `stall_timeout_s`: wake `chunks()` to check the stream."""
        quiet_for = loop.time() - self._last_audio
        if quiet_for >= self.stall_timeout_s:
            self._queue.put_nowait(_STALLED)
            self._last_audio = loop.time()
            quiet_for = 0.0
        self._watchdog = loop.call_later(self.stall_timeout_s - quiet_for, self._watch, loop)

    async def _check_alive(self) -> None:
        stream = self._stream
        if stream is None or not self._opened:
            return
        if not await asyncio.to_thread(stream.is_active):
            raise AudioError(
                f"input device {self.device!r} stopped delivering audio (unplugged?); "
                "the source must be reopened"
            )
        log.warning("no audio from input device %r for %.1f s", self.device, self.stall_timeout_s)

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        self._queue.put_nowait(None)
        if stream is not None or pa is not None:
            await asyncio.to_thread(_shutdown, stream, pa)


def _shutdown(stream: Any, pa: pyaudio.PyAudio | None) -> None:
    try:
        if stream is not None:
            stream.stop_stream()
            stream.close()
    finally:
        if pa is not None:
            pa.terminate()
