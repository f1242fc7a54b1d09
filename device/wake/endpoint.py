"""Where exactly the wake word ended, so it can be trimmed without losing the worker's words.

openWakeWord fires some time after the wake word ends, and how long after varies with the
voice by about ±190 ms (its score crosses the threshold early for some voices and late for
others), far more than the 100 ms a no-pause request can spare. Once about 300 ms of audio after
the hit has arrived, `EndFinder.locate` refines the estimate from the audio around it:

1. Candidate boundaries between 700 ms before and 300 ms after the hit: the ends of sibilant
   bursts (energy mostly above 3.5 kHz and clearly above that band's floor). "Jarvis" ends in
   one, as do many wake words; the bursts inside the request are candidates too.
2. Each candidate is put to the wake model itself: the features are computed for the audio up to
   the candidate followed by quiet, as if the worker had stopped there, and the model scores
   them. A cut inside the wake word, or one that keeps part of the request, scores lower than a
   cut at the wake word's end. The best scoring candidate wins, the earliest on a tie.
3. Without a convincing candidate (noise drowned the hiss, or the word does not end in one) the
   detector's own estimate stands, the hit minus the model's `end_latency_s`, moved 150 ms
   earlier: unsure where the wake word ended, keep up to 150 ms of it rather than cut the
   request. (The detector's estimate is late by up to ~340 ms in noise, so this narrows the
   cuts into the request but does not end them; a dense grid of model-scored cuts was tried
   and took seconds per hit on a loaded machine.)

Measured by `python -m device.bench.wake_trim` (espeak voices and speeds, hey_jarvis): in a
quiet room every refined cut left no wake word and lost under 60 ms of the request, against
about half with the detector's estimate alone; in 5-20 dB noise about 70% against 58%. Spectral
change points in the mel features were tried as further candidates and did no better than the
detector's estimate, so they are not used.

Scoring runs openWakeWord's ONNX models (melspectrogram, embedding, wake word) directly with
onnxruntime, batched, on the caller's thread: call it from an executor, never the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.wake.detector import SAMPLE_RATE, WakeHit

log = logging.getLogger(__name__)

HOP = 160  # openWakeWord's mel frames are 10 ms apart...
WIN = 400  # ...and 25 ms long
EMB_FRAMES = 76  # mel frames per embedding
EMB_STEP = 8  # mel frames between embeddings
N_EMB = 16  # embeddings per wake-model input
SEARCH_BEFORE = 700 * SAMPLE_RATE // 1000
SEARCH_AFTER = 300 * SAMPLE_RATE // 1000
PAD = 240 * SAMPLE_RATE // 1000
# Audio needed before the earliest candidate: the wake model looks at about 2 s.
CONTEXT = (EMB_FRAMES + EMB_STEP * (N_EMB - 1)) * HOP + WIN + 8 * HOP
_SIBILANT_HF = 0.5
_SIBILANT_MIN_FRAMES = 3
_SIBILANT_OVER_FLOOR_DB = 6.0
_MIN_SCORE = 0.5
# Without any evidence of where the wake word ended, the detector's estimate is moved this much
# earlier: a little of the wake word is kept rather than the first word of the request lost.
UNSURE_KEEP = 150 * SAMPLE_RATE // 1000


def unsure_end(hit: WakeHit) -> int:
    """Where to cut when nothing refines `hit`: up to 150 ms before the detector's estimate."""
    return hit.end_sample - UNSURE_KEEP


@dataclass(frozen=True)
class EndEstimate:
    """`sample` is the stream offset where the wake word ends; `method` says how it was found:
    "sibilant" or "spectral" (refined), or "detector" (the detector's own estimate)."""

    sample: int
    method: str
    score: float = 0.0
    candidates: dict[int, float] = field(default_factory=dict)

    @property
    def refined(self) -> bool:
        return self.method != "detector"


def needed_before(hit: WakeHit) -> int:
    """The first stream offset `locate` reads for `hit`."""
    return hit.detected_sample - SEARCH_BEFORE - CONTEXT


def needed_after(hit: WakeHit) -> int:
    """The stream offset up to which `locate` wants audio for `hit`."""
    return hit.detected_sample + SEARCH_AFTER


