"""Benchmark the emulator's own costs, so latency measured against it can be read correctly.

    .venv/bin/python -m tests.sim.bench_emulator

Prints: VAD speed (x real time), the emulator's end-of-speech to first-audio delay through the
real SDK, and how closely real-time pacing tracks the audio clock. Not a test: nothing here is
asserted, the numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from device.sim.emulator import Emulator
from device.sim.vad import EnergyVad, VadSettings

from .helpers import MODEL, live_config, sdk_client, send_audio, silence, sku_scenario, voiced


def bench_vad() -> None:
    pcm = (voiced(0.6) + silence(0.8)) * 20
    start = time.process_time()
    EnergyVad(VadSettings()).feed(pcm)
    cpu = time.process_time() - start
    print(f"vad: {len(pcm) / 32000 / cpu:,.0f}x real time ({len(pcm) / 32000:.0f} s of audio)")


async def bench_turns(workdir: Path, turns: int = 5) -> None:
    scenario = sku_scenario(audio_chunk_ms=40).model_copy(update={"speed": 1.0, "loop": True})
    scenario = scenario.model_copy(
        update={"turns": [scenario.turns[0].model_copy(update={"tool_calls": []})]}
    )
    delays, pacing = [], []
    emu = Emulator(scenario, workdir=workdir)
    async with emu, sdk_client(emu).aio.live.connect(model=MODEL, config=live_config()) as session:
        for _ in range(turns):
            # 500 ms of silence ends the turn; the clock starts when the last of it is sent.
            await send_audio(session, voiced(0.4) + silence(0.52))
            sent_at = time.perf_counter()
            first_audio = None
            async for message in session.receive():
                content = message.server_content
                if content and content.model_turn and first_audio is None:
                    first_audio = time.perf_counter()
            done = time.perf_counter()
            assert first_audio is not None
            delays.append((first_audio - sent_at) * 1000)
            pacing.append((done - first_audio) / (len(emu.reply_audio(0)) / 48000))
    print(
        f"emulator: end of speech -> first reply audio median {statistics.median(delays):.1f} ms "
        f"(min {min(delays):.1f}, max {max(delays):.1f}) over {turns} turns"
    )
    print(f"emulator: real-time pacing ratio median {statistics.median(pacing):.3f} (1.0 ideal)")


def main() -> None:
    bench_vad()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_turns(Path(tmp)))


if __name__ == "__main__":
    main()
