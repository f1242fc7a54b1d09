"""GoAway: the reply in progress plays to its end, then a resumed connection carries on; the
hard deadline fires on the clock even when the server says nothing more."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest

from device.events import State
from device.service.eventlog import read_events
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec
from tests.live.conftest import TurnPacedMic

pytestmark = pytest.mark.slow

FIND = ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})


def played(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def two_turns(first: dict[str, Any], **session: Any) -> Scenario:
    return Scenario(
        name="goaway-test",
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[FIND],
                reply_text="Aisle twelve, bay three, level B, forty units.",
                **first,
            ),
            TurnSpec(user_transcript="Thanks.", reply_text="You're welcome."),
        ],
        **session,
    )


async def test_goaway_mid_reply_finishes_the_reply_then_resumes(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    # goAway comes one second into the 3.4 s reply, with plenty of time left.
    scenario = two_turns({"goaway_after_ms": 1000}, speed=3.0, goaway_time_left_s=60.0)
    # The second question comes once the first reply is answered and the device has resumed
    # (events): on a loaded machine a slow reply is neither talked over nor outlived.
    emulators: list[Emulator] = []

    def resumed_after(n: int) -> bool:
        record = emulators[0].record
        return len(record.connections) > n and len(record.finished_turns) >= n

    mic = TurnPacedMic(resumed_after, times=2, gap_s=4.0)
    rig = await rig_factory(scenario, mic=mic, idle_timeout_s=10.0)
    emulators.append(rig.emulator)
    await rig.start()
    rig.appliance.tap()
    emu = rig.emulator
    await emu.wait_for(lambda r: len(r.finished_turns) >= 2, timeout_s=60, what="two turns")
    await rig.finish()

    first, *later = emu.record.connections
    goaway = next(f for f in first.faults if f.kind == "goaway")
    assert goaway.during_turn == 0, "goAway must land while the first reply is in progress"
    assert first.turns[0].finished and not first.turns[0].interrupted
    assert first.turns[0].generation_complete
    # The device left on its own, at the turn boundary, long before the server's deadline.
    assert first.closed_by == "client"
    assert "goaway_deadline" not in [f.kind for f in emu.record.faults]
    # It resumed with the newest handle, and the next turn ran on the resumed connection.
    assert len(later) == 1
    assert later[0].resumption_handle == first.handles_issued[-1]
    assert later[0].resumed_phase == "idle"
    assert not [f for f in emu.record.faults if f.kind == "stale_handle"]
    assert [t.scenario_turn for t in later[0].turns] == [1]
    # Both replies played whole, once each, in order.
    assert played(tmp_path / "reply.wav") == b"".join(emu.record.reply_pcm)
    # One conversation: no second wake or press, no error, no reconnecting state.
    assert rig.states == [
        State.IDLE,
        State.LISTENING,
        State.CONNECTING,
        State.CONVERSING,
        State.CLOSING,
        State.IDLE,
    ]
    events = read_events(tmp_path / "events.jsonl")
    started = [e for e in events if e["kind"] == "session_started"]
    assert [e["resumed"] for e in started] == [False, True]
    assert len({e["session_id"] for e in started}) == 1
    assert not [e for e in events if e["kind"] == "error"]


async def test_goaway_deadline_fires_without_another_server_message(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    # Once the tool answer is consumed the model goes silent on this connection, and goAway
    # (wall clock, as the service's timeLeft is) says 4 s are left. The goAway is sent on that
    # event, not on a timer from setup, so however slow the machine the deadline lands while
    # the model is silent. Nothing more comes from the server, so only the device's own
    # deadline (4 s - 3 s margin) can move the conversation on; the server's own deadline is
    # 3 s later, a margin no scheduling delay on a loaded machine comes near.
    scenario = Scenario(
        name="goaway-deadline",
        speed=1.0,
        goaway_time_left_s=4.0,
        handles_during_tools=True,
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[FIND],
                goaway_after_tool_response=True,
                stall_after_tool_response=True,
                reply_text="Aisle twelve.",
            )
        ],
    )
    rig = await rig_factory(
        scenario, mic_speed=20.0, idle_timeout_s=10.0, goaway_margin_s=3.0, stall_timeout_s=30.0
    )
    await rig.start()
    rig.appliance.press("gpio")
    emu = rig.emulator
    await emu.wait_for(lambda r: len(r.finished_turns) >= 1, timeout_s=30, what="the reply")
    rig.appliance.release("gpio")
    await rig.finish()

    first, second = emu.record.connections[:2]
    kinds = [f.kind for f in first.faults]
    assert "goaway" in kinds and "stall_after_tool_response" in kinds
    assert "goaway_deadline" not in kinds, "the device must leave before the server's deadline"
    assert first.closed_by == "client"
    # The handle issued once the answer was consumed resumes straight into the reply.
    assert second.resumption_handle == first.handles_issued[-1]
    assert second.resumed_phase == "reply"
    assert second.turns[0].finished
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    assert [r.id for r in emu.record.tool_responses] == ["call-1"]
    assert played(tmp_path / "reply.wav") == emu.reply_audio(0)
