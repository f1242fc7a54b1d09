"""The metrics collector: what it derives from bus events and from the speaker it watches."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from metrics_helpers import next_metric, parse, value
from prometheus_client import generate_latest

from device.audio.sink import WavSink
from device.config import ConfigError, settings_from_dict
from device.events import (
    ButtonEvent,
    ConfirmationResolved,
    ErrorRaised,
    EventBus,
    Interrupted,
    Metric,
    SessionEnded,
    SessionStarted,
    Speaking,
    State,
    StateChanged,
    ToolFinished,
    WakeDetected,
    WireSent,
)
from device.service.metrics import MetricsCollector, start_metrics
from device.service.metrics_export import MetricsEndpoint, MetricsEndpointError, parse_address

P = "warehouse_voice"


def tone(seconds: float, rate: int = 24_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def tool(session: str, name: str, status: str, call: str = "c1") -> ToolFinished:
    return ToolFinished(
        session_id=session, call_id=call, name=name, status=status, result={}, latency_ms=12.0
    )


def resolved(session: str, tool_name: str, outcome: str) -> ConfirmationResolved:
    return ConfirmationResolved(session_id=session, call_id="c", tool=tool_name, outcome=outcome)


class HeldSpeaker(WavSink):
    """A speaker that plays its first two buffers, then holds the rest until a flush or close.

    Real time would race the test: on a loaded machine three seconds can pass before the flush.
    Held, only the barge-in can end this reply, however slowly the machine runs. (The first
    buffer is paced as usual: the player reports progress after each buffer's pace.)
    """

    buffers = 0

    def _pace_s(self, nbytes: int) -> float:
        self.buffers += 1
        return super()._pace_s(nbytes) if self.buffers == 1 else 3600.0


async def test_a_turn_and_a_barge_in_are_timed_at_the_speaker(tmp_path: Path) -> None:
    bus = EventBus()
    async with bus.stream() as events, HeldSpeaker(tmp_path / "speaker.wav") as speaker:
        collector = MetricsCollector(bus, device_id="t-01", speaker=speaker)
        bus.publish(ButtonEvent(action="release", source="gpio"))
        bus.publish(WireSent(session_id="s1", what="audio_stream_end", waited_ms=4.0))
        bus.publish(Speaking(started=True))
        await speaker.write(tone(3.0))
        turn = await next_metric(events, "turn_latency_seconds")
        speaker.flush()
        bus.publish(Interrupted(session_id="s1", source="gpio"))
        stop = await next_metric(events, "barge_in_stop_seconds")
        played = speaker.played_bytes
    collector.close()

    scrape = parse(collector.families.exposition())
    assert value(scrape, f"{P}_turn_latency_seconds_count") == 1
    assert value(scrape, f"{P}_device_latency_seconds_count", leg="wire_to_speaker") == 1
    assert value(scrape, f"{P}_device_latency_seconds_count", leg="capture_to_wire") == 1
    added = value(scrape, f"{P}_device_latency_seconds_sum", leg="device_added")
    to_speaker = value(scrape, f"{P}_device_latency_seconds_sum", leg="wire_to_speaker")
    assert added == pytest.approx(0.004 + to_speaker)
    # The turn started at the release, before the reply arrived: it holds the speaker leg.
    assert turn.value >= to_speaker
    assert value(scrape, f"{P}_barge_in_stop_seconds_count", source="gpio") == 1
    assert stop.labels == {"source": "gpio"}
    assert value(scrape, f"{P}_interruptions_total", source="gpio") == 1
    # The flush cut the three seconds short: the speaker really went silent early.
    assert played < len(tone(3.0)) // 2
    assert collector.summary()["latency_ms"]["barge_in_stop"]["count"] == 1


def test_wake_to_listening_and_session_counters() -> None:
    bus = EventBus()
    seen: list[Metric] = []
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, Metric) else None)
    collector = MetricsCollector(bus)
    wake = WakeDetected(model="hey_jarvis", score=0.97)
    bus.publish(wake)
    bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE, mono=wake.mono + 0.012))
    bus.publish(SessionStarted(session_id="a", model="m"))
    bus.publish(ErrorRaised(where="live", message="connection closed (1011: internal)"))
    bus.publish(SessionStarted(session_id="a", model="m", resumed=True))
    bus.publish(ErrorRaised(where="tools.dispatcher", message="token rejected"))
    # A listening state with no wake before it (a button) is not a wake measurement.
    bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE))

    scrape = parse(collector.families.exposition())
    assert value(scrape, f"{P}_wake_to_listening_seconds_count") == 1
    assert value(scrape, f"{P}_wake_to_listening_seconds_sum") == pytest.approx(0.012)
    assert value(scrape, f"{P}_wakes_total", model="hey_jarvis") == 1
    assert value(scrape, f"{P}_sessions_total", resumed="false") == 1
    assert value(scrape, f"{P}_sessions_total", resumed="true") == 1
    assert value(scrape, f"{P}_session_resumes_total") == 1
    assert value(scrape, f"{P}_session_drops_total") == 1
    assert value(scrape, f"{P}_errors_total", where="tools.dispatcher") == 1
    assert value(scrape, f"{P}_state", **{P + "_state": "listening"}) == 1
    assert [m.name for m in seen] == ["wake_to_listening_seconds"]
    assert collector.summary()["sessions"] == {"started": 2, "resumed": 1, "drops": 1}


def test_tasks_complete_per_type_and_count_reasks() -> None:
    bus = EventBus()
    collector = MetricsCollector(bus)
    # A pick: wrong check digit once (a re-ask), then the pick is confirmed and committed.
    for event in (
        tool("s", "get_next_pick", "ok"),
        tool("s", "verify_location", "error"),
        tool("s", "verify_location", "ok"),
        tool("s", "confirm_pick", "needs_confirmation"),
        resolved("s", "confirm_pick", "confirmed"),
        resolved("s", "confirm_pick", "committed"),
        # A locate answered at once.
        tool("s", "find_item", "ok"),
        # A move the worker took back, proposed again, then cancelled.
        tool("s", "move_stock", "needs_confirmation"),
        resolved("s", "move_stock", "revoked"),
        tool("s", "move_stock", "needs_confirmation"),
        resolved("s", "move_stock", "cancelled"),
        # A count that failed validation and was never tried again: left open at the end.
        tool("s", "record_count", "error"),
        SessionEnded(session_id="s", reason="idle timeout"),
    ):
        bus.publish(event)

    scrape = parse(collector.families.exposition())
    assert value(scrape, f"{P}_tasks_total", type="pick", outcome="completed") == 1
    assert value(scrape, f"{P}_tasks_total", type="locate", outcome="completed") == 1
    assert value(scrape, f"{P}_tasks_total", type="move", outcome="cancelled") == 1
    assert value(scrape, f"{P}_tasks_total", type="count", outcome="abandoned") == 1
    assert value(scrape, f"{P}_task_reasks_sum", type="pick") == 1
    assert value(scrape, f"{P}_task_reasks_sum", type="move") == 1
    assert value(scrape, f"{P}_task_reasks_sum", type="locate") == 0
    assert value(scrape, f"{P}_tool_calls_total", tool="verify_location", status="error") == 1
    assert value(scrape, f"{P}_tool_latency_seconds_count", tool="verify_location") == 2
    tasks = collector.summary()["tasks"]
    assert tasks["finished"] == 4
    assert tasks["open"] == 0
    assert tasks["completion_rate"] == 0.5
    assert tasks["reasks_per_task"] == 0.5


def test_a_handoff_hands_off_the_open_tasks() -> None:
    bus = EventBus()
    collector = MetricsCollector(bus)
    bus.publish(tool("s", "move_stock", "error"))
    bus.publish(tool("s", "handoff_to_human", "ok"))
    scrape = parse(collector.families.exposition())
    assert value(scrape, f"{P}_tasks_total", type="move", outcome="handed_off") == 1
    assert value(scrape, f"{P}_tasks_total", type="handoff", outcome="completed") == 1


def test_each_collector_has_its_own_registry() -> None:
    bus = EventBus()
    first, second = MetricsCollector(bus), MetricsCollector(EventBus())
    bus.publish(SessionStarted(session_id="x", model="m"))
    assert value(parse(first.families.exposition()), f"{P}_sessions_total", resumed="false") == 1
    assert value(parse(second.families.exposition()), f"{P}_sessions_total", resumed="false") == 0
    first.close()
    bus.publish(SessionStarted(session_id="y", model="m"))
    assert value(parse(first.families.exposition()), f"{P}_sessions_total", resumed="false") == 1


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("pi.local:80", ("pi.local", 80)),
    ],
)
def test_addresses_parse(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9464", "127.0.0.1", "http://x:1", "host:99999"])
def test_a_bad_address_says_what_to_write(address: str) -> None:
    with pytest.raises(ValueError, match="metrics address"):
        parse_address(address)


def test_the_config_rejects_a_bad_address_by_key() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.address: .*use host:port"):
        settings_from_dict({"metrics": {"address": "localhost"}})


def test_a_busy_port_is_reported_and_the_appliance_carries_on(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = MetricsEndpoint(MetricsCollector(EventBus()).registry, f"127.0.0.1:{port}")
        with pytest.raises(MetricsEndpointError, match=r"127\.0\.0\.1:\d+.*\[metrics\] address"):
            endpoint.start()
        settings = settings_from_dict({"metrics": {"address": f"127.0.0.1:{port}"}})
        metrics = start_metrics(settings, EventBus(), None)
    assert metrics.endpoint is None
    assert "cannot serve metrics" in metrics.summary()["endpoint"]
    metrics.close()


def test_disabled_metrics_serve_nothing_but_still_summarise() -> None:
    settings = settings_from_dict({"metrics": {"enabled": False}})
    bus = EventBus()
    metrics = start_metrics(settings, bus, None)
    bus.publish(SessionStarted(session_id="x", model="m"))
    summary = metrics.summary()
    metrics.close()
    assert metrics.endpoint is None
    assert summary["endpoint"].startswith("disabled")
    assert summary["sessions"]["started"] == 1
    assert summary["tools"] == {"calls": 0, "errors": 0}


def test_only_declared_tool_names_become_label_values() -> None:
    bus = EventBus()
    collector = MetricsCollector(bus, device_id="t-01")
    for n in range(50):
        bus.publish(tool("s1", f"made_up_by_the_model_{n}", "refused", call=f"c{n}"))
    bus.publish(tool("s1", "find_item", "ok"))
    samples = parse(generate_latest(collector.registry))
    names = {dict(labels)["tool"] for (name, labels) in samples if name == f"{P}_tool_calls_total"}
    assert names == {"undeclared", "find_item"}
