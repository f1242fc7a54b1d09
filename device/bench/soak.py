"""`warehouse-voice bench soak`: a scripted shift through the real daemon, watching it stay small.

The daemon runs as `warehouse-voice run` runs it, in its own process (so RSS and descriptors
are its own), against the Live emulator and the reference inventory API, both in this process.
Its microphone and speaker are WAV files paced at `speed` times real time, as is the emulator.
The worker is the control socket: push-to-talk presses, hang-ups between visits. Faults come
from the script (`device.bench.soak_script`): GoAway and a dropped connection from the
emulator; a speaker error and a microphone unplug by removing the daemon's audio files, which
fail the next write or read as a pulled USB device would.

Simulated time is the script's clock, never measured: the runner waits for each step to finish
(the emulator's record, the daemon's status) and sleeps only to keep from running ahead of
`speed`. A loaded machine makes the shift take longer, not go differently.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import wave
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.bench.soak_report import (
    Sample,
    SoakResult,
    event_log_mb,
    header,
    open_fds,
    row,
    rss_mb,
)
from device.bench.soak_script import BINS, HOUR_S, SKU, TURNS_PER_VISIT, ShiftPlan, Visit
from device.bench.soak_script import shift_scenario as build_scenario
from device.config import REPO_CONFIG_DIR
from device.inventory.server import InventoryServer
from device.service.control import request
from device.sim.emulator import Emulator
from device.sim.record import TurnRecord
from device.sim.speech import noise
from device.tools.inventory_client import InventoryClient

# Failure bounds only (a step that never happens), never measurements.
STEP_TIMEOUT_S = 180.0
SAMPLES_PER_HOUR = 6


def warmup_h(hours: float) -> float:
    """Where the slopes start. A long shift leaves out its first hour, which pays once for
    everything first used in it (each fault's recovery path, allocator arenas, caches); a
    one-hour shift can only leave out its first sample period."""
    return 1.0 if hours >= 2 else 1 / SAMPLES_PER_HOUR


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


class SoakError(RuntimeError):
    """A step of the shift did not happen; the message carries the daemon's last words."""


def _write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    os.replace(tmp, path)  # the daemon never reads half a file


def _speaker_restarts(status: dict[str, Any]) -> int:
    return int(((status.get("health") or {}).get("speaker") or {}).get("restarts", 0))


class Soak:
    def __init__(
        self,
        workdir: Path,
        plan: ShiftPlan,
        speed: float,
        progress: Callable[[str], None] = lambda line: None,
        *,
        chunk_ms: int = 20,
    ) -> None:
        """`chunk_ms` is the daemon's microphone chunk: the device's 20 ms by default. The
        microphone's cost is per chunk, and at `speed` times real time it is most of the
        shift's CPU; 50 ms (the largest a device may use) runs the same shift on less."""
        self.work = workdir
        self.plan = plan
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.progress = progress
        self.result = SoakResult(hours=plan.hours, speed=speed, warmup_h=warmup_h(plan.hours))
        self.emu: Emulator | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._audit_before = 0
        self._live_from = 0  # connections before this one are closed and accounted for
        self._faults: Counter[str] = Counter()
        self._t0 = 0.0
        # What the worker says after each press: a second of quiet room noise.
        self._mic_pcm = noise(1.0, level_dbfs=-50, seed=7)

    # -- the daemon ----------------------------------------------------------------------

    async def _start_daemon(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "GEMINI_API_KEY")}
        with (self.work / "daemon.stderr").open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "device.cli", "run", "--config", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=err, env=env,
            )  # fmt: skip
        await self._until(lambda s: s.get("state") == "idle", "the daemon to start")

    async def _stop_daemon(self) -> None:
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

    async def _ctl(self, command: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(request, self.work / "control.sock", command)
        except (ConnectionError, OSError, ValueError):
            return {}

    async def _until(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = STEP_TIMEOUT_S
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self.proc is not None and self.proc.returncode is not None:
                        raise SoakError(
                            f"the daemon exited ({self.proc.returncode}) waiting for {what}"
                        )
                    status = await self._ctl("status")
                    if status and check(status):
                        return status
                    await asyncio.sleep(0.02)
        except TimeoutError:
            status = await self._ctl("status")
            raise SoakError(
                f"{what} did not happen within {timeout_s:g} s; status {status}\n"
                + self.diagnostics()
            ) from None

    async def _settled(self, what: str) -> dict[str, Any]:
        """Idle, no session, nothing broken: the state every visit starts from."""
        return await self._until(
            lambda s: s.get("state") == "idle" and not s.get("session") and not s.get("faults"),
            what,
        )

    # -- the emulator's record -----------------------------------------------------------

    def _turn_done(self, scenario_turn: int) -> Callable[[Any], bool]:
        def done(record: Any) -> bool:
            turns: list[TurnRecord] = [
                t for conn in record.connections[self._live_from :] for t in conn.turns
            ]
            return any(
                t.finished
                and t.scenario_turn == scenario_turn
                # A turn cut by a dropped connection is played again on the resumed one.
                and (t.generation_complete or t.interrupted)
                for t in turns
            )

        return done

    def _forget_closed(self) -> None:
        """Closed connections keep their faults for the report and lose their audio: the
        emulator's record is this process's memory, not the daemon's, but it must not grow
        with the shift either."""
        assert self.emu is not None
        conns = self.emu.record.connections
        for conn in conns[self._live_from :]:
            if conn.close_code is None:
                break
            self._faults.update(f.kind for f in conn.faults)
            conn.audio = bytearray()
            conn.audio_at.clear()
            conn.video_frames.clear()
            for turn in conn.turns:
                turn.reply_pcm = bytearray()
                turn.filler_pcm = bytearray()
                turn.reply_sent_at.clear()
            self._live_from += 1

    # -- the worker ----------------------------------------------------------------------

    async def _at(self, sim_s: float) -> None:
        """Sleep until simulated second `sim_s`; never wait when behind."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._t0 + sim_s / self.speed - loop.time()))

    async def _turn(self, scenario_turn: int) -> None:
        assert self.emu is not None
        await self._until(lambda s: s.get("state") in ("idle", "conversing"), "ready to talk")
        await self._ctl("press")
        await self._until(lambda s: s.get("state") == "conversing", "a conversation")
        await self._ctl("release")
        await self.emu.wait_for(
            self._turn_done(scenario_turn), STEP_TIMEOUT_S, f"turn {scenario_turn}"
        )
        # The worker hears the answer out before talking again: a press now would barge in.
        await self._until(lambda s: not s.get("speaking"), f"the reply to turn {scenario_turn}")

    async def _unplug_mic(self, visit: Visit) -> None:
        mic = self.work / "mic.wav"
        mic.unlink()
        await self._until(lambda s: "mic" in (s.get("faults") or {}), "the mic fault")
        self._faults["mic_unplugged"] += 1
        assert visit.replug_at_s is not None
        await self._at(visit.replug_at_s)
        _write_wav(mic, self._mic_pcm)
        await self._settled("recovery from the mic unplug")

    async def _visit(self, visit: Visit) -> None:
        if visit.unplug_before:
            await self._unplug_mic(visit)
        restarts = 0
        if visit.speaker_error:
            # The next reply's first write fails; the supervisor reopens the speaker.
            restarts = _speaker_restarts(await self._ctl("status"))
            (self.work / "reply.wav").unlink(missing_ok=True)
        for offset in range(TURNS_PER_VISIT):
            await self._at(visit.at_s + offset * self.plan.turn_s)
            await self._turn(visit.first_turn + offset)
        await self._ctl("hangup")
        await self._settled(f"idle after visit {visit.number}")
        if visit.speaker_error:
            # The supervisor probes the speaker now and then; its restart count is the proof
            # that the fault was noticed and healed, not just written over.
            await self._until(
                lambda s: _speaker_restarts(s) > restarts, "the supervisor to heal the speaker"
            )
            await self._settled("idle after the speaker error")
            self._faults["speaker_error"] += 1
        self._forget_closed()

    # -- figures -------------------------------------------------------------------------

    async def _quiet_fds(self, pid: int) -> int:
        """Open descriptors, leaving out the control connection that just asked for the
        status: the daemon closes its end a moment after answering. The fewest of a few
        readings is the daemon's own count."""
        readings = []
        for _ in range(5):
            readings.append(open_fds(pid))
            await asyncio.sleep(0.05)
        return min(readings)

    async def _sample(self, sim_h: float, tasks: int) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        fds = await self._quiet_fds(pid)
        sample = Sample(
            sim_h=round(sim_h, 4),
            rss_mb=round(rss_mb(pid), 2),
            fds=fds,
            event_log_mb=round(event_log_mb(self.work / "events.jsonl"), 3),
            tasks=tasks,
        )
        self.result.samples.append(sample)
        if abs(sim_h - round(sim_h)) < 1e-6 and sim_h > 0:
            self.progress(row(self.result))

    async def _take_sample(self, sim_h: float) -> None:
        status = await self._settled("a quiet moment to sample")
        await self._sample(sim_h, int(status.get("tasks") or 0))

    # -- the shift -----------------------------------------------------------------------

    async def run(self) -> SoakResult:
        work = self.work
        work.mkdir(parents=True, exist_ok=True)
        (work / "key").write_text("soak-key-not-secret")
        _write_wav(work / "mic.wav", self._mic_pcm)
        server = InventoryServer(work / "inventory.db", seed="demo")
        inventory = await asyncio.to_thread(server.start)
        (work / "token").write_text(inventory.token)
        async with InventoryClient(inventory.base_url, inventory.token) as client:
            before = {b: await self._stock(client, b) for b in BINS}
            self._audit_before = len(await client.audit(action="move", limit=500))
        scenario = build_scenario(self.plan, self.speed, work)
        self.emu = Emulator(scenario, workdir=work / "emu", api_key="soak-key-not-secret")
        await self.emu.start()
        config = work / "config.toml"
        config.write_text(
            CONFIG.format(work=work, url=self.emu.url, ca=self.emu.ca_file, speed=self.speed,
                          chunk_ms=self.chunk_ms,
                          config_dir=REPO_CONFIG_DIR, inventory=inventory.base_url)
        )  # fmt: skip
        started = time.monotonic()
        try:
            await self._start_daemon(config)
            await self._shift()
        finally:
            await self._stop_daemon()
            await self.emu.stop()
            self.result.wall_s = time.monotonic() - started
        try:
            await self._check_writes(inventory.base_url, inventory.token, before)
        finally:
            await asyncio.to_thread(server.stop)
        return self.result

    async def _shift(self) -> None:
        per_hour = self.plan.visits_per_hour()
        every = max(1, per_hour // SAMPLES_PER_HOUR)
        self.progress(header())
        self._t0 = asyncio.get_running_loop().time()
        for visit in self.plan.visits:
            if visit.number % every == 0:
                await self._take_sample(visit.at_s / HOUR_S)
            await self._visit(visit)
            self.result.turns += TURNS_PER_VISIT
        await self._at(len(self.plan.visits) * self.plan.visit_s)
        await self._take_sample(len(self.plan.visits) * self.plan.visit_s / HOUR_S)
        self._forget_closed()
        self.result.faults_seen = dict(self._faults)

    @staticmethod
    async def _stock(client: InventoryClient, location: str) -> int:
        rows = await client.get_stock(sku=SKU, location=location)
        return int(rows[0]["quantity"]) if rows else 0

    async def _check_writes(self, url: str, token: str, before: dict[str, int]) -> None:
        expected = dict(before)
        for move in self.plan.moves:
            expected[move.source] -= move.quantity
            expected[move.dest] += move.quantity
        async with InventoryClient(url, token) as client:
            moves = list(reversed(await client.audit(action="move", limit=500)))[
                self._audit_before :
            ]
            stock = {b: await self._stock(client, b) for b in BINS}
        result = self.result
        result.moves_planned = len(self.plan.moves)
        result.moves_applied = len(moves)
        result.distinct_keys = len({m["idempotency_key"] for m in moves})
        result.stock, result.stock_expected = stock, expected
        # Each move once, in the worker's order: the audit's deltas are the script's.
        planned = [{m.source: -m.quantity, m.dest: m.quantity} for m in self.plan.moves]
        result.moves_in_order = [m["delta"] for m in moves] == planned
