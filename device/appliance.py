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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.capture import Capture, CaptureLost, CaptureRestored
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
from device.wake.detector import WakeHit

log = logging.getLogger(__name__)

ConnectorFactory = Callable[[str | None], Connector]
Companion = Callable[[], Coroutine[Any, Any, None]]


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
            # The open session shows listening; with server turn detection it must hear too.
            self._open_mic = not self._manual

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
        """Feed the microphone into the open conversation until cancelled.

        Capture goes through one `Capture` (made here if `use_capture` gave none), which also
        feeds the wake listener and keeps the pre-roll; the companions run alongside."""
        capture = self._capture
        if capture is None:
            capture = self._capture = Capture(self._mic, bus=self.bus)
        if self._conversation is None:
            self._set(State.IDLE, "started")
        unfollow = self.bus.subscribe(self._follow_capture)
        companions = [
            asyncio.create_task(run(), name="capture-companion") for run in self._companions
        ]
        for task in companions:
            task.add_done_callback(self._companion_done)
        try:
            async for frame in capture.frames():
                conversation = self._conversation
                if conversation is None or not (self._talking or self._open_mic):
                    continue
                if self._holding_for is conversation or frame.start < self._send_from:
                    continue  # waiting for the wake word's end, or already sent as pre-roll
                conversation.send_audio(frame.pcm)
                if self._talking:
                    # A held talk button is speech: the session must not idle out.
                    conversation.touch()
        finally:
            unfollow()
            for task in companions:
                task.cancel()
            await asyncio.gather(*companions, return_exceptions=True)
            await self.stop()

    # -- the capture stream and the wake word ------------------------------------------------

    # Set by `use_capture` and the wake path; class defaults so `__init__` stays as it is.
    _capture: Capture | None = None
    _companions: tuple[Companion, ...] = ()
    _holding_for: Conversation | None = None  # its audio waits for the wake word's end
    _send_from = 0  # capture offset from which frames go to the conversation
    _capture_lost = False

    def use_capture(self, capture: Capture, *companions: Companion) -> None:
        """Capture through `capture` (pre-roll, echo stage, reopening a lost microphone) and
        run `companions` (the wake listener) alongside the capture loop while `run()` runs."""
        self._capture = capture
        self._companions = companions

    def wake(self, hit: WakeHit) -> None:
        """The wake word was heard: open a hands-free conversation at once. What the worker
        says next waits in the pre-roll until `wake_ended` says where the wake word stopped."""
        if self._muted:
            return
        if self._conversation is not None:
            if self.speaking:
                self.interrupt("wake")  # the wake word over a reply is a barge-in
            return
        self._open_mic = True
        self._send_from = hit.end_sample
        self._start_session()
        self._holding_for = self._conversation

    def wake_ended(self, end_sample: int) -> None:
        """The wake word ended at capture offset `end_sample`: send everything after it, in
        order, then let live audio follow."""
        conversation, capture = self._holding_for, self._capture
        self._holding_for = None
        if conversation is None or capture is None or conversation is not self._conversation:
            return
        kept = capture.since(end_sample)
        if kept.start > end_sample:
            log.warning(
                "pre-roll too short: %d ms after the wake word were lost (raise audio.preroll_s)",
                1000 * (kept.start - end_sample) // CAPTURE_RATE,
            )
        step = CAPTURE_RATE // 50 * SAMPLE_WIDTH  # 20 ms pieces, as the microphone sends them
        for offset in range(0, len(kept.pcm), step):
            conversation.send_audio(kept.pcm[offset : offset + step])
        self._send_from = kept.end

    def _follow_capture(self, event: Event) -> None:
        # State changes are deferred a step so they never land inside another one's publish.
        loop = asyncio.get_running_loop()
        if isinstance(event, CaptureLost):
            self._capture_lost = True
            loop.call_soon(self._show_capture, f"microphone lost: {event.reason}")
        elif isinstance(event, CaptureRestored):
            self._capture_lost = False
            loop.call_soon(self._show_capture, "microphone is back")
        elif isinstance(event, StateChanged) and event.state == State.IDLE and self._capture_lost:
            loop.call_soon(self._show_capture, "microphone still lost")

    def _show_capture(self, reason: str) -> None:
        if self._conversation is not None:
            return  # the session's own states show meanwhile; its end brings this back
        if self._capture_lost and self._state != State.ERROR:
            self._set(State.ERROR, reason)
        elif not self._capture_lost and self._state == State.ERROR:
            self._set(State.IDLE, reason)

    def _companion_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("%s stopped: %r", task.get_name(), exc)
        self.bus.publish(ErrorRaised(where="wake", message=f"wake word stopped: {exc}"))

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

        def show(state: State, reason: str) -> None:
            if self._conversation is conversation and self._state != state:
                self._set(state, reason)

        def follow(event: Event) -> None:
            # A lost link shows as connecting while it resumes, then conversing again; like
            # the capture's, the change waits a step so it never lands inside this publish.
            loop = asyncio.get_running_loop()
            if isinstance(event, SessionStarted) and event.session_id == conversation.session_id:
                loop.call_soon(show, State.CONVERSING, conversation.session_id)
            elif isinstance(event, ErrorRaised) and event.where == "live.link":
                loop.call_soon(show, State.CONNECTING, f"reconnecting: {event.message}")

        unfollow = self.bus.subscribe(follow)
        try:
            outcome = await conversation.run()
        finally:
            unfollow()
            self._conversation = None
            self._talking = self._open_mic = False
        self._set(State.CLOSING, outcome.reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._speaker.drain()
        if outcome.offline:
            self._set(State.OFFLINE, outcome.reason)
            await conversation.play_cue("offline")
            await self._await_network(conversation)
        elif outcome.error:
            # A fatal error stays: the session is over until the worker starts a new one.
            self._set(State.ERROR, outcome.reason)
            await conversation.play_cue("denied" if outcome.denied else "error")
        else:
            self._set(State.IDLE, outcome.reason)

    async def _await_network(self, conversation: Conversation) -> None:
        """Probe the Live endpoint with backoff until it answers, then show idle again. A
        press meanwhile starts a new attempt at once (and ends this wait)."""
        delay, cap = conversation.policy.reconnect_base_s, conversation.policy.offline_probe_max_s
        while self._state == State.OFFLINE and self._conversation is None:
            reachable = await conversation.probe()
            if reachable is None:
                return  # the connector cannot probe: the next attempt will tell
            if reachable and self._state == State.OFFLINE and self._conversation is None:
                self._set(State.IDLE, "the Live endpoint is reachable again")
                return
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)

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
