"""Every Live session's `Consent`, fed from the bus by session id.

The rules themselves live in `device.tools.consent`. This module only routes: a session's
transcripts go to that session's consent and no other; a press (button, control socket) goes
to the consent of the session that is open now; a consent ends when its session ends, so a
change proposed in one conversation can never be confirmed or committed in the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from device.events import (
    ButtonEvent,
    ConfirmationIgnored,
    ConfirmationRequested,
    ConfirmationResolved,
    Event,
    EventBus,
    ReadBackChecked,
    SessionEnded,
    SessionStarted,
    Transcript,
)
from device.tools.consent import Consent, Note, PendingAction, Rules, Stage

log = logging.getLogger(__name__)

__all__ = ["ConfirmationResolved", "Consents", "PendingAction"]

MAX_ENDED = 64


class Consents:
    """One `Consent` per session; `current` is the session open now (at most one)."""

    def __init__(
        self,
        bus: EventBus,
        confirm_words: Sequence[str],
        *,
        ttl_s: float = 120.0,
        button_confirms: bool = True,
        max_misses: int = 2,
        on_handoff: Callable[[PendingAction], None] | None = None,
    ) -> None:
        """`on_handoff`: called with a change dropped because its read-back went wrong
        `max_misses` times; it calls a person."""
        self._bus = bus
        self._rules = Rules.from_words(confirm_words, ttl_s=ttl_s, max_misses=max_misses)
        self._button_confirms = button_confirms
        self._by_session: dict[str, Consent] = {}
        self._ended: list[str] = []
        self._current: str | None = None
        self._on_handoff = on_handoff
        self._unsubscribe = bus.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def of(self, session_id: str) -> Consent | None:
        """The consent of `session_id`; made on first use, never again once it ended."""
        if session_id in self._ended:
            return None
        consent = self._by_session.get(session_id)
        if consent is None:
            consent = Consent(session_id, self._rules, self._note)
            self._by_session[session_id] = consent
        return consent

    @property
    def current(self) -> Consent | None:
        return self._by_session.get(self._current) if self._current is not None else None

    def propose(self, action: PendingAction) -> bool:
        consent = self.of(action.session_id)
        if consent is None:
            return False
        consent.propose(action)
        self._current = action.session_id
        return True

    def confirm(self, source: str, at: float | None = None) -> bool:
        consent = self.current
        return consent is not None and consent.press(source, at)

    def end(self, session_id: str) -> None:
        consent = self._by_session.pop(session_id, None)
        self._ended.append(session_id)
        del self._ended[:-MAX_ENDED]
        if self._current == session_id:
            self._current = None
        if consent is not None:
            consent.end()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            if self.of(event.session_id) is not None:
                self._current = event.session_id
        elif isinstance(event, SessionEnded):
            self.end(event.session_id)
        elif isinstance(event, Transcript):
            consent = self._by_session.get(event.session_id)
            if consent is None:
                return
            pending = consent.pending
            if pending is None or event.mono <= pending.created:
                return
            if event.role == "model":
                consent.model_said(event.text, cut=event.cut)
            elif event.role == "user":
                consent.worker_said(event.text)
        elif isinstance(event, ButtonEvent) and event.action == "press" and self._button_confirms:
            self.confirm(f"button:{event.source}", at=event.mono)

    def _note(self, note: Note) -> None:
        a = note.action
        if note.what == "requested":
            self._bus.publish(
                ConfirmationRequested(
                    session_id=a.session_id, call_id=a.call_id, tool=a.tool, readback=a.readback
                )
            )
        elif note.what == "resolved":
            if note.outcome == Stage.HANDED_OFF and self._on_handoff is not None:
                self._on_handoff(a)
            self._bus.publish(
                ConfirmationResolved(
                    session_id=a.session_id,
                    call_id=a.call_id,
                    tool=a.tool,
                    outcome=note.outcome,
                    source=note.source,
                )
            )
        elif note.what == "ignored":
            self._bus.publish(
                ConfirmationIgnored(
                    session_id=a.session_id,
                    call_id=a.call_id,
                    tool=a.tool,
                    source=note.source,
                    reason=note.detail,
                )
            )
        elif note.what == "readback":
            self._bus.publish(
                ReadBackChecked(
                    session_id=a.session_id,
                    call_id=a.call_id,
                    tool=a.tool,
                    outcome=note.outcome,
                    misses=a.misses,
                    text=note.detail[:300],
                )
            )
