"""Run the demo: the emulator, the inventory API and the appliance, all on loopback.

The appliance runs with `config/demo.toml`; the runner only fills in the addresses of the two
local servers and a work directory, then plays the scripted worker of `config/demo/shift.toml`
through the same talk-button path as the GPIO button and the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from device.config import REPO_CONFIG_DIR, ConfigError, Settings, load_settings
from device.daemon import assemble
from device.demo.display import Display
from device.demo.shift import Shift, load_shift, load_shift_scenario, work_shift
from device.events import Event, EventBus, Interrupted, StateChanged, ToolFinished
from device.inventory.seed import check_digits_for
from device.inventory.server import RunningInventory, serve_inventory
from device.preflight import preflight
from device.sim.emulator import Emulator

DEMO_CONFIG = REPO_CONFIG_DIR / "demo.toml"
DEMO_API_KEY = "demo-key-not-secret"
DEMO_BIN = "A-12-03"


@dataclass
class Tally:
    states: list[str] = field(default_factory=list)
    tools: list[tuple[str, str]] = field(default_factory=list)
    interruptions: int = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.states.append(event.state.value)
        elif isinstance(event, ToolFinished):
            self.tools.append((event.name, event.status))
        elif isinstance(event, Interrupted):
            self.interruptions += 1


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
    display = Display(colour=colour)
    bus.subscribe(display)
    bus.subscribe(tally)
    print(f"warehouse-voice demo: a short shift, work directory {workdir}")
    async with serve_inventory(workdir / "inventory.db", seed="demo") as inventory:
        digits = check_digits_for(workdir / "inventory.db", DEMO_BIN)
        shift = load_shift(digits)
        scenario = load_shift_scenario(digits, speed)
        emulator = Emulator(scenario, workdir=workdir / "emulator", api_key=DEMO_API_KEY)
        async with emulator:
            settings = demo_settings(workdir, emulator.url, emulator.ca_file, inventory, speed)
            resolved = preflight(settings)
            async with assemble(settings, resolved, bus) as appliance:
                runner = asyncio.create_task(appliance.run())
                try:
                    await work_shift(shift, appliance, emulator, bus, speed=speed)
                    await settle(bus)
                finally:
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
        stock = await read_stock(inventory, shift)
    return summarize(tally, display, shift, stock)


def demo_settings(
    workdir: Path, url: str, ca_file: Path, inventory: RunningInventory, speed: float
) -> Settings:
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


async def settle(bus: EventBus) -> None:
    """Until the session has closed (idle timeout) and the appliance is back to idle."""
    async with bus.stream() as events:
        while True:
            event = await asyncio.wait_for(events.get(), timeout=60)
            if isinstance(event, StateChanged) and event.previous.value == "closing":
                return


async def read_stock(inventory: RunningInventory, shift: Shift) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {inventory.token}"}
    found: dict[str, int] = {}
    async with httpx.AsyncClient(headers=headers) as client:
        for location in shift.expect.stock:
            response = await client.get(
                f"{inventory.base_url}/stock", params={"location": location}
            )
            rows: list[dict[str, Any]] = response.json()["stock"]
            found[location] = sum(r["quantity"] for r in rows if r["sku"] == "104417")
    return found


def summarize(tally: Tally, display: Display, shift: Shift, stock: dict[str, int]) -> int:
    print("\nsummary")
    print(f"  turns:       {len(shift.steps)} spoken, {tally.interruptions} interrupted")
    ok_tools = sum(1 for _, status in tally.tools if status in ("ok", "needs_confirmation"))
    print(f"  tool calls:  {len(tally.tools)} ({ok_tools} ok or awaiting confirmation)")
    if display.turn_latencies_ms:
        ordered = sorted(display.turn_latencies_ms)
        print(f"  reply after: median {ordered[len(ordered) // 2]:.0f} ms (worker stop to audio)")
    good = True
    for location, expected in shift.expect.stock.items():
        got = stock.get(location)
        mark = "ok" if got == expected else "WRONG"
        good &= got == expected
        print(f"  stock:       {location} holds {got} of 104417 (script expects {expected}) {mark}")
    failed = [f"{name}={status}" for name, status in tally.tools if status not in _FINE]
    if failed:
        good = False
        print(f"  failed tools: {', '.join(failed)}")
    good &= bool(tally.states) and tally.states[-1] == "idle"
    print("demo " + ("finished" if good else "FAILED"))
    return 0 if good else 1


_FINE = ("ok", "needs_confirmation")
