"""A virtual worker's microphone: silence until cued, then a WAV file, then silence again.

The demo and the daemon's tests use it so the worker speaks right after the talk button is
pressed (or the wake word is heard), as a person would, rather than whenever the daemon started.
Pacing matches `WavSource`: real time divided by `speed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from device.audio import CAPTURE_RATE, SAMPLE_WIDTH
from device.audio.errors import AudioError
from device.audio.source import _Source
from device.audio.wavio import read_wav

# Chunks between two checks that the microphone's file is still there.
_PRESENCE_EVERY = 50


class CuedWavSource(_Source):
    def __init__(
        self, path: Path, *, chunk_ms: int = 20, speed: float = 1.0, rate: int = CAPTURE_RATE
    ) -> None:
        super().__init__(rate=rate, chunk_ms=chunk_ms)
        if not speed > 0:
            raise ValueError(f"speed must be greater than 0, not {speed!r}")
        self.path = path
        self.speed = speed
        self._pcm = b""
        self._pending = bytearray()
        self._closed = False
        self._said: asyncio.Event | None = None

    @property
    def audio_samples(self) -> int:
        return len(self._pcm) // SAMPLE_WIDTH

    @property
    def speaking(self) -> bool:
        return bool(self._pending)

    def cue(self) -> None:
        """Start saying the file now (restarting it if it was being said)."""
        self.say(self._pcm)

    def say(self, pcm: bytes) -> None:
        """Start saying `pcm` (16 kHz PCM16 mono) now, instead of whatever was being said."""
        self._pending = bytearray(pcm)
        self._said = asyncio.Event()

    async def wait_said(self) -> None:
        """Until the utterance started by the last `cue()` has been heard in full."""
        if self._said is not None:
            await self._said.wait()

    async def open(self) -> None:
        if not self._opened:
            self._pcm = await asyncio.to_thread(read_wav, self.path, self.rate)
            self._opened, self._closed = True, False

    async def close(self) -> None:
        self._closed, self._opened = True, False

    async def chunks(self) -> AsyncIterator[bytes]:
        await self.open()
        loop = asyncio.get_running_loop()
        interval = self.chunk_ms / 1000 / self.speed
        start, count = loop.time(), 0
        while not self._closed:
            count += 1
            # The file is the device: once it is gone, the microphone was pulled out (checked
            # about once a second of audio, so it costs nothing). `open()` then fails until it
            # is back, as a USB microphone's would.
            if count % _PRESENCE_EVERY == 0 and not self.path.exists():
                raise AudioError(f"microphone file {self.path} was removed")
            await asyncio.sleep(max(0.0, start + count * interval - loop.time()))
            if self._closed:
                return
            chunk = bytes(self._pending[: self.chunk_bytes])
            del self._pending[: self.chunk_bytes]
            if chunk and not self._pending and self._said is not None:
                self._said.set()
            chunk += bytes(self.chunk_bytes - len(chunk))
            self._samples_delivered += len(chunk) // SAMPLE_WIDTH
            yield chunk
