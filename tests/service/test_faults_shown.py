"""Faults injected through the real libraries: the LED shows each while it lasts, `status` names
it, and the device recovers without a restart.

The device is the appliance under its supervisor with the panel as a part, its LEDs on
gpiozero's mock PWM pins (the default factory, as on a Pi). The speaker is PyAudio on ALSA's
file plugin: pointed at /dev/full its writes fail inside ALSA, and removed from the ALSA
configuration it cannot be reopened until it is put back. The camera reads a folder that
vanishes and comes back. `status` is `Appliance.snapshot()`, what the control socket answers.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from PIL import Image

from device.audio.errors import AudioError
from device.audio.sink import PyAudioSink
from device.config import settings_from_dict
from device.panel.board import Board
from device.panel.state import PanelState
from device.service.parts import supervise_parts
from device.service.supervisor import Supervisor
from device.sim.alsa import VirtualAlsa, forget_alsa_config, render_asoundrc, virtual_alsa
from device.sim.scenario import load_scenario
from device.vision.camera import CameraError, CameraSettings
from device.vision.snapshots import SnapshotStreamer, start_camera
from tests import pin_helpers

if "live_rigs" not in sys.modules:  # the appliance rigs of tests/live, as tests/appliance does
    _spec = importlib.util.spec_from_file_location(
        "live_rigs", Path(__file__).parents[1] / "live" / "conftest.py"
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["live_rigs"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["live_rigs"])
rig_factory = sys.modules["live_rigs"].rig_factory

RED, GREEN, BLUE = "GPIO12", "GPIO13", "GPIO19"


poll = functools.partial(pin_helpers.poll, timeout_s=30)


class Device_:
    """The appliance, its supervisor and its panel, as the daemon assembles them."""

    def __init__(self, rig: Any, pins: MockFactory, camera: Any = None) -> None:
        self.rig, self.appliance = rig, rig.appliance
        self.board = Board(
            settings_from_dict({"button": {"enabled": False}}), bus=rig.bus, handler=rig.appliance
        )
        self.supervisor = Supervisor(rig.bus, backoff_initial_s=0.1, backoff_max_s=0.5)
        self.appliance.supervisor = self.supervisor
        self.appliance.status_sections["health"] = self.supervisor.snapshot
        self.unsubscribe = supervise_parts(
            self.supervisor,
            rig.bus,
            speaker=rig.speaker,
            capture=self.appliance.capture_loop,
            wake=None,
            camera=camera,
            budget_s=60.0,
            link=self.appliance.link.run,
            panel=self.board.run,
        )
        self.red, self.green, self.blue = (pins.pin(p) for p in (RED, GREEN, BLUE))

    async def start(self) -> None:
        await self.rig.start()
        await self.shows(PanelState.IDLE)

    async def finish(self) -> None:
        runner = self.rig.runner
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self.rig.event_log.close()
        self.unsubscribe()
        self.board.close()

    def status(self) -> dict[str, Any]:
        return self.appliance.snapshot()

    async def shows(self, state: PanelState) -> None:
        """The LEDs show `state`: the pattern is on, and the pins read its colour."""
        await poll(lambda: self.board.leds is not None and self.board.leds.shown is state, state)
        if state is PanelState.ERROR:  # red, blinking: it lights at some point, alone
            await poll(lambda: self.red.state == 1.0, "the red LED to light")
            assert (self.green.state, self.blue.state) == (0, 0)
        else:  # idle: a steady dim green
            await poll(lambda: (self.red.state, self.blue.state) == (0, 0), "red and blue off")
            assert self.green.state > 0


def point_speaker(alsa: VirtualAlsa, where: str | None) -> None:
    """`where`: "file" (works), "full" (writes fail inside ALSA), None (the device is gone)."""
    mic, speaker = render_asoundrc(infile=alsa.infile, speaker_dir=alsa.speaker_dir).splitlines(
        keepends=True
    )
    if where == "full":
        speaker = (
            'pcm.vspk { type asym playback.pcm { type file slave.pcm "null" '
            'file "/dev/full" format "raw" } }\n'
        )
    alsa.asoundrc.write_text(mic + (speaker if where else ""), encoding="utf-8")
    forget_alsa_config()


async def test_a_speaker_that_raises_then_is_removed_and_restored(
    rig_factory: Any, pins: MockFactory, tmp_path: Path
) -> None:
    with virtual_alsa(tmp_path / "alsa") as alsa:
        point_speaker(alsa, "full")
        speaker = PyAudioSink("vspk")
        device = Device_(await rig_factory(load_scenario("where-is-sku"), speaker=speaker), pins)
        await device.start()
        try:
            # The sound card goes: ALSA no longer has it, and the open stream's writes fail.
            point_speaker(alsa, None)
            await speaker.write(bytes(9_600))
            with pytest.raises(AudioError, match="playback failed"):
                await speaker.drain()

            def shown() -> bool:
                # The state follows the fault a loop step later (`Appliance._faults_changed`).
                status = device.status()
                return status["state"] == "error" and "vspk" in str(status["faults"].get("speaker"))

            await poll(shown, "the speaker's fault, shown")
            status = device.status()
            assert status["health"]["speaker"]["health"] == "recovering"
            await device.shows(PanelState.ERROR)
            # It lasts: the supervisor keeps trying, and the LED keeps showing it.
            restarts = device.status()["health"]["speaker"]["restarts"]
            await poll(
                lambda: device.status()["health"]["speaker"]["restarts"] > restarts + 1, "retries"
            )
            assert device.board.leds is not None
            assert device.board.leds.shown is PanelState.ERROR

            point_speaker(alsa, "file")  # plugged back in
            await poll(lambda: device.appliance.state.value == "idle", "idle again")
            await device.shows(PanelState.IDLE)
            status = device.status()
            assert status["faults"] == {} and status["health"]["speaker"]["health"] == "ok"
            # Same process, same speaker: it plays.
            await speaker.write(bytes(4_800))
            async with asyncio.timeout(30):
                await speaker.drain()
        finally:
            await device.finish()
            await speaker.close()


async def test_a_camera_folder_that_vanishes_shows_while_it_is_gone(
    rig_factory: Any, pins: MockFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "shelf"
    folder.mkdir()
    Image.new("RGB", (64, 48), "white").save(folder / "a.jpg")
    rig = await rig_factory(load_scenario("where-is-sku"))
    settings = CameraSettings(backend="directory", directory=folder, retry_s=0.0)
    camera = start_camera(settings, rig.bus)
    assert camera is not None
    streamer = SnapshotStreamer.from_settings(settings, camera, rig.bus)
    device = Device_(rig, pins, camera=streamer.run)
    await device.start()
    try:
        shutil.rmtree(folder)
        with pytest.raises(CameraError):
            await streamer.still()
        health = device.status()["health"]["camera"]
        assert health["health"] == "recovering" and health["required"] is False
        assert "camera unavailable" in health["reason"]
        # Optional: the device stays usable (idle) but the LED says the camera is broken,
        # for as long as it is, not for a moment.
        await device.shows(PanelState.ERROR)
        assert device.status()["state"] == "idle"
        # Past the panel's one-off warning for a failed capture (leds.warning_s).
        await asyncio.sleep(settings_from_dict({}).leds.warning_s + 0.5)
        assert device.board.leds is not None
        assert device.board.leds.shown is PanelState.ERROR

        folder.mkdir()
        Image.new("RGB", (64, 48), "white").save(folder / "a.jpg")
        await streamer.still()
        await device.shows(PanelState.IDLE)
        assert device.status()["health"]["camera"]["health"] == "ok"
    finally:
        await device.finish()
        await camera.close()
