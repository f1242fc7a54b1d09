"""Scale a still to at most `max_px` on its long side and encode it as JPEG.

Encoding a 1280x720 frame costs tens of milliseconds of CPU on a Pi, so callers on the event
loop use `encode_jpeg_async`, which runs it in an executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io

import numpy as np
import numpy.typing as npt
from PIL import Image

ImageLike = Image.Image | npt.NDArray[np.uint8]

DEFAULT_MAX_PX = 1024
DEFAULT_QUALITY = 80


def fitted_size(size: tuple[int, int], max_px: int) -> tuple[int, int]:
    """The size `encode_jpeg` produces for an image of `size`: aspect kept, never enlarged."""
    width, height = size
    scale = min(1.0, max_px / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_pil(image: ImageLike) -> Image.Image:
    """Accept a PIL image or an RGB / RGBA / greyscale uint8 array (what cameras hand out)."""
    if isinstance(image, Image.Image):
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {image.dtype}; scale it to 0-255 first")
    if image.ndim == 2:
        return Image.fromarray(image, mode="L")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(image[:, :, :3]), mode="RGB")
    raise ValueError(
        f"image array has shape {image.shape}; use (height, width) greyscale or "
        "(height, width, 3) RGB"
    )


def encode_jpeg(
    image: ImageLike, max_px: int = DEFAULT_MAX_PX, quality: int = DEFAULT_QUALITY
) -> bytes:
    if not 16 <= max_px <= 8192:
        raise ValueError(f"max_px={max_px} must be 16-8192 pixels")
    if not 1 <= quality <= 95:
        raise ValueError(f"quality={quality} must be 1-95 (above 95 only grows the file)")
    picture = to_pil(image)
    size = fitted_size(picture.size, max_px)
    if size != picture.size:
        # reducing_gap lets Pillow shrink by whole factors first: much cheaper, same look.
        picture = picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()


async def encode_jpeg_async(
    image: ImageLike,
    max_px: int = DEFAULT_MAX_PX,
    quality: int = DEFAULT_QUALITY,
    executor: concurrent.futures.Executor | None = None,
) -> bytes:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, encode_jpeg, image, max_px, quality)
