"""Camera benchmarks: CPU per snapshot (capture + JPEG encode) and per barcode scan.

    python -m device.bench.vision                    # 30 snapshots from synthetic 1280x720 stills
    python -m device.bench.vision --dir /srv/frames  # your own stills
    python -m device.bench.vision --paced 20         # also stream 20 s at the configured fps

CPU is the whole process's CPU time (every thread, executors included), so it counts the
decode of the still, the resize and the encode wherever they ran. At `fps` frames a second one
snapshot's CPU time times `fps` is the share of one core the camera costs while a worker talks.
These are measurements, not tests: they print figures and return them as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zxingcpp
from PIL import Image

from device.vision.barcodes import decode_barcodes_async
from device.vision.camera import DirectorySource
from device.vision.jpeg import encode_jpeg_async
from device.vision.snapshots import SnapshotStreamer


def synthetic_stills(folder: Path, count: int = 3) -> Path:
    """Camera-like stills: textured clutter with a Code 128 label, saved as JPEG like a sensor
    pipeline would hand them over."""
    rng = np.random.default_rng(1)
    code = zxingcpp.create_barcode("A-12-03-B", zxingcpp.BarcodeFormat.Code128)
    symbol = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=4)))
    for i in range(count):
        clutter = rng.normal(110, 35, (720, 1280, 3)).clip(0, 255).astype(np.uint8)
        still = Image.fromarray(clutter, "RGB")
        still.paste(symbol.convert("RGB"), (300 + 40 * i, 250))
        still.save(folder / f"still{i}.jpg", quality=92)
    return folder


def _summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def snapshot_costs(
    folder: Path, frames: int, max_px: int, quality: int
) -> dict[str, dict[str, float]]:
    camera = DirectorySource(folder)
    cpu, wall, sizes = [], [], []
    await encode_jpeg_async(await camera.capture(), max_px, quality)  # warm caches and pools
    for _ in range(frames):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        jpeg = await encode_jpeg_async(await camera.capture(), max_px, quality)
        cpu.append(time.process_time() - cpu0)
        wall.append(time.perf_counter() - wall0)
        sizes.append(len(jpeg))
    return {
        "snapshot_cpu": _summary(cpu),
        "snapshot_wall": _summary(wall),
        "jpeg_kib": {"median": round(statistics.median(sizes) / 1024, 1)},
    }


async def scan_costs(folder: Path, scans: int) -> dict[str, dict[str, float]]:
    camera = DirectorySource(folder)
    cpu, wall, found = [], [], 0
    for _ in range(scans):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        codes = await decode_barcodes_async(await camera.capture())
        cpu.append(time.process_time() - cpu0)
        wall.append(time.perf_counter() - wall0)
        found += bool(codes)
    return {"scan_cpu": _summary(cpu), "scan_wall": _summary(wall), "scans": {"found": found}}


async def paced_stream(folder: Path, seconds: float, fps: float) -> dict[str, float]:
    """Stream for real at `fps` and measure the whole process's CPU share meanwhile."""
    sent: list[int] = []

    async def send(jpeg: bytes) -> None:
        sent.append(len(jpeg))

    streamer = SnapshotStreamer(DirectorySource(folder), fps=fps)
    streamer.session_opened(send)
    streamer.set_talking(True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(streamer.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "seconds": round(wall, 2),
        "frames": len(sent),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m device.bench.vision", description=__doc__)
    parser.add_argument("--dir", type=Path, help="folder of stills (default: synthetic 1280x720)")
    parser.add_argument("--frames", type=int, default=30, help="snapshots to time (default 30)")
    parser.add_argument("--scans", type=int, default=10, help="barcode scans to time (default 10)")
    parser.add_argument("--fps", type=float, default=1.0, help="snapshot rate (default 1)")
    parser.add_argument("--max-px", type=int, default=1024)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also stream in real time for this long and measure CPU share",
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.scans < 0:
        parser.error("--frames must be at least 1 and --scans 0 or more")

    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        folder = args.dir or synthetic_stills(Path(tmp))
        figures: dict[str, Any] = asyncio.run(
            snapshot_costs(folder, args.frames, args.max_px, args.quality)
        )
        per_snapshot_s = figures["snapshot_cpu"]["median_ms"] / 1000
        figures["at_fps"] = {
            "fps": args.fps,
            "cpu_percent_of_one_core": round(100 * per_snapshot_s * args.fps, 2),
        }
        if args.scans:
            figures.update(asyncio.run(scan_costs(folder, args.scans)))
        if args.paced > 0:
            figures["paced"] = asyncio.run(paced_stream(folder, args.paced, args.fps))

    print(
        f"snapshots from {args.dir or 'synthetic 1280x720 stills'}, "
        f"max {args.max_px} px, JPEG quality {args.quality}"
    )
    for name, values in figures.items():
        print(f"  {name:<12} " + "  ".join(f"{k}={v}" for k, v in values.items()))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
