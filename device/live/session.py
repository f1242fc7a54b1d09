"""One Gemini Live conversation: a send task, a receive task and tool round trips.

Everything the device sends goes through one outbox, drained by one send task, so audio, tool
answers and activity markers never interleave on the websocket. Audio captured before the
connection is up waits in the outbox and goes out in order once setup completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.genai import errors, types

from device.audio.sink import AudioSink
from device.events import (
    ErrorRaised,
    EventBus,
    Interrupted,
    SessionEnded,
    SessionStarted,
    Speaking,
    Transcript,
    WireSent,
)

log = logging.getLogger(__name__)

AUDIO_MIME = "audio/pcm;rate=16000"
# One audio chunk in this many is reported as WireSent (about once a second at 20 ms chunks).
WIRE_AUDIO_SAMPLE = 50
# Close codes after which retrying cannot help (DESIGN §3): bad frame, policy/auth.
FATAL_CLOSE_CODES = frozenset({1007, 1008})


class ToolRunner(Protocol):
    def declarations(self) -> list[dict[str, Any]]: ...

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]: ...


class LiveSessionLike(Protocol):
    """The slice of google-genai's AsyncSession this module uses."""

    async def send_realtime_input(self, **kwargs: Any) -> None: ...

    async def send_tool_response(self, *, function_responses: Any) -> None: ...

    def receive(self) -> AsyncIterator[types.LiveServerMessage]: ...


Connector = Callable[[], contextlib.AbstractAsyncContextManager[LiveSessionLike]]


@dataclass(frozen=True)
class Outgoing:
    kind: str  # audio | video | activity_start | activity_end | audio_stream_end | tool_response
    payload: Any = None
    queued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Outcome:
    reason: str
    error: bool = False
    fatal: bool = False


