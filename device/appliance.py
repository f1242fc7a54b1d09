"""The appliance state machine and the owner of its tasks.

idle → listening → connecting → conversing → closing → idle, with error and offline as the
places a failed session lands. Buttons, the control socket and (later) the wake word all enter
through `press`/`release`, so every way of starting a conversation takes the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device.audio.sink import AudioSink
from device.audio.source import AudioSource
from device.events import (
    ButtonEvent,
    ErrorRaised,
    Event,
    EventBus,
    SessionEnded,
    SessionStarted,
    State,
    StateChanged,
    ToolFinished,
)
from device.live.session import Connector, Conversation, ToolRunner

log = logging.getLogger(__name__)

ConnectorFactory = Callable[[str | None], Connector]


@dataclass
class Counters:
    sessions: int = 0
    turns_interrupted: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    errors: int = 0


@dataclass
class Status:
    started_at: float = field(default_factory=time.time)
    last_session: dict[str, Any] = field(default_factory=dict)
    last_error: dict[str, Any] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)


class Appliance:
    def __init__(
        self,
        *,
        bus: EventBus,
        mic: AudioSource,
        speaker: AudioSink,
        tools: ToolRunner,
        connector: ConnectorFactory,
        model: str,
        manual_turns: bool,
        idle_timeout_s: float,
        connect_timeout_s: float,
        on_confirm: Callable[[], object] | None = None,
    ) -> None:
        self.bus = bus
        self._mic = mic
        self._speaker = speaker
        self._tools = tools
        self._connector = connector
        self._model = model
        self._manual = manual_turns
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._state = State.IDLE
        self._conversation: Conversation | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._talking = False
        # A tap opens a hands-free conversation: the mic stays open and the server decides turns.
        self._open_mic = False
        self._muted = False
        self._on_confirm = on_confirm
        self.status = Status()
        # Extra sections of `snapshot()` (the status answer), e.g. "metrics": their getters.
        self.status_sections: dict[str, Callable[[], Any]] = {}
        bus.subscribe(self._account)

    @property
    def state(self) -> State:
        return self._state

    @property
    def mic(self) -> AudioSource:
        return self._mic

    @property
    def conversation(self) -> Conversation | None:
        return self._conversation

    # -- inputs: the control socket ------------------------------------------------------

    def press(self, source: str) -> None:
        """The talk button went down (control socket): interrupt a reply, then talk."""
        self.bus.publish(ButtonEvent(action="press", source=source))
        if self.speaking:
            self.interrupt(source)
        self.talk_start()

    def release(self, source: str) -> None:
        self.bus.publish(ButtonEvent(action="release", source=source))
        self.talk_end()

    # -- inputs: the panel (device.panel.PanelHandler) -------------------------------------

    @property
    def speaking(self) -> bool:
        conversation = self._conversation
        return conversation is not None and (conversation.model_speaking or self._speaker.playing)

    def talk_start(self) -> None:
        """Push-to-talk down: start a conversation, or talk again in the open one."""
        if self._muted:
            return
        conversation = self._conversation
        self._talking = True
        if conversation is None:
            self._start_session()
        elif self._manual:
            conversation.mark("activity_start")
        else:
            conversation.touch()

    def talk_end(self) -> None:
        """Push-to-talk up: the worker finished speaking."""
        if not self._talking:
            return
        self._talking = False
        if self._conversation is not None:
            self._conversation.mark("activity_end" if self._manual else "audio_stream_end")

    def tap(self) -> None:
        """A short press: open a hands-free conversation, or end the open one."""
        if self._conversation is not None:
            self.hang_up("ended by a tap")
        elif not self._muted:
            self._open_mic = True
            self._start_session()

    def long_press(self) -> None:
        self.hang_up("cancelled by a long press")

    def confirm(self) -> None:
        if self._on_confirm is not None:
            self._on_confirm()

    def interrupt(self, source: str = "gpio") -> None:
        if self._conversation is not None:
            self._conversation.interrupt(source)

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        if muted:
            self._talking = False
            self.hang_up("muted")

    def hang_up(self, reason: str = "hung up") -> None:
        if self._conversation is not None:
            self._conversation.hang_up(reason)

    # -- tasks ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Feed the microphone into the open conversation until cancelled."""
        if self._conversation is None:
            self._set(State.IDLE, "started")
        try:
            async for chunk in self._mic.chunks():
                conversation = self._conversation
                if conversation is not None and (self._talking or self._open_mic):
                    conversation.send_audio(chunk)
                    if self._talking:
                        # A held talk button is speech: the session must not idle out.
                        conversation.touch()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.hang_up("shutting down")
        task = self._session_task
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(task)
            task.cancel()

    def _start_session(self) -> None:
        session_id = uuid.uuid4().hex[:12]
        conversation = Conversation(
            session_id=session_id,
            model=self._model,
            connect=self._connector(None),
            speaker=self._speaker,
            tools=self._tools,
            bus=self.bus,
            idle_timeout_s=self._idle_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
        )
        self._conversation = conversation
        if self._manual:
            conversation.mark("activity_start")
        self._set(State.LISTENING, "hands-free" if self._open_mic else "push to talk")
        self._session_task = asyncio.create_task(self._converse(conversation), name="session")

    async def _converse(self, conversation: Conversation) -> None:
        self._set(State.CONNECTING, conversation.session_id)
        run = asyncio.create_task(conversation.run(), name="conversation")
        connected = asyncio.create_task(conversation.connected.wait())
        await asyncio.wait({run, connected}, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        if conversation.connected.is_set():
            self._set(State.CONVERSING, conversation.session_id)
        try:
            outcome = await run
        finally:
            self._conversation = None
            self._talking = self._open_mic = False
        self._set(State.CLOSING, outcome.reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._speaker.drain()
        self._set(State.ERROR if outcome.error else State.IDLE, outcome.reason)

    def _set(self, state: State, reason: str = "") -> None:
        previous, self._state = self._state, state
        self.bus.publish(StateChanged(state=state, previous=previous, reason=reason))

    def _account(self, event: Event) -> None:
        counters = self.status.counters
        if isinstance(event, SessionStarted):
            counters.sessions += 1
            self.status.last_session = {"session_id": event.session_id, "started": event.ts}
        elif isinstance(event, SessionEnded):
            self.status.last_session.update(ended=event.ts, reason=event.reason)
        elif isinstance(event, ToolFinished):
            counters.tool_calls += 1
            counters.tool_errors += event.status not in ("ok", "needs_confirmation")
        elif isinstance(event, ErrorRaised):
            counters.errors += 1
            self.status.last_error = {
                "where": event.where,
                "message": event.message,
                "ts": event.ts,
            }
        elif event.kind == "interrupted":
            counters.turns_interrupted += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self._state.value,
            "uptime_s": round(time.time() - self.status.started_at, 1),
            "session": self._conversation.session_id if self._conversation else None,
            "last_session": self.status.last_session,
            "last_error": self.status.last_error,
            "counters": vars(self.status.counters),
            **{name: section() for name, section in self.status_sections.items()},
        }
