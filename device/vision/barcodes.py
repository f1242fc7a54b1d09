"""Local barcode decoding with zxing-cpp: every label zxing reads, and never a wrong one.

Vision models guess digits; a SKU or a location must be exact, so labels are decoded here and
only the decoded text goes to the model.

How a read is trusted:

- a 2D code (QR, Data Matrix) carries Reed-Solomon error correction: one read is enough;
- a read at full resolution (straight or turned) whose own check holds (EAN-13 check digit, GS1
  element rules, the location pattern of a bin label) is enough;
- anything else (a free-text Code 128, or a read that only a reduced view gave) counts only
  when two views agree, like the "redundancy" setting of handheld scanners. A blurred EAN-13
  read from a reduced view once passed its check digit with the wrong digits; a wrong SKU is
  worse than "try again".

When nothing is found, linear codes get turned views (zxing reads bars only within a few
degrees of level or plumb), as long as the time budget lasts.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import zxingcpp
from PIL import Image, ImageFilter, ImageOps

from device.vision.checks import LOCATION, escape, gs1_elements, gs1_hri, mod10_ok
from device.vision.jpeg import ImageLike, to_pil

__all__ = ["CodeFormat", "DecodedCode", "ScanResult", "Sighting", "decode_barcodes", "escape"]

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
MATRIX = frozenset({CodeFormat.QR_CODE, CodeFormat.DATA_MATRIX})
# Area-averaged reductions bring large or blurred codes into reach; they replace zxing's own
# subsampled pass, which is where the misreads came from.
REDUCED_SCALES = (0.75, 0.5)
# Turned views for linear codes. zxing also tries each view turned by 90°, so 30° and 60°
# cover 120° and 150° too; what is left between the steps is within zxing's own tolerance.
TURNS = (30.0, 60.0, 45.0, 15.0, 75.0)
# Frames larger than this (megapixels) are turned at half size: their modules are large enough.
TURN_MAX_MP = 2.5
BUDGET_S = 1.0
# Mean brightness (0-255) below which a frame is dim.
DIM = 60
_VIEW_NUMBERS = itertools.count()


@dataclass(frozen=True)
class DecodedCode:
    # The payload, control characters escaped (\\n, \\t, \\x1d for a GS1 separator).
    text: str
    format: CodeFormat
    # Centre of the code in the image; several codes are listed left to right.
    x: int
    y: int
    truncated: bool = False
    # What the payload is: "gtin", "gs1", "location" or "text".
    kind: str = "text"
    # The GS1 element string as printed under the symbol: (01)09506000134352(10)ABC123.
    gs1: str | None = None
    # How it was trusted: "check" (its own check held), "ecc" (error correction), "vote".
    trusted_by: str = "vote"


@dataclass(frozen=True)
class Sighting:
    """A code that was seen but not read reliably."""

    format: CodeFormat
    x: int
    y: int
    # Its size in pixels along its longer side, to tell the worker to come closer.
    size: int
    reason: str


@dataclass
class ScanResult:
    codes: list[DecodedCode] = field(default_factory=list)
    seen: list[Sighting] = field(default_factory=list)
    # Mean brightness of the frame, 0-255: a dark frame asks for more light.
    brightness: float = 0.0
    width: int = 0
    height: int = 0
    # Reads with no check and no second view; a caller that can look them up (does this bin
    # or SKU exist?) may still accept them.
    unconfirmed: list[DecodedCode] = field(default_factory=list)


@dataclass
class _Candidate:
    code: DecodedCode
    views: int = 0
    trusted: bool = False


def scan(
    image: ImageLike,
    formats: Iterable[CodeFormat] = tuple(CodeFormat),
    *,
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.thread_time,
) -> ScanResult:
    """Read every code of the given formats that can be trusted, and note the ones that cannot.

    CPU-bound (tens of milliseconds for a 720p frame here, more on a Pi): call it from an
    executor, or use `scan_async`. `budget_s` bounds the extra turned views, not the first
    reads, so a code in plain view is always found. It counts this thread's CPU seconds, not
    wall time, so a busy machine reads the same frames, only later.
    """
    wanted = list(dict.fromkeys(formats))
    if not wanted:
        raise ValueError("formats is empty; pass at least one CodeFormat")
    started = clock()
    grey = to_pil(image).convert("L")
    found: dict[tuple[CodeFormat, str], _Candidate] = {}
    seen: list[tuple[int, Sighting]] = []
    zx_all = zxingcpp.BarcodeFormats([_ZXING[f] for f in wanted])
    brightness = float(np.asarray(grey, dtype=np.float32).mean())

    _read_view(grey, zx_all, found, seen, full=True)
    for scale in REDUCED_SCALES:
        if _done(found):
            break
        _read_view(_shrink(grey, scale), zx_all, found, seen, scale=scale, full=False)
    # Full-resolution views processed another way: stretched and cut at a fixed threshold for
    # dim or washed-out labels, an unsharp mask for blurred ones. zxing's own subsampled pass
    # is never used: on a blurred EAN-13 it returns the same wrong GTIN, check digit valid,
    # from two scales.
    if not _done(found):
        stretched = ImageOps.autocontrast(grey, cutoff=1)
        _read_view(
            stretched, zx_all, found, seen, full=True, binarizer=zxingcpp.Binarizer.FixedThreshold
        )
    sharp: Image.Image | None = None
    if not _done(found):
        sharp = _sharpen(grey)
        _read_view(sharp, zx_all, found, seen, full=True)

    linear = [f for f in wanted if f in LINEAR]
    if linear and not any(c.trusted or c.views >= 2 for c in found.values()):
        zx_linear = zxingcpp.BarcodeFormats([_ZXING[f] for f in linear])
        large = grey.width * grey.height > TURN_MAX_MP * 1e6
        half = _shrink(grey, 0.5)
        # Full-size turns first (small modules need every pixel), then the cheap half-size
        # ones that suit large, noisy codes; a large frame is turned at half size only.
        turns = [(half, 0.5, a) for a in TURNS]
        if not large:
            # Turning blurs a little more; a sharpened frame keeps thin bars apart, except in
            # a dim frame, where sharpening mostly raises the sensor noise.
            dim = brightness < DIM
            source = grey if dim else (sharp or _sharpen(grey))
            turns = [(source, 1.0, a) for a in TURNS] + turns
        for source, scale, angle in turns:
            if clock() - started > budget_s or _done(found):
                break
            view = source.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)
            _read_view(
                view,
                zx_linear,
                found,
                seen,
                scale=scale,
                full=scale == 1.0,
                turn=(angle, source.size),
            )

    result = ScanResult(
        brightness=brightness,
        width=grey.width,
        height=grey.height,
    )
    for candidate in found.values():
        if candidate.trusted or candidate.views >= 2:
            result.codes.append(candidate.code)
        else:
            result.unconfirmed.append(candidate.code)
    result.codes, conflicts = _without_conflicts(result.codes)
    result.codes.sort(key=lambda c: (c.x, c.y))
    # A sighting at the place of a code that was read is that code, not another one.
    result.seen = [s for s in _credible(seen) if not _near_any(s, result.codes)] + conflicts
    return result


def decode_barcodes(
    image: ImageLike, formats: Iterable[CodeFormat] = tuple(CodeFormat)
) -> list[DecodedCode]:
    """Every code of the given formats that reads reliably, left to right."""
    return scan(image, formats).codes


async def scan_async(
    image: ImageLike, formats: Iterable[CodeFormat] = tuple(CodeFormat)
) -> ScanResult:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, scan, image, tuple(formats))


async def decode_barcodes_async(
    image: ImageLike, formats: Iterable[CodeFormat] = tuple(CodeFormat)
) -> list[DecodedCode]:
    return (await scan_async(image, formats)).codes


def _done(found: dict[tuple[CodeFormat, str], _Candidate]) -> bool:
    return bool(found) and all(c.trusted or c.views >= 2 for c in found.values())


def _shrink(grey: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    return grey.resize(size, Image.Resampling.BOX)


def _sharpen(grey: Image.Image) -> Image.Image:
    return grey.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=0))


def _read_view(
    view: Image.Image,
    formats: zxingcpp.BarcodeFormats,
    found: dict[tuple[CodeFormat, str], _Candidate],
    seen: list[tuple[int, Sighting]],
    *,
    scale: float = 1.0,
    full: bool,
    turn: tuple[float, tuple[int, int]] | None = None,
    binarizer: zxingcpp.Binarizer = zxingcpp.Binarizer.LocalAverage,
) -> None:
    results = zxingcpp.read_barcodes(
        np.asarray(view),
        formats=formats,
        try_downscale=False,
        binarizer=binarizer,
        text_mode=zxingcpp.TextMode.Plain,
        return_errors=True,
    )
    view_no = next(_VIEW_NUMBERS)
    for result in results:
        code_format = _FROM_ZXING.get(str(result.format))
        if code_format is None:
            continue
        x, y, size = _place(result.position, scale, turn, view.size)
        if not result.valid:
            reason = str(result.error.type.name).lower() if result.error else "unknown"
            seen.append((view_no, Sighting(code_format, x, y, size, reason)))
            continue
        code = _decoded(result, code_format, x, y)
        if code is None:
            seen.append((view_no, Sighting(code_format, x, y, size, "failed_check")))
            continue
        key = (code.format, code.text)
        candidate = found.setdefault(key, _Candidate(code))
        candidate.views += 1
        if code_format in MATRIX or (full and code.trusted_by == "check"):
            candidate.trusted = True
            trusted_by = "ecc" if code_format in MATRIX else "check"
            candidate.code = _with_trust(candidate.code, trusted_by)


def _with_trust(code: DecodedCode, trusted_by: str) -> DecodedCode:
    return DecodedCode(
        code.text, code.format, code.x, code.y, code.truncated, code.kind, code.gs1, trusted_by
    )


def _decoded(
    result: zxingcpp.Barcode, code_format: CodeFormat, x: int, y: int
) -> DecodedCode | None:
    """The code with what kind of payload it is; None when a check it must pass fails."""
    raw = result.text
    kind, hri, checked = "text", None, False
    if code_format is CodeFormat.EAN13:
        if not mod10_ok(raw) or len(raw) != 13:
            return None
        kind, checked = "gtin", True
    elif result.content_type == zxingcpp.ContentType.GS1:
        elements = gs1_elements(raw)
        if elements is not None:
            kind, hri, checked = "gs1", gs1_hri(elements), True
    elif LOCATION.match(raw):
        kind, checked = "location", True
    text = escape(raw)
    truncated = len(text) > MAX_TEXT
    return DecodedCode(
        text[:MAX_TEXT],
        code_format,
        x,
        y,
        truncated,
        kind,
        hri,
        "check" if checked else "vote",
    )


def _place(
    position: zxingcpp.Position,
    scale: float,
    turn: tuple[float, tuple[int, int]] | None,
    view_size: tuple[int, int],
) -> tuple[int, int, int]:
    """Centre and size of a code in the original frame's pixels."""
    corners = [position.top_left, position.top_right, position.bottom_right, position.bottom_left]
    cx = sum(c.x for c in corners) / 4
    cy = sum(c.y for c in corners) / 4
    size = max(
        math.dist((corners[0].x, corners[0].y), (corners[2].x, corners[2].y)),
        math.dist((corners[1].x, corners[1].y), (corners[3].x, corners[3].y)),
    )
    if turn is not None:
        # PIL turns counter-clockwise about the centre and grows the canvas: undo both.
        angle, (width, height) = turn
        rad = math.radians(angle)
        dx, dy = cx - view_size[0] / 2, cy - view_size[1] / 2
        cx = width / 2 + dx * math.cos(rad) - dy * math.sin(rad)
        cy = height / 2 + dx * math.sin(rad) + dy * math.cos(rad)
    return round(cx / scale), round(cy / scale), round(size / scale)


