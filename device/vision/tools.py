"""The camera's tools for the model: `scan_barcode` (exact, decoded on the device) and `look`.

Handlers take the call's arguments and return a structured result with `status`, a short
`speakable` sentence, `retryable` and `valid_options`. They never raise: a broken camera is an
answer the model can pass on ("read the code out to me instead"), not a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from device.tools.results import OUTSIDE_TEXT, quote
from device.vision.barcodes import CodeFormat, DecodedCode, decode_barcodes_async
from device.vision.camera import CameraError
from device.vision.snapshots import SnapshotStreamer

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

FORMAT_VALUES = [f.value for f in CodeFormat]

SCAN_BARCODE: dict[str, Any] = {
    "name": "scan_barcode",
    "description": (
        "Read the barcode, QR code or Data Matrix the worker holds up to the camera, decoded "
        "exactly on the device. Use it whenever a SKU, location or serial number is on a label: "
        "never read digits from the video yourself. Returns each code's exact text and format."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "formats": {
                "type": "array",
                "description": "Only accept these formats. Leave out to accept all of them.",
                "items": {"type": "string", "enum": FORMAT_VALUES},
                "minItems": 1,
                "maxItems": len(FORMAT_VALUES),
            }
        },
        "required": [],
    },
}

# No parameters: an empty OBJECT schema is rejected by some Gemini endpoints.
LOOK: dict[str, Any] = {
    "name": "look",
    "description": (
        "Send one fresh picture from the device camera into this conversation, for when the "
        "worker asks you to look at something (a carton, damage, a shelf). Not for reading "
        "barcodes: use scan_barcode for those."
    ),
}

DECLARATIONS: list[dict[str, Any]] = [SCAN_BARCODE, LOOK]

NO_CAMERA_SPEAKABLE = "The camera isn't working, so please read the code out to me instead."


def _result(
    status: str,
    speakable: str,
    *,
    retryable: bool = False,
    valid_options: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "status": status,
        "speakable": speakable,
        "retryable": retryable,
        "valid_options": valid_options or [],
        **extra,
    }


class VisionTools:
    """Bound handlers for the tool dispatcher: `handlers()` maps each declared name to one."""

    def __init__(self, streamer: SnapshotStreamer, *, attempts: int = 3) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._streamer = streamer
        self._attempts = attempts

    def declarations(self) -> list[dict[str, Any]]:
        return [dict(d) for d in DECLARATIONS]

    def handlers(self) -> dict[str, Handler]:
        return {"scan_barcode": self.scan_barcode, "look": self.look}

    async def scan_barcode(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            formats = _parse_formats(args)
        except ValueError as exc:
            return _result(
                "invalid_argument",
                "I can only scan QR, Code 128, EAN-13 and Data Matrix codes.",
                retryable=True,
                valid_options=FORMAT_VALUES,
                detail=str(exc),
            )
        try:
            return await self._scan(formats)
        except Exception as exc:
            log.exception("scan_barcode failed")
            return _result(
                "error", "Scanning failed. Try again.", retryable=True, detail=f"{exc}"[:200]
            )

    async def _scan(self, formats: list[CodeFormat]) -> dict[str, Any]:
        if not self._streamer.has_camera:
            return _result("unavailable", NO_CAMERA_SPEAKABLE, detail="no camera configured")
        codes: list[DecodedCode] = []
        # A few stills: a hand-held label is often blurred in one and sharp in the next.
        for _ in range(self._attempts):
            try:
                image = await self._streamer.still()
            except CameraError as exc:
                return _result("unavailable", NO_CAMERA_SPEAKABLE, detail=str(exc))
            codes = await decode_barcodes_async(image, formats)
            if codes:
                break
        if not codes:
            return _result(
                "not_found",
                "I can't see a barcode. Hold the label flat, a hand's width from the camera, "
                "and ask again.",
                retryable=True,
                codes=[],
            )
        found = [
            {
                "text": c.text,
                "format": c.format.value,
                **({"truncated": True} if c.truncated else {}),
            }
            for c in codes
        ]
        # A label's text is outside data: quoted and bounded, never an instruction.
        if len(codes) == 1:
            speakable = f"{codes[0].format.label}: {quote(codes[0].text)}."
        else:
            listed = "; ".join(f"{c.format.label} {quote(c.text)}" for c in codes)
            speakable = f"I read {len(codes)} codes: {listed}."
        return _result("ok", speakable, codes=found, detail=OUTSIDE_TEXT)

    async def look(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            return _result(
                "invalid_argument",
                "Just ask me to look; it takes no options.",
                retryable=True,
                detail=f"look takes no arguments, got {sorted(args)}",
            )
        try:
            frame = await self._streamer.look()
        except Exception as exc:
            log.exception("look failed")
            return _result(
                "error",
                "I couldn't take a picture. Try again.",
                retryable=True,
                detail=f"{exc}"[:200],
            )
        if frame.status == "ok":
            return _result(
                "ok",
                "Looking.",
                detail=(
                    f"A fresh {frame.width}x{frame.height} camera picture was just sent; "
                    "describe what it shows."
                ),
            )
        if frame.status == "disabled":
            return _result("disabled", "The camera is switched off.", detail=frame.detail)
        if frame.status == "send_failed":
            return _result(
                "error",
                "I couldn't send the picture. Try again.",
                retryable=True,
                detail=frame.detail,
            )
        return _result("unavailable", "The camera isn't working right now.", detail=frame.detail)


def _parse_formats(args: dict[str, Any]) -> list[CodeFormat]:
    if not isinstance(args, dict):
        raise ValueError(f"arguments must be an object, got {type(args).__name__}")
    unknown = sorted(set(args) - {"formats"})
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; the only argument is 'formats'")
    raw = args.get("formats")
    if raw is None:
        return list(CodeFormat)
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"formats must be a non-empty list of {FORMAT_VALUES}, got {raw!r}")
    bad = [f for f in raw if f not in FORMAT_VALUES]
    if bad:
        raise ValueError(f"unknown format(s) {bad}; use {FORMAT_VALUES}")
    return [CodeFormat(f) for f in dict.fromkeys(raw)]
