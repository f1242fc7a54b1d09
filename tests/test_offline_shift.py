"""A shift through an inventory outage, with the daemon killed -9 in the middle of it.

The real daemon runs as a subprocess (as systemd runs it) against the Live emulator through
google-genai and the real inventory API over HTTP. The API is stopped for a while; two moves
are confirmed meanwhile, and the daemon is killed with SIGKILL between them. When the API comes
back, every confirmed move must be applied exactly once, in the order the worker made them.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import wave
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from daemon_helpers import daemon_env, spawn_daemon, write_daemon_config

from device.inventory.server import InventoryServer
from device.service.control import request
from device.sim.emulator import Emulator
from device.sim.scenario import parse_scenario
from device.tools.inventory_client import InventoryClient

# (what the worker asks, the move's arguments): each is read back, then confirmed.
MOVES = [
    ("Move five from A-12-03 to A-14-01.", "A-12-03", "A-14-01", 5),  # the API is up
    ("Move three from A-12-03 to A-14-01.", "A-12-03", "A-14-01", 3),  # API down
    ("Move two from A-14-01 to A-12-03.", "A-14-01", "A-12-03", 2),  # API down, new daemon
]


def scenario_text() -> str:
    turns = []
    for n, (said, source, dest, qty) in enumerate(MOVES, start=1):
        turns.append(
            f"""
[[turns]]
user_transcript = "{said}"
reply_text = "Move {qty} of SKU 104417 from {source} to {dest}. Say confirm, or press the button."
[[turns.tool_calls]]
id = "move-{n}"
name = "move_stock"
args = {{ sku = "104417", from_location = "{source}", to_location = "{dest}", quantity = {qty} }}

