"""The gpiozero talk button and the control socket drive the same path into a session."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from device.audio.source import WavSource
from device.config import settings_from_dict
from device.events import ButtonEvent, Event, State, StateChanged
from device.panel.board import Board
from device.service.control import ControlServer
from device.sim.scenario import load_scenario


async def test_holding_the_gpio_button_runs_a_turn(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = await rig_factory(load_scenario("where-is-sku"))
    settings = settings_from_dict(
        {
            "gpio": {"pin_factory": "mock"},
            "button": {"pin": "GPIO17", "hold_s": 0.05, "bounce_s": 0},
            "leds": {"kind": "rgb"},
        }
    )
    board = Board(settings, bus=rig.bus, handler=rig.appliance)
    board.open(asyncio.get_running_loop())
    runner = asyncio.create_task(rig.appliance.run())
    try:
        pin = board.factory.pin(17)
        async with rig.bus.stream() as events:
            pin.drive_low()  # pressed: the button pulls the pin to ground
            while rig.appliance.state != State.CONNECTING:
                await events.get()
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        pin.drive_high()
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        board.close()
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]
    assert rig.emulator.record.reply_pcm[0]
    # The release told the service the worker had finished (server turn detection).
    markers = [m.kind for m in rig.emulator.record.connections[0].markers]
    assert "audio_stream_end" in markers


async def test_control_socket_press_and_release(rig_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = await rig_factory(load_scenario("where-is-sku"))
    seen: list[Event] = []
    rig.bus.subscribe(seen.append)

    def handle(command: str, _request: dict[str, object]) -> dict[str, object]:
        getattr(rig.appliance, command)("control")
        return rig.appliance.snapshot()

    control = ControlServer(tmp_path / "ctl.sock", handle)
    await control.start()
    runner = asyncio.create_task(rig.appliance.run())
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "ctl.sock"))
        writer.write(b'{"cmd": "press"}\n')
        answer = json.loads(await reader.readline())
        assert answer["ok"] and answer["state"] in ("listening", "connecting")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        writer.write(b'{"cmd": "release"}\n')
        assert json.loads(await reader.readline())["ok"]
        writer.write(b'{"cmd": "launch"}\n')
        refused = json.loads(await reader.readline())
        assert not refused["ok"] and "unknown command" in refused["error"]
        writer.close()
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await control.stop()
    buttons = [(e.action, e.source) for e in seen if isinstance(e, ButtonEvent)]
    assert buttons == [("press", "control"), ("release", "control")]
    states = [e.state for e in seen if isinstance(e, StateChanged)]
    assert states[-3:] == [State.CONVERSING, State.CLOSING, State.IDLE]


async def test_after_a_control_press_and_release_the_open_session_still_hears(  # type: ignore[no-untyped-def]
    rig_factory, mic_script
) -> None:
    """The LED shows listening once the reply is over; what the worker says then must go out."""
    wav, _ = mic_script(2, gap_s=8.0)
    scenario = load_scenario("where-is-sku").model_copy(update={"loop": True})
    rig = await rig_factory(
        scenario, mic=WavSource(wav, speed=4, tail_silence_s=None), idle_timeout_s=20.0
    )
    runner = asyncio.create_task(rig.appliance.run())
    try:
        rig.appliance.press("control")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        rig.appliance.release("control")
        # The second question comes with the button up: it is heard and answered.
        await rig.emulator.wait_for_turns(2, timeout_s=30)
        await rig.finish()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    first, second = rig.emulator.record.connections[0].turns[:2]
    assert second.end_sample > first.end_sample
