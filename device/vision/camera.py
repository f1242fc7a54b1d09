"""Camera sources: the interface, the image-directory backend, and choosing one from settings.

A source hands out full-resolution RGB stills; scaling and JPEG encoding happen later
(`device.vision.jpeg`), so a barcode scan gets every pixel the sensor has.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class CameraError(RuntimeError):
    """The camera cannot deliver a picture; the message says why and what to do."""


class CameraSource(Protocol):
    name: str

    async def capture(self) -> Image.Image:
        """A fresh RGB still. Raises `CameraError` when the camera cannot deliver one."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CameraSettings:
    backend: Literal["picamera2", "directory", "none"] = "none"
    directory: Path | None = None
    enabled: bool = True
    fps: float = 1.0
    max_px: int = 1024
    quality: int = 80
    size: tuple[int, int] = (1280, 720)  # what picamera2 captures; stills are scaled later
    camera_num: int = 0
    retry_s: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in ("picamera2", "directory", "none"):
            raise CameraError(
                f"camera.backend: {self.backend!r} is not a camera backend; "
                "use 'picamera2', 'directory' or 'none'"
            )
        if self.backend == "directory" and self.directory is None:
            raise CameraError(
                "camera.directory: the directory backend needs a folder of images; set it"
            )
        if not 0 < self.fps <= 5:
            raise CameraError(
                f"camera.fps: {self.fps} must be above 0 and at most 5 (Live bills every frame)"
            )
        if not 64 <= self.max_px <= 4096:
            raise CameraError(f"camera.max_px: {self.max_px} must be 64-4096 (the API wants ≤1024)")
        if not 1 <= self.quality <= 95:
            raise CameraError(f"camera.quality: {self.quality} must be a JPEG quality of 1-95")
        if self.retry_s < 0:
            raise CameraError(f"camera.retry_s: {self.retry_s} must be 0 or more seconds")


class DirectorySource:
    """Serves the image files of a folder in sorted order, over and over: a camera for demos,
    tests and benchmarks. Files are read fresh each time, so a test may swap them."""

    name = "directory"

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._index = 0
        self._files()  # fail at start-up, not at the first look

    def _files(self) -> list[Path]:
        if not self._path.is_dir():
            raise CameraError(
                f"camera directory {self._path} does not exist; create it with images in it, "
                "or set camera.backend = 'none'"
            )
        files = sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CameraError(
                f"camera directory {self._path} has no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add some, or set camera.backend = 'none'"
            )
        return files

    async def capture(self) -> Image.Image:
        index, self._index = self._index, self._index + 1
        # Listing and decoding touch the disk: keep both off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, self._load, index)

    def _load(self, index: int) -> Image.Image:
        files = self._files()
        return _load(files[index % len(files)])

    async def close(self) -> None:
        return None


def _load(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise CameraError(f"cannot read image {path}: {exc}; replace or remove the file") from exc


def open_camera(settings: CameraSettings) -> CameraSource | None:
    """The configured source, or None for a voice-only device. `enabled = false` stops
    snapshots, not the camera: barcode scans still use it."""
    if settings.backend == "none":
        return None
    if settings.backend == "directory":
        assert settings.directory is not None  # checked by CameraSettings
        return DirectorySource(settings.directory)
    from device.vision.picamera import Picamera2Source

    return Picamera2Source(size=settings.size, camera_num=settings.camera_num)
