"""Typed events and the bus that carries them.

The bus is the spine of the appliance: the core publishes, and the LEDs, the event log, the
metrics exporter, the status socket and the demo display subscribe. None of them is called
directly by the core, so a slow or broken subscriber can never stall a conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

log = logging.getLogger(__name__)


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    CONNECTING = "connecting"
    CONVERSING = "conversing"
    CLOSING = "closing"
    ERROR = "error"
    OFFLINE = "offline"


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. `kind` names the event in the JSON-lines log."""

    kind: ClassVar[str] = "event"
    ts: float = field(default_factory=time.time)
    # Monotonic timestamp for latency arithmetic; wall-clock `ts` is for humans and logs.
    mono: float = field(default_factory=time.monotonic)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("mono", None)
        return {"kind": self.kind, **record}


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    kind: ClassVar[str] = "state"
    state: State
    previous: State
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SessionStarted(Event):
    kind: ClassVar[str] = "session_started"
    session_id: str
    model: str
    resumed: bool = False


@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    kind: ClassVar[str] = "session_ended"
    session_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Transcript(Event):
    kind: ClassVar[str] = "transcript"
    session_id: str
    role: str  # "user" or "model"
    text: str


@dataclass(frozen=True, kw_only=True)
class ToolCalled(Event):
    kind: ClassVar[str] = "tool_call"
    session_id: str
    call_id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ToolFinished(Event):
    kind: ClassVar[str] = "tool_result"
    session_id: str
    call_id: str
    name: str
    status: str
    result: dict[str, Any]
    latency_ms: float


@dataclass(frozen=True, kw_only=True)
class Interrupted(Event):
    """The model's reply was cut short (server `interrupted`, or a button press)."""

    kind: ClassVar[str] = "interrupted"
    session_id: str
    source: str


@dataclass(frozen=True, kw_only=True)
class ButtonEvent(Event):
    kind: ClassVar[str] = "button"
    action: str  # "press" or "release"
    source: str  # "gpio" or "control"


@dataclass(frozen=True, kw_only=True)
class ErrorRaised(Event):
    kind: ClassVar[str] = "error"
    where: str
    message: str
    fatal: bool = False


@dataclass(frozen=True, kw_only=True)
class Metric(Event):
    kind: ClassVar[str] = "metric"
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out on the event loop's thread.

    `publish` never raises and never waits: a subscriber that throws is logged and kept, and
    async consumers read from their own bounded queue, which drops its oldest event rather than
    block the publisher.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.kind)

    @contextlib.asynccontextmanager
    async def stream(self, maxsize: int = 1000) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue that receives every event published while the context is open."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

        def put(event: Event) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

        unsubscribe = self.subscribe(put)
        try:
            yield queue
        finally:
            unsubscribe()
