"""Real PyAudio capture and playback through ALSA's file-backed virtual devices."""

from __future__ import annotations

import asyncio
import glob
from pathlib import Path

import pytest
from audio_helpers import make_tone, noise, peak_hz

from device.audio.errors import AudioDeviceNotFound
from device.audio.sink import PyAudioSink
from device.audio.source import AudioSource, PyAudioSource
from device.sim.alsa import virtual_alsa


async def capture(source: PyAudioSource, nbytes: int) -> list[bytes]:
    chunks: list[bytes] = []
    async with asyncio.timeout(30):
        async for chunk in source.chunks():
            chunks.append(chunk)
            if sum(map(len, chunks)) >= nbytes:
                break
    return chunks


@pytest.mark.parametrize("chunk_ms", [20, 50])
async def test_capture_returns_the_microphone_bit_exact(tmp_path: Path, chunk_ms: int) -> None:
    speech = noise(16_000 + 123, seed=chunk_ms)
    with virtual_alsa(tmp_path, speech):
        # vmic is not paced: the queue must hold everything it produces while we read.
        source = PyAudioSource("vmic", chunk_ms=chunk_ms, max_queued_ms=600_000)
        assert isinstance(source, AudioSource)
        chunks = await capture(source, len(speech))
        await source.close()

    assert b"".join(chunks)[: len(speech)] == speech
    assert {len(chunk) for chunk in chunks} == {16 * chunk_ms * 2}
    assert source.overruns == 0
    assert source.samples_delivered == sum(map(len, chunks)) // 2
    assert source.format is not None and not source.format.resampled


async def test_batches_while_idle_then_chunks_again_with_nothing_lost(tmp_path: Path) -> None:
    # The idle daemon's handover (the wake word's 80 ms frame) comes out as one item per
    # batch; back at 20 ms, whole chunks again, and the stream is the microphone's, unbroken.
    speech = noise(16_000 + 77, seed=5)
    with virtual_alsa(tmp_path, speech):
        source = PyAudioSource("vmic", max_queued_ms=600_000)
        source.handover_ms = 80
        with pytest.raises(ValueError, match="multiple of chunk_ms"):
            source.handover_ms = 30
        items: list[bytes] = []
        async with source:
            async with asyncio.timeout(30):
                async for chunk in source.chunks():
                    items.append(chunk)
                    if len(items) == 3:
                        source.handover_ms = 20
                    chunked = [len(item) == 640 for item in items[3:]]
                    if sum(map(len, items)) >= len(speech) and sum(chunked) >= 3:
                        break

    assert b"".join(items)[: len(speech)] == speech
    assert {len(item) for item in items[:3]} == {2560}
    # Whatever was already queued as batches drains first; then 20 ms chunks only.
    first = chunked.index(True)
    assert all(chunked[first:])
    assert all(len(item) % 640 == 0 for item in items)
    assert source.overruns == 0
    assert source.samples_delivered == sum(map(len, items)) // 2
    assert source.backlog_ms >= 0


async def test_capture_from_a_48k_device_is_resampled_to_16k(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path, make_tone(1_000, 48_000, 1.0), mic_rate=48_000):
        source = PyAudioSource("vmic", device_rate=48_000, max_queued_ms=600_000)
        async with source:
            chunks = await capture(source, 16_000 * 2)

    assert source.format is not None and source.format.rate == 48_000
    assert {len(chunk) for chunk in chunks} == {640}
    # Skip the filter's start-up; the rest is the tone, now at 16 kHz.
    assert peak_hz(b"".join(chunks)[3_200:], 16_000) == pytest.approx(1_000, abs=3)


async def test_overrun_drops_the_oldest_audio_and_counts_it(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path, noise(16_000)):
        source = PyAudioSource("vmic", max_queued_ms=100)
        async with source:
            async with asyncio.timeout(30):
                while source.overruns == 0:  # noqa: ASYNC110 - a counter, with no event to wait on
                    await asyncio.sleep(0.01)
            chunks = await capture(source, 640)
    assert source.overruns > 0
    assert len(chunks[0]) == 640


async def test_playback_lands_in_the_wav_byte_for_byte(tmp_path: Path) -> None:
    reply = noise(24_000 + 481, seed=11)
    with virtual_alsa(tmp_path) as alsa:
        sink = PyAudioSink("vspk")
        async with sink:
            for start in range(0, len(reply), 1_000):
                await sink.write(reply[start : start + 1_000])
            await sink.drain()
            assert sink.played_bytes == len(reply)
            assert not sink.playing
            # A pause between replies must not put silence into the file.
            await asyncio.sleep(0.05)
            await sink.write(reply[:960])
            await sink.drain()

        assert alsa.played(24_000, 1) == reply + reply[:960]
        assert glob.glob(alsa.speaker_glob) == [str(alsa.speaker_wav(24_000, 1))]


async def test_playback_on_a_48k_device_is_resampled(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path) as alsa:
        async with PyAudioSink("vspk", device_rate=48_000) as sink:
            await sink.write(make_tone(440, 24_000, 1.0))
            await sink.drain()
        played = alsa.played(48_000, 1)

    assert abs(len(played) // 2 - 48_000) <= 4
    assert peak_hz(played, 48_000) == pytest.approx(440, abs=2)


async def test_missing_devices_fail_with_the_list_of_devices(tmp_path: Path) -> None:
    with virtual_alsa(tmp_path):
        with pytest.raises(AudioDeviceNotFound, match=r"no input device matching 'USB'.*'vmic'"):
            await PyAudioSource("USB").open()
        sink = PyAudioSink("Speaker Phat")
        with pytest.raises(AudioDeviceNotFound, match=r"no output device.*'vspk' \(out"):
            await sink.write(b"\x00\x00")
        assert not sink.playing
