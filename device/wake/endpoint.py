"""Where exactly the wake word ended, so it can be trimmed without losing the worker's words.

openWakeWord fires some time after the wake word ends, and how long after varies with the
voice by about ±190 ms (its score crosses the threshold early for some voices and late for
others), far more than the 100 ms a no-pause request can spare. Once about 300 ms of audio after
the hit has arrived, `EndFinder.locate` places the cut from the audio around it, never later
than the audio proves the wake word was complete:

1. The earliest plausible end: cuts every 20 ms from 900 ms before the hit, in order, are
   put to the wake model itself: the features are computed for the audio up to the cut
   followed by quiet, as if the worker had stopped there, and the model scores them. The
   first cut it scores 0.5 or more (or the one 10 ms before it, if that scores so too) is
   where "hey jarvis" could already be over. The model
   accepts a wake word with its last sound clipped, so this cut mostly falls 60-400 ms before
   the true end; on fast speech it was seen up to ~40 ms after it, so without better evidence
   the cut goes 80 ms before it: some of the wake word is kept, none of the request.
2. Closer candidates: the ends of sibilant bursts (energy mostly above 3.5 kHz and clearly
   above that band's floor) up to 450 ms after that earliest end. "Jarvis" ends in one; when
   one of them the wake model also scores 0.5 or more, the cut goes 20 ms before the end of
   the first burst (the burst's end is found on a 10 ms grid). The first burst need not be
   the convincing one: in impact noise the word's own "s" can score low while a hiss in the
   request scores high, and cutting before the later one lost 137 ms of the request.
3. Without a convincing burst, 80 ms before the earliest plausible end; but when the model
   came close (0.2 or more) in the 400 ms before that end, we are unsure, and the cut goes
   40 ms before that near miss if that is earlier. In beeping noise the word's true end often
   scores 0.2-0.5 and 0.5 only comes 100-270 ms into the request. Without even an earliest
   end (noise drowned the word) the detector's own estimate is used, moved 150 ms earlier.

When unsure, the rule is to keep up to 150 ms of the wake word rather than cut the request:
tests/wake/test_wake_trim.py (acceptance) runs all 269 detected benchmark clips and no cut
reaches into the request (before these two unsure rules, 9 did, by 3-188 ms). The median cut
keeps 151 ms of the wake word; half the cuts keep 150 ms or less.

The detector's estimate alone (the hit minus the model's `end_latency_s`) is late by up to
~340 ms in noise, so any fixed offset from it either cuts requests or keeps half the wake word;
the earliest plausible end is a bound the audio itself gives.

Scoring runs openWakeWord's ONNX models (melspectrogram, embedding, wake word) directly with
onnxruntime, batched, on the caller's thread: call it from an executor, never the event loop.
It costs 20-50 model-scored cuts per hit, 0.3-0.4 CPU s on a loaded x86 core (more than the
~0.1 s of scoring the sibilant candidates alone); the unsure rules reuse scores the scan computes
anyway, so they cost nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.wake.detector import SAMPLE_RATE, WakeHit

log = logging.getLogger(__name__)

HOP = 160  # openWakeWord's mel frames are 10 ms apart...
WIN = 400  # ...and 25 ms long
EMB_FRAMES = 76  # mel frames per embedding
EMB_STEP = 8  # mel frames between embeddings
N_EMB = 16  # embeddings per wake-model input
SEARCH_BEFORE = 900 * SAMPLE_RATE // 1000
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
# The earliest plausible end can fall a little after the true end, on fast speech: cut this
# much before it when no hiss says better.
EARLIEST_MARGIN = 80 * SAMPLE_RATE // 1000
# How far after the earliest plausible end the wake word's final hiss may end.
MAX_TAIL = 450 * SAMPLE_RATE // 1000
# A burst's end is known to a 10 ms frame: cut this much before it, not into what follows.
SIBILANT_MARGIN = 20 * SAMPLE_RATE // 1000
# Unsure: the model came close (0.2 or more) within 400 ms before the first cut it scored 0.5.
# In beeping noise the word's true end often scores 0.2-0.5 and 0.5 comes only 100-270 ms into
# the request; the near miss is where the word could already be over.
_NEAR_SCORE = 0.2
_NEAR_WINDOW = 400 * SAMPLE_RATE // 1000
NEAR_MARGIN = 40 * SAMPLE_RATE // 1000
_SCAN_BATCH = 8  # cuts scored per model run while looking for the earliest plausible end
# The earliest plausible end is looked for every 20 ms, then 10 ms before the first hit.
_SCAN_STEP = 2 * HOP


def unsure_end(hit: WakeHit) -> int:
    """Where to cut when nothing refines `hit`: up to 150 ms before the detector's estimate."""
    return hit.end_sample - UNSURE_KEEP


@dataclass
class _Cache:
    """What `completion_scores` can share between calls on the same audio."""

    full: np.ndarray | None = None  # the melspectrogram of all of it
    embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # by first mel frame


