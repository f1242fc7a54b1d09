"""What the panel should show, derived only from events on the bus.

The tracker folds events into a few facts (appliance state, what the conversation is doing,
pending tool calls, a pending confirmation, mute, recent warnings) and resolves them by
priority into one `PanelState`. Keeping this pure (no GPIO, injectable clock) means the LED
logic is tested without hardware and the button router can ask it what the device is doing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from device.events import (
    CameraUnavailable,
    ConfirmationIgnored,
    ConfirmationRequested,
    ConfirmationResolved,
    ErrorRaised,
    Event,
    Interrupted,
    MuteChanged,
    SessionEnded,
    SessionStarted,
    Speaking,
    State,
    StateChanged,
    ToolCalled,
    ToolFinished,
    UserSpeech,
    WakeDetected,
)
from device.service.supervisor import Health, PartHealth


class PanelState(StrEnum):
    IDLE = "idle"
    WAKE = "wake"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TOOL_RUNNING = "tool_running"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    ERROR = "error"
    OFFLINE = "offline"
    MUTED = "muted"


@dataclass(frozen=True)
class ButtonContext:
    """What a button press should mean right now."""

    in_session: bool = False
    speaking: bool = False
    awaiting_confirmation: bool = False


STILL_PENDING = frozenset({"confirmed", "revoked"})
_IN_SESSION = frozenset({State.LISTENING, State.CONNECTING, State.CONVERSING})


class PanelStateTracker:
    """Fold bus events into the one state the LEDs show.

    Priority, highest first: error (appliance error, a fatal error, a broken optional part, or
    a recent warning such as a failed camera), offline, muted, awaiting confirmation, tool
    running, the wake flash, idle, and otherwise what the conversation is doing (listening,
    thinking or speaking).
    """

    def __init__(
        self,
        *,
        wake_flash_s: float = 0.4,
        warning_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if wake_flash_s < 0 or warning_s < 0:
            raise ValueError("wake_flash_s and warning_s must be 0 or more seconds")
        self._wake_flash_s = wake_flash_s
        self._warning_s = warning_s
        self._clock = clock
        self._appliance = State.IDLE
        self._activity = PanelState.LISTENING
        self._tools: set[str] = set()
        # Writes read back and not yet done (committed, cancelled, expired, replaced, failed).
        self._confirming: set[str] = set()
        self._muted = False
        self._fatal = False
        self._wake_until = float("-inf")
        self._warning_until = float("-inf")
        # Optional parts (the camera, the panel) that are broken: the appliance's state does
        # not show them, so the LED does, for as long as they are broken.
        self._broken: set[str] = set()

    def handle(self, event: Event) -> None:
        now = self._clock()
        if isinstance(event, StateChanged):
            self._appliance = event.state
            self._fatal = False
            if event.state not in _IN_SESSION:
                self._end_conversation()
        elif isinstance(event, WakeDetected):
            self._wake_until = now + self._wake_flash_s
        elif isinstance(event, SessionStarted):
            self._activity = PanelState.LISTENING
        elif isinstance(event, SessionEnded):
            self._end_conversation()
        elif isinstance(event, UserSpeech):
            # The worker falling silent hands the turn to the model.
            self._activity = PanelState.LISTENING if event.active else PanelState.THINKING
        elif isinstance(event, Speaking):
            self._activity = PanelState.SPEAKING if event.started else PanelState.LISTENING
        elif isinstance(event, Interrupted):
            self._activity = PanelState.LISTENING
        elif isinstance(event, ToolCalled):
            self._tools.add(event.call_id)
        elif isinstance(event, ToolFinished):
            self._tools.discard(event.call_id)
            if not self._tools:
                # Function calls are synchronous: the model answers only after the result.
                self._activity = PanelState.THINKING
        elif isinstance(event, ConfirmationRequested):
            self._confirming.add(event.call_id)
        elif isinstance(event, ConfirmationResolved):
            # "confirmed" and "revoked" are steps on the way: the write still waits.
            if event.outcome not in STILL_PENDING:
                self._confirming.discard(event.call_id)
        elif isinstance(event, MuteChanged):
            self._muted = event.muted
        elif isinstance(event, ErrorRaised):
            if event.fatal:
                self._fatal = True
            else:
                self._warning_until = now + self._warning_s
        elif isinstance(event, CameraUnavailable | ConfirmationIgnored):
            # A confirm before the read-back had played did not take: the worker must see that.
            self._warning_until = now + self._warning_s
        elif isinstance(event, PartHealth) and not event.required:
            if event.health == Health.OK:
                self._broken.discard(event.part)
            else:
                self._broken.add(event.part)

    def _end_conversation(self) -> None:
        self._activity = PanelState.LISTENING
        self._tools.clear()
        self._confirming.clear()

    def state(self) -> PanelState:
        now = self._clock()
        if self._appliance is State.ERROR or self._fatal or self._broken:
            return PanelState.ERROR
        if now < self._warning_until:
            return PanelState.ERROR
        if self._appliance is State.OFFLINE:
            return PanelState.OFFLINE
        if self._muted:
            return PanelState.MUTED
        if self._confirming:
            return PanelState.AWAITING_CONFIRMATION
        if self._tools:
            return PanelState.TOOL_RUNNING
        if now < self._wake_until:
            return PanelState.WAKE
        if self._appliance not in _IN_SESSION:
            return PanelState.IDLE
        return self._activity

    def next_change_in(self) -> float | None:
        """Seconds until a timed overlay (wake flash, warning) ends, or None if none is active."""
        now = self._clock()
        pending = [t - now for t in (self._wake_until, self._warning_until) if t > now]
        return min(pending) if pending else None

    def context(self) -> ButtonContext:
        return ButtonContext(
            in_session=self._appliance in _IN_SESSION,
            speaking=self._activity is PanelState.SPEAKING,
            awaiting_confirmation=bool(self._confirming),
        )
