"""Where each conversation stands in the scenario, and the resumption handles that name it.

A conversation's position counts the turns it has used up. A fresh connection starts at 0 (or
where the last connection stopped, with `progress = "shared"`); a connection that presents a
resumption handle continues from the position the handle was issued at, which is how the
service restores context after a reconnect. A handle issued mid-turn (`handles_during_tools`)
also names the phase: waiting for tool answers, or about to reply.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Literal

from device.sim.scenario import Scenario, TurnSpec

_NO_FAULTS = {
    "interrupt_after_ms": None,
    "close_code": None,
    "close_after_ms": None,
    "duplicate_tool_calls": False,
    "close_during_tool_call": None,
    "close_on_tool_response": None,
    "close_after_tool_response": None,
    "stall_after_tool_response": False,
    "goaway_after_tool_response": False,
    "cancel_tool_calls": False,
    "goaway_after_ms": None,
}

Phase = Literal["idle", "tools", "reply"]


def _has_fault(spec: TurnSpec) -> bool:
    return any(getattr(spec, key) != value for key, value in _NO_FAULTS.items())


class UnknownHandle(Exception):
    """A resumption handle this emulator never issued."""


@dataclass(frozen=True)
class Start:
    """Where a new connection begins: its session, position and (when resumed) phase."""

    session_id: str
    position: int
    phase: Phase = "idle"
    pending: tuple[str, ...] = ()  # call ids still unanswered in the "tools" phase
    stale: bool = False  # resumed with a handle older than the session's newest
    # "reply" phase: the byte of the reply to go on from (what a cut-off connection had sent).
    offset: int = 0
    # Input audio samples the session holds at this point (0 for a fresh session): a resumed
    # connection's audio counts on from here.
    audio_base: int = 0
    # The most input audio any connection of this session had heard when this one began: what
    # a resumed device sends again first is not new to the session.
    heard: int = 0


@dataclass
class _Session:
    newest_handle: str | None = None
    answered: set[str] = field(default_factory=set)
    # (position, bytes sent) of a reply a connection was cut off in: the model said that much,
    # so a resumed session goes on from there instead of saying it again.
    cut: tuple[int, int] | None = None
    # The furthest input audio (in samples since the session began) any connection heard.
    heard: int = 0


class Script:
    def __init__(
        self, scenario: Scenario, audio: list[bytes], fillers: list[bytes] | None = None
    ) -> None:
        if len(audio) != len(scenario.turns):
            raise ValueError("Script needs one rendered reply per scenario turn")
        self.scenario = scenario
        self.audio = audio
        # What each turn says while NON_BLOCKING tools run (b"" for none).
        self.fillers = fillers or [b""] * len(audio)
        self._handles: dict[str, Start] = {}
        self._sessions: dict[str, _Session] = {}
        self._shared_position = 0
        self._counter = itertools.count(1)
        self._faulted: set[int] = set()

    def begin(self, handle: str | None) -> Start:
        """Session, position and phase for a new connection."""
        if handle:
            snapshot = self._handles.get(handle)
            if snapshot is None:
                raise UnknownHandle(handle)
            session = self._sessions[snapshot.session_id]
            newest = session.newest_handle
            if session.cut is not None and session.cut[0] == snapshot.position:
                return Start(
                    snapshot.session_id,
                    snapshot.position,
                    "reply",
                    offset=session.cut[1],
                    stale=handle != newest,
                    audio_base=snapshot.audio_base,
                    heard=session.heard,
                )
            return Start(
                snapshot.session_id,
                snapshot.position,
                snapshot.phase,
                snapshot.pending,
                stale=handle != newest,
                audio_base=snapshot.audio_base,
                heard=session.heard,
            )
        start = self._shared_position if self.scenario.progress == "shared" else 0
        session_id = secrets.token_hex(6)
        self._sessions[session_id] = _Session()
        return Start(session_id, start)

    def answered(self, session_id: str) -> set[str]:
        """Tool-call ids whose answers this session has consumed, across its connections."""
        return self._sessions.setdefault(session_id, _Session()).answered

    def turn_index(self, position: int) -> int | None:
        """The scenario turn played at `position`, or None once a non-looping script ran out."""
        count = len(self.scenario.turns)
        if self.scenario.loop:
            return position % count
        return position if position < count else None

    def turn(self, index: int) -> tuple[TurnSpec, bytes]:
        """The turn to play at scenario index `index`.

        Its faults fire the first time only (unless the scenario sets `repeat_faults`): a
        client that reconnects after a scripted 1011 and asks again gets its answer, instead
        of looping on the same fault forever.
        """
        spec = self.scenario.turns[index]
        if index in self._faulted and not self.scenario.repeat_faults:
            spec = spec.model_copy(update=_NO_FAULTS)
        elif _has_fault(spec):
            self._faulted.add(index)
        return spec, self.audio[index]

    def heard(self, session_id: str, samples: int) -> None:
        """A connection of the session has heard input audio up to `samples` (session time)."""
        session = self._sessions.setdefault(session_id, _Session())
        session.heard = max(session.heard, samples)

    def advance(self, position: int) -> None:
        """A connection has used up every turn before `position`."""
        self._shared_position = max(self._shared_position, position)

    def cut_reply(self, session_id: str, position: int, sent: int | None) -> None:
        """The connection ended while the reply at `position` was streaming, `sent` bytes in
        (None: that turn is over, forget any earlier cut)."""
        session = self._sessions.setdefault(session_id, _Session())
        session.cut = (position, sent) if sent is not None else None

    def issue_handle(
        self,
        session_id: str,
        position: int,
        phase: Phase = "idle",
        pending: tuple[str, ...] = (),
        audio_samples: int = 0,
    ) -> str:
        """`audio_samples`: the input audio the handle holds, in samples since the session
        began."""
        handle = f"{session_id}-{next(self._counter)}"
        self._handles[handle] = Start(
            session_id, position, phase, pending, audio_base=audio_samples
        )
        self._sessions.setdefault(session_id, _Session()).newest_handle = handle
        return handle
