"""The real daemon booted without its microphone: ready, showing the fault, healed by a plug.

A subprocess like systemd's, on virtual ALSA devices (`vmic` is absent while its infile is), with
a notify socket bound here standing in for systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from test_notify import NotifySocket
from test_shutdown import unit_stop_timeout_s

from device.config import REPO_CONFIG_DIR
from device.service.control import request
from device.sim.alsa import virtual_alsa
from tests.daemon_helpers import daemon_env, spawn_daemon, stop_daemon

CONFIG = """
[device]
id = "test-degraded"
state_dir = "{work}"
control_socket = "{work}/control.sock"
[live]
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
[audio]
input = "pyaudio"
input_device = "vmic"
output = "wav"
output_wav = "{work}/reply.wav"
reopen_max_s = 0.5
[button]
enabled = false
[wake]
enabled = false
[tools]
token_file = "{work}/key"
"""


def write_config(work: Path) -> Path:
    """The daemon's config (its mic the virtual `vmic`) and the key file it names."""
    (work / "key").write_text("k")
    config = work / "config.toml"
    config.write_text(CONFIG.format(work=work, config_dir=REPO_CONFIG_DIR))
    return config


async def ctl(work: Path, action: str) -> dict[str, object]:
    # The control protocol in a thread, not a `warehouse-voice ctl` process per poll: each
    # of those is an interpreter start (a second of CPU on a loaded machine). The command
    # itself is driven end to end by tests/test_daemon.py.
    return await asyncio.to_thread(request, work / "control.sock", action)


async def until_status(
    work: Path, done: Callable[[dict[str, object]], bool], timeout_s: float = 60
) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        while True:
            if (work / "control.sock").exists():
                status = await ctl(work, "status")
                if done(status):
                    return status
            await asyncio.sleep(0.2)


async def test_boot_without_a_mic_is_ready_shows_error_and_heals_when_plugged_in(
    tmp_path: Path,
) -> None:
    work = tmp_path
    config = write_config(work)
    notify_dir = Path(tempfile.mkdtemp(prefix="wv-notify-"))
    systemd = NotifySocket(notify_dir / "notify")
    with virtual_alsa(work / "alsa", bytes(3200)) as alsa:
        mic_audio = alsa.infile.read_bytes()
        alsa.infile.unlink()  # the USB mic is not plugged in: ALSA has no vmic
        env = daemon_env(notify_socket=systemd.path) | {"WATCHDOG_USEC": "200000"}
        stderr = work / "daemon.stderr"
        proc = await spawn_daemon(config, stderr, env)
        try:
            status = await until_status(work, lambda s: s["state"] == "error")
            assert proc.returncode is None
            faults = status["faults"]
            assert isinstance(faults, dict) and "vmic" in faults["mic"]
            health = status["health"]
            assert isinstance(health, dict) and health["mic"]["health"] == "recovering"
            messages = systemd.snapshot()
            assert "READY=1" in [m.split("\n")[0] for m in messages]
            # Waiting for a device is not a hang: the watchdog keeps being fed.
            pings = messages.count("WATCHDOG=1")
            await asyncio.to_thread(
                systemd.wait_blocking, lambda m: m.count("WATCHDOG=1") >= pings + 3
            )

            alsa.infile.write_bytes(mic_audio)  # plugged in
            status = await until_status(work, lambda s: s["state"] == "idle")
            assert status["faults"] == {}
            pings = systemd.snapshot().count("WATCHDOG=1")
            await asyncio.to_thread(
                systemd.wait_blocking, lambda m: m.count("WATCHDOG=1") >= pings + 3
            )
            # A device that seems hung can be asked where it is, and goes on running.
            proc.send_signal(signal.SIGUSR1)
            assert (await until_status(work, lambda s: s["state"] == "idle"))["faults"] == {}
            err = await stop_daemon(proc, stderr)
            # Sent before the exit, but the socket's reader thread may not have read it yet.
            said = await asyncio.to_thread(
                systemd.wait_blocking, lambda m: any(x.startswith("STOPPING=1") for x in m)
            )
            stops = [m for m in said if m.startswith("STOPPING=1")]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            systemd.close()
            shutil.rmtree(notify_dir)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "Current thread" in err and "File " in err  # the stacks SIGUSR1 asked for
    assert len(stops) == 1
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states[-2:] == ["error", "idle"]


def threads_waiting_on_a_fifo(pid: int) -> int:
    """The process's threads blocked opening a FIFO that has no writer (Linux's wchan)."""
    waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            waiting += (task / "wchan").read_text() == "wait_for_partner"
    return waiting


async def test_a_stop_while_a_reopen_is_stuck_in_the_driver_ends_with_the_stacks(
    tmp_path: Path,
) -> None:
    """SIGTERM while the supervisor's reopen of the mic is stuck in the driver (its open never
    returns: here a FIFO nobody writes): the parts close, and the thread left in the loop's
    executor must not hold the exit; the stop deadline ends it with every thread's stack."""
    work = tmp_path
    config = write_config(work)
    with virtual_alsa(work / "alsa", bytes(3200)) as alsa:
        alsa.infile.unlink()
        stderr = work / "daemon.stderr"
        proc = await spawn_daemon(config, stderr, daemon_env())
        try:
            await until_status(work, lambda s: s["state"] == "error")
            os.mkfifo(alsa.infile)  # a device whose open blocks in the driver
            async with asyncio.timeout(60):
                while not threads_waiting_on_a_fifo(proc.pid):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            # systemd kills the unit TimeoutStopSec after SIGTERM, with no word of where it was.
            async with asyncio.timeout(unit_stop_timeout_s()):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = stderr.read_text()
    assert proc.returncode == 1, err
    assert "Thread 0x" in err and "_open_stream" in err, err  # where it was stuck
