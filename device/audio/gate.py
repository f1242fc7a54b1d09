"""The echo gate: silence the microphone while the device speaks, unless the worker barges in.

In `half_duplex` mode it runs on the microphone; in `aec` mode after the canceller, on what is
left of the echo (see `device.audio.echo`). It publishes `BargeIn` when it opens for the worker.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from device.audio import CAPTURE_RATE
from device.audio.tap import SpeakerTap
from device.events import Event, EventBus

log = logging.getLogger(__name__)

FLOOR_DB = -100.0


@dataclass(frozen=True, kw_only=True)
class BargeIn(Event):
    """Half-duplex: the worker spoke over the reply loudly enough to open the microphone."""

    kind: ClassVar[str] = "barge_in"
    level_db: float  # microphone level, dBFS
    echo_db: float  # the echo level expected from what was playing, dBFS


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS of int16 samples (-100 for silence)."""
    if samples.size == 0:
        return FLOOR_DB
    rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2)))
    return max(FLOOR_DB, 20 * math.log10(rms / 32768)) if rms > 0 else FLOOR_DB


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
        wide_envelope_ms: int = 1000,
    ) -> None:
        self.tap = tap
        self.bus = bus
        self.tail_samples = tail_ms * CAPTURE_RATE // 1000
        self.margin_db = barge_in_margin_db
        self.barge_in_samples = barge_in_ms * CAPTURE_RATE // 1000
        self.coupling_db = initial_coupling_db
        self.envelope_steps = max(1, envelope_ms // 10)
        # Until the room's delay is measured (`widen`), the expected echo spans this long:
        # a sound server's first stream start can play well after the device says.
        self.wide_steps = max(self.envelope_steps, wide_envelope_ms // 10)
        self.wide = False
        self._envelope: collections.deque[float] = collections.deque(maxlen=self.wide_steps)
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
        self.floor_db = FLOOR_DB

    @property
    def gating(self) -> bool:
        return self._since_playing is not None and not self.open_for_barge_in

    def expected_echo_db(self) -> float:
        return self._envelope_db() + self.coupling_db

    def _envelope_db(self, *, wide: bool | None = None) -> float:
        """The loudest reference level over the envelope's span (wider while `wide`)."""
        steps = self.wide_steps if (self.wide if wide is None else wide) else self.envelope_steps
        recent = itertools.islice(reversed(self._envelope), steps)
        return max(recent, default=FLOOR_DB)

    def process(
        self, pcm: bytes, reference: bytes, raw: bytes | None = None, lead: bytes | None = None
    ) -> bytes:
        """Gate `pcm` given `reference`, what the speaker played meanwhile (same length).

        `lead` is the played audio as it left the speaker (no room delay): the echo can come
        no sooner. The expected echo covers both, so a room delay measured on an earlier
        reply and a few milliseconds off for this one (each reply restarts the output, whose
        start time is only estimated) never leaves a reply's first syllable unexpected: at
        the start of replies that opened the gate, cut replies on the device's own voice.

        After a canceller, `raw` is the microphone before it: the double-talk guard. A burst
        of residual echo (the canceller re-converging after the echo path changed) is loud
        after the canceller but not in the microphone; a worker talking is loud in both."""
        mic = np.frombuffer(pcm, dtype="<i2")
        if self._since_playing is None and not self.tap.playing and not reference.strip(b"\0"):
            # Idle, the usual case: only the noise floor is followed (one level per chunk).
            self._follow_floor(level_db(mic), mic.size)
            self._envelope.append(FLOOR_DB)
            return pcm
        ref = np.frombuffer(reference, dtype="<i2")
        ahead = np.frombuffer(lead, dtype="<i2") if lead is not None else None
        near = np.frombuffer(raw, dtype="<i2") if raw is not None else None
        # Levels per 10 ms, the resolution of the envelope and of the barge-in count.
        step = CAPTURE_RATE // 100
        out = bytearray()
        for i in range(0, mic.size, step):
            raw_db = level_db(near[i : i + step]) if near is not None else None
            ref_db = level_db(ref[i : i + step])
            if ahead is not None:
                ref_db = max(ref_db, level_db(ahead[i : i + step]))
            out += self._decide(mic[i : i + step], ref_db, raw_db)
        return bytes(out)

    def _raw_loud(self, raw_db: float | None, envelope: float, learn_envelope: float) -> bool:
        """The microphone itself is above the loudest echo expected of it (guard passes)."""
        if raw_db is None:
            return True
        loud = raw_db > envelope + self.raw_coupling_db + self.raw_margin_db
        if not loud and learn_envelope > -50.0 and raw_db > FLOOR_DB:
            self._raw_ratios.append(raw_db - learn_envelope)
            if len(self._raw_ratios) >= 20:
                self.raw_coupling_db = float(np.percentile(self._raw_ratios, 90))
        return loud

    def _decide(self, mic: np.ndarray, ref_db: float, raw_db: float | None = None) -> bytes:
        self._envelope.append(ref_db)
        mic_db = level_db(mic)
        self._follow_floor(mic_db, mic.size)
        if self.tap.playing or ref_db > FLOOR_DB:
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
        envelope = self._envelope_db()
        # The coupling is learned against the usual span's envelope, whatever the span used
        # to decide: learned against the wide one, it stayed low once the span narrowed.
        narrow = self._envelope_db(wide=False) if self.wide else envelope
        expected = max(envelope + self.coupling_db, self.floor_db)
        loud = self._raw_loud(raw_db, envelope, narrow) and mic_db > expected + self.margin_db
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
        if not loud and not suspect and narrow > -50.0 and mic_db > FLOOR_DB:
            self._learn(mic_db - narrow)
        self.gated_samples += mic.size
        return bytes(mic.nbytes)

    def _follow_floor(self, mic_db: float, samples: int = CAPTURE_RATE // 50) -> None:
        # The room's noise floor follows every dip at once and rises 2 dB a second, so speech
        # and echo never count as floor for long.
        risen = self.floor_db + 2.0 * samples / CAPTURE_RATE
        self.floor_db = mic_db if self.floor_db <= FLOOR_DB else min(mic_db, risen)

    def _learn(self, ratio_db: float) -> None:
        # The coupling is a high percentile of mic-over-reference while only echo is heard, so
        # quiet gaps in the reply do not lower it and a worker's word now and then does not
        # raise it much.
        self._ratios.append(ratio_db)
        if len(self._ratios) >= 20:
            self.coupling_db = float(np.percentile(self._ratios, 90))
