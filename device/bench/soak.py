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
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.audio.echo import EchoMode
from device.bench.soak_daemon import (
    STEP_TIMEOUT_S,
    SoakDaemon,
    soak_config,
    speaker_restarts,
    write_wav,
)
from device.bench.soak_report import (
    Sample,
    SoakResult,
    event_log_mb,
    header,
    open_fds,
    row,
    rss_mb,
)
from device.bench.soak_script import (
    BINS,
    DEFAULT_REPLY_CHUNK_MS,
    HOUR_S,
    SKU,
    TURNS_PER_VISIT,
    ShiftPlan,
    Visit,
)
from device.bench.soak_script import shift_scenario as build_scenario
from device.inventory.server import InventoryServer
from device.sim.emulator import Emulator
from device.sim.record import TurnRecord
from device.sim.speech import noise
from device.tools.inventory_client import InventoryClient

SAMPLES_PER_HOUR = 6


def warmup_h(hours: float) -> float:
    """Where the slopes start. A long shift leaves out its first hour, which pays once for
    everything first used in it (each fault's recovery path, allocator arenas, caches); a
    one-hour shift can only leave out its first sample period."""
    return 1.0 if hours >= 2 else 1 / SAMPLES_PER_HOUR


class Soak(SoakDaemon):
    def __init__(
        self,
        workdir: Path,
        plan: ShiftPlan,
        speed: float,
        progress: Callable[[str], None] = lambda line: None,
        *,
        chunk_ms: int = 20,
        echo: EchoMode = "half_duplex",
        reply_chunk_ms: int = DEFAULT_REPLY_CHUNK_MS,
    ) -> None:
        """`chunk_ms` is the daemon's microphone chunk: the device's 20 ms by default. The
        microphone's cost is per chunk, and at `speed` times real time it is most of the
        shift's CPU; 50 ms (the largest a device may use) runs the same shift on less.
        `echo` is the daemon's `[echo] mode` (the device's default unless asked), and
        `reply_chunk_ms` the length of the emulator's reply messages: both are per-chunk
        work that a shorter run can trade for speed (see tests/bench/test_soak.py)."""
        super().__init__(workdir)
        self.plan = plan
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.echo = echo
        self.reply_chunk_ms = reply_chunk_ms
        self.progress = progress
        self.result = SoakResult(hours=plan.hours, speed=speed, warmup_h=warmup_h(plan.hours))
        self.emu: Emulator | None = None
        self._audit_before = 0
        self._live_from = 0  # connections before this one are closed and accounted for
        self._faults: Counter[str] = Counter()
        self._t0 = 0.0
        # What the worker says after each press: a second of quiet room noise.
        self._mic_pcm = noise(1.0, level_dbfs=-50, seed=7)

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
        await self.until(lambda s: s.get("state") in ("idle", "conversing"), "ready to talk")
        await self.ctl("press")
        await self.until(lambda s: s.get("state") == "conversing", "a conversation")
        await self.ctl("release")
        await self.emu.wait_for(
            self._turn_done(scenario_turn), STEP_TIMEOUT_S, f"turn {scenario_turn}"
        )
        # The worker hears the answer out before talking again: a press now would barge in.
        await self.until(lambda s: not s.get("speaking"), f"the reply to turn {scenario_turn}")

    async def _unplug_mic(self, visit: Visit) -> None:
        mic = self.work / "mic.wav"
        mic.unlink()
        await self.until(lambda s: "mic" in (s.get("faults") or {}), "the mic fault")
        self._faults["mic_unplugged"] += 1
        assert visit.replug_at_s is not None
        await self._at(visit.replug_at_s)
        write_wav(mic, self._mic_pcm)
        await self.settled("recovery from the mic unplug")

    async def _visit(self, visit: Visit) -> None:
        if visit.unplug_before:
            await self._unplug_mic(visit)
        restarts = 0
        if visit.speaker_error:
            # The next reply's first write fails; the supervisor reopens the speaker.
            restarts = speaker_restarts(await self.ctl("status"))
            (self.work / "reply.wav").unlink(missing_ok=True)
        for offset in range(TURNS_PER_VISIT):
            await self._at(visit.at_s + offset * self.plan.turn_s)
            await self._turn(visit.first_turn + offset)
        await self.ctl("hangup")
        await self.settled(f"idle after visit {visit.number}")
        if visit.speaker_error:
            # The supervisor probes the speaker now and then; its restart count is the proof
            # that the fault was noticed and healed, not just written over.
            await self.until(
                lambda s: speaker_restarts(s) > restarts, "the supervisor to heal the speaker"
            )
            await self.settled("idle after the speaker error")
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
        status = await self.settled("a quiet moment to sample")
        await self._sample(sim_h, int(status.get("tasks") or 0))

    # -- the shift -----------------------------------------------------------------------

    async def run(self) -> SoakResult:
        work = self.work
        work.mkdir(parents=True, exist_ok=True)
        (work / "key").write_text("soak-key-not-secret")
        write_wav(work / "mic.wav", self._mic_pcm)
        server = InventoryServer(work / "inventory.db", seed="demo")
        inventory = await asyncio.to_thread(server.start)
        (work / "token").write_text(inventory.token)
        async with InventoryClient(inventory.base_url, inventory.token) as client:
            before = {b: await self._stock(client, b) for b in BINS}
            self._audit_before = len(await client.audit(action="move", limit=500))
        scenario = build_scenario(self.plan, self.speed, work, reply_chunk_ms=self.reply_chunk_ms)
        self.emu = Emulator(scenario, workdir=work / "emu", api_key="soak-key-not-secret")
        await self.emu.start()
        config = work / "config.toml"
        config.write_text(
            soak_config(work, url=self.emu.url, ca=self.emu.ca_file, inventory=inventory.base_url,
                        speed=self.speed, chunk_ms=self.chunk_ms, echo=self.echo)
        )  # fmt: skip
        started = time.monotonic()
        try:
            await self.start(config)
            await self._shift()
        finally:
            await self.stop()
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
