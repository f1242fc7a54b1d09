"""Helpers for the audio tests: test signals, WAV files and spectrum checks."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def make_tone(freq: float, rate: int, seconds: float, amplitude: int = 12_000) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def peak_hz(pcm: bytes, rate: int) -> float:
    """The strongest frequency in mono PCM16, to within one FFT bin."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def write_wav(path: Path, frames: bytes, *, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


def read_wav_frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def noise(samples: int, seed: int = 0) -> bytes:
    """Random PCM16: no two chunks alike, so any lost, repeated or shifted byte shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(-30_000, 30_000, samples, dtype="<i2").tobytes()
