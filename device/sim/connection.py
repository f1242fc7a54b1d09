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
from device.sim.listener import Listener
from device.sim.record import (
    ConnectionRecord,
    FaultRecord,
    ToolResponseRecord,
    TurnRecord,
    VideoFrame,
)
from device.sim.scenario import Scenario
from device.sim.script import Script, UnknownHandle
from device.sim.turns import AUDIO_TOKENS_PER_S, ToolWait, play_turn
from device.sim.vad import VadConfigError, VadSettings

log = logging.getLogger(__name__)

_MESSAGE_TYPES = ("setup", "client_content", "realtime_input", "tool_response", "context_update")
_VIDEO_TOKENS_PER_FRAME = 258


@dataclass
class _Frame:
    payload: dict[str, Any]
    on_sent: Callable[[], None] | None


@dataclass
class _Close:
    code: int
    reason: str
    on_closed: Callable[[], None] | None


class Connection:
    def __init__(
        self,
        ws: ServerConnection,
        record: ConnectionRecord,
        script: Script,
        notify: Callable[[], None],
    ) -> None:
        self.ws = ws
        self.record = record
        self.script = script
        self.scenario: Scenario = script.scenario
        self._notify = notify
        self.listener = Listener(record, {})
        self.wants_input_transcription = False
        self.wants_output_transcription = False
        self._outgoing: asyncio.Queue[_Frame | _Close] = asyncio.Queue()
        self._tool_event = asyncio.Event()
        self._waiting_for: set[str] = set()
        self._waiting_turn: int | None = None
        self._goaway_sent = False
        self._deadline_queued = False
        self._session_id = ""
        self._position = 0
        self._resumable = False
        self._closing = False

    # The channel interface `turns.play_turn` uses.

    @property
    def barge_in(self) -> asyncio.Event:
        return self.listener.barge_in

    def send(self, payload: dict[str, Any], on_sent: Callable[[], None] | None = None) -> None:
        self._outgoing.put_nowait(_Frame(payload, on_sent))

    def close(self, code: int, reason: str, on_closed: Callable[[], None] | None = None) -> None:
        self._outgoing.put_nowait(_Close(code, reason, on_closed))

    def fault(self, kind: str, turn: int | None, detail: str = "") -> None:
        self.record.faults.append(FaultRecord(kind, turn, detail))
        self._notify()

    def prompt_tokens(self, turn: TurnRecord) -> int:
        rate = self.record.audio_rate or wire.DEFAULT_INPUT_RATE
        start = turn.speech_start_sample if turn.speech_start_sample is not None else 0
        speech = max(0, turn.end_sample - start) * AUDIO_TOKENS_PER_S // rate
        return speech + _VIDEO_TOKENS_PER_FRAME * len(self.record.video_frames)

    async def wait_tool_responses(self, ids: set[str], turn: int, timeout_s: float) -> ToolWait:
        self._waiting_for, self._waiting_turn = set(ids), turn
        try:
            async with asyncio.timeout(timeout_s):
                while self._waiting_for:
                    if self.barge_in.is_set():
                        return "interrupted"
                    self._tool_event.clear()
                    barge = asyncio.ensure_future(self.barge_in.wait())
                    tool = asyncio.ensure_future(self._tool_event.wait())
                    try:
                        await asyncio.wait({barge, tool}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        barge.cancel()
                        tool.cancel()
            return "answered"
        except TimeoutError:
            return "timeout"
        finally:
            self._waiting_for, self._waiting_turn = set(), None

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
        self.send(wire.setup_complete())
        self._check_goaway()
        reader = asyncio.create_task(self._reader(), name="emulator-reader")
        writer = asyncio.create_task(self._writer(), name="emulator-writer")
        converse = asyncio.create_task(self._converse(), name="emulator-conversation")
        tasks = {reader, writer, converse}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if done == {converse} and converse.exception() is None:
                # The script closed the socket: the writer still has that close queued.
                done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                # An emulator bug must not look like a clean session to the test.
                log.error("emulator task %s failed", task.get_name(), exc_info=task.exception())
                await self.close_now(wire.CLOSE_INTERNAL, f"emulator bug: {task.exception()!r}")
        self._notify()

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
        if not isinstance(setup.get("model"), str) or not setup["model"]:
            raise wire.WireError("setup.model is required, for example models/gemini-...")
        resumption = setup.get("session_resumption")
        handle = resumption.get("handle") if isinstance(resumption, dict) else None
        self.record.resumption_handle = handle
        self._resumable = isinstance(resumption, dict) and self.scenario.resumption
        try:
            self._session_id, self._position = self.script.begin(handle)
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
        self._notify()

    def _decode(self, data: str | bytes) -> dict[str, Any]:
        self.record.frames_received += 1
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise wire.WireError(f"Invalid JSON payload received: {exc}") from exc
        if not isinstance(message, dict) or len(message) != 1:
            raise wire.WireError(
                "a client message must be a JSON object with exactly one of "
                "setup, clientContent, realtimeInput, toolResponse"
            )
        key, body = next(iter(message.items()))
        kind = wire.to_snake(key)
        if kind not in _MESSAGE_TYPES:
            raise wire.WireError(f"Invalid JSON payload received. Unknown name {key!r}")
        if not isinstance(body, dict):
            raise wire.WireError(f"{key} must be a JSON object")
        return {kind: body}

    async def close_now(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.record.close_code, self.record.close_reason = code, reason
        self.record.closed_by = "server"
        self._notify()
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
                kind, body = next(iter(message.items()))
                self._handle(kind, wire.normalize_keys(body))
                self._notify()
        except wire.WireError as exc:
            await self.close_now(exc.code, str(exc))
        except ConnectionClosed as exc:
            self._client_closed(exc)

    # Client frames.

    def _handle(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "setup":
            raise wire.WireError("setup may only be sent once, as the first message")
        if kind == "realtime_input":
            self._realtime_input(body)
        elif kind == "tool_response":
            self._tool_response(body)
        elif kind == "client_content":
            self._client_content(body)

    def _realtime_input(self, body: dict[str, Any]) -> None:
        for name in ("audio", "video"):
            if name in body:
                self._blob(body[name], f"realtimeInput.{name}")
        chunks = body.get("media_chunks") or []
        if not isinstance(chunks, list):
            raise wire.WireError("realtimeInput.mediaChunks must be a list of blobs")
        for i, chunk in enumerate(chunks):
            self._blob(chunk, f"realtimeInput.mediaChunks[{i}]")
        if "activity_start" in body:
            self.listener.activity_start()
        if "activity_end" in body:
            self.listener.activity_end()
        if body.get("audio_stream_end"):
            self.listener.audio_stream_end()
        if isinstance(body.get("text"), str) and body["text"]:
            self.record.texts.append(body["text"])
            self.listener.text(body["text"], "text")

    def _blob(self, blob: Any, field: str) -> None:
        if not isinstance(blob, dict):
            raise wire.WireError(f"{field} must be an object with data and mimeType")
        mime = str(blob.get("mime_type") or "")
        data = wire.decode_base64(blob.get("data"), field=f"{field}.data")
        if mime.startswith("audio/"):
            if not mime.startswith("audio/pcm"):
                raise wire.WireError(f"{field}.mimeType {mime!r}: send audio/pcm;rate=16000")
            self.listener.audio(data, wire.pcm_rate(mime))
            self._check_goaway()
        elif mime.startswith("image/"):
            self.record.video_frames.append(VideoFrame(mime, data, self.record.audio_samples))
        else:
            raise wire.WireError(f"{field}.mimeType {mime!r} is not audio/pcm or image/*")

    def _tool_response(self, body: dict[str, Any]) -> None:
        responses = body.get("function_responses")
        if not isinstance(responses, list):
            raise wire.WireError("toolResponse.functionResponses must be a list")
        for i, item in enumerate(responses):
            if not isinstance(item, dict) or not item.get("id"):
                raise wire.WireError(
                    f"toolResponse.functionResponses[{i}].id is required; "
                    "copy it from the toolCall's functionCalls[].id"
                )
            response = item.get("response")
            expected = item["id"] in self._waiting_for
            entry = ToolResponseRecord(
                id=str(item["id"]),
                name=str(item.get("name") or ""),
                response=response if isinstance(response, dict) else {"output": response},
                turn=self._waiting_turn,
                expected=expected,
            )
            self.record.tool_responses.append(entry)
            if expected and self._waiting_turn is not None:
                self.record.turns[self._waiting_turn].tool_responses.append(entry)
                self._waiting_for.discard(entry.id)
        self._tool_event.set()

    def _client_content(self, body: dict[str, Any]) -> None:
        texts = [
            part["text"]
            for turn in body.get("turns") or []
            if isinstance(turn, dict)
            for part in turn.get("parts") or []
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        self.record.texts.extend(texts)
        if body.get("turn_complete"):
            self.listener.text(" ".join(texts), "client_content")

    def _check_goaway(self) -> None:
        after = self.scenario.goaway_after_s
        if after is None or self._closing:
            return
        rate = self.record.audio_rate or wire.DEFAULT_INPUT_RATE
        elapsed = self.record.audio_samples / rate
        if not self._goaway_sent and elapsed >= after:
            self._goaway_sent = True
            self.fault("goaway", None, f"after {elapsed:.3f} s of input audio")
            self.send(wire.go_away(self.scenario.goaway_time_left_s))
        elif (
            self._goaway_sent
            and not self._deadline_queued
            and elapsed >= after + self.scenario.goaway_time_left_s
        ):
            self._deadline_queued = True
            self.fault("goaway_deadline", None, f"after {elapsed:.3f} s of input audio")
            self.close(
                self.scenario.goaway_close_code,
                "Deadline expired before operation could complete.",
            )

    # The conversation.

    async def _converse(self) -> None:
        while True:
            end = await self.listener.turn_ends.get()
            turn_no = len(self.record.turns)
            index = self.script.turn_index(self._position)
            record = TurnRecord(
                scenario_turn=index,
                end_reason=end.reason,
                end_sample=end.sample,
                speech_start_sample=end.speech_start,
                user_text=end.text,
            )
            self.record.turns.append(record)
            self._notify()
            if index is None:
                self.fault("scenario_exhausted", turn_no, "no scripted turn left; set loop = true")

                def finished(record: TurnRecord = record) -> None:
                    record.finished = True

                self.send(wire.server_content(turn_complete=True), finished)
                continue
            spec, audio = self.script.turn(index)
            self.listener.start_response()
            try:
                outcome = await play_turn(self, spec, audio, record, turn_no, index)
            finally:
                self.listener.end_response()
            if outcome == "closed":
                return
            self._position += 1
            self.script.advance(self._position)
            if self._resumable:
                handle = self.script.issue_handle(self._session_id, self._position)
                self.record.handles_issued.append(handle)
                self.send(wire.resumption_update(handle))
