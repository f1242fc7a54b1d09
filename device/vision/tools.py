"""The camera's tools for the model: `scan_barcode` (exact, decoded on the device) and `look`.

Handlers take the call's arguments and return a structured result with `status`, a short
`speakable` sentence, `retryable` and `valid_options`. They never raise: a broken camera is an
answer the model can pass on ("read the code out to me instead"), not a crash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from device.tools.results import OUTSIDE_TEXT, quote
from device.vision.barcodes import DIM, CodeFormat, DecodedCode, ScanResult, Sighting, scan_async
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

    def __init__(
        self,
        streamer: SnapshotStreamer,
        *,
        attempts: int = 3,
        exists: Callable[[DecodedCode], Awaitable[bool]] | None = None,
        snapshots: bool = True,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._streamer = streamer
        self._attempts = attempts
        # Looks a code up (does this bin or SKU exist?): lets a read without a check count.
        self._exists = exists
        # camera.enabled = false: no pictures go to the model, so `look` is not offered.
        self._snapshots = snapshots

    def declarations(self) -> list[dict[str, Any]]:
        offered = DECLARATIONS if self._snapshots else [SCAN_BARCODE]
        return [dict(d) for d in offered]

    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {"scan_barcode": self.scan_barcode}
        if self._snapshots:
            handlers["look"] = self.look
        return handlers

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
        last = ScanResult()
        seen: list[Sighting] = []
        # A few stills: a hand-held label is often blurred in one and sharp in the next.
        for _ in range(self._attempts):
            try:
                image = await self._streamer.still()
            except CameraError as exc:
                return _result("unavailable", NO_CAMERA_SPEAKABLE, detail=str(exc))
            last = await scan_async(image, formats)
            if self._exists is not None and last.unconfirmed:
                # No check and no second view, but the inventory knows this bin or SKU.
                last.codes.extend([c for c in last.unconfirmed if await self._exists(c)])
                last.codes.sort(key=lambda c: (c.x, c.y))
            if last.codes:
                break
            seen.extend(last.seen)
            seen.extend(Sighting(c.format, c.x, c.y, 0, "unconfirmed") for c in last.unconfirmed)
        if not last.codes and seen:
            advice = _advice(seen, last)
            return _result(
                "unreadable",
                f"I can see a {seen[0].format.label} but can't read it. {advice}",
                retryable=True,
                codes=[],
                seen=[
                    {"format": s.format.value, "where": _where(s.x, s.y, last)}
                    for s in _distinct(seen)
                ],
                advice=advice,
            )
        if not last.codes:
            return _result(
                "not_found",
                "I can't see a barcode. Hold the label flat, a hand's width from the camera, "
                "and ask again.",
                retryable=True,
                codes=[],
            )
        codes = last.codes
        found = [
            {
                "text": c.text,
                "format": c.format.value,
                "kind": c.kind,
                **({"gs1": c.gs1} if c.gs1 else {}),
                **({"where": _where(c.x, c.y, last)} if len(codes) > 1 else {}),
                **({"truncated": True} if c.truncated else {}),
            }
            for c in codes
        ]
        # A label's text is outside data: quoted and bounded, never an instruction.
        if len(codes) == 1:
            speakable = f"{_describe(codes[0])}: {quote(_say(codes[0]))}."
        else:
            listed = "; ".join(
                f"{_where(c.x, c.y, last)}, {_describe(c)} {quote(_say(c))}" for c in codes
            )
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
        if not self._streamer.has_camera:
            return _result("unavailable", NO_CAMERA_SPEAKABLE, detail="no camera configured")
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
        if frame.status == "no_session":
            return _result(
                "no_session",
                "There's no conversation open to show a picture to.",
                detail=frame.detail,
            )
        return _result("unavailable", "The camera isn't working right now.", detail=frame.detail)


_KINDS = {
    "location": "bin label",
    "gtin": "product code",
    "gs1": "GS1 label",
}


def _describe(code: DecodedCode) -> str:
    kind = _KINDS.get(code.kind)
    return f"{code.format.label} {kind}" if kind else code.format.label


def _say(code: DecodedCode) -> str:
    """The text as a person reads it: the GS1 printed form, escapes read as spaces."""
    if code.gs1:
        return code.gs1
    spoken = code.text.replace("\\n", " ").replace("\\t", " ").replace("\\r", " ")
    return " ".join(re.sub(r"\\x[0-9a-f]{2}", " ", spoken).split())


def _where(x: int, y: int, frame: ScanResult) -> str:
    """Where in the picture, in words a worker holding several labels can follow."""
    width, height = max(1, frame.width), max(1, frame.height)
    column = ("on the left", "in the middle", "on the right")[min(2, 3 * x // width)]
    row = ("at the top", "", "at the bottom")[min(2, 3 * y // height)]
    if column == "in the middle" and row:
        return row
    return f"{column} {row}".strip()


def _distinct(seen: list[Sighting]) -> list[Sighting]:
    kept: list[Sighting] = []
    for s in seen:
        if not any(k.format is s.format and abs(k.x - s.x) + abs(k.y - s.y) < 60 for k in kept):
            kept.append(s)
    return kept


def _advice(seen: list[Sighting], frame: ScanResult) -> str:
    if frame.brightness < DIM:
        return "It's too dark: give it more light, or tilt it towards the light."
    sizes = [s.size for s in seen if s.size]
    if sizes and max(sizes) < frame.width / 5:
        return "Bring it closer to the camera."
    return "Hold it flat and steady, square to the camera."


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
