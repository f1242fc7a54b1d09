"""The real daemon's watchdog: fed while idle, stopped by a speaker whose writes hang.

`warehouse-voice run` is a subprocess as under systemd, with a notify socket bound here and
`WATCHDOG_USEC` set. Its speaker is PyAudio on ALSA's `file` plugin writing into a FIFO whose
reader never reads: once the (shrunk) pipe is full, the player thread blocks inside PortAudio's
write exactly as on a wedged sound card. Everything is counted in WATCHDOG=1 messages and
watchdog periods; the waits are bounds on a hang, not timings.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import termios
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_notify import NotifySocket
from test_shutdown import unit_stop_timeout_s

from device.config import REPO_CONFIG_DIR
from device.inventory.server import serve_inventory
from device.service.control import request
from device.sim.alsa import forget_alsa_config, virtual_alsa
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

WATCHDOG_USEC = 2_000_000
PERIOD_S = WATCHDOG_USEC / 2_000_000  # the daemon pings every half WATCHDOG_USEC
KEY = "watchdog-key"
BUDGET_PERIODS = 2  # systemd restarts the unit after WATCHDOG_USEC without a ping

CONFIG = """
[device]
id = "test-watchdog"
state_dir = "{work}"
control_socket = "{work}/control.sock"
[live]
base_url = "{url}"
ca_file = "{ca}"
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
[audio]
input = "wav"
input_wav = "{config_dir}/demo/where-is-sku.wav"
input_wav_cue = "listening"
output = "pyaudio"
output_device = "vspk"
speed = 4.0
[button]
enabled = false
[leds]
kind = "none"
[wake]
enabled = false
[tools]
inventory_url = "{inventory}"
token_file = "{work}/token"
"""


async def ctl(work: Path, action: str) -> dict[str, object]:
    # The control protocol in a thread, not a `warehouse-voice ctl` process per poll: each
    # of those is an interpreter start (a second of CPU on a loaded machine). The command
    # itself is driven end to end by tests/test_daemon.py.
    return await asyncio.to_thread(request, work / "control.sock", action)


async def until(what: str, done: Callable[[], bool], timeout_s: float = 60) -> None:
    """Poll `done`; the bound only turns a hang into a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def pipe_bytes(fd: int) -> int:
    """What the FIFO holds, unread."""
    held = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, held)
    return held[0]


def pings(systemd: NotifySocket) -> int:
    return systemd.snapshot().count("WATCHDOG=1")


async def more_pings(systemd: NotifySocket, count: int) -> None:
    """Wait for `count` more pings than now (NotifySocket's own generous bound applies)."""
    start = pings(systemd)
    await asyncio.to_thread(systemd.wait_blocking, lambda m: m.count("WATCHDOG=1") >= start + count)


async def health(work: Path) -> dict[str, dict[str, object]]:
    status = await ctl(work, "status")
    parts = status["health"]
    assert isinstance(parts, dict)
    return parts


