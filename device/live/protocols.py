"""What the conversation needs from the outside, and what it reports back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from google.genai import types

from device.live.cues import CuePlayer
from device.live.policy import SessionPolicy


class LiveSessionLike(Protocol):
    """The slice of google-genai's AsyncSession this module uses."""

    async def send_realtime_input(self, **kwargs: Any) -> None: ...

    async def send_tool_response(self, *, function_responses: Any) -> None: ...

    def receive(self) -> AsyncIterator[types.LiveServerMessage]: ...


Connector = Callable[[], AbstractAsyncContextManager[LiveSessionLike]]


@runtime_checkable
class ResumableConnector(Protocol):
    """A connector that can also resume a session by handle (`device.live.connect`). A plain
    `Connector` works too, but each reconnect then starts a fresh session."""

    policy: SessionPolicy
    cues: CuePlayer

    def __call__(self) -> AbstractAsyncContextManager[LiveSessionLike]: ...

    def resume(self, handle: str) -> AbstractAsyncContextManager[LiveSessionLike]: ...

    async def probe(self) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    reason: str
    error: bool = False
    fatal: bool = False
    offline: bool = False  # the Live endpoint (or the token broker) could not be reached
    denied: bool = False  # the key or token was refused
