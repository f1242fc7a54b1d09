"""The wake loop: capture frames into the detector, hits to the appliance, the end refined.

The listener takes every frame of the one capture stream (its own subscription, so a slow
inference never holds capture up), feeds the detector, whose inference runs on its own thread,
and on a hit does two things in order:

1. at once: publishes `WakeDetected` and calls `on_wake(hit)`, which opens the session and
   publishes the listening state. Two metrics are published: `wake_detect_ms`, from the capture
   of the audio that completed the wake word to the detector's decision (it includes the wait
   for the rest of the microphone's batch while idle), and
   `wake_to_listening_ms`, from that decision to the listening state;
2. once ~300 ms more audio has arrived: finds where the wake word really ended
   (`device.wake.endpoint`, on a worker thread), publishes `WakeEndFound` and calls
   `on_end(sample)`, from which the appliance sends the pre-roll, wake word trimmed off.

`on_end` is always called after `on_wake`, even if refining fails or the microphone stops.
While the device speaks (and for `speaking_tail_s` after) the detector is suppressed, unless
`ignore_while_speaking` is off (full-duplex devices with echo cancellation may want it).
All offsets are capture stream offsets (`device.audio.capture.Frame.start`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.capture import Capture, Frame
from device.events import (
    Event,
    EventBus,
    Metric,
    State,
    StateChanged,
    WakeDetected,
)
from device.wake.detector import FRAME_SAMPLES, WakeDetector, WakeHit
from device.wake.endpoint import (
    EndEstimate,
    EndFinder,
    needed_after,
    needed_before,
    unsure_end,
)
from device.wake.frontend import FrontEnd

log = logging.getLogger(__name__)

# A microphone that delivers nothing for this long (wall clock) after a hit has gone quiet: the
# end is refined without the rest. Only silence from the microphone counts: while frames are
# queued, however late the listener runs, it takes them first.
_END_WAIT_S = 1.0
_MAX_GAP_S = 30.0
# How often the microphone wakes the event loop while only the wake word listens, and how much
# it then yields as one item: six detector frames. Each item costs the loop a pass through
# capture, the echo stage and this listener, and the inference thread a wake-up: on
# device.bench.idle_wake the daemon's idle CPU against bare predict read 1.63-1.78x with 80 ms
# items, 1.13-1.27x with 320 ms and 1.05-1.14x with 480 ms.
IDLE_HANDOVER_MS = 480
# Once any model's score reaches this, audio is handed over frame by frame (`FRAME_MS`) until
# a batch stays below it, so a wake word seldom waits for the rest of a batch. On the wake
# benchmark's clips the detector confirms at 0.5 (269 of 432), the score stays at or above
# 0.002 from a median four frames before the confirming frame. Where the batch holding the rise
# ends after that frame (about 28% of hits, where the batches fall being chance) the hit waits
# for the batch's end: 40 ms on average over all hits, 400 ms at most. Floor noise scores far
# below it; 6% of a request's frames reach it.
NEAR_SCORE = 0.002
FRAME_MS = 1000 * FRAME_SAMPLES // CAPTURE_RATE


@dataclass(frozen=True, kw_only=True)
class WakeEndFound(Event):
    """Where the wake word ended (capture offset), and how that was found."""

    kind: ClassVar[str] = "wake_end"
    model: str
    end_sample: int
    detector_end_sample: int
    method: str  # "sibilant", "earliest" (refined) or "detector" (see device.wake.endpoint)
    took_ms: float


@dataclass(frozen=True)
class WakeTiming:
    """Latencies of one hit. The clock starts when the audio that completed the wake word was
    captured (as its batch arrived, less the audio after it in the batch)."""

    detected_ms: float  # the detector had decided (inference on its thread, and any backlog)
    listening_ms: float  # the listening state was published (or `on_wake` returned without it)

    @property
    def detection_to_listening_ms(self) -> float:
        return self.listening_ms - self.detected_ms


class WakeListener:
    def __init__(
        self,
        detector: WakeDetector,
        capture: Capture,
        *,
        bus: EventBus,
        on_wake: Callable[[WakeHit], None],
        on_end: Callable[[int], None],
        speaking: Callable[[], bool] = lambda: False,
        ignore_while_speaking: bool = True,
        speaking_tail_s: float = 0.3,
        finders: Mapping[str, EndFinder] | None = None,
        history_s: float = 4.0,
        raw_audio: bool | None = None,
        front_end: FrontEnd | None = None,
    ) -> None:
        self.detector = detector
        self.capture = capture
        self.bus = bus
        self.on_wake = on_wake
        self.on_end = on_end
        self.speaking = speaking
        self.ignore_while_speaking = ignore_while_speaking
        # The detector takes the microphone's audio from before the capture stage (noise
        # suppression costs detections: device.bench.wake), but only while it is suppressed
        # as the device speaks: then the unprocessed echo of a reply cannot wake it.
        self.raw_audio = ignore_while_speaking if raw_audio is None else raw_audio
        self.front_end = front_end  # the detector's own (device.wake.frontend), if any
        self.tail_samples = round(speaking_tail_s * CAPTURE_RATE)
        self.finders = dict(finders or {})
        self.timings: list[WakeTiming] = []
        self.hits: list[WakeHit] = []
        self.suppressed_samples = 0
        self._history = bytearray()
        self._history_start = 0
        self._history_max = round(history_s * CAPTURE_RATE) * SAMPLE_WIDTH
        self._base: int | None = None  # capture offset of the detector's sample 0
        self._quiet_for = self.tail_samples  # samples since the device last spoke
        self._pending: tuple[WakeHit, float] | None = None
        self._held: set[WakeHit] = set()  # hits whose audio capture keeps until `on_end`
        self._refining: set[asyncio.Task[None]] = set()
        self._batching = False  # only the wake word listens: the microphone hands over batches
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wake-end")

    async def load(self) -> None:
        """Load the models now (about a second) rather than when `run` starts."""
        await self.detector.load()

    async def close(self) -> None:
        await self.detector.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _pace_capture(self, event: Event) -> None:
        """Outside a conversation only the wake word listens: let the microphone hand audio
        over in batches then (`IDLE_HANDOVER_MS`, a frame at a time once a score rises), and
        in chunks again as soon as a conversation begins (the wake word itself starts one)."""
        if isinstance(event, StateChanged):
            self._batch_capture(event.state in (State.IDLE, State.OFFLINE, State.ERROR))

    def _batch_capture(self, batch: bool) -> None:
        self._batching = batch
        self._hand_over(IDLE_HANDOVER_MS if batch else None)

    def _hand_over(self, ms: int | None) -> None:
        """Set the microphone's hand-over (None: every chunk), where it has one: whole chunks
        (`[audio] chunk_ms` may be 20 to 50), as many as fit in `ms`."""
        source = self.capture.source
        if hasattr(source, "handover_ms"):
            chunk = source.chunk_ms
            source.handover_ms = chunk if ms is None else max(chunk, ms // chunk * chunk)

    async def run(self) -> None:
        """Listen until cancelled."""
        unsubscribe = self.bus.subscribe(self._pace_capture)
        # Started from the idle appliance (its capture loop publishes `idle` before it starts
        # its companions), so batches until a conversation begins.
        self._batch_capture(True)
        try:
            with self.capture.subscribe() as frames:
                # Subscribed first: what is said while the models load is queued, not lost.
                await self.detector.load()
                while True:
                    timeout = None if self._pending is None else _END_WAIT_S
                    try:
                        frame = await asyncio.wait_for(frames.get(), timeout)
                    except TimeoutError:
                        if not frames.queued_samples:
                            self._refine_pending()
                        continue
                    gap = frames.gap_before(frame)
                    if gap:
                        await self._fill(gap, frame.start)
                    await self._take(frame)
        finally:
            unsubscribe()
            self._batch_capture(False)
            for task in self._refining:
                task.cancel()
            for hit in self._held:
                self.capture.release(hit)
            self._held.clear()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _fill(self, gap: int, next_start: int) -> None:
        """Audio was dropped: feed silence so detector offsets keep matching capture offsets."""
        log.warning("wake listener fell %d samples behind; they were dropped", gap)
        fed = min(gap, round(_MAX_GAP_S * CAPTURE_RATE))
        if self._base is not None:
            self._base += gap - fed  # what is not fed at all shifts the mapping instead
        await self._take(Frame(next_start - fed, bytes(SAMPLE_WIDTH * fed)))

    async def _take(self, frame: Frame) -> None:
        if self._base is None:
            self._base = frame.start - self.detector.samples_seen
        self._remember(frame)
        if self.speaking():
            self._quiet_for = 0
        else:
            self._quiet_for += frame.samples
        suppress = self.ignore_while_speaking and self._quiet_for < self.tail_samples
        if suppress:
            self.suppressed_samples += frame.samples
        self.detector.suppressed = suppress
        audio = self._wake_audio(frame)
        if self.front_end is not None and len(audio) % (2 * CAPTURE_RATE // 100) == 0:
            audio = self.front_end.process(audio)  # whole 10 ms blocks; a gap's fill is silence
        hit = await self.detector.process(audio)
        if self._batching:
            near = self.detector.last_peak >= NEAR_SCORE
            self._hand_over(FRAME_MS if near else IDLE_HANDOVER_MS)
        if hit is not None:
            self._woke(self._to_capture(hit), frame)
        if self._pending is not None and self._history_end >= needed_after(self._pending[0]):
            self._refine_pending()

    def _to_capture(self, hit: WakeHit) -> WakeHit:
        base = self._base or 0
        return replace(
            hit, end_sample=hit.end_sample + base, detected_sample=hit.detected_sample + base
        )

    def _woke(self, hit: WakeHit, frame: Frame) -> None:
        detected = time.monotonic()
        self.hits.append(hit)
        # The end is settled only after more audio and a refinement on a thread: keep what
        # follows the wake word until then, however far capture runs ahead meanwhile.
        self.capture.hold(hit, needed_before(hit))
        self._held.add(hit)
        log.info(
            "wake word %s (score %.2f) ending near sample %d", hit.model, hit.score, hit.end_sample
        )
        self.bus.publish(WakeDetected(model=hit.model, score=hit.score, end_sample=hit.end_sample))
        if self._pending is not None:
            # A second hit before the first was refined: settle the first one now.
            self._refine_pending()
        self._pending = (hit, detected)
        published: list[float] = []

        def listening_state(event: Event) -> None:
            if isinstance(event, StateChanged) and event.state == State.LISTENING:
                published.append(event.mono)  # stamped when it was published

        unsubscribe = self.bus.subscribe(listening_state)
        try:
            self.on_wake(hit)
        finally:
            unsubscribe()
            listening = published[0] if published else time.monotonic()
            # The clock starts when the audio that completed the hit was captured: about one
            # detector frame after the score first crossed (the frame that confirms it). A
            # batch arrives whole, so what it holds after that audio waited for the rest.
            completed = min(frame.end, hit.detected_sample + FRAME_SAMPLES)
            arrived = frame.at - (frame.end - completed) / CAPTURE_RATE if frame.at else detected
            timing = WakeTiming(
                detected_ms=1000 * (detected - arrived), listening_ms=1000 * (listening - arrived)
            )
            self.timings.append(timing)
            labels = {"model": hit.model}
            self.bus.publish(
                Metric(name="wake_detect_ms", value=round(timing.detected_ms, 3), labels=labels)
            )
            self.bus.publish(
                Metric(
                    name="wake_to_listening_ms",
                    value=round(timing.detection_to_listening_ms, 3),
                    labels=labels,
                )
            )
        if hit.model not in self.finders:
            self._refine_pending()

    # -- the end of the wake word ------------------------------------------------------------

    @property
    def _history_end(self) -> int:
        return self._history_start + len(self._history) // SAMPLE_WIDTH

    def _wake_audio(self, frame: Frame) -> bytes:
        return frame.raw if self.raw_audio and frame.raw is not None else frame.pcm

    def _remember(self, frame: Frame) -> None:
        if self._history_end != frame.start:
            self._history.clear()
            self._history_start = frame.start
        # The end is found in what the detector heard.
        self._history += self._wake_audio(frame)
        excess = len(self._history) - self._history_max
        if excess > 0:
            del self._history[:excess]
            self._history_start += excess // SAMPLE_WIDTH

    def _refine_pending(self) -> None:
        if self._pending is None:
            return
        hit, _ = self._pending
        self._pending = None
        finder = self.finders.get(hit.model)
        if finder is None:
            self._settle(hit, EndEstimate(unsure_end(hit), "detector"), 0.0)
            return
        start = max(self._history_start, needed_before(hit))
        offset = (start - self._history_start) * SAMPLE_WIDTH
        audio = np.frombuffer(bytes(self._history[offset:]), dtype="<i2")
        task = asyncio.create_task(self._locate(finder, hit, audio, start), name="wake-end")
        self._refining.add(task)
        task.add_done_callback(self._refining.discard)

    async def _locate(
        self, finder: EndFinder, hit: WakeHit, audio: np.ndarray, origin: int
    ) -> None:
        started = time.perf_counter()
        estimate = EndEstimate(unsure_end(hit), "detector")
        try:
            loop = asyncio.get_running_loop()
            estimate = await loop.run_in_executor(self._executor, finder.locate, audio, origin, hit)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refining the wake word's end failed; using the detector's estimate")
        self._settle(hit, estimate, 1000 * (time.perf_counter() - started))

    def _settle(self, hit: WakeHit, estimate: EndEstimate, took_ms: float) -> None:
        self.bus.publish(
            WakeEndFound(
                model=hit.model,
                end_sample=estimate.sample,
                detector_end_sample=hit.end_sample,
                method=estimate.method,
                took_ms=round(took_ms, 1),
            )
        )
        try:
            self.on_end(estimate.sample)
        finally:
            # The session has taken what it needed from the pre-roll.
            self.capture.release(hit)
            self._held.discard(hit)
