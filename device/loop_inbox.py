"""Calls from a device thread into the event loop that never crowd out the loop's signals.

`loop.call_soon_threadsafe` writes one byte to the loop's self-pipe per call, and asyncio learns
of signals through that same pipe. The pipe (a Unix socket pair) holds about 278 bytes. A
thread that calls in at audio rate (PortAudio's callback, the speaker's player) while the loop
is held up fills it: an unpaced device does at once, a real one after 5.6 s of 20 ms buffers.
A SIGTERM that arrives then is dropped ("Exception ignored when trying to write to the signal
wakeup fd") and the daemon never stops. An inbox queues the calls and wakes the loop only when
it is not already due to wake, so a thread keeps at most one byte in the pipe.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


class LoopInbox:
    """`call(fn, *args)` from any thread runs `fn(*args)` on `loop`, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Appends and pops of a deque are atomic; the flag is only ever a spare wake-up.
        self._calls: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._woken = False

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue the call; raises RuntimeError when the loop is closed (nobody will run it)."""
        self._calls.append((fn, args))
        if self._woken:
            return  # the wake-up already due runs this call too (it clears the flag first)
        self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            self._woken = False
            raise

    def _run(self) -> None:
        self._woken = False
        # Only the calls queued so far: a thread that keeps calling cannot hold the loop here,
        # and what it adds from now on comes with a wake-up of its own.
        for _ in range(len(self._calls)):
            fn, args = self._calls.popleft()
            try:
                fn(*args)
            except Exception as exc:  # one failing call must not drop the ones queued after
                self._loop.call_exception_handler(
                    {
                        "message": f"exception in {fn!r} called from a device thread",
                        "exception": exc,
                    }
                )
