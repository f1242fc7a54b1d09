"""What the emulator saw and did, kept for tests to inspect.

Everything is plain data, appended to as frames arrive or leave. Sample offsets are counted in
the connection's input audio stream (16 kHz samples for the usual client), so a test can assert
where a marker fell relative to the audio it sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Marker:
    # "activity_start", "activity_end", "audio_stream_end", "speech_start", "speech_end",
    # "barge_in"
    kind: str
    sample: int


@dataclass
class VideoFrame:
    mime_type: str
    data: bytes = field(repr=False)
    sample: int = 0


@dataclass
class ToolResponseRecord:
    id: str
    name: str
    response: dict[str, Any]
    turn: int | None  # index into the connection's `turns`, None if no turn was waiting
    expected: bool  # answered a call the current turn was waiting on
    scheduling: str | None = None  # SILENT, WHEN_IDLE, INTERRUPT (3.8's async calls)


@dataclass
class FaultRecord:
    kind: str  # "interrupt", "close", "duplicate_tool_calls", "goaway", "goaway_deadline", ...
    turn: int | None
    detail: str = ""
    # The connection's turn whose reply was in progress when the fault fired (goaway), if any.
    during_turn: int | None = None


@dataclass
class Checkpoint:
    """A resumption handle as issued: what state it names and which client messages it holds."""

    handle: str
    phase: str  # "idle" (between turns), "tools" (waiting for answers), "reply"
    consumed_index: int  # last client message (setup = 0) included in the state
    audio_samples: int  # input audio samples included in the state


@dataclass
class TurnRecord:
    scenario_turn: int | None  # index into Scenario.turns; None once the script ran out
    end_reason: str  # "vad", "activity_end", "audio_stream_end", "text", "client_content"
    end_sample: int
    speech_start_sample: int | None = None
    user_text: str | None = None  # text input, when the turn came as text
    input_transcript_sent: str = ""
    tool_calls_sent: list[dict[str, Any]] = field(default_factory=list)
    tool_responses: list[ToolResponseRecord] = field(default_factory=list)
    reply_pcm: bytearray = field(default_factory=bytearray, repr=False)  # exactly as sent
    # (time.monotonic(), reply samples sent so far) as each audio frame went out: timing taken
    # by polling the record would be late by however long the poller waited for the CPU.
    reply_sent_at: list[tuple[float, int]] = field(default_factory=list, repr=False)
    # Said while NON_BLOCKING tools ran, before the answers came (sent ahead of reply_pcm).
    filler_pcm: bytearray = field(default_factory=bytearray, repr=False)
    # The tool-call ids' behavior as declared in the setup (BLOCKING / NON_BLOCKING).
    tool_behavior: dict[str, str] = field(default_factory=dict)
    # A resumed turn goes on from this byte of its reply (what the cut-off connection sent).
    reply_offset: int = 0
    reply_text_sent: str = ""
    interrupted: bool = False
    generation_complete: bool = False
    finished: bool = False  # the turn's last frame (turnComplete or close) went out


@dataclass
class ConnectionRecord:
    index: int
    path: str
    api_key: str | None = None
    raw_setup: dict[str, Any] | None = None  # the setup message exactly as received
    setup: dict[str, Any] | None = None  # the same, every field name in snake_case
    audio: bytearray = field(default_factory=bytearray, repr=False)  # all input PCM, in order
    # (time.monotonic(), input samples so far) as each audio frame was taken in.
    audio_at: list[tuple[float, int]] = field(default_factory=list, repr=False)
    audio_rate: int | None = None
    video_frames: list[VideoFrame] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tool_responses: list[ToolResponseRecord] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    resumption_handle: str | None = None  # presented in setup
    resumed_phase: str | None = None  # the phase the presented handle named
    handles_issued: list[str] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    # Ephemeral-token connections (the Constrained endpoint): the token and the setup in force
    # once the token's locked fields were applied.
    token: str | None = None
    effective_setup: dict[str, Any] | None = None
    frames_received: int = 0
    frames_sent: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str | None = None  # "server" or "client"

    @property
    def audio_samples(self) -> int:
        return len(self.audio) // 2

    @property
    def finished_turns(self) -> list[TurnRecord]:
        return [turn for turn in self.turns if turn.finished]


@dataclass
class EmulatorRecord:
    connections: list[ConnectionRecord] = field(default_factory=list)

    @property
    def turns(self) -> list[TurnRecord]:
        return [turn for conn in self.connections for turn in conn.turns]

    @property
    def finished_turns(self) -> list[TurnRecord]:
        return [turn for turn in self.turns if turn.finished]

    @property
    def reply_pcm(self) -> list[bytes]:
        """The model audio sent for each turn (any filler said while tools ran, then the
        reply), in turn order across connections."""
        return [bytes(turn.filler_pcm + turn.reply_pcm) for turn in self.turns]

    @property
    def faults(self) -> list[FaultRecord]:
        return [fault for conn in self.connections for fault in conn.faults]

    @property
    def tool_responses(self) -> list[ToolResponseRecord]:
        return [resp for conn in self.connections for resp in conn.tool_responses]

    @property
    def resumption_handles_presented(self) -> list[str]:
        return [c.resumption_handle for c in self.connections if c.resumption_handle]

    @property
    def closed_connections(self) -> list[ConnectionRecord]:
        return [conn for conn in self.connections if conn.close_code is not None]

    def session_audio(self) -> bytes:
        """The input audio the session's state holds, across resumed connections.

        Each connection contributes its audio up to the checkpoint the next connection resumed
        from; audio after that point was never part of the session and must be sent again.
        """
        out = bytearray()
        for conn, following in zip(self.connections, self.connections[1:], strict=False):
            points = {c.handle: c for c in conn.checkpoints}
            point = points.get(following.resumption_handle or "")
            out += conn.audio[: 2 * point.audio_samples] if point else b""
        if self.connections:
            out += self.connections[-1].audio
        return bytes(out)


class Watch:
    """Lets waiters sleep until the record changes, instead of polling with sleeps."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        record: EmulatorRecord,
        predicate: Callable[[EmulatorRecord], bool],
        timeout_s: float,
        what: str = "",
    ) -> EmulatorRecord:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate(record):
                    await self._changed.wait()
        except TimeoutError:
            label = what or getattr(predicate, "__name__", "condition")
            raise TimeoutError(
                f"emulator: {label} did not happen within {timeout_s:g} s "
                f"({len(record.connections)} connections, {len(record.finished_turns)} "
                f"finished turns, faults {[f.kind for f in record.faults]})"
            ) from None
        return record
