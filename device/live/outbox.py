"""What the device sends, in order: one queue across connections, and the ledger of what the
server has not consumed yet.

`Outbox` holds messages not yet sent. It outlives connections: audio captured while the device
reconnects waits here (the oldest is dropped past a limit, since stale speech is worse than a
gap), and messages to re-send are put back at its front.

`ReplayLedger` numbers the messages sent on each connection as the server does (the setup is
message 0, then one per send call) and keeps those the server has not reported consumed
(`sessionResumptionUpdate.lastConsumedClientMessageIndex`). After a reconnect with the newest
handle, exactly those are sent again. A server that reports no index gets the documented
fallback: an update means everything sent before it was consumed, so does model output for the
tool answers sent before it (the model went on after them, DESIGN §3), and after a reconnect
only tool answers sent since and not yet followed by output are sent again (stale partial audio
would be worse than none). A reconnect without any handle starts a fresh session: only what
was said since the last turnComplete goes again, so a question cut off by the drop is still
heard.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


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

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> None:
        self._items.append(item)
        self._account(item, +1)
        self._trim()
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
        while self._audio_bytes > self._max_audio:
            oldest = next(i for i in self._items if i.kind == "audio")
            self._items.remove(oldest)
            self._audio_bytes -= len(oldest.payload)
        if self.link_up:
            return
        frames = [i for i in self._items if i.kind == "video"]
        for stale in frames[: max(0, len(frames) - self._max_video)]:
            self._items.remove(stale)


@dataclass(frozen=True)
class _Sent:
    index: int
    item: Outgoing


class ReplayLedger:
    def __init__(self, *, max_audio_bytes: int) -> None:
        self.handle: str | None = None
        self.updates = 0  # resumption updates received, across connections
        self.indexed: bool | None = None  # does the server report consumed indices?
        self._max_audio = max_audio_bytes
        self._unconsumed: deque[_Sent] = deque()
        self._audio_bytes = 0
        self._next_index = 1
        self._turn_end_index = 0  # the last message sent before the latest turnComplete

    def connection_started(self, *, resumed: bool) -> list[Outgoing]:
        """Start numbering a new connection; returns the messages to send first on it.

        A fresh session (no handle) knows nothing of earlier tool calls, so their answers are
        dropped; what the worker said since the last turnComplete is kept, so a question cut
        off by the drop is still heard.
        """
        fresh = [
            s.item
            for s in self._unconsumed
            if s.index > self._turn_end_index and s.item.kind != "tool_response"
        ]
        items = [sent.item for sent in self._unconsumed]
        self._unconsumed.clear()
        self._audio_bytes = 0
        self._next_index = 1
        self._turn_end_index = 0
        if not resumed:
            return fresh
        if self.indexed is False:
            return [i for i in items if i.kind == "tool_response"]
        return items

    def sent(self, item: Outgoing) -> int:
        """Record a message that left on the current connection; returns its index."""
        index = self._next_index
        self._next_index += 1
        self._unconsumed.append(_Sent(index, item))
        if item.kind == "audio":
            self._audio_bytes += len(item.payload)
            self._trim()
        return index

    def turn_complete(self) -> None:
        """The server finished a turn: what was sent before it belongs to that turn."""
        self._turn_end_index = self._next_index - 1

    def update(self, handle: str, consumed_index: int | None) -> None:
        self.handle = handle
        self.updates += 1
        if consumed_index is None:
            self.indexed = False
            self._unconsumed.clear()
            self._audio_bytes = 0
            return
        self.indexed = True
        while self._unconsumed and self._unconsumed[0].index <= consumed_index:
            self._drop_audio(self._unconsumed.popleft())

    def output_seen(self) -> None:
        """The model produced output: without a consumed index, the tool answers sent before
        it count as consumed (the model went on after them) and are never sent again."""
        if self.indexed is True:
            return
        self._unconsumed = deque(s for s in self._unconsumed if s.item.kind != "tool_response")

    def forget_answers(self, call_ids: set[str]) -> None:
        """Cancelled calls: their answers must never be sent again."""
        self._unconsumed = deque(s for s in self._unconsumed if s.item.call_id not in call_ids)

    def unconsumed_answers(self) -> set[str]:
        return {s.item.call_id for s in self._unconsumed if s.item.call_id is not None}

    def _drop_audio(self, sent: _Sent) -> None:
        if sent.item.kind == "audio":
            self._audio_bytes -= len(sent.item.payload)

    def _trim(self) -> None:
        while self._audio_bytes > self._max_audio:
            oldest = next(s for s in self._unconsumed if s.item.kind == "audio")
            self._unconsumed.remove(oldest)
            self._drop_audio(oldest)
