"""Local barge-in: when the echo gate hears the worker over a reply, the reply stops now.

The gate (`device.audio.gate.HalfDuplexGate`, in either echo mode) publishes `BargeIn` when the
microphone is clearly louder than the echo expected from what is playing. Waiting for the
service's `interrupted` is not enough: the service sends it only while it is still generating,
and the real service streams a reply faster than real time, so once a reply was fully sent the
device would play it to the end over the worker. So the device acts on its own:

- it flushes playback at once (`interrupt("voice")`: the queued reply is dropped, and audio of
  that reply still in flight is dropped by the session until the service ends the turn);
- it tells the service: with automatic activity detection the service hears the worker in
  the audio the gate now lets through; in manual mode it also sends `activityStart`.

Only the bus connects the gate and the appliance, so neither knows the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from device.audio.echo import BargeIn
from device.events import Event, EventBus

log = logging.getLogger(__name__)

SOURCE = "voice"


class Conversant(Protocol):
    """What local barge-in needs of the appliance."""

    @property
    def speaking(self) -> bool: ...

    def interrupt(self, source: str = "gpio") -> None: ...

    def talk_start(self) -> None: ...


class LocalBargeIn:
    """Subscribes to `BargeIn` on `bus` and stops the reply of `appliance` (use `close()`)."""

    def __init__(self, bus: EventBus, appliance: Conversant, *, manual_turns: bool) -> None:
        self.appliance = appliance
        self.manual_turns = manual_turns
        self.acted = 0
        self._unsubscribe: Callable[[], None] = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, BargeIn):
            return
        # Published from inside the capture stage: act in the next loop step, outside this
        # publish, so the appliance's own events never land inside it. That is microseconds
        # later, and before the frame that opened the gate can reach the service.
        asyncio.get_running_loop().call_soon(self._act, event)

    def _act(self, event: BargeIn) -> None:
        if not self.appliance.speaking:
            return
        self.acted += 1
        log.info(
            "voice barge-in at %.1f dBFS over an expected echo of %.1f dBFS: reply stopped",
            event.level_db,
            event.echo_db,
        )
        self.appliance.interrupt(SOURCE)
        if self.manual_turns:
            # Manual turns: the service hears nobody until told; the button's release (or
            # the next press) ends the turn as it would for push-to-talk.
            self.appliance.talk_start()

    def close(self) -> None:
        self._unsubscribe()
