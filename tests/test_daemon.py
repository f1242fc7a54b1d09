"""The real daemon as systemd runs it: a subprocess driven over its control socket.

A datagram socket bound here stands in for systemd's notify socket, so the test sees what
systemd sees: READY=1, then STOPPING=1 on SIGTERM, then a clean exit. How long the stop took is
printed, not asserted: under load it says nothing about the daemon.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import daemon_env, spawn_daemon, write_daemon_config

from device.inventory.server import serve_inventory
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

# Only so a hung daemon fails the test instead of hanging the suite; not a speed target.
STOP_SAFETY_S = 120.0


class SystemdEnd:
    """The notify socket, drained by its own thread (a unix datagram queue holds few messages)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> list[str]:
        """Everything systemd would have read, including what was still queued at the stop."""
        self._stop.set()
        self._thread.join()
        if self.sock.fileno() == -1:  # closed already: the test read it, now the fixture
            return self.lines()
        self.sock.setblocking(False)
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                break
        self.sock.close()
        return self.lines()

    def lines(self) -> list[str]:
        return [line for message in self.messages for line in message.splitlines()]


@pytest.fixture
def systemd_end() -> Iterator[SystemdEnd]:
    # A short private dir: pytest's tmp_path can exceed the 108-byte unix socket path limit.
    directory = Path(tempfile.mkdtemp(prefix="wv-daemon-"))
    end = SystemdEnd(directory / "notify")
    yield end
    end.close()
    shutil.rmtree(directory)


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


async def test_daemon_runs_a_turn_and_stops_cleanly_on_sigterm(
    tmp_path: Path, systemd_end: SystemdEnd
) -> None:
    work = tmp_path
    (work / "key").write_text("daemon-key")
    async with (
        serve_inventory(work / "inventory.db", seed="demo") as inventory,
        Emulator(load_scenario("where-is-sku"), workdir=work / "emu", api_key="daemon-key") as emu,
    ):
        (work / "token").write_text(inventory.token)
        config = write_daemon_config(
            work,
            url=emu.url,
            ca=emu.ca_file,
            inventory=inventory.base_url,
            device_id="test-daemon",
            idle_timeout_s=1.0,
        )
        proc = await spawn_daemon(
            config, work / "stderr.log", daemon_env(notify_socket=systemd_end.path)
        )
        try:
            async with asyncio.timeout(30):
                while not (work / "control.sock").exists():
                    assert proc.returncode is None, (work / "stderr.log").read_text()
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
            await asyncio.wait_for(proc.wait(), timeout=STOP_SAFETY_S)
            took = time.monotonic() - sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # A figure for the log, not a verdict: stop time is a benchmark's business.
    print(f"daemon stopped {took * 1000:.0f} ms after SIGTERM")
    stderr = (work / "stderr.log").read_text()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not (work / "control.sock").exists()
    # What systemd saw: ready once, then told of the stop once, and nothing after it but status.
    lines = systemd_end.close()
    assert lines.count("READY=1") == 1, lines
    assert lines.count("STOPPING=1") == 1, lines
    after_stop = lines[lines.index("STOPPING=1") + 1 :]
    assert lines.index("READY=1") < lines.index("STOPPING=1"), lines
    assert all(line.startswith("STATUS=") for line in after_stop), lines
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    assert [e["state"] for e in events if e["kind"] == "state"][-1] == "idle"
    assert emu.record.tool_responses[0].id == "call-1"