async def until_stuck(work: Path) -> dict[str, object]:
    """The speaker's `status` once the daemon calls it stuck (asked a few times a period)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        speaker = (await health(work))["speaker"]
        if speaker["health"] == "stuck":
            return speaker
        if loop.time() > deadline:
            raise AssertionError(f"the speaker never showed as stuck: {speaker}")
        await asyncio.sleep(PERIOD_S / 4)


@dataclass
class HungSpeakerRig:
    work: Path
    proc: asyncio.subprocess.Process
    systemd: NotifySocket
    emu: Emulator
    reader: int  # the FIFO's read end: the sound card, which reads only when told


@contextlib.asynccontextmanager
async def hung_speaker_daemon(work: Path) -> AsyncIterator[HungSpeakerRig]:
    """The daemon as under systemd, its speaker a FIFO nobody reads yet, idle and pinging."""
    pytest.importorskip("pyaudio")
    (work / "key").write_text(KEY)
    notify_dir = Path(tempfile.mkdtemp(prefix="wv-wd-"))
    systemd = NotifySocket(notify_dir / "notify")
    fifo = work / "speaker.fifo"
    os.mkfifo(fifo)
    # The sound card: opened first so the daemon's open does not wait for a reader; a small
    # pipe so a reply fills it at once. Nothing reads it until the test says so.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    async with (
        serve_inventory(work / "inventory.db", seed="demo") as inventory,
        Emulator(load_scenario("where-is-sku"), workdir=work / "emu", api_key=KEY) as emu,
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
        with virtual_alsa(work / "alsa") as alsa:
            alsa.asoundrc.write_text(
                f'pcm.vspk {{ type file slave.pcm "null" file "{fifo}" format "raw" }}\n'
            )
            forget_alsa_config()
            inherited = os.environ.items()
            env = {k: v for k, v in inherited if k not in ("GEMINI_API_KEY", "WATCHDOG_PID")}
            env.update(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
            errors = (work / "stderr.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "device.cli", "run", "--config", str(config)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
                env=env,
            )
            try:
                await until("the control socket", lambda: (work / "control.sock").exists())
                assert (await ctl(work, "status"))["state"] == "idle"
                yield HungSpeakerRig(work, proc, systemd, emu, reader)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                errors.close()
                os.close(reader)
                systemd.close()
                shutil.rmtree(notify_dir)


async def hang_the_speaker(rig: HungSpeakerRig) -> int:
    """A turn: the reply fills the pipe and the next write hangs. The pings sent by then."""
    await ctl(rig.work, "press")
    await until("reply audio in the speaker", lambda: pipe_bytes(rig.reader) > 0)
    at_hang = pings(rig.systemd)
    await rig.emu.wait_for_turns(1, timeout_s=60)
    await ctl(rig.work, "release")
    return at_hang


async def test_a_hung_speaker_stops_the_daemons_pings_and_an_idle_one_keeps_them(
    tmp_path: Path,
) -> None:
    drained = threading.Event()
    drainer: threading.Thread | None = None
    async with hung_speaker_daemon(tmp_path) as rig:
        work, proc, systemd, reader = rig.work, rig.proc, rig.systemd, rig.reader
        try:
            # Healthy and idle: the pings keep coming.
            await more_pings(systemd, 3)
            assert (await health(work))["speaker"]["health"] == "ok"

            at_hang = await hang_the_speaker(rig)
            speaker = await until_stuck(work)
            assert "hung" in str(speaker["reason"])
            # It stopped within the budget: at most the budget's pings after the hang
            # began (one more may have been in flight when the first byte was seen).
            after_hang = pings(systemd) - at_hang
            print(f"{after_hang} ping(s) after the speaker hung, then none")
            assert after_hang <= BUDGET_PERIODS + 1, f"{after_hang} pings after the speaker hung"
            # And it stays stopped: many periods pass without one.
            stopped_at = pings(systemd)
            await asyncio.sleep(4 * PERIOD_S)
            assert pings(systemd) - stopped_at <= 1, "the watchdog was fed while it hung"
            assert proc.returncode is None

            # The card takes audio again: the speaker works and the pings come back.
            os.set_blocking(reader, True)

            def drain() -> None:
                while os.read(reader, 65536):
                    pass
                drained.set()

            drainer = threading.Thread(target=drain, daemon=True)
            drainer.start()
            await more_pings(systemd, 3)
            assert (await health(work))["speaker"]["health"] == "ok"
            proc.send_signal(signal.SIGTERM)
            # A bound only so a hung daemon fails instead of hanging the suite.
            await asyncio.wait_for(proc.wait(), timeout=120)
        finally:
            if drainer is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            if drainer is not None:
                drainer.join(timeout=10)
    stderr = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert drained.is_set()  # the daemon closed its speaker on the way out


async def test_a_daemon_whose_speaker_hangs_still_stops_on_sigterm_and_says_what_hung(
    tmp_path: Path,
) -> None:
    """systemd stops a unit with SIGTERM and kills it TimeoutStopSec later: a part that hangs
    in its device must not hold the stop, and the journal must say which part and where."""
    async with hung_speaker_daemon(tmp_path) as rig:
        await hang_the_speaker(rig)
        await until_stuck(rig.work)
        rig.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(rig.proc.wait(), timeout=unit_stop_timeout_s())
        except TimeoutError:
            pytest.fail(
                f"the daemon was still stopping {unit_stop_timeout_s():.0f} s after SIGTERM, "
                "where systemd kills it"
            )
        messages = rig.systemd.snapshot()
    stderr = (tmp_path / "stderr.log").read_text()
    assert rig.proc.returncode == 1, stderr  # it stopped itself, and says the stop was not clean
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert "the speaker did not stop" in stderr, stderr
    # Every thread's stack, so the journal shows where the speaker hangs.
    assert "Thread 0x" in stderr and "playback.py" in stderr, stderr
