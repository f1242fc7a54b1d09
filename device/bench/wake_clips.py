"""The wake benchmark's positive clips: "hey jarvis" and, with no pause, a request, in noise.

    for clip in positive_clips():        # 108 phrases x 4 SNRs = 432 clips
        ...clip.audio[clip.wake_end:]    # the request, from its first sample

108 renditions of the wake phrase (9 espeak-ng voices x 4 speeds x 3 pitches), each followed at
once by one of the requests, at SNR none (a quiet room), 15, 10 and 5 dB, in warehouse-like
noise (`device.bench.wake_noise`: hum, beeps, impacts, babble, or all of them). Everything is
deterministic: the same clips, sample for sample, on every call and every machine with the
same espeak-ng.

espeak-ng is the slow part (tens of ms a call), so each synthesized part is cached: in memory,
and on disk under the temp directory keyed by text, voice, speed and pitch (and espeak-ng's
version). After the first run, iterating all 432 clips costs only the noise mixing: seconds.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.bench.wake_noise import NOISE_KINDS, mix_at_snr
from device.sim.speech import ESPEAK, synthesize

SAMPLE_RATE = 16000
WAKE_PHRASE = "hey jarvis"
VOICES = (
    "en",
    "en-us",
    "en+f3",
    "en-us+m2",
    "en+m3",
    "en-us+klatt",
    "en-gb-scotland",
    "en-029+f2",
    "en-gb-x-rp+m4",
)
SPEEDS = (130, 155, 180, 205)
PITCHES = (35, 50, 65)
SNRS: tuple[float | None, ...] = (None, 15.0, 10.0, 5.0)
REQUESTS = (
    "where is SKU one zero four four one seven",
    "move five from A twelve zero three to A fourteen zero one",
    "how many units are left in bay three",
    "report damage on this pallet",
)
LEAD_S = 1.0  # noise before the wake word: context for the detector's features
TAIL_S = 0.5  # noise after the request
QUICK_EVERY = 9  # --quick keeps every 9th phrase: 12 phrases, 48 clips
CACHE_ENV = "WAREHOUSE_VOICE_SPEECH_CACHE"


@dataclass(frozen=True)
class Clip:
    """One positive clip: int16 mono at 16 kHz. Offsets are sample indices into `audio`."""

    label: str
    snr_db: float | None  # None: a quiet room
    audio: np.ndarray
    wake_end: int  # just past the last sample of the wake word
    request_start: int  # the request's first sample (== wake_end: no pause)
    wake_start: int = 0
    voice: str = ""
    speed_wpm: int = 0
    pitch: int = 0
    noise: str = "none"


@dataclass(frozen=True)
class Phrase:
    voice: str
    speed_wpm: int
    pitch: int
    request: str


def phrases(quick: bool = False) -> list[Phrase]:
    combos = itertools.product(VOICES, SPEEDS, PITCHES)
    out = [
        Phrase(voice, wpm, pitch, REQUESTS[i % len(REQUESTS)])
        for i, (voice, wpm, pitch) in enumerate(combos)
    ]
    return out[::QUICK_EVERY] if quick else out


@functools.cache
def _espeak_version() -> str:
    try:
        return subprocess.run(
            [ESPEAK, "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip()
    except OSError:
        return "unknown"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        tempfile.gettempdir(), f"warehouse-voice-speech-{os.getuid()}"
    )
    return Path(root)


@functools.lru_cache(maxsize=4096)
def speech(text: str, voice: str, speed_wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng's `text`, trimmed, 16 kHz int16 (read-only), cached in memory and on disk."""
    key = f"{_espeak_version()}|{text}|{voice}|{speed_wpm}|{pitch}|{SAMPLE_RATE}"
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
    try:
        samples = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pcm = synthesize(text, voice=voice, speed_wpm=speed_wpm, pitch=pitch, rate=SAMPLE_RATE)
        samples = np.frombuffer(pcm, dtype="<i2").copy()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so parallel runs never read half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, samples, allow_pickle=False)
        os.replace(tmp, path)
    out: np.ndarray = np.asarray(samples, dtype="<i2")
    out.flags.writeable = False
    return out


def _clip(index: int, phrase: Phrase, snr_index: int, snr: float | None) -> Clip:
    wake = speech(WAKE_PHRASE, phrase.voice, phrase.speed_wpm, phrase.pitch)
    request = speech(phrase.request, phrase.voice, phrase.speed_wpm, phrase.pitch)
    lead, tail = round(LEAD_S * SAMPLE_RATE), round(TAIL_S * SAMPLE_RATE)
    spoken = np.concatenate([wake, request])
    total = lead + spoken.size + tail
    kind = "none" if snr is None else NOISE_KINDS[(index + snr_index) % len(NOISE_KINDS)]
    seed = 1000 * index + snr_index
    audio = mix_at_snr(spoken, lead, total, kind, snr, seed)
    audio.flags.writeable = False
    where = "quiet" if snr is None else f"{snr:g}dB {kind}"
    return Clip(
        label=f"{phrase.voice}@{phrase.speed_wpm}/p{phrase.pitch} {where}",
        snr_db=snr,
        audio=audio,
        wake_end=lead + wake.size,
        request_start=lead + wake.size,
        wake_start=lead,
        voice=phrase.voice,
        speed_wpm=phrase.speed_wpm,
        pitch=phrase.pitch,
        noise=kind,
    )


def positive_clips(quick: bool = False) -> Iterator[Clip]:
    """Every phrase at every SNR (quiet first), in a fixed order; `quick` is a 1-in-9 subset."""
    all_phrases = phrases()
    chosen = range(0, len(all_phrases), QUICK_EVERY if quick else 1)
    for snr_index, snr in enumerate(SNRS):
        for index in chosen:
            yield _clip(index, all_phrases[index], snr_index, snr)
