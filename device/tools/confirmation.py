"""The worker's confirmation of a read-back: heard on the bus, never taken from the model.

A write proposed by the model becomes a `PendingAction`. It may be committed only once the
worker confirms it *after* the read-back: the worker's own transcribed speech holds a
confirmation word, or the button is pressed (or the appliance calls `confirm`). With
`require_spoken_readback` (the default), "after the read-back" means after the model has
started speaking again once the action was proposed. That stops a "confirm" the worker said
in the same breath as the request, whose transcript can arrive late, from counting.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from device.events import (
    ButtonEvent,
    ConfirmationRequested,
    ConfirmationResolved,
    Event,
    EventBus,
    Transcript,
)
from device.tools.inventory_client import WriteRequest

log = logging.getLogger(__name__)

# Any of these in the worker's answer means it is not a confirmation, whatever else it holds
# ("that's not correct", "no, confirm later").
NEGATIONS = frozenset(
    ("no", "not", "nope", "dont", "never", "cancel", "stop", "wait", "wrong", "incorrect", "hold")
)


@dataclass
class PendingAction:
    session_id: str
    call_id: str  # of the model's original write call; the idempotency key derives from it
    tool: str
    write: WriteRequest
    args: dict[str, object]
    readback: str
    idempotency_key: str
    created: float = field(default_factory=time.monotonic)
    expires: float = 0.0
    readback_heard: bool = False
    confirmed_by: str | None = None
    declined: bool = False
    heard: list[str] = field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        return self.confirmed_by is not None


def _words(text: str) -> list[str]:
    text = text.lower().replace("'", "").replace("\u2019", "")
    return re.sub(r"[^a-z0-9]+", " ", text).split()


def _contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


class ConfirmationGate:
    """Holds at most one pending action and listens on the bus for the worker's answer."""

    def __init__(
        self,
        bus: EventBus,
        confirm_words: Sequence[str],
        *,
        ttl_s: float = 120.0,
        require_spoken_readback: bool = True,
        button_confirms: bool = True,
    ) -> None:
        phrases = [_words(w) for w in confirm_words]
        if not phrases or not all(phrases):
            raise ValueError(
                "confirm_words must be non-empty words, e.g. ['confirm']; "
                f"got {list(confirm_words)}"
            )
        clash = [w for w, p in zip(confirm_words, phrases, strict=True) if set(p) & NEGATIONS]
        if clash:
            raise ValueError(f"confirm_words {clash} contain a negation and could never confirm")
        self._phrases = phrases
        self._bus = bus
        self._ttl_s = ttl_s
        self._require_readback = require_spoken_readback
        self._button_confirms = button_confirms
        self._pending: PendingAction | None = None
        self._unsubscribe = bus.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    @property
    def pending(self) -> PendingAction | None:
        pending = self._pending
        if pending is not None and time.monotonic() > pending.expires:
            self._resolve("expired")
            return None
        return pending

    def open(self, action: PendingAction) -> None:
        """Make `action` the one awaiting confirmation (an older one is dropped)."""
        if self._pending is not None:
            self._resolve("replaced")
        action.expires = action.created + self._ttl_s
        self._pending = action
        self._bus.publish(
            ConfirmationRequested(
                session_id=action.session_id,
                call_id=action.call_id,
                tool=action.tool,
                readback=action.readback,
            )
        )

    def confirm(self, source: str, *, at: float | None = None) -> bool:
        """The worker confirmed (button, voice, control socket). False if nothing is pending."""
        pending = self.pending
        at = time.monotonic() if at is None else at
        if pending is None or at <= pending.created:
            return False
        if self._require_readback and not pending.readback_heard and source == "voice":
            return False
        if pending.confirmed_by is None:
            pending.confirmed_by = source
            log.info("worker confirmed %s (%s) by %s", pending.tool, pending.call_id, source)
            self._publish(pending, "confirmed", source)
        return True

    def resolve(
        self, outcome: str, source: str = "", *, action: PendingAction | None = None
    ) -> PendingAction | None:
        """Close the pending action (committed, cancelled, failed); returns it.

        With `action`, close that one only: if another has replaced it meanwhile (the model
        proposed a new change while this one was committing), the newer one stays open.
        """
        if action is not None and action is not self._pending:
            self._publish(action, outcome, source)
            return action
        return self._resolve(outcome, source)

    def _resolve(self, outcome: str, source: str = "") -> PendingAction | None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._publish(pending, outcome, source)
        return pending

    def _publish(self, pending: PendingAction, outcome: str, source: str) -> None:
        self._bus.publish(
            ConfirmationResolved(
                session_id=pending.session_id,
                call_id=pending.call_id,
                tool=pending.tool,
                outcome=outcome,
                source=source,
            )
        )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Transcript):
            self._on_transcript(event)
        elif isinstance(event, ButtonEvent) and event.action == "press" and self._button_confirms:
            pending = self.pending
            if pending is None or event.mono <= pending.created:
                return
            if self._require_readback and not pending.readback_heard:
                log.info("button press before the read-back was spoken; not a confirmation")
                return
            self.confirm(f"button:{event.source}", at=event.mono)

    def _on_transcript(self, event: Transcript) -> None:
        pending = self.pending
        if pending is None or event.mono <= pending.created:
            return
        if event.role == "model":
            # The model is (re)reading the action: the worker's answer starts after this.
            pending.readback_heard = True
            pending.heard.clear()
            pending.declined = False
            return
        if event.role != "user":
            return
        if self._require_readback and not pending.readback_heard:
            log.info("ignoring worker speech heard before the read-back: %r", event.text)
            return
        pending.heard.append(event.text)
        # Transcription arrives in fragments that may or may not carry their own spaces.
        candidates = [_words(" ".join(pending.heard)), _words("".join(pending.heard))]
        if any(set(words) & NEGATIONS for words in candidates):
            # "Confirm... no, wrong bin": a later negation takes back a confirmation that has
            # not been committed yet. Only a new button press (or a fresh answer after the
            # model speaks again) can confirm after this.
            pending.declined = True
            if pending.confirmed_by is not None:
                log.info("worker took back the confirmation of %s", pending.tool)
                pending.confirmed_by = None
                self._publish(pending, "revoked", "voice")
            return
        if not pending.declined and any(
            _contains(words, phrase) for words in candidates for phrase in self._phrases
        ):
            self.confirm("voice", at=event.mono)
