"""The state table: legal moves pass and are published, illegal ones are caught as bugs."""

from __future__ import annotations

import pytest

from device import state_table
from device.events import ErrorRaised, Event, EventBus, State, StateChanged
from device.state_table import TABLE, Facts, IllegalTransition, StateMachine


def test_a_legal_path_is_published_in_order() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    machine = StateMachine(bus, strict=True)
    open_, closed = Facts(session_open=True), Facts()
    for state, facts in [
        (State.LISTENING, open_),
        (State.CONNECTING, open_),
        (State.CONVERSING, open_),
        (State.CLOSING, closed),
        (State.IDLE, closed),
    ]:
        assert machine.go(state, "test", facts)
    assert [(e.previous, e.state) for e in seen if isinstance(e, StateChanged)] == [
        (State.IDLE, State.LISTENING),
        (State.LISTENING, State.CONNECTING),
        (State.CONNECTING, State.CONVERSING),
        (State.CONVERSING, State.CLOSING),
        (State.CLOSING, State.IDLE),
    ]


def test_an_illegal_transition_raises_when_strict_and_is_recorded_otherwise() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    with pytest.raises(IllegalTransition, match="idle -> conversing"):
        StateMachine(bus, strict=True).go(State.CONVERSING, "skipping ahead", Facts())
    lenient = StateMachine(bus)
    # A guard: idle -> error only while a part is broken and no session is open.
    assert not lenient.go(State.ERROR, "nothing is broken", Facts(faults=0))
    assert lenient.state == State.IDLE
    assert len(state_table.ILLEGAL) == 2
    assert "guard faulty refused" in state_table.ILLEGAL[1]
    assert [e.where for e in seen if isinstance(e, ErrorRaised)] == ["state", "state"]
    state_table.ILLEGAL.clear()  # recorded on purpose here


def test_every_state_is_reachable_and_can_be_left() -> None:
    sources = {src for src, _, _, _ in TABLE}
    targets = {dst for _, dst, _, _ in TABLE}
    assert sources == targets == set(State)
