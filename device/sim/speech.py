"""Synthesized speech for tests, benchmarks and the demo: espeak-ng, resampled to 16 kHz PCM16.

espeak-ng stands in for a worker's voice wherever no microphone exists. It speaks a whole phrase
in one breath ("hey jarvis, where is SKU one zero four four one seven"), which is exactly the
no-pause case the appliance must handle.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

ESPEAK = "espeak-ng"
DEFAULT_RATE = 16000
# A trailing run quieter than this (about -54 dBFS) counts as silence when trimming.
_SILENCE_PEAK = 64


class SpeechError(RuntimeError):
    """espeak-ng is missing or refused the request."""


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice setting; `variant` is an espeak variant name such as "f3" or "klatt"."""

    name: str = "en"
    variant: str = ""
    speed_wpm: int = 160
    pitch: int = 50

    @property
    def spec(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


@functools.cache
def _known(kind: str) -> frozenset[str]:
    """Names espeak-ng accepts for voices (kind "") or variants (kind "variant"), lower-cased."""
    listing = subprocess.run(
        [ESPEAK, f"--voices={kind}" if kind else "--voices"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout.splitlines()[1:]
    names: set[str] = set()
    for line in listing:
        fields = line.split()
        if len(fields) >= 5:
            language, voice_name, file = fields[1], fields[3], fields[4]
            names.update({language.lower(), voice_name.lower(), file.lower()})
            names.add(file.rsplit("/", 1)[-1].lower())
    return frozenset(names)


def _check_voice(voice: str) -> None:
    name, _, variant = voice.partition("+")
    if name.lower() not in _known(""):
        raise SpeechError(
            f"espeak-ng has no voice {name!r}; list them with `espeak-ng --voices=en`"
        )
    if variant and variant.lower() not in _known("variant"):
        raise SpeechError(
            f"espeak-ng has no variant {variant!r} (in {voice!r}); "
            f"list them with `espeak-ng --voices=variant`"
        )


def synthesize(
    text: str,
    *,
    voice: str = "en",
    speed_wpm: int = 160,
    pitch: int = 50,
    rate: int = DEFAULT_RATE,
    trim: bool = True,
) -> bytes:
    """Speak `text` with espeak-ng and return mono PCM16 little-endian samples at `rate` Hz.

    `voice` takes espeak's `name+variant` form ("en-us", "en+f3"). With `trim`, the leading and
    trailing silence espeak adds is cut, so the length of the result is the length of the speech.
    """
    if not text.strip():
        raise ValueError("synthesize: text is empty; pass the words to speak")
    if not 80 <= speed_wpm <= 450:
        raise ValueError(f"synthesize: speed_wpm={speed_wpm} is outside espeak's 80..450 range")
    if not 0 <= pitch <= 99:
        raise ValueError(f"synthesize: pitch={pitch} is outside espeak's 0..99 range")
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise SpeechError("espeak-ng is not installed; install it with `apt-get install espeak-ng`")
    # espeak-ng quietly falls back to its default voice for an unknown name; refuse instead,
    # so a benchmark that asks for five voices really gets five.
    _check_voice(voice)
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode(errors="replace").strip() or f"exit code {proc.returncode}"
        raise SpeechError(f"espeak-ng failed for voice {voice!r}: {detail}")
    samples = _decode_wav(proc.stdout, rate)
    if trim:
        samples = trim_silence(samples)
    return samples.tobytes()


def synthesize_voice(text: str, voice: Voice, *, rate: int = DEFAULT_RATE) -> bytes:
    return synthesize(
        text, voice=voice.spec, speed_wpm=voice.speed_wpm, pitch=voice.pitch, rate=rate
    )


def _decode_wav(data: bytes, rate: int) -> np.ndarray:
    # espeak streams its WAV to stdout without knowing the length, so the header's sizes are
    # bogus; read the format from the header and take every byte after it as samples.
    with wave.open(io.BytesIO(data)) as wav:
        src_rate = wav.getframerate()
        channels = wav.getnchannels()
        width = wav.getsampwidth()
    if width != 2 or channels != 1:
        raise SpeechError(
            f"espeak-ng produced {channels}-channel {8 * width}-bit audio; expected mono 16-bit"
        )
    header = data.find(b"data")
    pcm = data[header + 8 :]
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    samples = np.frombuffer(pcm, dtype="<i2")
    if src_rate == rate:
        return samples.copy()
    resampled = np.asarray(soxr.resample(samples.astype(np.float32), src_rate, rate, quality="HQ"))
    return to_pcm16(resampled)


def to_pcm16(values: np.ndarray) -> np.ndarray:
    """Round and clip floats into little-endian int16: overload clips instead of wrapping."""
    out: np.ndarray = np.clip(np.round(values), -32768, 32767).astype("<i2")
    return out


def trim_silence(samples: np.ndarray, *, peak: int = _SILENCE_PEAK) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > peak)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def silence(seconds: float, *, rate: int = DEFAULT_RATE) -> bytes:
    return bytes(2 * round(seconds * rate))


def noise(
    seconds: float,
    *,
    level_dbfs: float = -40.0,
    rate: int = DEFAULT_RATE,
    seed: int = 0,
    color: Literal["white", "brown"] = "white",
) -> bytes:
    """Noise at an RMS level in dBFS; seeded so a failing test replays the same audio.

    "brown" noise (integrated white noise, energy falling 6 dB per octave) is closer to the
    rumble of forklifts and ventilation than white noise is.
    """
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, round(seconds * rate))
    if color == "brown" and values.size:
        # Shape the spectrum to 1/f amplitude, and cut below 20 Hz as a microphone would.
        spectrum = np.fft.rfft(values)
        freqs = np.fft.rfftfreq(values.size, 1 / rate)
        spectrum *= np.where(freqs >= 20.0, 20.0 / np.maximum(freqs, 20.0), 0.0)
        values = np.fft.irfft(spectrum, n=values.size)
    rms = float(np.sqrt(np.mean(values**2))) if values.size else 1.0
    target = 32768.0 * 10 ** (level_dbfs / 20)
    return to_pcm16(values * (target / (rms or 1.0))).tobytes()


def mix_at_snr(speech: bytes, noise_pcm: bytes, snr_db: float) -> bytes:
    """Add `noise_pcm` to `speech`, scaled so speech power over noise power is `snr_db`.

    The noise is tiled or cut to the speech's length. Speech power is measured over the whole
    clip, the usual definition for synthetic corpora.
    """
    s = np.frombuffer(speech, dtype="<i2").astype(np.float64)
    n = np.frombuffer(noise_pcm, dtype="<i2").astype(np.float64)
    if s.size == 0:
        return b""
    if n.size == 0:
        raise ValueError("mix_at_snr: noise is empty; pass at least one sample of noise")
    n = np.resize(n, s.size)
    p_speech = float(np.mean(s**2))
    p_noise = float(np.mean(n**2))
    if p_noise == 0.0:
        return speech
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    mixed = s + gain * n
    return to_pcm16(mixed).tobytes()


def synthesize_parts(
    parts: list[str],
    *,
    voice: str = "en",
    speed_wpm: int = 160,
    pitch: int = 50,
    gap_s: float = 0.0,
    rate: int = DEFAULT_RATE,
) -> tuple[bytes, list[int]]:
    """Speak `parts` back to back with no pause (or `gap_s`) and say where each one ends.

    Returns the audio and, for each part, the sample offset just past its last sample. This
    is the ground truth for no-pause tests: "hey jarvis" + "where is SKU one zero four four one
    seven" gives the exact sample where the wake word ends and the request begins.
    """
    gap = silence(gap_s, rate=rate)
    pieces: list[bytes] = []
    ends: list[int] = []
    total = 0
    for index, text in enumerate(parts):
        if index and gap:
            pieces.append(gap)
            total += len(gap) // 2
        pcm = synthesize(text, voice=voice, speed_wpm=speed_wpm, pitch=pitch, rate=rate)
        pieces.append(pcm)
        total += len(pcm) // 2
        ends.append(total)
    return b"".join(pieces), ends
