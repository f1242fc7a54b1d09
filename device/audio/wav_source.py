"""A WAV file spoken into a virtual microphone (tests, demos, benchmarks)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.source_base import _Source
from device.audio.wavio import read_wav


class WavSource(_Source):
    """A WAV file spoken into a virtual microphone.

    Chunks are released on the schedule a real microphone would keep, divided by `speed`
    (`math.inf` releases them as fast as the consumer takes them). The file is mixed to mono and
    resampled to 16 kHz when it is not already. After the file, at least `tail_silence_s`
    seconds of silence follow (so a listener can hear the speech end), then the source stops;
    `tail_silence_s=None` keeps sending silence until `close()`, like a live microphone.

    Every chunk is exactly `chunk_ms` long (the silence is rounded up to make it so), except
    the file's last one when no silence follows: it is left short rather than padded, so what
    was delivered is exactly the file.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_ms: int = 20,
        speed: float = 1.0,
        tail_silence_s: float | None = 0.0,
        rate: int = CAPTURE_RATE,
    ) -> None:
        super().__init__(rate=rate, chunk_ms=chunk_ms)
        if not speed > 0:
            raise ValueError(f"speed must be greater than 0 (math.inf for unpaced), not {speed!r}")
        if tail_silence_s is not None and not 0 <= tail_silence_s < math.inf:
            raise ValueError(
                f"tail_silence_s must be a finite number of seconds >= 0, or None for endless "
                f"silence, not {tail_silence_s!r}"
            )
        self.path = Path(path)
        self.speed = speed
        self.tail_silence_s = tail_silence_s
        self.silence_samples_delivered = 0
        self._pcm = b""
        self._closed = False

    @property
    def audio_samples(self) -> int:
        """Samples in the file once converted (known after `open`)."""
        return len(self._pcm) // SAMPLE_WIDTH

    async def open(self) -> None:
        if self._opened:
            return
        self._pcm = await asyncio.to_thread(read_wav, self.path, self.rate)
        self._opened = True
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._opened = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """One pass over the file (and its silence), from the start."""
        opened_here = not self._opened
        await self.open()
        loop = asyncio.get_running_loop()
        interval = self.chunk_ms / 1000 / self.speed
        silence_left = None
        if self.tail_silence_s is not None:
            silence_left = round(self.tail_silence_s * self.rate) * SAMPLE_WIDTH
            if silence_left:  # round up so that the last chunk is whole, as a mic's would be
                silence_left += -(len(self._pcm) + silence_left) % self.chunk_bytes
        position, count, start = 0, 0, loop.time()
        try:
            while not self._closed:
                chunk = self._pcm[position : position + self.chunk_bytes]
                position += len(chunk)
                padding = self.chunk_bytes - len(chunk)
                if silence_left is not None:
                    padding = min(padding, silence_left)
                    silence_left -= padding
                chunk += bytes(padding)
                if not chunk:
                    return
                count += 1
                # A microphone delivers a chunk once it has been heard in full.
                await asyncio.sleep(max(0.0, start + count * interval - loop.time()))
                if self._closed:
                    return
                self._samples_delivered += len(chunk) // SAMPLE_WIDTH
                self.silence_samples_delivered += padding // SAMPLE_WIDTH
                yield chunk
        finally:
            if opened_here:
                await self.close()
