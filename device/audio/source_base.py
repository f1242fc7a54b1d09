"""What every microphone shares: the `AudioSource` protocol and the chunk bookkeeping.

Implementations: `device.audio.source.PyAudioSource` (a sound card),
`device.audio.wav_source.WavSource` (a file, paced like a microphone) and
`device.audio.cued.CuedWavSource` (a file cued by the demo and tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from device.audio import SAMPLE_WIDTH


def check_chunk_ms(chunk_ms: int) -> int:
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int) or not 20 <= chunk_ms <= 50:
        raise ValueError(f"chunk_ms must be a whole number from 20 to 50, not {chunk_ms!r}")
    return chunk_ms


@runtime_checkable
class AudioSource(Protocol):
    """A microphone. `chunks()` yields 16 kHz PCM16 mono, `chunk_ms` per item, or a whole
    number of such chunks when the source batches them (`PyAudioSource` while only the wake
    word listens: see its `handover_ms`).

    `chunks()` opens the source itself if nobody did, and closes it again when it opened it;
    `close()` ends a running `chunks()` loop.
    """

    rate: int
    chunk_ms: int

    @property
    def samples_delivered(self) -> int: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class _Source:
    def __init__(self, *, rate: int, chunk_ms: int) -> None:
        self.rate = rate
        self.chunk_ms = check_chunk_ms(chunk_ms)
        self.chunk_bytes = rate * chunk_ms // 1000 * SAMPLE_WIDTH
        self._samples_delivered = 0
        self._opened = False

    @property
    def samples_delivered(self) -> int:
        """Samples handed to consumers of `chunks()` so far."""
        return self._samples_delivered

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

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
