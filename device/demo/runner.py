"""Run the demo: the emulator, the inventory API and the appliance, all on loopback.

The appliance runs with `config/demo.toml`; the runner only fills in the addresses of the two
local servers and a work directory, then presses and releases the talk button the way a worker
would, through the same path as the GPIO button and the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.audio.cued import CuedWavSource
from device.config import REPO_CONFIG_DIR, ConfigError, Settings, load_settings
from device.daemon import assemble
from device.demo.display import Display
from device.events import Event, EventBus, State, StateChanged, ToolFinished, Transcript
from device.inventory.server import serve_inventory
from device.preflight import preflight
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

DEMO_CONFIG = REPO_CONFIG_DIR / "demo.toml"
DEMO_API_KEY = "demo-key-not-secret"


@dataclass
class Tally:
    states: list[str] = field(default_factory=list)
    transcripts: list[tuple[str, str]] = field(default_factory=list)
    tools: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.states.append(event.state.value)
        elif isinstance(event, Transcript):
            self.transcripts.append((event.role, event.text))
        elif isinstance(event, ToolFinished):
            self.tools.append((event.name, event.status))


def run_demo(*, speed: float = 1.0, workdir: Path | None = None, plain: bool = False) -> int:
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wv-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            return asyncio.run(demo(workdir, speed=speed, colour=False if plain else None))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 78
    return 1  # unreachable: the with-block always returns


async def demo(workdir: Path, *, speed: float, colour: bool | None = None) -> int:
    bus = EventBus()
    tally = Tally()
    bus.subscribe(Display(colour=colour))
    bus.subscribe(tally)
    scenario = load_scenario("where-is-sku")
    print(f"warehouse-voice demo: work directory {workdir}")
    async with (
        serve_inventory(workdir / "inventory.db", seed="demo") as inventory,
        Emulator(scenario, workdir=workdir / "emulator", api_key=DEMO_API_KEY) as emulator,
    ):
        settings = demo_settings(workdir, emulator.url, emulator.ca_file, inventory, speed)
        resolved = preflight(settings)
        async with assemble(settings, resolved, bus) as appliance:
            runner = asyncio.create_task(appliance.run())
            await shift(appliance, bus, settings)
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        reply = settings.path(settings.audio.output_wav or Path("reply.wav"))
        sent = sum(len(turn) for turn in emulator.record.reply_pcm)
    return summarize(tally, reply, sent)


def demo_settings(workdir: Path, url: str, ca_file: Path, inventory: Any, speed: float) -> Settings:
    key_file = workdir / "gemini-api-key"
    key_file.write_text(DEMO_API_KEY)
    token_file = workdir / "inventory-token"
    token_file.write_text(inventory.token)
    return load_settings(
        DEMO_CONFIG,
        overrides={
            "device": {
                "state_dir": str(workdir),
                "control_socket": str(workdir / "control.sock"),
            },
            "live": {"base_url": url, "ca_file": str(ca_file), "api_key_file": str(key_file)},
            "audio": {"output_wav": str(workdir / "reply.wav"), "speed": speed},
            "tools": {"inventory_url": inventory.base_url, "token_file": str(token_file)},
        },
    )


async def shift(appliance: Any, bus: EventBus, settings: Settings) -> None:
    """Hold the talk button while the worker speaks, then wait for the session to close."""
    async with bus.stream() as events:
        mic = appliance.mic
        assert isinstance(mic, CuedWavSource), "the demo's [audio] input_wav_cue is listening"
        appliance.press("demo")
        # Hold the button while the worker speaks, as a person would.
        await mic.wait_said()
        appliance.release("demo")
        while True:
            event = await asyncio.wait_for(events.get(), timeout=60)
            if (
                isinstance(event, StateChanged)
                and event.state in (State.IDLE, State.ERROR)
                and event.previous == State.CLOSING
            ):
                return


def summarize(tally: Tally, reply: Path, sent: int) -> int:
    played = max(0, reply.stat().st_size - 44) if reply.exists() else 0
    print("\nsummary")
    print(f"  states:      {' → '.join(tally.states)}")
    for role, text in tally.transcripts:
        print(f"  {'worker' if role == 'user' else 'device':>6}:      {text}")
    for name, status in tally.tools:
        print(f"  tool:        {name} → {status}")
    print(f"  reply audio: {played} bytes played of {sent} sent, in {reply}")
    ok = bool(tally.tools) and played == sent and tally.states[-1] == State.IDLE.value
    print("demo " + ("finished" if ok else "FAILED"))
    return 0 if ok else 1
