"""Keep every part of the device running, and say how each one is doing.

A part is one of the device's moving pieces (capture, playback, wake listener, camera, panel,
link). It comes in one or more of three shapes:

- `run`: a coroutine that should run for ever (the wake listener). If it raises or returns,
  it is restarted after a backoff that doubles up to `backoff_max_s`.
- `probe`: a function saying what is wrong right now, or None (a speaker whose player died,
  a camera folder that vanished). Polled every `probe_interval_s`.
- `heal`: what to try, with the same backoff, while the probe reports a fault (reopen the
  speaker by name).

Parts that heal themselves (capture reopens its microphone) report through `report()`.

Every change of a part's health is published as `PartHealth` (the LED and the appliance state
follow it; `status` shows `snapshot()`), a fault also as `ErrorRaised`. `healthy()` gates the
systemd watchdog: it is True while every required part is ok, or recovering for less than its
`budget_s`. A part whose probe says it is stuck (`stuck=True`: a speaker whose write hangs)
cannot recover by itself, so only systemd's restart helps: it counts against the watchdog at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from device.events import ErrorRaised, Event, EventBus

log = logging.getLogger(__name__)

Probe = Callable[[], "str | Fault | None"]


class Health(StrEnum):
    OK = "ok"
    RECOVERING = "recovering"  # faulty, being restarted or waited for
    STUCK = "stuck"  # faulty and past help from inside the process


@dataclass(frozen=True)
class Fault:
    """A probe's answer when a fault cannot heal inside the process."""

    reason: str
    stuck: bool = False


@dataclass(frozen=True, kw_only=True)
class PartHealth(Event):
    kind: ClassVar[str] = "health"
    part: str
    health: Health
    reason: str = ""
    restarts: int = 0
    required: bool = True


@dataclass
class Part:
    name: str
    required: bool
    budget_s: float
    run: Callable[[], Awaitable[None]] | None = None
    probe: Probe | None = None
    heal: Callable[[], Awaitable[None]] | None = None
    health: Health = Health.OK
    reason: str = ""
    since: float = 0.0  # when the current fault began
    restarts: int = 0
    next_heal_at: float = 0.0
    heal_delay_s: float = 0.0
    reported: str | None = None  # a fault the part reported itself
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    healing: asyncio.Task[None] | None = field(default=None, repr=False)
    healing_since: float = 0.0


