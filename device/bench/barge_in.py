"""Voice barge-in: from the worker's first sound to silence at the speaker, the reply already sent.

    python -m device.bench.barge_in

The whole reply is queued on the speaker before the worker talks, as when the service has sent
all of it: no `interrupted` will come, so only the device's local barge-in can stop it. The
room is the echo bench's (`device.bench.echo`): the reply comes back into the microphone
`delay` later at `gain`, smeared by a short reverb, over a noise floor. Each trial runs the
daemon's parts (`EchoStage`, `LocalBargeIn`, the flush) on 20 ms chunks and counts samples
from the worker's onset to the tick on which the speaker plays nothing more. A real speaker
adds what its output buffer still holds after a flush (one period, ~10-20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from device.audio.barge_in import LocalBargeIn
from device.audio.echo import EchoMode, EchoStage, SpeakerTap
from device.audio.resample import Resampler
from device.bench.echo import OUT_RATE, RATE, REPLY, TICK, _room, _Speaker
from device.bench.wake import _print
from device.events import EventBus
from device.sim.speech import synthesize

WORKERS = (
    ("stop, wait, where is SKU one zero four four one seven", 175),
    ("no, the other aisle", 150),
    ("hold on, what about bay four", 200),
)


class _Appliance:
    """The appliance as local barge-in sees it: speaking while the speaker plays."""

    def __init__(self, tap: SpeakerTap) -> None:
        self.tap = tap
        self.interrupts: list[str] = []

    @property
    def speaking(self) -> bool:
        return self.tap.playing

    def interrupt(self, source: str = "gpio") -> None:
        self.interrupts.append(source)
        self.tap.flush()

    def talk_start(self) -> None:
        return None


def _onset(voice: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(voice) > 32768 * 10 ** (-50 / 20))[0])


async def _trial(
    mode: EchoMode, delay_ms: int, gain_db: float, worker: np.ndarray, talk_at_s: float
) -> float | None:
    """Milliseconds from the worker's onset to a silent speaker; None if it never stopped."""
    speaker = _Speaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    bus = EventBus()
    stage = EchoStage(mode, tap, bus=bus)
    appliance = _Appliance(tap)
    local = LocalBargeIn(bus, appliance, manual_turns=False)
    reply = synthesize(REPLY, rate=OUT_RATE)
    while len(reply) < (talk_at_s + 4) * OUT_RATE * 2:
        reply += reply
    await tap.write(reply)
    ir = _room(delay_ms, gain_db)
    history = np.zeros(ir.size)
    resampler, fifo = Resampler(OUT_RATE, RATE), bytearray()
    rng = np.random.default_rng(3)
    start = round(talk_at_s * RATE)
    onset = start + _onset(worker)
    voice = np.zeros(start + worker.size + RATE)
    voice[start : start + worker.size] = worker
    stopped: float | None = None
    try:
        for k in range(voice.size // TICK):
            played = speaker.play(TICK * 3)
            if k * TICK > onset and not played.strip(b"\0") and not speaker.playing:
                stopped = 1000 * (k * TICK - onset) / RATE
                break
            fifo += resampler.process(played)
            far = np.frombuffer(bytes(fifo[: 2 * TICK]).ljust(2 * TICK, b"\0"), "<i2")
            del fifo[: 2 * TICK]
            signal = np.concatenate([history, far.astype(np.float64)])
            echo = np.convolve(signal, ir)[history.size : history.size + TICK]
            history = signal[-ir.size :]
            heard = echo + voice[k * TICK : (k + 1) * TICK] + rng.normal(0, 32.8, TICK)
            chunk = np.clip(np.round(heard), -32768, 32767).astype("<i2").tobytes()
            await stage.process(chunk)
            await asyncio.sleep(0)  # local barge-in acts in the next loop step
    finally:
        local.close()
        stage.close()
    return stopped


def measure(
    modes: Sequence[EchoMode] = ("half_duplex", "aec"),
    rooms: Sequence[tuple[int, float]] = ((10, -10.0), (40, -10.0), (20, 0.0)),
    trials: int = 2,
) -> dict[str, Any]:
    """Per mode: median latency over every room, worker and trial, and how many never stopped."""
    voices = [
        np.frombuffer(synthesize(text, speed_wpm=wpm), "<i2").astype(np.float64)
        for text, wpm in WORKERS
    ]
    results: dict[str, Any] = {}
    for mode in modes:
        latencies: list[float] = []
        missed = 0
        for delay_ms, gain_db in rooms:
            for voice in voices:
                for trial in range(trials):
                    ms = asyncio.run(_trial(mode, delay_ms, gain_db, voice, 2.0 + 0.37 * trial))
                    if ms is None:
                        missed += 1
                    else:
                        latencies.append(ms)
        results[mode] = {
            "median_ms": round(statistics.median(latencies), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None,
            "stopped": len(latencies),
            "never_stopped": missed,
            "latencies_ms": latencies,
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.barge_in", description=__doc__)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    result = measure(trials=args.trials)
    for figures in result.values():
        figures.pop("latencies_ms")
    _print("voice barge-in, reply fully sent", result, time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
