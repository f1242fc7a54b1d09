"""What `status` tells about the appliance: uptime, the last session and error, counters."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from device.events import ErrorRaised, Event, SessionEnded, SessionStarted, ToolFinished


@dataclass
class Counters:
    sessions: int = 0
    turns_interrupted: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    errors: int = 0


@dataclass
class Status:
    started_at: float = field(default_factory=time.time)
    last_session: dict[str, Any] = field(default_factory=dict)
    last_error: dict[str, Any] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def account(self, event: Event) -> None:
        """A bus subscriber: count what happened."""
        counters = self.counters
        if isinstance(event, SessionStarted):
            counters.sessions += 1
            self.last_session = {"session_id": event.session_id, "started": event.ts}
        elif isinstance(event, SessionEnded):
            self.last_session.update(ended=event.ts, reason=event.reason)
        elif isinstance(event, ToolFinished):
            counters.tool_calls += 1
            counters.tool_errors += event.status not in ("ok", "needs_confirmation")
        elif isinstance(event, ErrorRaised):
            counters.errors += 1
            self.last_error = {"where": event.where, "message": event.message, "ts": event.ts}
        elif event.kind == "interrupted":
            counters.turns_interrupted += 1

    def snapshot(self, session: str | None) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "session": session,
            "last_session": self.last_session,
            "last_error": self.last_error,
            "counters": vars(self.counters),
            # Tasks alive in the daemon's event loop: flat over a shift, or something leaks.
            "tasks": _task_count(),
        }


def _task_count() -> int | None:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a snapshot taken outside the daemon)
        return None
