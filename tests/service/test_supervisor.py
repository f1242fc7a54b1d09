"""The supervisor: restarts, backoff, health on the bus and in status, the watchdog's verdict."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from PIL import Image

from device.audio.capture import CaptureLost, CaptureRestored
from device.audio.sink import WavSink
from device.events import ErrorRaised, Event, EventBus
from device.service.parts import supervise_parts
from device.service.supervisor import Fault, Health, PartHealth, Supervisor
from device.vision.camera import CameraError, CameraSettings
from device.vision.snapshots import SnapshotStreamer, start_camera


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def until(bus: EventBus, done: object, timeout_s: float = 10.0) -> None:
    assert callable(done)
    async with bus.stream() as events, asyncio.timeout(timeout_s):
        while not done():
            await events.get()


async def test_a_listener_that_raises_is_restarted_and_its_health_published() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    runs = 0
    running = asyncio.Event()

    async def listener() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"wake model crashed ({runs})")
        running.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(bus, backoff_initial_s=0.01, settle_s=0.05)
    supervisor.add("wake", run=listener)
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(10):
            await running.wait()
        await until(bus, lambda: not supervisor.faults())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runs == 3
    health = [(e.health, e.reason) for e in seen if isinstance(e, PartHealth)]
    assert health[0] == (Health.RECOVERING, "stopped: RuntimeError('wake model crashed (1)')")
    assert health[-1] == (Health.OK, "")
    errors = [e for e in seen if isinstance(e, ErrorRaised)]
    assert [e.where for e in errors] == ["wake"]  # one fault, however many retries
    assert supervisor.snapshot()["wake"]["restarts"] == 2


async def test_healthy_while_recovering_within_budget_and_never_while_stuck() -> None:
    clock = Clock()
    bus = EventBus()
    supervisor = Supervisor(bus, clock=clock)
    supervisor.add("mic", budget_s=5.0)
    supervisor.add("camera", required=False, budget_s=0.0)
    answer: list[str | Fault | None] = [None]
    supervisor.add("speaker", probe=lambda: answer[0])
    assert supervisor.healthy()

    supervisor.report("mic", "unplugged")
    clock.now = 4.9
    assert supervisor.healthy()
    clock.now = 5.1
    assert not supervisor.healthy()
    supervisor.report("mic", None)
    assert supervisor.healthy()

    supervisor.report("camera", "folder gone")  # optional: never stops the watchdog
    clock.now = 100.0
    assert supervisor.healthy()

    answer[0] = Fault("write hung", stuck=True)
    await supervisor.check()
    assert not supervisor.healthy()
    assert supervisor.snapshot()["speaker"]["health"] == "stuck"
    answer[0] = None
    await supervisor.check()
    assert supervisor.healthy()


async def test_a_repair_that_hangs_holds_up_no_other_part_and_is_stuck_past_its_budget() -> None:
    clock = Clock()
    supervisor = Supervisor(EventBus(), clock=clock, probe_interval_s=0.01)
    hung = asyncio.Event()
    camera_heals: list[float] = []

    async def reopen_speaker() -> None:
        hung.set()
        await asyncio.Event().wait()  # the driver never returns

    async def reopen_camera() -> None:
        camera_heals.append(clock.now)

    supervisor.add("speaker", budget_s=5.0, probe=lambda: "device gone", heal=reopen_speaker)
    supervisor.add("camera", required=False, probe=lambda: "folder gone", heal=reopen_camera)
    try:
        await supervisor.check()
        assert hung.is_set()
        for step in range(1, 4):  # the camera keeps being repaired, with its backoff
            clock.now = 10.0 * step
            await supervisor.check()
        assert len(camera_heals) == 4
        assert supervisor.snapshot()["speaker"]["health"] == "stuck"
        assert supervisor.faults()["speaker"] == "repair hung: device gone"
        assert not supervisor.healthy()
        assert supervisor.snapshot()["speaker"]["restarts"] == 1  # never started twice
    finally:
        for part in supervisor.parts.values():
            if part.healing is not None:
                part.healing.cancel()


async def test_parts_follow_capture_and_camera_events_and_status_names_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "shelf"
    folder.mkdir()
    Image.new("RGB", (64, 48), "white").save(folder / "a.jpg")
    bus = EventBus()
    settings = CameraSettings(backend="directory", directory=folder, retry_s=0.0)
    camera = start_camera(settings, bus)
    assert camera is not None
    streamer = SnapshotStreamer.from_settings(settings, camera, bus)
    supervisor = Supervisor(bus)
    unsubscribe = supervise_parts(
        supervisor,
        bus,
        speaker=WavSink(tmp_path / "out.wav"),
        capture=lambda: asyncio.Event().wait(),
        wake=None,
        camera=streamer.run,
        budget_s=60.0,
    )
    try:
        bus.publish(CaptureLost(device="USB mic", reason="unplugged", retry_in_s=1.0))
        assert "unplugged" in supervisor.faults()["mic"]
        assert supervisor.snapshot()["mic"]["health"] == "recovering"
        bus.publish(CaptureRestored(device="USB mic", down_s=3.0))
        assert "mic" not in supervisor.faults()

        shutil.rmtree(folder)  # the camera folder vanishes
        with pytest.raises(CameraError):
            await streamer.still()
        assert "camera" in supervisor.faults()
        assert supervisor.snapshot()["camera"]["required"] is False
        folder.mkdir()
        Image.new("RGB", (64, 48), "white").save(folder / "a.jpg")
        await streamer.still()
        assert "camera" not in supervisor.faults()
    finally:
        unsubscribe()
        await camera.close()
