"""A loop that falls behind its sound devices still hears SIGTERM.

asyncio learns of a signal through the same self-pipe that `call_soon_threadsafe` writes a byte
to, and the pipe holds about 278 of them. A device thread that calls into the loop at audio rate
while the loop is held up (an unpaced device; a slow step on a loaded Pi: 278 callbacks of 20 ms
are 5.6 s) fills it, and a signal that arrives then is lost: the daemon ignored SIGTERM for good
(tests/service/test_daemon_degraded.py, under a CPU hog). Here the loop is held up on purpose
until the device thread has called back a counted number of times, then signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio_helpers import noise

from device.audio.sink import PyAudioSink
from device.audio.source import PyAudioSource
from device.sim.alsa import virtual_alsa

# Well past what the self-pipe holds.
CALLBACKS = 2_000


async def signal_heard_after_holding_the_loop(until: Callable[[], bool]) -> bool:
    """Hold the loop (as a slow step would) until `until()`, send SIGUSR2 meanwhile, let the
    loop go on: did its handler for the signal run?"""
    loop = asyncio.get_running_loop()
    heard = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR2, heard.set)
    try:
        for _ in range(60_000):  # at most 60 s: the device threads are unpaced
            if until():
                break
            time.sleep(0.001)  # noqa: ASYNC251 (blocking the loop is the point)
        else:
            raise AssertionError("the device thread never called back enough times")
        os.kill(os.getpid(), signal.SIGUSR2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await heard.wait()
        return heard.is_set()
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)


class CountedSource(PyAudioSource):
    """Counts PortAudio's callbacks (its own thread) to know when the pipe would be full."""

    calls = 0

    def _callback(self, *args: Any) -> tuple[None, int]:
        self.calls += 1
        return super()._callback(*args)


async def test_a_signal_reaches_a_loop_held_up_while_the_mic_calls_back(tmp_path: Path) -> None:
    speech = noise(16_000, seed=3)
    with virtual_alsa(tmp_path, speech):
        source = CountedSource("vmic")
        chunks = source.chunks()
        try:
            assert len(await anext(chunks)) == source.chunk_bytes
            heard = await signal_heard_after_holding_the_loop(lambda: source.calls >= CALLBACKS)
            # The mic's audio goes on arriving after the hold, the newest kept.
            assert len(await anext(chunks)) == source.chunk_bytes
        finally:
            await chunks.aclose()
            await source.close()
    assert heard, "SIGUSR2 was lost while the mic's callbacks filled the loop's self-pipe"
    assert source.overruns > 0  # the hold outlasted max_queued_ms: the oldest audio went


async def test_a_signal_reaches_a_loop_held_up_while_the_speaker_plays(tmp_path: Path) -> None:
    buffer_bytes = 24_000 * 20 // 1000 * 2
    reply = noise(CALLBACKS * buffer_bytes // 2, seed=4)
    with virtual_alsa(tmp_path) as alsa:
        sink = PyAudioSink("vspk", max_queued_s=len(reply) / 2 / 24_000 + 1)
        async with sink:
            await sink.write(reply)
            heard = await signal_heard_after_holding_the_loop(
                lambda: sink.played_bytes == len(reply)
            )
            await sink.drain()
        assert alsa.played(24_000, 1) == reply
    assert heard, "SIGUSR2 was lost while the speaker's progress reports filled the self-pipe"
