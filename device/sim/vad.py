"""Energy-based voice activity detection, timed in samples rather than wall-clock time.

The emulator decides where a user's turn ends the way the service does from the outside: speech
energy starts it, `silenceDurationMs` of quiet ends it. Counting samples instead of seconds lets
a test push audio ten times faster than real time and still get the same turn boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

FRAME_MS = 20
_FLOOR_DBFS = -120.0

# Sensitivity enum -> (threshold in dBFS, default milliseconds of speech before a start counts).
# A HIGH start sensitivity starts on quieter, shorter sounds; a HIGH end sensitivity calls
# louder sounds silence, so turns end sooner in background noise.
_START = {
    "START_SENSITIVITY_HIGH": (-50.0, 40),
    "START_SENSITIVITY_LOW": (-34.0, 160),
}
_START_DEFAULT = (-42.0, 80)
_END = {
    "END_SENSITIVITY_HIGH": -40.0,
    "END_SENSITIVITY_LOW": -56.0,
}
_END_DEFAULT = -48.0
DEFAULT_SILENCE_MS = 500


class VadConfigError(ValueError):
    """`realtimeInputConfig` holds a value the emulator cannot honour."""


@dataclass(frozen=True)
class VadSettings:
    sample_rate: int = 16000
    start_threshold_dbfs: float = _START_DEFAULT[0]
    end_threshold_dbfs: float = _END_DEFAULT
    start_ms: int = _START_DEFAULT[1]
    silence_ms: int = DEFAULT_SILENCE_MS
    frame_ms: int = FRAME_MS

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @classmethod
    def from_realtime_input_config(
        cls, config: Mapping[str, Any] | None, sample_rate: int = 16000
    ) -> VadSettings:
        """Settings from a snake_case `realtime_input_config` (see `wire.normalize_keys`)."""
        aad = (config or {}).get("automatic_activity_detection") or {}
        if not isinstance(aad, Mapping):
            raise VadConfigError("realtimeInputConfig.automaticActivityDetection must be an object")
        start_name = aad.get("start_of_speech_sensitivity") or "START_SENSITIVITY_UNSPECIFIED"
        end_name = aad.get("end_of_speech_sensitivity") or "END_SENSITIVITY_UNSPECIFIED"
        if start_name not in _START and start_name != "START_SENSITIVITY_UNSPECIFIED":
            raise VadConfigError(
                f"startOfSpeechSensitivity {start_name!r} is unknown; use "
                "START_SENSITIVITY_HIGH or START_SENSITIVITY_LOW"
            )
        if end_name not in _END and end_name != "END_SENSITIVITY_UNSPECIFIED":
            raise VadConfigError(
                f"endOfSpeechSensitivity {end_name!r} is unknown; use "
                "END_SENSITIVITY_HIGH or END_SENSITIVITY_LOW"
            )
        start_db, start_ms = _START.get(start_name, _START_DEFAULT)
        prefix = aad.get("prefix_padding_ms")
        silence = aad.get("silence_duration_ms")
        for key, value in (("prefixPaddingMs", prefix), ("silenceDurationMs", silence)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise VadConfigError(f"{key} must be an integer number of milliseconds")
            if value is not None and not 0 <= value <= 60_000:
                raise VadConfigError(f"{key}={value} is outside 0..60000 ms")
        return cls(
            sample_rate=sample_rate,
            start_threshold_dbfs=start_db,
            end_threshold_dbfs=_END.get(end_name, _END_DEFAULT),
            # The service documents prefixPaddingMs as the speech needed before a start is
            # committed, which is exactly this detector's start duration.
            start_ms=start_ms if prefix is None else prefix,
            silence_ms=DEFAULT_SILENCE_MS if silence is None else silence,
        )


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["speech_start", "speech_end"]
    # Sample offset (in this detector's input stream) at which the event was decided.
    sample: int
    # Where the speech began (start) or where the closing silence began (end).
    boundary: int


def frame_dbfs(frame: np.ndarray) -> float:
    if frame.size == 0:
        return _FLOOR_DBFS
    rms = math.sqrt(float(np.mean(frame.astype(np.float64) ** 2)))
    if rms <= 0.0:
        return _FLOOR_DBFS
    return max(_FLOOR_DBFS, 20.0 * math.log10(rms / 32768.0))


class EnergyVad:
    """Feed PCM16 mono bytes; get start/end events at frame boundaries."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._pending = bytearray()
        self._samples = 0  # samples consumed into whole frames
        self._in_speech = False
        self._speech_run = 0  # consecutive speech samples while idle
        self._silence_run = 0  # consecutive silent samples while in speech

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def samples(self) -> int:
        return self._samples

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self._pending.extend(pcm)
        frame_bytes = 2 * self.settings.frame_samples
        events: list[VadEvent] = []
        start_needed = max(1, self.settings.start_ms * self.settings.sample_rate // 1000)
        silence_needed = max(1, self.settings.silence_ms * self.settings.sample_rate // 1000)
        while len(self._pending) >= frame_bytes:
            frame = np.frombuffer(bytes(self._pending[:frame_bytes]), dtype="<i2")
            del self._pending[:frame_bytes]
            n = frame.size
            level = frame_dbfs(frame)
            self._samples += n
            if not self._in_speech:
                if level >= self.settings.start_threshold_dbfs:
                    self._speech_run += n
                    if self._speech_run >= start_needed:
                        self._in_speech = True
                        self._silence_run = 0
                        boundary = self._samples - self._speech_run
                        events.append(VadEvent("speech_start", self._samples, boundary))
                else:
                    self._speech_run = 0
            elif level < self.settings.end_threshold_dbfs:
                self._silence_run += n
                if self._silence_run >= silence_needed:
                    events.append(
                        VadEvent("speech_end", self._samples, self._samples - self._silence_run)
                    )
                    self._reset_runs()
            else:
                self._silence_run = 0
        return events

    def flush(self) -> VadEvent | None:
        """End a turn in progress now (`audioStreamEnd`): the speech so far is the turn."""
        if not self._in_speech:
            self._reset_runs()
            return None
        event = VadEvent("speech_end", self._samples, self._samples - self._silence_run)
        self._reset_runs()
        return event

    def _reset_runs(self) -> None:
        self._in_speech = False
        self._speech_run = 0
        self._silence_run = 0
