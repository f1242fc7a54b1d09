"""The hands-free rig: an appliance with one capture stream, the real wake listener and the Live
emulator behind the real google-genai client. Shared by the wake end-to-end tests. The room the
faster-than-real-time tests play in (`RoomMic`, `RoomSpeaker`, `Leashed`, `until`) lives in
`test_wake_e2e_room` and is re-exported here.

(A module of helpers, named so that only the wake tests' own folder imports it; it holds no
tests.)
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from test_wake_e2e_room import RATE, Leashed, RoomMic, RoomSpeaker, until

from device.appliance import Appliance
from device.audio.capture import Capture
from device.audio.sink import AudioSink, WavSink
from device.audio.source import AudioSource
from device.config import settings_from_dict
from device.events import Event, EventBus, Metric, State, StateChanged, WakeDetected
from device.live.connect import LiveConnector, read_instructions
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario
from device.wake.detector import WakeDetector, WakeHit
from device.wake.endpoint import EndFinder, needed_after
from device.wake.listener import WakeEndFound, WakeListener
from device.wake.models import ModelSet


@dataclass
class Tools:
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
class HandsFree:
    appliance: Appliance
    capture: Capture
    listener: WakeListener
    emulator: Emulator
    bus: EventBus
    events: list[Event]
    runner: asyncio.Task[None] | None = None

    @property
    def states(self) -> list[State]:
        return [e.state for e in self.events if isinstance(e, StateChanged)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def start(self) -> None:
        self.runner = asyncio.create_task(self.appliance.run())
        await asyncio.sleep(0)

    async def wait_closed(self, timeout_s: float = 60.0) -> None:
        """Until a session has ended and the appliance is idle again."""
        async with self.bus.stream() as queue, asyncio.timeout(timeout_s):
            while not (State.CLOSING in self.states and self.states[-1] == State.IDLE):
                await queue.get()

    async def stop(self) -> None:
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.gather(self.runner, return_exceptions=True)


def worst_alignment_score(model_set: ModelSet, pcm: bytes) -> float:
    """The wake word's best score on `pcm` as the daemon's detector scores it, at the worst of
    16 offsets against openWakeWord's 80 ms frame grid.

    A phrase played in real time (into PulseAudio) lands at a random offset in that grid, and
    openWakeWord's score moves with it: "hey jarvis" with "next one" after it and no pause
    scored .40-.49 at 3 of 16 offsets on bare 80 ms frames (.98 at the rest), so a real-time
    test that used it missed its wake word about one run in five. The detector now also scores
    windows between frames (`device.wake.detector.EVERY_MS`); a test still checks its phrase
    with this first, so a miss is the product's, not the phrase's. Judged as the detector
    judges: each frame's best window, held over `CONFIRM_FRAMES` frames.
    """
    from device.bench.wake_score import confirmed
    from device.sim.speech import noise
    from device.wake.detector import CONFIRM_FRAMES, EVERY_MS
    from device.wake.runtime import FRAME_SAMPLES, runtime_for, scored_windows

    speech = np.frombuffer(pcm, dtype="<i2")
    worst = 1.0
    for offset in range(0, FRAME_SAMPLES, FRAME_SAMPLES // 16):
        runtime = runtime_for(model_set, every_ms=EVERY_MS)
        lead = np.frombuffer(noise((RATE + offset) / RATE, level_dbfs=-60, seed=offset), "<i2")
        audio = np.concatenate([lead, speech, np.zeros(RATE, dtype=np.int16)])
        frames = audio[: audio.size // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        pooled = []  # each frame's best window, as the detector judges a frame
        for frame in frames:
            scores = runtime.predict(frame)
            pooled.append(max(max(w.values()) for _, w in scored_windows(runtime, 0, scores)))
        # A hit needs the score held over CONFIRM_FRAMES frames.
        best = float(confirmed(np.array(pooled, np.float32), CONFIRM_FRAMES).max())
        worst = min(worst, best)
    return worst


def write_wav(path: Path, pcm: bytes, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path


@contextlib.asynccontextmanager
async def hands_free(
    tmp_path: Path,
    model_set: ModelSet,
    scenario: Scenario,
    mic: AudioSource,
    *,
    speaker: AudioSink | None = None,
    preroll_s: float = 2.0,
    processor: Any = None,
    ignore_while_speaking: bool = True,
    refine: bool = True,
    retry_s: tuple[float, float] = (0.5, 10.0),
    **live: Any,
) -> AsyncIterator[HandsFree]:
    """An appliance listening for "hey jarvis" on `mic`, wired as the daemon wires it."""
    workdir = tmp_path / "emulator"
    async with Emulator(scenario, workdir=workdir, api_key="test-key") as emulator:
        settings = settings_from_dict(
            {
                "device": {"id": "wake-test", "state_dir": str(tmp_path)},
                "live": {
                    "base_url": emulator.url,
                    "ca_file": str(emulator.ca_file),
                    "idle_timeout_s": 1.0,
                    **live,
                },
            }
        )
        tools = Tools()
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        sink = speaker or WavSink(tmp_path / "reply.wav", speed=20.0)
        await sink.open()
        appliance = Appliance(
            bus=bus,
            mic=mic,
            speaker=sink,
            tools=tools,
            connector=LiveConnector(
                settings,
                instructions=read_instructions(settings),
                declarations=tools.declarations(),
                api_key="test-key",
            ),
            model=settings.live.model,
            manual_turns=settings.live.turn_detection == "manual",
            idle_timeout_s=settings.live.idle_timeout_s,
            connect_timeout_s=settings.live.connect_timeout_s,
        )
        capture = Capture(
            mic,
            bus=bus,
            preroll_s=preroll_s,
            processor=processor,
            retry_initial_s=retry_s[0],
            retry_max_s=retry_s[1],
        )
        detector = WakeDetector.from_model_set(model_set)
        melspec, embedding = model_set.feature_paths("onnx")
        finders = (
            {
                "hey_jarvis": EndFinder(
                    model_set.get("hey_jarvis", "onnx").path,
                    melspec_path=melspec,
                    embedding_path=embedding,
                )
            }
            if refine
            else {}
        )
        listener = WakeListener(
            detector,
            capture,
            bus=bus,
            on_wake=appliance.wake,
            on_end=appliance.wake_ended,
            speaking=lambda: appliance.speaking,
            ignore_while_speaking=ignore_while_speaking,
            finders=finders,
        )
        await detector.load()  # as the daemon does before it starts capturing
        appliance.use_capture(capture, listener.run)
        if isinstance(mic, (RoomMic, Leashed)):

            def backlog() -> int:
                # Audio the wake listener has not taken; audio the session has not sent (its
                # outbox drops the oldest past 15 s); and audio held back for the session
                # beyond what the end finder needs, while it works. The session gets the held
                # audio all at once when the end is found: unchecked, a microphone at 4x or
                # 10x ran past the outbox during a refinement that took 3.5 s on a loaded
                # machine, and the request fell out of it.
                conversation = appliance.conversation
                unsent = conversation.outbox._audio_bytes // 2 if conversation else 0
                held = max((capture.samples - needed_after(h) for h in listener._held), default=0)
                return max(capture.backlog_samples, unsent, held)

            mic.backlog = backlog
        rig = HandsFree(appliance, capture, listener, emulator, bus, events)
        try:
            yield rig
        finally:
            await rig.stop()
            await appliance.stop()
            await detector.close()
            await sink.close()
            await mic.close()


def locate(haystack: bytes, needle: bytes) -> int:
    """The sample offset at which `needle` occurs in `haystack` (PCM16), or -1."""
    at = haystack.find(needle)
    while at != -1 and at % 2:
        at = haystack.find(needle, at + 1)
    return at // 2 if at != -1 else -1


async def wake_hits(model_set: ModelSet, pcm: bytes) -> list[WakeHit]:
    """What a fresh detector hears in `pcm` (after 2 s of silence to settle its features)."""
    hits = []
    async with WakeDetector.from_model_set(model_set) as detector:
        audio = bytes(4 * RATE) + pcm + bytes(RATE)
        for offset in range(0, len(audio), 640):
            hit = await detector.process(audio[offset : offset + 640])
            if hit is not None:
                hits.append(hit)
    return hits


def ms(samples: int) -> float:
    return 1000 * samples / RATE


def peak_level_db(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return 20 * float(np.log10(max(1.0, float(np.max(np.abs(samples)))) / 32768))


__all__ = [
    "RATE",
    "HandsFree",
    "Leashed",
    "Metric",
    "RoomMic",
    "RoomSpeaker",
    "WakeDetected",
    "WakeEndFound",
    "hands_free",
    "locate",
    "ms",
    "peak_level_db",
    "until",
    "wake_hits",
    "write_wav",
]
