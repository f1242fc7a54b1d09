"""Typed settings from TOML plus environment; the one home of defaults.

Every key is documented in `config/config.toml`. Secrets never live in the TOML: they come from
the environment or a credential file (systemd `LoadCredential`). Any problem becomes a
`ConfigError` that names the key and the fix; the CLI prints it as one line and exits 78
(EX_CONFIG), which the systemd unit treats as "do not restart".
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from device.config_sections import (
    AudioSettings,
    ButtonSettings,
    CameraSettings,
    DeviceSettings,
    EchoSettings,
    GpioSettings,
    LedSettings,
    LiveSettings,
    MetricsSettings,
    PositiveFloat,
    ToolSettings,
    WakeModelSettings,
    WakeSettings,
    _Section,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "EX_CONFIG",
    "REPO_CONFIG_DIR",
    "AudioSettings",
    "ButtonSettings",
    "CameraSettings",
    "ConfigError",
    "DeviceSettings",
    "EchoSettings",
    "GpioSettings",
    "LedSettings",
    "LiveSettings",
    "MetricsSettings",
    "PositiveFloat",
    "Settings",
    "ToolSettings",
    "WakeModelSettings",
    "WakeSettings",
    "load_settings",
    "read_secret",
    "settings_from_dict",
]

EX_CONFIG = 78
DEFAULT_CONFIG_PATH = Path("/etc/warehouse-voice/config.toml")
REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

# Keys that look like secrets get a pointed hint instead of "unknown key".
_SECRET_HINTS = ("key", "token", "secret", "password")


class ConfigError(Exception):
    """A configuration problem a person must fix. `str()` is the one line shown to them."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"config error: {key}: {problem}; fix: {fix}")


class Settings(_Section):
    device: DeviceSettings = DeviceSettings()
    live: LiveSettings = LiveSettings()
    audio: AudioSettings = AudioSettings()
    wake: WakeSettings = WakeSettings()
    echo: EchoSettings = EchoSettings()
    gpio: GpioSettings = GpioSettings()
    button: ButtonSettings = ButtonSettings()
    leds: LedSettings = LedSettings()
    camera: CameraSettings = CameraSettings()
    tools: ToolSettings = ToolSettings()
    metrics: MetricsSettings = MetricsSettings()
    # Directory of the file these settings came from; relative paths resolve against it.
    base_dir: Path = Field(default=REPO_CONFIG_DIR, exclude=True)

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.base_dir / value

    def state_path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.device.state_dir / value


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate a config file; `overrides` are nested dicts applied on top of it."""
    path = path or Path(os.environ.get("WAREHOUSE_VOICE_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "--config",
            f"file {path} does not exist",
            "pass --config PATH, or copy config/config.toml to /etc/warehouse-voice/",
        ) from None
    except OSError as exc:
        raise ConfigError(
            "--config", f"cannot read {path} ({exc.strerror})", "check its permissions"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "--config",
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            "save it as UTF-8",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            "--config", f"{path} is not valid TOML ({exc})", "fix the syntax"
        ) from None
    return settings_from_dict(_merge(raw, overrides or {}), base_dir=path.resolve().parent)


def settings_from_dict(raw: dict[str, Any], *, base_dir: Path = REPO_CONFIG_DIR) -> Settings:
    try:
        settings = Settings.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise _explain(exc) from None
    _check_model(settings.live)
    return settings


def _check_model(live: LiveSettings) -> None:
    """Refuse a setting the chosen Live model refuses (the table in device.live.models)."""
    from device.live.models import caps_for, known, refusal

    caps = caps_for(live.model, warn=not known(live.model))
    refused = refusal(caps, thinking_level=live.thinking_level)
    if refused is not None:
        key, why = refused
        raise ConfigError(
            f"live.{key}", why, "remove it, or set live.model to a model that takes it"
        )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _explain(exc: ValidationError) -> ConfigError:
    """Turn pydantic's first error into one line with the key and the fix."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        leaf = str(err["loc"][-1])
        if any(h in leaf.lower() for h in _SECRET_HINTS) and not leaf.endswith("_file"):
            return ConfigError(
                key,
                "secrets are not read from the config file",
                "remove it; set GEMINI_API_KEY / WAREHOUSE_VOICE_INVENTORY_TOKEN, or point "
                "live.api_key_file / tools.token_file at a credential file",
            )
        return ConfigError(key, "unknown key", f"remove it or fix its spelling ({_known(err)})")
    ctx = err.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "?")
        words = {
            "greater_than": "above",
            "greater_than_equal": "at least",
            "less_than": "below",
            "less_than_equal": "at most",
        }
        return ConfigError(key, f"{given!r} is out of range", f"use a value {words[kind]} {bound}")
    if kind == "literal_error":
        return ConfigError(key, f"{given!r} is not allowed", f"use one of {ctx.get('expected')}")
    if kind == "string_pattern_mismatch":
        return ConfigError(key, f"{given!r} has the wrong form", f"match {ctx.get('pattern')}")
    return ConfigError(key, f"{err['msg'].lower()} (got {given!r})", "see config/config.toml")


def _known(err: Any) -> str:
    section = err["loc"][0] if len(err["loc"]) > 1 else None
    model: type[BaseModel] = Settings
    if section is not None and section in Settings.model_fields:
        annotation = Settings.model_fields[str(section)].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    names = [n for n in model.model_fields if n != "base_dir"]
    return "known keys: " + ", ".join(names)


def read_secret(
    *, key: str, env_var: str, credential: str, file: Path | None, required: bool = True
) -> str | None:
    """Find a secret: an explicit file, then the systemd credential, then the environment."""
    candidates: list[Path] = []
    if file is not None:
        candidates.append(file)
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        cred = Path(os.environ["CREDENTIALS_DIRECTORY"]) / credential
        if cred.exists():
            candidates.append(cred)
    for candidate in candidates:
        try:
            value = candidate.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                key,
                f"cannot read credential file {candidate} ({exc.strerror})",
                "make it readable by the service user, or use LoadCredential",
            ) from None
        if not value:
            raise ConfigError(key, f"credential file {candidate} is empty", "write the secret")
        return value
    value = os.environ.get(env_var, "").strip()
    if value:
        return value
    if required:
        raise ConfigError(
            key,
            "no secret found",
            f"set {env_var}, or set {key} to a credential file, or use LoadCredential={credential}",
        )
    return None
