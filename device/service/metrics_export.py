"""The Prometheus side of the metrics: a private registry, its metric families, and the HTTP
endpoint that serves them.

The registry is our own, never prometheus-client's global one, so two appliances in one process
(tests, the bench) never share counters, and the endpoint shows exactly the appliance's figures.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest, start_http_server

from device.events import State

log = logging.getLogger(__name__)

PREFIX = "warehouse_voice"
# Device-side legs are milliseconds; a turn, with the model's thinking, is seconds.
DEVICE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0)
TURN_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REASK_BUCKETS = (0.0, 1.0, 2.0, 3.0, 5.0)
_ADDRESS = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$"
)


class MetricsEndpointError(RuntimeError):
    """The endpoint cannot listen; the message names the address and the fix."""


def _version() -> str:
    try:
        return importlib.metadata.version("warehouse-voice")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Families:
    """Every metric the appliance exports, registered in one private registry."""

    def __init__(self, device_id: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info(f"{PREFIX}_device", "This device.", registry=r).info(
            {"id": device_id, "version": _version()}
        )
        self.state = Enum(
            f"{PREFIX}_state",
            "The appliance state.",
            states=[state.value for state in State],
            registry=r,
        )
        self.turn_latency = Histogram(
            f"{PREFIX}_turn_latency_seconds",
            "From the worker stopping speaking to the first reply audio at the speaker.",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.device_latency = Histogram(
            f"{PREFIX}_device_latency_seconds",
            "Time the device's software adds to a turn: capture_to_wire (queued audio or "
            "marker until sent), wire_to_speaker (first reply audio received until handed to "
            "the sound card), device_added (their sum, per turn). The sound card's own buffers "
            "are not in it; `warehouse-voice bench` measures the whole trip acoustically.",
            ["leg"],
            buckets=DEVICE_BUCKETS,
            registry=r,
        )
        self.wake_to_listening = Histogram(
            f"{PREFIX}_wake_to_listening_seconds",
            "From a wake-word detection to the listening state.",
            buckets=DEVICE_BUCKETS,
            registry=r,
        )
        self.barge_in_stop = Histogram(
            f"{PREFIX}_barge_in_stop_seconds",
            "From an interruption (server, button or voice) to the speaker going silent.",
            ["source"],
            buckets=DEVICE_BUCKETS,
            registry=r,
        )
        self.tool_latency = Histogram(
            f"{PREFIX}_tool_latency_seconds",
            "Tool call latency, from the call to its result.",
            ["tool"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls", "Tool calls by result status.", ["tool", "status"], registry=r
        )
        self.tasks = Counter(
            f"{PREFIX}_tasks",
            "Finished warehouse tasks by outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.task_reasks = Histogram(
            f"{PREFIX}_task_reasks",
            "Re-asks per finished task (the agent had to ask again): the recovery rate.",
            ["type"],
            buckets=REASK_BUCKETS,
            registry=r,
        )
        self.sessions = Counter(
            f"{PREFIX}_sessions", "Live sessions opened.", ["resumed"], registry=r
        )
        self.session_drops = Counter(
            f"{PREFIX}_session_drops",
            "Live connections lost or refused (close codes, timeouts, network).",
            registry=r,
        )
        self.session_resumes = Counter(
            f"{PREFIX}_session_resumes", "Live sessions resumed with a handle.", registry=r
        )
        self.interruptions = Counter(
            f"{PREFIX}_interruptions", "Replies cut short, by source.", ["source"], registry=r
        )
        self.wakes = Counter(f"{PREFIX}_wakes", "Wake-word detections.", ["model"], registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Errors raised, by part.", ["where"], registry=r)
        self.wake_enabled = Gauge(
            f"{PREFIX}_wake_enabled", "1 while the wake word is listening, 0 when off.", registry=r
        )
        self.write_queue_depth = Gauge(
            f"{PREFIX}_write_queue_depth",
            "Confirmed writes saved on the device, waiting for the inventory API.",
            registry=r,
        )
        self.write_queue_oldest_age = Gauge(
            f"{PREFIX}_write_queue_oldest_age_seconds",
            "Age of the oldest write waiting for the inventory API (0 when none waits).",
            registry=r,
        )
        self.write_queue_delivered = Counter(
            f"{PREFIX}_write_queue_delivered", "Saved writes the API took.", registry=r
        )
        self.write_queue_rejected = Counter(
            f"{PREFIX}_write_queue_rejected",
            "Saved writes the API refused on delivery (each became a hand-off ticket).",
            registry=r,
        )
        self.state.state(State.IDLE.value)

    def exposition(self) -> bytes:
        """The text a scrape returns."""
        return generate_latest(self.registry)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError says what is wrong."""
    match = _ADDRESS.match(address.strip())
    if match is None:
        raise ValueError(
            f"metrics address {address!r} is not host:port; use e.g. 127.0.0.1:9464 or [::1]:9464"
        )
    port = int(match["port"])
    if port > 65535:
        raise ValueError(f"metrics address {address!r}: port {port} is above 65535")
    return match["v6"] or match["host"], port


class MetricsEndpoint:
    """Serves a registry over HTTP (`/metrics`) from prometheus-client's own server thread, so a
    scrape never runs on the event loop."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self.host, self._port = parse_address(address)
        self.address = address
        self._registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        return self._server.server_address[1] if self._server is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self.host, registry=self._registry
            )
        except OSError as exc:
            raise MetricsEndpointError(
                f"cannot serve metrics on {self.address} ({exc.strerror or exc}); set "
                "[metrics] address to a free host:port, or enabled = false"
            ) from None
        log.info("metrics on %s", self.url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
