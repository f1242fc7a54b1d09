"""When a conversation ends on its own: idle, end_session, or its maximum length.

Idle counts from the last activity (speech, a reply, a tool); anything busy keeps it fresh.
end_session and the maximum length do not cut a reply: they end the conversation at the next
turn boundary, or after `end_grace_s` if none comes.
"""

from __future__ import annotations

import logging
import time

from device.live.policy import SessionPolicy

log = logging.getLogger(__name__)


class SessionLimits:
    def __init__(self, policy: SessionPolicy, idle_timeout_s: float) -> None:
        self.policy = policy
        self.idle_timeout_s = idle_timeout_s
        self.last_activity = self.started = time.monotonic()
        self.ending: str | None = None
        self._ending_since = 0.0

    def start(self) -> None:
        self.last_activity = self.started = time.monotonic()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def end_when_quiet(self, reason: str) -> bool:
        """Ask for the end at the next turn boundary; False if an end is already due."""
        if self.ending is not None:
            return False
        log.info("ending the conversation after this reply: %s", reason)
        self.ending, self._ending_since = reason, time.monotonic()
        return True

    def reason(self, now: float, *, busy: bool, quiet: bool) -> str | None:
        """Why the conversation should end now, if it should."""
        if busy:
            self.touch()
        elif now - self.last_activity >= self.idle_timeout_s:
            return "idle timeout"
        limit = self.policy.max_session_s
        if limit and self.ending is None and now - self.started >= limit:
            self.end_when_quiet(f"maximum session length ({limit:g} s) reached")
        if self.ending is not None and (
            quiet or now - self._ending_since >= self.policy.end_grace_s
        ):
            return self.ending
        return None

    def next_deadline(self) -> float:
        due = self.last_activity + self.idle_timeout_s
        if self.policy.max_session_s and self.ending is None:
            due = min(due, self.started + self.policy.max_session_s)
        if self.ending is not None:
            due = min(due, self._ending_since + self.policy.end_grace_s)
        return due
