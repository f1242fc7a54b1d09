"""`selftest --camera`: the smoke test names the camera, the snapshot and any label in view."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zxingcpp
from vision_frames import frame, label, save

from device.cli import main
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


async def test_selftest_camera_needs_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fresh Pi with a camera and nothing else yet: no Gemini key, no inventory token.
    for var in ("GEMINI_API_KEY", "WAREHOUSE_VOICE_INVENTORY_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    still = frame(
        [(label("A-12-03", zxingcpp.BarcodeFormat.Code128, 4), 0.0, (300, 200))], blur=1.0, seed=2
    )
    save(still, tmp_path / "cam")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[camera]\nbackend = "directory"\ndirectory = "{tmp_path / "cam"}"\nenabled = false\n'
    )
    code = await asyncio.to_thread(main, ["selftest", "--camera", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "barcode: Code 128 A-12-03" in out
