"""The load benchmark runs and reports its figures (the figures themselves are not tested)."""

from __future__ import annotations

import pytest

from device.bench.inventory import run_inventory_bench


@pytest.mark.slow
def test_the_benchmark_reports_throughput_and_latency() -> None:
    figures = run_inventory_bench(clients=2, seconds=1.0)
    print(figures)
    assert figures["requests"] > 0
    assert figures["errors"] == 0
    assert figures["requests_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
