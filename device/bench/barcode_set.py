"""A generated barcode test set, and the side-by-side read rates of our decoder and plain zxing.

Labels (Code 128 bin labels, GTIN-13, QR, GS1 Data Matrix) are drawn by zxing-cpp's own writer
at a module size of 1.5-4 px, rotated 0-180° in 15° steps, placed on textured clutter in a
camera-sized frame, and spoilt one way each: blur, low light, or JPEG quality 20. The tests
read a sample of the grid; `python -m device.bench.barcode_set` reads all of it and prints the
report.

    python -m device.bench.barcode_set              # the full grid at 1280x720
    python -m device.bench.barcode_set --every 7    # every 7th frame
    python -m device.bench.barcode_set --every 0 --timing 20   # decode times only
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zxingcpp
from PIL import Image, ImageFilter

from device.vision.barcodes import CodeFormat, decode_barcodes, escape

F = zxingcpp.BarcodeFormat

# (our format, zxing's, payload, writer options). The GS1 payload has a variable-length AI
# (10, batch) before a fixed one, so the symbol carries a GS separator.
LABELS: dict[CodeFormat, tuple[F, str, dict[str, bool]]] = {
    CodeFormat.CODE128: (F.Code128, "A-12-03-B", {}),
    CodeFormat.EAN13: (F.EAN13, "4006381333931", {}),
    CodeFormat.QR_CODE: (F.QRCode, "SKU-104417\nLOT\t7", {}),
    CodeFormat.DATA_MATRIX: (F.DataMatrix, "(01)09506000134352(10)ABC123(17)261231", {"gs1": True}),
}
# What the tool must return for each: the payload as it reads back, control characters escaped.
EXPECTED: dict[CodeFormat, str] = {
    CodeFormat.CODE128: "A-12-03-B",
    CodeFormat.EAN13: "4006381333931",
    CodeFormat.QR_CODE: "SKU-104417\\nLOT\\t7",
    CodeFormat.DATA_MATRIX: "010950600013435210ABC123\\x1d17261231",
}
MODULES = (1.5, 2.0, 2.5, 3.0, 4.0)
ANGLES = tuple(range(0, 181, 15))
SPOILS = ("blur", "low_light", "jpeg20")
SIZES = {"720p": (1280, 720), "8mp": (3280, 2464)}


@dataclass(frozen=True)
class Case:
    fmt: CodeFormat
    module: float
    angle: int
    spoil: str
    size: tuple[int, int] = SIZES["720p"]

    @property
    def name(self) -> str:
        return f"{self.fmt.value}-m{self.module}-r{self.angle}-{self.spoil}"

    @property
    def seed(self) -> int:
        return (
            MODULES.index(self.module) * 1000 + self.angle * 10 + SPOILS.index(self.spoil)
        ) + 7919 * list(CodeFormat).index(self.fmt)


def grid(size: tuple[int, int] = SIZES["720p"]) -> list[Case]:
    return [
        Case(fmt, module, angle, spoil, size)
        for fmt, module, angle, spoil in itertools.product(LABELS, MODULES, ANGLES, SPOILS)
    ]


def sample(cases: Sequence[Case], every: int) -> list[Case]:
    """Every `every`-th case: with a step coprime to the grid's axes, the sample still covers
    each format, module size, angle and spoil."""
    return list(cases[::every])


def symbol(fmt: CodeFormat, module: float) -> Image.Image:
    """The printed symbol, black on white, `module` pixels a module, with its quiet zone."""
    zx, text, options = LABELS[fmt]
    code = zxingcpp.create_barcode(text, zx, **options)
    plain = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=1)))
    if fmt in (CodeFormat.CODE128, CodeFormat.EAN13):
        # A linear symbol's bars are one module tall as written; real labels are tall.
        plain = plain.resize((plain.width, max(plain.height, plain.width // 4)))
    # Drawn big and area-averaged down, the way a lens and sensor see a printed label.
    big = plain.resize((plain.width * 8, plain.height * 8), Image.Resampling.NEAREST)
    size = (round(plain.width * module), round(plain.height * module))
    return big.resize(size, Image.Resampling.BOX).convert("L")


def render(case: Case) -> Image.Image:
    """The frame the camera would hand over: RGB, with the label near the middle."""
    width, height = case.size
    rng = np.random.default_rng(case.seed)
    grey = symbol(case.fmt, case.module)
    pad = max(8, round(4 * case.module))
    card = Image.new("L", (grey.width + 2 * pad, grey.height + 2 * pad), 232)
    card.paste(grey.point(lambda v: 20 + v * 212 // 255), (pad, pad))
    turned = card.rotate(case.angle, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=0)
    mask = Image.new("L", card.size, 255).rotate(case.angle, expand=True)
    clutter = rng.normal(110, 30, (height, width)).clip(0, 255).astype(np.uint8)
    canvas = Image.fromarray(clutter, "L").filter(ImageFilter.GaussianBlur(2))
    x = int(rng.integers(0, max(1, width - turned.width)))
    y = int(rng.integers(0, max(1, height - turned.height)))
    canvas.paste(turned, (x, y), mask)
    pixels = np.asarray(canvas).astype(np.float64)
    if case.spoil == "blur":
        pixels = np.asarray(
            canvas.filter(ImageFilter.GaussianBlur(0.35 * case.module + 0.2))
        ).astype(np.float64)
    elif case.spoil == "low_light":
        # A dim aisle: a quarter of the light, and the sensor noise that comes with gain.
        pixels = pixels * 0.25 + rng.normal(0, 4, pixels.shape)
    pixels = pixels + rng.normal(0, 3, pixels.shape)
    still = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if case.spoil == "jpeg20":
        buffer = io.BytesIO()
        still.save(buffer, format="JPEG", quality=20)
        buffer.seek(0)
        with Image.open(buffer) as loaded:
            still = loaded.convert("RGB")
    return still


def plain_zxing(image: Image.Image, fmt: CodeFormat) -> list[str]:
    """What zxing-cpp reads with its default options, its payload escaped as our tool does."""
    results = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats([LABELS[fmt][0]]), text_mode=zxingcpp.TextMode.Plain
    )
    return [escape(r.text) for r in results]


@dataclass
class Outcome:
    case: Case
    tool: list[str]
    plain: list[str]
    seconds: float

    @property
    def tool_ok(self) -> bool:
        return self.tool == [EXPECTED[self.case.fmt]]

    @property
    def plain_ok(self) -> bool:
        return EXPECTED[self.case.fmt] in self.plain

    @property
    def tool_wrong(self) -> list[str]:
        return [t for t in self.tool if t != EXPECTED[self.case.fmt]]


def run(cases: Sequence[Case]) -> list[Outcome]:
    outcomes = []
    for case in cases:
        still = render(case)
        started = time.perf_counter()
        codes = decode_barcodes(still)
        seconds = time.perf_counter() - started
        outcomes.append(
            Outcome(case, [c.text for c in codes], plain_zxing(still, case.fmt), seconds)
        )
    return outcomes


def report(outcomes: Sequence[Outcome]) -> str:
    lines = [f"{'format':<12} {'frames':>6} {'tool':>7} {'zxing':>7} {'wrong':>6}"]
    for fmt in CodeFormat:
        mine = [o for o in outcomes if o.case.fmt is fmt]
        if not mine:
            continue
        tool = sum(o.tool_ok for o in mine) / len(mine)
        plain = sum(o.plain_ok for o in mine) / len(mine)
        wrong = sum(bool(o.tool_wrong) for o in mine)
        lines.append(f"{fmt.value:<12} {len(mine):>6} {tool:>7.1%} {plain:>7.1%} {wrong:>6}")
    return "\n".join(lines)


def decode_times(size: tuple[int, int], frames: int) -> dict[str, float]:
    """Seconds the tool's decoder takes per frame at `size`, over a spread of the grid."""
    cases = sample(grid(size), max(1, len(grid(size)) // frames))[:frames]
    wall, cpu = [], []
    for case in cases:
        still = render(case)
        started, cpu_started = time.perf_counter(), time.thread_time()
        decode_barcodes(still)
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
    return {
        "frames": len(wall),
        "median_ms": _ms(statistics.median(wall)),
        "p95_ms": _ms(_p95(wall)),
        # CPU time is what a loaded machine does not inflate.
        "cpu_median_ms": _ms(statistics.median(cpu)),
        "cpu_p95_ms": _ms(_p95(cpu)),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> list[Outcome]:
    parser = argparse.ArgumentParser(prog="python -m device.bench.barcode_set", description=__doc__)
    parser.add_argument("--every", type=int, default=1, help="read every Nth frame (default 1)")
    parser.add_argument(
        "--timing", type=int, default=20, metavar="N", help="frames per size to time (default 20)"
    )
    args = parser.parse_args(argv)
    if args.timing > 0:
        for name, size in SIZES.items():
            figures = decode_times(size, args.timing)
            print(
                f"decode {name} {size[0]}x{size[1]}: median {figures['median_ms']} ms, "
                f"p95 {figures['p95_ms']} ms per frame; CPU median {figures['cpu_median_ms']} ms, "
                f"p95 {figures['cpu_p95_ms']} ms ({figures['frames']} frames)"
            )
    if args.every < 1:
        return []
    outcomes = run(sample(grid(), args.every))
    print(report(outcomes))
    missed = [o.case.name for o in outcomes if o.plain_ok and not o.tool_ok]
    wrong = [f"{o.case.name}: {o.tool_wrong}" for o in outcomes if o.tool_wrong]
    for name in missed:
        print(f"  zxing read, tool did not: {name}")
    for line in wrong:
        print(f"  WRONG: {line}")
    return outcomes


if __name__ == "__main__":
    main(sys.argv[1:])
