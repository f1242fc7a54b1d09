"""Helpers for the emulator tests: speech-like audio, SDK clients and turn collection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google import genai
from google.genai import types

from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec
from device.sim.tls import client_ssl_context

RATE = 16000
MODEL = "gemini-3.1-flash-live-preview"


def voiced(seconds: float, *, level_dbfs: float = -18.0, rate: int = RATE) -> bytes:
    """A vowel-like signal: a 140 Hz harmonic series under a syllable-rate envelope, loud
    enough that every 20 ms frame is well above any speech threshold."""
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    signal = signal * (0.75 + 0.25 * np.sin(2 * np.pi * 4 * t))
    rms = float(np.sqrt(np.mean(signal**2)))
    gain = 32768 * 10 ** (level_dbfs / 20) / rms
    return bytes(np.clip(np.round(signal * gain), -32768, 32767).astype("<i2").tobytes())


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(2 * int(seconds * rate))


def noise(seconds: float, level_dbfs: float, seed: int = 1, rate: int = RATE) -> bytes:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 32768 * 10 ** (level_dbfs / 20), int(seconds * rate))
    return bytes(np.clip(np.round(values), -32768, 32767).astype("<i2").tobytes())


def utterance(speech_s: float = 0.6, pause_s: float = 0.8) -> bytes:
    return voiced(speech_s) + silence(pause_s)


def sku_scenario(**turn_overrides: Any) -> Scenario:
    """where-is-sku with faults and pacing set per test; fast, and with a short tool timeout."""
    turn: dict[str, Any] = {
        "user_transcript": "Where is SKU 104417?",
        "tool_calls": [ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})],
        "reply_text": "Aisle twelve, bay three, level B, forty units.",
    }
    turn.update(turn_overrides)
    return Scenario(name="sku-test", speed=40.0, tool_timeout_s=5.0, turns=[TurnSpec(**turn)])


def sdk_client(emu: Emulator, api_key: str = "test-key") -> genai.Client:
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=emu.url,
            api_version="v1beta",
            async_client_args={"ssl": client_ssl_context(emu.ca_file)},
        ),
    )


def live_config(**overrides: Any) -> types.LiveConnectConfig:
    config: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "input_audio_transcription": {},
        "output_audio_transcription": {},
    }
    config.update(overrides)
    return types.LiveConnectConfig(**config)


async def send_audio(session: Any, pcm: bytes, chunk_ms: int = 20) -> None:
    step = 2 * RATE * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + step], mime_type=f"audio/pcm;rate={RATE}")
        )


@dataclass
class Heard:
    """Everything a client got from the server, in arrival order."""

    audio: bytearray = field(default_factory=bytearray)
    input_text: str = ""
    output_text: str = ""
    tool_calls: list[types.FunctionCall] = field(default_factory=list)
    cancelled_ids: list[str] = field(default_factory=list)
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    go_away: list[str | None] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)
    mixed_frames: int = 0  # frames carrying audio and a transcript together
    usage: list[types.UsageMetadata] = field(default_factory=list)


ToolHandler = Callable[[Any, types.FunctionCall], Awaitable[None]]


async def answer_tool(session: Any, call: types.FunctionCall) -> None:
    await session.send_tool_response(
        function_responses=[
            types.FunctionResponse(
                id=call.id, name=call.name, response={"location": "A-12-03-B", "qty": 40}
            )
        ]
    )


async def receive_turn(
    session: Any, heard: Heard, on_tool: ToolHandler | None = answer_tool
) -> Heard:
    """One `session.receive()` pass: it ends at turnComplete, or raises on a close."""
    async for message in session.receive():
        record_message(heard, message)
        if message.tool_call and on_tool is not None:
            for call in message.tool_call.function_calls or []:
                await on_tool(session, call)
    return heard


def record_message(heard: Heard, message: types.LiveServerMessage) -> None:
    content = message.server_content
    if content is not None:
        has_audio = False
        if content.model_turn:
            for part in content.model_turn.parts or []:
                if part.inline_data and part.inline_data.data:
                    assert part.inline_data.mime_type == "audio/pcm;rate=24000"
                    heard.audio += part.inline_data.data
                    has_audio = True
        if content.input_transcription and content.input_transcription.text:
            heard.input_text += content.input_transcription.text
        if content.output_transcription and content.output_transcription.text:
            heard.output_text += content.output_transcription.text
            heard.mixed_frames += int(has_audio)
        heard.interrupted |= bool(content.interrupted)
        heard.generation_complete |= bool(content.generation_complete)
        heard.turn_complete |= bool(content.turn_complete)
    if message.tool_call:
        heard.tool_calls.extend(message.tool_call.function_calls or [])
    if message.tool_call_cancellation:
        heard.cancelled_ids.extend(message.tool_call_cancellation.ids or [])
    if message.go_away:
        heard.go_away.append(message.go_away.time_left)
    update = message.session_resumption_update
    if update and update.new_handle:
        heard.handles.append(update.new_handle)
    if message.usage_metadata:
        heard.usage.append(message.usage_metadata)


def sku_two_turns(**first: Any) -> Scenario:
    base = sku_scenario(**first)
    return base.model_copy(
        update={"turns": [*base.turns, TurnSpec(user_transcript="thanks", reply_text="Bye.")]}
    )
