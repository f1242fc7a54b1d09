"""Frames to the Live session from the directory camera: rate, size, format, and when none go.

Time is a fake clock that only the streamer's own sleeps move, so the rate is checked exactly
and nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from vision_frames import save, scene

from device.events import (
    CameraAvailable,
    CameraUnavailable,
    Event,
    EventBus,
    SessionEnded,
    SnapshotSent,
    UserSpeech,
)
from device.vision.camera import CameraSettings, DirectorySource
from device.vision.snapshots import SnapshotStreamer, start_camera


class FakeTime:
    def __init__(self) -> None:
        self.now = 5000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Session:
    """Stands in for the live layer's send_realtime_input(video=...)."""

    time: FakeTime
    frames: list[tuple[float, bytes]] = field(default_factory=list)

    async def send(self, jpeg: bytes) -> None:
        self.frames.append((self.time.clock(), jpeg))


@dataclass
class Rig:
    streamer: SnapshotStreamer
    session: Session
    time: FakeTime
    bus: EventBus
    events: list[Event]
    folder: Path
    fps: float

    async def until_frames(self, count: int) -> None:
        for _ in range(10_000):
            if len(self.session.frames) >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"only {len(self.session.frames)} of {count} frames arrived")

    async def idle_a_while(self) -> None:
        """Give a misbehaving loop every chance to send something."""
        await asyncio.sleep(0.05)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(3):
        save(scene(i), tmp_path / "cam", f"frame{i}.jpg")
    return tmp_path / "cam"


@pytest.fixture
async def rig(folder: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    fps: float = getattr(request, "param", 1.0)
    fake = FakeTime()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    streamer = SnapshotStreamer(
        DirectorySource(folder), bus=bus, fps=fps, retry_s=30.0, clock=fake.clock, sleep=fake.sleep
    )
    task = asyncio.create_task(streamer.run())
    yield Rig(streamer, Session(fake), fake, bus, events, folder, fps)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("rig", [1.0, 2.0], indirect=True)
async def test_frames_while_talking_come_at_the_set_rate_as_small_jpegs(rig: Rig) -> None:
    rig.streamer.session_opened(rig.session.send)
    rig.streamer.set_talking(True)
    await rig.until_frames(5)
    times = [t for t, _ in rig.session.frames[:5]]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [1.0 / rig.fps] * 4
    for _, jpeg in rig.session.frames:
        with Image.open(io.BytesIO(jpeg)) as picture:
            assert picture.format == "JPEG"
            assert picture.size == (1024, 576)  # 1280x720 scaled to at most 1024 px
    sent = rig.of(SnapshotSent)
    assert len(sent) >= 5 and all(
        isinstance(e, SnapshotSent) and e.reason == "stream" for e in sent
    )


async def test_no_frames_without_a_session(rig: Rig) -> None:
    rig.streamer.set_talking(True)
    await rig.idle_a_while()
    assert rig.session.frames == []
    assert (await rig.streamer.look()).status == "no_session"


async def test_no_frames_while_the_worker_is_silent_until_a_look(rig: Rig) -> None:
    rig.streamer.session_opened(rig.session.send)
    await rig.idle_a_while()
    assert rig.session.frames == []
    result = await rig.streamer.look()
    assert (result.status, result.width, result.height) == ("ok", 1024, 576)
    await rig.idle_a_while()
    assert len(rig.session.frames) == 1
    assert [e.reason for e in rig.of(SnapshotSent)] == ["look"]  # type: ignore[attr-defined]


async def test_frames_follow_the_workers_speech_on_the_bus(rig: Rig) -> None:
    rig.streamer.attach(rig.bus)
    rig.streamer.session_opened(rig.session.send)
    rig.bus.publish(UserSpeech(active=True, source="vad"))
    await rig.until_frames(3)
    rig.bus.publish(UserSpeech(active=False, source="vad"))
    await asyncio.sleep(0)
    count = len(rig.session.frames)
    await rig.idle_a_while()
    assert len(rig.session.frames) == count
    rig.bus.publish(UserSpeech(active=True, source="button"))
    await rig.until_frames(count + 1)
    rig.bus.publish(SessionEnded(session_id="s", reason="hang up"))
    rig.streamer.session_closed()
    await asyncio.sleep(0)
    count = len(rig.session.frames)
    await rig.idle_a_while()
    assert len(rig.session.frames) == count


async def test_a_switched_off_camera_sends_nothing(rig: Rig) -> None:
    rig.streamer.session_opened(rig.session.send)
    rig.streamer.set_enabled(False)
    rig.streamer.set_talking(True)
    await rig.idle_a_while()
    assert rig.session.frames == []
    assert (await rig.streamer.look()).status == "disabled"


async def test_a_failing_camera_goes_voice_only_then_recovers(rig: Rig) -> None:
    rig.streamer.session_opened(rig.session.send)
    rig.streamer.set_talking(True)
    await rig.until_frames(2)
    hidden = rig.folder.parent / "unplugged"
    shutil.move(rig.folder, hidden)
    start = rig.time.now
    for _ in range(10_000):  # several retry periods of fake time, each failing
        if rig.time.now - start > 4 * 30.0:
            break
        await asyncio.sleep(0.001)
    assert len(rig.of(CameraUnavailable)) == 1  # one warning, not one per retry
    assert not rig.streamer.available
    assert (await rig.streamer.look()).status == "unavailable"
    count = len(rig.session.frames)
    shutil.move(hidden, rig.folder)
    await rig.until_frames(count + 1)
    assert len(rig.of(CameraAvailable)) == 1
    assert rig.streamer.available


async def test_a_closing_session_is_not_blamed_on_the_camera(rig: Rig) -> None:
    async def closed(jpeg: bytes) -> None:
        raise ConnectionError("websocket closed")

    rig.streamer.session_opened(closed)
    result = await rig.streamer.look()
    assert result.status == "send_failed"
    assert rig.of(CameraUnavailable) == [] and rig.streamer.available


def test_directory_camera_serves_files_in_sorted_order_over_and_over(tmp_path: Path) -> None:
    colours = {"b.png": (0, 255, 0), "a.tif": (255, 0, 0), "c.bmp": (0, 0, 255)}
    for name, colour in colours.items():
        Image.new("RGB", (64, 48), colour).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    camera = DirectorySource(tmp_path)

    async def four() -> list[tuple[int, int, int]]:
        return [(await camera.capture()).getpixel((5, 5)) for _ in range(4)]  # type: ignore[misc]

    assert asyncio.run(four()) == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)]


def test_start_camera_reports_a_missing_camera_and_keeps_going(tmp_path: Path) -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    missing = CameraSettings(backend="directory", directory=tmp_path / "nope")
    assert start_camera(missing, bus) is None
    assert len(events) == 1 and isinstance(events[0], CameraUnavailable)
    assert "does not exist" in events[0].reason
    assert start_camera(CameraSettings(backend="none"), bus) is None
    assert len(events) == 1  # no camera on purpose is not a fault


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "usb"}, r"'usb' is not a camera backend"),
        ({"backend": "directory"}, r"needs a folder of images"),
        ({"fps": 30}, r"camera.fps: 30 must be above 0 and at most 5"),
        ({"max_px": 4}, r"camera.max_px: 4 must be 64-4096"),
        ({"quality": 100}, r"camera.quality: 100 must be a JPEG quality of 1-95"),
    ],
)
def test_camera_settings_explain_mistakes(kwargs: dict[str, object], message: str) -> None:
    from device.vision.camera import CameraError

    with pytest.raises(CameraError, match=message):
        CameraSettings(**kwargs)  # type: ignore[arg-type]
