"""What `config check` adds to preflight: everything `run` would fail on, or quietly run without.

`run` keeps going when a part cannot work (no wake model: button only; a metrics address it
cannot bind: no metrics; a speaker it cannot open: waiting for it), because a device nobody can
reach must do what it can. Whoever runs `config check` wants to hear about each of those, so
every one is a `ConfigError` naming the key (exit 78, one line).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

from device.config import ConfigError, Settings

# Prebuilt voices of Gemini's native-audio Live models.
VOICES = frozenset(
    (
        "Zephyr",
        "Puck",
        "Charon",
        "Kore",
        "Fenrir",
        "Leda",
        "Orus",
        "Aoede",
        "Callirrhoe",
        "Autonoe",
        "Enceladus",
        "Iapetus",
        "Umbriel",
        "Algieba",
        "Despina",
        "Erinome",
        "Algenib",
        "Rasalgethi",
        "Laomedeia",
        "Achernar",
        "Alnilam",
        "Schedar",
        "Gacrux",
        "Pulcherrima",
        "Achird",
        "Zubenelgenubi",
        "Vindemiatrix",
        "Sadachbia",
        "Sadaltager",
        "Sulafat",
    )
)

_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL


def check_run(settings: Settings, *, installed: bool = True) -> None:
    """Raise `ConfigError` for the first thing `run` would fail on or silently degrade.

    `installed=False` (`config check --no-devices`, e.g. before provisioning has fetched the
    models) skips what depends on what is installed on this machine: the wake models."""
    _check_voice(settings)
    _check_state_dir(settings)
    _check_event_log(settings)
    _check_control_socket(settings)
    _check_pins(settings)
    if installed:
        _check_wake(settings)
    _check_output_wav(settings)
    _check_metrics(settings)


def _check_voice(settings: Settings) -> None:
    voice = settings.live.voice
    if voice not in VOICES:
        close = [v for v in sorted(VOICES) if v.lower() == voice.lower()]
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(sorted(VOICES))}"
        raise ConfigError("live.voice", f"no voice named {voice!r}", hint)


def _writable_dir(path: Path, key: str, what: str) -> None:
    # Nothing is created: the nearest existing directory must take a file (then the daemon,
    # or systemd's StateDirectory=, can make the rest).
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".wv-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            key,
            f"{what} {path} cannot be written ({exc.strerror or exc})",
            "point it at a writable directory (systemd StateDirectory= makes one)",
        ) from None


def _check_state_dir(settings: Settings) -> None:
    _writable_dir(settings.device.state_dir, "device.state_dir", "state directory")


def _check_event_log(settings: Settings) -> None:
    path = settings.state_path(settings.device.event_log)
    if path.is_dir():
        raise ConfigError("device.event_log", f"{path} is a directory", "name a file")
    _writable_dir(path.parent, "device.event_log", "the event log's directory")


def _check_control_socket(settings: Settings) -> None:
    path = settings.device.control_socket
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ConfigError(
            "device.control_socket",
            f"{path} is {len(os.fsencode(path))} bytes long; a unix socket path holds at most "
            f"{_UNIX_PATH_MAX}",
            "use a shorter path, e.g. /run/warehouse-voice/control.sock",
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(
            "device.control_socket",
            f"{parent} is not a directory, so {path} cannot be created",
            "put the socket in a directory (systemd RuntimeDirectory= makes one)",
        )


def _pin_number(pin: str) -> int:
    match = re.search(r"\d+$", pin)
    return int(match[0]) if match else -1


def _check_pins(settings: Settings) -> None:
    button, leds = settings.button, settings.leds
    owners: dict[int, str] = {}
    if leds.kind != "none":
        # Two LEDs on one pin are refused by preflight's panel check already.
        for colour, led_pin in sorted(leds.pins.items()):
            owners[_pin_number(led_pin)] = f"leds.pins.{colour}"
    if not button.enabled:
        return
    pins: tuple[tuple[str, str | None], ...] = (
        ("button.pin", button.pin),
        ("button.mute_pin", button.mute_pin),
    )
    for key, pin in pins:
        if pin is None:
            continue
        number = _pin_number(pin)
        if number in owners:
            raise ConfigError(
                key,
                f"GPIO{number} is also {owners[number]}; the panel would not start (voice only)",
                "use a pin no LED uses",
            )
        owners[number] = key


def _check_wake(settings: Settings) -> None:
    wake = settings.wake
    if not wake.enabled or settings.live.turn_detection == "manual":
        return
    from device.wake.download import FetchError
    from device.wake.models import load_models

    try:
        model_set = load_models(settings.device.state_dir)
    except FetchError as exc:
        raise ConfigError(
            "wake.models", f"not installed: {exc}", "or set [wake] enabled = false"
        ) from None
    for name in wake.models:
        try:
            model_set.get(name)
        except KeyError as exc:
            raise ConfigError(
                "wake.models",
                str(exc.args[0]),
                "install it with `warehouse-voice models fetch`, or remove it",
            ) from None
    unknown = sorted(set(wake.per_model) - set(wake.models))
    if unknown:
        raise ConfigError(
            f"wake.per_model.{unknown[0]}",
            f"{unknown[0]!r} is not in wake.models",
            "remove the section, or add the model to wake.models",
        )


def _check_output_wav(settings: Settings) -> None:
    audio = settings.audio
    if audio.output != "wav" or audio.output_wav is None:
        return
    path = settings.path(audio.output_wav)
    if not path.parent.is_dir():
        raise ConfigError(
            "audio.output_wav", f"directory {path.parent} does not exist", "create it first"
        )


def _check_metrics(settings: Settings) -> None:
    metrics = settings.metrics
    if not metrics.enabled:
        return
    host = metrics.address.rsplit(":", 1)[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The port itself may be held by a running daemon; the host must be one of ours.
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError as exc:
        raise ConfigError(
            "metrics.address",
            f"cannot listen on {host} ({exc.strerror or exc}): the daemon would run without "
            "metrics",
            "use an address of this machine, e.g. 127.0.0.1:9464",
        ) from None
