"""The sections of the config file, one model each: what a key may hold, and its default.

`device.config` assembles them into `Settings` and turns a validation error into one line that
names the key; the documented defaults are in `config/config.toml`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0)]


class DeviceSettings(_Section):
    id: str = Field("wv-device", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Warehouse zone this device serves (e.g. DRY, CHL, FRZ); shown in status and logs.
    zone: str = Field("", max_length=32)
    state_dir: Path = Path("/var/lib/warehouse-voice")
    event_log: Path = Path("events.jsonl")
    event_log_max_mb: float = Field(20.0, gt=0, le=1024)
    event_log_backups: int = Field(3, ge=0, le=100)
    control_socket: Path = Path("/run/warehouse-voice/control.sock")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class LiveSettings(_Section):
    model: str = Field("gemini-3.8-live", min_length=1)
    api_version: str = "v1beta"
    base_url: str = ""
    ca_file: Path | None = None
    api_key_file: Path | None = None
    voice: str = "Kore"
    language: str = ""
    instructions: Path = Path("instructions.md")
    # Unset: the model's own default (device.live.models); 3.8 takes none at all.
    thinking_level: Literal["minimal", "low", "medium", "high"] | None = None
    input_transcription: bool = True
    output_transcription: bool = True
    # What a camera frame costs: low is about 64 tokens a frame on 3.8, medium about 256.
    media_resolution: Literal["low", "medium", "high"] = "low"
    # Bias the service's transcription toward the site's SKUs, bins and product names (read
    # from the inventory API at session start, cached, refreshed every vocabulary_refresh_s).
    custom_vocabulary: bool = True
    vocabulary_max_terms: int = Field(200, ge=1, le=1000)
    vocabulary_refresh_s: float = Field(600.0, ge=10, le=86400)
    turn_detection: Literal["server", "manual"] = "server"
    silence_ms: int = Field(500, ge=100, le=5000)
    prefix_padding_ms: int = Field(100, ge=0, le=2000)
    context_compression: bool = True
    connect_timeout_s: PositiveFloat = 10.0
    idle_timeout_s: PositiveFloat = 20.0
    max_session_s: float = Field(0.0, ge=0)
    goaway_margin_s: float = Field(2.0, ge=0, le=60)
    reconnect_base_s: PositiveFloat = 0.5
    reconnect_cap_s: PositiveFloat = 8.0
    reconnect_max_s: PositiveFloat = 30.0
    offline_probe_max_s: PositiveFloat = 30.0
    tool_timeout_s: PositiveFloat = 8.0
    stall_timeout_s: PositiveFloat = 10.0
    replay_audio_s: float = Field(15.0, ge=0, le=120)
    end_session_tool: bool = True
    cues_dir: Path = Path("cues")
    auth: Literal["api_key", "ephemeral"] = "api_key"
    # HTTPS only: the broker hands out Live tokens, which must not cross the network in clear.
    broker_url: str = Field("", pattern=r"^(https://.+)?$")
    broker_token_file: Path | None = None
    broker_ca_file: Path | None = None

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker_over_tls(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower().startswith("http://"):
            raise ValueError(
                f"{value!r} is plain HTTP; the broker serves HTTPS only, so use https://"
            )
        return value

    @model_validator(mode="after")
    def _ephemeral_needs_a_broker(self) -> LiveSettings:
        if self.auth == "ephemeral" and not self.broker_url:
            raise ValueError(
                'live.auth = "ephemeral" needs live.broker_url (the site token broker, '
                'e.g. "https://broker.site.lan:8443")'
            )
        if self.reconnect_cap_s < self.reconnect_base_s:
            raise ValueError("live.reconnect_cap_s must be at least live.reconnect_base_s")
        return self


class AudioSettings(_Section):
    input: Literal["pyaudio", "wav"] = "pyaudio"
    input_device: str = "default"
    input_wav: Path | None = None
    # "start": the file is heard once when the daemon starts. "listening": it is heard each
    # time the device starts listening, as a worker speaking right after pressing the button.
    input_wav_cue: Literal["start", "listening"] = "start"
    output: Literal["pyaudio", "wav"] = "pyaudio"
    output_device: str = "default"
    output_wav: Path | None = None
    chunk_ms: int = Field(20, ge=20, le=50)
    speed: PositiveFloat = 1.0
    # Audio kept for a session that is still connecting (what follows the wake word).
    preroll_s: float = Field(2.0, ge=0.5, le=30)
    # A lost microphone is reopened after 0.5 s, doubling up to this.
    reopen_max_s: float = Field(10.0, ge=0.5, le=300)


class WakeModelSettings(_Section):
    # Unset values come from the [wake] section.
    threshold: float | None = Field(None, gt=0, lt=1)
    refractory_s: float | None = Field(None, ge=0, le=60)
    end_latency_s: float = Field(0.16, ge=0, le=2)


class WakeSettings(_Section):
    enabled: bool = True
    models: list[str] = Field(default_factory=lambda: ["hey_jarvis"], min_length=1)
    # Unset: each model's threshold from the wake benchmark (device.wake.models.BENCH_THRESHOLDS).
    threshold: float | None = Field(None, gt=0, lt=1)
    # Run unset thresholds at the benchmark's figure (0.5 false accepts per hour) rather than
    # the fallback (0.5). Off: for hey_jarvis that figure (0.975, 86 hours) misses about three
    # phrases in five on the benchmark (README).
    benchmark_thresholds: bool = False
    refractory_s: float = Field(2.0, ge=0, le=60)
    # Per-model overrides: [wake.per_model.NAME] threshold / refractory_s / end_latency_s.
    per_model: dict[str, WakeModelSettings] = Field(default_factory=dict)
    ignore_while_speaking: bool = True
    trim: bool = True

    def model(self, name: str) -> WakeModelSettings:
        """The settings of one model, the section's values filling in what it leaves unset."""
        own = self.per_model.get(name, WakeModelSettings())
        return own.model_copy(
            update={
                "threshold": self.threshold if own.threshold is None else own.threshold,
                "refractory_s": self.refractory_s if own.refractory_s is None else own.refractory_s,
            }
        )


