"""Camera frames to the Live session: throttled, and only when they are worth paying for.

Gemini Live counts every video frame in a turn, so frames go out only while a session is open,
the camera is enabled and the worker is talking (at most `fps` a second), or once on demand
through `look()`. A camera that is absent or fails turns the device voice-only: one
`CameraUnavailable` event (the LEDs show a warning), retries every `retry_s`, and a
`CameraAvailable` event when it works again. Nothing here ever raises into the conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from device.events import (
    CameraAvailable,
    CameraUnavailable,
    Event,
    EventBus,
    SessionEnded,
    SnapshotSent,
    StateChanged,
    UserSpeech,
)
from device.vision.camera import CameraError, CameraSettings, CameraSource, open_camera
from device.vision.jpeg import encode_jpeg_async, fitted_size

log = logging.getLogger(__name__)

# The live layer's sender: session.send_realtime_input(video=Blob(data=jpeg, mime_type=...)).
SendFrame = Callable[[bytes], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

NO_CAMERA = "no camera is configured; set camera.backend to 'picamera2' or 'directory'"


@dataclass(frozen=True)
class FrameResult:
    status: Literal["ok", "no_session", "disabled", "unavailable", "send_failed"]
    width: int = 0
    height: int = 0
    size_bytes: int = 0
    detail: str = ""


class SnapshotStreamer:
    def __init__(
        self,
        camera: CameraSource | None,
        *,
        bus: EventBus | None = None,
        fps: float = 1.0,
        max_px: int = 1024,
        quality: int = 80,
        enabled: bool = True,
        retry_s: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0 < fps <= 5:
            raise ValueError(f"fps={fps} must be above 0 and at most 5")
        self._camera = camera
        self._bus = bus
        self._interval = 1.0 / fps
        self._max_px = max_px
        self._quality = quality
        self._enabled = enabled
        self._retry_s = retry_s
        self._clock = clock
        self._sleep = sleep
        self._sender: SendFrame | None = None
        self._talking = False
        self._last_attempt = float("-inf")
        self._failed_at: float | None = None
        self._gate = asyncio.Event()
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: CameraSettings, camera: CameraSource | None, bus: EventBus | None
    ) -> SnapshotStreamer:
        return cls(
            camera,
            bus=bus,
            fps=settings.fps,
            max_px=settings.max_px,
            quality=settings.quality,
            enabled=settings.enabled,
            retry_s=settings.retry_s,
        )

    # -- what the rest of the device tells us ---------------------------------------------

    def session_opened(self, send_frame: SendFrame) -> None:
        self._sender = send_frame
        self._update_gate()

    def session_closed(self) -> None:
        self._sender = None
        self._talking = False
        self._update_gate()

    def set_talking(self, talking: bool) -> None:
        self._talking = talking
        self._update_gate()

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        self._update_gate()

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Follow the worker's speech from the bus; the live layer still opens the session."""
        self._bus = bus
        return bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, UserSpeech):
            self.set_talking(event.active)
        elif isinstance(event, SessionEnded) or (
            isinstance(event, StateChanged) and event.state.value in ("idle", "error", "offline")
        ):
            self.set_talking(False)

    # -- state ----------------------------------------------------------------------------

    @property
    def has_camera(self) -> bool:
        return self._camera is not None

    @property
    def available(self) -> bool:
        return self._camera is not None and self._failed_at is None

    @property
    def streaming(self) -> bool:
        return (
            self._sender is not None
            and self._enabled
            and self._talking
            and self._camera is not None
        )

    def _update_gate(self) -> None:
        if self.streaming:
            self._gate.set()
        else:
            self._gate.clear()

    # -- frames ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Send frames while `streaming`; runs until cancelled."""
        while True:
            if not self.streaming:
                await self._gate.wait()
                continue
            wait = self._next_due() - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            self._last_attempt = self._clock()
            await self._send("stream")

    def _next_due(self) -> float:
        due = self._last_attempt + self._interval
        if self._failed_at is not None:
            due = max(due, self._failed_at + self._retry_s)
        return due

    async def look(self) -> FrameResult:
        """Send one fresh frame now, whether or not the worker is talking."""
        if not self._enabled:
            return FrameResult("disabled", detail="the camera is switched off")
        self._last_attempt = self._clock()
        return await self._send("look")

    async def still(self) -> Image.Image:
        """A full-resolution still for local use (barcodes); raises `CameraError`."""
        if self._camera is None:
            raise CameraError(NO_CAMERA)
        try:
            image = await self._camera.capture()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
            self._mark_failed(reason)
            raise CameraError(reason) from exc
        if self._failed_at is not None:
            self._failed_at = None
            log.info("camera %s works again", self._camera.name)
            self._publish(CameraAvailable(backend=self._camera.name))
        return image

    async def _send(self, reason: str) -> FrameResult:
        async with self._lock:
            sender = self._sender
            if sender is None:
                return FrameResult("no_session", detail="no Live session is open")
            try:
                image = await self.still()
            except CameraError as exc:
                return FrameResult("unavailable", detail=str(exc))
            started = time.perf_counter()
            jpeg = await encode_jpeg_async(image, self._max_px, self._quality)
            encode_ms = (time.perf_counter() - started) * 1000
            # Capture and encode take a while: the session may have closed, or the worker
            # fallen silent, in the meantime. A late frame would be billed for nothing.
            if self._sender is not sender:
                return FrameResult("no_session", detail="the session closed during the capture")
            if reason == "stream" and not self.streaming:
                return FrameResult("no_session", detail="the worker stopped talking")
            try:
                await sender(jpeg)
            except Exception as exc:
                # The session is closing under us; the live layer reports that, not the camera.
                log.warning("could not send a camera frame: %s", exc)
                return FrameResult("send_failed", detail=str(exc))
            width, height = fitted_size(image.size, self._max_px)
            self._publish(
                SnapshotSent(
                    reason=reason,
                    width=width,
                    height=height,
                    size_bytes=len(jpeg),
                    encode_ms=round(encode_ms, 2),
                )
            )
            return FrameResult("ok", width=width, height=height, size_bytes=len(jpeg))

    def _mark_failed(self, reason: str) -> None:
        first = self._failed_at is None
        self._failed_at = self._clock()
        if first and self._camera is not None:
            log.warning("camera %s failed, continuing voice-only: %s", self._camera.name, reason)
            self._publish(CameraUnavailable(backend=self._camera.name, reason=reason))

    def _publish(self, event: Event) -> None:
        if self._bus is not None:
            self._bus.publish(event)


def start_camera(settings: CameraSettings, bus: EventBus | None) -> CameraSource | None:
    """The configured camera, or None (voice-only) with a `CameraUnavailable` event if it
    cannot be opened. A deliberate `backend = "none"` is not a failure and stays quiet."""
    try:
        return open_camera(settings)
    except CameraError as exc:
        log.warning("camera %s unavailable, continuing voice-only: %s", settings.backend, exc)
        if bus is not None:
            bus.publish(CameraUnavailable(backend=settings.backend, reason=str(exc)))
        return None
