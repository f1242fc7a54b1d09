"""The demo's live view: one line per event, coloured by state when stdout is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from device.events import (
    ErrorRaised,
    Event,
    Interrupted,
    SessionEnded,
    SessionStarted,
    State,
    StateChanged,
    ToolCalled,
    ToolFinished,
    Transcript,
)

_COLOURS = {
    State.IDLE: "\033[2m",
    State.LISTENING: "\033[1;36m",
    State.CONNECTING: "\033[33m",
    State.CONVERSING: "\033[1;32m",
    State.CLOSING: "\033[35m",
    State.ERROR: "\033[1;31m",
    State.OFFLINE: "\033[31m",
}
_RESET = "\033[0m"


class Display:
    def __init__(self, out: TextIO = sys.stdout, *, colour: bool | None = None) -> None:
        self._out = out
        self._colour = out.isatty() if colour is None else colour
        self._t0 = time.monotonic()

    def __call__(self, event: Event) -> None:
        line = self._describe(event)
        if line:
            self._out.write(f"{event.mono - self._t0:7.2f}s  {line}\n")
            self._out.flush()

    def _paint(self, state: State, text: str) -> str:
        return f"{_COLOURS[state]}{text}{_RESET}" if self._colour else text

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, StateChanged):
            led = self._paint(event.state, f"● {event.state.value.upper():<10}")
            return f"{led} {event.reason}".rstrip()
        if isinstance(event, Transcript):
            who = "worker" if event.role == "user" else "device"
            return f'  {who:>6} > "{event.text}"'
        if isinstance(event, ToolCalled):
            args = ", ".join(f"{k}={v!r}" for k, v in event.args.items())
            return f"  tool   → {event.name}({args})"
        if isinstance(event, ToolFinished):
            said = event.result.get("speakable", "")
            return f"  tool   ← {event.name}: {event.status} ({event.latency_ms:.0f} ms) {said}"
        if isinstance(event, Interrupted):
            return f"  reply interrupted ({event.source})"
        if isinstance(event, SessionStarted):
            return f"  session {event.session_id} open ({event.model})"
        if isinstance(event, SessionEnded):
            return f"  session {event.session_id} closed: {event.reason}"
        if isinstance(event, ErrorRaised):
            return f"  error in {event.where}: {event.message}"
        return None