class EchoSettings(_Section):
    mode: Literal["half_duplex", "aec", "off"] = "half_duplex"
    tail_ms: int = Field(300, ge=0, le=3000)
    barge_in_margin_db: float = Field(10.0, ge=0, le=40)
    barge_in_ms: int = Field(100, ge=20, le=2000)
    aec_delay_ms: int = Field(0, ge=0, le=500)
    noise_suppression: Literal["off", "low", "moderate", "high", "very_high"] = "off"
    auto_gain: bool = False


BcmPin = Annotated[str, Field(pattern=r"^(GPIO|BCM)?\d{1,2}$")]


class GpioSettings(_Section):
    pin_factory: Literal["default", "mock"] = "default"


class ButtonSettings(_Section):
    enabled: bool = True
    pin: BcmPin = "GPIO17"
    bounce_s: float = Field(0.05, ge=0, le=1)
    hold_s: float = Field(0.4, gt=0, le=10)
    long_press_s: float = Field(4.0, ge=0, le=60)
    mute_pin: BcmPin | None = None


class LedSettings(_Section):
    kind: Literal["rgb", "discrete", "none"] = "rgb"
    # Keys are colours: red, green, blue (checked with the rest of the panel settings).
    pins: dict[str, BcmPin] = Field(
        default_factory=lambda: {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
    )
    pwm: bool = True
    active_high: bool = True
    wake_flash_s: float = Field(0.4, ge=0, le=5)
    warning_s: float = Field(3.0, ge=0, le=60)
    # Per-state overrides of the default patterns: state = { color, effect, ... }.
    patterns: dict[str, dict[str, Any]] = Field(default_factory=dict)


class CameraSettings(_Section):
    backend: Literal["none", "picamera2", "directory"] = "none"
    directory: Path | None = None
    enabled: bool = True
    fps: float = Field(1.0, gt=0, le=5)
    max_px: int = Field(1024, ge=64, le=4096)
    quality: int = Field(80, ge=1, le=95)
    width: int = Field(1280, ge=64, le=4608)
    height: int = Field(720, ge=64, le=3456)
    retry_s: float = Field(30.0, ge=0)


class ToolSettings(_Section):
    enabled: list[str] = Field(
        default_factory=lambda: [
            "find_item",
            "get_stock",
            "move_stock",
            "record_count",
            "report_damage",
            "get_next_pick",
            "verify_location",
            "confirm_pick",
            "handoff_to_human",
        ]
    )
    inventory_url: str = Field("http://127.0.0.1:8080/api/v1", pattern=r"^https?://")
    token_file: Path | None = None
    timeout_s: PositiveFloat = 5.0
    confirm_words: list[str] = Field(default_factory=lambda: ["confirm", "confirmed", "correct"])
    write_queue: Path = Path("write-queue.db")
    write_queue_retry_max_s: PositiveFloat = 30.0
    # Writes while nobody is signed on: "refuse" them, or record them as by "unknown".
    unsigned_writes: Literal["refuse", "unknown"] = "unknown"


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


class MetricsSettings(_Section):
    enabled: bool = True
    # host:port, or [v6]:port. Loopback by default: expose it further only on a trusted network.
    address: str = "127.0.0.1:9464"

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = _HOST_PORT.match(value)
        if match is None or int(match[2]) > 65535:
            raise ValueError(
                "use host:port with a port from 0 to 65535, e.g. 127.0.0.1:9464 or [::1]:9464"
            )
        return value
