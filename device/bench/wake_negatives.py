"""The wake benchmark's negatives: hours of speech without the wake word, in warehouse noise.

Sentences (warehouse talk, general speech, near misses such as "hey Travis") are spoken by
espeak-ng in the positives' voices, speeds and pitches, each rendition synthesized once (and
cached on disk, `device.bench.wake_clips.speech`) and reused with a random gain, pause, noise
kind and SNR: ten hours cost at most a few thousand espeak calls, once per machine. The
stream is a generator of pieces, so ten hours never sit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from device.bench.wake_clips import PITCHES, SAMPLE_RATE, SNRS, SPEEDS, VOICES, speech
from device.bench.wake_noise import NOISE_KINDS, mix_at_snr

SENTENCES = (
    "move five from aisle twelve bay three to aisle fourteen bay one",
    "where is the pallet jack, I need it at dock door four",
    "count complete, forty units on level B",
    "the truck from the north depot is running about twenty minutes late",
    "can you scan that barcode again, the label is torn",
    "put the returns on the cart by the packing station",
    "we are short two cases of the blue widgets on this order",
    "forklift coming through, watch your feet",
    "the service lift is stuck again, call maintenance",
    "jars of jam go on the top shelf next to the harvest boxes",
    "hey Travis, are you on break already",
    "hey, are we shipping the Davis order today",
    "Harvey says the carvings arrived broken",
    "hey there, is this the right aisle for the garden hoses",
    "confirm, pick complete, next location please",
    "it is cold in the freezer zone, bring your gloves",
    "the quick brown fox jumps over the lazy dog",
    "please repeat the last location",
    "we need another roll of shrink wrap at station six",
    "Marvin and Travis are covering the late shift",
    "hey Jarrod, grab the scanner from the charging rack",
    "the jar is by the service desk, ask Harvey",
    "they are moving the jars of honey to aisle nine",
    "hey, hurry up, the driver is waiting at door two",
)


def negative_stream(seconds: float, *, seed: int = 7) -> Iterator[np.ndarray]:
    """About `seconds` of negatives as consecutive int16 pieces (one sentence and its pause)."""
    rng = np.random.default_rng(seed)
    produced, index = 0, 0
    total = round(seconds * SAMPLE_RATE)
    while produced < total:
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        voice = VOICES[int(rng.integers(len(VOICES)))]
        wpm = SPEEDS[int(rng.integers(len(SPEEDS)))]
        pitch = PITCHES[int(rng.integers(len(PITCHES)))]
        spoken = speech(text, voice, wpm, pitch).astype(np.float64)
        spoken *= 10 ** (rng.uniform(-6.0, 3.0) / 20)
        pause = round(rng.uniform(0.2, 1.5) * SAMPLE_RATE)
        snr = SNRS[int(rng.integers(len(SNRS)))]
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        piece = mix_at_snr(spoken, pause, pause + spoken.size, kind, snr, seed * 1_000_003 + index)
        piece = piece[: total - produced]
        produced += piece.size
        index += 1
        yield piece
