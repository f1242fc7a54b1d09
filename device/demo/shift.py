"""The demo's scripted worker: what they say, when they press, and what the shift must leave.

`config/demo/shift.toml` holds the worker's steps, in step with the model's turns in
`config/scenarios/demo-shift.toml`. `{digits}` in either file stands for the check digits on
bin A-12-03's label, which only the inventory database knows.
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from device.appliance import Appliance
from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR
from device.events import Event, EventBus, Speaking
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, parse_scenario
from device.sim.speech import synthesize

SHIFT_FILE = REPO_CONFIG_DIR / "demo" / "shift.toml"
SCENARIO_FILE = REPO_CONFIG_DIR / "scenarios" / "demo-shift.toml"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    say: str = Field(min_length=1)
    barge_in_after_s: float | None = Field(default=None, gt=0)


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stock: dict[str, int] = Field(default_factory=dict)


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: list[Step] = Field(min_length=1)
    expect: Expect = Expect()


def load_shift(digits: str, path: Path = SHIFT_FILE) -> Shift:
    spoken = " ".join(DIGIT_WORDS[int(d)] for d in digits)
    return Shift.model_validate(tomllib.loads(path.read_text().replace("{digits}", spoken)))


def load_shift_scenario(digits: str, speed: float, path: Path = SCENARIO_FILE) -> Scenario:
    text = path.read_text().replace("{digits}", digits)
    scenario = parse_scenario(text, name="demo-shift", base_dir=path.parent, source=str(path))
    return scenario.model_copy(update={"speed": speed})


@dataclass
class SpeechWatch:
    """Wakes the worker whenever the device starts or stops speaking."""

    started: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Speaking):
            self.started += event.started
            self._changed.set()

    async def next_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()


async def work_shift(
    shift: Shift, appliance: Appliance, emulator: Emulator, bus: EventBus, *, speed: float
) -> None:
    """Say each step with the talk button held; wait for the device's answer between steps."""
    mic = appliance.mic
    if not isinstance(mic, CuedWavSource):
        raise TypeError(
            "the demo's worker needs [audio] input = 'wav', input_wav_cue = 'listening'"
        )
    watch = SpeechWatch()
    bus.subscribe(watch)
    voice = [await asyncio.to_thread(synthesize, step.say) for step in shift.steps]
    for number, (step, pcm) in enumerate(zip(shift.steps, voice, strict=True), start=1):
        started = watch.started
        mic.say(pcm)
        appliance.press("demo")
        await mic.wait_said()
        appliance.release("demo")
        if step.barge_in_after_s is not None:
            # Cut the reply off: the next step's press lands while the device is speaking.
            while watch.started == started:
                await watch.next_change()
            await asyncio.sleep(step.barge_in_after_s / speed)
            continue
        await emulator.wait_for_turns(number, timeout_s=60)
        # A worker waits for the device to finish speaking before the next request.
        while appliance.speaking:
            await watch.next_change()
