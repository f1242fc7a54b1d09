"""The camera smoke test behind `warehouse-voice selftest --camera`.

On the Pi it proves the whole path a snapshot takes: open the configured camera, capture a
still, encode the JPEG that would go to Gemini, and look for barcodes in it. Hold a label in
front of the camera while it runs to check scanning too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from device.vision.barcodes import decode_barcodes_async
from device.vision.camera import CameraError, CameraSettings, open_camera
from device.vision.jpeg import encode_jpeg_async, fitted_size


@dataclass
class SelftestReport:
    ok: bool
    lines: list[str] = field(default_factory=list)


async def camera_selftest(settings: CameraSettings) -> SelftestReport:
    report = SelftestReport(ok=False)
    say = report.lines.append
    if settings.backend == "none":
        say("camera: none configured (voice-only); set camera.backend to test one")
        report.ok = True
        return report
    try:
        camera = open_camera(settings)
        if camera is None:  # ruled out above; keeps the type checker honest
            raise CameraError("no camera configured")
        try:
            started = time.perf_counter()
            still = await camera.capture()
            captured = time.perf_counter()
            jpeg = await encode_jpeg_async(still, settings.max_px, settings.quality)
            encoded = time.perf_counter()
            codes = await decode_barcodes_async(still)
        finally:
            await camera.close()
    except CameraError as exc:
        say(f"camera: FAILED: {exc}")
        return report
    width, height = fitted_size(still.size, settings.max_px)
    say(f"camera: {camera.name} still {still.width}x{still.height} in {captured - started:.3f} s")
    say(f"snapshot: JPEG {width}x{height}, {len(jpeg) // 1024} KiB in {encoded - captured:.3f} s")
    if codes:
        for code in codes:
            say(f"barcode: {code.format.label} {code.text}")
    else:
        say("barcode: none in view (hold a label ~20 cm from the lens to test scanning)")
    report.ok = True
    return report
