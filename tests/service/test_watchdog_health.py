"""The watchdog is fed only while the parts work: a speaker whose writes hang stops it.

The speaker is the real player (`QueuedSink`) writing raw PCM into a FIFO whose reader stops
reading, so the player thread blocks inside the write exactly as on a wedged sound card.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_notify import NotifySocket

from device.audio.playback import QueuedSink
from device.events import EventBus
from device.service.notify import Notifier, watchdog_task
from device.service.supervisor import Health, PartHealth, Supervisor, speaker_probe

START, END = "MARK-START", "MARK-END"


class PipeSpeaker(QueuedSink):
    def __init__(self, path: Path) -> None:
        super().__init__(rate=24_000, buffer_ms=20, max_queued_s=5.0)
        self.path = path
        self._file: Any = None

    def _device_open(self) -> None:
        self._file = self.path.open("wb", buffering=0)

    def _device_play(self, pcm: bytes) -> None:
        self._file.write(pcm)

    def _device_close(self) -> None:
        self._file.close()


@pytest.fixture
def systemd_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    directory = Path(tempfile.mkdtemp(prefix="wv-watchdog-"))
    end = NotifySocket(directory / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(end.path))
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield end
    end.close()
    shutil.rmtree(directory)


async def test_a_hung_speaker_stops_the_pings_and_a_healthy_one_keeps_them(
    systemd_end: NotifySocket, tmp_path: Path
) -> None:
    fifo = tmp_path / "speaker.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a sound card that stops taking audio
    bus = EventBus()
    health: list[PartHealth] = []
    bus.subscribe(lambda e: health.append(e) if isinstance(e, PartHealth) else None)
    speaker = PipeSpeaker(fifo)
    supervisor = Supervisor(bus, probe_interval_s=0.02)
    supervisor.add("speaker", probe=speaker_probe(speaker, stall_s=0.2), heal=speaker.open)
    tasks = [
        asyncio.create_task(supervisor.run()),
        asyncio.create_task(watchdog_task(Notifier(), healthy=supervisor.healthy)),
    ]
    try:
        await speaker.open()
        # Healthy and idle: pinging.
        await asyncio.to_thread(systemd_end.wait_blocking, lambda m: m.count("WATCHDOG=1") >= 3)

        # Far more than the pipe holds: the player blocks inside the write.
        for _ in range(20):
            await speaker.write(bytes(9_600))
        async with bus.stream() as events, asyncio.timeout(30):
            while not any(h.health == Health.STUCK for h in health):
                await events.get()
        assert not supervisor.healthy()
        systemd_end.mark(START)
        for _ in range(10):  # many probe and watchdog periods pass
            await supervisor.check()
            await asyncio.sleep(0.02)
        systemd_end.mark(END)
        messages = await asyncio.to_thread(systemd_end.wait_blocking, lambda m: END in m)
        during = messages[messages.index(START) + 1 : messages.index(END)]
        assert "WATCHDOG=1" not in during, "the watchdog was fed while the speaker hung"
        assert "speaker" in supervisor.faults()

        # The card takes audio again: healthy, pinging again.
        speaker.flush()
        while True:
            try:
                if not os.read(reader, 65536):
                    break
            except BlockingIOError:
                if not speaker.playing:
                    break
                await asyncio.sleep(0.01)
        async with bus.stream() as events, asyncio.timeout(30):
            while supervisor.faults():
                await events.get()
        count = systemd_end.snapshot().count("WATCHDOG=1")
        await asyncio.to_thread(
            systemd_end.wait_blocking, lambda m: m.count("WATCHDOG=1") >= count + 3
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        speaker.flush()
        os.close(reader)
        await asyncio.wait_for(speaker.close(), 10)
