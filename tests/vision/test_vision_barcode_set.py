"""The generated barcode set: the tool reads every frame plain zxing-cpp reads, reads linear
codes at every rotation, and never returns a wrong code.

The set is Code 128 bin labels, GTIN-13, QR and GS1 Data Matrix at 1.5-4 px a module, turned
0-180° in 15° steps, blurred, dim or JPEG quality 20 (device/bench/barcode_set.py). The tests
read a sample spread over every axis; `python -m device.bench.barcode_set` reads all of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.bench.barcode_set import (
    ANGLES,
    EXPECTED,
    MODULES,
    SPOILS,
    Case,
    Outcome,
    grid,
    main,
    report,
    run,
    sample,
)
from device.bench.cli import main as bench_main
from device.bench.suite import PHASES
from device.vision.barcodes import LINEAR, CodeFormat

# Every 11th frame of 780: 71 frames, and 11 shares no factor with the grid's axes (4 formats,
# 5 module sizes, 13 angles, 3 spoils), so each value of each axis is in the sample.
EVERY = 11


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    results = run(sample(grid(), EVERY))
    print("\n" + report(results))
    return results


def test_the_sample_covers_every_axis(outcomes: list[Outcome]) -> None:
    cases = [o.case for o in outcomes]
    assert {c.fmt for c in cases} == set(CodeFormat)
    assert {c.module for c in cases} == set(MODULES)
    assert {c.angle for c in cases} == set(ANGLES)
    assert {c.spoil for c in cases} == set(SPOILS)


def test_the_tool_reads_every_frame_plain_zxing_reads(outcomes: list[Outcome]) -> None:
    missed = [o.case.name for o in outcomes if o.plain_ok and not o.tool_ok]
    assert missed == []
    # Not vacuous: plain zxing does read part of the set, and the tool reads more.
    assert sum(o.plain_ok for o in outcomes) >= 10
    assert sum(o.tool_ok for o in outcomes) > sum(o.plain_ok for o in outcomes)


def test_the_tool_never_returns_a_wrong_code(outcomes: list[Outcome]) -> None:
    wrong = {o.case.name: o.tool_wrong for o in outcomes if o.tool_wrong}
    assert wrong == {}


@pytest.mark.parametrize("fmt", sorted(LINEAR))
def test_linear_codes_are_read_at_every_rotation(fmt: CodeFormat) -> None:
    # 3 px a module (a bin label a hand's width away at 720p), each angle with one spoil.
    cases = [Case(fmt, 3.0, angle, SPOILS[i % len(SPOILS)]) for i, angle in enumerate(ANGLES)]
    results = run(cases)
    assert {o.case.angle: o.tool for o in results if not o.tool_ok} == {}
    assert all(o.tool == [EXPECTED[fmt]] for o in results)


def test_the_bench_prints_decode_times_at_720p_and_8mp(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--every", "0", "--timing", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "decode 720p 1280x720",
        "decode 8mp 3280x2464",
    ]
    assert all("median" in line and "p95" in line for line in lines)


def test_warehouse_voice_bench_has_a_barcode_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip = [arg for other in PHASES if other != "barcode" for arg in ("--skip", other)]
    code = bench_main(["--quick", "--json", "--workdir", str(tmp_path), *skip])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["failed"] == {}
    assert list(data["figures"]) == ["barcode_decode_720p_ms", "barcode_decode_8mp_ms"]
    for figure in data["figures"].values():
        assert figure["n"] == 5 and 0 < figure["median"] <= figure["tail"]
