"""Idle memory: the real daemon, started and stopped by the bench."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.bench.footprint import daemon_idle_rss, rss_mb


def test_rss_reads_this_process() -> None:
    assert rss_mb(os.getpid()) > 10


@pytest.mark.slow
def test_the_idle_daemon_is_measured_and_stopped(tmp_path: Path) -> None:
    result = daemon_idle_rss(tmp_path, settle_s=0.5, samples=2)
    assert len(result["samples_mb"]) == 2
    assert result["rss_mb"] == max(result["samples_mb"]) > 30
    with pytest.raises(ProcessLookupError):
        os.kill(result["pid"], 0)  # the daemon the bench started is gone
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
