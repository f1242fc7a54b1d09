"""Whole turns through the real google-genai client against the emulator."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import pytest
from google import genai
from google.genai import errors, types

from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec, load_scenario
from device.sim.tls import client_ssl_context

from .helpers import (
    MODEL,
    RATE,
    Heard,
    live_config,
    receive_turn,
    record_message,
    sdk_client,
    send_audio,
    silence,
    sku_scenario,
    utterance,
)

pytestmark = pytest.mark.slow

Factory = Callable[..., Awaitable[Emulator]]


async def test_where_is_sku_full_turn(emulator_factory: Factory) -> None:
    scenario = load_scenario("where-is-sku").model_copy(update={"speed": 40.0})
    emu = await emulator_factory(scenario)
    heard = Heard()
    spoken = utterance(speech_s=0.6, pause_s=0.8)
    async with sdk_client(emu).aio.live.connect(
        model=MODEL, config=live_config(session_resumption={})
    ) as session:
        await send_audio(session, spoken)
        await receive_turn(session, heard)
        # The resumption handle follows turnComplete, so it arrives on the next pass.
        async for message in session.receive():
            record_message(heard, message)
            if heard.handles:
                break
    record = await emu.wait_for_turns(1)
    conn = record.connections[0]
    turn = record.turns[0]

    assert heard.input_text == "Where is SKU 104417?"
    assert [(c.id, c.name, c.args) for c in heard.tool_calls] == [
        ("call-1", "find_item", {"sku": "104417"})
    ]
    assert [(r.id, r.name, r.response) for r in turn.tool_responses] == [
        ("call-1", "find_item", {"location": "A-12-03-B", "qty": 40})
    ]
    assert heard.output_text == "Aisle twelve, bay three, level B, forty units."
    assert bytes(heard.audio) == bytes(turn.reply_pcm) == emu.reply_audio(0)
    assert len(heard.audio) > 2 * 24000  # more than a second of speech
    assert heard.mixed_frames > 0
    assert heard.generation_complete and heard.turn_complete and not heard.interrupted
    assert heard.handles == conn.handles_issued
    assert heard.usage and heard.usage[0].response_token_count
    # Every byte the client sent arrived, and the turn ended by silence, 500 ms after speech.
    assert bytes(conn.audio) == spoken
    assert turn.end_reason == "vad"
    assert turn.speech_start_sample == 0
    assert 9600 + 8000 <= turn.end_sample <= 9600 + 8000 + 320
    assert conn.raw_setup is not None
    assert conn.raw_setup["model"] == f"models/{MODEL}"
    assert conn.api_key == "test-key"


async def test_user_speech_with_espeak_audio(emulator_factory: Factory) -> None:
    speech = pytest.importorskip("device.sim.speech")
    if not speech.espeak_available():
        pytest.skip("espeak-ng is not installed")
    emu = await emulator_factory(sku_scenario())
    spoken = speech.synthesize("hey jarvis, where is SKU one zero four four one seven", rate=RATE)
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, silence(0.3) + spoken + silence(1.0))
        await receive_turn(session, heard)
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert heard.input_text == "Where is SKU 104417?"
    # Pauses between words are shorter than silenceDurationMs, so it stays one turn.
    assert len(emu.record.turns) == 1
    assert turn.speech_start_sample is not None
    assert 0.2 * RATE <= turn.speech_start_sample <= 0.4 * RATE
    assert turn.end_sample >= (0.3 + 0.5) * RATE + len(spoken) // 2 - 2000


async def test_text_input_is_a_turn(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_realtime_input(text="where is 104417")
        await receive_turn(session, heard)
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert (turn.end_reason, turn.user_text) == ("text", "where is 104417")
    assert bytes(heard.audio) == bytes(turn.reply_pcm)


async def test_transcriptions_only_when_the_setup_asks(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    heard = Heard()
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=config) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard)
    assert heard.audio and heard.turn_complete
    assert (heard.input_text, heard.output_text) == ("", "")


async def test_video_frames_are_recorded_with_their_position(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, silence(0.5))
        await session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))
        await session.send_realtime_input(text="what is this")
        await receive_turn(session, Heard())
    frames = emu.record.connections[0].video_frames
    assert [(f.mime_type, f.data, f.sample) for f in frames] == [("image/jpeg", jpeg, 8000)]


async def test_paced_jittery_reply_arrives_intact(emulator_factory: Factory) -> None:
    scenario = sku_scenario(audio_chunk_ms=20, audio_jitter_ms=3, audio_pace=0.9)
    emu = await emulator_factory(scenario)
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard)
    turn = (await emu.wait_for_turns(1)).turns[0]
    assert bytes(heard.audio) == bytes(turn.reply_pcm) == emu.reply_audio(0)


async def test_tool_timeout_cancels_the_call(emulator_factory: Factory) -> None:
    scenario = sku_scenario().model_copy(update={"tool_timeout_s": 0.3})
    emu = await emulator_factory(scenario)
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, heard, on_tool=None)
    assert heard.cancelled_ids == ["call-1"]
    assert [f.kind for f in emu.record.faults] == ["tool_timeout"]
    # Without the tool result the model still answers, as a stalled tool would force it to.
    assert heard.turn_complete


async def test_two_turns_then_the_script_runs_out(emulator_factory: Factory) -> None:
    scenario = Scenario(
        name="two",
        speed=50.0,
        turns=[
            TurnSpec(user_transcript="first", reply_text="one"),
            TurnSpec(user_transcript="second", reply_text="two"),
        ],
    )
    emu = await emulator_factory(scenario)
    transcripts = []
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        for _ in range(3):
            heard = Heard()
            await send_audio(session, utterance())
            await receive_turn(session, heard)
            transcripts.append((heard.input_text, heard.output_text, bool(heard.audio)))
    assert transcripts == [("first", "one", True), ("second", "two", True), ("", "", False)]
    assert [t.scenario_turn for t in emu.record.turns] == [0, 1, None]
    assert [f.kind for f in emu.record.faults] == ["scenario_exhausted"]


async def test_client_needs_to_trust_the_ca(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    client = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=emu.url, api_version="v1beta")
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        async with client.aio.live.connect(model=MODEL, config=live_config()):
            pass


async def test_ssl_cert_file_also_makes_the_sdk_trust_it(
    emulator_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulator_factory(sku_scenario())
    monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_file))
    client = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=emu.url, api_version="v1beta")
    )
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_realtime_input(text="hello")
        heard = await receive_turn(session, Heard())
    assert heard.turn_complete


async def test_wrong_api_key_is_closed_with_1008(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario(), api_key="right")
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emu, api_key="wrong").aio.live.connect(
            model=MODEL, config=live_config()
        ) as session:
            await receive_turn(session, Heard())
    assert caught.value.code == 1008
    assert "API key not valid" in str(caught.value)
    async with sdk_client(emu, api_key="right").aio.live.connect(
        model=MODEL, config=live_config()
    ) as session:
        await session.send_realtime_input(text="hello")
        assert (await receive_turn(session, Heard())).turn_complete


async def test_api_version_v1_is_refused_with_a_hint(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=emu.url,
            api_version="v1",
            async_client_args={"ssl": client_ssl_context(emu.ca_file)},
        ),
    )
    with pytest.raises(Exception, match="404"):
        async with client.aio.live.connect(model=MODEL, config=live_config()):
            pass


async def test_tool_call_spec_round_trips_args_verbatim(emulator_factory: Factory) -> None:
    call = ToolCallSpec(id="c-9", name="move_stock", args={"fromLocation": "A-12-03", "qty": 5})
    emu = await emulator_factory(
        Scenario(name="move", speed=50.0, turns=[TurnSpec(tool_calls=[call], reply_text="ok")])
    )
    heard = Heard()
    async with sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_realtime_input(text="move five")
        await receive_turn(session, heard)
    assert heard.tool_calls[0].args == {"fromLocation": "A-12-03", "qty": 5}
    assert emu.record.tool_responses[0].id == "c-9"


async def test_close_codes_say_who_hung_up(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    client = sdk_client(emu)
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await session.send_realtime_input(text="hi")
        await receive_turn(session, Heard())
    first = await emu.wait_for_close(0)
    assert (first.close_code, first.closed_by) == (1000, "client")
    with pytest.raises(errors.APIError) as caught:
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await emu.wait_for(lambda r: len(r.connections) == 2, what="second connection")
            await emu.stop()
            await receive_turn(session, Heard())
    assert caught.value.code == 1001
    second = emu.record.connections[1]
    assert (second.close_code, second.closed_by) == (1001, "server")
