"""The emulated model's voice: each turn's reply as 24 kHz mono PCM16.

A turn's audio comes from its WAV file, else from espeak-ng speaking `reply_text` (cached on
disk, since synthesis costs ~100 ms a phrase), else from a deterministic tone pattern so the
emulator still works on a machine without espeak-ng.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr

from device.sim import speech
from device.sim.scenario import ScenarioError, TurnSpec

log = logging.getLogger(__name__)

OUTPUT_RATE = 24000
_CACHE_VERSION = "1"


def render_turn_audio(turn: TurnSpec, cache_dir: Path) -> bytes:
    """Blocking (file I/O, subprocess, resampling): run it in an executor."""
    if turn.reply_audio is not None:
        return load_wav(turn.reply_audio)
    if not turn.reply_text.strip():
        return b""
    return synthesize_cached(turn.reply_text, cache_dir)


def load_wav(path: Path, rate: int = OUTPUT_RATE) -> bytes:
    """Read a PCM16 WAV, mix it down to mono and resample it to `rate`."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels = wav.getsampwidth(), wav.getnchannels()
            src_rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ScenarioError(f"reply_audio {path}: cannot read it as WAV ({exc})") from exc
    if width != 2:
        raise ScenarioError(
            f"reply_audio {path}: {8 * width}-bit samples; convert it to 16-bit PCM "
            f"(sox {path.name} -b 16 out.wav)"
        )
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).astype(np.float32)
    mono = samples.mean(axis=1)
    if src_rate != rate:
        mono = np.asarray(soxr.resample(mono, src_rate, rate, quality="HQ"), dtype=np.float32)
    return bytes(np.clip(np.round(mono), -32768, 32767).astype("<i2").tobytes())


def synthesize_cached(text: str, cache_dir: Path, rate: int = OUTPUT_RATE) -> bytes:
    key = hashlib.sha256(f"{_CACHE_VERSION}|espeak|{rate}|{text}".encode()).hexdigest()[:32]
    cached = cache_dir / f"{key}.pcm"
    if cached.is_file():
        return cached.read_bytes()
    try:
        pcm = speech.synthesize(text, rate=rate)
    except (speech.SpeechError, OSError, ValueError, subprocess.SubprocessError) as exc:
        # The emulator must never fail for want of a voice; a tone pattern is still audio of
        # a plausible length that tests can compare byte for byte.
        log.warning("espeak-ng unavailable (%s); replying with a tone pattern", exc)
        return tone_pattern(text, rate)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pcm)
    os.replace(tmp, cached)
    return pcm


def tone_pattern(text: str, rate: int = OUTPUT_RATE) -> bytes:
    """One short tone per word, its pitch taken from the word's hash and its length from the
    word's length, with gaps between words: deterministic and roughly speech-paced."""
    pieces: list[np.ndarray] = []
    gap = np.zeros(int(0.06 * rate), dtype=np.float32)
    for word in text.split() or ["."]:
        digest = hashlib.sha256(word.encode()).digest()
        freq = 180.0 + (digest[0] / 255.0) * 220.0
        seconds = min(0.08 + 0.055 * len(word), 0.6)
        t = np.arange(int(seconds * rate), dtype=np.float32) / rate
        envelope = np.sin(np.pi * t / seconds) ** 0.5
        tone = 0.3 * envelope * (np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(4 * np.pi * freq * t))
        pieces.extend([tone.astype(np.float32), gap])
    signal = np.concatenate(pieces)
    return np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tobytes()
