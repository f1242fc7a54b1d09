"""One full conversation through the real google-genai client and the emulator."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

from device.audio.sink import PyAudioSink
from device.audio.wavio import read_wav
from device.config import REPO_CONFIG_DIR
from device.events import State
from device.service.eventlog import read_events
from device.sim.alsa import virtual_alsa
from device.sim.scenario import load_scenario

REQUEST_WAV = REPO_CONFIG_DIR / "demo" / "where-is-sku.wav"


async def talk_one_turn(rig: Any) -> None:
    """Hold the talk button through one turn, then let the session close."""
    runner = asyncio.create_task(rig.appliance.run())
    await asyncio.sleep(0)
    rig.appliance.press("gpio")
    await rig.emulator.wait_for_turns(1, timeout_s=30)
    rig.appliance.release("gpio")
    await rig.wait_until_idle_after_session()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    rig.event_log.close()


def wav_frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


async def test_one_turn_end_to_end(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = await rig_factory(load_scenario("where-is-sku"))
    await talk_one_turn(rig)

    conn = rig.emulator.record.connections[0]
    # The PCM the worker spoke arrived at the emulator, bit for bit, before the silence.
    request = read_wav(REQUEST_WAV, 16000)
    assert bytes(conn.audio[: len(request)]) == request
    # The emulator's tool call was answered once, with its own id.
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    responses = rig.emulator.record.tool_responses
    assert [(r.id, r.name, r.expected) for r in responses] == [("call-1", "find_item", True)]
    assert responses[0].response["status"] == "ok"
    # The reply audio landed in the speaker byte for byte.
    sent = rig.emulator.record.reply_pcm[0]
    assert len(sent) > 24000
    assert wav_frames(tmp_path / "reply.wav") == sent
    # The event log lists the states in order, and the transcripts.
    events = read_events(tmp_path / "events.jsonl")
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states == ["idle", "listening", "connecting", "conversing", "closing", "idle"]
    transcripts = [(e["role"], e["text"]) for e in events if e["kind"] == "transcript"]
    assert transcripts == [
        ("user", "Where is SKU 104417?"),
        ("model", "Aisle twelve, bay three, level B, forty units."),
    ]
    assert rig.appliance.state == State.IDLE


async def test_interrupted_reply_stops_at_the_speaker(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = load_scenario("where-is-sku")
    # The model's audio arrives far faster than the speaker plays it, so a backlog is queued
    # when `interrupted` comes; none of that backlog may reach the speaker.
    turn = base.turns[0].model_copy(update={"interrupt_after_ms": 1500})
    scenario = base.model_copy(update={"speed": 50.0, "turns": [turn]})
    rig = await rig_factory(scenario, speaker_speed=1.0)
    await talk_one_turn(rig)

    sent = rig.emulator.record.reply_pcm[0]
    assert rig.emulator.record.turns[0].interrupted
    assert len(sent) == 1500 * 48  # 1.5 s of 24 kHz PCM16 went out before the interruption
    # Closing writes the WAV header even when the cut came before anything was played.
    await rig.speaker.close()
    played = wav_frames(tmp_path / "reply.wav")
    assert sent.startswith(played)
    assert len(played) < len(sent) // 2
    kinds = [e["kind"] for e in read_events(tmp_path / "events.jsonl")]
    assert "interrupted" in kinds


async def test_reply_through_real_pyaudio_on_virtual_alsa(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same turn, played by PyAudio into ALSA's file-backed `vspk` device."""
    with virtual_alsa(tmp_path / "alsa") as alsa:
        rig = await rig_factory(load_scenario("where-is-sku"), speaker=PyAudioSink("vspk"))
        await talk_one_turn(rig)
        await rig.speaker.close()
        played = alsa.played(24_000, 1)
    sent = rig.emulator.record.reply_pcm[0]
    assert len(sent) > 24000
    assert played == sent
