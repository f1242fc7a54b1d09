"""The appliance: the owner of its tasks, moving through the states of `device.state_table`.

idle → listening → connecting → conversing → closing → idle, with error and offline as the
places a failed session or a broken part lands. Buttons, the control socket and the wake word
all enter through `press`/`release`/`wake`, so every way of starting a conversation takes the
same path. Every state change goes through the table (`_set`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from device.appliance_faults import PartFaults
from device.appliance_link import SessionLink, await_network
from device.appliance_status import Status
from device.audio.capture import Capture
from device.audio.sink import AudioSink
from device.audio.source import AudioSource
from device.events import (
    ButtonEvent,
    ErrorRaised,
    Event,
    EventBus,
    SessionStarted,
    State,
)
from device.live.session import Connector, Conversation, ToolRunner
from device.service.supervisor import Supervisor
from device.state_table import Facts, StateMachine
from device.wake.detector import WakeHit

log = logging.getLogger(__name__)

ConnectorFactory = Callable[[str | None], Connector]
Companion = Callable[[], Coroutine[Any, Any, None]]


_AT_REST = (State.IDLE, State.ERROR, State.OFFLINE)
_IN_SESSION = (State.LISTENING, State.CONNECTING, State.CONVERSING)


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
        self._machine = StateMachine(bus)
        # Parts that do not work (mic, speaker, ...). While any is listed and no session is
        # open, the state is error, which is what the LED shows. The change waits a step so
        # it never lands inside another state change's publish.
        self._faults = PartFaults(self._faults_changed)
        self._fault_shown = False
        self._shown = ""  # the fault reason the error state shows
        self._conversation: Conversation | None = None
        self._session_task: asyncio.Task[None] | None = None
        # Runs the session tasks; the daemon supervises it as the `link` part.
        self.link = SessionLink()
        self._talking = False
        # A tap opens a hands-free conversation: the mic stays open and the server decides turns.
        self._open_mic = False
        self._muted = False
        self._on_confirm = on_confirm
        self.status = Status()
        # Extra sections of `snapshot()` (the status answer), e.g. "metrics": their getters.
        self.status_sections: dict[str, Callable[[], Any]] = {}
        bus.subscribe(self.status.account)
        bus.subscribe(self._faults)

    @property
    def state(self) -> State:
        return self._machine.state

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
        """Run the appliance until cancelled: under its supervisor when it has one (the
        daemon's, which runs `capture_loop` as one of its parts), else the capture loop alone."""
        if self.supervisor is not None:
            await self.supervisor.run()
        else:
            await self.capture_loop()

    async def capture_loop(self) -> None:
        """Feed the microphone into the open conversation until cancelled.

        Capture goes through one `Capture` (made here if `use_capture` gave none), which also
        feeds the wake listener and keeps the pre-roll; the companions run alongside."""
        capture = self._capture
        if capture is None:
            capture = self._capture = Capture(self._mic, bus=self.bus)
        if self._conversation is None and self.state == State.IDLE:
            self._set(State.IDLE, "started")
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
                if self._holding_for is conversation:
                    # The worker is speaking; it waits in the pre-roll until the wake word's
                    # end is found (late, when the listener lags), so the session is not idle.
                    conversation.touch()
                    continue
                if frame.start < self._send_from:
                    continue  # already sent as pre-roll
                conversation.send_audio(frame.pcm)
                if self._talking:
                    # A held talk button is speech: the session must not idle out.
                    conversation.touch()
        finally:
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
    supervisor: Supervisor | None = None  # set by the daemon, which runs it

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
        for piece in kept.pieces(end_sample):
            conversation.send_audio(piece)
        self._send_from = kept.end

    def _faults_changed(self) -> None:
        asyncio.get_running_loop().call_soon(self._show_faults)

    def _show_faults(self) -> None:
        if self._conversation is not None or self.state not in _AT_REST:
            return  # the session's own states show meanwhile; its end brings this back
        if self._faults:
            reason = self._faults.reason()
            if (self.state != State.ERROR or self._fault_shown) and reason != self._shown:
                self._fault_shown, self._shown = True, reason
                if self._machine.allowed(State.ERROR, self._facts()):
                    self._set(State.ERROR, reason)
        elif self._fault_shown and self.state == State.ERROR:
            self._shown = ""
            self._settle("every part works again")

    def _settle(self, reason: str) -> None:
        """After a session or a fault: idle, or error while a part is still broken."""
        if self._faults:
            self._fault_shown = True
            self._shown = self._faults.reason()
            self._set(State.ERROR, self._shown)
        else:
            self._fault_shown = False
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
        self._session_task = self.link.start(self._converse(conversation), self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        # A bug in the session's ending: say so, and never leave the state hanging.
        log.error("session task failed: %r", exc, exc_info=exc)
        self.bus.publish(ErrorRaised(where="appliance", message=f"session task failed: {exc!r}"))
        if self._conversation is None and self.state in _IN_SESSION:
            self._set(State.CLOSING, "the session task failed")
        if self._conversation is None and self.state == State.CLOSING:
            self._set(State.ERROR, "the session task failed")
            # Under supervision the `link` part's fault now shows, and its restart ends it.
            self._fault_shown = self.link.supervised

    async def _converse(self, conversation: Conversation) -> None:
        self._set(State.CONNECTING, conversation.session_id)

        def show(state: State, reason: str) -> None:
            if self._conversation is conversation and self.state != state:
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
        try:
            async with asyncio.timeout(5.0):
                await self._speaker.drain()
        except TimeoutError:
            pass
        except Exception as exc:  # the speaker broke: the supervisor reopens it
            log.error("the speaker failed at the end of a session: %s", exc)
            self.bus.publish(ErrorRaised(where="speaker", message=str(exc)))
        if self._conversation is not None:
            return  # a new session started while this one's reply drained: it owns the state
        if outcome.offline:
            self._set(State.OFFLINE, outcome.reason)
            await conversation.play_cue("offline")
            # A press meanwhile starts a new attempt at once (and ends this wait).
            if await await_network(
                conversation, lambda: self.state == State.OFFLINE and self._conversation is None
            ):
                self._settle("the Live endpoint is reachable again")
        elif outcome.error:
            # A fatal error stays: the session is over until the worker starts a new one.
            self._set(State.ERROR, outcome.reason)
            await conversation.play_cue("denied" if outcome.denied else "error")
        else:
            self._settle(outcome.reason)

    def _facts(self) -> Facts:
        return Facts(session_open=self._conversation is not None, faults=len(self._faults))

    def _set(self, state: State, reason: str = "") -> None:
        self._machine.go(state, reason, self._facts())

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "speaking": self.speaking,
            **self.status.snapshot(self._conversation.session_id if self._conversation else None),
            "faults": dict(self._faults.parts),
            **{name: section() for name, section in self.status_sections.items()},
        }
