"""Pairing each microphone chunk with the audio that was leaving the speaker as it was captured.

The echo canceller subtracts what the speaker played from the microphone, so it must be given,
for every captured sample, the played sample that was in the air at that moment. Counting
samples at both ends is not enough on a real output path: the device buffers tens to hundreds
of milliseconds, the player hands it audio in bursts, it runs dry between pieces of a reply, and
a barge-in flush drops what it still held, none of which the microphone's count sees.

So both ends say when, on one clock (`time.monotonic()`, in samples at 16 kHz: the grid):
- the speaker's `RenderMark`s say when each buffer handed to the device leaves it
  (`device.audio.playback`; for PortAudio, what its buffer holds when the buffer is written);
- the microphone says when each chunk's first sample reached the converter (PortAudio's
  `input_buffer_adc_time`; `device.audio.source`).

Played audio is laid on the grid at the time it is heard (`Timeline`); each captured chunk reads
the grid at its own time. Each side's position follows its estimates through a `_Track`: blocks
stay contiguous, so a few milliseconds of estimate noise do not tear the reference; the two
clocks' drift is followed one sample at a time; a jump (the device restarted after running dry,
an overrun) re-snaps at once. A flush cuts the grid where the device stopped, so audio that
never left the speaker is never taken for echo.

What remains between the reference and the echo is the room (speaker to microphone, plus any
latency past the device's own buffer): `device.audio.delay.DelayTracker` measures it, and the
reference is read that much earlier, less a little headroom, so the canceller always sees the
echo a few milliseconds after its reference.

A sink that gives no marks, or a microphone that gives no times (files, the test rooms that run
faster than real time), gets the older pairing: the reference is paced by the microphone, each
chunk taking as many played samples as it has.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.playback import RenderMark
from device.audio.resample import PromptResampler, Resampler
from device.audio.tap import SpeakerTap

GRID_RATE = CAPTURE_RATE
# Played audio is kept this far back for the reference; more than any speaker-to-mic delay.
_REFERENCE_MAX_S = 0.5


class _Track:
    """A stream's samples placed on the grid from noisy per-block estimates of their time.

    Blocks are laid end to end. The estimates' noise is one-sided: a thread preempted between
    reading the device and reading the clock only ever makes a block look later than it is
    (on a loaded machine by tens of milliseconds). So the position follows the lowest error of
    the last `window` blocks, one sample per block (50 samples a second, ample for two
    crystals 200 ppm apart). A block much earlier than laid is a real jump (re-snap at once);
    much later, it is a jump only when three blocks in a row say so (the device ran dry), and
    a new segment (`start`: the device restarted) re-snaps at once. For `settle` blocks after
    a snap the position follows the earliest estimate since it at once, in either direction.
    """

    def __init__(
        self, *, jump: int = GRID_RATE * 30 // 1000, window: int = 25, settle: int = 8
    ) -> None:
        self.jump = jump
        self.settle = settle
        self._settling = 0
        self.next: int | None = None
        self.resnaps = 0
        self.outliers = 0
        self._errors: deque[float] = deque(maxlen=window)
        self._late: list[float] = []

    def place(self, estimate: float, samples: int, *, start: bool = False) -> int:
        """The grid position of a block of `samples` whose first is estimated at `estimate`."""
        if self.next is None or start:
            self._snap(estimate)
        else:
            error = estimate - self.next
            if error < -self.jump:
                self._snap(estimate)
            elif error > self.jump:
                self._late.append(error)
                if len(self._late) >= 3:
                    self._snap(self.next + min(self._late))
                else:
                    self.outliers += 1
            else:
                self._late.clear()
                self._errors.append(error)
                floor = min(self._errors)
                # Later than laid: drift, or noise; one sample per block. Earlier than laid:
                # the noise is only ever late, so the block was laid late (a segment started
                # on a preempted estimate): back to the earliest estimate at once. Left for
                # the slow step, that error stayed for the whole reply (tens of ms, a second
                # of it per 1.25 ms), and the echo then came before its reference.
                step = 1 if floor >= 1.0 else math.floor(floor) if floor <= -1.0 else 0
                if self._settling > 0:
                    # The first blocks after a snap: the snap's own estimate is one block's,
                    # and a device that starts only once it holds enough (a sound server's
                    # pre-buffer) starts later than its first block says. Follow the earliest
                    # estimate since the snap at once, either way.
                    self._settling -= 1
                    step = math.floor(floor) if abs(floor) >= 1.0 else 0
                if step:
                    self.next += step
                    self._errors = deque((e - step for e in self._errors), self._errors.maxlen)
        assert self.next is not None
        at = self.next
        self.next += samples
        return at

    def _snap(self, estimate: float) -> None:
        self.resnaps += self.next is not None
        self.next = round(estimate)
        self._settling = self.settle
        self._errors.clear()
        self._late.clear()

    def reset(self) -> None:
        self.next = None


class Timeline:
    """Played audio at 16 kHz, laid on the grid where it is heard: a ring of `seconds`."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.size = round(seconds * GRID_RATE)
        self._ring = np.zeros(self.size, dtype=np.int16)
        self.high: int | None = None  # just past the latest sample laid

    def _put(self, at: int, samples: np.ndarray) -> None:
        index = (at + np.arange(samples.size)) % self.size
        self._ring[index] = samples

    def write(self, at: int, samples: np.ndarray) -> None:
        if samples.size > self.size:
            at += samples.size - self.size
            samples = samples[-self.size :]
        if samples.size == 0:
            return
        if self.high is not None and at > self.high:
            # The speaker was silent in between (it ran dry): that stretch is silence.
            start = max(self.high, at - self.size)
            self._put(start, np.zeros(at - start, dtype=np.int16))
        self._put(at, samples)
        self.high = at + samples.size if self.high is None else max(self.high, at + samples.size)

    def cut(self, at: int) -> None:
        """Nothing laid from `at` on is heard (the device dropped it)."""
        if self.high is None or at >= self.high:
            return
        start = max(at, self.high - self.size)
        self._put(start, np.zeros(self.high - start, dtype=np.int16))
        self.high = at

    def read(self, at: int, samples: int) -> np.ndarray:
        out = np.zeros(samples, dtype=np.int16)
        if self.high is None:
            return out
        lo, hi = max(at, self.high - self.size), min(at + samples, self.high)
        if hi > lo:
            out[lo - at : hi - at] = self._ring[np.arange(lo, hi) % self.size]
        return out


