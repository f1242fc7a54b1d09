"""JPEG snapshots: at most `max_px` on the long side, aspect kept, clear errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from device.vision.jpeg import encode_jpeg, encode_jpeg_async, fitted_size


def decoded(jpeg: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(jpeg))
    assert picture.format == "JPEG"
    return picture


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1280, 720), (1024, 576)), ((720, 1280), (576, 1024)), ((4056, 3040), (1024, 767))],
)
def test_large_stills_shrink_to_1024_on_the_long_side(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert decoded(encode_jpeg(Image.new("RGB", size, (90, 120, 30)))).size == expected
    assert fitted_size(size, 1024) == expected


def test_small_stills_are_not_enlarged() -> None:
    assert decoded(encode_jpeg(Image.new("RGB", (640, 480)))).size == (640, 480)


def test_camera_arrays_are_accepted() -> None:
    rgb = np.zeros((720, 1280, 3), dtype=np.uint8)
    rgb[:, :, 0] = 200  # red, to prove the channel order survives
    picture = decoded(encode_jpeg(rgb, max_px=512)).convert("RGB")
    assert picture.size == (512, 288)
    red, green, blue = picture.getpixel((100, 100))  # type: ignore[misc]
    assert red > 180 and green < 20 and blue < 20
    grey = np.full((100, 200), 128, dtype=np.uint8)
    assert decoded(encode_jpeg(grey)).mode == "L"
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    assert decoded(encode_jpeg(rgba)).size == (10, 10)


def test_lower_quality_means_fewer_bytes() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    assert len(encode_jpeg(noisy, quality=40)) < len(encode_jpeg(noisy, quality=90))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), dtype=np.float32), r"must be uint8, got float32"),
        (np.zeros((10, 10, 2), dtype=np.uint8), r"shape \(10, 10, 2\)"),
        ("frame.jpg", r"expected a PIL image or a numpy array, got str"),
    ],
)
def test_bad_images_are_explained(image: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        encode_jpeg(image)  # type: ignore[arg-type]


def test_bad_settings_are_explained() -> None:
    with pytest.raises(ValueError, match=r"quality=100 must be 1-95"):
        encode_jpeg(Image.new("RGB", (8, 8)), quality=100)
    with pytest.raises(ValueError, match=r"max_px=0 must be 16-8192"):
        encode_jpeg(Image.new("RGB", (8, 8)), max_px=0)


async def test_async_encoding_gives_the_same_picture() -> None:
    image = Image.new("RGB", (1280, 720), (10, 200, 10))
    assert await encode_jpeg_async(image) == encode_jpeg(image)


def test_the_benchmark_prints_per_snapshot_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from device.bench.vision import main

    figures = main(["--frames", "2", "--scans", "1"])
    assert figures["jpeg_kib"]["median"] > 0
    assert figures["scans"]["found"] == 1  # the synthetic stills carry a label
    assert "snapshot_cpu" in capsys.readouterr().out
