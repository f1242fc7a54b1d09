"""Client frames as the emulated service reads them: one JSON message each, checked the way
the service checks it (a bad frame raises wire.WireError with the close code), then handed to
the listener (audio, markers, text), the tool answers, or the record (video, text)."""

from __future__ import annotations

import json
from typing import Any

from device.sim import wire
from device.sim.answers import ToolAnswers
from device.sim.listener import Listener
from device.sim.record import ConnectionRecord, VideoFrame

MESSAGE_TYPES = ("setup", "client_content", "realtime_input", "tool_response", "context_update")


class ClientFrames:
    """Mixed into `Connection`: what it needs from it is declared here."""

    record: ConnectionRecord
    listener: Listener
    _answers: ToolAnswers

    def _check_goaway(self) -> None:
        raise NotImplementedError

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
        if kind not in MESSAGE_TYPES:
            raise wire.WireError(f"Invalid JSON payload received. Unknown name {key!r}")
        if not isinstance(body, dict):
            raise wire.WireError(f"{key} must be a JSON object")
        return {kind: body}

    def _handle(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "setup":
            raise wire.WireError("setup may only be sent once, as the first message")
        if kind == "realtime_input":
            self._realtime_input(body)
        elif kind == "tool_response":
            self._answers.receive(body)
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
