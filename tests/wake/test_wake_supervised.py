"""The real wake listener raising mid-shift: the LED shows it, `status` names it, and the
supervisor's restart brings the wake word back without restarting the device.

The listener runs the installed ONNX models on the real capture; the fault is the wake
runtime's inference raising once (what a corrupt or failing model does).
"""

from __future__ import annotations

import asyncio
import functools
import wave
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from device.appliance import Appliance
from device.audio.capture import Capture
from device.audio.sink import WavSink
from device.audio.source import WavSource
from device.config import settings_from_dict
from device.events import EventBus, State
from device.panel.board import Board
from device.panel.state import PanelState
from device.service.parts import supervise_parts
from device.service.supervisor import Supervisor
from device.sim.speech import silence
from device.wake.detector import WakeDetector
from device.wake.listener import WakeListener
from device.wake.models import ModelSet
from device.wake.runtime import OnnxWakeRuntime
from tests import pin_helpers

poll = functools.partial(pin_helpers.poll, timeout_s=60)


async def test_a_wake_listener_that_raises_shows_and_is_restarted(
    model_set: ModelSet, pins: MockFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_predict = OnnxWakeRuntime.predict
    calls = 0

    def failing_once(self: OnnxWakeRuntime, frame: Any) -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == 20:  # well into listening, not at load
            raise RuntimeError("wake inference failed")
        return real_predict(self, frame)

    monkeypatch.setattr(OnnxWakeRuntime, "predict", failing_once)
    quiet = tmp_path / "quiet.wav"
    with wave.open(str(quiet), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(silence(1.0))
    bus = EventBus()
    mic = WavSource(quiet, tail_silence_s=None)  # a quiet warehouse, at real pace
    capture = Capture(mic, bus=bus)
    appliance = Appliance(
        bus=bus,
        mic=mic,
        speaker=WavSink(tmp_path / "out.wav"),
        tools=None,  # type: ignore[arg-type]  # no session is started here
        connector=lambda _handle: None,  # type: ignore[arg-type,return-value]
        model="unused",
        manual_turns=False,
        idle_timeout_s=1.0,
        connect_timeout_s=1.0,
    )
    appliance.use_capture(capture)
    listener = WakeListener(
        WakeDetector.from_model_set(model_set),
        capture,
        bus=bus,
        on_wake=appliance.wake,
        on_end=appliance.wake_ended,
    )
    board = Board(settings_from_dict({"button": {"enabled": False}}), bus=bus, handler=appliance)
    supervisor = appliance.supervisor = Supervisor(bus, backoff_initial_s=0.1, settle_s=1.0)
    appliance.status_sections["health"] = supervisor.snapshot
    unsubscribe = supervise_parts(
        supervisor,
        bus,
        speaker=appliance._speaker,
        capture=appliance.capture_loop,
        wake=listener.run,
        camera=None,
        budget_s=60.0,
        panel=board.run,
    )
    red = pins.pin("GPIO12")
    await mic.open()
    runner = asyncio.create_task(appliance.run())
    try:
        # The state follows the fault a loop step later (`Appliance._faults_changed`): a
        # snapshot taken between the two showed the fault with the state still idle, once,
        # under load.
        await poll(lambda: appliance.snapshot()["state"] == "error", "the error state")
        status = appliance.snapshot()
        assert "wake" in status["faults"]
        assert "wake inference failed" in status["health"]["wake"]["reason"]
        await poll(lambda: board.leds is not None and board.leds.shown is PanelState.ERROR, "LED")
        await poll(lambda: red.state == 1.0, "the red LED to light")

        # Restarted: listening again, the fault over, the LED back to idle.
        await poll(lambda: appliance.state == State.IDLE, "idle after the restart")
        await poll(lambda: board.leds is not None and board.leds.shown is PanelState.IDLE, "idle")
        status = appliance.snapshot()
        assert status["faults"] == {}
        assert status["health"]["wake"]["health"] == "ok"
        assert status["health"]["wake"]["restarts"] == 1
        seen = calls
        await poll(lambda: calls > seen + 10, "the restarted listener to score audio again")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        unsubscribe()
        board.close()
        await listener.close()
        await mic.close()
