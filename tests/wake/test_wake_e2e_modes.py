"""The wake listener on its own, and the turn-taking modes around it.

- While the device speaks, the wake word is ignored (and heard again once it is quiet).
- Manual turn detection: the wake word is off and push-to-talk marks each turn with
  activityStart/activityEnd, which the emulator records where they fell in the audio.
- A device without its models says so and keeps working by button.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from test_wake_e2e_rig import RATE, hands_free, ms, write_wav

from device.audio.capture import Capture
from device.audio.cued import CuedWavSource
from device.audio.source import WavSource
from device.config import REPO_CONFIG_DIR, settings_from_dict
from device.events import ErrorRaised, Event, EventBus, State, StateChanged
from device.sim.scenario import load_scenario
from device.sim.speech import noise, synthesize_parts
from device.wake.build import build_listener
from device.wake.detector import WakeDetector, WakeHit
from device.wake.endpoint import EndFinder
from device.wake.listener import WakeEndFound, WakeListener
from device.wake.models import ModelSet

REQUEST_WAV = REPO_CONFIG_DIR / "demo" / "where-is-sku.wav"


async def test_the_wake_word_is_ignored_while_the_device_speaks(
    tmp_path: Path, model_set: ModelSet
) -> None:
    speech, ends = synthesize_parts(["hey jarvis", "where is SKU one zero four four one seven"])
    quiet = noise(3.0, level_dbfs=-60, seed=8)
    pcm = quiet + speech + quiet + speech + quiet
    first_end = len(quiet) // 2 + ends[0]
    second_start = (len(quiet) + len(speech) + len(quiet)) // 2
    second_end = second_start + ends[0]
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    capture = Capture(WavSource(write_wav(tmp_path / "mic.wav", pcm), speed=math.inf), bus=bus)
    melspec, embedding = model_set.feature_paths("onnx")
    finder = EndFinder(
        model_set.get("hey_jarvis").path, melspec_path=melspec, embedding_path=embedding
    )
    woke: list[WakeHit] = []
    ended: list[int] = []
    detector = WakeDetector.from_model_set(model_set)
    listener = WakeListener(
        detector,
        capture,
        bus=bus,
        on_wake=woke.append,
        on_end=ended.append,
        # The device is talking through the first phrase and quiet for the second.
        speaking=lambda: detector.samples_seen < second_start - RATE,
        finders={"hey_jarvis": finder},
    )
    await listener.load()
    task = asyncio.create_task(listener.run())
    try:
        async with bus.stream() as stream, asyncio.timeout(60):
            await asyncio.sleep(0)  # the listener subscribes before capture starts
            async for _ in capture.frames():
                pass
            while not any(isinstance(e, WakeEndFound) for e in events):
                await stream.get()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.close()

    assert listener.suppressed_samples >= first_end
    assert len(woke) == 1 and woke[0].detected_sample > second_start
    # The end is announced after the wake, and it is where the second wake word ended.
    assert len(ended) == 1
    print(f"wake end found {ms(ended[0] - second_end):+.1f} ms from the truth")
    assert abs(ended[0] - second_end) <= RATE // 10


def test_manual_turns_and_a_device_without_models_keep_the_wake_word_off(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    errors: list[Event] = []
    bus.subscribe(errors.append)
    capture = Capture(WavSource(REQUEST_WAV), bus=bus)

    def build(**sections: object) -> WakeListener | None:
        settings = settings_from_dict({"device": {"state_dir": str(tmp_path)}, **sections})
        return build_listener(
            settings,
            bus=bus,
            capture=capture,
            on_wake=lambda hit: None,
            on_end=lambda end: None,
            speaking=lambda: False,
        )

    assert build(live={"turn_detection": "manual"}) is None
    assert errors == []
    assert build(wake={"enabled": False}) is None
    assert build() is None  # no models in the state directory
    [error] = [e for e in errors if isinstance(e, ErrorRaised)]
    assert error.where == "wake"
    assert "wake word off" in error.message and "warehouse-voice models fetch" in error.message


@pytest.mark.slow
async def test_push_to_talk_in_manual_mode_marks_the_turn(
    tmp_path: Path, model_set: ModelSet
) -> None:
    mic = CuedWavSource(REQUEST_WAV, speed=4.0)
    scenario = load_scenario("where-is-sku").model_copy(update={"speed": 10.0})
    # The idle timeout runs on the wall clock from the end marker until the service's first
    # answer; the emulator shares this event loop, and a loaded machine can hold it up longer.
    async with hands_free(
        tmp_path, model_set, scenario, mic, turn_detection="manual", idle_timeout_s=5.0
    ) as rig:

        def cue(event: Event) -> None:
            if isinstance(event, StateChanged) and event.state == State.LISTENING:
                mic.cue()

        rig.bus.subscribe(cue)
        await mic.open()  # as the daemon does, so the first cue has the file to say
        await rig.start()
        rig.appliance.press("gpio")
        await mic.wait_said()
        rig.appliance.release("gpio")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        await rig.wait_closed()
    conn = rig.emulator.record.connections[0]
    markers = [m.kind for m in conn.markers if m.kind.startswith("activity")]
    assert markers == ["activity_start", "activity_end"]
    assert conn.turns[0].end_reason == "activity_end"
    # Everything said while the button was held went out before the end marker.
    end = next(m.sample for m in conn.markers if m.kind == "activity_end")
    assert end >= mic.audio_samples
    assert rig.emulator.record.tool_responses[0].id == "call-1"
