"""Prometheus for the fleet: the scrape config, its file_sd targets, recording and alerting rules.

Every series carries the target labels `device`, `zone` and `wake_word` from the inventory, so
rules and the dashboard can group by zone. Names of recording rules follow Prometheus'
`level:metric:operations` convention.
"""

from __future__ import annotations

from typing import Any

from device.fleet.inventory import FleetDevice

JOB = "warehouse-voice"
TARGETS_FILE = "targets/warehouse-voice.json"
RULES_FILE = "warehouse-voice.rules.yml"
DEFAULT_LATENCY_TARGET_S = 1.5
P = "warehouse_voice"

# Recording rules: the dashboard and the alerts read these instead of repeating the sums.
DEVICE_P95 = "device:warehouse_voice_turn_latency_seconds:p95_5m"
ZONE_P95 = "zone:warehouse_voice_turn_latency_seconds:p95_5m"
ZONE_COMPLETION = "zone:warehouse_voice_tasks:completion_ratio_1h"
ZONE_REASKS = "zone:warehouse_voice_task_reasks:mean_1h"
ZONE_RESUMED = "zone:warehouse_voice_session_drops:resumed_ratio_1h"
ZONE_SESSIONS = "zone:warehouse_voice_sessions:rate5m"
ZONE_UP = "zone:warehouse_voice_devices_up:sum"
ZONE_QUEUE = "zone:warehouse_voice_write_queue_depth:sum"
UP = f'up{{job="{JOB}"}}'


def file_sd(devices: list[FleetDevice]) -> list[dict[str, Any]]:
    """One target group per device: Prometheus' file_sd format."""
    return [
        {
            "targets": [d.target],
            "labels": {"device": d.name, "zone": d.zone, "wake_word": d.wake_word},
        }
        for d in devices
    ]


def scrape_config(*, scrape_interval_s: int = 15) -> dict[str, Any]:
    """A whole prometheus.yml; paths are relative to the file, as Prometheus reads them."""
    return {
        "global": {
            "scrape_interval": f"{scrape_interval_s}s",
            "evaluation_interval": f"{scrape_interval_s}s",
        },
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [TARGETS_FILE], "refresh_interval": "1m"}],
            }
        ],
    }


def _ratio(numerator: str, denominator: str, by: str = "zone") -> str:
    return f"sum by ({by}) ({numerator})\n/\nsum by ({by}) ({denominator})"


def recording_rules() -> list[dict[str, str]]:
    bucket = f"{P}_turn_latency_seconds_bucket"
    return [
        {
            "record": DEVICE_P95,
            "expr": f"histogram_quantile(0.95,\n  sum by (device, zone, le) (rate({bucket}[5m])))",
        },
        {
            "record": ZONE_P95,
            "expr": f"histogram_quantile(0.95, sum by (zone, le) (rate({bucket}[5m])))",
        },
        {
            "record": ZONE_COMPLETION,
            "expr": _ratio(
                f'increase({P}_tasks_total{{outcome="completed"}}[1h])',
                f"increase({P}_tasks_total[1h])",
            ),
        },
        {
            "record": ZONE_REASKS,
            "expr": _ratio(
                f"increase({P}_task_reasks_sum[1h])", f"increase({P}_task_reasks_count[1h])"
            ),
        },
        {
            "record": ZONE_RESUMED,
            "expr": _ratio(
                f"increase({P}_session_resumes_total[1h])",
                f"increase({P}_session_drops_total[1h])",
            ),
        },
        {"record": ZONE_SESSIONS, "expr": f"sum by (zone) (rate({P}_sessions_total[5m]))"},
        {"record": ZONE_UP, "expr": f"sum by (zone) ({UP})"},
        {"record": ZONE_QUEUE, "expr": f"sum by (zone) ({P}_write_queue_depth)"},
    ]


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str
           ) -> dict[str, Any]:  # fmt: skip
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def alerting_rules(latency_target_s: float = DEFAULT_LATENCY_TARGET_S) -> list[dict[str, Any]]:
    target = f"{latency_target_s:g}"
    return [
        _alert(
            "WarehouseVoiceDeviceDown",
            f"{UP} == 0",
            "2m",
            "page",
            "Voice device {{ $labels.device }} ({{ $labels.zone }}) is down",
            "Prometheus has not scraped {{ $labels.instance }} for 2 minutes: the Pi is off, "
            "off the network, or the daemon is not running (journalctl -u warehouse-voice).",
        ),
        _alert(
            "WarehouseVoiceWakeWordOff",
            # Devices provisioned without a wake word (freezers) are push-to-talk by design.
            f'{P}_wake_enabled{{wake_word!=""}} == 0',
            "10m",
            "warn",
            "Wake word is off on {{ $labels.device }} ({{ $labels.zone }})",
            "The device was provisioned with wake word {{ $labels.wake_word }} but is not "
            "listening for it; workers must use the button. Run warehouse-voice selftest.",
        ),
        _alert(
            "WarehouseVoiceErrorState",
            f'{P}_state{{{P}_state="error"}} == 1',
            "5m",
            "page",
            "{{ $labels.device }} ({{ $labels.zone }}) has been in the error state for 5 minutes",
            "warehouse-voice status on the device shows the last error.",
        ),
        _alert(
            "WarehouseVoiceLatencyHigh",
            f"{DEVICE_P95} > {target}",
            "10m",
            "warn",
            "Replies on {{ $labels.device }} are slow: p95 {{ $value | humanizeDuration }}",
            f"Turn latency p95 (worker stops speaking to first reply audio) is over the "
            f"target of {target} s.",
        ),
        _alert(
            "WarehouseVoiceWriteQueueGrowing",
            f"{P}_write_queue_depth > 0 and delta({P}_write_queue_depth[10m]) > 0",
            "10m",
            "warn",
            "{{ $labels.device }} is saving writes it cannot deliver ({{ $value }} more in 10m)",
            "Confirmed stock changes wait on the device because the inventory API does not "
            "take them; they sync when it does. Check the inventory server and the network.",
        ),
    ]


def rules(latency_target_s: float = DEFAULT_LATENCY_TARGET_S) -> dict[str, Any]:
    if not 0 < latency_target_s < 60:
        raise ValueError(f"latency target {latency_target_s} s must be between 0 and 60")
    return {
        "groups": [
            {"name": "warehouse_voice.recording", "rules": recording_rules()},
            {"name": "warehouse_voice.alerts", "rules": alerting_rules(latency_target_s)},
        ]
    }
