"""Warehouse-like noise, made deterministically with numpy: hum, beeps, impacts and babble.

Every generator takes a length in samples and a seed and returns float64 samples at unit RMS,
so a mix is scaled to an SNR in one place (`mix_at_snr`). The same seed gives the same noise
on every machine (numpy's PCG64 and FFTs), so a benchmark figure replays exactly.

- hum: ventilation and motor rumble: brown-ish broadband noise plus a 50 Hz mains hum with
  harmonics, slowly wobbling in level.
- beeps: reversing alarms and scanner beeps: 1-3 kHz tone bursts on a low broadband floor.
- impacts: pallets and totes dropped: decaying noise bursts at random times on a low floor.
- babble: other people talking far off: speech-shaped noise (formant-band filtered) under
  syllable-rate envelopes, several talkers at once.
- mix: all four together, at random weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16000
NOISE_KINDS = ("hum", "beeps", "impacts", "babble", "mix")


def _unit(values: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(values**2))) if values.size else 0.0
    return values / rms if rms > 0 else values


def _shaped(
    rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """White noise with its spectrum multiplied by `gain(frequency in Hz)`."""
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    spectrum *= gain(np.fft.rfftfreq(n, 1 / SAMPLE_RATE))
    return np.fft.irfft(spectrum, n=n)


def _brown(rng: np.random.Generator, n: int) -> np.ndarray:
    # 1/f amplitude above 20 Hz (a microphone's high-pass below it).
    return _unit(_shaped(rng, n, lambda f: np.where(f >= 20.0, 20.0 / np.maximum(f, 20.0), 0.0)))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    return _unit(
        _shaped(rng, n, lambda f: np.where(f >= 20.0, 1 / np.sqrt(np.maximum(f, 20.0)), 0.0))
    )


def hum(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0])
    tones = sum(
        (0.7**k) * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, 8)
    )
    wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return _unit(_brown(rng, n) * wobble + 0.8 * _unit(np.asarray(tones)))


def beeps(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = 0.05 * _pink(rng, n)
    t = np.arange(n) / SAMPLE_RATE
    freq = rng.uniform(1000.0, 3000.0)
    on_s, period_s = rng.uniform(0.1, 0.4), rng.uniform(0.5, 1.2)
    phase = rng.uniform(0, period_s)
    gate = ((t + phase) % period_s) < on_s
    # Short ramps so the bursts click no more than a real buzzer does.
    ramp = np.convolve(gate.astype(np.float64), np.ones(80) / 80, mode="same")
    out += ramp * np.sin(2 * np.pi * freq * t)
    return _unit(out)


def impacts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = 0.05 * _brown(rng, n)
    count = max(1, rng.poisson(n / SAMPLE_RATE * 0.8))
    for _ in range(count):
        start = int(rng.integers(0, max(1, n)))
        length = min(n - start, int(rng.uniform(0.1, 0.5) * SAMPLE_RATE))
        if length <= 0:
            continue
        decay = np.exp(-np.arange(length) / (rng.uniform(0.02, 0.12) * SAMPLE_RATE))
        out[start : start + length] += rng.uniform(0.5, 2.0) * decay * rng.normal(0, 1, length)
    return _unit(out)


def babble(n: int, seed: int, talkers: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    t = np.arange(n) / SAMPLE_RATE
    for _ in range(talkers):
        f1, f2 = rng.uniform(300.0, 900.0), rng.uniform(1000.0, 2500.0)

        def formants(f: np.ndarray, f1: float = f1, f2: float = f2) -> np.ndarray:
            return np.exp(-(((f - f1) / 250.0) ** 2)) + 0.6 * np.exp(-(((f - f2) / 400.0) ** 2))

        voice = _unit(_shaped(rng, n, formants))
        # Syllables at about 4 per second, with pauses between phrases.
        syllables = np.clip(
            np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 6.3)), 0, 1
        )
        phrases = np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3)) > -0.3
        out += rng.uniform(0.5, 1.0) * voice * syllables * phrases
    return _unit(out)


def mix(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.3, 1.0, 4)
    parts = (hum(n, seed + 1), beeps(n, seed + 2), impacts(n, seed + 3), babble(n, seed + 4))
    return _unit(sum(w * p for w, p in zip(weights, parts, strict=True)))


_MAKERS: dict[str, Callable[[int, int], np.ndarray]] = {
    "hum": hum,
    "beeps": beeps,
    "impacts": impacts,
    "babble": babble,
    "mix": mix,
}


BED_SAMPLES = 1 << 20  # 65.5 s of each kind, made once per process


@functools.lru_cache(maxsize=len(NOISE_KINDS))
def _bed(kind: str) -> np.ndarray:
    bed = _unit(_MAKERS[kind](BED_SAMPLES, NOISE_KINDS.index(kind) + 1))
    bed.flags.writeable = False
    return bed


def warehouse_noise(kind: str, n: int, seed: int) -> np.ndarray:
    """`n` samples of one kind of noise at unit RMS (float64), from a seeded place in a
    65 s bed of that kind (wrapping): making fresh noise per clip would cost more than the
    detector does."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown noise kind {kind!r}; use one of {', '.join(NOISE_KINDS)}")
    start = int(np.random.default_rng(seed).integers(0, BED_SAMPLES))
    return _unit(np.take(_bed(kind), np.arange(start, start + n), mode="wrap"))


def mix_at_snr(
    speech: np.ndarray, start: int, total: int, kind: str, snr_db: float | None, seed: int
) -> np.ndarray:
    """Speech placed at `start` in `total` samples of noise; int16 out.

    SNR is the speech's power (over its own span) over the noise's power. `snr_db` None is a
    quiet room: a -60 dBFS floor only.
    """
    s = speech.astype(np.float64)
    p_speech = float(np.mean(s**2)) if s.size else 1.0
    if snr_db is None:
        rng = np.random.default_rng(seed)
        out = rng.normal(0.0, 32768 * 10 ** (-60 / 20), total)
    else:
        out = warehouse_noise(kind, total, seed) * np.sqrt(p_speech / 10 ** (snr_db / 10))
    out[start : start + s.size] += s
    clipped: np.ndarray = np.clip(np.round(out), -32768, 32767).astype("<i2")
    return clipped
