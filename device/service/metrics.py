"""Metrics from the event bus: latency, tools, tasks and sessions, for Prometheus, the event log
and `warehouse-voice status`.

The collector is only a bus subscriber; the core never calls it. Latencies are differences of
the events' monotonic timestamps, except "at the speaker": that is when the speaker's player
thread handed the audio to the device (`AudioSink.last_played_at`), and "silent": when the
speaker had dropped everything after an interruption (`drain()` returned). So the collector
watches the speaker it is given, and never touches it otherwise.

Each measurement also goes on the bus as a `Metric` event, which puts it in the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import statistics
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from device.audio.errors import AudioError
from device.audio.sink import AudioSink
from device.config import Settings
from device.events import (
    ButtonEvent,
    ConfirmationResolved,
    ErrorRaised,
    Event,
    EventBus,
    Interrupted,
    Metric,
    SessionEnded,
    SessionStarted,
    Speaking,
    State,
    StateChanged,
    ToolFinished,
    UserSpeech,
    WakeDetected,
    WireSent,
    WriteQueueChanged,
)
from device.service.metrics_export import Families, MetricsEndpoint, MetricsEndpointError
from device.service.metrics_tasks import TaskResult, TaskTracker

log = logging.getLogger(__name__)


@functools.cache
def declared_tool_names() -> frozenset[str]:
    """Every tool name the device ever declares to the model (warehouse, vision, local)."""
    from device.live.local_tools import END_SESSION
    from device.tools.declarations import WAREHOUSE_TOOLS
    from device.vision.tools import DECLARATIONS

    return frozenset([*WAREHOUSE_TOOLS, END_SESSION, *(d["name"] for d in DECLARATIONS)])


# Audio and turn-end markers: what the capture-to-wire leg is made of.
CAPTURE_ITEMS = frozenset({"audio", "activity_end", "audio_stream_end"})
# A speech end or wake older than this belongs to no reply or listening state.
STALE_S = 30.0
WAKE_STALE_S = 5.0
# The longest a speaker may take to go silent or to play a first reply before we stop waiting.
WATCH_TIMEOUT_S = 10.0


class _Window:
    """The last `size` values of one measurement, for the status summary."""

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values.append(value)
        self.count += 1

    def summary_ms(self) -> dict[str, float | int] | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {
            "count": self.count,
            "median": round(1000 * statistics.median(ordered), 1),
            "p95": round(1000 * p95, 1),
        }


class MetricsCollector:
    """Subscribe it to the bus (it does so itself); `close()` unsubscribes."""

    def __init__(
        self,
        bus: EventBus,
        *,
        device_id: str = "wv-device",
        speaker: AudioSink | None = None,
        window: int = 500,
    ) -> None:
        self.families = Families(device_id)
        self._bus = bus
        self._speaker = speaker
        self._window = window
        self._windows: dict[str, _Window] = {}
        self._tasks = TaskTracker(self._task_finished)
        self._task_counts: dict[str, dict[str, int]] = {}
        self._reasks = 0
        self._counts = {"sessions": 0, "resumes": 0, "drops": 0, "tool_calls": 0, "tool_errors": 0}
        self._speech_end: float | None = None
        self._capture_s: float | None = None
        self._wake: float | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._queue_oldest: float | None = None
        self.families.write_queue_oldest_age.set_function(self._queue_age)
        self._unsubscribe = bus.subscribe(self)

    @property
    def registry(self) -> CollectorRegistry:
        return self.families.registry

    def close(self) -> None:
        self._unsubscribe()
        for task in list(self._watchers):
            task.cancel()

    # -- events ---------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, Metric):
            return  # our own output, and anyone else's: nothing to derive from it
        f = self.families
        if isinstance(event, StateChanged):
            f.state.state(event.state.value)
            self._on_state(event)
        elif isinstance(event, WakeDetected):
            f.wakes.labels(event.model).inc()
            self._wake = event.mono
        elif isinstance(event, UserSpeech | ButtonEvent):
            self._on_talk(event)
        elif isinstance(event, WireSent):
            if event.what in CAPTURE_ITEMS:
                self._capture_s = event.waited_ms / 1000
                # The WireSent line in the event log already says this; no Metric twice a second.
                self._observe(
                    "capture_to_wire", self._capture_s, publish=False, leg="capture_to_wire"
                )
        elif isinstance(event, Speaking):
            if event.started:
                self._on_reply_started(event)
        elif isinstance(event, Interrupted):
            f.interruptions.labels(event.source).inc()
            self._watch(self._silenced(event))
        elif isinstance(event, ToolFinished):
            self._on_tool(event)
        elif isinstance(event, ConfirmationResolved):
            self._tasks.confirmation_resolved(event.session_id, event.tool, event.outcome)
        elif isinstance(event, SessionStarted):
            f.sessions.labels(str(event.resumed).lower()).inc()
            self._counts["sessions"] += 1
            if event.resumed:
                f.session_resumes.inc()
                self._counts["resumes"] += 1
        elif isinstance(event, SessionEnded):
            self._tasks.session_ended(event.session_id)
        elif isinstance(event, WriteQueueChanged):
            self._on_write_queue(event)
        elif isinstance(event, ErrorRaised):
            f.errors.labels(event.where).inc()
            # Every failure of the Live connection (a close code, a timeout, the network) is
            # reported from the live layer, whether a resume follows or not.
            if event.where.split(".")[0] == "live":
                f.session_drops.inc()
                self._counts["drops"] += 1

    def _on_state(self, event: StateChanged) -> None:
        wake, self._wake = self._wake, None
        waited = None if wake is None else event.mono - wake
        if event.state == State.LISTENING and waited is not None and 0 <= waited <= WAKE_STALE_S:
            self._observe("wake_to_listening", waited)

    def _on_talk(self, event: UserSpeech | ButtonEvent) -> None:
        started = event.active if isinstance(event, UserSpeech) else event.action == "press"
        # The worker stopped talking: the turn's clock starts; talking again restarts it.
        self._speech_end = None if started else event.mono

    def _on_reply_started(self, event: Speaking) -> None:
        speech_end, self._speech_end = self._speech_end, None
        if speech_end is not None and event.mono - speech_end > STALE_S:
            speech_end = None
        speaker = self._speaker
        if speaker is None:
            return
        # The reply is written right after this event: its first byte is the next one queued.
        queued = getattr(speaker, "queued_bytes", 0)  # QueuedSink has it; others start at 0
        target = speaker.played_bytes + int(queued) + 1
        self._watch(self._first_heard(event.mono, target, speech_end, self._capture_s))

    def _on_write_queue(self, event: WriteQueueChanged) -> None:
        f = self.families
        f.write_queue_depth.set(event.depth)
        self._queue_oldest = event.oldest_ts if event.depth else None
        if event.change == "delivered":
            f.write_queue_delivered.inc()
        elif event.change == "rejected":
            f.write_queue_rejected.inc()

    def _queue_age(self) -> float:
        return 0.0 if self._queue_oldest is None else max(0.0, time.time() - self._queue_oldest)

    def _on_tool(self, event: ToolFinished) -> None:
        f = self.families
        # The name comes from the model: only declared names become label values, or one odd
        # call after another would grow Prometheus' series (and this process) without bound.
        name = event.name if event.name in declared_tool_names() else "undeclared"
        f.tool_calls.labels(name, event.status).inc()
        f.tool_latency.labels(name).observe(event.latency_ms / 1000)
        self._counts["tool_calls"] += 1
        self._counts["tool_errors"] += event.status in ("error", "refused")
        self._tasks.tool_finished(event.session_id, event.name, event.status)

    def _task_finished(self, task: TaskResult) -> None:
        self.families.tasks.labels(task.type, task.outcome).inc()
        self.families.task_reasks.labels(task.type).observe(task.reasks)
        counts = self._task_counts.setdefault(task.type, {})
        counts[task.outcome] = counts.get(task.outcome, 0) + 1
        self._reasks += task.reasks
        self._publish(
            "task_reasks",
            task.reasks,
            type=task.type,
            outcome=task.outcome,
            session=task.session_id,
        )

    # -- watching the speaker -------------------------------------------------------------

    def _watch(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # published outside a loop (a synchronous test): nothing to time
            coro.close()
            return
        task = loop.create_task(coro, name="metrics-watch")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _first_heard(
        self, arrived: float, target: int, speech_end: float | None, capture_s: float | None
    ) -> None:
        speaker = self._speaker
        assert speaker is not None
        try:
            async with asyncio.timeout(WATCH_TIMEOUT_S):
                await speaker.wait_played(target)
        except (AudioError, TimeoutError):
            return  # flushed or closed before a byte was played: nothing was heard
        heard = max(arrived, speaker.last_played_at or time.monotonic())
        wire_to_speaker = heard - arrived
        self._observe("wire_to_speaker", wire_to_speaker, leg="wire_to_speaker")
        if capture_s is not None:
            self._observe("device_added", capture_s + wire_to_speaker, leg="device_added")
        if speech_end is not None:
            self._observe("turn_latency", heard - speech_end)

    async def _silenced(self, event: Interrupted) -> None:
        speaker = self._speaker
        if speaker is None:
            return
        with contextlib.suppress(AudioError, TimeoutError):
            async with asyncio.timeout(WATCH_TIMEOUT_S):
                await speaker.drain()
            self._observe("barge_in_stop", time.monotonic() - event.mono, source=event.source)

    # -- output ---------------------------------------------------------------------------

    def _observe(self, name: str, seconds: float, *, publish: bool = True, **labels: str) -> None:
        f = self.families
        if name == "turn_latency":
            f.turn_latency.observe(seconds)
        elif name == "wake_to_listening":
            f.wake_to_listening.observe(seconds)
        elif name == "barge_in_stop":
            f.barge_in_stop.labels(labels["source"]).observe(seconds)
        else:
            f.device_latency.labels(labels["leg"]).observe(seconds)
        self._windows.setdefault(name, _Window(self._window)).add(seconds)
        if publish:
            self._publish(f"{name}_seconds", seconds, **labels)

    def _publish(self, name: str, value: float, **labels: str) -> None:
        self._bus.publish(Metric(name=name, value=value, labels=labels))

    def summary(self) -> dict[str, Any]:
        """The figures `warehouse-voice status` shows: latencies in ms (median, p95 over the
        last measurements), tools, tasks and sessions since start."""
        finished = sum(sum(c.values()) for c in self._task_counts.values())
        completed = sum(c.get("completed", 0) for c in self._task_counts.values())
        latency = {name: window.summary_ms() for name, window in sorted(self._windows.items())}
        return {
            "latency_ms": {name: value for name, value in latency.items() if value is not None},
            "tools": {
                "calls": self._counts["tool_calls"],
                "errors": self._counts["tool_errors"],
            },
            "tasks": {
                "finished": finished,
                "open": self._tasks.open_tasks,
                "completion_rate": round(completed / finished, 3) if finished else None,
                "reasks_per_task": round(self._reasks / finished, 3) if finished else None,
                "by_type": {k: dict(v) for k, v in sorted(self._task_counts.items())},
            },
            "sessions": {
                "started": self._counts["sessions"],
                "resumed": self._counts["resumes"],
                "drops": self._counts["drops"],
            },
        }


class Metrics:
    """The collector plus, when enabled, its Prometheus endpoint: what the daemon runs."""

    def __init__(
        self,
        collector: MetricsCollector,
        endpoint: MetricsEndpoint | None,
        endpoint_error: str | None = None,
    ) -> None:
        self.collector = collector
        self.endpoint = endpoint
        self.endpoint_error = endpoint_error

    def summary(self) -> dict[str, Any]:
        where = self.endpoint.url if self.endpoint is not None else None
        return {"endpoint": where or self.endpoint_error, **self.collector.summary()}

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
        self.collector.close()


def start_metrics(settings: Settings, bus: EventBus, speaker: AudioSink | None) -> Metrics:
    """Collect from the bus and serve `[metrics] address`. An address that cannot be bound is
    logged and shown by `status`, and the appliance carries on without the endpoint: metrics
    never stop a worker from talking to the device."""
    collector = MetricsCollector(bus, device_id=settings.device.id, speaker=speaker)
    config = settings.metrics
    if not config.enabled:
        return Metrics(collector, None, "disabled ([metrics] enabled = false)")
    endpoint = MetricsEndpoint(collector.registry, config.address)
    try:
        endpoint.start()
    except MetricsEndpointError as exc:
        log.error("%s", exc)
        return Metrics(collector, None, str(exc))
    return Metrics(collector, endpoint)
