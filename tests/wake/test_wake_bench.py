"""Smoke test: the benchmarks run end to end at a tiny size and report what they promise."""

from __future__ import annotations

import pytest

from device.bench.wake import accuracy, cpu_ratio
from device.wake.models import ModelSet


@pytest.mark.slow
def test_benchmarks_run_at_tiny_size(
    model_set: ModelSet, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = accuracy(model_set, phrases=3, negative_s=10.0)
    assert acc["phrases"] == 3
    assert acc["false_reject_rate"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert acc["negative_hours"] * 3600 >= 10.0
    assert acc["false_accepts_per_hour"] == acc["false_accepts"] / acc["negative_hours"]
    cpu = cpu_ratio(model_set, seconds=4.0, rounds=1)
    assert cpu["audio_seconds"] == pytest.approx(4.0, abs=0.08)
    assert cpu["bare_cpu_s"] > 0 and cpu["detector_cpu_s"] > 0
    assert cpu["ratio"] == cpu["detector_cpu_s"] / cpu["bare_cpu_s"]