class Supervisor:
    def __init__(
        self,
        bus: EventBus,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        probe_interval_s: float = 0.5,
        settle_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.probe_interval_s = probe_interval_s
        self.settle_s = settle_s
        self._clock = clock
        self._parts: dict[str, Part] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(
        self,
        name: str,
        *,
        required: bool = True,
        budget_s: float = 60.0,
        run: Callable[[], Awaitable[None]] | None = None,
        probe: Probe | None = None,
        heal: Callable[[], Awaitable[None]] | None = None,
    ) -> Part:
        if name in self._parts:
            raise ValueError(f"part {name!r} is already supervised")
        part = Part(name, required, budget_s, run=run, probe=probe, heal=heal)
        self._parts[name] = part
        return part

    @property
    def parts(self) -> dict[str, Part]:
        return dict(self._parts)

    # -- health ---------------------------------------------------------------------------

    def report(self, name: str, fault: str | None) -> None:
        """A self-healing part says it broke (`fault`) or works again (None)."""
        part = self._parts[name]
        part.reported = fault
        self._set(part, Fault(fault) if fault else None)

    def healthy(self) -> bool:
        """Every required part works, or is recovering within its budget."""
        now = self._clock()
        for part in self._parts.values():
            if not part.required or part.health == Health.OK:
                continue
            if part.health == Health.STUCK or now - part.since > part.budget_s:
                return False
        return True

    def faults(self) -> dict[str, str]:
        return {p.name: p.reason for p in self._parts.values() if p.health != Health.OK}

    def snapshot(self) -> dict[str, Any]:
        """The `health` section of `status`."""
        now = self._clock()
        return {
            p.name: {
                "health": p.health.value,
                **({"reason": p.reason, "for_s": round(now - p.since, 1)} if p.reason else {}),
                "restarts": p.restarts,
                "required": p.required,
            }
            for p in self._parts.values()
        }

    def _set(self, part: Part, fault: Fault | None) -> None:
        if fault is None:
            if part.health == Health.OK:
                return
            part.health, part.reason = Health.OK, ""
            part.heal_delay_s = 0.0
            log.warning("%s works again", part.name)
        else:
            health = Health.STUCK if fault.stuck else Health.RECOVERING
            if part.health == health and part.reason == fault.reason:
                return
            if part.health == Health.OK:
                part.since = self._clock()
                log.error("%s: %s", part.name, fault.reason)
                self.bus.publish(ErrorRaised(where=part.name, message=fault.reason))
            part.health, part.reason = health, fault.reason
        self.bus.publish(
            PartHealth(
                part=part.name,
                health=part.health,
                reason=part.reason,
                restarts=part.restarts,
                required=part.required,
            )
        )

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every part and the probes until cancelled."""
        self._tasks = [
            asyncio.create_task(self._keep(part), name=f"supervise-{part.name}")
            for part in self._parts.values()
            if part.run is not None
        ]
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.probe_interval_s)
        finally:
            repairs = [p.healing for p in self._parts.values() if p.healing is not None]
            for task in [*self._tasks, *repairs]:
                task.cancel()
            await asyncio.gather(*self._tasks, *repairs, return_exceptions=True)

    async def check(self) -> None:
        """Poll every probe once, and heal what is due."""
        for part in list(self._parts.values()):
            if part.probe is None:
                continue
            try:
                answer = part.probe()
            except Exception as exc:  # a probe's own bug must not stop the others
                log.exception("probing %s failed", part.name)
                answer = f"probe failed: {exc!r}"
            fault = Fault(answer) if isinstance(answer, str) else answer
            if fault is None and part.reported:
                fault = Fault(part.reported)
            if part.healing is not None and not part.healing.done():
                # A repair that hangs (a reopen blocked in the driver) is past help from
                # inside the process: say so, so the watchdog lets systemd restart us.
                if fault is not None and self._clock() - part.healing_since > part.budget_s:
                    fault = Fault(f"repair hung: {fault.reason}", stuck=True)
                self._set(part, fault)
                continue
            self._set(part, fault)
            if fault is not None and not fault.stuck and part.heal is not None:
                self._heal(part)
        # A repair gets its turn within this check, but never holds up the next one.
        healing = [p.healing for p in self._parts.values() if p.healing and not p.healing.done()]
        if healing:
            await asyncio.wait(healing, timeout=self.probe_interval_s)

    def _heal(self, part: Part) -> None:
        assert part.heal is not None
        now = self._clock()
        if now < part.next_heal_at:
            return
        part.restarts += 1
        part.healing_since = now
        part.healing = asyncio.create_task(self._repair(part), name=f"heal-{part.name}")

    async def _repair(self, part: Part) -> None:
        assert part.heal is not None
        try:
            await part.heal()
        except Exception as exc:
            log.debug("healing %s failed: %s", part.name, exc)
            part.reason = f"{part.reason.split('; retrying')[0]}; retrying: {exc}"
        part.heal_delay_s = min(
            self.backoff_max_s,
            2 * part.heal_delay_s if part.heal_delay_s else self.backoff_initial_s,
        )
        part.next_heal_at = self._clock() + part.heal_delay_s

    async def _keep(self, part: Part) -> None:
        assert part.run is not None
        delay = self.backoff_initial_s
        while True:
            task = asyncio.create_task(_call(part.run), name=part.name)
            part.task = task
            try:
                done, _ = await asyncio.wait({task}, timeout=self.settle_s)
                if not done:
                    # It has run for a while: whatever broke it before is over.
                    delay = self.backoff_initial_s
                    if part.reported is None:
                        self._set(part, None)
                    await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            if task.cancelled():
                reason = "cancelled from outside"
                self._set(part, Fault(reason))
                await asyncio.sleep(delay)
                part.restarts += 1
                continue
            exc = task.exception()
            reason = f"stopped: {exc!r}" if exc is not None else "stopped by itself"
            log.error("%s %s; restarting in %.1f s", part.name, reason, delay)
            self._set(part, Fault(reason))
            await asyncio.sleep(delay)
            part.restarts += 1
            delay = min(self.backoff_max_s, 2 * delay)


async def _call(run: Callable[[], Awaitable[None]]) -> None:
    await run()


def speaker_probe(speaker: Any, *, stall_s: float) -> Probe:
    """A speaker's fault: its player died (`fault`), or one write has hung for `stall_s`."""
    last_failures = [getattr(speaker, "failures", 0)]

    def probe() -> str | Fault | None:
        stalled = getattr(speaker, "stalled_s", 0.0)
        if stalled > stall_s:
            return Fault(f"speaker write hung for {stalled:.0f} s", stuck=True)
        failures = getattr(speaker, "failures", 0)
        fault: str | None = getattr(speaker, "fault", None)
        if failures != last_failures[0] and fault is None:
            # It failed and a write has reopened it since: report the failure once.
            last_failures[0] = failures
            return "speaker failed and was reopened"
        last_failures[0] = failures
        return fault

    return probe
