"""Echo handling on the capture path: how much echo each mode leaves, what it keeps of a worker
talking over the reply, and what it costs.

    python -m device.bench.echo

A synthetic room plays a spoken reply and returns it into the microphone `delay` later, `gain`
down, smeared by a short reverb, over a -60 dBFS floor; from 6 s on a worker talks over it.
Each mode runs as the daemon runs it (`EchoStage`, 20 ms chunks). Printed per room: the echo
level in the microphone and in the output before the worker talks (after 1 s of convergence),
the share of the worker's level kept while they talk, and CPU milliseconds per second of
audio, and in `aec` mode the canceller's echo return loss enhancement (ERLE: echo power in
the microphone over what is left after the canceller, while only the device speaks). The
service's voice detection starts near -42 dBFS; the output should stay well below.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from device.audio.echo import EchoMode, EchoStage, SpeakerTap, level_db
from device.audio.resample import Resampler
from device.bench.wake import _print
from device.sim.speech import synthesize

RATE, OUT_RATE = 16_000, 24_000
TICK = RATE // 50
REPLY = "Aisle twelve, bay three, level B, forty units. The next pick is in aisle fourteen."
WORKER = "stop, wait, where is SKU one zero four four one seven"


class _Speaker:
    """A speaker played by the bench's clock (an `AudioSink` for `SpeakerTap`)."""

    rate = OUT_RATE

    def __init__(self) -> None:
        self.queue = bytearray()
        self.played_bytes = 0
        self.last_played_at: float | None = None

    @property
    def playing(self) -> bool:
        return bool(self.queue)

    async def write(self, pcm: bytes) -> None:
        self.queue += pcm

    def flush(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        return dropped

    def play(self, nbytes: int) -> bytes:
        out = bytes(self.queue[:nbytes])
        del self.queue[:nbytes]
        self.played_bytes += len(out)
        return out + bytes(nbytes - len(out))


def _room(delay_ms: int, gain_db: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    n = RATE // 20
    tail = rng.normal(0, 0.1, n) * np.exp(-np.arange(n) / (RATE * 0.015))
    tail[0] = 1.0
    return np.concatenate([np.zeros(RATE * delay_ms // 1000), tail]) * 10 ** (gain_db / 20)


async def _run(mode: EchoMode, delay_ms: int, gain_db: float, seconds: float) -> dict[str, Any]:
    speaker = _Speaker()
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    stage = EchoStage(mode, tap)
    reply = synthesize(REPLY, rate=OUT_RATE)
    while len(reply) < seconds * OUT_RATE * 2:
        reply += reply
    await tap.write(reply)
    worker_at = 6.0
    worker = np.frombuffer(synthesize(WORKER), "<i2").astype(np.float64) * 10 ** (-6 / 20)
    voice = np.zeros(round(seconds * RATE))
    start = round(worker_at * RATE)
    voice[start : start + worker.size] = worker[: voice.size - start]
    ir = _room(delay_ms, gain_db)
    history = np.zeros(ir.size)
    resampler, fifo = Resampler(OUT_RATE, RATE), bytearray()
    rng = np.random.default_rng(2)
    mic, out = bytearray(), bytearray()
    cpu = 0.0
    for k in range(round(seconds * RATE) // TICK):
        fifo += resampler.process(speaker.play(TICK * 3))
        far = np.frombuffer(bytes(fifo[: 2 * TICK]).ljust(2 * TICK, b"\0"), "<i2")
        del fifo[: 2 * TICK]
        signal = np.concatenate([history, far.astype(np.float64)])
        echo = np.convolve(signal, ir)[history.size : history.size + TICK]
        history = signal[-ir.size :]
        heard = echo + voice[k * TICK : (k + 1) * TICK] + rng.normal(0, 32.8, TICK)
        chunk = np.clip(np.round(heard), -32768, 32767).astype("<i2").tobytes()
        t = time.process_time()
        processed = await stage.process(chunk)
        cpu += time.process_time() - t
        mic += chunk
        out += processed
    erle = stage.erle_db
    stage.close()
    m, o = np.frombuffer(bytes(mic), "<i2"), np.frombuffer(bytes(out), "<i2")
    before = slice(RATE, start)
    during = slice(start, start + worker.size)
    return {
        "mic_echo_dbfs": round(level_db(m[before]), 1),
        "out_echo_dbfs": round(level_db(o[before]), 1),
        "worker_kept_db": round(level_db(o[during]) - level_db(worker.astype("<i2")), 1),
        "cpu_ms_per_s": round(1000 * cpu / seconds, 2),
        "erle_db": erle,
    }


def measure(
    modes: Sequence[EchoMode] = ("half_duplex", "aec"),
    rooms: Sequence[tuple[int, float]] = ((20, -6.0), (60, -12.0), (150, 0.0)),
    seconds: float = 10.0,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in modes:
        for delay_ms, gain_db in rooms:
            key = f"{mode} delay {delay_ms} ms gain {gain_db:g} dB"
            results[key] = asyncio.run(_run(mode, delay_ms, gain_db, seconds))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.echo", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    _print("echo handling", measure(seconds=args.seconds), time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
