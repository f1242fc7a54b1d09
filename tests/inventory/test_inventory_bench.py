"""The load benchmark runs on both databases and reports its figures (not tested: reported)."""

from __future__ import annotations

import pytest

from device.bench.inventory import BACKENDS, run_inventory_bench


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_benchmark_reports_throughput_and_latency(backend: str) -> None:
    figures = run_inventory_bench(clients=2, seconds=1.0, backend=backend)
    print(backend, figures)
    assert figures["requests"] > 0
    assert figures["errors"] == 0
    assert figures["requests_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
