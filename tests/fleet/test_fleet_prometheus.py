"""The generated files in a real Prometheus: it finds a device through the file_sd targets,
labels it from the inventory, and evaluates the recording rules over its scrape."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.fleet.cli import write_fleet
from device.fleet.inventory import devices
from device.service.metrics_export import Families, MetricsEndpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def device_endpoint() -> Iterator[tuple[Families, int]]:
    families = Families("wv-chl-01")
    families.write_queue_depth.set(2)
    families.wake_enabled.set(1)
    endpoint = MetricsEndpoint(families.registry, "127.0.0.1:0")
    endpoint.start()
    yield families, endpoint.port
    endpoint.stop()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_the_device_with_its_inventory_labels_and_records_the_rules(
    tmp_path: Path, device_endpoint: tuple[Families, int]
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: apt-get install prometheus (Makefile APT_PACKAGES)")
    _, port = device_endpoint
    listing = {
        "_meta": {"hostvars": {"wv-chl-01": {
            "ansible_host": "127.0.0.1", "warehouse_voice_zone": "CHL",
            "warehouse_voice_wake_word": "hey_jarvis",
            "warehouse_voice_config_extra": {"metrics": {"address": f"0.0.0.0:{port}"}},
        }}},
        "warehouse_voice": {"hosts": ["wv-chl-01"]},
    }  # fmt: skip
    out = tmp_path / "fleet"
    write_fleet(out, devices(listing), scrape_interval_s=1)
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={out / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        recorded: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while not recorded:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            with contextlib.suppress(OSError):  # not listening yet
                recorded = query(base, "zone:warehouse_voice_write_queue_depth:sum")
            time.sleep(0.2)
        assert [(r["metric"]["zone"], r["value"][1]) for r in recorded] == [("CHL", "2")]
        (up,) = query(base, 'up{job="warehouse-voice"}')
        assert up["value"][1] == "1"
        assert {k: up["metric"][k] for k in ("device", "zone", "wake_word")} == {
            "device": "wv-chl-01", "zone": "CHL", "wake_word": "hey_jarvis",
        }  # fmt: skip
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as answer:
            groups = json.load(answer)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 13
        assert {r["health"] for r in rules} <= {"ok", "unknown"}, rules
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
