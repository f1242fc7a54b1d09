"""What the server may not have taken in yet: the messages to send again after a reconnect.

`ReplayLedger` numbers the messages sent on each connection as the server does (the setup is
message 0, then one per send call) and keeps, in a bounded buffer, those the newest resumption
handle may not hold. After a reconnect with that handle, they are sent again, in order:

- A server that reports `sessionResumptionUpdate.lastConsumedClientMessageIndex` gets exactly
  the messages after that index.
- A server that reports no index (the Gemini API, DESIGN §3) gets everything sent since the
  newest handle: the worker's words after it (a request cut by a goAway or a drop) are in no
  state the resumed session has, so without them it would hear half a question. Audio sent
  within `overlap_s` before the update arrived may have been on the wire while the service
  made the handle, so it is kept too (a repeat of silence is harmless; a gap in speech is
  not). Model output proves the model went on from what was sent before it (DESIGN §3): tool
  answers and input sent before it are never sent again, so a reply cut by a drop is not
  asked for a second time and the worker hears one answer.
- The server's answer to a message (an update, model output) can be read before the send of
  that message has returned (the receiver runs first on a loaded machine): a message on the
  wire when either is read counts as sent before it, and one an index covers is never kept.
- A reconnect without any handle starts a fresh session: only what was said since the last
  turnComplete goes again, so a question cut off by the drop is still heard.

Audio is bounded by bytes (oldest dropped first) and video to the newest frames, as in the
outbox: stale speech and stale pictures are worse than a gap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from device.live.outbox import Outgoing

# Without a consumed index: audio sent this long before a resumption update arrived is kept,
# as it may not have reached the service when the handle was made (about a round trip).
HANDLE_OVERLAP_S = 0.5


@dataclass(frozen=True)
class _Sent:
    index: int
    item: Outgoing
    at: float  # when it left (the ledger's clock)


class ReplayLedger:
    def __init__(
        self,
        *,
        max_audio_bytes: int,
        max_video_frames: int = 2,
        overlap_s: float = HANDLE_OVERLAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handle: str | None = None
        self.updates = 0  # resumption updates received, across connections
        self.indexed: bool | None = None  # does the server report consumed indices?
        self._max_audio = max_audio_bytes
        self._max_video = max_video_frames
        self._overlap_s = overlap_s
        self._clock = clock
        self._unconsumed: deque[_Sent] = deque()
        self._audio_bytes = 0
        self.dropped_audio_bytes = 0  # audio too old to keep for a replay, all told
        self._next_index = 1
        # The newest message of this connection that the newest handle holds: reported by an
        # index, or (without one) the message on the wire when the update was read.
        self._covered_index = 0
        self._in_flight = False  # a message is on the wire and its send has not returned
        self._turn_end_index = 0  # the last message sent before the latest turnComplete
        self._answered_index = 0  # the last message sent before the latest model output

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
        self._covered_index = self._turn_end_index = self._answered_index = 0
        self._in_flight = False
        return items if resumed else fresh

    def sending(self) -> None:
        """A message is going on the wire now; `sent` or `not_sent` follows when its send ends.

        The server's answer to it (an update, model output) can be read before the send
        returns (on a loaded machine the receiver runs first), and must count it as sent."""
        self._in_flight = True

    def not_sent(self) -> None:
        """The message on the wire never left whole: it goes again from the outbox."""
        self._in_flight = False

    def sent(self, item: Outgoing) -> int:
        """Record a message that left on the current connection; returns its index."""
        self._in_flight = False
        index = self._next_index
        self._next_index += 1
        if self._held(index, item):
            return index
        self._unconsumed.append(_Sent(index, item, self._clock()))
        if item.kind == "audio":
            self._audio_bytes += len(item.payload)
            self._trim_audio()
        elif item.kind == "video":
            self._trim_video()
        return index

    def turn_complete(self) -> None:
        """The server finished a turn: what was sent before it belongs to that turn."""
        self._turn_end_index = self._on_wire()

    def update(self, handle: str, consumed_index: int | None) -> None:
        self.handle = handle
        self.updates += 1
        if consumed_index is not None:
            self.indexed = True
            self._covered_index = max(self._covered_index, consumed_index)
            self._keep(lambda s: s.index > consumed_index)
            return
        # The handle holds what reached the service before it was made: everything but the
        # audio of the last round trip, which goes again after a resume if it comes to that.
        self.indexed = False
        self._covered_index = self._on_wire()
        since = self._clock() - self._overlap_s
        answered = self._answered_index
        self._keep(lambda s: s.item.kind == "audio" and s.at >= since and s.index > answered)

    def output_seen(self) -> None:
        """The model produced output: without a consumed index, what was sent before it counts
        as consumed (the model went on from it) and is never sent again, so neither a tool
        answer nor a request the model already answered is taken in twice. Until the first
        update says whether indices come, this is only noted: with an index, messages sent
        before the output may still have been on the wire, and the index says which."""
        if self.indexed is True:
            return
        self._answered_index = answered = self._on_wire()
        if self.indexed is False:
            self._keep(lambda s: s.index > answered)

    def forget_answers(self, call_ids: set[str]) -> None:
        """Cancelled calls: their answers must never be sent again."""
        self._keep(lambda s: s.item.call_id not in call_ids)

    def unconsumed_answers(self) -> set[str]:
        return {s.item.call_id for s in self._unconsumed if s.item.call_id is not None}

    def _on_wire(self) -> int:
        """The newest message that has gone on the wire, its send returned or not."""
        return self._next_index - 1 + self._in_flight

    def _held(self, index: int, item: Outgoing) -> bool:
        """Whether what was read while message `index` was on the wire already holds it."""
        if self.indexed is True:
            return index <= self._covered_index
        if self.indexed is False and index <= self._answered_index:
            return True  # model output read after it
        # An update without an index, but for audio: the overlap rule keeps the newest.
        return index <= self._covered_index and item.kind != "audio"

    def _keep(self, wanted: Callable[[_Sent], bool]) -> None:
        self._unconsumed = deque(s for s in self._unconsumed if wanted(s))
        self._audio_bytes = sum(len(s.item.payload) for s in self._unconsumed if _audio(s))

    def _trim_audio(self) -> None:
        while self._audio_bytes > self._max_audio:
            oldest = next(s for s in self._unconsumed if _audio(s))
            self._unconsumed.remove(oldest)
            self._audio_bytes -= len(oldest.item.payload)
            self.dropped_audio_bytes += len(oldest.item.payload)

    def _trim_video(self) -> None:
        frames = [s for s in self._unconsumed if s.item.kind == "video"]
        for stale in frames[: max(0, len(frames) - self._max_video)]:
            self._unconsumed.remove(stale)


def _audio(sent: _Sent) -> bool:
    return sent.item.kind == "audio"