class EndFinder:
    """Refines wake hits for one wake model (an .onnx file) with its feature models."""

    def __init__(self, wake_model: Path, *, melspec_path: Path, embedding_path: Path) -> None:
        for path in (wake_model, melspec_path, embedding_path):
            if path.suffix != ".onnx":
                raise ValueError(
                    f"{path}: refining the wake word's end needs the .onnx models (openWakeWord's "
                    "training writes both .onnx and .tflite); without them the detector's "
                    "estimate is used"
                )
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = ort.SessionOptions()
        # One thread: this runs beside the live wake detector on a small board.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1

        def session(path: Path) -> Any:
            return ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )

        self._mel = session(melspec_path)
        self._emb = session(embedding_path)
        self._wake = session(wake_model)
        self._wake_input = self._wake.get_inputs()[0].name

    # -- openWakeWord's features -------------------------------------------------------------

    def _melspec(self, segments: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(segments).astype(np.float32)
        out = self._mel.run(None, {"input": batch})[0]
        # The same transform openWakeWord applies to match Google's speech_embedding features.
        mel: np.ndarray = out.reshape(len(segments), -1, 32) / 10 + 2
        return mel

    def _embed(self, windows: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(windows)[..., None].astype(np.float32)
        out: np.ndarray = self._emb.run(None, {"input_1": batch})[0].reshape(len(windows), 96)
        return out

    def _score(self, features: np.ndarray) -> float:
        out = self._wake.run(None, {self._wake_input: features[None].astype(np.float32)})[0]
        return float(np.asarray(out).reshape(-1)[0])

    def completion_scores(self, x: np.ndarray, cuts: list[int]) -> list[float]:
        """The wake model's score if the audio stopped at each cut (offsets into `x`, multiples
        of 10 ms, each at least `CONTEXT` in) and quiet followed."""
        if not cuts:
            return []
        context = CONTEXT - CONTEXT % HOP
        pad = np.zeros(PAD, dtype=np.int16)
        full = self._melspec([x])[0]  # frame k covers x[k*HOP : k*HOP + WIN]
        local = self._melspec([np.concatenate([x[c - context : c], pad]) for c in cuts])
        frames = local.shape[1]
        first_pad_frame = (context - WIN) // HOP + 1
        # Windows reaching into the quiet are computed per cut; the rest come from `full`.
        fresh = [i for i in range(N_EMB) if frames - EMB_STEP * i > first_pad_frame]
        new = self._embed(
            [
                local[b, frames - EMB_FRAMES - EMB_STEP * i : frames - EMB_STEP * i]
                for b in range(len(cuts))
                for i in fresh
            ]
        ).reshape(len(cuts), len(fresh), 96)
        starts = {
            (c, i): (c - context) // HOP + frames - EMB_FRAMES - EMB_STEP * i
            for c in cuts
            for i in range(N_EMB)
            if i not in fresh
        }
        wanted = sorted(set(starts.values()))
        old = dict(
            zip(wanted, self._embed([full[s : s + EMB_FRAMES] for s in wanted]), strict=True)
        )
        scores = []
        for b, c in enumerate(cuts):
            rows = [
                new[b, fresh.index(i)] if i in fresh else old[starts[(c, i)]]
                for i in range(N_EMB - 1, -1, -1)
            ]
            scores.append(self._score(np.stack(rows)))
        return scores

    # -- candidate boundaries ----------------------------------------------------------------

    @staticmethod
    def sibilant_ends(x: np.ndarray, lo: int, hi: int) -> list[int]:
        """Ends (offsets into `x`, on the 10 ms grid) of sibilant bursts ending in [lo, hi]."""
        start = max(0, lo - SAMPLE_RATE)
        start -= start % HOP
        n = (hi - start) // HOP
        if n <= 0:
            return []
        frames = x[start : start + n * HOP].astype(np.float64).reshape(n, HOP)
        power = np.abs(np.fft.rfft(frames * np.hanning(HOP), axis=1)) ** 2
        hf = power[:, 35:].sum(axis=1) / (power.sum(axis=1) + 1e-9)  # share above 3.5 kHz
        # Judged in the band above 3.5 kHz, against that band's own floor: broadband noise
        # (fans, forklifts) fills the low band and would hide the hiss otherwise.
        band = 10 * np.log10(power[:, 35:].sum(axis=1) + 1.0)
        floor = float(np.percentile(band, 10))
        on = (hf >= _SIBILANT_HF) & (band >= floor + _SIBILANT_OVER_FLOOR_DB)
        ends: list[int] = []
        first: int | None = None
        last = 0
        for k in range(n + 1):
            if k < n and on[k]:
                first = k if first is None else first
                last = k
            elif first is not None and (k == n or k - last > 1):
                # A run survives one quiet frame inside it; two end it.
                end = start + (last + 1) * HOP
                if last + 1 - first >= _SIBILANT_MIN_FRAMES and lo <= end <= hi:
                    ends.append(end)
                first = None
        return ends

    # -- the answer --------------------------------------------------------------------------

    def locate(self, audio: np.ndarray, origin: int, hit: WakeHit) -> EndEstimate:
        """Refine `hit`. `audio` is int16 capture audio whose first sample is stream offset
        `origin`; it should span `needed_before(hit)` to `needed_after(hit)`."""
        fallback = EndEstimate(unsure_end(hit), "detector")
        det = hit.detected_sample - origin
        lo = max(det - SEARCH_BEFORE, CONTEXT)
        hi = min(det + SEARCH_AFTER, audio.size)
        # Candidates on the 10 ms grid of the buffer, as the features are.
        lo += -lo % HOP
        if hi - lo < HOP:
            log.info("not enough audio around the wake hit to refine its end")
            return fallback
        x = audio.astype(np.int16, copy=False)
        cuts = sorted({c - c % HOP for c in self.sibilant_ends(x, lo, hi) if c - c % HOP >= lo})
        scored = dict(zip(cuts, self.completion_scores(x, cuts), strict=True))
        # The highest score wins; rounding makes near-ties ties, which the earlier cut wins.
        best = max(scored, key=lambda c: (round(scored[c], 2), -c), default=None)
        candidates = {origin + c: round(s, 3) for c, s in sorted(scored.items())}
        if best is None or scored[best] < _MIN_SCORE:
            # Unsure: keep a little of the wake word rather than cut the request.
            return EndEstimate(unsure_end(hit), "detector", 0.0, candidates)
        return EndEstimate(origin + best, "sibilant", round(scored[best], 3), candidates)
