"""For tests that watch gpiozero's mock pins: a stand-in for what the panel's buttons call, and
a poll (pins change on gpiozero's threads, not on the bus)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Handler:
    """Records every call the panel's buttons make."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def talk_start(self) -> None:
        self.calls.append("talk_start")

    def talk_end(self) -> None:
        self.calls.append("talk_end")

    def tap(self) -> None:
        self.calls.append("tap")

    def long_press(self) -> None:
        self.calls.append("long_press")

    def confirm(self) -> None:
        self.calls.append("confirm")

    def interrupt(self) -> None:
        self.calls.append("interrupt")

    def set_muted(self, muted: bool) -> None:
        self.calls.append(f"muted={muted}")


async def poll(done: Callable[[], bool], what: str, *, timeout_s: float) -> None:
    """Wait until `done()`; the bound only turns a hang into a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)
