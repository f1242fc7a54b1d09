"""The far end of the round-trip bench: a Live API emulator whose model speaks in clicks.

    python -m device.bench.click_server --workdir DIR --turns 5 --barge-ins 3

It runs in its own process, as the real service would be on another machine, so the device's
event loop and the emulator's never delay each other. On start it prints one JSON line (url,
ca_file, api_key); when its stdin closes it prints one JSON line of results and exits:

- each click's round trip: from the moment it was due to sound (its reply chunk going out on
  the websocket, plus its offset in the chunk) to the arrival of the microphone frame holding
  its echo;
- when each `interrupted` went out, for the barge-in figure.

Times are `time.monotonic()`, which every process on the machine shares, so the bench can set
them against the device's own events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.bench.clicks import Observation, click_reply, find_onsets, first_holding
from device.sim.emulator import Emulator
from device.sim.record import EmulatorRecord
from device.sim.scenario import Scenario, TurnSpec

API_KEY = "bench-key-not-secret"
REPLY_RATE = 24_000
CHUNK_MS = 20


@dataclass
class _Timeline:
    """When each `interrupted` was seen, per connection and turn. (Audio in and out is timed
    by the emulator's record itself, as each frame passes: a poller is late when starved.)"""

    interrupted: dict[tuple[int, int], float] = field(default_factory=dict)
    stopping: bool = False

    def look(self, record: EmulatorRecord) -> bool:
        now = time.monotonic()
        for c, conn in enumerate(record.connections):
            for t, turn in enumerate(conn.turns):
                if turn.interrupted and (c, t) not in self.interrupted:
                    self.interrupted[(c, t)] = now
        return self.stopping


# Barge-in replies stream this many times faster than real time, as the service's do, so the
# speaker holds seconds of reply when `interrupted` comes.
BARGE_IN_STREAM_SPEED = 4.0


def scenario(reply_wav: Path, turns: int, barge_ins: int, interrupt_ms: int) -> Scenario:
    # Round-trip replies are paced in real time: a click's due time is when its chunk leaves.
    plain = TurnSpec(reply_audio=reply_wav, audio_chunk_ms=CHUNK_MS)
    cut = plain.model_copy(
        update={"interrupt_after_ms": interrupt_ms, "audio_pace": BARGE_IN_STREAM_SPEED}
    )
    return Scenario(
        name="bench-clicks",
        description="replies made of clicks, for the round-trip and barge-in benchmarks",
        resumption=False,
        stream_speed=1.0,
        turns=[plain] * turns + [cut] * barge_ins,
    )


def results(
    record: EmulatorRecord, timeline: _Timeline, positions: list[int], spacing_s: float
) -> dict[str, Any]:
    chunk = REPLY_RATE * CHUNK_MS // 1000
    round_trips: list[float] = []
    first_clicks: list[float] = []
    missing = cut = 0
    for c, conn in enumerate(record.connections):
        heard = [Observation(mono, count) for mono, count in conn.audio_at]
        arrivals = [
            obs.mono
            for s in find_onsets(bytes(conn.audio), conn.audio_rate or 16_000)
            if (obs := first_holding(s, heard)) is not None
        ]
        for t, turn in enumerate(conn.turns):
            sent = [Observation(mono, count) for mono, count in turn.reply_sent_at]
            sent_count = len(turn.reply_pcm) // 2
            for index, position in enumerate(p for p in positions if p < sent_count):
                out = first_holding(position, sent)
                if out is None:
                    continue
                # The click is due to sound this long after its chunk's first sample.
                due = out.mono + (position % chunk) / REPLY_RATE
                # Its echo is the first click to arrive after that, before the next could.
                echo = next((at for at in arrivals if due <= at < due + spacing_s), None)
                if (c, t) in timeline.interrupted:
                    # Barge-in replies stream faster than they play: their clicks sound late
                    # by design, so they time the barge-in, not the round trip.
                    cut += echo is None
                    continue
                if echo is None:
                    # A click still queued when `interrupted` came must never sound: that is
                    # the barge-in working. Anywhere else a lost click is a fault.
                    if (c, t) in timeline.interrupted:
                        cut += 1
                    else:
                        missing += 1
                    continue
                round_trips.append(1000 * (echo - due))
                if index == 0:
                    first_clicks.append(round_trips[-1])
    return {
        "round_trips_ms": round_trips,
        "first_click_ms": first_clicks,
        "missing_clicks": missing,
        "cut_clicks": cut,
        "turns": len(record.finished_turns),
        "interrupted_at": sorted(timeline.interrupted.values()),
    }


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


async def serve(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    pcm, positions = click_reply(args.reply_s, args.spacing_s, REPLY_RATE, CHUNK_MS)
    write_wav(workdir / "clicks.wav", pcm, REPLY_RATE)
    plan = scenario(workdir / "clicks.wav", args.turns, args.barge_ins, args.interrupt_ms)
    timeline = _Timeline()
    loop = asyncio.get_running_loop()
    async with Emulator(plan, workdir=workdir / "emulator", api_key=API_KEY) as emulator:
        line = {"url": emulator.url, "ca_file": str(emulator.ca_file), "api_key": API_KEY}
        print(json.dumps(line), flush=True)
        watcher = asyncio.create_task(
            emulator.wait_for(timeline.look, timeout_s=24 * 3600, what="the end of the bench")
        )
        # The bench closes our stdin when it is done with us.
        await loop.run_in_executor(None, sys.stdin.read)
        timeline.stopping = True
        timeline.look(emulator.record)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await watcher
        out = results(emulator.record, timeline, positions, args.spacing_s)
        for c, conn in enumerate(emulator.record.connections):
            # What came back, for a person to listen to when a figure looks wrong.
            write_wav(workdir / f"heard-{c}.wav", bytes(conn.audio), conn.audio_rate or 16_000)
    print(json.dumps(out), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m device.bench.click_server", description=__doc__
    )
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--turns", type=int, default=5, help="click replies played in full")
    parser.add_argument("--barge-ins", type=int, default=3, help="click replies cut short")
    parser.add_argument("--reply-s", type=float, default=3.0, help="length of each reply")
    parser.add_argument("--spacing-s", type=float, default=0.2, help="time between clicks")
    parser.add_argument(
        "--interrupt-ms",
        type=int,
        default=830,
        help="when the cut replies are interrupted (just after a click, so that click is still "
        "on its way to the speaker)",
    )
    args = parser.parse_args(argv)
    if args.turns < 0 or args.barge_ins < 0 or args.turns + args.barge_ins == 0:
        parser.error("--turns and --barge-ins must not be negative, and not both 0")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
