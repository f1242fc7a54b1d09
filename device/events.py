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
    # A model reply the worker did not hear to its end (cut off, or the speaker failed): its
    # text may hold words that never played. A finished reply is published once it has played.
    cut: bool = False


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


# Panel: what the LEDs show and the buttons do.


@dataclass(frozen=True, kw_only=True)
class WakeDetected(Event):
    """The wake word fired; the panel flashes so the worker knows they were heard."""

    kind: ClassVar[str] = "wake"
    model: str
    score: float
    # Capture stream offset (16 kHz samples) where the wake word is estimated to end.
    end_sample: int | None = None


@dataclass(frozen=True, kw_only=True)
class UserSpeech(Event):
    """The worker started (`active`) or stopped talking: local VAD or push-to-talk."""

    kind: ClassVar[str] = "user_speech"
    active: bool
    source: str  # "vad", "button" or "control"


@dataclass(frozen=True, kw_only=True)
class Speaking(Event):
    """The device's own voice started or stopped playing."""

    kind: ClassVar[str] = "speaking"
    started: bool


@dataclass(frozen=True, kw_only=True)
class MuteChanged(Event):
    kind: ClassVar[str] = "mute"
    muted: bool
    source: str  # "switch" or "control"


@dataclass(frozen=True, kw_only=True)
class ButtonGesture(Event):
    """A recognised button gesture and what it was routed to."""

    kind: ClassVar[str] = "button_gesture"
    gesture: str  # "press", "hold", "long_press" or "release"
    action: str  # a `ButtonAction` value
    source: str = "gpio"


@dataclass(frozen=True, kw_only=True)
class PanelStateChanged(Event):
    """The LED panel now shows `state` (a `PanelState` value); the demo display follows it."""

    kind: ClassVar[str] = "panel_state"
    state: str
    previous: str


# Confirmation of stock changes.


@dataclass(frozen=True, kw_only=True)
class ConfirmationRequested(Event):
    """A write was read back and waits for the worker (LEDs and the demo may show it)."""

    kind: ClassVar[str] = "confirmation_requested"
    session_id: str
    call_id: str
    tool: str
    readback: str


@dataclass(frozen=True, kw_only=True)
class ConfirmationResolved(Event):
    """outcome: confirmed, revoked, declined, committed, cancelled, expired, replaced,
    failed or handed_off."""

    kind: ClassVar[str] = "confirmation_resolved"
    session_id: str
    call_id: str
    tool: str
    outcome: str
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class ConfirmationIgnored(Event):
    """A confirm (voice, button, control) that came before a matching read-back."""

    kind: ClassVar[str] = "confirmation_ignored"
    session_id: str
    call_id: str
    tool: str
    source: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ReadBackChecked(Event):
    """The model's words after a proposal, compared with the change (match or miss)."""

    kind: ClassVar[str] = "readback"
    session_id: str
    call_id: str
    tool: str
    outcome: str  # "match" or "miss"
    misses: int
    text: str


# Camera.


@dataclass(frozen=True, kw_only=True)
class CameraUnavailable(Event):
    """The camera is absent or failed; the device carries on voice-only."""

    kind: ClassVar[str] = "camera_unavailable"
    backend: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CameraAvailable(Event):
    """The camera works again after a failure."""

    kind: ClassVar[str] = "camera_available"
    backend: str


@dataclass(frozen=True, kw_only=True)
class SnapshotSent(Event):
    """One JPEG frame went to the Live session as realtime video."""

    kind: ClassVar[str] = "snapshot"
    reason: str  # "stream" (worker talking) or "look" (asked for on demand)
    width: int
    height: int
    size_bytes: int
    encode_ms: float


# Measurement.


@dataclass(frozen=True, kw_only=True)
class WireSent(Event):
    """Something went out on the Live websocket, `waited_ms` after the device queued it.

    Markers, tool responses and video are all published; audio chunks only as a sample (about
    one a second), which is enough for the capture-to-wire metric without flooding the log.
    """

    kind: ClassVar[str] = "wire_sent"
    session_id: str
    what: str  # audio | video | activity_start | activity_end | audio_stream_end | tool_response
    waited_ms: float


@dataclass(frozen=True, kw_only=True)
class WriteQueueChanged(Event):
    """The device's queue of confirmed writes for an unreachable inventory API changed.

    `change`: loaded (at start), queued, delivered, or rejected (the API refused it on
    delivery; `code` says why and `handoff_id` is the ticket opened for a person instead).
    """

    kind: ClassVar[str] = "write_queue"
    change: str
    depth: int
    oldest_ts: float | None = None  # wall-clock time the oldest waiting write was saved
    idempotency_key: str = ""
    path: str = ""
    code: str = ""
    handoff_id: int | None = None


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
