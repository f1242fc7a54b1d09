"""Local barcode decoding with zxing-cpp.

Vision models guess digits; a SKU or a location must be exact, so labels are decoded here and
only the decoded text goes to the model.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import zxingcpp
from PIL import Image

from device.vision.jpeg import ImageLike, to_pil

# Warehouse labels are short; a longer payload is either not ours or a QR code carrying prose
# that should not be read to the model verbatim.
MAX_TEXT = 256


class CodeFormat(StrEnum):
    QR_CODE = "qr_code"
    CODE128 = "code128"
    EAN13 = "ean13"
    DATA_MATRIX = "data_matrix"

    @property
    def label(self) -> str:
        """How a person would name it."""
        return _LABELS[self]


_LABELS = {
    CodeFormat.QR_CODE: "QR code",
    CodeFormat.CODE128: "Code 128",
    CodeFormat.EAN13: "EAN-13",
    CodeFormat.DATA_MATRIX: "Data Matrix",
}

_ZXING = {
    CodeFormat.QR_CODE: zxingcpp.BarcodeFormat.QRCode,
    CodeFormat.CODE128: zxingcpp.BarcodeFormat.Code128,
    CodeFormat.EAN13: zxingcpp.BarcodeFormat.EAN13,
    CodeFormat.DATA_MATRIX: zxingcpp.BarcodeFormat.DataMatrix,
}
_FROM_ZXING = {str(v): k for k, v in _ZXING.items()}
LINEAR = frozenset({CodeFormat.CODE128, CodeFormat.EAN13})
# Full size first, then area-averaged reductions that bring large or blurred codes into reach.
VIEW_SCALES = (1.0, 0.75, 0.5)


@dataclass(frozen=True)
class DecodedCode:
    text: str
    format: CodeFormat
    # Centre of the code in the image; several codes are listed left to right.
    x: int
    y: int
    truncated: bool = False


def decode_barcodes(
    image: ImageLike, formats: Iterable[CodeFormat] = tuple(CodeFormat)
) -> list[DecodedCode]:
    """Every code of the given formats that reads reliably, left to right.

    The still is read at full size and at smaller, area-averaged sizes. A 2D code (QR, Data
    Matrix) carries error correction, so one read is enough. A linear code's check digit is
    weak: a blurred EAN-13 can pass it with the wrong digits (zxing's own subsampled pass did
    exactly that in our tests), so a linear code counts only when two sizes agree, like the
    "redundancy" setting of handheld scanners. A wrong SKU is worse than "try again".

    CPU-bound (tens of milliseconds here, more on a Pi): call it from an executor, or use
    `decode_barcodes_async`.
    """
    wanted = list(dict.fromkeys(formats))
    if not wanted:
        raise ValueError("formats is empty; pass at least one CodeFormat")
    zx_formats = zxingcpp.BarcodeFormats([_ZXING[f] for f in wanted])
    grey = to_pil(image).convert("L")
    votes: dict[tuple[CodeFormat, str], int] = {}
    first: dict[tuple[CodeFormat, str], DecodedCode] = {}
    for scale in VIEW_SCALES:
        view = grey if scale == 1.0 else _shrink(grey, scale)
        # Our own area-averaged views replace zxing's subsampling, the source of misreads.
        for code in _read(view, zx_formats, scale):
            key = (code.format, code.text)
            votes[key] = votes.get(key, 0) + 1
            first.setdefault(key, code)
        if first and all(n >= _votes_needed(key[0]) for key, n in votes.items()):
            break
    accepted = [c for key, c in first.items() if votes[key] >= _votes_needed(key[0])]
    return sorted(accepted, key=lambda c: (c.x, c.y))


def _votes_needed(code_format: CodeFormat) -> int:
    return 2 if code_format in LINEAR else 1


def _shrink(grey: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    return grey.resize(size, Image.Resampling.BOX)


def _read(view: Image.Image, formats: zxingcpp.BarcodeFormats, scale: float) -> list[DecodedCode]:
    codes = []
    for result in zxingcpp.read_barcodes(np.asarray(view), formats=formats, try_downscale=False):
        code_format = _FROM_ZXING.get(str(result.format))
        if code_format is None or not result.valid:
            continue
        text, truncated = _clean(result.text)
        pos = result.position
        corners = (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)
        x = round(sum(c.x for c in corners) / 4 / scale)
        y = round(sum(c.y for c in corners) / 4 / scale)
        codes.append(DecodedCode(text, code_format, x, y, truncated))
    return codes


async def decode_barcodes_async(
    image: ImageLike, formats: Iterable[CodeFormat] = tuple(CodeFormat)
) -> list[DecodedCode]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, decode_barcodes, image, tuple(formats))


def _clean(text: str) -> tuple[str, bool]:
    # Control characters (GS separators in GS1 codes, stray newlines) would garble speech and
    # logs; they carry no meaning a worker can say.
    cleaned = "".join(
        " " if unicodedata.category(ch).startswith("C") else ch for ch in text
    ).strip()
    if len(cleaned) > MAX_TEXT:
        return cleaned[:MAX_TEXT], True
    return cleaned, False
