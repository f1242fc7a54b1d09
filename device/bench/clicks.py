"""Clicks in the model's voice, and finding them again in what the microphone heard.

A click is a 3 ms Hann-windowed 3 kHz burst: short enough that the emulator's voice activity
detector never takes its echo for speech (it needs 80 ms of sound), sharp enough to time to a
fraction of a millisecond, and below 8 kHz so it survives the 16 kHz microphone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLICK_HZ = 3000.0
CLICK_S = 0.003
CLICK_PEAK = 0.5
# An onset is where the signal first reaches this share of the click's own peak.
ONSET_SHARE = 0.25
# After an onset, ignore this long of ringing before looking for the next click.
DEAD_S = 0.05


def click(rate: int) -> np.ndarray:
    t = np.arange(round(CLICK_S * rate)) / rate
    return CLICK_PEAK * np.hanning(t.size) * np.sin(2 * np.pi * CLICK_HZ * t)


def click_reply(
    seconds: float, spacing_s: float, rate: int = 24_000, chunk_ms: int = 20
) -> tuple[bytes, list[int]]:
    """PCM16 silence with a click about every `spacing_s`, and each click's sample index.

    Each click sits at a different offset inside its `chunk_ms` reply chunk (a fixed
    pseudo-random sequence), so over a run the clicks meet the microphone's own chunking at
    every phase instead of always the same one.
    """
    if spacing_s < 2 * DEAD_S:
        raise ValueError(f"click spacing must be at least {2 * DEAD_S:g} s, got {spacing_s}")
    signal = np.zeros(round(seconds * rate))
    burst = click(rate)
    chunk = rate * chunk_ms // 1000
    step = max(chunk, round(spacing_s * rate) // chunk * chunk)
    offsets = np.random.default_rng(7).integers(0, chunk, size=signal.size // step + 1)
    positions = []
    for n, start in enumerate(range(0, signal.size - chunk - burst.size, step)):
        index = start + int(offsets[n])
        signal[index : index + burst.size] = burst
        positions.append(index)
    pcm = np.round(signal * 32767).astype("<i2").tobytes()
    return pcm, positions


def find_onsets(pcm: bytes, rate: int, start: int = 0, level: float = CLICK_PEAK) -> list[int]:
    """Sample indexes (from `start`) where clicks of about `level` peak begin in PCM16 audio."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2")[start:].astype(np.float64)) / 32768
    loud = np.nonzero(samples >= ONSET_SHARE * level)[0] + start
    onsets: list[int] = []
    dead = round(DEAD_S * rate)
    for index in loud:
        if not onsets or index - onsets[-1] >= dead:
            onsets.append(int(index))
    return onsets


@dataclass(frozen=True)
class Observation:
    """At `mono`, `count` samples had gone out (reply) or come in (microphone)."""

    mono: float
    count: int


def first_holding(sample: int, observations: list[Observation]) -> Observation | None:
    """The first observation by which `sample` had gone out or come in."""
    for obs in observations:
        if obs.count > sample:
            return obs
    return None
