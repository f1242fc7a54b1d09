"""Keeping the device's own voice out of its microphone: half-duplex gating, or echo cancellation.

A warehouse device plays through a speaker next to its microphone, so without care it hears
itself: its reply wakes it ("...ask Hey Jarvis...") or the service's voice detection hears the
reply and interrupts it. Three modes, set by `[echo] mode`:

- `half_duplex`: while the device speaks (and for `tail_ms` after, while the room still rings)
  the microphone sends silence. The worker can still barge in: by button, or by speech
  clearly louder than the echo the device expects from what it is playing. The echo's level is
  learned as the coupling between the played reference and the microphone, so the gate opens
  on a voice `barge_in_margin_db` above that estimate and stays open until playback stops.
- `aec`: full duplex. WebRTC's AEC3 (the `pywebrtc-audio` bindings, aarch64 wheels) subtracts
  the played audio, taken from `SpeakerTap` as its reference, from the microphone. The worker
  talks over the reply and the service hears only them. What the canceller leaves of the echo
  (short bursts 10-15 dB over the noise floor on a test room) still reaches an energy-based
  voice detector, so the same gate runs after it on the residual: it learns the much weaker
  residual coupling and opens for a worker's normal voice.
- `off`: the microphone is passed through untouched (headsets).

Noise suppression and automatic gain (WebRTC NS and AGC2) can be added in any mode for loud
floors; in `aec` mode they run in the same pass as the echo canceller.

The canceller's reference is the played audio at the moment it left the speaker, paired with
each microphone chunk by time (`device.audio.align`), and the room's delay past that is
measured all the time (`device.audio.delay`). Every stage returns exactly as many samples as it
was given, so stream offsets stay exact.

Modules: `tap` (what was played), `align` (pairing by time), `delay` (the room's delay),
`gate` (the half-duplex gate and `BargeIn`), `canceller` (WebRTC, ERLE); this one wires them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from device.audio import CAPTURE_RATE
from device.audio.align import Reference
from device.audio.canceller import Erle, WebRtcProcessor
from device.audio.delay import DelayTracker
from device.audio.gate import BargeIn, HalfDuplexGate, level_db
from device.audio.tap import SpeakerTap
from device.config import EchoSettings
from device.events import EventBus

__all__ = [
    "ECHO_MODES",
    "NOISE_LEVELS",
    "BargeIn",
    "EchoMode",
    "EchoStage",
    "HalfDuplexGate",
    "SpeakerTap",
    "build_echo_stage",
    "level_db",
]

log = logging.getLogger(__name__)

EchoMode = Literal["half_duplex", "aec", "off"]
ECHO_MODES: tuple[EchoMode, ...] = ("half_duplex", "aec", "off")
# WebRTC NS levels 0-3 suppress about 6, 12, 18 and 21 dB of noise.
NOISE_LEVELS = {"off": None, "low": 0, "moderate": 1, "high": 2, "very_high": 3}


class EchoStage:
    """The capture stage for one echo mode: a `ChunkProcessor` for `device.audio.capture`."""

    def __init__(
        self,
        mode: EchoMode,
        tap: SpeakerTap | None,
        *,
        bus: EventBus | None = None,
        tail_ms: int = 300,
        barge_in_margin_db: float = 10.0,
        barge_in_ms: int = 100,
        aec_delay_ms: int = 0,
        noise_suppression: str = "off",
        auto_gain: bool = False,
        mic_time: Callable[[], float | None] | None = None,
        headroom_ms: float = 20.0,
        min_lag_ms: float = 4.0,
        max_lag_ms: float = 200.0,
    ) -> None:
        if mode not in ECHO_MODES:
            raise ValueError(f"echo mode {mode!r} is unknown; use one of {', '.join(ECHO_MODES)}")
        if noise_suppression not in NOISE_LEVELS:
            raise ValueError(
                f"noise_suppression {noise_suppression!r} is unknown; use one of "
                f"{', '.join(NOISE_LEVELS)}"
            )
        if mode != "off" and tap is None:
            raise ValueError(f"echo mode {mode!r} needs the speaker's SpeakerTap as reference")
        self.mode = mode
        self.reference = Reference(tap) if tap is not None and mode != "off" else None
        self.gate: HalfDuplexGate | None = None
        self.webrtc: WebRtcProcessor | None = None
        noise_level = NOISE_LEVELS[noise_suppression]
        if tap is not None and mode != "off":
            # In `aec` mode the gate runs after the canceller, on what is left of the echo: it
            # learns that much weaker coupling, so it only catches residual bursts, and opens
            # for a worker's normal voice (a canceller's non-linear post-filter, in effect).
            self.gate = HalfDuplexGate(
                tap,
                bus=bus,
                tail_ms=tail_ms,
                barge_in_margin_db=barge_in_margin_db,
                barge_in_ms=barge_in_ms,
                initial_coupling_db=0.0 if mode == "half_duplex" else -20.0,
            )
        if mode == "aec" or noise_level is not None or auto_gain:
            self.webrtc = WebRtcProcessor(
                echo_cancellation=mode == "aec",
                noise_level=noise_level,
                auto_gain=auto_gain,
                delay_ms=aec_delay_ms,
            )
        self._erle = Erle()
        # When each mic chunk was captured (`time.monotonic()`); `Capture` binds its source.
        self._mic_time = mic_time
        self.tracker = DelayTracker()
        # The echo must stay after its reference (a canceller cannot subtract what it has not
        # been given yet) and within the canceller's own delay search. Inside that window the
        # reference is left alone: every move costs AEC3 about three seconds of re-converging
        # (45 dB of ERLE fell to 8-14 dB after one 40 ms move, on the test room).
        self.headroom = round(headroom_ms * CAPTURE_RATE / 1000)
        self.min_lag = round(min_lag_ms * CAPTURE_RATE / 1000)
        self.max_lag = round(max_lag_ms * CAPTURE_RATE / 1000)
        self.realignments = 0
        # One thread keeps the DSP state machine in stream order, off the event loop.
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-dsp")
            if self.webrtc is not None
            else None
        )

    def bind_source(self, source: object) -> None:
        """Take each chunk's capture time from `source` (its `chunk_adc_time`, if it has one)."""
        if self._mic_time is None and hasattr(source, "chunk_adc_time"):
            self._mic_time = lambda: getattr(source, "chunk_adc_time", None)

    async def process(self, pcm: bytes) -> bytes:
        # The reference is taken once per chunk, on the loop, and shared by both stages.
        far = None
        if self.reference is not None:
            captured_at = self._mic_time() if self._mic_time is not None else None
            far = self.reference.take(len(pcm), captured_at)
            # The tracker runs even while the gate is open for the worker: a misaligned
            # reference leaves enough echo to open the gate, and the tracker must still see it
            # to fix it. Its own peak test rejects what double talk spoils.
            timed = self.reference.timed and captured_at is not None
            if timed and self.tracker.add(pcm, self.reference.unshifted):
                self._realign()
        # The gate compares the microphone with the echo it expects: the reference in step
        # with the echo once the room's delay is known (a stall in the reference then no
        # longer looks like a worker talking over the echo that is still arriving).
        heard = far
        if self.reference is not None and self.reference.timed and self.tracker.delay is not None:
            heard = self.reference.as_heard(self.tracker.delay) or far
        lead = self.reference.unshifted if self.reference is not None else None
        if self.gate is not None:
            # Until the room's delay is measured, the echo may come anywhere within a second
            # of its reference (the first reply cut itself on an echo 300+ ms late).
            timed = self.reference is not None and self.reference.timed
            self.gate.wide = timed and self.tracker.delay is None
        if self.gate is not None and heard is not None and self.mode == "half_duplex":
            pcm = self.gate.process(pcm, heard, lead=lead)
        raw = pcm
        if self.webrtc is not None and self._executor is not None:
            loop = asyncio.get_running_loop()
            aec_far = far if self.webrtc.echo_cancellation else None
            pcm = await loop.run_in_executor(self._executor, self.webrtc.process, pcm, aec_far)
        if self.gate is not None and far is not None and self.mode == "aec":
            self._erle.add(raw, pcm, far, talking=self.gate.open_for_barge_in)
            pcm = self.gate.process(pcm, heard or far, raw, lead=lead)
        return pcm

    def _realign(self) -> None:
        """Move the reference when the room's delay left the window the canceller likes."""
        assert self.reference is not None and self.tracker.delay is not None
        lag = self.tracker.delay - self.reference.shift
        if self.min_lag <= lag <= self.max_lag:
            return
        # Negative when the device says its audio leaves later than it does: the reference is
        # then read ahead of the capture time (the device still holds that audio).
        shift = self.tracker.delay - self.headroom
        if shift != self.reference.shift:
            log.info(
                "echo arrives %.1f ms after the speaker: reference read %.1f ms earlier",
                self.tracker.delay * 1000 / CAPTURE_RATE,
                shift * 1000 / CAPTURE_RATE,
            )
            self.reference.shift = shift
            self.realignments += 1

    @property
    def tracked_delay_ms(self) -> float | None:
        """The room's delay past the speaker's own buffer, as measured (None until it is)."""
        return self.tracker.delay_ms

    @property
    def erle_db(self) -> float | None:
        """Echo return loss enhancement of the canceller so far: echo power in the microphone
        over what is left of it, while only the device spoke. None before any echo."""
        return self._erle.db

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def build_echo_stage(settings: EchoSettings, tap: SpeakerTap, *, bus: EventBus) -> EchoStage | None:
    """The capture stage `[echo]` asks for; None when it would change nothing."""
    if settings.mode == "off" and settings.noise_suppression == "off" and not settings.auto_gain:
        return None
    return EchoStage(
        settings.mode,
        tap,
        bus=bus,
        tail_ms=settings.tail_ms,
        barge_in_margin_db=settings.barge_in_margin_db,
        barge_in_ms=settings.barge_in_ms,
        aec_delay_ms=settings.aec_delay_ms,
        noise_suppression=settings.noise_suppression,
        auto_gain=settings.auto_gain,
    )
