"""Synthetic camera frames: barcode labels (made by zxing-cpp's own writer) on noisy,
rotated, blurred 1280x720 scenes, like a label held up in an aisle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zxingcpp
from PIL import Image, ImageFilter

WIDTH, HEIGHT = 1280, 720


def label(text: str, fmt: zxingcpp.BarcodeFormat, scale: int) -> Image.Image:
    code = zxingcpp.create_barcode(text, fmt)
    symbol = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=scale)))
    # Label stock: off-white card with a margin around the printed symbol.
    card = Image.new("RGB", (symbol.width + 40, symbol.height + 40), (235, 235, 225))
    card.paste(symbol.convert("RGB"), (20, 20))
    return card


def scene(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    clutter = rng.normal(110, 35, (HEIGHT, WIDTH, 3)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(clutter, "RGB")


def frame(
    labels: list[tuple[Image.Image, float, tuple[int, int]]], *, blur: float, seed: int
) -> Image.Image:
    """Place each (label, angle in degrees, top-left) on clutter, blur it, add sensor noise."""
    canvas = scene(seed)
    for card, angle, position in labels:
        turned = card.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        mask = Image.new("L", card.size, 255).rotate(angle, expand=True)
        canvas.paste(turned, position, mask)
    canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    rng = np.random.default_rng(seed + 1)
    noisy = np.asarray(canvas).astype(np.int16) + rng.normal(0, 10, (HEIGHT, WIDTH, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def save(image: Image.Image, folder: Path, name: str = "frame.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    image.save(path)
    return path
