"""The speaker tap: what the speaker played, the echo canceller's reference."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

from device.audio import SAMPLE_WIDTH
from device.audio.playback import RenderMark
from device.audio.sink import AudioSink


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

    @property
    def played_until(self) -> int:
        """The played stream's byte offset just past what `take_played` last returned."""
        return self._taken

    def take_marks(self) -> list[RenderMark]:
        """When the played audio leaves the speaker, as the sink reports it (see
        `RenderMark`); always empty for a sink that cannot tell."""
        take = getattr(self.sink, "take_render_marks", None)
        return list(take()) if take is not None else []

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
