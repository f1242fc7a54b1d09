"""The picamera2 backend. Real captures only run on a Raspberry Pi with a camera; elsewhere the
backend must fail with an error that says how to install it."""

from __future__ import annotations

import importlib.util

import pytest

from device.vision.camera import CameraError
from device.vision.jpeg import encode_jpeg
from device.vision.picamera import Picamera2Source


@pytest.mark.skipif(
    importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here"
)
async def test_without_picamera2_the_error_says_how_to_install_it() -> None:
    camera = Picamera2Source()
    with pytest.raises(CameraError, match=r"sudo apt install python3-picamera2"):
        await camera.capture()
    await camera.close()


@pytest.mark.pi
async def test_a_real_capture_becomes_a_snapshot() -> None:
    pytest.importorskip("picamera2")
    camera = Picamera2Source(size=(1280, 720))
    try:
        still = await camera.capture()
        assert still.size == (1280, 720) and still.mode == "RGB"
        again = await camera.capture()
        assert again.size == still.size
        assert len(encode_jpeg(still)) > 1000
    finally:
        await camera.close()
