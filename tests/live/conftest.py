"""Shared pieces for driving the appliance against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device.appliance import Appliance
from device.audio.sink import AudioSink, WavSink
from device.audio.source import AudioSource, WavSource
from device.audio.wavio import read_wav
from device.config import REPO_CONFIG_DIR, Settings, settings_from_dict
from device.events import Event, EventBus, State, StateChanged
from device.inventory.server import RunningInventory, serve_inventory
from device.live.connect import LiveConnector, read_instructions
from device.service.eventlog import EventLog
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario

REQUEST_WAV = REPO_CONFIG_DIR / "demo" / "where-is-sku.wav"


@dataclass
class RecordingTools:
    """Answers every call with a fixed result and remembers what it was asked."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def declarations(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "find_item",
                "description": "Find where an item is stored.",
                "parameters": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}},
                    "required": ["sku"],
                },
            }
        ]

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((call_id, name, args))
        return {"status": "ok", "speakable": "Aisle twelve, bay three, level B, forty units."}


@dataclass
class Rig:
    appliance: Appliance
    emulator: Emulator
    bus: EventBus
    mic: AudioSource
    speaker: AudioSink
    tools: Any
    event_log: EventLog
    states: list[State]
    runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the appliance (its mic loop) in the background."""
        self.runner = asyncio.create_task(self.appliance.run())
        await asyncio.sleep(0)

    async def finish(self, timeout_s: float = 30.0) -> None:
        """Hang up, wait until the appliance settled, stop it and close the event log.

        The emulator streams faster than real time, so what it sent may still be on its way:
        first let the device receive every reply byte sent (if one session got them all)."""
        conversation = self.appliance.conversation
        if conversation is not None:
            sent = sum(len(pcm) for pcm in self.emulator.record.reply_pcm)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await conversation.player.wait_received(sent)
        self.appliance.hang_up("test over")
        await self.wait_until_idle_after_session(timeout_s)
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.gather(self.runner, return_exceptions=True)
        self.event_log.close()

    async def wait_until_idle_after_session(self, timeout_s: float = 30.0) -> None:
        """Until a session has closed and the appliance settled in idle or error."""
        async with self.bus.stream() as events, asyncio.timeout(timeout_s):
            while not self._settled():
                await events.get()

    def _settled(self) -> bool:
        return State.CLOSING in self.states and self.states[-1] in (
            State.IDLE,
            State.ERROR,
            State.OFFLINE,
        )


@pytest.fixture
def mic_script(tmp_path: Path) -> Callable[..., tuple[Path, bytes]]:
    """A worker who asks the demo question `times` times, `gap_s` of silence after each.

    Returns the WAV (for a WavSource) and its 16 kHz PCM, which is what the microphone sends.
    """

    def make(times: int, gap_s: float, lead_s: float = 0.0) -> tuple[Path, bytes]:
        question = read_wav(REQUEST_WAV, 16000)
        gap = bytes(2 * int(gap_s * 16000))
        pcm = bytes(2 * int(lead_s * 16000)) + (question + gap) * times
        path = tmp_path / f"mic-{times}x{gap_s:g}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(pcm)
        return path, pcm

    return make


def live_settings(emulator: Emulator, tmp_path: Path, **live: Any) -> Settings:
    return settings_from_dict(
        {
            "device": {"id": "test-01", "state_dir": str(tmp_path)},
            "live": {
                "base_url": emulator.url,
                "ca_file": str(emulator.ca_file),
                "idle_timeout_s": 0.5,
                **live,
            },
        }
    )


def connector(settings: Settings, tools: Any, api_key: str = "test-key") -> LiveConnector:
    """The device's own connector factory: resumes by handle, probes, carries the cues."""
    return LiveConnector(
        settings,
        instructions=read_instructions(settings),
        declarations=tools.declarations(),
        api_key=api_key,
    )


