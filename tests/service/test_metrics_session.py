"""The daemon's metrics endpoint, scraped over HTTP while a scripted session runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from metrics_helpers import parse, value

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR, settings_from_dict
from device.daemon import assemble
from device.events import EventBus, State, StateChanged
from device.inventory.server import serve_inventory
from device.preflight import preflight
from device.service.control import request
from device.service.eventlog import read_events
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

P = "warehouse_voice"
API_KEY = "metrics-test-key"
REQUEST_WAV = REPO_CONFIG_DIR / "demo" / "where-is-sku.wav"


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.mark.slow
async def test_counters_move_while_a_scripted_session_runs(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(API_KEY)
    async with (
        serve_inventory(tmp_path / "inventory.db", seed="demo") as inventory,
        Emulator(
            load_scenario("where-is-sku"), workdir=tmp_path / "emulator", api_key=API_KEY
        ) as emulator,
    ):
        (tmp_path / "token").write_text(inventory.token)
        settings = settings_from_dict(
            {
                "device": {
                    "id": "metrics-01",
                    "state_dir": str(tmp_path),
                    "control_socket": str(tmp_path / "control.sock"),
                },
                "live": {
                    "base_url": emulator.url,
                    "ca_file": str(emulator.ca_file),
                    "api_key_file": str(tmp_path / "key"),
                    "idle_timeout_s": 1.0,
                },
                "audio": {
                    "input": "wav",
                    "input_wav": str(REQUEST_WAV),
                    "input_wav_cue": "listening",
                    "output": "wav",
                    "output_wav": str(tmp_path / "reply.wav"),
                    "speed": 8.0,
                },
                "gpio": {"pin_factory": "mock"},
                "tools": {
                    "inventory_url": inventory.base_url,
                    "token_file": str(tmp_path / "token"),
                },
                "metrics": {"address": "127.0.0.1:0"},
            }
        )
        bus = EventBus()
        async with assemble(settings, preflight(settings), bus) as appliance:
            url = appliance.status_sections["metrics"]()["endpoint"]
            assert url.startswith("http://127.0.0.1:")
            before = await scrape(url)
            runner = asyncio.create_task(appliance.run())
            async with bus.stream() as events, asyncio.timeout(60):
                mic = appliance.mic
                assert isinstance(mic, CuedWavSource)
                appliance.press("test")
                await mic.wait_said()
                appliance.release("test")
                while True:
                    event = await events.get()
                    if isinstance(event, StateChanged) and event.previous == State.CLOSING:
                        break
            after = await scrape(url)
            status = await asyncio.to_thread(request, tmp_path / "control.sock", "status")
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    for name, labels in (
        (f"{P}_sessions_total", {"resumed": "false"}),
        (f"{P}_tool_calls_total", {"tool": "find_item", "status": "ok"}),
        (f"{P}_tasks_total", {"type": "locate", "outcome": "completed"}),
        (f"{P}_turn_latency_seconds_count", {}),
    ):
        assert value(before, name, **labels) == 0, name
        assert value(after, name, **labels) == 1, name
    assert value(after, f"{P}_device_latency_seconds_count", leg="wire_to_speaker") == 1
    assert value(after, f"{P}_device_latency_seconds_count", leg="capture_to_wire") >= 1
    assert value(after, f"{P}_tool_latency_seconds_count", tool="find_item") == 1
    assert value(after, f"{P}_session_drops_total") == 0
    assert value(after, f"{P}_state", **{f"{P}_state": "idle"}) == 1
    assert any(
        n == f"{P}_device_info" and dict(labels)["id"] == "metrics-01" for n, labels in after
    )

    # `warehouse-voice status` carries the same figures.
    summary = status["metrics"]
    assert summary["sessions"] == {"started": 1, "resumed": 0, "drops": 0}
    assert summary["tasks"]["by_type"] == {"locate": {"completed": 1}}
    assert summary["latency_ms"]["turn_latency"]["count"] == 1
    # And the event log has each measurement as a metric line.
    logged = read_events(tmp_path / "events.jsonl")
    names = {e["name"] for e in logged if e["kind"] == "metric"}
    assert {"turn_latency_seconds", "wire_to_speaker_seconds", "task_reasks"} <= names
    assert any(e["kind"] == "wire_sent" and e["what"] == "audio_stream_end" for e in logged)
