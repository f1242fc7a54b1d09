"""The Raspberry Pi camera through picamera2.

picamera2 needs libcamera, which only Raspberry Pi OS ships, so it is never a pip dependency:
on the Pi run `sudo apt install python3-picamera2` and build the venv with
`--system-site-packages`. It is imported on first use, so every other part of the device runs
on machines without it. `warehouse-voice selftest --camera` is the hardware smoke test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from PIL import Image

from device.vision.camera import CameraError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "on Raspberry Pi OS run `sudo apt install python3-picamera2` and create the venv with "
    "--system-site-packages; or set camera.backend = 'directory' or 'none'"
)


class Picamera2Source:
    name = "picamera2"

    def __init__(self, *, size: tuple[int, int] = (1280, 720), camera_num: int = 0) -> None:
        self._size = size
        self._camera_num = camera_num
        self._camera: Any = None
        # libcamera objects are driven from one thread; one worker also keeps captures ordered.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="picamera2"
        )

    async def capture(self) -> Image.Image:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._capture_blocking)

    def _capture_blocking(self) -> Image.Image:
        if self._camera is None:
            self._camera = self._open()
        try:
            image: Any = self._camera.capture_image("main")
            # Newer picamera2 releases hand back a job; older ones the image itself.
            if hasattr(image, "result"):
                image = image.result()
        except Exception as exc:
            self._close_blocking()
            raise CameraError(f"picamera2 capture failed: {exc}; check the ribbon cable") from exc
        if not isinstance(image, Image.Image):
            raise CameraError(f"picamera2 returned {type(image).__name__}, not an image")
        return image.convert("RGB")

    def _open(self) -> Any:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            if exc.name == "picamera2":
                raise CameraError(f"picamera2 is not installed ({exc}); {INSTALL_HINT}") from exc
            raise CameraError(_broken_import(exc)) from exc
        except Exception as exc:
            # An installed picamera2 that fails to import raises whatever its C extensions do:
            # ValueError ("numpy.dtype size changed"), AttributeError, RuntimeError, OSError.
            raise CameraError(_broken_import(exc)) from exc
        try:
            camera = Picamera2(self._camera_num)
            # A running video configuration hands out the next frame at once; a still
            # configuration would re-tune the sensor on every capture.
            camera.configure(
                camera.create_video_configuration(main={"size": self._size, "format": "RGB888"})
            )
            camera.start()
        except Exception as exc:
            raise CameraError(
                f"cannot open camera {self._camera_num} with picamera2: {exc}; check that it is "
                "connected and that `rpicam-hello --list-cameras` lists it"
            ) from exc
        return camera

    def _close_blocking(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            camera.stop()
            camera.close()
        except Exception:
            # Closing a camera that already failed may fail too; the next capture reopens it.
            log.warning("closing picamera2 failed", exc_info=True)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_blocking)
        self._executor.shutdown(wait=False)


def _broken_import(exc: BaseException) -> str:
    return (
        f"picamera2 is installed but does not import ({type(exc).__name__}: {exc}); this is "
        "usually a numpy in the venv newer than the apt numpy picamera2 was built for. Check "
        "`python -c 'import numpy; print(numpy.__file__, numpy.__version__)'` in the venv: "
        "it must be the apt numpy (remove any pip-installed numpy from the venv)"
    )
