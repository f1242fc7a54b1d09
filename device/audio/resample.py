"""Streaming sample-rate conversion and channel mixing for PCM16 bytes.

Audio arrives in small chunks (20 ms from a mic, whatever size the model sends), so the
resampler keeps its filter state between chunks: converting each chunk on its own would click
at every boundary and drift in length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import soxr

from device.audio.errors import AudioFormatError

_DTYPE = np.dtype("<i2")


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, not {rate!r}")
    return rate


class Resampler:
    """Mono PCM16 from `in_rate` to `out_rate`, stateful across `process` calls.

    Chunks may split a sample in two (an odd byte count); the stray byte is kept for the next
    call. When the rates match, bytes pass through untouched, so the identity case is bit-exact.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        self.in_rate = _check_rate("in_rate", in_rate)
        self.out_rate = _check_rate("out_rate", out_rate)
        self._quality = quality
        self._stray = b""
        self._stream = self._new_stream()

    @property
    def passthrough(self) -> bool:
        return self.in_rate == self.out_rate

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.passthrough:
            return None
        return soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="int16", quality=self._quality
        )

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        """Convert the next chunk. `last=True` also flushes the filter's tail and resets."""
        data = self._stray + pcm
        whole = len(data) - len(data) % 2
        self._stray = data[whole:]
        if self._stream is None:
            if last:
                self._stray = b""
            return data[:whole]
        samples = np.frombuffer(data[:whole], dtype=_DTYPE)
        out = self._stream.resample_chunk(samples, last=last)
        if last:
            self.reset()
        return np.asarray(out, dtype=_DTYPE).tobytes()

    def finish(self) -> bytes:
        """The samples still held in the filter, then a fresh start for the next stream."""
        return self.process(b"", last=True)

    def reset(self) -> None:
        """Forget all state, e.g. after playback was flushed."""
        self._stray = b""
        self._stream = self._new_stream()


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """One-shot conversion of a whole mono PCM16 buffer."""
    _check_rate("in_rate", in_rate)
    _check_rate("out_rate", out_rate)
    if len(pcm) % 2:
        raise AudioFormatError(f"PCM16 data must have an even byte count, got {len(pcm)}")
    if in_rate == out_rate:
        return pcm
    samples = np.frombuffer(pcm, dtype=_DTYPE)
    return np.asarray(soxr.resample(samples, in_rate, out_rate), dtype=_DTYPE).tobytes()


def to_mono(pcm: bytes, channels: int) -> bytes:
    """Average interleaved PCM16 channels into one."""
    if channels == 1:
        return pcm
    frame = 2 * channels
    if channels < 1 or len(pcm) % frame:
        raise AudioFormatError(
            f"{len(pcm)} bytes is not a whole number of {channels}-channel PCM16 frames"
        )
    frames = np.frombuffer(pcm, dtype=_DTYPE).reshape(-1, channels).astype(np.int32)
    mixed: np.ndarray[Any, np.dtype[np.int16]] = frames.mean(axis=1).round().astype(_DTYPE)
    return mixed.tobytes()


def from_mono(pcm: bytes, channels: int) -> bytes:
    """Copy mono PCM16 into every channel of an interleaved stream."""
    if channels == 1:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=_DTYPE)
    return bytes(np.repeat(samples, channels).tobytes())


class PromptResampler:
    """A rational-ratio FIR resampler that answers at once, for the echo canceller's reference.

    soxr's streams hold back tens of milliseconds and release their output in bursts: a
    reference that arrives after its echo is no reference. This one gives every output sample
    as soon as its last input sample is in, with a short windowed-sinc filter (about half a
    millisecond of delay, which `input_position` accounts for). Mono int16 in and out.
    """

    def __init__(self, in_rate: int, out_rate: int, *, taps_per_phase: int = 16) -> None:
        g = math.gcd(_check_rate("in_rate", in_rate), _check_rate("out_rate", out_rate))
        self.up, self.down = out_rate // g, in_rate // g
        self.taps = taps_per_phase
        size = taps_per_phase * self.up
        # Cut off below the lower Nyquist, at the upsampled rate.
        cutoff = 0.92 * 0.5 * min(in_rate, out_rate) / (in_rate * self.up)
        n = np.arange(size) - (size - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(size, 8.0) * self.up
        self._delay = (size - 1) / 2  # upsampled samples
        # Row p holds the taps that meet input samples m0, m0 - 1, ... for phase p.
        self._phases = np.stack([h[p :: self.up][: self.taps] for p in range(self.up)])
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros(self.taps - 1)
        self._fed = 0  # input samples so far
        self._out = 0  # output samples so far

    def input_position(self, output_index: int) -> float:
        """The input sample (fractional) that output sample `output_index` stands for."""
        return (output_index * self.down - self._delay) / self.up

    def process(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype=_DTYPE).astype(np.float64)
        buffer = np.concatenate([self._history, x])
        base = self._fed - self._history.size  # input index of buffer[0]
        self._fed += x.size
        last = (self._fed * self.up - 1) // self.down  # the last output whose inputs are in
        outputs = np.arange(self._out, last + 1)
        self._history = buffer[-(self.taps - 1) :] if self.taps > 1 else np.zeros(0)
        if not outputs.size:
            return b""
        self._out = int(outputs[-1]) + 1
        first = outputs * self.down // self.up
        index = first[:, None] - np.arange(self.taps)[None, :] - base
        taps = self._phases[outputs * self.down % self.up]
        y = np.sum(taps * buffer[np.clip(index, 0, buffer.size - 1)] * (index >= 0), axis=1)
        return bytes(np.clip(np.round(y), -32768, 32767).astype(_DTYPE).tobytes())
