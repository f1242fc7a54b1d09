"""The user's side of a session: input audio, where speech starts and ends, and barge-in.

With automatic activity detection the energy VAD decides; with it disabled, the client's
`activityStart`/`activityEnd` do. Either way the result is a queue of user-turn ends for the
conversation and a `barge_in` event that stops the model's reply when the user starts talking
over it (unless the setup asked for `NO_INTERRUPTION`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from device.sim import wire
from device.sim.record import ConnectionRecord, Marker
from device.sim.vad import EnergyVad, VadSettings


@dataclass(frozen=True)
class TurnEnd:
    reason: str  # "vad", "activity_end", "audio_stream_end", "text", "client_content"
    sample: int
    speech_start: int | None = None
    text: str | None = None


class Listener:
    def __init__(self, record: ConnectionRecord, config: Mapping[str, Any]) -> None:
        """`config` is the setup's snake_case `realtime_input_config`, already validated."""
        self.record = record
        self._config = config
        aad = config.get("automatic_activity_detection") or {}
        self.manual = bool(aad.get("disabled"))
        self.interrupts = config.get("activity_handling") != "NO_INTERRUPTION"
        self.barge_in = asyncio.Event()
        self.turn_ends: asyncio.Queue[TurnEnd] = asyncio.Queue()
        self._responding = False
        self._vad: EnergyVad | None = None
        self._activity_open: int | None = None
        self._speech_start: int | None = None

    def start_response(self) -> None:
        """The model starts answering; a user who is already talking interrupts it at once."""
        self.barge_in.clear()
        self._responding = True
        speaking = self._activity_open is not None or (
            not self.manual and self._vad is not None and self._vad.in_speech
        )
        if speaking and self.interrupts:
            self.barge_in.set()

    def end_response(self) -> None:
        self._responding = False

    def audio(self, pcm: bytes, rate: int) -> None:
        if self._vad is None:
            self.record.audio_rate = rate
            self._vad = EnergyVad(VadSettings.from_realtime_input_config(self._config, rate))
        elif rate != self.record.audio_rate:
            raise wire.WireError(
                f"audio rate changed from {self.record.audio_rate} to {rate} mid-session; "
                "keep one input rate per session"
            )
        self.record.audio.extend(pcm)
        self.record.audio_at.append((time.monotonic(), self.record.audio_samples))
        for event in self._vad.feed(pcm):
            # In manual mode the markers still show where the detector heard speech, which
            # helps when a test wonders why a turn did not end; they decide nothing.
            self._mark(event.kind, event.sample)
            if self.manual:
                continue
            if event.kind == "speech_start":
                self._speech_start = event.boundary
                self._user_started()
            else:
                self._end_turn("vad", event.sample)

    def activity_start(self) -> None:
        if not self.manual:
            raise wire.WireError(
                "activityStart is only allowed when automatic activity detection is disabled "
                "(realtimeInputConfig.automaticActivityDetection.disabled = true)"
            )
        self._mark("activity_start")
        self._activity_open = self.record.audio_samples
        self._user_started()

    def activity_end(self) -> None:
        if not self.manual:
            raise wire.WireError(
                "activityEnd is only allowed when automatic activity detection is disabled"
            )
        self._mark("activity_end")
        if self._activity_open is not None:
            self._speech_start, self._activity_open = self._activity_open, None
            self._end_turn("activity_end", self.record.audio_samples)

    def audio_stream_end(self) -> None:
        """The mic stopped: a turn that had speech ends here instead of waiting for silence."""
        self._mark("audio_stream_end")
        if self.manual or self._vad is None:
            return
        event = self._vad.flush()
        if event is not None:
            self._mark("speech_end", event.sample)
            self._end_turn("audio_stream_end", self.record.audio_samples)

    def text(self, text: str, reason: str) -> None:
        """Typed input is a whole user turn; like speech, it interrupts a reply in progress."""
        self._user_started()
        self._end_turn(reason, self.record.audio_samples, text)

    def _user_started(self) -> None:
        if self._responding and self.interrupts and not self.barge_in.is_set():
            self._mark("barge_in")
            self.barge_in.set()

    def _mark(self, kind: str, sample: int | None = None) -> None:
        at = self.record.audio_samples if sample is None else sample
        self.record.markers.append(Marker(kind, at))

    def _end_turn(self, reason: str, sample: int, text: str | None = None) -> None:
        start, self._speech_start = self._speech_start, None
        self.turn_ends.put_nowait(TurnEnd(reason, sample, start, text))
