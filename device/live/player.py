"""Reply audio between the receive loop and the speaker.

The service streams a reply faster than it plays, so the speaker's queue fills and its `write`
waits. The receive loop must never wait with it (an `interrupted`, a tool call or a GoAway
would sit behind seconds of audio), so it hands each piece to `ReplyPlayer.put`, which returns
at once; one task feeds the speaker in order. The player outlives connections: audio received
before a drop keeps playing while the link reconnects, and the next connection's audio follows
it. Only `flush` (the service's `interrupted`, a barge-in, the button) throws audio away.

A speaker's device failure (`AudioError`) only drops the audio: the supervisor's speaker probe
reports it and reopens the device. Any other exception from `write` is a bug in the daemon's
own code: it also goes to `on_bug` (once until a write succeeds again), so it is reported, not
just logged as a playback hiccup.

`put(..., on_speaker=...)` runs the callback just before that piece is handed to the speaker:
the moment the device's voice really starts (a flushed piece never runs it). Whoever times the
first audio heard (the metrics) then finds the piece queued in the speaker, not still on its way.

A connection may end inside a sample (a drop at any byte); the odd byte waits for the rest of
its sample from the next connection, so the speaker always gets whole samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from device.audio import SAMPLE_WIDTH
from device.audio.errors import AudioError
from device.audio.sink import AudioSink

log = logging.getLogger(__name__)


class ReplyPlayer:
    def __init__(
        self, speaker: AudioSink, on_bug: Callable[[Exception], None] | None = None
    ) -> None:
        self._speaker = speaker
        self._on_bug = on_bug
        self._bug_reported = False
        self._pieces: deque[tuple[bytes, Callable[[], None] | None]] = deque()
        self._on_speaker: Callable[[], None] | None = None  # for the next whole piece
        self._queued = 0
        self._partial = b""  # the first byte of a sample whose second byte has not come
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.received_bytes = 0

    @property
    def queued_bytes(self) -> int:
        """Received and not yet handed to the speaker."""
        return self._queued

    @property
    def playing(self) -> bool:
        return bool(self._queued) or not self._idle.is_set() or self._speaker.playing

    def put(self, pcm: bytes, *, on_speaker: Callable[[], None] | None = None) -> None:
        """Queue reply audio; never waits. `on_speaker` runs right before the piece goes to the
        speaker (the speaker's queue then holds, in order, all it will play before it)."""
        self.received_bytes += len(pcm)
        self._arrived.set()
        if on_speaker is not None:
            self._on_speaker = on_speaker
        pcm = self._partial + pcm
        whole = len(pcm) - len(pcm) % SAMPLE_WIDTH
        self._partial = pcm[whole:]
        if not whole:
            return
        self._pieces.append((pcm[:whole], self._on_speaker))
        self._on_speaker = None
        self._queued += whole
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._feed(), name="reply-player")

    def flush(self) -> int:
        """Drop everything not yet played, here and in the speaker; bytes dropped."""
        task, self._task = self._task, None
        if task is not None:
            # It may be waiting in speaker.write for room; cancelled there, its piece never
            # reaches the speaker after the speaker's flush below.
            task.cancel()
        dropped = self._queued + len(self._partial)
        self._pieces.clear()
        self._on_speaker = None
        self._queued = 0
        self._partial = b""
        self._idle.set()
        return dropped + self._speaker.flush()

    async def wait_received(self, nbytes: int) -> None:
        """Until `received_bytes` reaches `nbytes` (tests: the device has what was sent)."""
        while self.received_bytes < nbytes:
            self._arrived.clear()
            await self._arrived.wait()

    async def handed_over(self) -> None:
        """Until every received piece is in the speaker's queue (not necessarily played)."""
        await self._idle.wait()

    async def drain(self) -> None:
        """Until everything received has been played (or flushed)."""
        await self._idle.wait()
        await self._speaker.drain()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _feed(self) -> None:
        try:
            while self._pieces:
                piece, on_speaker = self._pieces[0]
                if on_speaker is not None:
                    # Run once: a write cancelled by a flush drops the piece with its callback.
                    self._pieces[0] = (piece, None)
                    on_speaker()
                await self._speaker.write(piece)
                self._bug_reported = False
                self._pieces.popleft()
                self._queued -= len(piece)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A failing speaker must not take the conversation down; i13's recovery reopens it.
            log.warning("reply playback failed (%s): %d bytes dropped", exc, self._queued)
            if not isinstance(exc, AudioError) and not self._bug_reported:
                self._bug_reported = True
                log.error("reply playback hit a bug", exc_info=exc)
                if self._on_bug is not None:
                    self._on_bug(exc)
            self._pieces.clear()
            self._queued = 0
        finally:
            if not self._pieces:
                self._idle.set()
