"""The wake benchmark's score traces, scored in parallel and cached on disk, part by part.

The positives are one part per system; the negatives come in 10-minute segments, each with
its own seed, so a stopped run resumes where it stopped and loses at most the segment in hand
(at nice 19 on a shared machine a 1-hour segment took hours of wall time, all lost if stopped).
A re-run only re-prints. Files are named by system, part and VAD, and carry `TRACE_VERSION`.
Bare openWakeWord ("raw") is scored in the same pass as its front end scored between frames
("raw@20ms") when both are asked for without VAD (`wake_score.score_pass`): half the CPU.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from device.bench.wake_clips import positive_clips
from device.bench.wake_negatives import negative_stream
from device.bench.wake_score import (
    ClipWindow,
    Trace,
    bare_of,
    combine,
    judged,
    score_pass,
    split_rule,
)
from device.wake.models import ModelSet

NEGATIVE_SEED = 7
TRACE_VERSION = 1  # bump when clips, negatives or scoring change, so cached traces are redone

SEGMENT_S = 600.0  # 10-minute segments, each its own seed: parallel, cached, little lost if stopped


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
    systems: tuple[str, ...],
    quick: bool,
    segment: int | None,
    seconds: float,
    vad: bool,
    cache: Path | None,
) -> list[Trace]:
    """The positives (`segment` None) or one negative segment, from the cache if there, for
    one system or (two `systems`) a system and the bare system scored in its pass."""
    part = _part_name(quick, segment, seconds)
    paths = [trace_path(cache, s, part, vad) for s in systems] if cache is not None else []
    if paths and all(p.is_file() for p in paths):
        return [load_trace(p) for p in paths]
    started = time.process_time(), time.perf_counter()
    if segment is None:
        source: dict[str, Any] = {"clips": positive_clips(quick)}
    else:
        source = {"negatives": negative_stream(seconds, seed=NEGATIVE_SEED + segment)}
    traces = score_pass(model_set, systems[0], vad=vad, with_bare=len(systems) > 1, **source)
    for trace, path in zip(traces, paths, strict=False):
        save_trace(trace, path)
    # Progress on stderr: a 10-hour run at nice 19 on a shared machine takes hours of wall time.
    print(
        f"wake bench: scored {' and '.join(systems)} {part}: "
        f"{traces[0].audio_s:.0f} s of audio in {time.process_time() - started[0]:.0f} CPU s, "
        f"{time.perf_counter() - started[1]:.0f} s wall",
        file=sys.stderr,
        flush=True,
    )
    return traces


def passes(systems: Sequence[str], vad: bool) -> list[tuple[str, ...]]:
    """The scoring passes for `systems`: a bare system asked for beside its front end scored
    between frames rides in that system's pass (without VAD); every other system has its own."""
    if vad:
        return [(system,) for system in systems]
    host: dict[str, str] = {}  # a bare system -> the first asked-for system whose pass gives it
    for system in systems:
        bare = bare_of(system)
        if bare is not None and bare in systems:
            host.setdefault(bare, system)
    return [
        (system, *(bare for bare, by in host.items() if by == system))
        for system in systems
        if system not in host
    ]


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
    combines what the cache holds (the positives and the first segments present). A system
    with a hit rule ("raw@20ms+2f") is its scored system's trace judged by the rule: one
    cached trace serves every rule.
    """
    scored = tuple(dict.fromkeys(split_rule(s)[0] for s in systems))
    traces = {
        t.system: t
        for t in _score_all(
            model_set,
            scored,
            quick=quick,
            negative_s=negative_s,
            vad=vad,
            jobs=jobs,
            cache=cache,
            cached_only=cached_only,
        )
    }
    out = []
    for system in systems:
        base, frames = split_rule(system)
        if base in traces:
            out.append(judged(traces[base], system) if frames > 1 else traces[base])
    return out


def _score_all(
    model_set: ModelSet,
    systems: Sequence[str],
    *,
    quick: bool,
    negative_s: float,
    vad: bool,
    jobs: int,
    cache: Path | None,
    cached_only: bool,
) -> list[Trace]:
    if cached_only:
        if cache is None:
            raise ValueError("cached_only needs a cache directory")
        tasks: list[tuple[str, int | None, float]] = [(s, None, 0.0) for s in systems]
        for index, seconds in enumerate(segments(negative_s)):
            tasks += [(s, index, seconds) for s in systems]
        parts: dict[str, list[Trace]] = {s: [] for s in systems}
        for system, segment, seconds in tasks:
            path = trace_path(cache, system, _part_name(quick, segment, seconds), vad)
            if path.is_file() and (segment is None or len(parts[system]) == segment + 1):
                parts[system].append(load_trace(path))
        # A system needs its positives and at least one negative segment to be judged.
        return [combine(p) for p in parts.values() if len(p) >= 2 and p[0].windows]
    work = [
        (group, segment, seconds)
        for segment, seconds in [(None, 0.0), *enumerate(segments(negative_s))]
        for group in passes(systems, vad)
    ]
    if jobs <= 1:
        done = [_score_part(model_set, g, quick, s, sec, vad, cache) for g, s, sec in work]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(_score_part, model_set, g, quick, s, sec, vad, cache)
                for g, s, sec in work
            ]
            done = [f.result() for f in futures]
    return [combine([t for traces in done for t in traces if t.system == s]) for s in systems]
