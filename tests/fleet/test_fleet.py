"""The fleet view generated from the Ansible inventory: promtool accepts the config and the
rules pass their unit tests, and every dashboard query names only metrics that exist."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from device.fleet import prometheus as prom
from device.fleet.cli import DASHBOARD_FILE
from device.fleet.inventory import FleetError, devices
from device.service.metrics_export import Families

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = REPO / "provisioning" / "inventory.example.yml"
RULES_TEST = Path(__file__).with_name("rules_test.yml")
# Grafana fills these in before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$zone": ".*"}
# Series Prometheus makes itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Sample suffixes prometheus-client writes per metric type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "summary": ("", "_count", "_sum", "_created"),
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: apt-get install prometheus (in the Makefile's APT_PACKAGES)"
        )
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "fleet", "generate", "-i", str(EXAMPLE_INVENTORY),
         "-o", str(out)],
        capture_output=True, text=True, timeout=180, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 devices in zones DRY, FRZ" in done.stdout
    assert "warning" not in done.stderr  # the example serves metrics to the network
    return out


def test_promtool_accepts_the_generated_config_and_the_rules_pass_their_tests(
    generated: Path,
) -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "config", str(generated / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 13 rules found" in check.stdout + check.stderr
    shutil.copy(RULES_TEST, generated / RULES_TEST.name)
    test = subprocess.run(
        [tool, "test", "rules", RULES_TEST.name],
        capture_output=True, text=True, timeout=60, cwd=generated, check=False,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr


def test_scrape_targets_carry_each_devices_zone_and_wake_word(generated: Path) -> None:
    targets = json.loads((generated / prom.TARGETS_FILE).read_text())
    assert targets == [
        {"targets": ["10.20.1.11:9464"],
         "labels": {"device": "wv-dry-01", "zone": "DRY", "wake_word": "hey_jarvis"}},
        {"targets": ["10.20.1.12:9464"],
         "labels": {"device": "wv-dry-02", "zone": "DRY", "wake_word": "hey_jarvis"}},
        {"targets": ["10.20.2.11:9464"],
         "labels": {"device": "wv-frz-01", "zone": "FRZ", "wake_word": ""}},
    ]  # fmt: skip


def test_a_host_on_loopback_or_a_missing_group_is_named() -> None:
    listing = {
        "_meta": {"hostvars": {"pi-1": {"warehouse_voice_config_extra": {"metrics": {
            "address": "127.0.0.1:9500"}}}, "pi-2": {"ansible_host": "fe80::1"}}},
        "warehouse_voice": {"hosts": ["pi-1"], "children": ["cold"]},
        "cold": {"hosts": ["pi-2"]},
    }  # fmt: skip
    found = devices(listing)
    assert [(d.name, d.target, d.loopback, d.zone) for d in found] == [
        ("pi-1", "pi-1:9500", True, "none"),
        ("pi-2", "[fe80::1]:9464", True, "none"),
    ]
    with pytest.raises(FleetError, match="no hosts in group 'docks'"):
        devices({"_meta": {"hostvars": {}}, "docks": {}}, "docks")


# ---- the dashboard's queries against what the daemon exports -------------------------------


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a scrape of the daemon can hold, labelled families included."""
    names: set[str] = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, from its syntax tree."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            found.update(m.value for m in node.matchers.matchers if m.name == "__name__")
            return
        for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)
        for arg in getattr(node, "args", None) or ():
            walk(arg)

    walk(promql_parser.parse(expr))
    return found


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(SELECTOR, label): the selector is PromQL.
            inner = variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            yield f"variable {variable['name']}", inner


def test_the_name_finder_sees_through_functions_aggregations_and_subqueries() -> None:
    assert metric_names(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{zone=~"$zone"}[$__rate_interval])))'
        ' / on (zone) group_left b:c:d - max_over_time(e[1h:5m]) + -(f) and {__name__="g"}'
    ) == {"a_bucket", "b:c:d", "e", "f", "g"}


def test_every_dashboard_query_uses_only_metrics_the_daemon_exports(generated: Path) -> None:
    dashboard = json.loads((generated / DASHBOARD_FILE).read_text())
    rules = prom.rules()
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    known = exported_names(Families("fleet-test").registry) | SYNTHETIC | recorded
    assert {"warehouse_voice_write_queue_depth", "warehouse_voice_tasks_total",
            "warehouse_voice_turn_latency_seconds_bucket"} <= known  # fmt: skip
    unknown = {
        (title, name)
        for title, expr in queries(dashboard)
        for name in metric_names(expr)
        if name not in known
    }
    assert unknown == set()
    # The rules read only exported metrics too (recording rules may build on each other).
    rule_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert {n for e in rule_exprs for n in metric_names(e)} - known == set()


def test_the_dashboard_covers_what_site_it_watches(generated: Path) -> None:
    dashboard = json.loads((generated / DASHBOARD_FILE).read_text())
    titles = " | ".join(title.lower() for title, _ in queries(dashboard))
    for topic in ("latency", "task completion", "re-asks", "sessions", "devices up",
                  "device state", "writes waiting"):  # fmt: skip
        assert topic in titles, topic
    every = [expr for title, expr in queries(dashboard) if not title.startswith("variable")]
    assert all('zone=~"$zone"' in expr for expr in every)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_an_inventory_that_cannot_be_read_is_named_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "inventory.yml"
    bad.write_text("warehouse_voice: [this is: not an inventory\n")
    done = subprocess.run(
        [sys.executable, "-m", "device.cli", "fleet", "generate", "-i", str(bad),
         "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=180, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 65
    assert done.stderr.startswith("fleet: ") and str(bad) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
