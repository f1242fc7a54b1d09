"""The room's delay, measured continuously: how much later the echo reaches the microphone than
the reference that was timed to the moment it left the speaker.

The timed reference (`device.audio.align`) already accounts for the device's own buffers; what
is left is the path through the air (a few milliseconds a metre), any latency past the device's
buffer that PortAudio cannot see (a sound server's, a USB adapter's), and whatever the output
and input clocks have drifted apart since. None of it is known in advance, and all of it can
change while the device runs (a sound server adapts its latency; a loopback resamples), so the
estimate is made again every half second of played audio, never once.

The measurement is a whitened cross-correlation (GCC-PHAT) of the last second of microphone
with the reference: whitening keeps the peak at the direct path sharp for speech, with
reverberation after it. A peak that does not stand clearly out of the rest (the worker talking
over the reply, too little echo to hear) is no measurement, and the estimate only moves when
three measurements in a row agree.
"""

from __future__ import annotations

import collections

import numpy as np

from device.audio import CAPTURE_RATE


class DelayTracker:
    """Feed it each chunk of microphone and its unshifted reference; read `delay` (samples)."""

    def __init__(
        self,
        *,
        max_ms: int = 250,
        ahead_ms: int = 120,
        window_s: float = 1.0,
        every_s: float = 0.5,
        agree_ms: float = 1.0,
        min_peak: float = 8.0,
    ) -> None:
        self.max_lag = max_ms * CAPTURE_RATE // 1000
        self.ahead = ahead_ms * CAPTURE_RATE // 1000  # the echo ahead of its reference
        self.window = round(window_s * CAPTURE_RATE)
        self.every = round(every_s * CAPTURE_RATE)
        self.agree = round(agree_ms * CAPTURE_RATE / 1000)
        self.min_peak = min_peak
        keep = self.window + self.max_lag + self.ahead
        self._mic: collections.deque[np.ndarray] = collections.deque()
        self._ref: collections.deque[np.ndarray] = collections.deque()
        self._held = 0
        self._keep = keep
        self._since = 0  # samples with the speaker playing since the last measurement
        self._recent: collections.deque[int] = collections.deque(maxlen=3)
        self.delay: int | None = None  # samples; None until measured
        self.measurements = 0
        self.rejected = 0
        self.last_peak = 0.0

    @property
    def delay_ms(self) -> float | None:
        return None if self.delay is None else round(1000 * self.delay / CAPTURE_RATE, 1)

    def add(self, mic: bytes, reference: bytes, *, talking: bool = False) -> bool:
        """Take one chunk; True when `delay` changed."""
        m = np.frombuffer(mic, dtype="<i2").astype(np.float32)
        r = np.frombuffer(reference, dtype="<i2").astype(np.float32)
        self._mic.append(m)
        self._ref.append(r)
        self._held += m.size
        while self._held - self._mic[0].size >= self._keep:
            self._held -= self._mic.popleft().size
            self._ref.popleft()
        if talking or not r.any():
            return False
        self._since += m.size
        if self._since < self.every or self._held < self._keep:
            return False
        self._since = 0
        return self._measure()

    def _measure(self) -> bool:
        mic = np.concatenate(self._mic)[-self._keep :]
        ref = np.concatenate(self._ref)[-self._keep :]
        # The mic's window ends `ahead` before the newest sample, so an echo up to that much
        # ahead of its reference is still inside the reference's stretch.
        near = mic[self._keep - self.ahead - self.window : self._keep - self.ahead]
        if float(np.mean(ref[-self.window - self.ahead :] ** 2)) < 1e-2 * 32768**2 * 1e-5:
            return False  # too little played (quieter than -50 dBFS) to measure anything
        size = 1 << int(np.ceil(np.log2(near.size + ref.size)))
        spectrum = np.conj(np.fft.rfft(near, size)) * np.fft.rfft(ref, size)
        spectrum /= np.abs(spectrum) + 1e-9
        cc = np.fft.irfft(spectrum, size)[: self.max_lag + self.ahead + 1]
        k = int(np.argmax(cc))
        spread = float(np.std(cc)) or 1.0
        self.last_peak = float(cc[k]) / spread
        if self.last_peak < self.min_peak:
            self.rejected += 1
            return False
        self.measurements += 1
        self._recent.append(self.max_lag - k)
        if len(self._recent) < 3 or max(self._recent) - min(self._recent) > self.agree:
            return False
        delay = int(np.median(self._recent))
        changed = delay != self.delay
        self.delay = delay
        return changed