@dataclass(frozen=True)
class EndEstimate:
    """`sample` is the stream offset where the wake word ends; `method` says how it was found:
    "sibilant" (its final hiss), "earliest" (the earliest plausible end), or "detector" (the
    detector's own estimate, moved 150 ms earlier)."""

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
        from device.wake.runtime import load_session

        # The detector's own sessions for the same files (one thread each, as it runs beside
        # the live detector on a small board): a second set would cost ~22 MB.
        self._mel = load_session(melspec_path)
        self._emb = load_session(embedding_path)
        self._wake = load_session(wake_model)
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

    def _score(self, features: np.ndarray) -> list[float]:
        """Wake scores for a batch of [N_EMB, 96] feature stacks, one model run each (the
        model's batch dimension is fixed at one)."""
        return [
            float(np.asarray(self._wake.run(None, {self._wake_input: f[None]})[0]).reshape(-1)[0])
            for f in features.astype(np.float32)
        ]

    def completion_scores(
        self, x: np.ndarray, cuts: list[int], cache: _Cache | None = None
    ) -> list[float]:
        """The wake model's score if the audio stopped at each cut (offsets into `x`, multiples
        of 10 ms, each at least `CONTEXT` in) and quiet followed. Pass one `cache` to all the
        calls on the same `x`: the embeddings that see no quiet are shared between cuts."""
        if not cuts:
            return []
        cache = cache if cache is not None else _Cache()
        if cache.full is None:
            cache.full = self._melspec([x])[0]  # frame k covers x[k*HOP : k*HOP + WIN]
        full = cache.full
        context = CONTEXT - CONTEXT % HOP
        pad = np.zeros(PAD, dtype=np.int16)
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
        wanted = sorted(set(starts.values()) - cache.embeddings.keys())
        if wanted:
            rows = self._embed([full[s : s + EMB_FRAMES] for s in wanted])
            cache.embeddings.update(zip(wanted, rows, strict=True))
        old = cache.embeddings
        batch = np.stack(
            [
                np.stack(
                    [
                        new[b, fresh.index(i)] if i in fresh else old[starts[(c, i)]]
                        for i in range(N_EMB - 1, -1, -1)
                    ]
                )
                for b, c in enumerate(cuts)
            ]
        )
        return self._score(batch)

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

    def earliest_end(
        self, x: np.ndarray, lo: int, hi: int, cache: _Cache | None = None
    ) -> int | None:
        """The first cut on the 10 ms grid from `lo` to `hi` (offsets into `x`, `lo` on the
        grid) that the wake model scores as a complete wake word; None if none is."""
        return self.scan(x, lo, hi, cache)[0]

    def scan(
        self, x: np.ndarray, lo: int, hi: int, cache: _Cache | None = None
    ) -> tuple[int | None, int | None]:
        """`earliest_end`, and the first near miss (a cut scoring `_NEAR_SCORE` or more) in
        the `_NEAR_WINDOW` before it, if any. The near misses come free: every cut before
        the earliest end is scored on the way to it."""
        near: list[int] = []
        for start in range(lo, hi + 1, _SCAN_STEP * _SCAN_BATCH):
            cuts = list(range(start, min(hi + 1, start + _SCAN_STEP * _SCAN_BATCH), _SCAN_STEP))
            scores = self.completion_scores(x, cuts, cache)
            for cut, score in zip(cuts, scores, strict=True):
                if score >= _MIN_SCORE:
                    # Earlier is safer: the cut between this one and the last is tried too.
                    between = cut - HOP
                    scores = self.completion_scores(x, [between], cache) if between > lo else []
                    end = between if scores and scores[0] >= _MIN_SCORE else cut
                    close = [c for c in near if c >= end - _NEAR_WINDOW]
                    return end, (close[0] if close else None)
                if score >= _NEAR_SCORE:
                    near.append(cut)
        return None, None

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
        scan_end = min(det, hi)
        cache = _Cache()
        earliest, near = self.scan(x, lo, scan_end - scan_end % HOP, cache)
        if earliest is None:
            return fallback  # nothing in the audio says where it ended: unsure
        if earliest == lo:
            # Complete already at the first cut looked at: it may have ended earlier still.
            return EndEstimate(min(origin + lo, unsure_end(hit)), "detector")
        last = min(hi, earliest + MAX_TAIL)
        cuts = sorted(
            {c - c % HOP for c in self.sibilant_ends(x, earliest, last) if c - c % HOP > earliest}
        )
        scored = dict(zip(cuts, self.completion_scores(x, cuts, cache), strict=True))
        candidates = {origin + c: round(s, 3) for c, s in sorted(scored.items())}
        # The first convincing hiss after the earliest end is the wake word's last sound; later
        # ones belong to the request. An unconvincing hiss before it may be the word's own "s"
        # drowned in noise: unsure, so the cut goes before the first hiss.
        for cut in cuts:
            if scored[cut] >= _MIN_SCORE:
                end = max(earliest, cuts[0] - SIBILANT_MARGIN)
                return EndEstimate(origin + end, "sibilant", round(scored[cut], 3), candidates)
        end = earliest - EARLIEST_MARGIN
        if near is not None:
            # Unsure: the model nearly called the word complete earlier; keep more of it.
            end = min(end, near - NEAR_MARGIN)
        return EndEstimate(origin + end, "earliest", 0.0, candidates)
