"""The trim never cuts the request for want of evidence: unsure, it keeps up to 150 ms of the
wake word. (How precise the refined cut is: `python -m device.bench.wake_trim`.)"""

from __future__ import annotations

import numpy as np

from device.sim.speech import noise
from device.wake.detector import SAMPLE_RATE, WakeHit
from device.wake.endpoint import UNSURE_KEEP, EndFinder, needed_after, needed_before, unsure_end
from device.wake.models import ModelSet


def test_without_a_convincing_end_the_cut_keeps_150_ms_of_the_wake_word(
    model_set: ModelSet,
) -> None:
    melspec, embedding = model_set.feature_paths("onnx")
    finder = EndFinder(
        model_set.get("hey_jarvis", "onnx").path, melspec_path=melspec, embedding_path=embedding
    )
    # A "hit" on a steady hum: no sibilant, nothing the wake model would call its end.
    detected = 5 * SAMPLE_RATE
    hit = WakeHit(
        model="hey_jarvis", score=0.6, end_sample=detected - 2560, detected_sample=detected
    )
    origin = needed_before(hit)
    samples = needed_after(hit) - origin
    hum = np.frombuffer(noise(samples / SAMPLE_RATE, level_dbfs=-40, seed=4), "<i2")
    t = np.arange(hum.size) / SAMPLE_RATE
    audio = (hum + 3000 * np.sin(2 * np.pi * 120 * t)).astype(np.int16)

    estimate = finder.locate(audio, origin, hit)

    assert estimate.method == "detector"
    assert estimate.sample == unsure_end(hit) == hit.end_sample - UNSURE_KEEP
    assert UNSURE_KEEP == 150 * SAMPLE_RATE // 1000
