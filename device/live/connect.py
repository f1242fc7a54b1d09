"""Build the google-genai client and the Live connect config from settings."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types

from device.config import Settings


def build_client(settings: Settings, api_key: str) -> genai.Client:
    live = settings.live
    options: dict[str, Any] = {"api_version": live.api_version}
    if live.base_url:
        options["base_url"] = live.base_url
    if live.ca_file is not None:
        # The websocket takes its TLS context from async_client_args; a private CA (the
        # emulator's) is added to the system store rather than replacing it.
        ctx = ssl.create_default_context(cafile=str(settings.path(live.ca_file)))
        options["async_client_args"] = {"ssl": ctx}
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))


def build_connect_config(
    settings: Settings,
    *,
    instructions: str,
    function_declarations: list[dict[str, Any]],
    resumption_handle: str | None = None,
) -> types.LiveConnectConfig:
    live = settings.live
    speech: dict[str, Any] = {
        "voice_config": {"prebuilt_voice_config": {"voice_name": live.voice}},
    }
    if live.language:
        speech["language_code"] = live.language
    manual = live.turn_detection == "manual"
    config: dict[str, Any] = {
        "response_modalities": [types.Modality.AUDIO],
        "speech_config": speech,
        "system_instruction": instructions,
        "thinking_config": {"thinking_level": live.thinking_level.upper()},
        "realtime_input_config": {
            "automatic_activity_detection": {
                "disabled": manual,
                **(
                    {}
                    if manual
                    else {
                        "silence_duration_ms": live.silence_ms,
                        "prefix_padding_ms": live.prefix_padding_ms,
                    }
                ),
            },
            # Only frames sent while the worker talks count toward the turn (DESIGN §3).
            "turn_coverage": types.TurnCoverage.TURN_INCLUDES_ONLY_ACTIVITY,
        },
        "session_resumption": {"handle": resumption_handle} if resumption_handle else {},
    }
    if live.input_transcription:
        config["input_audio_transcription"] = {}
    if live.output_transcription:
        config["output_audio_transcription"] = {}
    if live.context_compression:
        config["context_window_compression"] = {"sliding_window": {}}
    if function_declarations:
        config["tools"] = [{"function_declarations": function_declarations}]
    return types.LiveConnectConfig(**config)


def read_instructions(settings: Settings) -> str:
    path: Path = settings.path(settings.live.instructions)
    return path.read_text(encoding="utf-8")
