"""Drops, 1011s and lost tool answers: the conversation resumes with the newest handle, every
tool runs once, and every call is answered exactly once across connections."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device.audio.source import WavSource
from device.events import State
from device.live.link import Link
from device.live.outbox import Outgoing
from device.service.eventlog import read_events
from device.sim.record import EmulatorRecord
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec, load_scenario

pytestmark = pytest.mark.slow

FIND = ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})
BYTES_PER_MS = 48  # 24 kHz PCM16


@dataclass
class SlowTools:
    """Answers after `delay_s`, and remembers every call it ran."""

    delay_s: float = 0.1
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def declarations(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "find_item",
                "description": "Find where an item is stored.",
                "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}},
            }
        ]

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((call_id, name, args))
        await asyncio.sleep(self.delay_s)
        return {"status": "ok", "speakable": "Aisle twelve, bay three."}


def played(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def scenario(first: dict[str, Any], **session: Any) -> Scenario:
    return Scenario(
        name="resume-test",
        speed=3.0,
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[FIND],
                reply_text="Aisle twelve, bay three, level B.",
                **first,
            ),
            TurnSpec(user_transcript="Thanks.", reply_text="You're welcome."),
        ],
        **session,
    )


def answered(record: EmulatorRecord, call_id: str) -> list[tuple[int, bool]]:
    """(connection, expected) for every answer to `call_id` the emulator consumed."""
    return [
        (conn.index, r.expected)
        for conn in record.connections
        for r in conn.tool_responses
        if r.id == call_id
    ]


def completed(record: EmulatorRecord, scenario_turn: int) -> bool:
    return any(t.scenario_turn == scenario_turn and t.generation_complete for t in record.turns)


async def run_two_turns(rig: Any) -> EmulatorRecord:
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(
        lambda r: completed(r, 0) and completed(r, 1), timeout_s=60, what="both turns answered"
    )
    await rig.finish()
    record: EmulatorRecord = rig.emulator.record
    return record


async def test_drop_mid_reply_resumes_with_the_newest_handle(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    scn = Scenario(
        name="drop-mid-reply",
        speed=3.0,
        # With the index the device re-sends exactly the audio the service had not consumed,
        # and the handle issued as the reply starts holds the question.
        report_consumed_index=True,
        handles_during_tools=True,
        turns=[
            TurnSpec(user_transcript="Where is SKU 104417?", reply_text="Aisle twelve."),
            TurnSpec(
                user_transcript="And 104471?",
                reply_text="Aisle fourteen, bay one, level C.",
                close_code=1011,
                close_after_ms=500,
            ),
        ],
    )
    wav, pcm = mic_script(2, gap_s=10.0)
    rig = await rig_factory(
        scn,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        idle_timeout_s=10.0,
        reconnect_base_s=0.05,
    )
    record = await run_two_turns(rig)

    first, second = record.connections
    assert (first.close_code, first.closed_by) == (1011, "server")
    # The emulator's own check: the handle presented is the newest one the session issued.
    assert second.resumption_handle == first.handles_issued[-1]
    assert not [f for f in record.faults if f.kind == "stale_handle"]
    # The resumed session went on with the cut-off reply from the byte after the last one
    # sent (the service keeps what it said), and finished it.
    assert [(t.scenario_turn, t.end_reason) for t in second.turns] == [(1, "resumed")]
    assert second.turns[0].generation_complete
    assert second.turns[0].reply_offset == 500 * BYTES_PER_MS
    # Across the seam the session's input is the microphone's stream, nothing doubled.
    heard = record.session_audio()
    mic = pcm + bytes(len(heard))
    assert heard == mic[: len(heard)]
    # The speaker: the first reply, then the second whole, its two halves joined at the seam.
    reply0, cut, rest = record.reply_pcm
    assert len(cut) == 500 * BYTES_PER_MS
    assert cut + rest == rig.emulator.reply_audio(1)
    assert played(tmp_path / "reply.wav") == reply0 + cut + rest
    assert rig.states == [
        State.IDLE,
        State.LISTENING,
        State.CONNECTING,
        State.CONVERSING,
        State.CONNECTING,
        State.CONVERSING,
        State.CLOSING,
        State.IDLE,
    ]
    errors = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "error"]
    assert [(e["where"], e["fatal"]) for e in errors] == [("live.link", False)]


async def test_1011_during_a_tool_call_runs_the_tool_once_and_carries_on(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    scn = scenario({"close_during_tool_call": 1011}, handles_during_tools=True)
    wav, _ = mic_script(2, gap_s=10.0)
    tools = SlowTools(delay_s=0.3)  # still running when the socket drops
    rig = await rig_factory(
        scn,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        tools=lambda bus: tools,
        idle_timeout_s=10.0,
        reconnect_base_s=0.05,
    )
    record = await run_two_turns(rig)

    first, second = record.connections
    assert first.close_code == 1011 and "close_during_tool_call" in [f.kind for f in first.faults]
    assert second.resumed_phase == "tools"
    assert tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    assert answered(record, "call-1") == [(1, True)]
    # The resumed connection finished the answer, then carried the next turn.
    assert [t.scenario_turn for t in second.turns] == [0, 1]
    assert played(tmp_path / "reply.wav") == b"".join(record.reply_pcm)


async def test_duplicated_call_id_runs_once_and_is_answered_once(  # type: ignore[no-untyped-def]
    rig_factory,
) -> None:
    rig = await rig_factory(load_scenario("duplicate-tool-call").model_copy(update={"speed": 10}))
    await rig.start()
    rig.appliance.press("gpio")
    await rig.emulator.wait_for_turns(1, timeout_s=30)
    rig.appliance.release("gpio")
    await rig.finish()
    record = rig.emulator.record
    assert [f.kind for f in record.faults] == ["duplicate_tool_calls"]
    assert len(record.turns[0].tool_calls_sent) == 2
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    assert answered(record, "call-1") == [(0, True)]


async def test_call_announced_again_after_resume_is_not_run_again(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    # The answer is lost with the connection; the resumed connection announces the call again.
    # The device re-sends the answer it has and never runs the tool a second time.
    scn = scenario(
        {"close_on_tool_response": 1011}, handles_during_tools=True, reannounce_tool_calls=True
    )
    wav, _ = mic_script(2, gap_s=10.0)
    tools = SlowTools(delay_s=0.05)
    rig = await rig_factory(
        scn,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        tools=lambda bus: tools,
        idle_timeout_s=10.0,
        reconnect_base_s=0.05,
    )
    record = await run_two_turns(rig)
    second = record.connections[1]
    assert second.resumed_phase == "tools"
    assert [c["id"] for t in second.turns for c in t.tool_calls_sent] == ["call-1"]
    assert len(tools.calls) == 1
    assert answered(record, "call-1") == [(1, True)]
    assert "duplicate_tool_response" not in [f.kind for f in record.faults]
    assert played(tmp_path / "reply.wav") == b"".join(record.reply_pcm)


def answers_return_late(monkeypatch: pytest.MonkeyPatch, mark: Callable[[Link], object]) -> None:
    """A tool answer's send returns only once `mark(link)` has changed: the device reads what
    the service did with the answer first, as on a loaded machine, where the receiver can run
    before the sender resumes."""
    real_transmit = Link._transmit

    async def returns_late(link: Link, item: Outgoing) -> None:
        before = mark(link)
        await real_transmit(link, item)
        for _ in range(20_000):  # a bound, not a timing: what is awaited comes by itself
            if item.kind != "tool_response" or mark(link) != before:
                return
            await asyncio.sleep(0.001)

    monkeypatch.setattr(Link, "_transmit", returns_late)


@pytest.mark.parametrize("indexed", [True, False], ids=["consumed-index", "no-index"])
@pytest.mark.parametrize(
    ("fault", "answered_on", "phase", "send_returns_late"),
    [
        ("close_on_tool_response", 1, "tools", False),
        ("close_after_tool_response", 0, "reply", False),
        # The service consumes the answer, makes a handle past it and closes; the device reads
        # that handle before its send of the answer returns.
        ("close_after_tool_response", 0, "reply", True),
    ],
    ids=["answer-lost", "answer-consumed", "answer-consumed-send-returns-late"],
)
async def test_drop_just_after_a_tool_answer_neither_loses_nor_repeats_it(  # type: ignore[no-untyped-def]
    rig_factory,
    mic_script,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    answered_on: int,
    phase: str,
    send_returns_late: bool,
    indexed: bool,
) -> None:
    if send_returns_late:
        answers_return_late(monkeypatch, lambda link: link.owner.ledger.updates)
    scn = scenario({fault: 1011}, handles_during_tools=True, report_consumed_index=indexed)
    wav, _ = mic_script(2, gap_s=10.0)
    tools = SlowTools(delay_s=0.05)
    rig = await rig_factory(
        scn,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        tools=lambda bus: tools,
        idle_timeout_s=10.0,
        reconnect_base_s=0.05,
    )
    record = await run_two_turns(rig)
    first, second = record.connections
    assert fault in [f.kind for f in first.faults]
    assert second.resumed_phase == phase
    assert len(tools.calls) == 1
    # Consumed exactly once, on the connection that had to have it; never offered twice.
    assert answered(record, "call-1") == [(answered_on, True)]
    assert "duplicate_tool_response" not in [f.kind for f in record.faults]
    assert played(tmp_path / "reply.wav") == b"".join(record.reply_pcm)


async def test_a_reply_read_before_the_answers_send_returned_is_no_stall(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole reply to a tool answer (to its turnComplete) can be read before the send loop
    # notes that the answer left. That is not "no reply after a tool answer": no reconnect,
    # and the answer is not sent again.
    answers_return_late(monkeypatch, lambda link: link.turn_done_at)
    wav, _ = mic_script(2, gap_s=10.0)
    tools = SlowTools(delay_s=0.05)
    rig = await rig_factory(
        scenario({}),
        mic=WavSource(wav, speed=2, tail_silence_s=None),
        tools=lambda bus: tools,
        idle_timeout_s=10.0,
        stall_timeout_s=0.5,
    )
    record = await run_two_turns(rig)
    assert len(record.connections) == 1, [c.close_code for c in record.connections]
    assert answered(record, "call-1") == [(0, True)]
    assert "duplicate_tool_response" not in [f.kind for f in record.faults]
    assert played(tmp_path / "reply.wav") == b"".join(record.reply_pcm)


async def test_silence_after_a_tool_answer_resumes_the_session(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    scn = Scenario(
        name="stall",
        speed=10.0,
        handles_during_tools=True,
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[FIND],
                stall_after_tool_response=True,
                reply_text="Aisle twelve.",
            )
        ],
    )
    rig = await rig_factory(scn, mic_speed=20.0, idle_timeout_s=10.0, stall_timeout_s=0.5)
    await rig.start()
    rig.appliance.press("gpio")
    await rig.emulator.wait_for(lambda r: completed(r, 0), timeout_s=30, what="the reply")
    rig.appliance.release("gpio")
    await rig.finish()
    first, second = rig.emulator.record.connections
    assert "stall_after_tool_response" in [f.kind for f in first.faults]
    assert first.closed_by == "client"
    assert second.resumed_phase == "reply"
    assert answered(rig.emulator.record, "call-1") == [(0, True)]
    assert played(tmp_path / "reply.wav") == rig.emulator.reply_audio(0)


async def test_a_tool_that_hangs_is_answered_with_a_timeout_error(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    tools = SlowTools(delay_s=3600)
    rig = await rig_factory(
        load_scenario("where-is-sku").model_copy(update={"speed": 10}),
        tools=lambda bus: tools,
        tool_timeout_s=0.3,
    )
    await rig.start()
    rig.appliance.press("gpio")
    await rig.emulator.wait_for_turns(1, timeout_s=30)
    rig.appliance.release("gpio")
    await rig.finish()
    (response,) = rig.emulator.record.tool_responses
    assert response.id == "call-1" and response.expected
    assert response.response["status"] == "error"
    assert response.response["code"] == "TOOL_TIMEOUT"
    assert response.response["retryable"] is True
    assert rig.emulator.record.turns[0].generation_complete
    events = read_events(tmp_path / "events.jsonl")
    assert [e["where"] for e in events if e["kind"] == "error"] == ["live.tools"]
    finished = [e for e in events if e["kind"] == "tool_result"]
    assert [(e["call_id"], e["status"]) for e in finished] == [("call-1", "error")]