[[turns]]
user_transcript = "Confirm."
reply_text = "Done."
[[turns.tool_calls]]
id = "move-{n}-confirm"
name = "confirm_pending_action"
args = {{ decision = "confirm" }}
"""
        )
    return 'name = "offline-shift"\nprogress = "shared"\n' + "".join(turns)


class Daemon:
    def __init__(self, work: Path, config: Path) -> None:
        self.work, self.config = work, config
        self.proc: asyncio.subprocess.Process | None = None
        # A file, not a pipe: nobody reads a pipe while the daemon runs, and a full one
        # would block its logging.
        self.stderr = work / "daemon.stderr"

    async def start(self) -> None:
        sock = self.work / "control.sock"
        self.proc = await spawn_daemon(self.config, self.stderr, daemon_env())
        async with asyncio.timeout(120):
            while not sock.exists() or (await self.ctl("status")).get("state") != "idle":
                assert self.proc.returncode is None, "the daemon exited at start"
                await asyncio.sleep(0.05)

    def diagnostics(self) -> str:
        """The daemon's last words and events, for a failure message."""
        stderr = self.stderr.read_text()[-3000:] if self.stderr.exists() else ""
        log = self.work / "events.jsonl"
        lines = log.read_text().splitlines()[-25:] if log.exists() else []
        return f"--- daemon stderr ---\n{stderr}\n--- last events ---\n" + "\n".join(lines)

    async def ctl(self, action: str) -> dict[str, Any]:
        """One control-socket command, as `warehouse-voice ctl` sends it; {} while it is down."""
        try:
            return await asyncio.to_thread(request, self.work / "control.sock", action)
        except (ConnectionError, OSError, ValueError):
            return {}

    async def turn(self, emu: Emulator, number: int) -> dict[str, Any]:
        """The worker holds the button and speaks; the tool answer the model got back."""
        assert (await self.ctl("press"))["ok"] is True
        async with asyncio.timeout(120):
            while (await self.ctl("status")).get("state") != "conversing":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await self.ctl("release")
        record = await emu.wait_for_turns(number, timeout_s=120)
        # The worker answers once they have heard the reply (a read-back) to its end: the
        # service sends it faster than it plays, and a press before its end cuts it short.
        async with asyncio.timeout(120):
            while len(replies_heard(self.work)) < number:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return record.tool_responses[-1].response

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    async def stop(self) -> str:
        """SIGTERM, as systemd stops it; what it wrote to stderr."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), timeout=60)
        return self.stderr.read_text()


def quiet_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(bytes(2 * 16_000 // 5))  # 200 ms of silence
    return path


def events(work: Path) -> list[dict[str, Any]]:
    lines = (work / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def replies_heard(work: Path) -> list[dict[str, Any]]:
    return [e for e in events(work) if e["kind"] == "speaking" and not e["started"]]


def queue_events(work: Path, change: str) -> list[dict[str, Any]]:
    return [e for e in events(work) if e["kind"] == "write_queue" and e["change"] == change]


@pytest.mark.slow
@pytest.mark.timeout(900)  # two daemon starts and six turns on a loaded 2-core machine
async def test_moves_confirmed_through_an_outage_and_a_kill_9_are_applied_once_in_order(
    tmp_path: Path,
) -> None:
    work = tmp_path
    (work / "key").write_text("offline-key")
    server = InventoryServer(work / "inventory.db", seed="demo")
    inventory = await asyncio.to_thread(server.start)
    port = int(inventory.base_url.split(":")[2].split("/")[0])
    (work / "token").write_text(inventory.token)
    scenario = parse_scenario(scenario_text(), name="offline-shift", base_dir=work)
    emu = Emulator(scenario, workdir=work / "emu", api_key="offline-key")
    await emu.start()
    config = write_daemon_config(
        work,
        url=emu.url,
        ca=emu.ca_file,
        inventory=inventory.base_url,
        device_id="offline-01",
        idle_timeout_s=60.0,
        # The talk button marks each turn (activityStart/End), so one session carries a
        # read-back and its confirmation, as it does for a worker on the floor.
        live_extra='turn_detection = "manual"',
        sections='[metrics]\naddress = "127.0.0.1:0"',
        tools_extra="write_queue_retry_max_s = 0.5",
        # What the worker says is the emulator's transcripts. The demo WAV (0.5 s at 4x) went
        # on playing after the quick press and release, and once, under a CPU hog, the
        # read-back began while it did: the gate rightly took that for the worker talking over
        # the read-back and cut it, so the next "Confirm." was (rightly) refused. A worker who
        # has finished speaking when they release is a quiet microphone.
        input_wav=quiet_wav(work / "quiet.wav"),
    )
    daemon = Daemon(work, config)
    try:
        await daemon.start()
        assert (await daemon.turn(emu, 1))["status"] == "needs_confirmation"
        assert (await daemon.turn(emu, 2))["code"] == "OK"  # applied at once

        await asyncio.to_thread(server.stop)  # the outage starts
        assert (await daemon.turn(emu, 3))["status"] == "needs_confirmation"
        saved = await daemon.turn(emu, 4)
        assert (saved["status"], saved["code"]) == ("ok", "QUEUED")
        assert "will sync" in saved["speakable"]
        status = await daemon.ctl("status")
        assert status["write_queue"]["depth"] == 1

        await daemon.kill()  # no clean shutdown: what is on disk is all there is
        await daemon.start()
        assert (await daemon.ctl("status"))["write_queue"]["depth"] == 1
        assert (await daemon.turn(emu, 5))["status"] == "needs_confirmation"
        assert (await daemon.turn(emu, 6))["code"] == "QUEUED"
        status = await daemon.ctl("status")
        assert status["write_queue"]["depth"] == 2
        scrape = await asyncio.to_thread(urlopen, status["metrics"]["endpoint"], timeout=10)
        metrics = scrape.read().decode()
        assert "warehouse_voice_write_queue_depth 2.0" in metrics
        assert "warehouse_voice_wake_enabled 0.0" in metrics  # push-to-talk only here
        age = re.search(r"^warehouse_voice_write_queue_oldest_age_seconds (\S+)$", metrics, re.M)
        assert age is not None and float(age[1]) > 0

        server = InventoryServer(work / "inventory.db", port=port)
        await asyncio.to_thread(server.start)  # the API is back
        async with asyncio.timeout(60):
            while len(queue_events(work, "delivered")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        status = await daemon.ctl("status")
        assert status["write_queue"] | {"oldest_age_s": None, "last_error": None} == {
            "depth": 0, "oldest_age_s": None, "delivered": 2, "rejected": 0, "last_error": None,
        }  # fmt: skip
        stderr = await daemon.stop()
        assert "Traceback" not in stderr, stderr
    except Exception as exc:
        raise AssertionError(f"{exc!r}\n{daemon.diagnostics()}") from exc
    finally:
        if daemon.proc is not None and daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
        await emu.stop()

    async with InventoryClient(inventory.base_url, inventory.token) as client:
        moves = list(reversed(await client.audit(action="move")))
        stock = {
            loc: (await client.get_stock(sku="104417", location=loc))[0]["quantity"]
            for loc in ("A-12-03", "A-14-01")
        }
    await asyncio.to_thread(server.stop)
    # Exactly once each, in the worker's order, and the stock the script says.
    assert [(m["delta"], m["session_id"] is not None) for m in moves] == [
        ({"A-12-03": -5, "A-14-01": 5}, True),
        ({"A-12-03": -3, "A-14-01": 3}, True),
        ({"A-14-01": -2, "A-12-03": 2}, True),
    ]
    assert len({m["idempotency_key"] for m in moves}) == 3
    assert stock == {"A-12-03": 34, "A-14-01": 6}
    assert [e["depth"] for e in queue_events(work, "queued")] == [1, 2]
    assert [e["depth"] for e in queue_events(work, "loaded")] == [0, 1]
