"""The real daemon as systemd runs it: a subprocess driven over its control socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from device.config import REPO_CONFIG_DIR
from device.inventory.server import serve_inventory
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

CONFIG = """
[device]
id = "test-daemon"
state_dir = "{work}"
control_socket = "{work}/control.sock"
[live]
base_url = "{url}"
ca_file = "{ca}"
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
idle_timeout_s = 1.0
[audio]
input = "wav"
input_wav = "{config_dir}/demo/where-is-sku.wav"
input_wav_cue = "listening"
output = "wav"
output_wav = "{work}/reply.wav"
speed = 4.0
[button]
enabled = false
[wake]
enabled = false
[tools]
inventory_url = "{inventory}"
token_file = "{work}/token"
"""


async def ctl(work: Path, action: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device.cli",
        "ctl",
        action,
        "--json",
        "--socket",
        str(work / "control.sock"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    answer: dict[str, object] = json.loads(out)
    return answer


async def test_daemon_runs_a_turn_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    work = tmp_path
    (work / "key").write_text("daemon-key")
    async with (
        serve_inventory(work / "inventory.db", seed="demo") as inventory,
        Emulator(load_scenario("where-is-sku"), workdir=work / "emu", api_key="daemon-key") as emu,
    ):
        (work / "token").write_text(inventory.token)
        config = work / "config.toml"
        config.write_text(
            CONFIG.format(
                work=work,
                url=emu.url,
                ca=emu.ca_file,
                config_dir=REPO_CONFIG_DIR,
                inventory=inventory.base_url,
            )
        )
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "GEMINI_API_KEY")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device.cli",
            "run",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with asyncio.timeout(30):
                while not (work / "control.sock").exists():
                    assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)
            assert (await ctl(work, "status"))["state"] == "idle"
            assert (await ctl(work, "press"))["ok"] is True
            await emu.wait_for_turns(1, timeout_s=30)
            await ctl(work, "release")
            async with asyncio.timeout(30):
                # The daemon's own event log says when the session has closed.
                log = work / "events.jsonl"
                while '"previous":"closing"' not in log.read_text():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            status = await ctl(work, "status")
            assert status["counters"]["sessions"] == 1  # type: ignore[index]
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # systemd waits for a stop; the contract is a clean exit well inside 2 s.
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=2.0)
            took = time.monotonic() - sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    print(f"daemon stopped {took * 1000:.0f} ms after SIGTERM")
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    assert not (work / "control.sock").exists()
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    assert [e["state"] for e in events if e["kind"] == "state"][-1] == "idle"
    assert emu.record.tool_responses[0].id == "call-1"
