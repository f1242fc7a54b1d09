"""One Gemini Live conversation, kept alive across connections.

Everything the device sends goes through one outbox, drained by one send task per connection,
so audio, tool answers and activity markers never interleave on the websocket. Audio captured
before a connection is up waits in the outbox and goes out in order once setup completes.

A conversation outlives its connections (see `device.live.link` for one connection). When a
connection drops, closes with 1011 or is switched after a GoAway, the conversation reconnects
with the newest resumption handle, with exponential backoff and jitter, re-sends exactly what
the server had not consumed (`device.live.outbox`), and carries on: same context, same tool
calls (`device.live.calls`), no wake word. Fatal closes (1007, 1008, refused credentials) end
it with an error; an endpoint that cannot be reached ends it as offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from google.genai import types

from device.audio.sink import AudioSink
from device.events import (
    ErrorRaised,
    EventBus,
    Interrupted,
    SessionEnded,
    SessionStarted,
    Speaking,
    Transcript,
)
from device.live.backoff import Backoff
from device.live.calls import ToolCalls, ToolRunner
from device.live.cues import CuePlayed, CuePlayer
from device.live.failures import FATAL_CLOSE_CODES, Failure, classify
from device.live.limits import SessionLimits
from device.live.link import Link, LinkEnd
from device.live.local_tools import END_SESSION
from device.live.models import caps_for
from device.live.outbox import Outbox, Outgoing, ReplayLedger
from device.live.player import ReplyPlayer
from device.live.policy import SessionPolicy
from device.live.protocols import Connector, LiveSessionLike, Outcome, ResumableConnector
from device.live.tool_modes import scheduling
from device.tools import results

__all__ = [
    "FATAL_CLOSE_CODES",
    "Connector",
    "Conversation",
    "LiveSessionLike",
    "Outcome",
    "Outgoing",
    "ResumableConnector",
    "ToolRunner",
]

log = logging.getLogger(__name__)

# At the end, how long received reply audio may take to reach the speaker's queue.
_HAND_OVER_S = 30.0


class Conversation:
    """Runs one conversation until it ends; `run()` returns the reason it ended."""

    def __init__(
        self,
        *,
        session_id: str,
        model: str,
        connect: Connector,
        speaker: AudioSink,
        tools: ToolRunner,
        bus: EventBus,
        idle_timeout_s: float,
        connect_timeout_s: float = 10.0,
        policy: SessionPolicy | None = None,
    ) -> None:
        resumable = connect if isinstance(connect, ResumableConnector) else None
        self.session_id = session_id
        self._bus = bus
        self.policy = policy or (resumable.policy if resumable else SessionPolicy())
        self.outbox = Outbox(max_audio_bytes=self.policy.replay_audio_bytes)
        self.ledger = ReplayLedger(max_audio_bytes=self.policy.replay_audio_bytes)
        self.calls = ToolCalls(
            tools=tools,
            session_id=session_id,
            bus=bus,
            timeout_s=self.policy.tool_timeout_s,
            deliver=self._deliver_answer,
            local={END_SESSION: self._end_session_tool},
            changed=self._wake_link,
            schedule=functools.partial(scheduling, caps_for(model)),
        )
        self._model = model
        self._connect = connect
        self._resumable = resumable
        self._cues = resumable.cues if resumable else CuePlayer()
        self._speaker = speaker
        # The receive loop hands reply audio here and never waits for the speaker.
        self.player = ReplyPlayer(speaker, on_bug=self._playback_bug)
        self._connect_timeout_s = connect_timeout_s
        self._limits = SessionLimits(self.policy, idle_timeout_s)
        self._hangup: asyncio.Future[str] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._links = 0
        self._link: Link | None = None
        self._user_text: list[str] = []
        self._model_text: list[str] = []
        self.connected = asyncio.Event()
        self.model_speaking = False
        self._voice_on = False  # Speaking(started=True) was published and not yet ended
        self._cutting_reply = False
        self._reply_streaming = False  # the service is still sending the current reply

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def resumption_handle(self) -> str | None:
        return self.ledger.handle

    @property
    def connections(self) -> int:
        return self._links

    @property
    def reply_streaming(self) -> bool:
        """Reply audio is arriving (from its first piece until turnComplete or interrupted)."""
        return self._reply_streaming

    # -- called by the appliance (never blocks) -------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        self.outbox.put(Outgoing("audio", pcm))

    def send_video(self, jpeg: bytes) -> None:
        self.outbox.put(Outgoing("video", jpeg))

    def mark(self, kind: str) -> None:
        """Queue an activity marker: activity_start, activity_end or audio_stream_end."""
        self.touch()
        self.outbox.put(Outgoing(kind))

    def touch(self) -> None:
        """Something happened that should keep the session from idling out."""
        self._limits.touch()

    def interrupt(self, source: str) -> None:
        """Stop the reply now (a button press while the device speaks)."""
        if source == "server" and self._cutting_reply:
            # The service confirms a barge-in the device already acted on.
            self._cutting_reply = False
            return
        # Audio of the cut-off reply still in flight must not play: drop it until the service
        # says the reply is over (interrupted or turnComplete).
        self._cutting_reply = source != "server" and self._reply_streaming
        dropped = self.player.flush()
        self._voice_ended()
        self.model_speaking = False
        self._flush_transcript("model")
        self._bus.publish(Interrupted(session_id=self.session_id, source=source))
        log.info("reply interrupted by %s, %d bytes dropped", source, dropped)

    def hang_up(self, reason: str) -> None:
        if self._hangup is not None and not self._hangup.done():
            self._hangup.set_result(reason)

    async def play_cue(self, name: str) -> bool:
        """Say a pre-rendered cue (offline, error, denied); never raises."""
        played = await self._cues.play(name, self._speaker)
        self._bus.publish(CuePlayed(name=name, played=played))
        return played

    async def probe(self) -> bool | None:
        """Is the Live endpoint reachable? None when the connector cannot tell."""
        if self._resumable is None:
            return None
        try:
            return await self._resumable.probe()
        except Exception as exc:
            log.warning("reachability probe failed: %s", exc)
            return False

    # -- the conversation -----------------------------------------------------------------

    async def run(self) -> Outcome:
        self._hangup = asyncio.get_running_loop().create_future()
        self._limits.start()
        outcome = Outcome("cancelled")
        try:
            outcome = await self._connections()
        finally:
            for task in [*self.calls.stop(), *self._background]:
                task.cancel()
            # Reply audio already received is the worker's: it goes to the speaker, which
            # the appliance drains.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HAND_OVER_S):
                    await self.player.handed_over()
            await self.player.close()
            self._flush_transcript("user")
            self._flush_transcript("model")
            if outcome.error:
                self._error(outcome.reason, fatal=outcome.fatal)
            self._bus.publish(SessionEnded(session_id=self.session_id, reason=outcome.reason))
        return outcome

    async def _connections(self) -> Outcome:
        assert self._hangup is not None
        policy = self.policy
        backoff = Backoff(policy.reconnect_base_s, policy.reconnect_cap_s)
        down_since: float | None = None
        while True:
            if self._hangup.done():
                return Outcome(self._hangup.result())
            try:
                end, lived_s = await self._serve(self.ledger.handle if self._links else None)
            except Exception as exc:
                failure = classify(exc)
            else:
                if end.kind == "done":
                    return Outcome(end.reason)
                if lived_s >= policy.reconnect_cap_s:
                    # A link that held for a while proves the way back works: start afresh.
                    # One that drops at once keeps the backoff growing and the budget running.
                    backoff.reset()
                    down_since = None
                if end.kind == "switch":
                    continue
                failure = end.failure or Failure("retry", end.reason)
            if failure.kind == "closed":
                return Outcome(failure.reason)
            if failure.kind == "fatal":
                return Outcome(failure.reason, error=True, fatal=True, denied=failure.denied)
            if failure.kind == "offline" and not self._links:
                return Outcome(f"offline: {failure.reason}", error=True, offline=True)
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since >= policy.reconnect_max_s:
                return Outcome(
                    f"gave up reconnecting after {now - down_since:.0f} s: {failure.reason}",
                    error=True,
                    offline=failure.kind == "offline",
                )
            delay = backoff.next_delay()
            log.warning("live link lost (%s); reconnecting in %.2f s", failure.reason, delay)
            self._bus.publish(ErrorRaised(where="live.link", message=failure.reason))
            await asyncio.wait({self._hangup}, timeout=delay)

    async def _serve(self, handle: str | None) -> tuple[LinkEnd, float]:
        """One connection, from connecting to its end; also how long it was up."""
        resumable = self._resumable
        resumed = handle is not None and resumable is not None
        opener = resumable.resume(handle) if resumed and resumable and handle else self._connect()
        assert self._hangup is not None
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self._connect_timeout_s):
                session = await stack.enter_async_context(opener)
            link = self._begin_link(session, resumed=resumed)
            up = time.monotonic()
            self.outbox.link_up = True
            try:
                end = await link.run(self._hangup)
            finally:
                self.outbox.link_up = False
            self._link = None
            # Nothing is flushed here: audio already received keeps playing across the seam,
            # and the resumed session goes on where this one stopped.
            return end, time.monotonic() - up

    def _begin_link(self, session: LiveSessionLike, *, resumed: bool) -> Link:
        self._links += 1
        if self._links > 1 and not resumed:
            log.warning(
                "no resumption handle to resume with: the conversation goes on in a new "
                "session, without the model's memory of it"
            )
            # A fresh session knows nothing of earlier calls: never answer them there.
            self.calls.new_generation()
            self.outbox.drop(kind="tool_response")
        replay = self.ledger.connection_started(resumed=resumed)
        for item in replay:
            if item.call_id is not None:
                self.calls.requeued(item.call_id)
        self.outbox.put_front(replay)
        self._cutting_reply = self._reply_streaming = False
        link = self._link = Link(self, session, self._links)
        self.connected.set()
        self.touch()
        log.info(
            "live connection %d up (%s, %d messages to re-send)",
            self._links,
            "resumed" if resumed else "new session",
            len(replay),
        )
        self._bus.publish(
            SessionStarted(
                session_id=self.session_id, model=self._model, resumed=self._links > 1 and resumed
            )
        )
        return link

    # -- what the link asks ---------------------------------------------------------------

    def end_reason(self, now: float, quiet: bool) -> str | None:
        """Why the conversation should end now, if it should (idle, end_session, max age)."""
        busy = self.model_speaking or self.player.playing or self.calls.busy or not quiet
        return self._limits.reason(now, busy=busy, quiet=quiet)

    def next_deadline(self, now: float) -> float:
        return self._limits.next_deadline()

    async def on_message(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        if content is not None:
            await self._handle_content(content)
        if message.tool_call is not None:
            self._flush_transcript("user")
            self.touch()
            for call in message.tool_call.function_calls or []:
                self.calls.on_call(call, self._links)
        if message.tool_call_cancellation is not None:
            ids = [str(i) for i in message.tool_call_cancellation.ids or []]
            self.calls.cancel(ids)
            self.outbox.drop(call_ids=set(ids))
            self.ledger.forget_answers(set(ids))

    async def _handle_content(self, content: types.LiveServerContent) -> None:
        if content.input_transcription is not None and content.input_transcription.text:
            self.touch()
            self._user_text.append(content.input_transcription.text)
        if content.interrupted:
            self.interrupt("server")
            self._reply_streaming = False
        # One event can carry several parts (audio and text); handle every one of them.
        if content.model_turn is not None:
            for part in content.model_turn.parts or []:
                blob = part.inline_data
                self._reply_streaming = True
                if self._cutting_reply:
                    continue
                if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/"):
                    on_speaker = None
                    if not self.model_speaking:
                        self._flush_transcript("user")
                        self.model_speaking = True
                        on_speaker = self._voice_starts()
                    self.touch()
                    self.player.put(blob.data, on_speaker=on_speaker)
        text = content.output_transcription.text if content.output_transcription else None
        # Words of a reply the worker cut off were never heard: keep them out of the transcript.
        if text and not self._cutting_reply:
            self._model_text.append(text)
        if content.turn_complete:
            self._cutting_reply = self._reply_streaming = False
            if self.model_speaking:
                self._watch_playback_end()
            self.model_speaking = False
            self.touch()
            self._flush_transcript("user")
            self._flush_transcript("model")

    # -- tools ----------------------------------------------------------------------------

    def _deliver_answer(self, answer: types.FunctionResponse) -> None:
        self.touch()
        self.outbox.put(Outgoing("tool_response", answer))

    def _end_session_tool(self, args: dict[str, Any]) -> dict[str, Any]:
        reason = str(args.get("reason") or "").strip()
        self._end_when_quiet("ended by the worker" + (f" ({reason})" if reason else ""))
        return results.ok(
            "Goodbye.",
            detail="The device closes the session when you finish this reply; say goodbye.",
        )

    def _end_when_quiet(self, reason: str) -> None:
        if self._limits.end_when_quiet(reason):
            self._wake_link()

    def _wake_link(self) -> None:
        if self._link is not None:
            self._link.wake.set()

    # -- helpers --------------------------------------------------------------------------

    def _watch_playback_end(self) -> None:
        """Publish the end of speech when the speaker has played the whole reply."""

        async def wait() -> None:
            await self.player.drain()
            if not self.model_speaking:
                self._voice_ended()

        task = asyncio.create_task(wait(), name="playback-end")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _voice_starts(self) -> Callable[[], None]:
        """Publish `Speaking` when the reply's first piece reaches the speaker, stamped with
        when it arrived off the wire (the metrics time wire to speaker from it)."""
        arrived = time.monotonic()

        def started() -> None:
            self._voice_on = True
            self._bus.publish(Speaking(started=True, mono=arrived))

        return started

    def _voice_ended(self) -> None:
        # A reply flushed before any of it reached the speaker was never heard: no event.
        if self._voice_on:
            self._voice_on = False
            self._bus.publish(Speaking(started=False))

    def _flush_transcript(self, role: str) -> None:
        parts = self._user_text if role == "user" else self._model_text
        text = "".join(parts).strip()
        parts.clear()
        if text:
            self._bus.publish(Transcript(session_id=self.session_id, role=role, text=text))

    def _playback_bug(self, exc: Exception) -> None:
        # Reported as the speaker's, like the appliance's drain failure: metrics would count
        # any "live..." error as a dropped Live connection, which this is not.
        message = f"reply playback failed: {type(exc).__name__}: {exc}"
        self._bus.publish(ErrorRaised(where="speaker", message=message))

    def _error(self, message: str, *, fatal: bool) -> None:
        log.warning("live session %s: %s", self.session_id, message)
        self._bus.publish(ErrorRaised(where="live", message=message, fatal=fatal))
