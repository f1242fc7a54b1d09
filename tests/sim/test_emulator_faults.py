"""Each injected fault, and each turn-taking mode, as the real SDK observes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.genai import errors, types

from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, TurnSpec

from .helpers import (
    MODEL,
    Heard,
    answer_tool,
    live_config,
    receive_turn,
    record_message,
    sdk_client,
    send_audio,
    silence,
    sku_scenario,
    sku_two_turns,
    utterance,
    voiced,
)

pytestmark = pytest.mark.slow

Factory = Callable[..., Awaitable[Emulator]]
BYTES_PER_MS = 48  # 24 kHz PCM16


async def test_interrupt_after_ms_cuts_the_reply(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario(interrupt_after_ms=300))
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard)
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert heard.interrupted and heard.turn_complete and not heard.generation_complete
    assert len(heard.audio) == 300 * BYTES_PER_MS
    assert bytes(heard.audio) == bytes(turn.reply_pcm) == emu.reply_audio(0)[: 300 * BYTES_PER_MS]
    assert "Aisle twelve, bay three, level B, forty units.".startswith(heard.output_text)
    assert heard.output_text != "Aisle twelve, bay three, level B, forty units."
    assert turn.interrupted
    assert [f.kind for f in emu.record.faults] == ["interrupt"]


async def test_close_1011_mid_reply_raises_api_error(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario(close_code=1011, close_after_ms=200))
    heard = Heard()
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
            await send_audio(session, utterance())
            await receive_turn(session, heard)
    assert caught.value.code == 1011
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert bytes(heard.audio) == bytes(turn.reply_pcm) == emu.reply_audio(0)[: 200 * BYTES_PER_MS]
    assert not heard.turn_complete
    conn = emu.record.connections[0]
    assert (conn.close_code, conn.closed_by) == (1011, "server")


async def test_goaway_then_deadline_close(emulator_factory: Factory) -> None:
    scenario = sku_scenario().model_copy(update={"goaway_after_s": 0.5, "goaway_time_left_s": 2.0})
    emu = await emulator_factory(scenario)
    heard = Heard()
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
            await send_audio(session, silence(0.6))
            async for message in session.receive():
                record_message(heard, message)
                if heard.go_away:
                    break
            assert heard.go_away == ["2s"]
            # Two more seconds of audio reach the deadline; the service then drops the line.
            await send_audio(session, silence(2.0))
            await receive_turn(session, heard)
    assert caught.value.code == 1011
    assert "Deadline expired" in str(caught.value)
    assert [f.kind for f in emu.record.faults] == ["goaway", "goaway_deadline"]


async def test_duplicate_tool_calls_share_one_id(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario(duplicate_tool_calls=True))
    heard = Heard()
    answered: set[str] = set()

    async def answer_once(session: Any, call: types.FunctionCall) -> None:
        # What the device must do: filter ids it has already handled.
        if call.id not in answered:
            answered.add(str(call.id))
            await answer_tool(session, call)

    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard, on_tool=answer_once)
    assert [c.id for c in heard.tool_calls] == ["call-1", "call-1"]
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert [r.id for r in turn.tool_responses] == ["call-1"]
    assert bytes(heard.audio) == emu.reply_audio(0)
    assert [f.kind for f in emu.record.faults] == ["duplicate_tool_calls"]


async def test_speech_during_tool_wait_interrupts(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_two_turns())
    heard = Heard()

    async def talk_instead(session: Any, call: types.FunctionCall) -> None:
        await send_audio(session, voiced(0.3))

    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard, on_tool=talk_instead)
        assert heard.cancelled_ids == ["call-1"] and heard.interrupted
        assert not heard.audio
        second = Heard()
        await send_audio(session, silence(0.8))
        await receive_turn(session, second)
    assert second.input_text == "thanks" and second.output_text == "Bye."
    kinds = [m.kind for m in emu.record.connections[0].markers]
    assert kinds.count("barge_in") == 1


async def test_speech_during_reply_audio_interrupts(emulator_factory: Factory) -> None:
    # Real-time pacing leaves seconds of reply still to send when the user starts talking.
    emu = await emulator_factory(sku_two_turns().model_copy(update={"speed": 1.0}))
    heard = Heard()
    talked = False
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        async for message in session.receive():
            record_message(heard, message)
            for call in message.tool_call.function_calls or [] if message.tool_call else []:
                await answer_tool(session, call)
            if heard.audio and not talked:
                talked = True
                await send_audio(session, utterance(0.3, 0.8))
        second = await receive_turn(session, Heard())
    first = emu.record.turns[0]
    assert heard.interrupted and first.interrupted
    assert bytes(heard.audio) == bytes(first.reply_pcm)
    assert 0 < len(heard.audio) < len(emu.reply_audio(0))
    assert second.output_text == "Bye."
    assert len(emu.record.turns) == 2


async def test_no_interruption_mode_ignores_speech(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_two_turns())
    heard = Heard()

    async def talk_then_answer(session: Any, call: types.FunctionCall) -> None:
        await send_audio(session, utterance(0.3, 0.8))
        await answer_tool(session, call)

    config = live_config(realtime_input_config={"activity_handling": "NO_INTERRUPTION"})
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard, on_tool=talk_then_answer)
        # The speech over the reply is still a turn of its own, answered next.
        second = await receive_turn(session, Heard())
    assert not heard.interrupted and bytes(heard.audio) == emu.reply_audio(0)
    assert second.output_text == "Bye."


async def test_manual_activity_delimits_the_turn(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    config = live_config(realtime_input_config={"automatic_activity_detection": {"disabled": True}})
    heard = Heard()
    # The silence inside the activity is longer than any VAD timeout: only activityEnd ends it.
    spoken = voiced(0.3) + silence(1.5) + voiced(0.2)
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, silence(0.2))
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_audio(session, spoken)
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        await receive_turn(session, heard)
    conn = emu.record.connections[0]
    turn = conn.turns[0]
    start, end = 3200, 3200 + len(spoken) // 2
    assert (turn.end_reason, turn.speech_start_sample, turn.end_sample) == (
        "activity_end",
        start,
        end,
    )
    client_markers = [(m.kind, m.sample) for m in conn.markers if m.kind.startswith("activity")]
    assert client_markers == [("activity_start", start), ("activity_end", end)]
    assert len(conn.turns) == 1 and heard.turn_complete


async def test_activity_start_needs_manual_mode(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            await receive_turn(session, Heard())
    assert caught.value.code == 1007
    assert "automatic activity detection" in str(caught.value)


async def test_audio_stream_end_ends_a_turn_with_speech(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        # Silence and then audioStreamEnd: no speech, so no turn.
        await send_audio(session, silence(0.3))
        await session.send_realtime_input(audio_stream_end=True)
        # Speech cut off by the mic stopping, far short of the silence timeout.
        await send_audio(session, voiced(0.4) + silence(0.1))
        await session.send_realtime_input(audio_stream_end=True)
        heard = await receive_turn(session, Heard())
    conn = emu.record.connections[0]
    assert [t.end_reason for t in conn.turns] == ["audio_stream_end"]
    assert conn.turns[0].end_sample == 4800 + 6400 + 1600
    assert [m.sample for m in conn.markers if m.kind == "audio_stream_end"] == [4800, 12800]
    assert heard.turn_complete


async def test_silence_duration_from_setup_is_honoured(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    config = live_config(
        realtime_input_config={"automatic_activity_detection": {"silence_duration_ms": 1200}}
    )
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=config) as session:
        # A 1 s pause mid-sentence is not the end of the turn under a 1.2 s setting.
        await send_audio(session, voiced(0.4) + silence(1.0) + voiced(0.4) + silence(1.4))
        await receive_turn(session, Heard())
    turns = emu.record.connections[0].turns
    assert len(turns) == 1
    assert turns[0].end_sample == (0.4 + 1.0 + 0.4 + 1.2) * 16000


async def test_resumption_continues_the_script(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_two_turns())
    client = sdk_client(emu)
    heard = Heard()
    async with client.aio.live.connect(
        model=MODEL, config=live_config(session_resumption={})
    ) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard)
        async for message in session.receive():
            record_message(heard, message)
            if heard.handles:
                break
    (handle,) = heard.handles
    second = Heard()
    async with client.aio.live.connect(
        model=MODEL, config=live_config(session_resumption={"handle": handle})
    ) as session:
        await send_audio(session, utterance())
        await receive_turn(session, second)
    assert second.input_text == "thanks"
    assert emu.record.resumption_handles_presented == [handle]
    assert [t.scenario_turn for t in emu.record.turns] == [0, 1]


async def test_unknown_resumption_handle_is_refused(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emu).aio.live.connect(
            model=MODEL, config=live_config(session_resumption={"handle": "made-up"})
        ) as session:
            await receive_turn(session, Heard())
    assert caught.value.code == 1008
    assert emu.record.resumption_handles_presented == ["made-up"]


async def test_fresh_connections_restart_or_share_progress(emulator_factory: Factory) -> None:
    turns = [TurnSpec(user_transcript="a", reply_text="one"), TurnSpec(user_transcript="b")]
    results = {}
    for progress in ("connection", "shared"):
        scenario = Scenario(name=progress, speed=50.0, progress=progress, turns=turns)
        emu = await emulator_factory(scenario)
        texts = []
        for _ in range(2):
            async with sdk_client(emu).aio.live.connect(
                model=MODEL, config=live_config()
            ) as session:
                await session.send_realtime_input(text="hi")
                texts.append((await receive_turn(session, Heard())).input_text)
        results[progress] = texts
    assert results == {"connection": ["a", "a"], "shared": ["a", "b"]}


async def test_typed_input_during_tool_wait_interrupts(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_two_turns())
    heard = Heard()

    async def type_instead(session: Any, call: types.FunctionCall) -> None:
        await session.send_realtime_input(text="never mind, thanks")

    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard, on_tool=type_instead)
        second = await receive_turn(session, Heard())
    assert heard.interrupted and heard.cancelled_ids == ["call-1"]
    assert second.output_text == "Bye."
    assert emu.record.turns[1].user_text == "never mind, thanks"
