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
from typing import Any, Protocol

from device.appliance import Appliance
from device.audio.barge_in import LocalBargeIn
from device.audio.capture import Capture
from device.audio.cued import CuedWavSource
from device.audio.echo import SpeakerTap, build_echo_stage
from device.audio.errors import AudioError
from device.audio.sink import AudioSink, PyAudioSink, WavSink
from device.audio.source import AudioSource, PyAudioSource, WavSource
from device.config import Settings
from device.events import Event, EventBus, State, StateChanged
from device.live.connect import LiveConnector
from device.live.connect import live_connector as connect_live
from device.live.session import ToolRunner
from device.panel.board import Board, panel_settings
from device.preflight import Resolved
from device.service.control import ControlServer
from device.service.eventlog import EventLog
from device.service.metrics import start_metrics
from device.service.notify import Notifier, status_subscriber, watchdog_task
from device.service.parts import speaker_stall_s, supervise_parts
from device.service.shutdown import EXIT_NOT_CLEAN, PartsStopper
from device.service.supervisor import Supervisor
from device.tools.dispatcher import ToolDispatcher
from device.tools.operator import BadgeScanner, SignOn
from device.tools.registry import ToolSet
from device.tools.write_queue import QueueingInventoryClient, WriteQueue
from device.vision.eye import Eye
from device.vision.lookup import inventory_lookup
from device.wake.build import build_listener

log = logging.getLogger(__name__)


class Confirmer(Protocol):
    def confirm(self, source: str) -> bool: ...


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


def build_tools(
    settings: Settings, resolved: Resolved, bus: EventBus, queue: WriteQueue
) -> ToolSet:
    tools = settings.tools
    client = QueueingInventoryClient(
        tools.inventory_url,
        resolved.inventory_token or "",
        queue=queue,
        timeout_s=tools.timeout_s,
        direct_timeout_s=tools.timeout_s / 2,
    )
    dispatcher = ToolDispatcher(
        bus=bus,
        client=client,
        enabled=tools.enabled,
        confirm_words=tools.confirm_words,
        timeout_s=tools.timeout_s,
        # The panel's router decides which press confirms (a tap, never a hold-to-talk).
        button_confirms=False,
        sign_on=SignOn(client, unsigned_writes=tools.unsigned_writes),
    )
    return ToolSet(dispatcher, bus=bus, timeout_s=tools.timeout_s)


def build_write_queue(settings: Settings, bus: EventBus) -> WriteQueue:
    return WriteQueue(
        settings.state_path(settings.tools.write_queue),
        bus=bus,
        retry_max_s=settings.tools.write_queue_retry_max_s,
    )


