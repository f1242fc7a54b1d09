"""The fleet's Grafana dashboard: latency, task completion, recovery, sessions, the offline write
queue, and each device's health, per zone (a `zone` variable filters every panel).

Panels read the recording rules of `device.fleet.prometheus` where one exists, so the
dashboard and the alerts agree on what "p95" or "completion" means.
"""

from __future__ import annotations

from typing import Any

from device.fleet import prometheus as prom

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
Z = '{zone=~"$zone"}'
P = prom.P


class _Layout:
    """Panels left to right in rows 24 units wide; a `row` starts a new band."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0

    def row(self, title: str) -> None:
        if self.x:
            self.y, self.x = self.y + 8, 0
        self.panels.append(
            {"type": "row", "title": title, "collapsed": False, "panels": [],
             "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "id": len(self.panels) + 1}
        )  # fmt: skip
        self.y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        w: int = 8,
        description: str = "",
    ) -> None:
        if self.x + w > 24:
            self.y, self.x = self.y + 8, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"x": self.x, "y": self.y, "w": w, "h": 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for n, (expr, legend) in enumerate(targets)
                ],
            }
        )
        self.x += w


def _panels() -> list[dict[str, Any]]:
    g = _Layout()
    g.row("Device health")
    g.panel("Devices up", [(f"{prom.ZONE_UP}{Z}", "{{zone}}")], kind="stat", w=6)
    g.panel(
        "Device state",
        [(f'{P}_state{{zone=~"$zone", {P}_state!="idle"}} == 1', "{{device}} {{" + P + "_state}}")],
        kind="table",
        w=6,
        description="Devices not idle right now, and what they are doing.",
    )
    g.panel("Scrape up per device", [(f'up{{job="{prom.JOB}", zone=~"$zone"}}', "{{device}}")], w=6)
    g.panel(
        "Wake word off",
        [(f'{P}_wake_enabled{{zone=~"$zone", wake_word!=""}} == 0', "{{device}}")],
        kind="table",
        w=6,
    )
    g.row("Latency")
    g.panel("Turn latency p95 by zone", [(f"{prom.ZONE_P95}{Z}", "{{zone}}")], unit="s")
    g.panel("Turn latency p95 by device", [(f"{prom.DEVICE_P95}{Z}", "{{device}}")], unit="s")
    g.panel(
        "Device-added latency p95",
        [(f"histogram_quantile(0.95, sum by (zone, leg, le) "
          f"(rate({P}_device_latency_seconds_bucket{Z}[$__rate_interval])))", "{{zone}} {{leg}}")],
        unit="s",
    )  # fmt: skip
    g.panel(
        "Tool latency p95",
        [(f"histogram_quantile(0.95, sum by (tool, le) "
          f"(rate({P}_tool_latency_seconds_bucket{Z}[$__rate_interval])))", "{{tool}}")],
        unit="s",
    )  # fmt: skip
    g.panel(
        "Wake to listening p95",
        [(f"histogram_quantile(0.95, sum by (zone, le) "
          f"(rate({P}_wake_to_listening_seconds_bucket{Z}[$__rate_interval])))", "{{zone}}")],
        unit="s",
    )  # fmt: skip
    g.row("Tasks and recovery")
    g.panel("Task completion (1 h)", [(f"{prom.ZONE_COMPLETION}{Z}", "{{zone}}")],
            unit="percentunit")  # fmt: skip
    g.panel(
        "Tasks by outcome",
        [(f"sum by (type, outcome) (increase({P}_tasks_total{Z}[$__rate_interval]))",
          "{{type}} {{outcome}}")],
    )  # fmt: skip
    g.panel(
        "Re-asks per task (1 h)",
        [(f"{prom.ZONE_REASKS}{Z}", "{{zone}}")],
        description="How often the agent had to ask the worker again: the recovery rate.",
    )
    g.panel(
        "Dropped sessions resumed (1 h)",
        [(f"{prom.ZONE_RESUMED}{Z}", "{{zone}}")],
        unit="percentunit",
    )
    g.row("Sessions")
    g.panel("Sessions per minute", [(f"60 * {prom.ZONE_SESSIONS}{Z}", "{{zone}}")])
    g.panel(
        "Session drops per minute",
        [(f"60 * sum by (zone) (rate({P}_session_drops_total{Z}[$__rate_interval]))", "{{zone}}")],
    )
    g.panel(
        "Interruptions per minute",
        [(f"60 * sum by (source) (rate({P}_interruptions_total{Z}[$__rate_interval]))",
          "{{source}}")],
    )  # fmt: skip
    g.row("Offline write queue")
    g.panel("Writes waiting", [(f"{prom.ZONE_QUEUE}{Z}", "{{zone}}")])
    g.panel(
        "Oldest waiting write",
        [(f"max by (device) ({P}_write_queue_oldest_age_seconds{Z})", "{{device}}")],
        unit="s",
    )
    g.panel(
        "Delivered and refused on sync",
        [
            (f"sum by (zone) (increase({P}_write_queue_delivered_total{Z}[$__rate_interval]))",
             "{{zone}} delivered"),
            (f"sum by (zone) (increase({P}_write_queue_rejected_total{Z}[$__rate_interval]))",
             "{{zone}} refused (hand-off)"),
        ],
    )  # fmt: skip
    g.panel(
        "Errors by part",
        [(f"sum by (where) (rate({P}_errors_total{Z}[$__rate_interval]))", "{{where}}")],
        w=24,
    )
    return g.panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": "warehouse-voice-fleet",
        "title": "warehouse-voice fleet",
        "tags": ["warehouse-voice"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                },
                {
                    "name": "zone",
                    "type": "query",
                    "label": "Zone",
                    "datasource": DATASOURCE,
                    "query": {"query": f"label_values({prom.UP}, zone)", "refId": "zones"},
                    "definition": f"label_values({prom.UP}, zone)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": _panels(),
    }
