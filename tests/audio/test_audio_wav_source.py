"""WavSource: a file spoken into a virtual microphone, chunk by chunk."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import make_tone, noise, peak_hz, write_wav

from device.audio.errors import AudioFormatError
from device.audio.source import AudioSource, WavSource

CHUNK = 640  # 20 ms at 16 kHz, PCM16


async def collect(source: WavSource, limit: int | None = None) -> list[bytes]:
    chunks = []
    async for chunk in source.chunks():
        chunks.append(chunk)
        if limit is not None and len(chunks) >= limit:
            break
    return chunks


async def test_delivers_every_sample_in_20ms_chunks_then_stops(tmp_path: Path) -> None:
    pcm = noise(16_160)  # 50.5 chunks
    source = WavSource(write_wav(tmp_path / "speech.wav", pcm, rate=16_000), speed=math.inf)

    chunks = await collect(source)

    assert isinstance(source, AudioSource)
    assert [len(c) for c in chunks] == [CHUNK] * 50 + [CHUNK // 2]
    assert b"".join(chunks) == pcm
    assert source.samples_delivered == 16_160
    assert source.silence_samples_delivered == 0


async def test_silence_after_the_file_is_padded_in_whole_chunks(tmp_path: Path) -> None:
    pcm = noise(16_160)
    source = WavSource(
        write_wav(tmp_path / "speech.wav", pcm, rate=16_000),
        speed=math.inf,
        tail_silence_s=0.1,
    )

    chunks = await collect(source)
    joined = b"".join(chunks)

    # At least 0.1 s of silence, rounded up so that the last chunk is whole.
    assert {len(c) for c in chunks} == {CHUNK}
    assert joined == pcm + bytes(len(joined) - len(pcm))
    assert 1_600 <= source.silence_samples_delivered < 1_600 + CHUNK // 2
    assert source.samples_delivered == 16_160 + source.silence_samples_delivered


async def test_endless_silence_until_closed(tmp_path: Path) -> None:
    pcm = noise(800)
    source = WavSource(
        write_wav(tmp_path / "short.wav", pcm, rate=16_000),
        speed=math.inf,
        tail_silence_s=None,
    )
    received: list[bytes] = []

    async def listen() -> None:
        async for chunk in source.chunks():
            received.append(chunk)
            if len(received) == 200:
                await source.close()

    await asyncio.wait_for(listen(), timeout=30)

    assert len(received) == 200
    joined = b"".join(received)
    assert joined[: len(pcm)] == pcm
    assert joined[len(pcm) :] == bytes(len(joined) - len(pcm))


async def test_stereo_48k_file_is_mixed_and_resampled(tmp_path: Path) -> None:
    left = np.frombuffer(make_tone(1_000, 48_000, 1.0), "<i2")
    stereo = np.stack([left, left], axis=1).astype("<i2").tobytes()
    path = write_wav(tmp_path / "stereo.wav", stereo, rate=48_000, channels=2)
    source = WavSource(path, speed=math.inf, chunk_ms=50)

    chunks = await collect(source)
    joined = b"".join(chunks)

    assert len(chunks[0]) == 1_600
    assert abs(len(joined) // 2 - 16_000) <= 2
    assert peak_hz(joined, 16_000) == pytest.approx(1_000, abs=2)


@pytest.mark.parametrize("width", [1, 3, 4])
async def test_other_sample_widths_become_pcm16(tmp_path: Path, width: int) -> None:
    ramp = np.linspace(-0.9, 0.9, 1_600)
    if width == 1:
        raw = np.round(ramp * 127 + 128).astype(np.uint8).tobytes()
    else:
        full = np.round(ramp * (2 ** (8 * width - 1) - 1)).astype("<i4")
        raw = b"".join(int(v).to_bytes(4, "little", signed=True)[:width] for v in full)
    source = WavSource(write_wav(tmp_path / "w.wav", raw, rate=16_000, width=width), speed=math.inf)

    got = np.frombuffer(b"".join(await collect(source)), "<i2")

    # 8-bit audio is only accurate to its own step (256 in 16-bit terms).
    assert np.abs(got - np.round(ramp * 32_767)).max() <= (512 if width == 1 else 2)


async def test_paced_source_is_never_faster_than_speed_allows(tmp_path: Path) -> None:
    # 0.5 s of audio at 10x is at least 50 ms; only a lower bound, which load cannot break.
    source = WavSource(write_wav(tmp_path / "a.wav", noise(8_000), rate=16_000), speed=10)
    loop = asyncio.get_running_loop()
    start = loop.time()
    chunks = await collect(source)
    assert len(chunks) == 25
    assert loop.time() - start >= 0.05


async def test_bad_files_and_settings_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="does not exist"):
        await WavSource(tmp_path / "missing.wav").open()
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioFormatError, match=r"text\.wav is not a PCM WAV.*sox"):
        await WavSource(tmp_path / "text.wav").open()
    with pytest.raises(ValueError, match="chunk_ms must be a whole number from 20 to 50"):
        WavSource(tmp_path / "x.wav", chunk_ms=10)
    with pytest.raises(ValueError, match="speed must be greater than 0"):
        WavSource(tmp_path / "x.wav", speed=0)
    with pytest.raises(ValueError, match="tail_silence_s"):
        WavSource(tmp_path / "x.wav", tail_silence_s=-1)
