"""The soak's daemon: its config, its process, and the control-socket waits the runner is built on.

`device.bench.soak` drives the shift; this module only starts and stops `warehouse-voice run`
and waits for its status to say something. The waits poll the control socket and have failure
bounds only (a step that never happens), never measurements.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.config import REPO_CONFIG_DIR
from device.service.control import request

STEP_TIMEOUT_S = 180.0

CONFIG = """
[device]
id = "soak-01"
state_dir = "{work}/state"
control_socket = "{work}/control.sock"
event_log = "{work}/events.jsonl"
log_level = "warning"
[live]
base_url = "{url}"
ca_file = "{ca}"
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
idle_timeout_s = 3600.0
# A loaded machine may take seconds to finish a TLS handshake: the soak is about growth,
# not about the network timing out.
connect_timeout_s = 60.0
turn_detection = "manual"
[audio]
input = "wav"
input_wav = "{work}/mic.wav"
input_wav_cue = "listening"
output = "wav"
output_wav = "{work}/reply.wav"
speed = {speed}
chunk_ms = {chunk_ms}
reopen_max_s = 1.0
[echo]
mode = "{echo}"
[button]
enabled = false
[wake]
enabled = false
[gpio]
pin_factory = "mock"
[metrics]
address = "127.0.0.1:0"
[tools]
inventory_url = "{inventory}"
token_file = "{work}/token"
write_queue_retry_max_s = 0.5
"""


def soak_config(
    work: Path, *, url: str, ca: Path, inventory: str, speed: float, chunk_ms: int, echo: str
) -> str:
    return CONFIG.format(
        work=work,
        url=url,
        ca=ca,
        speed=speed,
        chunk_ms=chunk_ms,
        echo=echo,
        config_dir=REPO_CONFIG_DIR,
        inventory=inventory,
    )


class SoakError(RuntimeError):
    """A step of the shift did not happen; the message carries the daemon's last words."""


def write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    os.replace(tmp, path)  # the daemon never reads half a file


def speaker_restarts(status: dict[str, Any]) -> int:
    return int(((status.get("health") or {}).get("speaker") or {}).get("restarts", 0))


class SoakDaemon:
    """`warehouse-voice run` in its own process (so RSS and descriptors are its own), in `work`."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "GEMINI_API_KEY")}
        with (self.work / "daemon.stderr").open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "device.cli", "run", "--config", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=err, env=env,
            )  # fmt: skip
        await self.until(lambda s: s.get("state") == "idle", "the daemon to start")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=60)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def diagnostics(self) -> str:
        err = self.work / "daemon.stderr"
        tail = err.read_text(errors="replace")[-2000:] if err.exists() else ""
        return f"--- daemon stderr (tail) ---\n{tail}"

    async def ctl(self, command: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(request, self.work / "control.sock", command)
        except (ConnectionError, OSError, ValueError):
            return {}

    async def until(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = STEP_TIMEOUT_S
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self.proc is not None and self.proc.returncode is not None:
                        raise SoakError(
                            f"the daemon exited ({self.proc.returncode}) waiting for {what}"
                        )
                    status = await self.ctl("status")
                    if status and check(status):
                        return status
                    await asyncio.sleep(0.02)
        except TimeoutError:
            status = await self.ctl("status")
            raise SoakError(
                f"{what} did not happen within {timeout_s:g} s; status {status}\n"
                + self.diagnostics()
            ) from None

    async def settled(self, what: str) -> dict[str, Any]:
        """Idle, no session, nothing broken: the state every visit starts from."""
        return await self.until(
            lambda s: s.get("state") == "idle" and not s.get("session") and not s.get("faults"),
            what,
        )
