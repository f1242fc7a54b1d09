"""goAway and its deadline, on the input-audio clock or the wall clock.

- `goaway_clock = "audio"`: goAway once `goaway_after_s` of input audio new to the session
  arrived on the connection, and the close `goaway_time_left_s` of audio later. Audio a
  resumed device sends again (what its handle did not hold) is not new: a lifetime always
  moves the session on by `goaway_after_s`, however long a reconnect took (a real lifetime is
  minutes, the re-sent audio seconds), so a turn never loops on the same seam.
- `goaway_clock = "wall"`: goAway `goaway_after_s / speed` seconds after setupComplete, with
  `timeLeft = goaway_time_left_s / speed`, and the close when that has passed.
- A turn's `goaway_after_ms` fault sends it mid-reply, and `goaway_after_tool_response` once
  the answers are consumed, with the wall-clock deadline.
- `input_fault_after_s` (first connection only, once): a goAway with the wall-clock deadline,
  or a dropped link, at that point of the input audio, so it can land inside a request.

The fault record says which turn's reply was in progress (`during_turn`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from device.sim import wire
from device.sim.record import ConnectionRecord
from device.sim.scenario import Scenario

_DEADLINE_REASON = "Deadline expired before operation could complete."


class GoAwayChannel(Protocol):
    scenario: Scenario
    record: ConnectionRecord

    def send(self, payload: dict[str, Any], on_sent: Any = None) -> None: ...

    def new_audio_samples(self) -> int: ...

    def close(self, code: int, reason: str, on_closed: Any = None) -> None: ...

    def drop(self) -> None: ...

    def fault(
        self, kind: str, turn: int | None, detail: str = "", during_turn: int | None = None
    ) -> None: ...


class GoAway:
    def __init__(self, channel: GoAwayChannel) -> None:
        self._channel = channel
        self._sent = False
        # Input audio samples on the connection when the audio clock's goAway went out.
        self._sent_at = 0
        self._deadline_queued = False
        self._input_faulted = False
        self._timers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """The connection is set up: start the wall clock, if that is the scenario's."""
        scenario = self._channel.scenario
        if scenario.goaway_after_s is not None and scenario.goaway_clock == "wall":
            self._timer(self._wall(scenario.goaway_after_s / scenario.speed))

    def stop(self) -> list[asyncio.Task[None]]:
        timers = list(self._timers)
        for task in timers:
            task.cancel()
        return timers

    def now(self, detail: str) -> None:
        """Send goAway now; close once its timeLeft (wall clock) has passed."""
        channel = self._channel
        left = channel.scenario.goaway_time_left_s / channel.scenario.speed
        self._sent = True
        self._sent_at = channel.record.audio_samples
        channel.fault("goaway", None, detail, self._turn_in_progress())
        channel.send(wire.go_away(round(left, 3)))
        self._timer(self._deadline(left))

    def audio_arrived(self) -> None:
        """The audio clock: check after each piece of input audio."""
        self._input_fault()
        channel = self._channel
        scenario = channel.scenario
        after = scenario.goaway_after_s
        if after is None or scenario.goaway_clock != "audio":
            return
        rate = channel.record.audio_rate or wire.DEFAULT_INPUT_RATE
        if not self._sent:
            fresh = channel.new_audio_samples() / rate
            if fresh >= after:
                self._sent = True
                self._sent_at = channel.record.audio_samples
                channel.fault(
                    "goaway",
                    None,
                    f"after {fresh:.3f} s of new input audio",
                    self._turn_in_progress(),
                )
                channel.send(wire.go_away(scenario.goaway_time_left_s))
            return
        since = (channel.record.audio_samples - self._sent_at) / rate
        if not self._deadline_queued and since >= scenario.goaway_time_left_s:
            self._deadline_queued = True
            channel.fault("goaway_deadline", None, f"{since:.3f} s of input audio after goAway")
            channel.close(scenario.goaway_close_code, _DEADLINE_REASON)

    def _input_fault(self) -> None:
        channel = self._channel
        after = channel.scenario.input_fault_after_s
        if after is None or channel.record.index != 0 or self._input_faulted:
            return
        rate = channel.record.audio_rate or wire.DEFAULT_INPUT_RATE
        elapsed = channel.record.audio_samples / rate
        if elapsed < after:
            return
        self._input_faulted = True
        detail = f"after {elapsed:.3f} s of input audio"
        if channel.scenario.input_fault == "goaway":
            self.now(detail)
            return
        channel.fault("drop", None, detail, self._turn_in_progress())
        channel.drop()

    async def _wall(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.now("wall clock")

    async def _deadline(self, left: float) -> None:
        await asyncio.sleep(left)
        self._channel.fault("goaway_deadline", None, "wall clock", self._turn_in_progress())
        self._channel.close(self._channel.scenario.goaway_close_code, _DEADLINE_REASON)

    def _turn_in_progress(self) -> int | None:
        turns = self._channel.record.turns
        return len(turns) - 1 if turns and not turns[-1].finished else None

    def _timer(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name="emulator-goaway")
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