@pytest.fixture
async def rig_factory(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rig] = []
    emulators: list[Emulator] = []
    workdir = tmp_path_factory.getbasetemp() / "live-emulator"

    async def make(
        scenario: Scenario,
        *,
        speaker_speed: float = 20.0,
        mic_speed: float = 8.0,
        speaker: AudioSink | None = None,
        mic: AudioSource | None = None,
        tools: Callable[[EventBus], Any] | None = None,
        api_key: str = "test-key",
        emulator_key: str = "test-key",
        make_connector: Callable[[Settings, Any], Any] | None = None,
        emulator: Emulator | None = None,
        **live: Any,
    ) -> Rig:
        """`emulator`: one the test started (and stops) itself; otherwise one is made here."""
        if emulator is None:
            emulator = Emulator(scenario, workdir=workdir, api_key=emulator_key)
            await emulator.start()
            emulators.append(emulator)
        # 50 ms chunks: at mic_speed 8-20, 20 ms chunks would ask the device for 400-1000
        # frames a second, a backlog on a loaded machine that delays tool answers.
        mic = mic or WavSource(REQUEST_WAV, speed=mic_speed, tail_silence_s=None, chunk_ms=50)
        # The replay bounds count audio, and this microphone outruns a worker `speed` times:
        # scaled, they hold about the wall time 15 s of real speech does. Unscaled, a reconnect
        # that took 2.6 s on a loaded machine was 10 s of 4x audio, and the oldest to re-send
        # (the request after the handle) was dropped.
        pace = float(getattr(mic, "speed", 1.0))
        live.setdefault("replay_audio_s", min(120.0, 15.0 * pace))
        settings = live_settings(emulator, tmp_path, **live)
        bus = EventBus()
        states: list[State] = []

        def track(event: Event) -> None:
            if isinstance(event, StateChanged):
                states.append(event.state)

        bus.subscribe(track)
        event_log = EventLog(tmp_path / "events.jsonl", device_id="test-01")
        bus.subscribe(event_log)
        speaker = speaker or WavSink(tmp_path / "reply.wav", speed=speaker_speed)
        await speaker.open()
        made_tools = tools(bus) if tools is not None else RecordingTools()
        appliance = Appliance(
            bus=bus,
            mic=mic,
            speaker=speaker,
            tools=made_tools,
            connector=(
                make_connector(settings, made_tools)
                if make_connector is not None
                else connector(settings, made_tools, api_key)
            ),
            model=settings.live.model,
            manual_turns=settings.live.turn_detection == "manual",
            idle_timeout_s=settings.live.idle_timeout_s,
            connect_timeout_s=settings.live.connect_timeout_s,
        )
        rig = Rig(appliance, emulator, bus, mic, speaker, made_tools, event_log, states)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.appliance.stop()
        await rig.speaker.close()
        await rig.mic.close()
        rig.event_log.close()
    for emulator in emulators:
        await emulator.stop()


class TurnPacedMic(WavSource):
    """A worker who asks the demo question `times` times, and asks the next one only once the
    previous one was answered (`answered(n)` true for n answers) and `gap_s` of silence passed.

    Paced like WavSource (`speed` times real time), but the gap between questions is an event,
    not a stretch of wall clock: on a loaded machine a slow reply is never talked over by the
    next question. `delivered` is exactly what the microphone sent, for byte checks. Chunks are
    50 ms: at 8x, 20 ms chunks ask for 400 frames a second, more than a loaded machine sends.
    """

    def __init__(
        self,
        answered: Callable[[int], bool],
        *,
        times: int,
        gap_s: float,
        speed: float = 8.0,
        chunk_ms: int = 50,
    ) -> None:
        super().__init__(REQUEST_WAV, speed=speed, tail_silence_s=None, chunk_ms=chunk_ms)
        self._answered = answered
        self._times = times
        self._gap_chunks = max(1, round(gap_s * 1000 / self.chunk_ms))
        self.delivered = bytearray()
        # Where each question ended in `delivered` (bytes).
        self.question_ends: list[int] = []

    async def chunks(self) -> AsyncIterator[bytes]:
        opened_here = not self._opened
        await self.open()
        loop = asyncio.get_running_loop()
        interval = self.chunk_ms / 1000 / self.speed
        question = self._pcm + bytes(-len(self._pcm) % self.chunk_bytes)
        silence = bytes(self.chunk_bytes)
        count, start, asked, quiet = 0, loop.time(), 0, 0
        try:
            while not self._closed:
                if asked < self._times and (
                    asked == 0 or (quiet >= self._gap_chunks and self._answered(asked))
                ):
                    pieces = [
                        question[i : i + self.chunk_bytes]
                        for i in range(0, len(question), self.chunk_bytes)
                    ]
                    asked, quiet = asked + 1, 0
                    self.question_ends.append(len(self.delivered) + len(question))
                else:
                    pieces, quiet = [silence], quiet + 1
                for chunk in pieces:
                    count += 1
                    await asyncio.sleep(max(0.0, start + count * interval - loop.time()))
                    if self._closed:
                        return
                    self._samples_delivered += len(chunk) // 2
                    self.delivered += chunk
                    yield chunk
        finally:
            if opened_here:
                await self.close()


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[RunningInventory]:
    """The reference inventory API on SQLite with the demo stock."""
    async with serve_inventory(tmp_path / "inventory.db", seed="demo") as inv:
        yield inv
