"""Echo handling on the capture path: how much echo each mode leaves, what it keeps of a worker
talking over the reply, and what it costs.

    python -m device.bench.echo

A synthetic room (`device.sim.echo_room`) plays a spoken reply through a device that buffers
150 ms, drifts 200 ppm from the microphone's clock and runs dry for 300 ms every 4 s, and
returns it into the microphone `delay` (plus 40 ms the device does not report) later, `gain`
down, smeared by a short reverb, over a -60 dBFS floor; from 6 s on a worker talks over it.
Each mode runs as the daemon runs it (`EchoStage`, 20 ms chunks). Printed per room: the echo
level in the microphone and in the output before the worker talks (after 1 s of convergence),
the share of the worker's level kept while they talk, and CPU milliseconds per second of
audio, and in `aec` mode the canceller's echo return loss enhancement (ERLE: echo power in
the microphone over what is left after the canceller, while only the device speaks), and the
echo delay the tracker measured past the device's own buffer against the room's true one. The
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
from device.bench.wake import _print
from device.sim.echo_room import DeviceSpeaker, EchoRoom
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


async def _run(
    mode: EchoMode,
    delay_ms: int,
    gain_db: float,
    seconds: float,
    *,
    buffer_ms: int = 150,
    ppm: float = 200.0,
) -> dict[str, Any]:
    # The room of `device.sim.echo_room`: the speaker's device holds `buffer_ms`, its crystal
    # runs `ppm` off the microphone's, and the player stalls 300 ms every 4 s (the device runs
    # dry mid-reply); the echo comes `delay_ms` plus the room's hidden 40 ms after the device
    # says the audio left it.
    speaker = DeviceSpeaker(buffer_ms=buffer_ms, ppm=ppm)
    tap = SpeakerTap(speaker)  # type: ignore[arg-type]
    room = EchoRoom(speaker, delay_ms=delay_ms, gain_db=gain_db, noise_dbfs=-60.0)
    stage = EchoStage(mode, tap, mic_time=lambda: room.mic_time)
    reply = synthesize(REPLY, rate=OUT_RATE)
    while len(reply) < seconds * OUT_RATE * 2:
        reply += reply
    await tap.write(reply)
    worker_at = 6.0
    worker = np.frombuffer(synthesize(WORKER), "<i2").astype(np.float64) * 10 ** (-6 / 20)
    voice = np.zeros(round(seconds * RATE) + TICK)
    start = round(worker_at * RATE)
    voice[start : start + worker.size] = worker[: voice.size - start]
    mic, out = bytearray(), bytearray()
    cpu = 0.0
    erle = None
    for k in range(round(seconds * RATE) // TICK):
        if k * TICK == start:
            # ERLE is the canceller's work while only the device speaks: until the gate opens
            # for the worker, their voice would count as echo left over.
            erle = stage.erle_db
        if k % 200 == 150:
            speaker.stall(0.3)
        chunk = room.tick(voice[k * TICK : (k + 1) * TICK])
        t = time.process_time()
        processed = await stage.process(chunk)
        cpu += time.process_time() - t
        mic += chunk
        out += processed
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
        "tracked_delay_ms": stage.tracked_delay_ms,
        "true_delay_ms": room.true_delay_ms,
        "device_buffer_ms": buffer_ms,
        "drift_ppm": ppm,
    }


def measure(
    modes: Sequence[EchoMode] = ("half_duplex", "aec"),
    rooms: Sequence[tuple[int, float]] = ((20, -6.0), (60, -12.0), (150, 0.0)),
    seconds: float = 10.0,
    *,
    buffer_ms: int = 150,
    ppm: float = 200.0,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in modes:
        for delay_ms, gain_db in rooms:
            key = f"{mode} delay {delay_ms} ms gain {gain_db:g} dB"
            results[key] = asyncio.run(
                _run(mode, delay_ms, gain_db, seconds, buffer_ms=buffer_ms, ppm=ppm)
            )
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