class Reference:
    """What the speaker played, resampled to the capture rate, paired with each mic chunk.

    `take(nbytes, captured_at)` returns the reference for a chunk whose first sample was
    captured at `captured_at` (`time.monotonic()`); `unshifted` is the same stretch read
    exactly at the capture time (what the delay tracker compares with the microphone).
    `shift` is how many samples earlier the reference is read: the room's delay less headroom.
    """

    def __init__(self, tap: SpeakerTap) -> None:
        self.tap = tap
        self._resampler = Resampler(tap.rate, CAPTURE_RATE)
        self._fifo = bytearray()
        self._max = round(_REFERENCE_MAX_S * CAPTURE_RATE) * SAMPLE_WIDTH
        self.timeline = Timeline()
        self.render = _Track()
        self.capture = _Track()
        self.shift = 0
        self.timed = False  # both ends report times: the timeline pairs them
        self.unshifted: bytes = b""
        self._last: tuple[int, int] | None = None  # the last timed chunk: grid position, size
        self._pending = bytearray()  # played bytes waiting for their mark
        self._pending_end = tap.played_until
        self._marks: deque[RenderMark] = deque()
        # Played samples fed to the resampler and resampled samples out of it, since its last
        # reset, and when each stretch of input is heard: (first input sample, end, heard at).
        self._prompt = PromptResampler(tap.rate, CAPTURE_RATE)
        self._fed = 0
        self._out = 0
        self._stretches: deque[tuple[int, int, float]] = deque(maxlen=64)
        self._new_segment = False  # the device restarted: the next laying re-snaps
        self.cuts = 0

    def take(self, nbytes: int, captured_at: float | None = None) -> bytes:
        played = self.tap.take_played()
        marks = self.tap.take_marks()
        if marks and captured_at is not None and not self.timed:
            self.timed = True
            self._fifo.clear()
            self._resampler.reset()
        if not self.timed or captured_at is None:
            self.unshifted = self._counted(played, nbytes)
            return self.unshifted
        self._pending += played
        self._pending_end = self.tap.played_until
        self._marks.extend(marks)
        self._lay()
        samples = nbytes // SAMPLE_WIDTH
        at = self.capture.place(captured_at * GRID_RATE, samples)
        self._last = (at, samples)
        self.unshifted = self.timeline.read(at, samples).tobytes()
        if self.shift == 0:
            return self.unshifted
        return self.timeline.read(at - self.shift, samples).tobytes()

    def as_heard(self, delay: int) -> bytes | None:
        """The last chunk's reference `delay` samples earlier: in step with the echo itself
        when `delay` is the room's (what the gate compares the microphone with)."""
        if self._last is None:
            return None
        at, samples = self._last
        return self.timeline.read(at - delay, samples).tobytes()

    def _counted(self, played: bytes, nbytes: int) -> bytes:
        """The reference paced by the microphone (no times): as many samples as it took."""
        if played:
            self._fifo += self._resampler.process(played)
        if len(self._fifo) > self._max:
            # The speaker ran ahead of the microphone (two clocks): drop the oldest, keep sync.
            del self._fifo[: len(self._fifo) - self._max]
        out = bytes(self._fifo[:nbytes])
        del self._fifo[:nbytes]
        return out + bytes(nbytes - len(out))

    def _lay(self) -> None:
        """Lay the played bytes whose marks have come on the timeline, where they are heard."""
        start = self._pending_end - len(self._pending)
        while self._marks:
            mark = self._marks[0]
            if mark.cut:
                self.timeline.cut(round(mark.heard_at * GRID_RATE))
                self.render.reset()
                self._prompt.reset()
                self._fed = self._out = 0
                self._stretches.clear()
                self.cuts += 1
            elif mark.offset > self._pending_end:
                break  # its bytes are not here yet
            else:
                count = mark.offset - start
                if count > 0:
                    segment = bytes(self._pending[:count])
                    del self._pending[:count]
                    start += count
                    # Audio handed over after the laid audio would have ended: the device
                    # ran dry in between (an underrun), whatever its clock says.
                    ran_dry = (
                        mark.handed_at is not None
                        and self.render.next is not None
                        and self.render.next < mark.handed_at * GRID_RATE - self.render.jump
                    )
                    self._resample(segment, mark.heard_at, start=mark.start or ran_dry)
            self._marks.popleft()
        # Bytes that never get a mark (none, normally) are not kept for ever.
        excess = len(self._pending) - self._max * 3
        if excess > 0:
            del self._pending[:excess]

    def _resample(self, segment: bytes, heard_end: float, *, start: bool = False) -> None:
        """Resample one marked stretch and lay what comes out where it is heard.

        Each output sample stands for a known input sample: it is laid at that input sample's
        time, never at the time of the buffer that happened to release it."""
        count = len(segment) // SAMPLE_WIDTH
        if start:
            self._new_segment = True
        self._stretches.append((self._fed, self._fed + count, heard_end - count / self.tap.rate))
        self._fed += count
        pcm = np.frombuffer(self._prompt.process(segment), dtype="<i2")
        if not pcm.size:
            return
        position = self._prompt.input_position(self._out)
        self._out += pcm.size
        # The stretch the position falls in (the newest, if it is past them all).
        first, _, heard = next(
            (stretch for stretch in self._stretches if position < stretch[1]),
            self._stretches[-1],
        )
        estimate = (heard + (position - first) / self.tap.rate) * GRID_RATE
        at = self.render.place(estimate, pcm.size, start=self._new_segment)
        self._new_segment = False
        self.timeline.write(at, pcm)
        while len(self._stretches) > 1 and self._stretches[0][1] <= position:
            self._stretches.popleft()
