"""Scenario files: what the emulated model hears, calls and says, and which faults it injects.

A scenario is `config/scenarios/NAME.toml`; `config/scenarios/README.md` documents every key.
Loading validates the whole file up front, so a typo fails at start-up with the file, the key
and the fix, never in the middle of a test.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "config" / "scenarios"


class ScenarioError(Exception):
    """A scenario that cannot be used; `str()` is one line naming the file, key and fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCallSpec(_Model):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class TurnSpec(_Model):
    """One user turn and the model's answer to it."""

    user_transcript: str = ""
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    reply_text: str = ""
    # Said while the turn's tools run, when every call is NON_BLOCKING (3.8's async calls):
    # the model's "let me check" line.
    tool_filler_text: str = ""
    # A WAV file; relative paths are resolved against the scenario file's folder on load.
    reply_audio: Path | None = None
    # Wall-clock delay before the reply starts (divided by `speed`); emulates a slow model or
    # a stall after a tool response.
    reply_delay_ms: int = Field(default=0, ge=0, le=600_000)
    interrupt_after_ms: int | None = Field(default=None, ge=0)
    close_code: int | None = Field(default=None, ge=1000, le=4999)
    close_after_ms: int | None = Field(default=None, ge=0)
    # The same, to the byte of the reply (wins over close_after_ms).
    close_after_bytes: int | None = Field(default=None, ge=0)
    duplicate_tool_calls: bool = False
    # Faults around the tool round trip (see config/scenarios/README.md).
    close_during_tool_call: int | None = Field(default=None, ge=1000, le=4999)
    close_on_tool_response: int | None = Field(default=None, ge=1000, le=4999)
    close_after_tool_response: int | None = Field(default=None, ge=1000, le=4999)
    stall_after_tool_response: bool = False
    # goAway (timeLeft = goaway_time_left_s / speed, wall clock) once the answers are consumed:
    # an event, so the deadline lands after the tool round trip however slow the machine is.
    goaway_after_tool_response: bool = False
    cancel_tool_calls: bool = False
    # goAway (timeLeft = goaway_time_left_s / speed, wall clock) after this much reply audio.
    goaway_after_ms: int | None = Field(default=None, ge=0)
    audio_chunk_ms: int = Field(default=40, ge=5, le=2000)
    audio_jitter_ms: int = Field(default=0, ge=0, le=2000)
    audio_pace: float = Field(default=1.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _faults_are_complete(self) -> Self:
        if (
            self.close_after_ms is not None or self.close_after_bytes is not None
        ) and self.close_code is None:
            raise ValueError("close_after_ms needs close_code too (for example close_code = 1011)")
        if self.close_code in (1004, 1005, 1015):
            raise ValueError(
                f"close_code {self.close_code} is reserved and cannot be sent; use 1011, 1000 "
                "or 1006 (a dropped connection)"
            )
        tool_faults = [
            name
            for name in (
                "close_during_tool_call",
                "close_on_tool_response",
                "close_after_tool_response",
                "stall_after_tool_response",
                "goaway_after_tool_response",
                "cancel_tool_calls",
            )
            if getattr(self, name) not in (None, False)
        ]
        if tool_faults and not self.tool_calls:
            raise ValueError(f"{tool_faults[0]} needs tool_calls in the same turn")
        for name in (
            "close_during_tool_call",
            "close_on_tool_response",
            "close_after_tool_response",
        ):
            if getattr(self, name) in (1004, 1005, 1006, 1015):
                raise ValueError(f"{name} {getattr(self, name)} is reserved; use 1011 or 1000")
        ids = [call.id for call in self.tool_calls]
        if len(set(ids)) != len(ids):
            raise ValueError(f"tool_calls ids must be unique within a turn, got {ids}")
        return self


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    # Pacing factor for everything the emulator times by the wall clock: 1.0 is real time,
    # 10.0 sends reply audio ten times faster. Turn-taking is measured in audio samples and
    # does not depend on it.
    speed: float = Field(default=1.0, gt=0, le=10_000)
    # The real service streams reply audio faster than it plays: this many times real time
    # (on top of `speed`). 1.0 paces it like a speaker.
    stream_speed: float = Field(default=4.0, gt=0, le=1000)
    # goAway is due once this many seconds of client audio have arrived on one connection;
    # the connection is closed with `goaway_close_code` after `goaway_time_left_s` more.
    goaway_after_s: float | None = Field(default=None, ge=0)
    goaway_time_left_s: float = Field(default=10.0, ge=0)
    goaway_close_code: int = Field(default=1011, ge=1000, le=4999)
    # "audio": goaway_after_s and goaway_time_left_s count input audio. "wall": they count
    # wall-clock seconds (divided by `speed`) from setupComplete, and timeLeft says so.
    goaway_clock: Literal["audio", "wall"] = "audio"
    # On the first connection only, once this many seconds of client audio arrived (so it can
    # land inside a request): `input_fault` "goaway" sends goAway (timeLeft
    # goaway_time_left_s / speed, wall clock), "drop" drops the link (1006, nothing more read).
    input_fault_after_s: float | None = Field(default=None, ge=0)
    input_fault: Literal["goaway", "drop"] = "drop"
    resumption: bool = True
    # Wall-clock milliseconds (not divided by `speed`) before a resumed connection's
    # setupComplete: a service slow to take the device back while its microphone runs on.
    resume_setup_delay_ms: int = Field(default=0, ge=0, le=60_000)
    # Also issue handles mid-turn: right after a toolCall (resuming waits for its answers),
    # once every answer was consumed, and as a reply without tools starts (resuming plays the
    # reply, from where a cut-off connection stopped).
    handles_during_tools: bool = False
    # sessionResumptionUpdate carries lastConsumedClientMessageIndex. The service sends it only
    # for `transparent` resumption, which the Gemini API does not offer (DESIGN §3).
    report_consumed_index: bool = False
    # A connection resumed while calls are open sends their toolCall again.
    reannounce_tool_calls: bool = False
    tool_timeout_s: float = Field(default=10.0, gt=0)
    # "connection": each fresh connection starts at the first turn. "shared": fresh connections
    # continue where the previous one stopped, so one script can span several sessions.
    progress: Literal["connection", "shared"] = "connection"
    loop: bool = False
    # Faults fire the first time their turn plays; replays (after a reconnect) are clean.
    repeat_faults: bool = False
    seed: int = 0
    turns: list[TurnSpec] = Field(min_length=1)


def _format_error(source: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        loc = loc.lstrip(".") or "(top level)"
        if error["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key; see config/scenarios/README.md for valid keys")
        else:
            problems.append(f"{loc}: {error['msg']}")
    return f"scenario {source}: " + "; ".join(problems)


def parse_scenario(text: str, *, name: str, base_dir: Path, source: str = "") -> Scenario:
    """Parse scenario TOML text; relative `reply_audio` paths resolve against `base_dir`."""
    source = source or name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source}: invalid TOML: {exc}") from exc
    data.setdefault("name", name)
    for turn in data.get("turns", []) if isinstance(data.get("turns"), list) else []:
        if isinstance(turn, dict) and isinstance(turn.get("reply_audio"), str):
            turn["reply_audio"] = str(base_dir / turn["reply_audio"])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_error(source, exc)) from exc
    for index, turn in enumerate(scenario.turns):
        if turn.reply_audio is not None and not turn.reply_audio.is_file():
            raise ScenarioError(
                f"scenario {source}: turns[{index}].reply_audio: {turn.reply_audio} does not "
                "exist; give a WAV path relative to the scenario file, or remove the key to "
                "synthesize the reply from reply_text"
            )
    return scenario


def available_scenarios(directory: Path = SCENARIO_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_scenario(name_or_path: str | Path, directory: Path = SCENARIO_DIR) -> Scenario:
    """Load a scenario by name (`where-is-sku`) from `directory`, or from a .toml path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
        path = candidate
    else:
        path = directory / f"{name_or_path}.toml"
    if not path.is_file():
        names = ", ".join(available_scenarios(directory)) or "(none)"
        raise ScenarioError(
            f"unknown scenario {str(name_or_path)!r}; available in {directory}: {names}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: cannot read it: {exc}") from exc
    return parse_scenario(text, name=path.stem, base_dir=path.parent, source=str(path))
