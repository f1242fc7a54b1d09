"""Percentiles, targets and the two ways figures are shown."""

from __future__ import annotations

import json
import math

from device.bench.report import Figure, as_json, percentile, table


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.95) == 7.0
    assert math.isnan(percentile([], 0.95))


def test_targets_judge_median_and_p95() -> None:
    fast = Figure.of(
        "rt", "round trip", "ms", [10.0] * 19 + [30.0], target_median=15, target_p95=25
    )
    slow_tail = Figure.of(
        "rt", "round trip", "ms", [10.0] * 18 + [30.0] * 2, target_median=15, target_p95=25
    )
    assert (fast.median, fast.tail, fast.meets) == (10.0, 10.0, True)
    assert (slow_tail.tail, slow_tail.meets) == (30.0, False)
    assert Figure.of("x", "x", "ms", []).meets is None
    assert Figure.of("x", "x", "ms", [1.0, 2.0]).meets is None  # no target: nothing to judge


def test_the_table_shows_figures_verdicts_notes_and_failures() -> None:
    figures = [
        Figure.of("rt", "device-added round trip", "ms", [12.0, 14.0], target_median=15),
        Figure.of("ratio", "wake CPU", "x", [1.234], target_median=1.2, note="20 s of audio"),
    ]
    text = table(figures, {"memory": "RuntimeError: no /proc"})
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["figure", "unit", "median", "tail"]
    row = next(line for line in lines if line.startswith("device-added round trip"))
    assert row.split()[-1] == "ok" and "13.0" in row and "p95 14.0" in row
    row = next(line for line in lines if line.startswith("wake CPU"))
    assert row.split()[-1] == "MISSED" and "1.23" in row and "p95" not in row
    assert "  wake CPU: 20 s of audio" in lines
    assert "  memory: RuntimeError: no /proc" in lines


def test_json_has_every_figure_and_no_nan() -> None:
    figures = [Figure.of("rt", "rt", "ms", [1.0, 3.0]), Figure.of("none", "none", "ms", [])]
    data = json.loads(as_json(figures, {"audio": "no pulseaudio"}, quick=True))
    assert data["quick"] is True
    assert data["figures"]["rt"]["median"] == 2.0
    assert data["figures"]["none"]["median"] is None
    assert data["failed"] == {"audio": "no pulseaudio"}
    assert data["machine"]["cpus"] >= 1
