"""Clicks: placed where they say, found again after the trip through a 16 kHz microphone, and
timed from the moment each was due to the frame that brought its echo back."""

from __future__ import annotations

import numpy as np
import soxr

from device.bench.click_server import _Timeline, results
from device.bench.clicks import Observation, click_reply, find_onsets, first_holding
from device.bench.roundtrip import hum
from device.sim.record import ConnectionRecord, EmulatorRecord, TurnRecord

REPLY_RATE, MIC_RATE, CHUNK = 24_000, 16_000, 480


def heard_through_mic(reply: bytes, delay_samples: int, seconds: float) -> bytes:
    """The reply as a 16 kHz microphone hears it `delay_samples` later, over faint noise."""
    x = np.frombuffer(reply, dtype="<i2").astype(np.float64)
    y = soxr.resample(x, REPLY_RATE, MIC_RATE)
    out = np.random.default_rng(3).normal(0, 30, round(seconds * MIC_RATE))
    out[delay_samples : delay_samples + y.size] += y[: out.size - delay_samples]
    return bytes(np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes())


def test_clicks_fall_inside_their_chunks_at_varied_offsets() -> None:
    pcm, positions = click_reply(3.0, 0.2)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(positions) == 15
    assert {p // CHUNK for p in positions} == {10 * i for i in range(15)}
    assert len({p % CHUNK for p in positions}) > 5
    for p in positions:
        assert samples[p : p + 72].any() and not samples[p - 24 : p].any()


def test_clicks_are_found_again_after_the_microphone() -> None:
    pcm, positions = click_reply(3.0, 0.2)
    onsets = find_onsets(heard_through_mic(pcm, 1234, 3.5), MIC_RATE)
    expected = [round(p * MIC_RATE / REPLY_RATE) + 1234 for p in positions]
    assert len(onsets) == len(expected)
    assert max(abs(a - b) for a, b in zip(onsets, expected, strict=True)) <= 10


def test_the_turn_ending_hum_never_passes_for_a_click() -> None:
    assert find_onsets(hum() * 3, MIC_RATE) == []


def test_first_holding_finds_the_observation_that_brought_a_sample() -> None:
    seen = [Observation(1.0, 320), Observation(1.02, 640), Observation(1.04, 960)]
    assert first_holding(0, seen) == seen[0]
    assert first_holding(320, seen) == seen[1]
    assert first_holding(959, seen) == seen[2]
    assert first_holding(960, seen) is None


def test_round_trips_run_from_the_click_being_due_to_its_echo_arriving() -> None:
    t0, trip_s = 100.0, 0.05
    pcm, positions = click_reply(1.0, 0.2)
    # The device heard each click `trip_s` after it was due; its mic sends 20 ms frames.
    echo = round(trip_s * MIC_RATE)
    mic = heard_through_mic(pcm, echo, 1.2)
    record = EmulatorRecord(
        connections=[ConnectionRecord(index=0, path="/", audio=bytearray(mic), audio_rate=MIC_RATE)]
    )
    record.connections[0].turns.append(
        TurnRecord(
            scenario_turn=0, end_reason="vad", end_sample=0, reply_pcm=bytearray(pcm), finished=True
        )
    )
    # Stamped by the emulator as each frame passed: reply chunks out, mic frames in.
    chunks = len(pcm) // 2 // CHUNK
    turn = record.connections[0].turns[0]
    turn.reply_sent_at = [(t0 + k * 0.02, (k + 1) * CHUNK) for k in range(chunks)]
    frames = len(mic) // 2 // 320
    record.connections[0].audio_at = [(t0 + (k + 1) * 0.02, (k + 1) * 320) for k in range(frames)]

    out = results(record, _Timeline(), positions, 0.2)

    due = [t0 + p / REPLY_RATE for p in positions]
    # Each echo is due back with the 20 ms mic frame that holds its first sample.
    arrival = [t0 + (s // 320 + 1) * 0.02 for s in find_onsets(mic, MIC_RATE)]
    expected = [1000 * (a - d) for a, d in zip(arrival, due, strict=True)]
    assert out["missing_clicks"] == 0
    assert np.allclose(out["round_trips_ms"], expected, atol=1e-6)
    # Waiting for the mic frame to fill is part of what the device adds: never less than
    # the trip itself, never more than one frame beyond it.
    assert all(1000 * trip_s <= rt <= 1000 * trip_s + 20 for rt in out["round_trips_ms"])
    assert out["first_click_ms"] == out["round_trips_ms"][:1]
    assert out["turns"] == 1


def test_a_click_with_no_echo_is_counted_missing() -> None:
    pcm, positions = click_reply(1.0, 0.2)
    record = EmulatorRecord(
        connections=[
            ConnectionRecord(index=0, path="/", audio=bytearray(16_000), audio_rate=MIC_RATE)
        ]
    )
    record.connections[0].turns.append(
        TurnRecord(scenario_turn=0, end_reason="vad", end_sample=0, reply_pcm=bytearray(pcm))
    )
    record.connections[0].turns[0].reply_sent_at = [(5.0, len(pcm) // 2)]
    record.connections[0].audio_at = [(5.5, 8000)]
    out = results(record, _Timeline(), positions, 0.2)
    assert out["round_trips_ms"] == []
    assert out["missing_clicks"] == len(positions)
