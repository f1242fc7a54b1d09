"""The demo's live view: one line per event, the LED in its own colour when on a terminal.

With no terminal (CI, a pipe) it prints the same lines without escape codes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from device.events import (
    ButtonEvent,
    ConfirmationRequested,
    ErrorRaised,
    Event,
    Interrupted,
    PanelStateChanged,
    SessionEnded,
    SessionStarted,
    Speaking,
    StateChanged,
    ToolCalled,
    ToolFinished,
    Transcript,
)
from device.panel.patterns import DEFAULT_PATTERNS
from device.panel.state import PanelState

_RESET = "\033[0m"


class Display:
    def __init__(self, out: TextIO = sys.stdout, *, colour: bool | None = None) -> None:
        self._out = out
        self._colour = out.isatty() if colour is None else colour
        self._t0 = time.monotonic()
        self._released_at: float | None = None
        self.turn_latencies_ms: list[float] = []

    def __call__(self, event: Event) -> None:
        line = self._describe(event)
        if line:
            self._out.write(f"{event.mono - self._t0:7.2f}s  {line}\n")
            self._out.flush()

    def _led(self, state: str) -> str:
        text = f"LED {state.replace('_', ' ')}"
        if not self._colour:
            return f"[{text}]"
        red, green, blue = (round(c * 255) for c in DEFAULT_PATTERNS[PanelState(state)].color)
        return f"\033[1;38;2;{red};{green};{blue}m● {text}{_RESET}"

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, StateChanged):
            return f"state {event.state.value:<10} {event.reason}".rstrip()
        if isinstance(event, PanelStateChanged):
            return "  " + self._led(event.state)
        if isinstance(event, ButtonEvent):
            if event.action == "release":
                self._released_at = event.mono
            return f"  button {event.action} ({event.source})"
        if isinstance(event, Speaking) and event.started and self._released_at is not None:
            # The worker's side of the round trip: button up to the first reply audio played.
            latency = (event.mono - self._released_at) * 1000
            self._released_at = None
            self.turn_latencies_ms.append(latency)
            return f"  reply started {latency:.0f} ms after the worker stopped"
        if isinstance(event, Transcript):
            who = "worker" if event.role == "user" else "device"
            cut = " (cut short: not all of it was heard)" if event.cut else ""
            return f'  {who:>6} > "{event.text}"{cut}'
        if isinstance(event, ToolCalled):
            args = ", ".join(f"{k}={v!r}" for k, v in event.args.items())
            return f"  tool   -> {event.name}({args})"
        if isinstance(event, ToolFinished):
            said = event.result.get("speakable", "")
            return f"  tool   <- {event.status} in {event.latency_ms:.0f} ms: {said}"
        if isinstance(event, ConfirmationRequested):
            return f"  waiting for the worker to confirm {event.tool}"
        if isinstance(event, Interrupted):
            return f"  reply interrupted ({event.source})"
        if isinstance(event, SessionStarted):
            resumed = " (resumed)" if event.resumed else ""
            return f"  session {event.session_id} open{resumed}"
        if isinstance(event, SessionEnded):
            return f"  session {event.session_id} closed: {event.reason}"
        if isinstance(event, ErrorRaised):
            return f"  error in {event.where}: {event.message}"
        return None
