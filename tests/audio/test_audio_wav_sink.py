"""WavSink: a paced speaker whose file holds exactly what it played."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest
from audio_helpers import noise, read_wav_frames

from device.audio.errors import AudioFormatError
from device.audio.sink import AudioSink, WavSink

BUFFER = 960  # 20 ms at 24 kHz, PCM16


async def wait_until_played(sink: WavSink, nbytes: int) -> None:
    async with asyncio.timeout(30):
        await sink.wait_played(nbytes)


async def test_file_holds_exactly_the_written_bytes(tmp_path: Path) -> None:
    reply = noise(24_000 + 7)  # one second and a bit, not a whole number of buffers
    sink = WavSink(tmp_path / "out.wav", speed=math.inf)
    assert isinstance(sink, AudioSink)
    async with sink:
        for start in range(0, len(reply), 1_234):
            await sink.write(reply[start : start + 1_234])
        await sink.drain()
        assert not sink.playing
        assert sink.played_bytes == len(reply)
        assert sink.last_played_at is not None

    assert read_wav_frames(tmp_path / "out.wav") == reply


async def test_gaps_between_writes_add_no_silence(tmp_path: Path) -> None:
    first, second = noise(2_400, seed=1), noise(3_000, seed=2)
    async with WavSink(tmp_path / "out.wav", speed=20) as sink:
        await sink.write(first)
        await sink.drain()
        await asyncio.sleep(0.05)
        await sink.write(second)
        await sink.drain()
    assert read_wav_frames(tmp_path / "out.wav") == first + second


async def test_flush_cuts_the_file_where_it_happened(tmp_path: Path) -> None:
    reply = noise(24_000 * 5, seed=4)  # five seconds at real speed: far from done when flushed
    sink = WavSink(tmp_path / "out.wav", speed=1.0, max_queued_s=10)
    async with sink:
        await sink.write(reply)
        await wait_until_played(sink, 3 * BUFFER)
        played_at_flush = sink.played_bytes
        dropped = sink.flush()
        await sink.drain()
        played = sink.played_bytes

        assert dropped > 0
        assert not sink.playing
        # Only the buffer in the player's hands at the flush may still come out.
        assert played - played_at_flush <= BUFFER
        assert played + dropped == len(reply)

        after = noise(4_800, seed=5)
        await sink.write(after)
        await sink.drain()

    # Nothing queued before the flush got in after it; the next reply follows directly.
    assert read_wav_frames(tmp_path / "out.wav") == reply[:played] + after
    assert sink.flushed_bytes == dropped


async def test_flush_when_idle_drops_nothing(tmp_path: Path) -> None:
    async with WavSink(tmp_path / "out.wav", speed=math.inf) as sink:
        assert sink.flush() == 0
        await sink.write(noise(960))
        await sink.drain()
        assert sink.flush() == 0
    assert read_wav_frames(tmp_path / "out.wav") == noise(960)


async def test_drain_waits_until_everything_is_played(tmp_path: Path) -> None:
    reply = noise(12_000, seed=6)  # 0.5 s: 100 ms of playing at 5x
    async with WavSink(tmp_path / "out.wav", speed=5) as sink:
        await sink.write(reply)
        drained = asyncio.create_task(sink.drain())
        await asyncio.sleep(0)
        assert not drained.done()
        assert sink.playing
        await drained
        assert sink.played_bytes == len(reply)
        assert not sink.playing
    assert read_wav_frames(tmp_path / "out.wav") == reply


async def test_write_waits_while_too_much_is_queued(tmp_path: Path) -> None:
    # At 1% speed the player needs 2 s per buffer: the queue cannot shrink during this test.
    sink = WavSink(tmp_path / "out.wav", speed=0.01, max_queued_s=0.1)
    async with sink:
        await sink.write(noise(3_600, seed=7))  # 0.15 s: allowed, the queue was empty
        blocked = asyncio.create_task(sink.write(noise(480, seed=8)))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert sink.queued_bytes >= sink.max_queued_bytes

        played = sink.played_bytes
        sink.flush()  # room again: the waiting write goes through and is played next
        await asyncio.wait_for(blocked, timeout=10)
        await wait_until_played(sink, played + 960)

    assert read_wav_frames(tmp_path / "out.wav").endswith(noise(480, seed=8))


async def test_last_played_at_tracks_the_output(tmp_path: Path) -> None:
    before = time.monotonic()
    async with WavSink(tmp_path / "out.wav", speed=math.inf) as sink:
        assert sink.last_played_at is None
        await sink.write(noise(960))
        await sink.drain()
        assert sink.last_played_at is not None
        assert sink.last_played_at >= before


async def test_close_drops_what_was_not_played(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "out.wav", speed=0.5)
    await sink.write(noise(24_000, seed=9))
    await wait_until_played(sink, BUFFER)
    await sink.close()
    played = sink.played_bytes
    assert played < 48_000
    assert read_wav_frames(tmp_path / "out.wav") == noise(24_000, seed=9)[:played]


async def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    async with WavSink(tmp_path / "out.wav", speed=math.inf) as sink:
        with pytest.raises(AudioFormatError, match="even number of bytes"):
            await sink.write(b"\x00\x01\x02")
    with pytest.raises(AudioFormatError, match=r"directory .* does not exist"):
        await WavSink(tmp_path / "missing" / "out.wav").open()
    with pytest.raises(ValueError, match="speed must be greater than 0"):
        WavSink(tmp_path / "x.wav", speed=-1)
    with pytest.raises(ValueError, match="max_queued_s"):
        WavSink(tmp_path / "x.wav", max_queued_s=0)
