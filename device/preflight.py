"""Check settings against the machine before anything starts.

`config check` and `run` share this, so a daemon never starts with a configuration that
`config check` would have refused. Every failure is a `ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.config import ConfigError, Settings, read_secret
from device.tools.declarations import WAREHOUSE_TOOLS

KNOWN_TOOLS = frozenset(WAREHOUSE_TOOLS)


@dataclass(frozen=True)
class Resolved:
    """What the settings point at, read and verified."""

    api_key: str
    inventory_token: str | None
    instructions: str


def preflight(settings: Settings, *, check_devices: bool = True) -> Resolved:
    live, audio, tools = settings.live, settings.audio, settings.tools
    instructions_path = settings.path(live.instructions)
    try:
        instructions = instructions_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "live.instructions",
            f"cannot read {instructions_path} ({exc.strerror})",
            "point it at the system instruction file (config/instructions.md)",
        ) from None
    if live.ca_file is not None and not settings.path(live.ca_file).is_file():
        raise ConfigError(
            "live.ca_file",
            f"{settings.path(live.ca_file)} does not exist",
            "point it at a PEM CA file, or remove the key",
        )
    unknown = sorted(set(tools.enabled) - KNOWN_TOOLS)
    if unknown:
        raise ConfigError(
            "tools.enabled",
            f"unknown tool {unknown[0]!r}",
            f"use names from {sorted(KNOWN_TOOLS)}",
        )
    # With ephemeral tokens the device never holds the Gemini key; the broker token is read by
    # the connector (device.live.connect) and named there if it is missing.
    api_key = ""
    if live.auth == "api_key":
        api_key = (
            read_secret(
                key="live.api_key_file",
                env_var="GEMINI_API_KEY",
                credential="gemini-api-key",
                file=settings.path(live.api_key_file) if live.api_key_file else None,
            )
            or ""
        )
    token = read_secret(
        key="tools.token_file",
        env_var="WAREHOUSE_VOICE_INVENTORY_TOKEN",
        credential="inventory-token",
        file=settings.path(tools.token_file) if tools.token_file else None,
        required=bool(tools.enabled),
    )
    for key, backend, wav in (
        ("audio.input_wav", audio.input, audio.input_wav),
        ("audio.output_wav", audio.output, audio.output_wav),
    ):
        if backend != "wav":
            continue
        if wav is None:
            raise ConfigError(key, "not set, but the wav backend needs it", f"set {key}")
        if key == "audio.input_wav" and not settings.path(wav).is_file():
            raise ConfigError(key, f"{settings.path(wav)} does not exist", "record or copy it")
    from device.panel.board import panel_settings
    from device.vision.eye import camera_settings

    panel_settings(settings)
    camera_settings(settings)
    if check_devices:
        _check_audio_devices(settings)
    return Resolved(api_key=api_key, inventory_token=token, instructions=instructions)


def _check_audio_devices(settings: Settings) -> None:
    from device.audio.devices import AudioDeviceNotFound, find_device

    audio = settings.audio
    for key, backend, name, direction in (
        ("audio.input_device", audio.input, audio.input_device, "input"),
        ("audio.output_device", audio.output, audio.output_device, "output"),
    ):
        if backend != "pyaudio":
            continue
        try:
            find_device(name, direction)
        except AudioDeviceNotFound as exc:
            raise ConfigError(key, str(exc), f"set {key} to part of one of those names") from None
