"""One emulated Live session on one websocket: reading client frames, deciding where user turns
end, and handing each turn to `turns.play_turn`.

Three tasks share the connection: the reader (frames in, never blocked by sending), the
conversation (one turn at a time, paced) and the writer (frames out, in order). A fault close
travels through the writer's queue, so it lands exactly after the audio queued before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from device.sim import wire
from device.sim.answers import ToolAnswers
from device.sim.goaway import GoAway
from device.sim.inbound import ClientFrames
from device.sim.listener import Listener
from device.sim.model_rules import check_setup, declared_behaviors
from device.sim.record import (
    Checkpoint,
    ConnectionRecord,
    FaultRecord,
    TurnRecord,
)
from device.sim.scenario import Scenario
from device.sim.script import Phase, Script, Start, UnknownHandle
from device.sim.turns import AUDIO_TOKENS_PER_S, ToolWait, play_turn
from device.sim.vad import VadConfigError, VadSettings

log = logging.getLogger(__name__)

_VIDEO_TOKENS_PER_FRAME = 258

# Checks a connection's setup before the session starts (the ephemeral-token gate): returns the
# setup in force, or raises wire.WireError with the close code.
SetupGate = Callable[[ConnectionRecord, dict[str, Any]], dict[str, Any]]


@dataclass
class _Frame:
    payload: dict[str, Any]
    on_sent: Callable[[], None] | None


@dataclass
class _Close:
    code: int
    reason: str
    on_closed: Callable[[], None] | None


class Connection(ClientFrames):
    def __init__(
        self,
        ws: ServerConnection,
        record: ConnectionRecord,
        script: Script,
        notify: Callable[[], None],
        gate: SetupGate | None = None,
    ) -> None:
        self.ws = ws
        self._gate = gate
        self.record = record
        self.script = script
        self.scenario: Scenario = script.scenario
        self._notify = notify
        self.listener = Listener(record, {})
        self.wants_input_transcription = False
        self.wants_output_transcription = False
        self._outgoing: asyncio.Queue[_Frame | _Close] = asyncio.Queue()
        self._answers = ToolAnswers(record, self.fault, self._lose_in_flight)
        self._goaway = GoAway(self)
        self._session_id = ""
        self._position = 0
        self._start = Start("", 0)
        self._resumable = False
        self._closing = False
        # Index of the last client message consumed into the session state (setup = 0).
        self._consumed_index = -1
        # After a scripted "lost in flight" close, frames still arriving are never consumed.
        self._deaf = False
        self._closed_event = asyncio.Event()
        self._behaviors: dict[str, str] = {}
        self._default_behavior = "BLOCKING"

    # The channel interface `turns.play_turn` uses.

    @property
    def barge_in(self) -> asyncio.Event:
        return self.listener.barge_in

    def send(self, payload: dict[str, Any], on_sent: Callable[[], None] | None = None) -> None:
        self._outgoing.put_nowait(_Frame(payload, on_sent))

    def close(self, code: int, reason: str, on_closed: Callable[[], None] | None = None) -> None:
        self._outgoing.put_nowait(_Close(code, reason, on_closed))

    def fault(
        self, kind: str, turn: int | None, detail: str = "", during_turn: int | None = None
    ) -> None:
        self.record.faults.append(FaultRecord(kind, turn, detail, during_turn))
        self._notify()

    def prompt_tokens(self, turn: TurnRecord) -> int:
        rate = self.record.audio_rate or wire.DEFAULT_INPUT_RATE
        start = turn.speech_start_sample if turn.speech_start_sample is not None else 0
        speech = max(0, turn.end_sample - start) * AUDIO_TOKENS_PER_S // rate
        return speech + _VIDEO_TOKENS_PER_FRAME * len(self.record.video_frames)

    def expect_tool_responses(self, ids: set[str], turn: int, lose_with: int | None) -> None:
        self._answers.expect(ids, turn, lose_with)

    async def wait_tool_responses(self, timeout_s: float, cancel_on_input: bool = True) -> ToolWait:
        return await self._answers.wait(timeout_s, self.barge_in if cancel_on_input else None)

    def behavior(self, name: str) -> str:
        return self._behaviors.get(name, self._default_behavior)

    def reply_started(self) -> None:
        if self.scenario.handles_during_tools:
            self._issue_handle("reply")

    def checkpoint(self, phase: Phase, pending: tuple[str, ...] = ()) -> None:
        if self.scenario.handles_during_tools:
            self._issue_handle(phase, pending)

    def _issue_handle(self, phase: Phase, pending: tuple[str, ...] = ()) -> None:
        if not self._resumable:
            return
        handle = self.script.issue_handle(
            self._session_id,
            self._position,
            phase,
            pending,
            self._start.audio_base + self.record.audio_samples,
        )
        self.record.handles_issued.append(handle)
        index = self._consumed_index
        self.record.checkpoints.append(Checkpoint(handle, phase, index, self.record.audio_samples))
        reported = index if self.scenario.report_consumed_index else None
        self.send(wire.resumption_update(handle, consumed_index=reported))

    # Lifecycle.

    async def run(self) -> None:
        try:
            await self._receive_setup()
        except wire.WireError as exc:
            await self.close_now(exc.code, str(exc))
            return
        except ConnectionClosed as exc:
            self._client_closed(exc)
            return
        if self.record.resumption_handle and self.scenario.resume_setup_delay_ms:
            await asyncio.sleep(self.scenario.resume_setup_delay_ms / 1000)
        self.send(wire.setup_complete())
        self._check_goaway()
        reader = asyncio.create_task(self._reader(), name="emulator-reader")
        writer = asyncio.create_task(self._writer(), name="emulator-writer")
        converse = asyncio.create_task(self._converse(), name="emulator-conversation")
        tasks = {reader, writer, converse}
        self._goaway.start()
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if done == {converse} and converse.exception() is None:
                # The script closed the socket: the writer still has that close queued.
                done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._note_cut_reply()
            timers = self._goaway.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *timers, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                # An emulator bug must not look like a clean session to the test.
                log.error("emulator task %s failed", task.get_name(), exc_info=task.exception())
                await self.close_now(wire.CLOSE_INTERNAL, f"emulator bug: {task.exception()!r}")
        self._notify()

    def _note_cut_reply(self) -> None:
        """The connection is ending: a reply it was streaming goes on after a resume."""
        turn = self.record.turns[-1] if self.record.turns else None
        if turn is None or turn.generation_complete or turn.interrupted or not turn.reply_pcm:
            return
        self.script.cut_reply(
            self._session_id, self._position, turn.reply_offset + len(turn.reply_pcm)
        )

    async def _receive_setup(self) -> None:
        message = self._decode(await self.ws.recv())
        kind = next(iter(message))
        if kind != "setup":
            raise wire.WireError(
                f"the first message must be setup, got {kind}; send the setup message first"
            )
        raw = message["setup"]
        self.record.raw_setup = raw
        setup = wire.normalize_keys(raw)
        if not isinstance(setup, dict):
            raise wire.WireError("setup must be a JSON object")
        self.record.setup = setup
        self._consumed_index = 0
        if self._gate is not None:
            setup = self._gate(self.record, setup)
        if not isinstance(setup.get("model"), str) or not setup["model"]:
            raise wire.WireError("setup.model is required, for example models/gemini-...")
        check_setup(setup)
        self._behaviors, self._default_behavior = declared_behaviors(setup)
        resumption = setup.get("session_resumption")
        handle = resumption.get("handle") if isinstance(resumption, dict) else None
        self.record.resumption_handle = handle
        self._resumable = isinstance(resumption, dict) and self.scenario.resumption
        try:
            self._start = self.script.begin(handle)
            self._session_id, self._position = self._start.session_id, self._start.position
            self._answers.session_answered = self.script.answered(self._session_id)
        except UnknownHandle:
            self._notify()
            raise wire.WireError(
                "BidiGenerateContent session not found (unknown resumption handle)",
                wire.CLOSE_POLICY,
            ) from None
        self.wants_input_transcription = setup.get("input_audio_transcription") is not None
        self.wants_output_transcription = setup.get("output_audio_transcription") is not None
        config = setup.get("realtime_input_config") or {}
        if not isinstance(config, dict):
            raise wire.WireError("setup.realtimeInputConfig must be an object")
        try:
            VadSettings.from_realtime_input_config(config)
        except VadConfigError as exc:
            raise wire.WireError(f"setup.realtimeInputConfig: {exc}") from exc
        self.listener = Listener(self.record, config)
        if handle:
            self.record.resumed_phase = self._start.phase
            if self._start.stale:
                self.fault("stale_handle", None, f"{handle} is not the session's newest handle")
        if self._start.phase != "idle":
            # The turn resumes part-way; its answers may be re-sent right behind the setup, so
            # they are expected before the first frame is read.
            self.record.turns.append(
                TurnRecord(
                    scenario_turn=self.script.turn_index(self._position),
                    end_reason="resumed",
                    end_sample=0,
                    reply_offset=self._start.offset,
                )
            )
            if self._start.phase == "tools":
                self.expect_tool_responses(set(self._start.pending), 0, None)
        self._notify()

    async def close_now(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.record.close_code, self.record.close_reason = code, reason
        self.record.closed_by = "server"
        self._notify()
        if code == wire.CLOSE_ABNORMAL:
            # A dropped link: what was written still arrives, then the socket ends with no
            # close frame, which the client sees as 1006.
            self.ws.transport.close()
            return
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close(code, wire.close_reason(reason))

    def _client_closed(self, exc: ConnectionClosed) -> None:
        if self.record.close_code is None:
            # The server started the close (Emulator.stop) unless the client's frame came first.
            by_server = exc.sent is not None and not (exc.rcvd and exc.rcvd_then_sent)
            frame = exc.sent if by_server else exc.rcvd
            self.record.close_code = frame.code if frame else 1006
            self.record.close_reason = frame.reason if frame else ""
            self.record.closed_by = "server" if by_server else "client"
        self._notify()

    async def _writer(self) -> None:
        while True:
            item = await self._outgoing.get()
            if isinstance(item, _Close):
                await self.close_now(item.code, item.reason)
                if item.on_closed:
                    item.on_closed()
                self._notify()
                return
            await self.ws.send(json.dumps(item.payload))
            self.record.frames_sent += 1
            if item.on_sent:
                item.on_sent()
            self._notify()

    async def _reader(self) -> None:
        try:
            while True:
                message = self._decode(await self.ws.recv())
                if self._deaf:
                    continue
                kind, body = next(iter(message.items()))
                self._handle(kind, wire.normalize_keys(body))
                if not self._deaf:
                    self._consumed_index = self.record.frames_received - 1
                self._notify()
        except wire.WireError as exc:
            await self.close_now(exc.code, str(exc))
        except ConnectionClosed as exc:
            self._client_closed(exc)

    def _lose_in_flight(self, code: int) -> None:
        # The scripted fault: the answer is lost and the socket closes unread.
        self._deaf = True
        self.close(code, "Internal error encountered." if code == 1011 else f"code {code}")

    def go_away(self, detail: str) -> None:
        self._goaway.now(detail)

    def new_audio_samples(self) -> int:
        """Input audio on this connection that the session had not heard before: what a
        resumed device sends again first does not use up the connection's lifetime."""
        return self._start.audio_base + self.record.audio_samples - self._start.heard

    def _check_goaway(self) -> None:
        if self._session_id:
            self.script.heard(self._session_id, self._start.audio_base + self.record.audio_samples)
        if not self._closing:
            self._goaway.audio_arrived()

    def drop(self) -> None:
        """Drop the link: what the client sends from here on is lost with it."""
        self._deaf = True
        self.close(wire.CLOSE_ABNORMAL, "connection dropped")

    # The conversation.

    async def _converse(self) -> None:
        if self._start.phase != "idle":
            # Resumed mid-turn: finish that turn before listening for the next one.
            record = self.record.turns[0]
            if not await self._play(record, 0, self._start.phase, self._start.pending):
                return
        while True:
            end = await self.listener.turn_ends.get()
            turn_no = len(self.record.turns)
            record = TurnRecord(
                scenario_turn=self.script.turn_index(self._position),
                end_reason=end.reason,
                end_sample=end.sample,
                speech_start_sample=end.speech_start,
                user_text=end.text,
            )
            self.record.turns.append(record)
            self._notify()
            if not await self._play(record, turn_no, "idle", ()):
                return

    async def _play(
        self, record: TurnRecord, turn_no: int, start: Phase, pending: tuple[str, ...]
    ) -> bool:
        """Play one turn; False once the connection is closing."""
        index = record.scenario_turn
        if index is None:
            self.fault("scenario_exhausted", turn_no, "no scripted turn left; set loop = true")

            def finished() -> None:
                record.finished = True

            self.send(wire.server_content(turn_complete=True), finished)
            return True
        spec, audio = self.script.turn(index)
        self.listener.start_response()
        try:
            outcome = await play_turn(
                self,
                spec,
                audio,
                record,
                turn_no,
                index,
                start=start,
                pending=pending,
                offset=record.reply_offset,
                filler=self.script.fillers[index],
            )
        finally:
            self.listener.end_response()
        if outcome == "closed":
            return False
        self.script.cut_reply(self._session_id, self._position, None)
        self._position += 1
        self.script.advance(self._position)
        self._issue_handle("idle")
        return True
