"""`selftest --camera`: the smoke test names the camera, the snapshot and any label in view."""

from __future__ import annotations

from pathlib import Path

import zxingcpp
from vision_frames import frame, label, save

from device.vision.camera import CameraSettings
from device.vision.selftest import camera_selftest


async def test_selftest_walks_the_whole_snapshot_path(tmp_path: Path) -> None:
    still = frame(
        [(label("LOC-7", zxingcpp.BarcodeFormat.QRCode, 5), 10.0, (600, 300))], blur=1.0, seed=1
    )
    save(still, tmp_path / "cam")
    report = await camera_selftest(CameraSettings(backend="directory", directory=tmp_path / "cam"))
    assert report.ok
    assert report.lines[0].startswith("camera: directory still 1280x720")
    assert report.lines[1].startswith("snapshot: JPEG 1024x576")
    assert report.lines[2] == "barcode: QR code LOC-7"


async def test_selftest_fails_with_the_reason(tmp_path: Path) -> None:
    report = await camera_selftest(CameraSettings(backend="directory", directory=tmp_path / "none"))
    assert not report.ok
    assert report.lines == [
        f"camera: FAILED: camera directory {tmp_path / 'none'} does not exist; create it with "
        "images in it, or set camera.backend = 'none'"
    ]
