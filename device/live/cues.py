"""Short pre-rendered spoken cues for when the model cannot speak for itself.

offline  "I'm offline right now."                         the Live endpoint is unreachable
error    "Sorry, something went wrong. Please try again." the session failed for good
denied   "I can't connect: access was refused. ..."       the key or token was refused

The WAVs live in `config/cues/` (any rate; they are resampled to the speaker's). A missing or
broken cue is logged and skipped: a cue must never take the appliance down with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from device.audio.sink import AudioSink
from device.audio.wavio import read_wav
from device.config import REPO_CONFIG_DIR
from device.events import Event

log = logging.getLogger(__name__)

DEFAULT_CUE_DIR = REPO_CONFIG_DIR / "cues"
CUES = ("offline", "error", "denied")


@dataclass(frozen=True, kw_only=True)
class CuePlayed(Event):
    """A spoken cue was queued on the speaker (`played`), or could not be (missing file)."""

    kind: ClassVar[str] = "cue"
    name: str
    played: bool


class CuePlayer:
    def __init__(self, directory: Path = DEFAULT_CUE_DIR) -> None:
        self.directory = directory
        self._cache: dict[tuple[str, int], bytes] = {}

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.wav"

    async def play(self, name: str, speaker: AudioSink) -> bool:
        """Queue the cue on the speaker; False (and a log line) if it could not be played."""
        try:
            pcm = await self._load(name, speaker.rate)
            await speaker.write(pcm)
        except Exception as exc:
            log.warning("spoken cue %r not played (%s): %s", name, self.path(name), exc)
            return False
        return True

    async def _load(self, name: str, rate: int) -> bytes:
        key = (name, rate)
        if key not in self._cache:
            self._cache[key] = await asyncio.to_thread(read_wav, self.path(name), rate)
        return self._cache[key]
