"""One Gemini Live conversation, kept alive across connections.

Everything the device sends goes through one outbox (`device.live.outbox`), drained by one
send task per connection, so audio, tool answers and activity markers never interleave on the
websocket. Audio captured before a connection is up waits there and goes out in order once
setup completes.

A conversation outlives its connections: `device.live.connections` opens, resumes and
reconnects them, re-sending what the server may not have taken in (`device.live.ledger`);
`device.live.link` runs one of them. What the worker hears (reply audio, `Speaking`,
transcripts, interruptions) is `device.live.replies`'; tool calls are `device.live.calls`'.
This class ties them together and is what the appliance talks to.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from google.genai import types

from device.audio.sink import AudioSink
from device.events import ErrorRaised, EventBus, SessionEnded
from device.live.calls import ToolCalls, ToolRunner
from device.live.connections import Connections
from device.live.cues import CuePlayed, CuePlayer
from device.live.failures import FATAL_CLOSE_CODES
from device.live.ledger import ReplayLedger
from device.live.limits import SessionLimits
from device.live.local_tools import END_SESSION
from device.live.models import caps_for
from device.live.outbox import Outbox, Outgoing
from device.live.player import ReplyPlayer
from device.live.policy import SessionPolicy
from device.live.protocols import Connector, LiveSessionLike, Outcome, ResumableConnector
from device.live.replies import Replies
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
        self.model = model
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
        self.replies = Replies(session_id=session_id, bus=bus, speaker=speaker, touch=self.touch)
        self._links = Connections(self, connect, resumable, connect_timeout_s)
        self._resumable = resumable
        self._cues = resumable.cues if resumable else CuePlayer()
        self._speaker = speaker
        self._limits = SessionLimits(self.policy, idle_timeout_s)
        self._hangup: asyncio.Future[str] | None = None
        self.connected = asyncio.Event()

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def resumption_handle(self) -> str | None:
        return self.ledger.handle

    @property
    def connections(self) -> int:
        return self._links.count

    @property
    def player(self) -> ReplyPlayer:
        return self.replies.player

    @property
    def model_speaking(self) -> bool:
        return self.replies.model_speaking

    @property
    def reply_streaming(self) -> bool:
        """Reply audio is arriving (from its first piece until turnComplete or interrupted)."""
        return self.replies.streaming

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
        self.replies.interrupt(source)

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
            outcome = await self._links.run(self._hangup)
        finally:
            for task in self.calls.stop():
                task.cancel()
            await self.replies.finish()
            if outcome.error:
                self._error(outcome.reason, fatal=outcome.fatal)
            self._bus.publish(SessionEnded(session_id=self.session_id, reason=outcome.reason))
        return outcome

    # -- what the link asks ---------------------------------------------------------------

    def end_reason(self, now: float, quiet: bool) -> str | None:
        """Why the conversation should end now, if it should (idle, end_session, max age)."""
        busy = self.model_speaking or self.player.playing or self.calls.busy or not quiet
        return self._limits.reason(now, busy=busy, quiet=quiet)

    def next_deadline(self, now: float) -> float:
        return self._limits.next_deadline()

    async def on_message(self, message: types.LiveServerMessage) -> None:
        if message.server_content is not None:
            self.replies.on_content(message.server_content)
        if message.tool_call is not None:
            self.replies.flush_user_transcript()
            self.touch()
            for call in message.tool_call.function_calls or []:
                self.calls.on_call(call, self._links.count)
        if message.tool_call_cancellation is not None:
            ids = [str(i) for i in message.tool_call_cancellation.ids or []]
            self.calls.cancel(ids)
            self.outbox.drop(call_ids=set(ids))
            self.ledger.forget_answers(set(ids))

    # -- tools ----------------------------------------------------------------------------

    def _deliver_answer(self, answer: types.FunctionResponse) -> None:
        self.touch()
        self.outbox.put_answer(Outgoing("tool_response", answer))

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
        if self._links.link is not None:
            self._links.link.wake.set()

    def _error(self, message: str, *, fatal: bool) -> None:
        log.warning("live session %s: %s", self.session_id, message)
        self._bus.publish(ErrorRaised(where="live", message=message, fatal=fatal))
