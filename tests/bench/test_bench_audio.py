"""The round-trip bench for real: private PulseAudio, loopback, click emulator, daemon."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest

from device.bench.roundtrip import measure

needs_pulse = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("pactl") is None,
    reason="needs apt packages pulseaudio pulseaudio-utils libasound2-plugins",
)
# Paced by a real sound server: `make test` runs these on their own, after the rest.
pytestmark = pytest.mark.realtime


@pytest.mark.slow
@needs_pulse
async def test_every_click_comes_back_and_the_barge_in_is_timed(tmp_path: Path) -> None:
    raw = await measure(tmp_path, turns=1, barge_ins=1, reply_s=2.0)

    assert raw["turns"] == 2
    assert raw["missing_clicks"] == 0
    # A whole reply of 10 clicks, all timed; then one cut at 830 ms, streamed 4x faster than
    # real time: of its 5 clicks, those still queued when `interrupted` came were never heard.
    assert len(raw["round_trip_ms"]) == 10
    assert raw["cut_clicks"] <= 5
    # Only the real-time turn is timed; the barge-in turn streams 4x faster than it plays.
    assert len(raw["first_audio_device_added_ms"]) == 1
    # No echo can come back sooner than the loopback delays it.
    loopback = statistics.median(raw["loopback_ms"])
    assert loopback > 0
    assert min(raw["round_trip_ms"]) > loopback
    assert raw["device_added_ms"] == pytest.approx([rt - loopback for rt in raw["round_trip_ms"]])
    # One `interrupted`, one silence; the device's own part lies within the whole.
    assert len(raw["barge_in_stop_ms"]) == 1
    assert 0 < raw["barge_in_device_ms"][0] <= raw["barge_in_stop_ms"][0]
    assert raw["wire_to_speaker_ms"] and raw["capture_to_wire_ms"]
    # The emulator's far end and this process's pulse server were stopped.
    log = (tmp_path / "click_server.log").read_text()
    assert "Traceback" not in log