# Two reads closer than this (pixels) are of the same label.
SAME_PLACE = 40


def _without_conflicts(codes: list[DecodedCode]) -> tuple[list[DecodedCode], list[Sighting]]:
    """Two different texts of one format at one place: a checked read beats a vote; two of a
    kind cancel each other out, since one of them is wrong and we cannot tell which."""
    kept, conflicts = list(codes), []
    for a in codes:
        for b in codes:
            if a is b or a.format is not b.format or a.text == b.text:
                continue
            if math.dist((a.x, a.y), (b.x, b.y)) >= SAME_PLACE:
                continue
            a_rank, b_rank = (c.trusted_by != "vote" for c in (a, b))
            if a_rank <= b_rank and a in kept:
                kept.remove(a)
                if a_rank == b_rank:
                    conflicts.append(Sighting(a.format, a.x, a.y, 0, "conflicting_reads"))
    return kept, conflicts


def _credible(seen: list[tuple[int, Sighting]]) -> list[Sighting]:
    """Sightings found again by another view at about the same place. Texture fools a
    detector once (noise often looks like a Data Matrix with a bad checksum), rarely twice."""
    kept = []
    for view, s in seen:
        reach = max(20, s.size // 2)
        if any(
            other != view and o.format is s.format and math.dist((s.x, s.y), (o.x, o.y)) < reach
            for other, o in seen
        ):
            kept.append(s)
    return kept


def _near_any(sighting: Sighting, codes: list[DecodedCode]) -> bool:
    reach = max(20, sighting.size // 2)
    return any(math.dist((sighting.x, sighting.y), (c.x, c.y)) < reach for c in codes)
