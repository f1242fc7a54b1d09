"""Real-time audio through a private PulseAudio server: capture, playback, barge-in, echo."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import make_tone, peak_hz, read_wav_frames, write_wav

from device.audio.sink import PyAudioSink
from device.audio.source import PyAudioSource
from device.sim.pulse import PulseError, PulseServer

needs_pulse = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("pactl") is None,
    reason="needs apt packages pulseaudio pulseaudio-utils libasound2-plugins",
)
# Paced by a real sound server: `make test` runs these on their own, after the rest.
pytestmark = pytest.mark.realtime


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    server = PulseServer(tmp_path_factory.mktemp("pulse"), loopback_ms=10)
    with server, server.as_default():
        pid = server.pid
        assert pid is not None
        yield server
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped: exactly the daemon we started is gone


def test_a_missing_pulseaudio_is_reported_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PulseError, match="pulseaudio is not installed; install it with `apt-get"):
        PulseServer(tmp_path / "pa").start()


def loud_span(pcm: bytes, threshold: int = 500) -> int:
    """Samples from the first to the last loud one."""
    loud = np.nonzero(np.abs(np.frombuffer(pcm, "<i2").astype(int)) > threshold)[0]
    return int(loud[-1] - loud[0] + 1) if len(loud) else 0


async def capture_seconds(source: PyAudioSource, seconds: float) -> bytes:
    chunks: list[bytes] = []
    async with asyncio.timeout(30):
        async for chunk in source.chunks():
            chunks.append(chunk)
            if len(chunks) * source.chunk_ms >= seconds * 1000:
                break
    return b"".join(chunks)


@pytest.mark.slow
@needs_pulse
async def test_a_tone_fed_into_the_mic_is_captured(pulse: PulseServer, tmp_path: Path) -> None:
    tone = write_wav(tmp_path / "tone.wav", make_tone(1_000, 16_000, 2.0), rate=16_000)
    source = PyAudioSource("default")
    async with source:
        feeder = pulse.feed_mic(tone)
        try:
            heard = await capture_seconds(source, 3.0)
        finally:
            feeder.wait(timeout=30)

    assert source.format is not None and source.format.rate == 16_000
    assert peak_hz(heard, 16_000) == pytest.approx(1_000, abs=2)
    # Most of the 2 s tone arrived (the stream may start a little after the feed).
    assert loud_span(heard) >= 16_000


@pytest.mark.slow
@needs_pulse
async def test_playback_is_heard_whole_and_flush_cuts_it(
    pulse: PulseServer, tmp_path: Path
) -> None:
    recording = pulse.record_speaker(tmp_path / "speaker.wav")
    try:
        sink = PyAudioSink("default", max_queued_s=10)
        async with sink:
            await sink.write(make_tone(440, 24_000, 1.0))
            await sink.drain()  # must not return before the last buffer is out
            whole = sink.played_bytes

            await asyncio.sleep(0.3)
            await sink.write(make_tone(880, 24_000, 3.0))
            async with asyncio.timeout(30):
                await sink.wait_played(whole + 24_000)  # half a second of the second reply
            at_flush = sink.played_bytes
            dropped = sink.flush()
            await sink.drain()
            after_flush = sink.played_bytes
        await asyncio.sleep(0.3)
    finally:
        PulseServer.stop_recording(recording)

    assert whole == 48_000
    assert dropped > 0
    assert after_flush - at_flush <= sink.buffer_bytes
    heard = np.frombuffer(read_wav_frames(tmp_path / "speaker.wav"), "<i2")
    # A loaded machine can underrun the speaker, which inserts silence into the recording
    # but loses no sample: so each reply is found by its pitch and measured by its loud
    # samples, not by the pauses around it.
    first, second = tone_samples(heard, 24_000, split_hz=660)
    # The first reply was drained, so all of it was heard; the flush silenced the second
    # long before its three seconds were up.
    assert first >= 99  # 10 ms windows: within 10 ms, drain waited for the end
    assert 0 < second < 200


def tone_samples(pcm: np.ndarray, rate: int, split_hz: float) -> tuple[int, int]:
    """10 ms windows with a tone below and above `split_hz` (a window counts when its RMS
    is above a quiet floor; its pitch is its spectral peak)."""
    window = rate // 100
    low = high = 0
    for start in range(0, len(pcm) - window + 1, window):
        block = pcm[start : start + window].astype(float)
        if np.sqrt(np.mean(block**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(block * np.hanning(window), n=window * 8))
        peak = float(np.argmax(spectrum)) * rate / (window * 8)
        if peak < split_hz:
            low += 1
        else:
            high += 1
    return low, high


@pytest.mark.slow
@needs_pulse
async def test_loopback_brings_the_speaker_back_into_the_mic(pulse: PulseServer) -> None:
    source = PyAudioSource("default")
    async with source, PyAudioSink("default") as sink:
        await sink.write(make_tone(1_500, 24_000, 1.5))
        heard = await capture_seconds(source, 1.5)
        sink.flush()
    assert peak_hz(heard, 16_000) == pytest.approx(1_500, abs=2)
