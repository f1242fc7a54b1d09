"""Speakers: where the model's 24 kHz PCM16 mono reply is played.

`PyAudioSink` plays on a sound card and `WavSink` records into a file, paced like a speaker.
Both queue, flush and drain the same way (see `device.audio.playback`).
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import pyaudio

from device.audio import PLAYBACK_RATE, SAMPLE_WIDTH
from device.audio.devices import ProbeResult, choose_format, find_device
from device.audio.errors import AudioError
from device.audio.playback import QueuedSink
from device.audio.resample import Resampler, from_mono
from device.audio.wavio import open_wav_writer

log = logging.getLogger(__name__)


@runtime_checkable
class AudioSink(Protocol):
    """A speaker taking 24 kHz PCM16 mono. `write` opens it if nobody did."""

    rate: int

    @property
    def playing(self) -> bool:
        """Audio is queued or still being played."""
        ...

    @property
    def played_bytes(self) -> int:
        """Bytes handed to the output so far (flushed bytes never are)."""
        ...

    @property
    def last_played_at(self) -> float | None:
        """`time.monotonic()` when the output last took audio; None before the first."""
        ...

    async def open(self) -> None: ...

    async def write(self, pcm: bytes) -> None:
        """Queue audio; waits while more than the sink's limit is already queued."""
        ...

    def flush(self) -> int:
        """Barge-in: drop all queued audio, stop within one output buffer; bytes dropped."""
        ...

    async def drain(self) -> None:
        """Wait until everything written has been played (or flushed)."""
        ...

    async def wait_played(self, nbytes: int) -> None:
        """Wait until `played_bytes` reaches `nbytes`."""
        ...

    async def close(self) -> None:
        """Stop at once, dropping what is queued; `drain` first to hear it out."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class WavSink(QueuedSink):
    """A speaker that records what it plays into a WAV file.

    Paced like a real speaker at `speed` times real time (`math.inf`: unpaced), and the file
    holds exactly the bytes played: no silence where the queue ran dry, nothing queued at a flush.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        rate: int = PLAYBACK_RATE,
        speed: float = 1.0,
        buffer_ms: int = 20,
        max_queued_s: float = 5.0,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be greater than 0 (math.inf for unpaced), not {speed!r}")
        super().__init__(rate=rate, buffer_ms=buffer_ms, max_queued_s=max_queued_s)
        self.path = Path(path)
        self.speed = speed
        self._writer: Any = None

    def _device_open(self) -> None:
        self._writer = open_wav_writer(self.path, self.rate)

    def _device_play(self, pcm: bytes) -> None:
        # A recording file that was removed is a speaker that was pulled out: the write fails
        # as a USB speaker's would, and `open()` (the supervisor's heal) makes a new file.
        if not self.path.exists():
            raise OSError(errno.ENODEV, f"speaker file {self.path} was removed")
        self._writer.writeframes(pcm)

    def _pace_s(self, nbytes: int) -> float:
        return nbytes / SAMPLE_WIDTH / self.rate / self.speed

    def _device_close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class PyAudioSink(QueuedSink):
    """Play on the output device whose name contains `device`.

    The stream runs in PortAudio's blocking mode on the player thread, so only real audio is
    ever written: when the queue runs dry the buffer is played out and the stream stopped,
    instead of being fed silence (which is also why ALSA's `file` plugin records exactly the
    bytes written). A flush stops the stream, which drops what PortAudio and ALSA still hold.
    A device that cannot take 24 kHz mono gets resampled audio, copied to both channels if it
    must be stereo.
    """

    # Replies arrive in pieces a few tens of milliseconds apart: wait that long before stopping.
    idle_grace_s = 0.15

    def __init__(
        self,
        device: str,
        *,
        rate: int = PLAYBACK_RATE,
        buffer_ms: int = 20,
        max_queued_s: float = 5.0,
        device_rate: int | None = None,
    ) -> None:
        super().__init__(rate=rate, buffer_ms=buffer_ms, max_queued_s=max_queued_s)
        self.device = device
        self.device_rate = device_rate
        self.format: ProbeResult | None = None
        self._pa: pyaudio.PyAudio | None = None
        self._stream: Any = None
        self._capacity = 0
        self._resampler = Resampler(rate, rate)

    def _device_open(self) -> None:
        pa = pyaudio.PyAudio()
        try:
            device = find_device(self.device, "output", pa=pa)
            self.format = choose_format(
                pa, device, "output", self.rate, device_rate=self.device_rate
            )
            self._resampler = Resampler(self.rate, self.format.rate)
            self._pa = pa
            self._stream = self._open_stream()
            # An idle stream's free space is its whole buffer: the mark for "played out".
            self._capacity = self._stream.get_write_available()
        except BaseException:
            self._pa = None
            pa.terminate()
            raise
        log.info("playing on %s", self.format.describe())

    def _open_stream(self) -> Any:
        assert self._pa is not None and self.format is not None
        fmt = self.format
        try:
            return self._pa.open(
                format=pyaudio.paInt16,
                channels=fmt.channels,
                rate=fmt.rate,
                output=True,
                output_device_index=fmt.device.index,
                frames_per_buffer=fmt.rate * self.buffer_ms // 1000,
                start=False,
            )
        except OSError as exc:
            raise AudioError(
                f"cannot open output device {fmt.device.name!r} ({fmt.describe()}): {exc}; "
                "check that no other program holds it"
            ) from None

    def _write_device(self, pcm: bytes) -> None:
        assert self.format is not None
        if not pcm:
            return
        if self._stream.is_stopped():
            self._stream.start_stream()
            self._started = True  # a new stretch of output time (see `RenderMark.start`)
        self._stream.write(from_mono(pcm, self.format.channels), exception_on_underflow=False)

    def _device_play(self, pcm: bytes) -> None:
        self._write_device(self._resampler.process(pcm))

    def _device_delay_s(self) -> float | None:
        # What PortAudio holds, this buffer included, plays out before its last byte is heard.
        # (Latency past the device's buffer is the echo path's: the delay tracker finds it.)
        if self._stream is None or self.format is None:
            return None
        available = int(self._stream.get_write_available())
        if available < 0:  # PortAudio's error code (an underrun): no estimate this time
            return None
        pending = max(0, self._capacity - available)
        return pending / self.format.rate

    def _device_idle(self) -> None:
        self._write_device(self._resampler.finish())
        if self._stream.is_stopped():
            return
        # PortAudio's ALSA backend drops pending audio on stop rather than draining it, so wait
        # until the device has taken everything back out of its buffer first.
        assert self.format is not None
        give_up = time.monotonic() + 2 * self._capacity / self.format.rate + 0.2
        while self._stream.get_write_available() < self._capacity:
            if time.monotonic() > give_up or self._pause(0.005):
                break
        self._stream.stop_stream()

    def _device_discard(self) -> None:
        # Stopping drops what PortAudio and ALSA still hold: the barge-in cut.
        self._resampler.reset()
        if not self._stream.is_stopped():
            self._stream.stop_stream()

    def _device_close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        finally:
            self._stream = None
            if self._pa is not None:
                self._pa.terminate()
                self._pa = None
