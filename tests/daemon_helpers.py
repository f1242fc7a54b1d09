"""The real daemon as a subprocess, as systemd runs it: its config file and its start.

Shared by the tests that run `warehouse-voice run` end to end (test_daemon.py,
test_offline_shift.py). Each passes only the keys it needs to differ; the rest is the push-to-talk
device the demo uses, reading the demo WAV as its microphone and writing replies to a WAV.
(A module of helpers: it holds no tests.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from device.config import REPO_CONFIG_DIR

_TEMPLATE = """
[device]
id = "{device_id}"
state_dir = "{work}"
control_socket = "{work}/control.sock"
[live]
base_url = "{url}"
ca_file = "{ca}"
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
idle_timeout_s = {idle_timeout_s}
{live_extra}
[audio]
input = "wav"
input_wav = "{input_wav}"
input_wav_cue = "listening"
output = "wav"
output_wav = "{work}/reply.wav"
speed = 4.0
[button]
enabled = false
[wake]
enabled = false
{sections}
[tools]
inventory_url = "{inventory}"
token_file = "{work}/token"
{tools_extra}
"""


def write_daemon_config(
    work: Path,
    *,
    url: str,
    ca: Path | str,
    inventory: str,
    device_id: str,
    idle_timeout_s: float,
    live_extra: str = "",
    sections: str = "",
    tools_extra: str = "",
    input_wav: Path | None = None,
) -> Path:
    """`work/config.toml` for a daemon against the emulator at `url` and the inventory API.

    `live_extra` and `tools_extra` are more lines for [live] and [tools]; `sections` are whole
    further sections (placed before [tools]). `input_wav` replaces the demo WAV the
    microphone plays each time the device starts listening."""
    config = work / "config.toml"
    config.write_text(
        _TEMPLATE.format(
            work=work,
            url=url,
            ca=ca,
            config_dir=REPO_CONFIG_DIR,
            inventory=inventory,
            device_id=device_id,
            idle_timeout_s=idle_timeout_s,
            live_extra=live_extra,
            sections=sections,
            tools_extra=tools_extra,
            input_wav=input_wav or REPO_CONFIG_DIR / "demo" / "where-is-sku.wav",
        )
    )
    return config


def daemon_env(*, notify_socket: Path | None = None) -> dict[str, str]:
    """This process's environment without what systemd or a shell might leak into the test:
    no API key (the config names a key file), no watchdog; the notify socket only if given."""
    drop = ("GEMINI_API_KEY", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    return env


async def spawn_daemon(
    config: Path, stderr: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    """`warehouse-voice run --config config`, its stderr appended to a file: a pipe nobody reads
    while the daemon runs would fill and block its logging mid-turn."""
    with stderr.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env,
        )  # fmt: skip


async def stop_daemon(
    proc: asyncio.subprocess.Process, stderr: Path, timeout_s: float = 120.0
) -> str:
    """SIGTERM, as systemd stops it; its stderr once it has exited. A daemon still running
    `timeout_s` later (a bound so a hang fails the test instead of the suite; not a target) is
    asked for every thread's stack (SIGUSR1), killed, and the failure shows them."""
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=timeout_s)
    except TimeoutError:
        proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(2)
        proc.kill()
        await proc.wait()
        said = await asyncio.to_thread(stderr.read_text, "utf-8", "replace")
        raise AssertionError(
            f"the daemon did not exit within {timeout_s:.0f} s of SIGTERM; its stderr:\n{said}"
        ) from None
    return await asyncio.to_thread(stderr.read_text, "utf-8", "replace")
