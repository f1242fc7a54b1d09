"""What the device sends, in order: one queue across connections.

`Outbox` holds messages not yet sent. It outlives connections: audio captured while the device
reconnects waits here (the oldest is dropped past a limit, since stale speech is worse than a
gap), and messages to re-send are put back at its front. What was sent but may not have been
taken in by the server is `device.live.ledger`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from device.live.policy import AUDIO_BYTES_PER_S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    kind: str  # audio | video | activity_start | activity_end | audio_stream_end | tool_response
    payload: Any = None
    queued: float = field(default_factory=time.monotonic)

    @property
    def call_id(self) -> str | None:
        return str(self.payload.id) if self.kind == "tool_response" else None


class Outbox:
    def __init__(self, *, max_audio_bytes: int, max_video_frames: int = 2) -> None:
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self._max_audio = max_audio_bytes
        # While the link is down frames pile up; only the newest say what the worker shows.
        self._max_video = max_video_frames
        self.link_up = False
        self._audio_bytes = 0
        self.dropped_audio_bytes = 0  # the oldest audio dropped past the limit, all told
        self._dropping = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        self._items.append(item)
        self._account(item, +1)
        self._trim()
        self._ready.set()

    def put_answer(self, item: Outgoing) -> None:
        """Queue a tool answer ahead of the mic audio and frames still waiting: the model is
        waiting on it, and a backlog of streamed input (a slow link, a loaded device) would
        otherwise hold it up for as long as that input takes to send. It keeps behind earlier
        answers and leading markers; markers keep their place around the audio they frame."""
        at = next(
            (n for n, queued in enumerate(self._items) if queued.kind in ("audio", "video")),
            len(self._items),
        )
        self._items.insert(at, item)
        self._ready.set()

    def put_front(self, items: Iterable[Outgoing]) -> None:
        for item in reversed(list(items)):
            self._items.appendleft(item)
            self._account(item, +1)
        self._trim()
        if self._items:
            self._ready.set()

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        self._account(item, -1)
        return item

    def markers_waiting(self) -> bool:
        """An activity marker (the end of what the worker said) has not left yet."""
        return any(i.kind not in ("audio", "video", "tool_response") for i in self._items)

    def pending_answers(self) -> set[str]:
        return {i.call_id for i in self._items if i.call_id is not None}

    def drop(self, *, call_ids: set[str] | None = None, kind: str | None = None) -> int:
        """Remove queued answers to `call_ids`, or every item of `kind`; how many went."""
        keep = deque(
            i
            for i in self._items
            if not (
                (call_ids is not None and i.call_id in call_ids)
                or (kind is not None and i.kind == kind)
            )
        )
        dropped = len(self._items) - len(keep)
        self._items = keep
        self._audio_bytes = sum(len(i.payload) for i in keep if i.kind == "audio")
        return dropped

    def _account(self, item: Outgoing, sign: int) -> None:
        if item.kind == "audio":
            self._audio_bytes += sign * len(item.payload)

    def _trim(self) -> None:
        dropping = self._audio_bytes > self._max_audio
        if dropping and not self._dropping:
            log.warning(
                "more than %.1f s of audio waits to be sent: dropping the oldest",
                self._max_audio / AUDIO_BYTES_PER_S,
            )
        self._dropping = dropping
        while self._audio_bytes > self._max_audio:
            oldest = next(i for i in self._items if i.kind == "audio")
            self._items.remove(oldest)
            self._audio_bytes -= len(oldest.payload)
            self.dropped_audio_bytes += len(oldest.payload)
        if self.link_up:
            return
        frames = [i for i in self._items if i.kind == "video"]
        for stale in frames[: max(0, len(frames) - self._max_video)]:
            self._items.remove(stale)
