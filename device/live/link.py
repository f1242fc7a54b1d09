"""One connection of a conversation: its send task, its receive task and its watch.

A link ends in one of three ways (`LinkEnd.kind`):

- `done`: the conversation is over (hang-up, idle, end_session, maximum length, a 1000 close);
- `switch`: leave this connection on purpose and resume on a new one at once. A GoAway
  switches at the next turn boundary (no reply streaming, no tool running or waiting to be
  answered, and the resumption handle that follows turnComplete received or `handle_wait_s`
  passed). Its hard deadline (`timeLeft - goaway_margin_s`) fires on the clock, with no
  server message needed: between replies it switches at once; mid-reply it stops sending
  (the outbox keeps what waits for the next connection) and lets the reply arrive until it
  ends or the service closes the link, since frames already on their way would otherwise be
  lost. A model silent for `stall_timeout_s` after a
  tool answer also switches: the resumed connection re-sends the answer if the server never
  consumed it, and otherwise restarts the stuck reply;
- `lost`: the connection failed; `failure` says whether to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from google.genai import errors, types

from device.events import WireSent
from device.live.failures import Failure, classify, parse_time_left
from device.live.outbox import Outgoing

if TYPE_CHECKING:
    from device.live.protocols import LiveSessionLike
    from device.live.session import Conversation

log = logging.getLogger(__name__)

AUDIO_MIME = "audio/pcm;rate=16000"
# One audio chunk in this many is reported as WireSent (about once a second at 20 ms chunks).
WIRE_AUDIO_SAMPLE = 50
# A frame in flight when its link is torn down gets this long to leave, so the ledger knows
# whether it went.
_IN_FLIGHT_S = 1.0
# A service that said it would close but has not, this long after: leave anyway.
_CLOSE_GRACE_S = 1.0


@dataclass(frozen=True)
class LinkEnd:
    kind: Literal["done", "switch", "lost"]
    reason: str
    failure: Failure | None = None


class Link:
    def __init__(self, owner: Conversation, session: LiveSessionLike, number: int) -> None:
        self.owner = owner
        self.session = session
        self.number = number
        # The service is answering: from the first sign of a reply until turnComplete.
        self.responding = False
        self.turn_done_at: float | None = None
        self._updates_at_turn_done = owner.ledger.updates
        self.goaway_deadline: float | None = None
        # When the service said it would close this connection (GoAway's timeLeft).
        self.goaway_closes_at: float | None = None
        # Past the GoAway deadline mid-reply: nothing more is sent on this connection.
        self.holding = False
        self.switch_reason: str | None = None
        # When the last tool answer left with no model output since (the stall watch).
        self.answered_at: float | None = None
        self.wake = asyncio.Event()
        self._audio_sent = 0

    async def run(self, hangup: asyncio.Future[str]) -> LinkEnd:
        tasks: list[asyncio.Task[LinkEnd]] = [
            asyncio.create_task(self._send_loop(), name=f"live-send-{self.number}"),
            asyncio.create_task(self._receive_loop(), name=f"live-receive-{self.number}"),
            asyncio.create_task(self._watch(), name=f"live-watch-{self.number}"),
        ]
        try:
            waits: set[asyncio.Future[Any]] = {*tasks, hangup}
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if hangup in done:
            return LinkEnd("done", hangup.result())
        finished = next(task for task in tasks if task in done)
        return finished.result()

    # -- sending --------------------------------------------------------------------------

    async def _send_loop(self) -> LinkEnd:
        outbox = self.owner.outbox
        while True:
            item = await outbox.get()
            if self.holding:
                # It goes first on the next connection.
                outbox.put_front([item])
                await asyncio.Future()
            frame = asyncio.ensure_future(self._transmit(item))
            try:
                await asyncio.shield(frame)
            except asyncio.CancelledError:
                await asyncio.wait({frame}, timeout=_IN_FLIGHT_S)
                self._settle(frame, item)
                raise
            except Exception as exc:
                self._settle(frame, item)
                return LinkEnd("lost", str(exc), classify(exc))
            self._settle(frame, item)

    def _settle(self, frame: asyncio.Future[None], item: Outgoing) -> None:
        if not frame.done() or frame.cancelled() or frame.exception() is not None:
            # It never left: it goes first on the next connection.
            self.owner.ledger.not_sent()
            self.owner.outbox.put_front([item])
            return
        self.owner.ledger.sent(item)
        if item.call_id is not None:
            self.owner.calls.sent(item.call_id, self.number)
        self._audio_sent += item.kind == "audio"
        if item.kind != "audio" or self._audio_sent % WIRE_AUDIO_SAMPLE == 1:
            waited_ms = 1000 * (time.monotonic() - item.queued)
            self.owner.bus.publish(
                WireSent(session_id=self.owner.session_id, what=item.kind, waited_ms=waited_ms)
            )

    async def _transmit(self, item: Outgoing) -> None:
        session = self.session
        # Here, not before the task starts: what was read before this was made without it.
        self.owner.ledger.sending()
        if item.call_id is not None:
            # The model may answer from now on, even before this send returns (on a loaded
            # device the receiver runs first): its reply must find the stall watch started.
            self.answered_at = time.monotonic()
            self.wake.set()
        if item.kind == "audio":
            await session.send_realtime_input(
                audio=types.Blob(data=item.payload, mime_type=AUDIO_MIME)
            )
        elif item.kind == "video":
            await session.send_realtime_input(
                video=types.Blob(data=item.payload, mime_type="image/jpeg")
            )
        elif item.kind == "activity_start":
            await session.send_realtime_input(activity_start=types.ActivityStart())
        elif item.kind == "activity_end":
            await session.send_realtime_input(activity_end=types.ActivityEnd())
        elif item.kind == "audio_stream_end":
            await session.send_realtime_input(audio_stream_end=True)
        elif item.kind == "tool_response":
            await session.send_tool_response(function_responses=[item.payload])

    # -- receiving ------------------------------------------------------------------------

    async def _receive_loop(self) -> LinkEnd:
        while True:
            try:
                async for message in _parsed(self.session.receive()):
                    self._observe(message)
                    await self.owner.on_message(message)
                    self.wake.set()
            except errors.APIError as exc:
                failure = classify(exc)
                if failure.kind == "closed":
                    return LinkEnd("done", failure.reason, failure)
                return LinkEnd("lost", failure.reason, failure)
            except _UnparsedFrame:
                # google-genai raises TypeError on a frame made only of keys it does not
                # know (DESIGN §3); such a frame carries nothing for us, so keep listening.
                log.warning("ignored a server frame the SDK could not parse")

    def _observe(self, message: types.LiveServerMessage) -> None:
        now = time.monotonic()
        content = message.server_content
        if content is not None:
            if (
                content.model_turn is not None
                or content.output_transcription is not None
                or content.input_transcription is not None
                or content.interrupted
            ):
                self.responding = True
                self.answered_at = None
            if (
                content.model_turn is not None
                or content.output_transcription is not None
                or content.turn_complete
            ):
                self.owner.ledger.output_seen()
            if content.turn_complete:
                self.responding = False
                self.answered_at = None
                self.turn_done_at = now
                self._updates_at_turn_done = self.owner.ledger.updates
                self.owner.ledger.turn_complete()
        if message.tool_call is not None:
            self.responding = True
            self.answered_at = None
            self.owner.ledger.output_seen()
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self.owner.ledger.update(update.new_handle, update.last_consumed_client_message_index)
        if message.go_away is not None:
            left = parse_time_left(message.go_away.time_left)
            deadline = now + max(0.0, left - self.owner.policy.goaway_margin_s)
            if self.goaway_deadline is None or deadline < self.goaway_deadline:
                self.goaway_deadline = deadline
                self.goaway_closes_at = now + left
            self.switch_reason = self.switch_reason or f"goAway ({left:g} s left)"
            log.info("goAway with %g s left: resuming at the next turn boundary", left)

    # -- the watch ------------------------------------------------------------------------

    def quiet(self) -> bool:
        """A turn boundary: nothing streaming, no tool running, no answer waiting to leave."""
        calls = self.owner.calls
        outbox = self.owner.outbox
        return (
            not self.responding
            and not calls.busy
            and not outbox.pending_answers()
            # The worker's turn has not been fully sent: not idle, and no place to switch.
            and not outbox.markers_waiting()
        )

    def _handle_settled(self, now: float) -> bool:
        if self.turn_done_at is None or self.owner.ledger.updates > self._updates_at_turn_done:
            return True
        return now - self.turn_done_at >= self.owner.policy.handle_wait_s

    async def _watch(self) -> LinkEnd:
        policy = self.owner.policy
        while True:
            now = time.monotonic()
            quiet = self.quiet()
            reason = self.owner.end_reason(now, quiet)
            if reason is not None:
                return LinkEnd("done", reason)
            if self.goaway_deadline is not None and now >= self.goaway_deadline:
                # Only reply audio on its way is worth waiting for; a silent model is not.
                if not self.owner.reply_streaming or self._past_close(now):
                    return self._switch("the goAway deadline came before a turn boundary")
                if not self.holding:
                    # Leaving now would lose the reply frames already on their way: stop
                    # sending (what waits goes on the next connection) and let the reply
                    # arrive until it ends or the service closes this connection.
                    log.info("goAway deadline mid-reply: holding input until the reply is in")
                    self.holding = True
            if self.switch_reason is not None and quiet and self._handle_settled(now):
                return self._switch(self.switch_reason)
            if (
                self.answered_at is not None
                and not self.owner.calls.busy
                and now - self.answered_at >= policy.stall_timeout_s
            ):
                return self._switch(f"no reply {policy.stall_timeout_s:g} s after a tool answer")
            self.wake.clear()
            # Not asyncio.wait_for: on 3.11 it swallows a cancellation that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_check(now)):
                    await self.wake.wait()

    def _past_close(self, now: float) -> bool:
        closes = self.goaway_closes_at
        return closes is not None and now >= closes + _CLOSE_GRACE_S

    def _next_check(self, now: float) -> float:
        policy = self.owner.policy
        due: list[float] = [now + 0.25, self.owner.next_deadline(now)]
        if self.goaway_deadline is not None:
            due.append(self.goaway_deadline)
        if self.holding and self.goaway_closes_at is not None:
            due.append(self.goaway_closes_at + _CLOSE_GRACE_S)
        if self.answered_at is not None:
            due.append(self.answered_at + policy.stall_timeout_s)
        if self.switch_reason is not None and self.turn_done_at is not None:
            due.append(self.turn_done_at + policy.handle_wait_s)
        return max(0.005, min(due) - now)

    def _switch(self, reason: str) -> LinkEnd:
        log.info("leaving connection %d: %s", self.number, reason)
        return LinkEnd("switch", reason)


class _UnparsedFrame(Exception):
    """The SDK's TypeError on an unknown frame, told apart from a TypeError in our own code."""


async def _parsed(
    messages: AsyncIterator[types.LiveServerMessage],
) -> AsyncIterator[types.LiveServerMessage]:
    """Only a TypeError raised while the SDK parses a frame means "unknown frame"; one from
    handling the message (the daemon's own bug) propagates as what it is."""
    while True:
        try:
            message = await anext(messages)
        except StopAsyncIteration:
            return
        except TypeError as exc:
            raise _UnparsedFrame(str(exc)) from exc
        yield message
