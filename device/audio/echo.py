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

Every stage returns exactly as many samples as it was given, so stream offsets stay exact.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import numpy as np

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.resample import Resampler
from device.audio.sink import AudioSink
from device.config import EchoSettings
from device.events import Event, EventBus

log = logging.getLogger(__name__)

EchoMode = Literal["half_duplex", "aec", "off"]
ECHO_MODES: tuple[EchoMode, ...] = ("half_duplex", "aec", "off")
# WebRTC NS levels 0-3 suppress about 6, 12, 18 and 21 dB of noise.
NOISE_LEVELS = {"off": None, "low": 0, "moderate": 1, "high": 2, "very_high": 3}
_FLOOR_DB = -100.0
# Played audio is kept this far back for the reference; more than any speaker-to-mic delay.
_REFERENCE_MAX_S = 0.5


@dataclass(frozen=True, kw_only=True)
class BargeIn(Event):
    """Half-duplex: the worker spoke over the reply loudly enough to open the microphone."""

    kind: ClassVar[str] = "barge_in"
    level_db: float  # microphone level, dBFS
    echo_db: float  # the echo level expected from what was playing, dBFS


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS of int16 samples (-100 for silence)."""
    if samples.size == 0:
        return _FLOOR_DB
    rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2)))
    return max(_FLOOR_DB, 20 * math.log10(rms / 32768)) if rms > 0 else _FLOOR_DB


class SpeakerTap:
    """An `AudioSink` that plays through `sink` and remembers what was played: the echo
    reference. Everything else is passed straight through.

    Played audio is written audio minus what a flush dropped (the queue's tail), in order, so
    `take_played()` returns the bytes the speaker has taken since the last call. Unplayed audio
    is bounded by the sink's own queue limit; played audio is kept for at most `KEEP_S`, so
    the tap drains in every mode, even when nothing takes the reference (`echo.mode = "off"`).
    """

    KEEP_S: ClassVar[float] = 1.0

    def __init__(self, sink: AudioSink) -> None:
        self.sink = sink
        self.rate = sink.rate
        self._unplayed = bytearray()  # written, not yet taken by the speaker
        self._played = bytearray()  # taken by the speaker, not yet by `take_played`
        self._keep = round(self.KEEP_S * sink.rate) * SAMPLE_WIDTH
        self._taken = sink.played_bytes
        self.dropped_reference_bytes = 0

    @property
    def kept_bytes(self) -> int:
        """What the tap holds: queued in the sink, plus played and not yet taken."""
        return len(self._unplayed) + len(self._played)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    @property
    def playing(self) -> bool:
        return self.sink.playing

    @property
    def played_bytes(self) -> int:
        return self.sink.played_bytes

    @property
    def last_played_at(self) -> float | None:
        return self.sink.last_played_at

    async def open(self) -> None:
        await self.sink.open()

    async def write(self, pcm: bytes) -> None:
        await self.sink.write(pcm)
        # After the await, on the loop thread: `take_played` cannot run in between.
        self._unplayed += pcm
        self._settle()

    def flush(self) -> int:
        self._settle()
        dropped = self.sink.flush()
        if dropped:
            del self._unplayed[max(0, len(self._unplayed) - dropped) :]
        return dropped

    async def drain(self) -> None:
        await self.sink.drain()

    async def wait_played(self, nbytes: int) -> None:
        await self.sink.wait_played(nbytes)

    async def close(self) -> None:
        await self.sink.close()
        self._unplayed.clear()
        self._played.clear()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def take_played(self) -> bytes:
        """The audio (at `rate`) the speaker took since the previous call (at most `KEEP_S`)."""
        self._settle()
        out = bytes(self._played)
        self._played.clear()
        return out

    def _settle(self) -> None:
        """Move what the speaker has taken from the unplayed queue to the bounded played one."""
        played = self.sink.played_bytes
        count = max(0, played - self._taken)
        self._taken = played
        count -= count % SAMPLE_WIDTH
        moved = self._unplayed[:count]
        del self._unplayed[:count]
        self._played += moved
        # Bytes played that were never written through the tap (none, normally): silence.
        self._played += bytes(count - len(moved))
        excess = len(self._played) - self._keep
        if excess > 0:
            del self._played[:excess]
            self.dropped_reference_bytes += excess


class Reference:
    """What the speaker played, resampled to the capture rate and paced by the microphone:
    each mic chunk takes as many reference samples as it has, silence when nothing played."""

    def __init__(self, tap: SpeakerTap) -> None:
        self.tap = tap
        self._resampler = Resampler(tap.rate, CAPTURE_RATE)
        self._fifo = bytearray()
        self._max = round(_REFERENCE_MAX_S * CAPTURE_RATE) * SAMPLE_WIDTH

    def take(self, nbytes: int) -> bytes:
        played = self.tap.take_played()
        if played:
            self._fifo += self._resampler.process(played)
        if len(self._fifo) > self._max:
            # The speaker ran ahead of the microphone (two clocks): drop the oldest, keep sync.
            del self._fifo[: len(self._fifo) - self._max]
        out = bytes(self._fifo[:nbytes])
        del self._fifo[:nbytes]
        return out + bytes(nbytes - len(out))


class HalfDuplexGate:
    """Silence the microphone while the device speaks, unless the worker clearly barges in.

    Decisions are counted in microphone samples, so they hold at any playback speed.
    """

    def __init__(
        self,
        tap: SpeakerTap,
        *,
        bus: EventBus | None = None,
        tail_ms: int = 300,
        barge_in_margin_db: float = 10.0,
        barge_in_ms: int = 100,
        envelope_ms: int = 300,
        initial_coupling_db: float = 0.0,
    ) -> None:
        self.tap = tap
        self.bus = bus
        self.tail_samples = tail_ms * CAPTURE_RATE // 1000
        self.margin_db = barge_in_margin_db
        self.barge_in_samples = barge_in_ms * CAPTURE_RATE // 1000
        self.coupling_db = initial_coupling_db
        self._envelope: collections.deque[float] = collections.deque(
            maxlen=max(1, envelope_ms // 10)
        )
        self._ratios: collections.deque[float] = collections.deque(maxlen=300)
        self._since_playing: int | None = None  # mic samples since the speaker last played
        # Samples louder than the expected echo, per 10 ms step, over the last `barge_in_ms`.
        self._recent: collections.deque[int] = collections.deque(maxlen=max(1, barge_in_ms // 10))
        # The double-talk guard's own coupling, microphone over reference, learned the same
        # way (see `process`); it starts at "as loud as what is played".
        self.raw_coupling_db = 0.0
        self.raw_margin_db = 3.0
        self._raw_ratios: collections.deque[float] = collections.deque(maxlen=300)
        self.open_for_barge_in = False
        self.gated_samples = 0
        self.barge_ins = 0
        self.floor_db = _FLOOR_DB

    @property
    def gating(self) -> bool:
        return self._since_playing is not None and not self.open_for_barge_in

    def expected_echo_db(self) -> float:
        return max(self._envelope, default=_FLOOR_DB) + self.coupling_db

    def process(self, pcm: bytes, reference: bytes, raw: bytes | None = None) -> bytes:
        """Gate `pcm` given `reference`, what the speaker played meanwhile (same length).

        After a canceller, `raw` is the microphone before it: the double-talk guard. A burst
        of residual echo (the canceller re-converging after the echo path changed) is loud
        after the canceller but not in the microphone; a worker talking is loud in both."""
        mic = np.frombuffer(pcm, dtype="<i2")
        if self._since_playing is None and not self.tap.playing and not reference.strip(b"\0"):
            # Idle, the usual case: only the noise floor is followed (one level per chunk).
            self._follow_floor(level_db(mic))
            self._envelope.append(_FLOOR_DB)
            return pcm
        ref = np.frombuffer(reference, dtype="<i2")
        near = np.frombuffer(raw, dtype="<i2") if raw is not None else None
        # Levels per 10 ms, the resolution of the envelope and of the barge-in count.
        step = CAPTURE_RATE // 100
        out = bytearray()
        for i in range(0, mic.size, step):
            raw_db = level_db(near[i : i + step]) if near is not None else None
            out += self._decide(mic[i : i + step], ref[i : i + step], raw_db)
        return bytes(out)

    def _raw_loud(self, raw_db: float | None, envelope: float) -> bool:
        """The microphone itself is above the loudest echo expected of it (guard passes)."""
        if raw_db is None:
            return True
        loud = raw_db > envelope + self.raw_coupling_db + self.raw_margin_db
        if not loud and envelope > -50.0 and raw_db > _FLOOR_DB:
            self._raw_ratios.append(raw_db - envelope)
            if len(self._raw_ratios) >= 20:
                self.raw_coupling_db = float(np.percentile(self._raw_ratios, 90))
        return loud

    def _decide(self, mic: np.ndarray, ref: np.ndarray, raw_db: float | None = None) -> bytes:
        ref_db = level_db(ref)
        self._envelope.append(ref_db)
        mic_db = level_db(mic)
        self._follow_floor(mic_db, mic.size)
        if self.tap.playing or ref_db > _FLOOR_DB:
            self._since_playing = 0
        elif self._since_playing is not None:
            self._since_playing += mic.size
            if self._since_playing > self.tail_samples:
                self._since_playing = None
                self.open_for_barge_in = False
                self._recent.clear()
        if self._since_playing is None:
            return mic.tobytes()
        if self.open_for_barge_in:
            return mic.tobytes()
        envelope = max(self._envelope)
        expected = max(envelope + self.coupling_db, self.floor_db)
        loud = self._raw_loud(raw_db, envelope) and mic_db > expected + self.margin_db
        # Speech has gaps between syllables: most of the last `barge_in_ms` must be loud, not
        # all of it.
        self._recent.append(mic.size if loud else 0)
        if loud and sum(self._recent) >= 0.6 * self.barge_in_samples:
            self.open_for_barge_in = True
            self.barge_ins += 1
            log.info("barge-in: mic %.1f dBFS over expected echo %.1f dBFS", mic_db, expected)
            if self.bus is not None:
                self.bus.publish(BargeIn(level_db=round(mic_db, 1), echo_db=round(expected, 1)))
            return mic.tobytes()
        # Only what may be echo teaches the coupling: a step more than half the margin over
        # the expected echo is likely the worker, and learning their voice as echo would raise
        # the bar while they talk (1.5 s of double talk lifted it 9 dB) so they never get in.
        suspect = mic_db > expected + self.margin_db / 2
        if not loud and not suspect and envelope > -50.0 and mic_db > _FLOOR_DB:
            self._learn(mic_db - envelope)
        self.gated_samples += mic.size
        return bytes(mic.nbytes)

    def _follow_floor(self, mic_db: float, samples: int = CAPTURE_RATE // 50) -> None:
        # The room's noise floor follows every dip at once and rises 2 dB a second, so speech
        # and echo never count as floor for long.
        risen = self.floor_db + 2.0 * samples / CAPTURE_RATE
        self.floor_db = mic_db if self.floor_db <= _FLOOR_DB else min(mic_db, risen)

    def _learn(self, ratio_db: float) -> None:
        # The coupling is a high percentile of mic-over-reference while only echo is heard, so
        # quiet gaps in the reply do not lower it and a worker's word now and then does not
        # raise it much.
        self._ratios.append(ratio_db)
        if len(self._ratios) >= 20:
            self.coupling_db = float(np.percentile(self._ratios, 90))


class WebRtcProcessor:
    """WebRTC audio processing: AEC3 against the speaker reference, noise suppression, AGC2."""

    def __init__(
        self,
        *,
        echo_cancellation: bool,
        noise_level: int | None = None,
        auto_gain: bool = False,
        delay_ms: int = 0,
    ) -> None:
        try:
            from pywebrtc_audio import AudioProcessor
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RuntimeError(
                "echo mode 'aec' and noise suppression need pywebrtc-audio; install it with "
                '`pip install pywebrtc-audio`, or set [echo] mode = "half_duplex"'
            ) from exc
        self.echo_cancellation = echo_cancellation
        self._ap = AudioProcessor(
            sample_rate=CAPTURE_RATE,
            echo_cancellation=echo_cancellation,
            noise_suppression=noise_level is not None,
            ns_level=noise_level if noise_level is not None else 1,
            auto_gain_control=auto_gain,
            high_pass_filter=True,
            stream_delay_ms=delay_ms,
        )

    def process(self, pcm: bytes, far: bytes | None) -> bytes:
        """Runs on the DSP thread (the library releases the GIL)."""
        near = np.frombuffer(pcm, dtype="<i2")
        if far is None:
            out = self._ap.process(near)
        else:
            out = self._ap.process(near, np.frombuffer(far, dtype="<i2"))
        return np.asarray(out, dtype="<i2").tobytes()


class Erle:
    """Echo return loss enhancement: microphone power over canceller output power, summed
    over chunks in which the speaker played and the worker was not talking."""

    def __init__(self) -> None:
        self.mic_energy = 0.0
        self.out_energy = 0.0

    def add(self, mic: bytes, out: bytes, far: bytes, *, talking: bool) -> None:
        if talking or level_db(np.frombuffer(far, dtype="<i2")) < -50.0:
            return
        self.mic_energy += float(np.sum(np.frombuffer(mic, dtype="<i2").astype(np.float64) ** 2))
        self.out_energy += float(np.sum(np.frombuffer(out, dtype="<i2").astype(np.float64) ** 2))

    @property
    def db(self) -> float | None:
        if self.mic_energy <= 0:
            return None
        return round(10 * math.log10(self.mic_energy / max(self.out_energy, 1.0)), 1)


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
        # One thread keeps the DSP state machine in stream order, off the event loop.
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-dsp")
            if self.webrtc is not None
            else None
        )

    async def process(self, pcm: bytes) -> bytes:
        # The reference is taken once per chunk, on the loop, and shared by both stages.
        far = self.reference.take(len(pcm)) if self.reference is not None else None
        if self.gate is not None and far is not None and self.mode == "half_duplex":
            pcm = self.gate.process(pcm, far)
        raw = pcm
        if self.webrtc is not None and self._executor is not None:
            loop = asyncio.get_running_loop()
            aec_far = far if self.webrtc.echo_cancellation else None
            pcm = await loop.run_in_executor(self._executor, self.webrtc.process, pcm, aec_far)
        if self.gate is not None and far is not None and self.mode == "aec":
            self._erle.add(raw, pcm, far, talking=self.gate.open_for_barge_in)
            pcm = self.gate.process(pcm, far, raw)
        return pcm

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
