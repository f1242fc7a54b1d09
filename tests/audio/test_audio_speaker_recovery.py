"""A speaker that fails comes back without a restart, found again by its name.

The faults are real ALSA ones: the file-backed `vspk` pointed at /dev/full (every write fails
inside ALSA and PortAudio raises), and `vspk` removed from the configuration and put back.
"""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import pytest
from audio_helpers import noise, read_wav_frames

from device.audio.errors import AudioDeviceNotFound, AudioError
from device.audio.sink import PyAudioSink, WavSink
from device.sim.alsa import VirtualAlsa, forget_alsa_config, render_asoundrc, virtual_alsa


def point_speaker(alsa: VirtualAlsa, where: str | None) -> None:
    """`where`: "file" (working), "full" (writes fail), None (the device is gone)."""
    text = render_asoundrc(infile=alsa.infile, speaker_dir=alsa.speaker_dir)
    lines = text.splitlines(keepends=True)
    mic, speaker = lines[0], lines[1]
    if where == "full":
        speaker = (
            'pcm.vspk { type asym playback.pcm { type file slave.pcm "null" '
            'file "/dev/full" format "raw" } }\n'
        )
    alsa.asoundrc.write_text(mic + (speaker if where is not None else ""), encoding="utf-8")
    forget_alsa_config()


async def play(sink: PyAudioSink | WavSink, pcm: bytes) -> None:
    async with asyncio.timeout(30):
        await sink.write(pcm)
        await sink.drain()


async def test_a_speaker_whose_writes_fail_plays_again_once_it_works(tmp_path: Path) -> None:
    reply = noise(24_000, seed=3)
    with virtual_alsa(tmp_path) as alsa:
        point_speaker(alsa, "full")
        sink = PyAudioSink("vspk")
        try:
            with pytest.raises(AudioError, match="playback failed"):
                await play(sink, reply)
            assert sink.fault is not None and sink.failures == 1
            assert not sink.playing

            point_speaker(alsa, "file")
            await play(sink, reply)
            assert sink.fault is None
        finally:
            await sink.close()
        assert alsa.played(24_000, 1) == reply


async def test_a_speaker_removed_and_restored_is_found_again_by_name(tmp_path: Path) -> None:
    reply = noise(4_800, seed=4)
    with virtual_alsa(tmp_path) as alsa:
        point_speaker(alsa, None)
        sink = PyAudioSink("vspk")
        try:
            with pytest.raises(AudioDeviceNotFound):
                await play(sink, reply)
            assert sink.fault is not None and "vspk" in sink.fault
            point_speaker(alsa, "file")
            await play(sink, reply)
            assert sink.fault is None
        finally:
            await sink.close()
        assert alsa.played(24_000, 1) == reply


class FailingOnce(WavSink):
    """A WAV speaker whose device raises on its `fail_at`-th buffer, once."""

    fail_at = 3

    def _device_play(self, pcm: bytes) -> None:
        self.fail_at -= 1
        if self.fail_at == 0:
            raise OSError(5, "Input/output error")
        super()._device_play(pcm)


async def test_a_sink_raising_mid_reply_plays_the_next_reply(tmp_path: Path) -> None:
    first, second = noise(9_600, seed=5), noise(4_800, seed=6)
    sink = FailingOnce(tmp_path / "out.wav", speed=math.inf)
    with pytest.raises(AudioError, match="Input/output error"):
        await play(sink, first)
    await play(sink, second)
    await sink.close()
    # The file reopened after the failure holds exactly the second reply.
    assert read_wav_frames(tmp_path / "out.wav") == second


async def test_a_hung_write_shows_as_a_stall(tmp_path: Path) -> None:
    gate = asyncio.Event()
    release = threading.Event()

    class Hanging(WavSink):
        def _device_play(self, pcm: bytes) -> None:
            loop.call_soon_threadsafe(gate.set)
            release.wait()
            super()._device_play(pcm)

    loop = asyncio.get_running_loop()
    sink = Hanging(tmp_path / "out.wav", speed=math.inf)
    await sink.write(noise(960, seed=7))
    await gate.wait()
    assert sink._busy_since is not None  # inside the device's write
    release.set()
    await sink.drain()
    assert sink.stalled_s == 0.0
    await sink.close()


async def test_a_heal_and_a_write_reopening_a_failed_speaker_at_once_start_one_player(
    tmp_path: Path,
) -> None:
    # The soak bench's speaker error: the supervisor's heal and the reply's next write both
    # reopened the speaker; two player threads then shared one file and closed it under
    # each other ('NoneType' has no attribute 'writeframes', I/O on a closed file).
    path = tmp_path / "reply.wav"
    speaker = WavSink(path, speed=math.inf)
    await speaker.open()
    path.unlink()  # pulled out: the next write fails
    with pytest.raises(AudioError):  # the drain reports the failed write
        await speaker.write(bytes(4_800))
        async with asyncio.timeout(10):
            await speaker.drain()
    assert speaker.failures == 1 and speaker.fault is not None
    await asyncio.gather(speaker.open(), speaker.write(bytes(4_800)), speaker.open())
    await speaker.write(bytes(4_800))
    async with asyncio.timeout(10):
        await speaker.drain()
    players = [t for t in threading.enumerate() if t.name == "WavSink-player" and t.is_alive()]
    assert len(players) == 1
    assert speaker.failures == 1 and speaker.fault is None
    assert speaker.played_bytes >= 9_600
    await speaker.close()