def badge_scanner(eye: Eye) -> BadgeScanner:
    async def scan() -> list[str]:
        found = await eye.tools.scan_barcode({})
        return [str(code.get("text", "")) for code in found.get("codes", [])]

    return scan


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
    settings: Settings, resolved: Resolved, bus: EventBus, *, stopper: PartsStopper | None = None
) -> AsyncIterator[Appliance]:
    """Build every part; close them all on the way out (each within `stopper`'s bound),
    whatever happened."""
    event_log = EventLog(
        settings.state_path(settings.device.event_log),
        device_id=settings.device.id,
        max_bytes=round(settings.device.event_log_max_mb * 1024 * 1024),
        backups=settings.device.event_log_backups,
    )
    bus.subscribe(event_log)
    write_queue = build_write_queue(settings, bus)
    tools = build_tools(settings, resolved, bus, write_queue)
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
    eye = Eye(
        settings,
        bus=bus,
        conversation=lambda: holder[0].conversation if holder else None,
        exists=inventory_lookup(tools.dispatcher.client),
    )
    if eye.available:
        # A voice-only device does not offer the model tools it cannot run.
        tools.add(eye.tools.declarations(), eye.tools.handlers())
        if tools.dispatcher.sign_on is not None:
            tools.dispatcher.sign_on.scan_badge = badge_scanner(eye)
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
    # The echo gate's barge-in stops the reply here, without waiting for the service.
    barge_in = LocalBargeIn(bus, appliance, manual_turns=settings.live.turn_detection == "manual")
    listener = build_listener(
        settings,
        bus=bus,
        capture=capture,
        on_wake=appliance.wake,
        on_end=appliance.wake_ended,
        speaking=lambda: appliance.speaking,
    )
    # The wake listener and the camera run under the supervisor, not as the capture's companions.
    appliance.use_capture(capture)
    board = Board(settings, bus=bus, handler=appliance)
    supervisor = appliance.supervisor = Supervisor(bus, backoff_max_s=settings.audio.reopen_max_s)
    unsupervise = supervise_parts(
        supervisor,
        bus,
        speaker=speaker,
        capture=appliance.capture_loop,
        wake=listener.run if listener is not None else None,
        camera=eye.streamer.run if eye.available else None,
        budget_s=60.0,
        speaker_stall_s=speaker_stall_s(Notifier().watchdog_interval()),
        link=appliance.link.run,
        panel=board.run,
    )
    metrics = start_metrics(settings, bus, speaker)
    appliance.status_sections["metrics"] = metrics.summary
    appliance.status_sections["write_queue"] = write_queue.summary
    appliance.status_sections["health"] = supervisor.snapshot
    metrics.collector.families.wake_enabled.set(listener is not None)
    control = ControlServer(settings.device.control_socket, control_handler(appliance, tools))
    try:
        # A speaker or mic missing at boot is a fault the supervisor waits out (the LED and
        # `status` say so), never a reason to exit: nobody is there to restart the device.
        with contextlib.suppress(AudioError):
            await speaker.open()
        with contextlib.suppress(AudioError):
            await mic.open()
        if listener is not None:
            await listener.load()
        # The panel opens as a supervised part; a bad panel configuration stops the boot here.
        panel_settings(settings)
        await control.start()
        await write_queue.start()
        yield appliance
    finally:
        # Each part within a bound: one hung in its device must not hold the rest, or the stop.
        stop = stopper if stopper is not None else PartsStopper()
        unsupervise()
        await stop.close("control socket", control.stop)
        await stop.close("panel", board.close)
        await stop.close("camera", eye.close)
        await stop.close("appliance", appliance.stop)
        await stop.close("voice barge-in", barge_in.close)
        if listener is not None:
            await stop.close("wake listener", listener.close)
        if echo is not None:
            await stop.close("echo canceller", echo.close)
        await stop.close("speaker", speaker.close)
        await stop.close("microphone", mic.close)
        await stop.close("write queue", write_queue.aclose)
        await stop.close("tool runner", tools.aclose)
        await stop.close("metrics", metrics.close)
        await stop.close("event log", event_log.close)


def control_handler(
    appliance: Appliance, tools: Confirmer
) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The control socket's commands. `confirm` is a confirm source like the button and the
    voice: it counts only after a matching read-back (else it is ignored and reported)."""

    def handle(command: str, _request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        if command == "press":
            appliance.press("control")
        elif command == "release":
            appliance.release("control")
        elif command == "confirm":
            answer["confirmed"] = tools.confirm("control")
        elif command == "hangup":
            appliance.hang_up("hung up from the control socket")
        return {**appliance.snapshot(), **answer}

    return handle


async def run_daemon(
    settings: Settings,
    resolved: Resolved,
    *,
    bus: EventBus | None = None,
    stopper: PartsStopper | None = None,
) -> int:
    """The daemon's main: runs until SIGTERM/SIGINT, then stops: 0 when every part closed,
    `EXIT_NOT_CLEAN` when one failed or hung in its device (`stopper.hung` names those)."""
    stopper = stopper if stopper is not None else PartsStopper()
    bus = bus or EventBus()
    notifier = Notifier()
    bus.subscribe(status_subscriber(notifier))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    failed = False
    async with assemble(settings, resolved, bus, stopper=stopper) as appliance:
        supervisor = appliance.supervisor
        assert supervisor is not None
        runner = asyncio.create_task(appliance.run(), name="appliance")
        watchdog = asyncio.create_task(
            watchdog_task(notifier, healthy=supervisor.healthy), name="watchdog"
        )
        notifier.ready()
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping()
        stopper.arm_deadline()
        for task in (runner, watchdog, stopped):
            task.cancel()
        await asyncio.gather(runner, watchdog, stopped, return_exceptions=True)
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            log.error("appliance stopped: %s", runner.exception())
            failed = True
    # The deadline stays armed: the caller's loop close may still wait on a stuck thread.
    return EXIT_NOT_CLEAN if failed or stopper.hung or stopper.failed else 0
