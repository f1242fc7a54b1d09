"""The camera assembled from settings and tied to the session: snapshots and vision tools.

Snapshots go to whichever conversation is open; `SnapshotStreamer` itself decides when (only
while the worker talks, or on `look`). A camera that cannot be opened leaves the device
voice-only, and the vision tools answer that the camera is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from device.config import ConfigError, Settings
from device.events import Event, EventBus, SessionEnded, SessionStarted
from device.vision.barcodes import DecodedCode
from device.vision.camera import CameraError
from device.vision.camera import CameraSettings as VisionCameraSettings
from device.vision.snapshots import SnapshotStreamer, start_camera
from device.vision.tools import VisionTools


class VideoSink(Protocol):
    def send_video(self, jpeg: bytes) -> None: ...


def camera_settings(settings: Settings) -> VisionCameraSettings:
    camera = settings.camera
    try:
        return VisionCameraSettings(
            backend=camera.backend,
            directory=settings.path(camera.directory) if camera.directory else None,
            enabled=camera.enabled,
            fps=camera.fps,
            max_px=camera.max_px,
            quality=camera.quality,
            size=(camera.width, camera.height),
            retry_s=camera.retry_s,
        )
    except CameraError as exc:
        key, _, problem = str(exc).partition(": ")
        raise ConfigError(key, problem, "see [camera] in config/config.toml") from None


class Eye:
    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus,
        conversation: Callable[[], VideoSink | None],
        exists: Callable[[DecodedCode], Awaitable[bool]] | None = None,
    ) -> None:
        cam_settings = camera_settings(settings)
        self._camera = start_camera(cam_settings, bus)
        self.streamer = SnapshotStreamer.from_settings(cam_settings, self._camera, bus)
        self.tools = VisionTools(self.streamer, snapshots=cam_settings.enabled, exists=exists)
        self._conversation = conversation
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = [self.streamer.attach(bus), bus.subscribe(self._on_event)]

    @property
    def available(self) -> bool:
        return self._camera is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self.streamer.run(), name="snapshots")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            conversation = self._conversation()
            if conversation is not None:

                async def send(jpeg: bytes, target: VideoSink = conversation) -> None:
                    target.send_video(jpeg)

                self.streamer.session_opened(send)
        elif isinstance(event, SessionEnded):
            self.streamer.session_closed()

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._camera is not None:
            await self._camera.close()
