"""The broker's settings: a small TOML file, plus the API key from a credential or the
environment (never from the TOML)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.config import ConfigError, read_secret

DEFAULT_CONFIG = Path("/etc/warehouse-voice-broker/broker.toml")

Seconds = Annotated[float, Field(gt=0)]


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # host:port to listen on; port 0 picks a free one (printed at start-up).
    listen: str = Field("127.0.0.1:8443", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
    # JSON file of device ids and token digests (`token-broker add-device` writes it).
    devices_file: Path = Path("devices.json")
    # Gemini API base URL; empty means Google's. Tests point it at the emulator's REST side.
    upstream_url: str = Field("", pattern=r"^(https?://.+)?$")
    upstream_ca_file: Path | None = None
    # The Gemini API key: this file, else $CREDENTIALS_DIRECTORY/gemini-api-key, else
    # $GEMINI_API_KEY.
    api_key_file: Path | None = None
    # What every token is locked to.
    model: str = Field("gemini-3.1-flash-live-preview", min_length=1)
    # Optional: also lock the system instruction (a Markdown file) and the voice.
    instructions: Path | None = None
    voice: str = ""
    context_compression: bool = True
    # Token lifetimes: how long a session may run on it, and how soon it must be first used.
    token_ttl_s: Seconds = 1800.0
    new_session_ttl_s: Seconds = 60.0
    uses: int = Field(1, ge=1, le=100)
    # The broker serves HTTPS only. Its certificate and key: these files, else the unit's
    # credentials $CREDENTIALS_DIRECTORY/tls-cert and tls-key (LoadCredential).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Mints allowed per device within mint_window_s; more are refused (429, Retry-After). A
    # device mints once per session, so this only stops a looping or stolen device token.
    max_mints_per_device: int = Field(30, ge=1)
    mint_window_s: Seconds = 3600.0
    base_dir: Path = Field(default=Path("."), exclude=True)

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.base_dir / value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def load_broker_settings(path: Path) -> BrokerSettings:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "--config", f"file {path} does not exist", "write a broker.toml (see README)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML ({exc})", "fix it") from None
    section = raw.get("broker", raw)
    try:
        settings = BrokerSettings.model_validate({**section, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "broker." + ".".join(str(p) for p in err["loc"])
        raise ConfigError(key, err["msg"].lower(), "see the broker section of README.md") from None
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigError(
            "broker.tls_cert_file", "only one of tls_cert_file and tls_key_file is set", "set both"
        )
    return settings


def read_api_key(settings: BrokerSettings) -> str:
    key = read_secret(
        key="broker.api_key_file",
        env_var="GEMINI_API_KEY",
        credential="gemini-api-key",
        file=settings.path(settings.api_key_file) if settings.api_key_file else None,
    )
    assert key is not None
    return key


def tls_files(settings: BrokerSettings) -> tuple[Path, Path]:
    """The certificate and key to serve HTTPS with; there is no plain-HTTP mode."""
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        return settings.path(settings.tls_cert_file), settings.path(settings.tls_key_file)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        cert, key = Path(credentials) / "tls-cert", Path(credentials) / "tls-key"
        if cert.is_file() and key.is_file():
            return cert, key
    raise ConfigError(
        "broker.tls_cert_file",
        "the broker serves HTTPS only and has no certificate and key",
        "set tls_cert_file and tls_key_file, or give the unit LoadCredential=tls-cert:PATH and "
        "LoadCredential=tls-key:PATH",
    )
