"""How conversations end: fatal closes stay ended, end_session and the maximum length close at
a turn boundary, and an unreachable endpoint shows offline until it is back."""

from __future__ import annotations

import asyncio
import socket
import wave
from pathlib import Path
from typing import Any

import pytest

from device.audio.cued import CuedWavSource
from device.audio.source import WavSource
from device.audio.wavio import read_wav
from device.config import REPO_CONFIG_DIR
from device.events import Event, Speaking, State
from device.live.cues import CuePlayed
from device.service.eventlog import read_events
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec, load_scenario
from tests.live.conftest import REQUEST_WAV

pytestmark = pytest.mark.slow

CUES = REPO_CONFIG_DIR / "cues"


def played(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


async def settle(rig: Any, cue: str) -> None:
    """Until the session is over and the speaker has said its spoken cue."""
    async with rig.bus.stream() as events, asyncio.timeout(30):
        while True:
            event = await events.get()
            if isinstance(event, CuePlayed):
                assert (event.name, event.played) == (cue, True)
                break
    await rig.speaker.drain()


async def test_refused_key_ends_in_error_says_why_and_stays_ended(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    rig = await rig_factory(load_scenario("where-is-sku"), api_key="not-the-key")
    await rig.start()
    rig.appliance.press("gpio")
    await settle(rig, "denied")
    rig.appliance.release("gpio")
    # Nothing retried: one refused connection, and the appliance stays in the error state.
    assert [c.close_code for c in rig.emulator.record.connections] == [1008]
    assert rig.appliance.state == State.ERROR
    assert rig.states[-2:] == [State.CLOSING, State.ERROR]
    await rig.finish()
    assert len(rig.emulator.record.connections) == 1
    errors = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "error"]
    assert [(e["where"], e["fatal"]) for e in errors] == [("live", True)]
    assert "1008" in errors[0]["message"] and "API key not valid" in errors[0]["message"]
    # The worker hears why: the "access refused" cue, and nothing else.
    assert played(tmp_path / "reply.wav") == read_wav(CUES / "denied.wav", 24000)


async def test_a_missing_cue_never_takes_the_appliance_down(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    rig = await rig_factory(
        load_scenario("where-is-sku"), api_key="not-the-key", cues_dir=str(tmp_path / "none")
    )
    await rig.start()
    async with rig.bus.stream() as events, asyncio.timeout(30):
        rig.appliance.press("gpio")
        while not isinstance(event := await events.get(), CuePlayed):
            pass
    rig.appliance.release("gpio")
    assert (event.name, event.played) == ("denied", False)
    assert rig.appliance.state == State.ERROR
    # Still alive: the next press tries again (and is refused again, the key being wrong).
    async with rig.bus.stream() as events, asyncio.timeout(30):
        rig.appliance.press("gpio")
        while not isinstance(await events.get(), CuePlayed):
            pass
    rig.appliance.release("gpio")
    await rig.finish()
    assert len(rig.emulator.record.connections) == 2
    assert [e["kind"] for e in read_events(tmp_path / "events.jsonl")].count("cue") == 2


async def test_1008_mid_reply_is_not_resumed(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = load_scenario("where-is-sku")
    turn = base.turns[0].model_copy(update={"close_code": 1008, "close_after_ms": 300})
    rig = await rig_factory(base.model_copy(update={"speed": 10.0, "turns": [turn]}))
    await rig.start()
    rig.appliance.press("gpio")
    await settle(rig, "error")
    rig.appliance.release("gpio")
    assert rig.appliance.state == State.ERROR
    await rig.finish()
    assert [c.close_code for c in rig.emulator.record.connections] == [1008]
    assert played(tmp_path / "reply.wav").endswith(read_wav(CUES / "error.wav", 24000))
    errors = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "error"]
    assert [(e["where"], e["fatal"]) for e in errors] == [("live", True)]


async def test_a_service_that_keeps_failing_is_given_up_on(  # type: ignore[no-untyped-def]
    rig_factory, tmp_path: Path
) -> None:
    # Every connection dies with 1011 right after it resumes: each link is short-lived, so
    # the backoff keeps growing and the reconnect budget runs out instead of looping forever.
    scenario = Scenario(
        name="keeps-failing",
        speed=10.0,
        handles_during_tools=True,
        repeat_faults=True,
        turns=[
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[ToolCallSpec(id="call-1", name="find_item", args={"sku": "1"})],
                close_during_tool_call=1011,
            )
        ],
    )
    rig = await rig_factory(
        scenario,
        mic_speed=20.0,
        idle_timeout_s=30.0,
        reconnect_base_s=0.05,
        reconnect_cap_s=0.2,
        reconnect_max_s=0.8,
    )
    await rig.start()
    rig.appliance.tap()
    await settle(rig, "error")
    await rig.finish()
    assert rig.appliance.state == State.ERROR
    conns = rig.emulator.record.connections
    assert len(conns) >= 3 and all(c.close_code == 1011 for c in conns)
    assert all(c.resumed_phase == "tools" for c in conns[1:])
    assert len(rig.tools.calls) == 1  # however often it failed, the tool ran once
    events = read_events(tmp_path / "events.jsonl")
    errors = [(e["where"], e["fatal"]) for e in events if e["kind"] == "error"]
    assert errors[-1] == ("live", False) and errors.count(("live.link", False)) == len(conns) - 1
    ended = [e["reason"] for e in events if e["kind"] == "session_ended"]
    assert len(ended) == 1 and ended[0].startswith("gave up reconnecting")


async def test_end_session_closes_after_the_goodbye(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = Scenario(
        name="end-session",
        speed=10.0,
        turns=[
            TurnSpec(
                user_transcript="That's all, thanks.",
                tool_calls=[
                    ToolCallSpec(id="end-1", name="end_session", args={"reason": "worker done"})
                ],
                reply_text="Goodbye.",
            )
        ],
    )
    rig = await rig_factory(scenario, mic_speed=20.0, idle_timeout_s=30.0)
    await rig.start()
    rig.appliance.tap()
    # No hang-up and no idle timeout (30 s): the tool alone ends the conversation.
    await rig.wait_until_idle_after_session(timeout_s=20)
    await rig.finish()
    conn = rig.emulator.record.connections[0]
    declared = [d["name"] for t in conn.setup["tools"] for d in t.get("function_declarations", [])]
    assert "end_session" in declared and "find_item" in declared
    (answer,) = conn.tool_responses
    assert (answer.id, answer.response["status"]) == ("end-1", "ok")
    assert rig.tools.calls == []  # answered by the live layer, never the warehouse tools
    assert conn.turns[0].generation_complete
    assert played(tmp_path / "reply.wav") == rig.emulator.reply_audio(0)
    ended = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "session_ended"]
    assert [e["reason"] for e in ended] == ["ended by the worker (worker done)"]
    assert rig.appliance.state == State.IDLE


async def test_maximum_session_length_ends_at_the_turn_boundary(  # type: ignore[no-untyped-def]
    rig_factory, mic_script, tmp_path: Path
) -> None:
    """The limit passes while the first reply plays: the reply is heard out, and the session
    ends at its end (the worker says nothing more, and the idle timeout is 30 s).

    The reply, not the wall clock, says when the limit passes: as it starts to play, the
    session's start is moved back by the limit. (With a 0.6 s limit on the wall clock, a loaded
    machine had not heard the question yet when it passed, and the session ended with no turn.)
    """
    scenario = Scenario(
        name="max-length",
        speed=2.0,
        turns=[
            TurnSpec(user_transcript="Where is SKU 104417?", reply_text="Aisle twelve, bay three.")
        ],
    )
    wav, _ = mic_script(1, gap_s=1.0)
    rig = await rig_factory(
        scenario,
        mic=WavSource(wav, speed=8, tail_silence_s=None),
        idle_timeout_s=30.0,
        max_session_s=60.0,
    )

    def limit_passes(event: Event) -> None:
        conversation = rig.appliance.conversation
        if isinstance(event, Speaking) and event.started and conversation is not None:
            conversation._limits.started -= 60.0

    rig.bus.subscribe(limit_passes)
    await rig.start()
    rig.appliance.tap()
    await rig.wait_until_idle_after_session(timeout_s=20)
    await rig.finish()
    (turn,) = rig.emulator.record.turns
    assert turn.generation_complete and not turn.interrupted
    assert played(tmp_path / "reply.wav") == rig.emulator.reply_audio(0)
    ended = [e for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "session_ended"]
    assert [e["reason"] for e in ended] == ["maximum session length (60 s) reached"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_offline_at_wake_then_back_by_itself(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens here yet
    scenario = load_scenario("where-is-sku").model_copy(update={"speed": 10.0})
    # The worker asks once the button works again. (A file played from the start had the
    # question over by then on a loaded machine, and the second press heard only silence.)
    mic = CuedWavSource(REQUEST_WAV, speed=8.0, chunk_ms=50)
    rig = await rig_factory(
        scenario,
        mic=mic,
        base_url=f"https://127.0.0.1:{port}",
        reconnect_base_s=0.05,
        offline_probe_max_s=0.1,
    )
    await rig.start()
    rig.appliance.press("gpio")
    await settle(rig, "offline")
    rig.appliance.release("gpio")
    assert rig.appliance.state == State.OFFLINE
    assert played(tmp_path / "reply.wav") == read_wav(CUES / "offline.wav", 24000)

    # The network comes back: the device notices by itself and shows idle again.
    back = Emulator(scenario, workdir=rig.emulator.workdir, port=port, api_key="test-key")
    await back.start()
    try:
        async with rig.bus.stream() as events, asyncio.timeout(20):
            while rig.appliance.state != State.IDLE:
                await events.get()
        assert rig.states[-2:] == [State.OFFLINE, State.IDLE]
        # And the next press has a conversation, with no restart.
        rig.appliance.press("gpio")
        mic.cue()
        await back.wait_for_turns(1, timeout_s=30)
        rig.appliance.release("gpio")
        await rig.finish()
    finally:
        await back.stop()
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    events = read_events(tmp_path / "events.jsonl")
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states[:6] == ["idle", "listening", "connecting", "closing", "offline", "idle"]
    assert "conversing" in states[6:]
