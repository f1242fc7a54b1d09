"""Assemble the appliance from settings and run it until told to stop.

`warehouse-voice run` and `warehouse-voice demo` both come through here: the demo differs only
in its settings (WAV audio, mock GPIO, the emulator's URL), never in code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

from device.appliance import Appliance
from device.audio.capture import Capture
from device.audio.cued import CuedWavSource
from device.audio.echo import SpeakerTap, build_echo_stage
from device.audio.sink import AudioSink, PyAudioSink, WavSink
from device.audio.source import AudioSource, PyAudioSource, WavSource
from device.config import Settings
from device.events import Event, EventBus, State, StateChanged
from device.live.connect import LiveConnector
from device.live.connect import live_connector as connect_live
from device.live.session import ToolRunner
from device.panel.board import Board
from device.preflight import Resolved
from device.service.control import ControlServer
from device.service.eventlog import EventLog
from device.service.metrics import start_metrics
from device.service.notify import Notifier, status_subscriber, watchdog_task
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from device.tools.registry import ToolSet
from device.vision.eye import Eye
from device.wake.listener import build_listener

log = logging.getLogger(__name__)


def build_mic(settings: Settings, bus: EventBus) -> AudioSource:
    audio = settings.audio
    if audio.input == "wav" and audio.input_wav_cue == "listening":
        assert audio.input_wav is not None
        cued = CuedWavSource(
            settings.path(audio.input_wav), chunk_ms=audio.chunk_ms, speed=audio.speed
        )

        def cue(event: Event) -> None:
            if isinstance(event, StateChanged) and event.state == State.LISTENING:
                cued.cue()

        bus.subscribe(cue)
        return cued
    if audio.input == "wav":
        assert audio.input_wav is not None
        return WavSource(
            settings.path(audio.input_wav),
            chunk_ms=audio.chunk_ms,
            speed=audio.speed,
            # Like a live microphone, the file is followed by silence until the daemon stops.
            tail_silence_s=None,
        )
    return PyAudioSource(audio.input_device, chunk_ms=audio.chunk_ms)


def build_speaker(settings: Settings) -> AudioSink:
    audio = settings.audio
    if audio.output == "wav":
        assert audio.output_wav is not None
        return WavSink(settings.path(audio.output_wav), speed=audio.speed)
    return PyAudioSink(audio.output_device)


def build_tools(settings: Settings, resolved: Resolved, bus: EventBus) -> ToolSet:
    tools = settings.tools
    client = InventoryClient(
        tools.inventory_url, resolved.inventory_token or "", timeout_s=tools.timeout_s
    )
    dispatcher = ToolDispatcher(
        bus=bus,
        client=client,
        enabled=tools.enabled,
        confirm_words=tools.confirm_words,
        timeout_s=tools.timeout_s,
        # The panel's router decides which press confirms (a tap, never a hold-to-talk).
        button_confirms=False,
    )
    return ToolSet(dispatcher, bus=bus, timeout_s=tools.timeout_s)


def live_connector(settings: Settings, resolved: Resolved, tools: ToolRunner) -> LiveConnector:
    return connect_live(
        settings,
        instructions=resolved.instructions,
        declarations=tools.declarations(),
        api_key=resolved.api_key,
        inventory_token=resolved.inventory_token,
    )


@contextlib.asynccontextmanager
async def assemble(
    settings: Settings, resolved: Resolved, bus: EventBus
) -> AsyncIterator[Appliance]:
    """Build every part; close them all on the way out, whatever happened."""
    event_log = EventLog(
        settings.state_path(settings.device.event_log), device_id=settings.device.id
    )
    bus.subscribe(event_log)
    tools = build_tools(settings, resolved, bus)
    mic = build_mic(settings, bus)
    # The tap keeps what the speaker played: the echo stage's reference.
    speaker = SpeakerTap(build_speaker(settings))
    echo = build_echo_stage(settings.echo, speaker, bus=bus)
    capture = Capture(
        mic,
        bus=bus,
        preroll_s=settings.audio.preroll_s,
        processor=echo,
        retry_max_s=settings.audio.reopen_max_s,
    )
    holder: list[Appliance] = []
    eye = Eye(settings, bus=bus, conversation=lambda: holder[0].conversation if holder else None)
    if eye.available:
        # A voice-only device does not offer the model tools it cannot run.
        tools.add(eye.tools.declarations(), eye.tools.handlers())
    appliance = Appliance(
        bus=bus,
        mic=mic,
        speaker=speaker,
        tools=tools,
        connector=live_connector(settings, resolved, tools),
        model=settings.live.model,
        manual_turns=settings.live.turn_detection == "manual",
        idle_timeout_s=settings.live.idle_timeout_s,
        connect_timeout_s=settings.live.connect_timeout_s,
        on_confirm=lambda: tools.confirm("button"),
    )
    holder.append(appliance)
    listener = build_listener(
        settings,
        bus=bus,
        capture=capture,
        on_wake=appliance.wake,
        on_end=appliance.wake_ended,
        speaking=lambda: appliance.speaking,
    )
    appliance.use_capture(capture, *([listener.run] if listener is not None else []))
    metrics = start_metrics(settings, bus, speaker)
    appliance.status_sections["metrics"] = metrics.summary
    control = ControlServer(settings.device.control_socket, _control_handler(appliance))
    board = Board(settings, bus=bus, handler=appliance)
    try:
        await speaker.open()
        await mic.open()
        if listener is not None:
            await listener.load()
        board.open(asyncio.get_running_loop())
        eye.start()
        await control.start()
        yield appliance
    finally:
        await control.stop()
        board.close()
        await eye.close()
        await appliance.stop()
        if listener is not None:
            await listener.close()
        if echo is not None:
            echo.close()
        await speaker.close()
        await mic.close()
        await tools.aclose()
        metrics.close()
        event_log.close()


def _control_handler(appliance: Appliance) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    def handle(command: str, _request: dict[str, Any]) -> dict[str, Any]:
        if command == "press":
            appliance.press("control")
        elif command == "release":
            appliance.release("control")
        elif command == "confirm":
            appliance.confirm()
        elif command == "hangup":
            appliance.hang_up("hung up from the control socket")
        return appliance.snapshot()

    return handle


async def run_daemon(settings: Settings, resolved: Resolved, *, bus: EventBus | None = None) -> int:
    """The daemon's main: runs until SIGTERM/SIGINT, then stops cleanly."""
    bus = bus or EventBus()
    notifier = Notifier()
    bus.subscribe(status_subscriber(notifier))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with assemble(settings, resolved, bus) as appliance:
        runner = asyncio.create_task(appliance.run(), name="appliance")
        watchdog = asyncio.create_task(watchdog_task(notifier), name="watchdog")
        notifier.ready()
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping()
        for task in (runner, watchdog, stopper):
            task.cancel()
        await asyncio.gather(runner, watchdog, stopper, return_exceptions=True)
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            log.error("appliance stopped: %s", runner.exception())
            return 1
    return 0