class SessionClosed(Exception):
    def __init__(self, reason: str, *, fatal: bool = False, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fatal, self.code = reason, fatal, code


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
    ) -> None:
        self.session_id = session_id
        self._model = model
        self._connect = connect
        self._speaker = speaker
        self._tools = tools
        self._bus = bus
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._hangup: asyncio.Future[str] | None = None
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._answered: set[str] = set()
        self._last_activity = time.monotonic()
        self._user_text: list[str] = []
        self._model_text: list[str] = []
        self.connected = asyncio.Event()
        self.model_speaking = False
        self._cutting_reply = False
        self._reply_streaming = False  # the service is still sending the current reply
        self.resumption_handle: str | None = None
        self._audio_sent = 0

    # -- called by the appliance (never blocks) -------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        self._outbox.put_nowait(Outgoing("audio", pcm))

    def send_video(self, jpeg: bytes) -> None:
        self._outbox.put_nowait(Outgoing("video", jpeg))

    def mark(self, kind: str) -> None:
        """Queue an activity marker: activity_start, activity_end or audio_stream_end."""
        self.touch()
        self._outbox.put_nowait(Outgoing(kind))

    def touch(self) -> None:
        """Something happened that should keep the session from idling out."""
        self._last_activity = time.monotonic()

    def interrupt(self, source: str) -> None:
        """Stop the reply now (a button press while the device speaks)."""
        if source == "server" and self._cutting_reply:
            # The service confirms a barge-in the device already acted on.
            self._cutting_reply = False
            return
        # Audio of the cut-off reply still in flight must not play: drop it until the service
        # says the reply is over (interrupted or turnComplete).
        self._cutting_reply = source != "server" and self._reply_streaming
        dropped = self._speaker.flush()
        if self.model_speaking:
            self._bus.publish(Speaking(started=False))
        self.model_speaking = False
        self._flush_transcript("model")
        self._bus.publish(Interrupted(session_id=self.session_id, source=source))
        log.info("reply interrupted by %s, %d bytes dropped", source, dropped)

    def hang_up(self, reason: str) -> None:
        if self._hangup is not None and not self._hangup.done():
            self._hangup.set_result(reason)

    # -- the session ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        self._hangup = loop.create_future()
        reason, error, fatal = "closed", False, False
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self._connect_timeout_s):
                    session = await stack.enter_async_context(self._connect())
                self.connected.set()
                self._bus.publish(SessionStarted(session_id=self.session_id, model=self._model))
                self.touch()
                reason = await self._serve(session)
        except TimeoutError:
            reason, error = "connect timed out", True
        except SessionClosed as exc:
            reason, error, fatal = exc.reason, True, exc.fatal
        except (OSError, errors.APIError) as exc:
            reason, error = f"connection failed: {exc}", True
        finally:
            for task in [*self._tool_tasks.values(), *self._background]:
                task.cancel()
            self._flush_transcript("user")
            self._flush_transcript("model")
            if error:
                self._error(reason, fatal=fatal)
            self._bus.publish(SessionEnded(session_id=self.session_id, reason=reason))
        return Outcome(reason, error, fatal)

    async def _serve(self, session: LiveSessionLike) -> str:
        assert self._hangup is not None
        send = asyncio.create_task(self._send_loop(session), name="live-send")
        receive = asyncio.create_task(self._receive_loop(session), name="live-receive")
        idle = asyncio.create_task(self._idle_watch(), name="live-idle")
        tasks: set[asyncio.Future[Any]] = {send, receive, idle, self._hangup}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (send, receive, idle):
                task.cancel()
            await asyncio.gather(send, receive, idle, return_exceptions=True)
        finished = done.pop()
        if finished is self._hangup:
            return self._hangup.result()
        result = finished.result()  # re-raises SessionClosed
        return str(result)

    async def _send_loop(self, session: LiveSessionLike) -> str:
        while True:
            item = await self._outbox.get()
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
            self._audio_sent += item.kind == "audio"
            if item.kind != "audio" or self._audio_sent % WIRE_AUDIO_SAMPLE == 1:
                waited_ms = 1000 * (time.monotonic() - item.queued)
                self._bus.publish(
                    WireSent(session_id=self.session_id, what=item.kind, waited_ms=waited_ms)
                )

    async def _receive_loop(self, session: LiveSessionLike) -> str:
        while True:
            try:
                async for message in session.receive():
                    await self._handle(message)
            except errors.APIError as exc:
                code = exc.code if isinstance(exc.code, int) else None
                if code == 1000:
                    return "server closed the session"
                raise SessionClosed(
                    f"connection closed ({code}: {exc.message or exc.status})",
                    fatal=code in FATAL_CLOSE_CODES,
                    code=code,
                ) from exc
            except TypeError:
                # google-genai raises TypeError on a frame made only of keys it does not
                # know (DESIGN §3); such a frame carries nothing for us, so keep listening.
                log.warning("ignored a server frame the SDK could not parse")

    async def _handle(self, message: types.LiveServerMessage) -> None:
        content = message.server_content
        if content is not None:
            await self._handle_content(content)
        if message.tool_call is not None:
            self._flush_transcript("user")
            for call in message.tool_call.function_calls or []:
                self._start_tool(call)
        if message.tool_call_cancellation is not None:
            for call_id in message.tool_call_cancellation.ids or []:
                task = self._tool_tasks.get(call_id)
                if task is not None and not task.done():
                    task.cancel()
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self.resumption_handle = update.new_handle

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
                    if not self.model_speaking:
                        self._flush_transcript("user")
                        self.model_speaking = True
                        self._bus.publish(Speaking(started=True))
                    self.touch()
                    await self._speaker.write(blob.data)
        if content.output_transcription is not None and content.output_transcription.text:
            self._model_text.append(content.output_transcription.text)
        if content.turn_complete:
            self._cutting_reply = self._reply_streaming = False
            if self.model_speaking:
                self._watch_playback_end()
            self.model_speaking = False
            self.touch()
            self._flush_transcript("user")
            self._flush_transcript("model")

    def _start_tool(self, call: types.FunctionCall) -> None:
        call_id = call.id or ""
        # Duplicated function-call ids are a known service fault: run each id once.
        if call_id in self._tool_tasks or call_id in self._answered:
            log.warning("duplicate function call %s ignored", call_id)
            return
        name, args = call.name or "", dict(call.args or {})
        # The dispatcher publishes ToolCalled/ToolFinished: it knows what it validated and ran.
        self.touch()
        task = asyncio.create_task(self._run_tool(call_id, name, args), name=f"tool-{name}")
        self._tool_tasks[call_id] = task

    async def _run_tool(self, call_id: str, name: str, args: dict[str, Any]) -> None:
        try:
            result = await self._tools.call(
                session_id=self.session_id, call_id=call_id, name=name, args=args
            )
        except asyncio.CancelledError:
            # The server cancelled this call: it expects no answer for it.
            self._answered.add(call_id)
            raise
        finally:
            self._tool_tasks.pop(call_id, None)
        self._answered.add(call_id)
        self.touch()
        self._outbox.put_nowait(
            Outgoing(
                "tool_response", types.FunctionResponse(id=call_id, name=name, response=result)
            )
        )

    def _watch_playback_end(self) -> None:
        """Publish the end of speech when the speaker has played the whole reply."""

        async def wait() -> None:
            await self._speaker.drain()
            if not self.model_speaking:
                self._bus.publish(Speaking(started=False))

        task = asyncio.create_task(wait(), name="playback-end")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _idle_watch(self) -> str:
        while True:
            quiet = time.monotonic() - self._last_activity
            busy = self.model_speaking or self._speaker.playing or bool(self._tool_tasks)
            if busy:
                self.touch()
            elif quiet >= self._idle_timeout_s:
                return "idle timeout"
            await asyncio.sleep(min(0.25, max(0.01, self._idle_timeout_s - quiet)))

    def _flush_transcript(self, role: str) -> None:
        parts = self._user_text if role == "user" else self._model_text
        text = "".join(parts).strip()
        parts.clear()
        if text:
            self._bus.publish(Transcript(session_id=self.session_id, role=role, text=text))

    def _error(self, message: str, *, fatal: bool) -> None:
        log.warning("live session %s: %s", self.session_id, message)
        self._bus.publish(ErrorRaised(where="live", message=message, fatal=fatal))
