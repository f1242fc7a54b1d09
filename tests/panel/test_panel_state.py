"""Which state the panel shows for a sequence of bus events, and which wins when several apply."""

from __future__ import annotations

import pytest

from device.events import (
    CameraUnavailable,
    ConfirmationIgnored,
    ConfirmationRequested,
    ConfirmationResolved,
    ErrorRaised,
    Event,
    Interrupted,
    MuteChanged,
    SessionEnded,
    Speaking,
    State,
    StateChanged,
    ToolCalled,
    ToolFinished,
    UserSpeech,
    WakeDetected,
)
from device.panel.state import ButtonContext, PanelState, PanelStateTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def changed(state: State) -> StateChanged:
    return StateChanged(state=state, previous=State.IDLE)


def called(call_id: str) -> ToolCalled:
    return ToolCalled(session_id="s", call_id=call_id, name="move_stock", args={})


def finished(call_id: str) -> ToolFinished:
    return ToolFinished(
        session_id="s", call_id=call_id, name="move_stock", status="ok", result={}, latency_ms=3
    )


def run(*events: Event, clock: Clock | None = None) -> PanelStateTracker:
    tracker = PanelStateTracker(clock=clock or Clock())
    for event in events:
        tracker.handle(event)
    return tracker


def test_a_whole_conversation_walks_through_the_states() -> None:
    clock = Clock()
    tracker = PanelStateTracker(wake_flash_s=0.4, clock=clock)
    seen = [tracker.state()]
    script: list[Event] = [
        WakeDetected(model="hey_jarvis", score=0.98),
        changed(State.LISTENING),
        changed(State.CONNECTING),
        changed(State.CONVERSING),
        UserSpeech(active=False, source="vad"),
        called("c1"),
        finished("c1"),
        Speaking(started=True),
        Speaking(started=False),
        changed(State.CLOSING),
        changed(State.IDLE),
    ]
    for event in script:
        tracker.handle(event)
        seen.append(tracker.state())
        if isinstance(event, WakeDetected):
            clock.now += 0.5  # the wake flash is over before the session state arrives
    assert seen == [
        PanelState.IDLE,
        PanelState.WAKE,
        PanelState.LISTENING,
        PanelState.LISTENING,
        PanelState.LISTENING,
        PanelState.THINKING,
        PanelState.TOOL_RUNNING,
        PanelState.THINKING,
        PanelState.SPEAKING,
        PanelState.LISTENING,
        PanelState.IDLE,
        PanelState.IDLE,
    ]


def test_wake_flash_ends_by_the_clock() -> None:
    clock = Clock()
    tracker = run(changed(State.LISTENING), WakeDetected(model="m", score=0.9), clock=clock)
    assert tracker.state() is PanelState.WAKE
    assert tracker.next_change_in() == pytest.approx(0.4)
    clock.now += 0.41
    assert tracker.state() is PanelState.LISTENING
    assert tracker.next_change_in() is None


def test_confirmation_outranks_tools_and_speech_until_it_is_answered() -> None:
    tracker = run(
        changed(State.CONVERSING),
        called("c1"),
        ConfirmationRequested(
            session_id="s1", call_id="c1", tool="move_stock", readback="Move five."
        ),
        Speaking(started=True),  # the read-back being spoken
    )
    assert tracker.state() is PanelState.AWAITING_CONFIRMATION
    tracker.handle(
        ConfirmationResolved(session_id="s1", call_id="c1", tool="move_stock", outcome="committed")
    )
    assert tracker.state() is PanelState.TOOL_RUNNING
    tracker.handle(finished("c1"))
    assert tracker.state() is PanelState.THINKING


def test_tool_running_lasts_until_the_last_parallel_call_finishes() -> None:
    tracker = run(changed(State.CONVERSING), called("a"), called("b"), finished("a"))
    assert tracker.state() is PanelState.TOOL_RUNNING
    tracker.handle(finished("b"))
    assert tracker.state() is PanelState.THINKING


def test_priorities_error_then_offline_then_muted() -> None:
    tracker = run(
        changed(State.CONVERSING), Speaking(started=True), MuteChanged(muted=True, source="switch")
    )
    assert tracker.state() is PanelState.MUTED
    tracker.handle(changed(State.OFFLINE))
    assert tracker.state() is PanelState.OFFLINE
    tracker.handle(ErrorRaised(where="live", message="1007", fatal=True))
    assert tracker.state() is PanelState.ERROR
    tracker.handle(changed(State.IDLE))
    assert tracker.state() is PanelState.MUTED
    tracker.handle(MuteChanged(muted=False, source="switch"))
    assert tracker.state() is PanelState.IDLE


def test_non_fatal_errors_and_a_lost_camera_are_a_passing_warning() -> None:
    clock = Clock()
    tracker = PanelStateTracker(warning_s=3.0, clock=clock)
    for event in (changed(State.CONVERSING), Speaking(started=True)):
        tracker.handle(event)
    for warning in (
        CameraUnavailable(backend="picamera2", reason="cable"),
        ErrorRaised(where="tools", message="timeout"),
    ):
        tracker.handle(warning)
        assert tracker.state() is PanelState.ERROR
        clock.now += 3.01
        assert tracker.state() is PanelState.SPEAKING


def test_a_confirm_too_early_is_a_passing_warning_and_the_change_still_waits() -> None:
    """A tap while the read-back still plays is ignored: the worker sees that it did not take,
    and a tap once it has played still confirms."""
    clock = Clock()
    tracker = PanelStateTracker(warning_s=3.0, clock=clock)
    for event in (
        changed(State.CONVERSING),
        called("c1"),
        ConfirmationRequested(session_id="s1", call_id="c1", tool="move_stock", readback="."),
        Speaking(started=True),
        ConfirmationIgnored(
            session_id="s1",
            call_id="c1",
            tool="move_stock",
            source="button:gpio",
            reason="before a matching read-back",
        ),
    ):
        tracker.handle(event)
    assert tracker.state() is PanelState.ERROR
    assert tracker.context().awaiting_confirmation
    clock.now += 3.01
    assert tracker.state() is PanelState.AWAITING_CONFIRMATION


def test_barge_in_and_session_end_reset_the_conversation() -> None:
    tracker = run(
        changed(State.CONVERSING),
        Speaking(started=True),
        Interrupted(session_id="s", source="server"),
    )
    assert tracker.state() is PanelState.LISTENING
    tracker.handle(called("c9"))
    tracker.handle(
        ConfirmationRequested(
            session_id="s1", call_id="c9", tool="move_stock", readback="Move five."
        )
    )
    tracker.handle(SessionEnded(session_id="s", reason="goaway"))
    tracker.handle(changed(State.CONNECTING))
    # A resumed session must not inherit the old session's pending write.
    assert tracker.state() is PanelState.LISTENING


def test_button_context_follows_the_conversation() -> None:
    tracker = run(changed(State.CONVERSING), Speaking(started=True))
    assert tracker.context() == ButtonContext(in_session=True, speaking=True)
    tracker.handle(
        ConfirmationRequested(
            session_id="s1", call_id="c1", tool="move_stock", readback="Move five."
        )
    )
    assert tracker.context().awaiting_confirmation
    tracker.handle(changed(State.IDLE))
    assert tracker.context() == ButtonContext()
