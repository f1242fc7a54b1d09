"""Playing one scripted model turn: transcript, tool round trip, paced reply audio, faults.

Reply audio is cut at exact byte positions for `interrupt_after_ms`, `close_after_ms` and
`close_after_bytes`, so a test knows to the byte what the client must have received. Only
pacing sleeps use the wall clock: reply audio streams `stream_speed` times faster than real
time, as the service's does, and everything is divided by the scenario's `speed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Literal, Protocol

from device.sim import wire
from device.sim.record import TurnRecord
from device.sim.reply_audio import OUTPUT_RATE
from device.sim.scenario import Scenario, TurnSpec
from device.sim.script import Phase

# Audio token rate the service bills for speech; used for the usageMetadata figures.
AUDIO_TOKENS_PER_S = 32
INPUT_WORDS_PER_PIECE = 3

Outcome = Literal["complete", "interrupted", "closed"]
ToolWait = Literal["answered", "interrupted", "timeout", "closed"]


class TurnChannel(Protocol):
    """What a turn needs from its connection."""

    scenario: Scenario
    wants_input_transcription: bool
    wants_output_transcription: bool

    @property
    def barge_in(self) -> asyncio.Event:
        """Set when the user starts talking over the reply."""

    def send(self, payload: dict[str, object], on_sent: Callable[[], None] | None = None) -> None:
        """Queue a frame; `on_sent` runs once it has been written to the socket."""

    def close(self, code: int, reason: str, on_closed: Callable[[], None] | None = None) -> None:
        """Queue a close after every frame already queued."""

    def fault(self, kind: str, turn: int | None, detail: str = "") -> None: ...

    def prompt_tokens(self, turn: TurnRecord) -> int: ...

    def expect_tool_responses(self, ids: set[str], turn: int, lose_with: int | None) -> None:
        """From now on, answers to `ids` belong to connection turn `turn`. With `lose_with`,
        the first answer is lost instead: the socket closes with that code unread."""

    async def wait_tool_responses(self, timeout_s: float, cancel_on_input: bool = True) -> ToolWait:
        """Until every expected id was answered, the user barged in (unless not
        `cancel_on_input`), or `timeout_s` passed."""

    def behavior(self, name: str) -> str:
        """BLOCKING or NON_BLOCKING, as the setup declared the tool (or the model's default)."""

    def checkpoint(self, phase: Phase, pending: tuple[str, ...] = ()) -> None:
        """Issue a mid-turn resumption handle (when the scenario asks for them)."""

    def reply_started(self) -> None:
        """The reply's first audio is going out: a handle naming the reply (the service's
        state now holds the question; a resume goes on with the reply)."""

    def go_away(self, detail: str) -> None:
        """Send goAway now and close the connection when its timeLeft has passed."""


async def _pause(channel: TurnChannel, seconds: float) -> bool:
    """Sleep, but wake early on a barge-in. True when the user barged in."""
    if channel.barge_in.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(channel.barge_in.wait(), seconds)
    return channel.barge_in.is_set()


async def _say_filler(channel: TurnChannel, pcm: bytes, text: str, record: TurnRecord) -> None:
    """The model talks while NON_BLOCKING tools run (3.8): its short "checking" line."""
    scenario = channel.scenario
    bytes_per_s = 2 * OUTPUT_RATE * scenario.speed * scenario.stream_speed
    chunk = 2 * OUTPUT_RATE * 40 // 1000
    loop = asyncio.get_running_loop()
    began = loop.time()
    if text and channel.wants_output_transcription:
        # The service's transcript pieces carry their own spacing; the reply's text follows.
        channel.send(wire.server_content(output_text=text.rstrip() + " "))
    for pos in range(0, len(pcm), chunk):
        await asyncio.sleep(max(0.0, began + pos / bytes_per_s - loop.time()))
        piece = pcm[pos : pos + chunk]

        def on_sent(piece: bytes = piece) -> None:
            record.filler_pcm.extend(piece)

        channel.send(wire.server_content(audio=piece), on_sent)


async def _tool_round_trip(
    channel: TurnChannel,
    spec: TurnSpec,
    record: TurnRecord,
    turn_no: int,
    start: Phase,
    pending: tuple[str, ...],
    filler: bytes = b"",
) -> Outcome | None:
    """Call the tools and wait for their answers; an outcome if the turn ends here."""
    calls: list[dict[str, object]] = [
        {"id": call.id, "name": call.name, "args": dict(call.args)}
        for call in spec.tool_calls
        if start == "idle" or call.id in pending
    ]
    ids = {str(call["id"]) for call in calls}
    if start == "idle" or channel.scenario.reannounce_tool_calls:
        copies = 2 if spec.duplicate_tool_calls and start == "idle" else 1
        for _ in range(copies):
            channel.send(wire.tool_call(calls))
            record.tool_calls_sent.extend(calls)
        if copies == 2:
            channel.fault("duplicate_tool_calls", turn_no, ",".join(sorted(ids)))
    if start == "idle":
        channel.expect_tool_responses(ids, turn_no, spec.close_on_tool_response)
        channel.checkpoint("tools", tuple(sorted(ids)))
    if spec.close_during_tool_call is not None:
        code = spec.close_during_tool_call
        channel.fault("close_during_tool_call", turn_no, f"code {code}")
        channel.close(code, _close_reason(code))
        return "closed"
    for call in calls:
        record.tool_behavior[str(call["id"])] = channel.behavior(str(call["name"]))
    # 3.8: NON_BLOCKING calls let the model talk on, and new input does not cancel them.
    non_blocking = bool(calls) and all(
        record.tool_behavior[str(call["id"])] == "NON_BLOCKING" for call in calls
    )
    if non_blocking and start == "idle" and filler:
        await _say_filler(channel, filler, spec.tool_filler_text, record)
    result = await channel.wait_tool_responses(
        channel.scenario.tool_timeout_s, cancel_on_input=not non_blocking
    )
    if result == "closed":
        return "closed"
    if result != "answered":
        answered = {r.id for r in record.tool_responses}
        missing = sorted(ids - answered)
        channel.send(wire.tool_call_cancellation(missing))
        if result == "interrupted":
            return "interrupted"
        channel.fault("tool_timeout", turn_no, ",".join(missing))
        return None
    channel.checkpoint("reply")
    if spec.close_after_tool_response is not None:
        code = spec.close_after_tool_response
        channel.fault("close_after_tool_response", turn_no, f"code {code}")
        channel.close(code, _close_reason(code))
        return "closed"
    if spec.cancel_tool_calls:
        channel.fault("cancel_tool_calls", turn_no, ",".join(sorted(ids)))
        channel.send(wire.tool_call_cancellation(sorted(ids)))
    if spec.goaway_after_tool_response:
        channel.go_away("after the tool answers were consumed")
    if spec.stall_after_tool_response:
        channel.fault("stall_after_tool_response", turn_no)
        # The model never speaks again on this connection; only the client leaving ends it.
        await asyncio.Event().wait()
    return None


def _close_reason(code: int) -> str:
    if code == wire.CLOSE_INTERNAL:
        return "Internal error encountered."
    return f"emulated fault: close code {code}"


async def play_turn(
    channel: TurnChannel,
    spec: TurnSpec,
    reply_pcm: bytes,
    record: TurnRecord,
    turn_no: int,
    scenario_turn: int,
    *,
    start: Phase = "idle",
    pending: tuple[str, ...] = (),
    offset: int = 0,
    filler: bytes = b"",
) -> Outcome:
    """Play one turn. A resumed connection starts it part-way: `start = "tools"` waits for
    the answers to `pending` (already expected by the connection), `"reply"` only replies."""
    scenario = channel.scenario

    def mark_finished() -> None:
        record.finished = True

    def interrupted() -> Outcome:
        record.interrupted = True
        channel.send(wire.server_content(interrupted=True))
        channel.send(wire.server_content(turn_complete=True), mark_finished)
        return "interrupted"

    if start == "idle" and channel.wants_input_transcription and spec.user_transcript:
        for piece in wire.transcript_pieces(spec.user_transcript, INPUT_WORDS_PER_PIECE):

            def add_input(piece: str = piece) -> None:
                record.input_transcript_sent += piece

            channel.send(wire.server_content(input_text=piece), add_input)

    if spec.tool_calls and start != "reply":
        outcome = await _tool_round_trip(channel, spec, record, turn_no, start, pending, filler)
        if outcome is not None:
            return interrupted() if outcome == "interrupted" else outcome

    if await _pause(channel, spec.reply_delay_ms / 1000 / scenario.speed):
        return interrupted()

    size = len(reply_pcm)
    samples = size // 2
    per_ms = 2 * OUTPUT_RATE // 1000  # bytes
    # A fault scheduled past the end of the reply fires after its last byte; a close wins a
    # tie with an interrupt. Positions are bytes, so a drop can land inside a sample.
    stop_at, fault = size, ""
    candidates: list[tuple[int, int, str]] = []
    if spec.close_code is not None:
        close_at = spec.close_after_bytes
        if close_at is None:
            close_at = (spec.close_after_ms or 0) * per_ms
        candidates.append((min(size, close_at), 0, "close"))
    if spec.interrupt_after_ms is not None:
        candidates.append((min(size, spec.interrupt_after_ms * per_ms), 1, "interrupt"))
    if candidates:
        stop_at, _, fault = min(candidates)

    goaway_at = None if spec.goaway_after_ms is None else spec.goaway_after_ms * per_ms
    chunk = max(2, spec.audio_chunk_ms * per_ms)
    n_chunks = -(-size // chunk)
    pieces = wire.transcript_pieces(spec.reply_text) if channel.wants_output_transcription else []
    # Spread the transcript over the audio as the service does, so text never runs far ahead
    # of the speech it belongs to.
    by_chunk: dict[int, str] = {}
    for i, piece in enumerate(pieces):
        slot = i * n_chunks // len(pieces) if n_chunks else 0
        by_chunk[slot] = by_chunk.get(slot, "") + piece
    rng = random.Random(f"{scenario.seed}:{scenario_turn}")
    # The service streams faster than real time (stream_speed); `speed` speeds up everything.
    rate = scenario.speed * spec.audio_pace * scenario.stream_speed
    bytes_per_s = 2 * OUTPUT_RATE * rate

    def add_text(text: str) -> Callable[[], None]:
        def on_sent() -> None:
            record.reply_text_sent += text

        return on_sent

    def add_audio(pcm: bytes, text: str | None) -> Callable[[], None]:
        def on_sent() -> None:
            record.reply_pcm.extend(pcm)
            record.reply_sent_at.append((time.monotonic(), len(record.reply_pcm) // 2))
            if text:
                record.reply_text_sent += text

        return on_sent

    if n_chunks == 0:
        for piece in by_chunk.values():
            channel.send(wire.server_content(output_text=piece), add_text(piece))

    # Chunks follow an absolute schedule from the first one, so sleep overshoot never adds up;
    # jitter makes single chunks late without delaying the ones after them. A resumed turn
    # goes on from `offset`, the byte its cut-off connection had sent.
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = pos = min(offset, stop_at) if offset else 0
    if pos < stop_at and start != "reply" and not spec.tool_calls:
        # (With tools, the handle issued once the answers were consumed names the reply.)
        channel.reply_started()
    while pos < stop_at:
        due = began + (pos - first) / bytes_per_s
        if spec.audio_jitter_ms:
            due += rng.uniform(0, spec.audio_jitter_ms) / 1000 / scenario.speed
        if await _pause(channel, due - loop.time()):
            return interrupted()
        index = pos // chunk
        end = min((index + 1) * chunk, stop_at)
        pcm = reply_pcm[pos:end]
        # A chunk's words went with its first piece (on the connection that sent it).
        text = by_chunk.get(index) if pos == index * chunk else None
        if text and index % 2:
            # The real model sometimes sends transcript and audio in one frame and sometimes
            # apart; clients must handle both, so alternate.
            channel.send(wire.server_content(output_text=text), add_text(text))
            channel.send(wire.server_content(audio=pcm), add_audio(pcm, None))
        else:
            channel.send(wire.server_content(audio=pcm, output_text=text), add_audio(pcm, text))
        pos = end
        if goaway_at is not None and pos >= goaway_at:
            goaway_at = None
            channel.go_away(f"after {spec.goaway_after_ms} ms of reply audio")
    # The reply is over when the service has finished generating it.
    if await _pause(channel, began + (pos - first) / bytes_per_s - loop.time()) and pos < size:
        return interrupted()

    if fault == "interrupt":
        channel.fault("interrupt", turn_no, f"after {spec.interrupt_after_ms} ms of reply audio")
        return interrupted()
    if fault == "close":
        code = spec.close_code or wire.CLOSE_INTERNAL
        channel.fault("close", turn_no, f"code {code} after {stop_at} bytes of reply")
        channel.close(code, _close_reason(code), mark_finished)
        return "closed"

    def complete() -> None:
        record.generation_complete = True

    channel.send(wire.server_content(generation_complete=True), complete)
    final = wire.server_content(turn_complete=True)
    final["usageMetadata"] = wire.usage_metadata(
        channel.prompt_tokens(record), samples * AUDIO_TOKENS_PER_S // OUTPUT_RATE
    )
    channel.send(final, mark_finished)
    return "complete"
