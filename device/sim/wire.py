"""The Live API's JSON wire format: reading client frames and building server frames.

Clients mix spellings: the SDK sends top-level keys in snake_case (`realtime_input`), some
nested keys in camelCase (`functionResponses`, `activityStart`) and passes `realtimeInputConfig`
through in snake_case. Other clients send everything in camelCase. Every incoming frame is
therefore normalized to snake_case once, at the door, and the rest of the emulator reads one
spelling. Server frames go out in camelCase, as the real service sends them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

AUDIO_OUT_MIME = "audio/pcm;rate=24000"
DEFAULT_INPUT_RATE = 16000

# Close codes the real service uses, and what they mean here.
CLOSE_NORMAL = 1000
CLOSE_INVALID_FRAME = 1007  # malformed or out-of-order client frame
CLOSE_POLICY = 1008  # bad API key, unknown resumption handle
CLOSE_INTERNAL = 1011
CLOSE_ABNORMAL = 1006  # never sent: the emulator drops the TCP connection instead

# Maps whose keys are data (tool arguments, JSON schemas, user labels), not field names: their
# keys are kept verbatim. `properties` keeps its keys but its values are schemas again.
_OPAQUE = frozenset(
    {
        "args",
        "response",
        "labels",
        "parameters_json_schema",
        "response_json_schema",
        "default",
        "example",
    }
)
_NAMED_SCHEMAS = frozenset({"properties", "defs"})
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_RATE = re.compile(r"rate\s*=\s*(\d+)", re.IGNORECASE)


class WireError(Exception):
    """A client frame the service would reject; `code` is the websocket close code to use."""

    def __init__(self, message: str, code: int = CLOSE_INVALID_FRAME) -> None:
        super().__init__(message)
        self.code = code


def to_snake(key: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def to_snake_path(path: str) -> str:
    """`generationConfig.responseModalities` -> `generation_config.response_modalities`."""
    return ".".join(to_snake(part) for part in path.strip().split("."))


def normalize_keys(value: Any) -> Any:
    """Return `value` with every field name in snake_case, leaving data-valued maps untouched."""
    if isinstance(value, list):
        return [normalize_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = to_snake(key)
        if name in _OPAQUE:
            out[name] = item
        elif name in _NAMED_SCHEMAS and isinstance(item, dict):
            out[name] = {k: normalize_keys(v) for k, v in item.items()}
        else:
            out[name] = normalize_keys(item)
    return out


def decode_base64(data: Any, *, field: str) -> bytes:
    """Decode standard or url-safe base64, with or without padding."""
    if not isinstance(data, str):
        raise WireError(f"{field} must be a base64 string, got {type(data).__name__}")
    text = data.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"{field} is not valid base64 ({exc})") from exc


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pcm_rate(mime_type: str | None) -> int:
    """The sample rate named in an `audio/pcm;rate=N` mime type (16 kHz when unstated)."""
    if not mime_type:
        return DEFAULT_INPUT_RATE
    match = _RATE.search(mime_type)
    if match is None:
        return DEFAULT_INPUT_RATE
    rate = int(match.group(1))
    if not 8000 <= rate <= 48000:
        raise WireError(f"audio mime type {mime_type!r} names rate {rate}; use 8000..48000")
    return rate


def duration(seconds: float) -> str:
    """A protobuf JSON Duration, as the service writes `goAway.timeLeft` ("50s", "0.5s")."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0") + "s"


# Server frames, camelCase like the real service.


def setup_complete() -> dict[str, Any]:
    return {"setupComplete": {}}


def audio_part(pcm: bytes) -> dict[str, Any]:
    return {"inlineData": {"mimeType": AUDIO_OUT_MIME, "data": encode_base64(pcm)}}


def server_content(
    *,
    audio: bytes | None = None,
    input_text: str | None = None,
    output_text: str | None = None,
    interrupted: bool = False,
    generation_complete: bool = False,
    turn_complete: bool = False,
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if audio is not None:
        content["modelTurn"] = {"parts": [audio_part(audio)]}
    if input_text is not None:
        content["inputTranscription"] = {"text": input_text}
    if output_text is not None:
        content["outputTranscription"] = {"text": output_text}
    if interrupted:
        content["interrupted"] = True
    if generation_complete:
        content["generationComplete"] = True
    if turn_complete:
        content["turnComplete"] = True
    return {"serverContent": content}


def tool_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    return {"toolCallCancellation": {"ids": ids}}


def go_away(time_left_s: float) -> dict[str, Any]:
    return {"goAway": {"timeLeft": duration(time_left_s)}}


def resumption_update(
    handle: str, *, resumable: bool = True, consumed_index: int | None = None
) -> dict[str, Any]:
    update: dict[str, Any] = {"newHandle": handle, "resumable": resumable}
    if consumed_index is not None:
        # An int64 in proto3 JSON is a string, as the service writes it.
        update["lastConsumedClientMessageIndex"] = str(consumed_index)
    return {"sessionResumptionUpdate": update}


def usage_metadata(prompt_tokens: int, response_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": prompt_tokens,
        "responseTokenCount": response_tokens,
        "totalTokenCount": prompt_tokens + response_tokens,
    }


def transcript_pieces(text: str, words_per_piece: int = 1) -> list[str]:
    """Split `text` into streaming pieces whose concatenation is the text, as the service
    streams transcriptions (each piece after the first starts with its space)."""
    words = re.findall(r"\s*\S+", text.strip())
    return ["".join(words[i : i + words_per_piece]) for i in range(0, len(words), words_per_piece)]


def close_reason(text: str) -> str:
    """Trim a close reason to the 123 bytes a websocket close frame can carry."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", errors="ignore") + "..."
