"""The machinery behind every speaker: a byte queue, a player thread, flush and drain.

`write` queues audio (waiting while more than `max_queued_s` is already queued); a player
thread takes one output buffer at a time and hands it to the device, whose own clock paces it.
`flush` empties the queue at once for barge-in, and the player drops the device's pending
audio as soon as the buffer it is handing over is done, so playback stops within one output
buffer. Subclasses only drive a device.

A device error ends the player thread and is raised once to whoever waits on the speaker; the
next `open` (every `write` opens) starts a new player, which finds the device by name again, so
an unplugged and replugged speaker works again without a restart. `fault` says what is wrong
meanwhile, and `stalled_s` how long the device has held one buffer (a hung write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from device.audio import SAMPLE_WIDTH
from device.audio.errors import AudioError, AudioFormatError
from device.loop_inbox import LoopInbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderMark:
    """The speaker's own account of when its audio is heard (`time.monotonic()` seconds).

    A play mark: the played stream's byte `offset` (the end of a buffer handed to the device)
    leaves the speaker at `heard_at`. A cut mark: at `heard_at` the device dropped what it still
    held (a barge-in flush), so audio due after it is never heard.
    """

    offset: int
    heard_at: float
    cut: bool = False
    start: bool = False  # the device (re)started with this buffer: a new stretch of time
    handed_at: float | None = None  # when the buffer was handed over (None: not known)


class QueuedSink:
    """The queue, the player thread and the bookkeeping; subclasses drive a device.

    The loop thread and the player thread share `_cond`. The player reports progress back
    through a `LoopInbox` (one wake-up per batch, never a self-pipe full of them:
    `device.loop_inbox`), which is what wakes writers waiting for room and `drain`.
    """

    # How long an empty queue waits for more audio before the device is treated as idle.
    idle_grace_s = 0.0

    def __init__(self, *, rate: int, buffer_ms: int, max_queued_s: float) -> None:
        if not 5 <= buffer_ms <= 200:
            raise ValueError(f"buffer_ms must be from 5 to 200, not {buffer_ms!r}")
        if not max_queued_s > 0:
            raise ValueError(
                f"max_queued_s must be a positive number of seconds, not {max_queued_s!r}"
            )
        self.rate = rate
        self.buffer_ms = buffer_ms
        self.buffer_bytes = rate * buffer_ms // 1000 * SAMPLE_WIDTH
        self.max_queued_bytes = round(max_queued_s * rate) * SAMPLE_WIDTH
        self.flushed_bytes = 0
        self._cond = threading.Condition()
        self._queue = bytearray()
        self._generation = 0  # bumped by every flush
        self._taken_generation = 0  # the generation of the buffer the player holds
        self._active = False  # the device holds audio it has not finished playing
        self._closing = False
        self._played_bytes = 0
        self._last_played_at: float | None = None
        self._failure: BaseException | None = None
        self._open_error: str | None = None
        self._busy_since: float | None = None  # the player is inside the device since then
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._inbox: LoopInbox | None = None
        self._progress = asyncio.Event()
        # Appended on the player thread, taken on the loop (deque appends and pops are atomic).
        self._marks: deque[RenderMark] = deque(maxlen=1000)
        self._marking = False
        self._started = False  # set by a subclass when its device (re)starts
        # The supervisor's heal and a reply's write may both reopen a failed speaker at once;
        # one at a time, or two player threads share (and close) one device.
        self._opening = asyncio.Lock()

    # -- what subclasses provide (all called on the player thread) -------------------------

    def _device_open(self) -> None:
        raise NotImplementedError

    def _device_play(self, pcm: bytes) -> None:
        """Hand over one buffer; may block while the device is full."""
        raise NotImplementedError

    def _device_idle(self) -> None:
        """The queue ran dry: let the device finish what it holds."""

    def _device_discard(self) -> None:
        """A flush happened: drop whatever the device still holds."""

    def _device_close(self) -> None:
        raise NotImplementedError

    def _device_delay_s(self) -> float | None:
        """Right after `_device_play`: seconds until the last byte handed over leaves the
        speaker (the device's buffered output latency). None when the device cannot tell."""
        return None

    def _pace_s(self, nbytes: int) -> float:
        """How long the player waits after handing over `nbytes` (for devices with no clock)."""
        return 0.0

    # -- the public face (loop thread) -----------------------------------------------------

    @property
    def playing(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._active

    @property
    def played_bytes(self) -> int:
        return self._played_bytes

    @property
    def last_played_at(self) -> float | None:
        return self._last_played_at

    def take_render_marks(self) -> list[RenderMark]:
        """When the audio played so far leaves the speaker (see `RenderMark`), since the last
        call; empty for a device that cannot tell. The echo canceller's reference uses them."""
        marks = []
        while self._marks:
            marks.append(self._marks.popleft())
        return marks

    @property
    def queued_bytes(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def fault(self) -> str | None:
        """Why the speaker cannot play right now (None when it can, or has not been tried)."""
        if self._failure is not None:
            return f"playback failed: {self._failure}"
        return self._open_error

    @property
    def stalled_s(self) -> float:
        """How long the device has been holding one buffer; 0 when it is not inside one."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    async def open(self) -> None:
        async with self._opening:
            await self._open()

    async def _open(self) -> None:
        thread = self._thread
        if thread is not None:
            if self._failure is None:
                return
            # The player died of a device error: start a new one, which looks the device up
            # by name again (a replugged USB speaker comes back under a new index).
            await asyncio.to_thread(thread.join)
            self._thread = None
        loop = asyncio.get_running_loop()
        self._inbox = LoopInbox(loop)
        self._progress = asyncio.Event()
        self._closing, self._failure = False, None
        opened: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name=f"{type(self).__name__}-player", daemon=True
        )
        self._thread.start()
        try:
            await opened
        except BaseException as exc:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            self._open_error = f"cannot open the speaker: {exc}"
            raise
        self._open_error = None

    async def write(self, pcm: bytes) -> None:
        """Queue audio for playback; waits while more than `max_queued_s` is queued."""
        if len(pcm) % SAMPLE_WIDTH:
            raise AudioFormatError(f"PCM16 audio must have an even number of bytes, got {len(pcm)}")
        if not pcm:
            return
        await self.open()
        while True:
            self._progress.clear()
            self._check_failed()
            if self.queued_bytes < self.max_queued_bytes:
                break
            await self._progress.wait()
        with self._cond:
            self._queue += pcm
            self._cond.notify_all()

    def flush(self) -> int:
        """Drop everything queued and not yet played; returns the bytes dropped."""
        with self._cond:
            dropped = len(self._queue)
            self._queue.clear()
            self._generation += 1
            self.flushed_bytes += dropped
            self._cond.notify_all()
        self._progress.set()
        return dropped

    async def drain(self) -> None:
        """Wait until everything written so far has been played (or flushed)."""
        while True:
            self._progress.clear()
            self._check_failed()
            if self._thread is None or not self.playing:
                return
            await self._progress.wait()

    async def wait_played(self, nbytes: int) -> None:
        """Wait until `played_bytes` reaches `nbytes` (e.g. to time the first audio heard)."""
        while True:
            self._progress.clear()
            self._check_failed()
            if self._played_bytes >= nbytes:
                return
            if self._thread is None or (not self.playing and self._played_bytes < nbytes):
                raise AudioError(
                    f"only {self._played_bytes} of {nbytes} bytes were played: nothing more is "
                    "queued (write more first, or the rest was flushed)"
                )
            await self._progress.wait()

    async def close(self) -> None:
        """Stop at once: queued audio is dropped. Call `drain` first to hear it out."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._cond.notify_all()
        await asyncio.to_thread(thread.join)
        self._thread = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_failed(self) -> None:
        if self._failure is not None:
            raise AudioError(f"playback failed: {self._failure}") from self._failure

    # -- the player thread -----------------------------------------------------------------

    def _notify(self, callback: Any = None, *args: Any) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone; nobody is waiting
            inbox.call(callback or self._progress.set, *args)

    def _run(self, opened: asyncio.Future[None]) -> None:
        try:
            self._device_open()
        except BaseException as exc:
            self._notify(_settle, opened, exc)
            return
        self._notify(_settle, opened, None)
        try:
            self._play_loop()
        except BaseException as exc:
            log.exception("%s failed", type(self).__name__)
            self._failure = exc
            self.failures += 1
            self._busy_since = None
            with self._cond:
                self._queue.clear()
                self._active = False
        finally:
            try:
                self._device_close()
            finally:
                self._notify()

    def _interrupted(self) -> bool:
        return self._generation != self._taken_generation or self._closing

    def _pause(self, seconds: float) -> bool:
        """Sleep on the player thread; True (at once) if a flush or close cut the sleep short."""
        with self._cond:
            return self._cond.wait_for(self._interrupted, max(0.0, seconds))

    def _idle_grace(self, deadline: float) -> bool:
        """True if more audio arrived within the grace period after the queue ran dry.

        A reply arrives in network-sized pieces; a gap between two of them is not the end of
        playback. Stopping the device at every gap makes it underrun and refill its buffer each
        time, which adds tens of milliseconds of latency per gap.
        """
        if self.idle_grace_s <= 0:
            return False
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._queue) or self._closing or self._interrupted(),
                self.idle_grace_s,
            )
            return bool(self._queue) and not self._closing

    def _play_loop(self) -> None:
        deadline = 0.0
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._active:
                    self._cond.wait()
                if self._closing:
                    return
                chunk = bytes(self._queue[: self.buffer_bytes])
                del self._queue[: self.buffer_bytes]
                self._taken_generation = self._generation
                if chunk:
                    self._active = True
            if not chunk and self._idle_grace(deadline):
                continue
            if not chunk:
                self._busy_since = time.monotonic()
                self._device_idle()
                self._busy_since = None
                with self._cond:
                    self._active = bool(self._queue)
                self._notify()
                continue
            self._busy_since = time.monotonic()
            self._device_play(chunk)
            self._busy_since = None
            delay = self._device_delay_s()
            if delay is not None:
                # Marked before it is counted, so a reader never sees bytes without a mark.
                self._marking = True
                started, self._started = self._started, False
                now = time.monotonic()
                self._marks.append(
                    RenderMark(
                        self._played_bytes + len(chunk), now + delay, start=started, handed_at=now
                    )
                )
            self._played_bytes += len(chunk)
            self._last_played_at = time.monotonic()
            pace = self._pace_s(len(chunk))
            if pace:
                # Keep an absolute schedule so waking up late does not stretch the audio.
                deadline = max(deadline, time.monotonic()) + pace
                self._pause(deadline - time.monotonic())
            self._notify()
            with self._cond:
                flushed = self._generation != self._taken_generation
            if flushed:
                self._device_discard()
                if self._marking:
                    self._marks.append(RenderMark(self._played_bytes, time.monotonic(), cut=True))
                deadline = 0.0
                with self._cond:
                    self._active = bool(self._queue)
                self._notify()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
