"""Raw websocket frames: both key spellings, both base64 alphabets, and rejected frames."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from device.sim.emulator import Emulator
from device.sim.tls import client_ssl_context

from .helpers import MODEL, sku_scenario, utterance

pytestmark = pytest.mark.slow

Factory = Callable[..., Awaitable[Emulator]]
# 0xfb 0xff encodes to "+/" in standard base64 and "-_" in the url-safe alphabet, so each
# chunk below really exercises its alphabet.
MARKER = b"\xfb\xff\xfb\xff"


def ws_url(emu: Emulator, query: str = "") -> str:
    return emu.url.replace("https://", "wss://") + emu.ws_path + query


async def open_ws(emu: Emulator, query: str = "", key: str | None = "k") -> ClientConnection:
    headers = {"x-goog-api-key": key} if key else {}
    return await connect(
        ws_url(emu, query), ssl=client_ssl_context(emu.ca_file), additional_headers=headers
    )


def frames(camel: bool, audio: bytes) -> dict[str, Any]:
    """The frames of one turn, spelt entirely in camelCase or entirely in snake_case."""

    def k(camel_key: str, snake_key: str) -> str:
        return camel_key if camel else snake_key

    encode = base64.standard_b64encode if camel else base64.urlsafe_b64encode
    setup = {
        "model": f"models/{MODEL}",
        k("inputAudioTranscription", "input_audio_transcription"): {},
        k("realtimeInputConfig", "realtime_input_config"): {
            k("automaticActivityDetection", "automatic_activity_detection"): {
                k("silenceDurationMs", "silence_duration_ms"): 300
            }
        },
    }
    return {
        "setup": {"setup": setup},
        "audio": {
            k("realtimeInput", "realtime_input"): {
                "audio": {
                    "data": encode(audio).decode(),
                    k("mimeType", "mime_type"): "audio/pcm;rate=16000",
                }
            }
        },
        "tool": {
            k("toolResponse", "tool_response"): {
                k("functionResponses", "function_responses"): [
                    {"id": "call-1", "name": "find_item", "response": {"qtyOnHand": 40}}
                ]
            }
        },
    }


async def run_turn(ws: ClientConnection, spelt: dict[str, Any]) -> tuple[bytes, list[str]]:
    await ws.send(json.dumps(spelt["setup"]))
    assert json.loads(await ws.recv()) == {"setupComplete": {}}
    await ws.send(json.dumps(spelt["audio"]))
    audio, transcript = bytearray(), []
    while True:
        message = json.loads(await ws.recv())
        if "toolCall" in message:
            await ws.send(json.dumps(spelt["tool"]))
        content = message.get("serverContent", {})
        for part in content.get("modelTurn", {}).get("parts", []):
            audio += base64.b64decode(part["inlineData"]["data"])
        if "inputTranscription" in content:
            transcript.append(content["inputTranscription"]["text"])
        if content.get("turnComplete"):
            return bytes(audio), transcript


async def test_camel_and_snake_spellings_behave_the_same(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    audio = MARKER * 100 + utterance(0.5, 0.5)
    results = []
    for camel in (True, False):
        async with await open_ws(emu) as ws:
            results.append(await run_turn(ws, frames(camel, audio)))
    conns = emu.record.connections
    assert results[0] == results[1]
    assert results[0][0] == emu.reply_audio(0)
    assert "".join(results[0][1]) == "Where is SKU 104417?"
    assert conns[0].setup == conns[1].setup
    assert conns[0].raw_setup != conns[1].raw_setup
    for conn in conns:
        assert bytes(conn.audio) == audio
        assert [(r.id, r.response) for r in conn.tool_responses] == [("call-1", {"qtyOnHand": 40})]
        # The nested silenceDurationMs (300 ms) decided the turn end in both spellings.
        speech_end = (len(MARKER) * 100 // 2) + 8000
        assert conn.turns[0].end_sample - speech_end <= 300 * 16 + 320


async def test_key_as_query_parameter(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario(), api_key="sesame")
    async with await open_ws(emu, "?key=sesame", key=None) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}
    assert emu.record.connections[0].api_key == "sesame"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"realtime_input": {"text": "hi"}}, "first message must be setup"),
        ({"setup": {}}, "setup.model is required"),
        ({"bogus": {}}, "Unknown name 'bogus'"),
    ],
)
async def test_bad_first_frame_closes_1007(
    emulator_factory: Factory, first: dict[str, Any], reason: str
) -> None:
    emu = await emulator_factory(sku_scenario())
    async with await open_ws(emu) as ws:
        await ws.send(json.dumps(first))
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1007
    assert reason in caught.value.rcvd.reason


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "Invalid JSON payload"),
        ({"realtime_input": {"audio": {"data": "***", "mime_type": "audio/pcm"}}}, "base64"),
        ({"tool_response": {"function_responses": [{"name": "x"}]}}, ".id is required"),
        ({"setup": {"model": "again"}}, "only be sent once"),
        (
            {"realtime_input": {"audio": {"data": "AAAA", "mime_type": "audio/wav"}}},
            "audio/pcm",
        ),
    ],
)
async def test_bad_later_frames_close_1007(
    emulator_factory: Factory, frame: Any, reason: str
) -> None:
    emu = await emulator_factory(sku_scenario())
    async with await open_ws(emu) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        await ws.recv()
        await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, reason in caught.value.rcvd.reason) == (1007, True)
    assert emu.record.connections[0].close_code == 1007


async def test_wrong_path_is_a_404_naming_the_right_one(emulator_factory: Factory) -> None:
    emu = await emulator_factory(sku_scenario())
    url = emu.url.replace("https://", "wss://") + "/ws/elsewhere"
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, ssl=client_ssl_context(emu.ca_file))
    assert caught.value.response.status_code == 404
    assert emu.ws_path.encode() in caught.value.response.body
