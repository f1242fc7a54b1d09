"""Stopping the daemon's parts within systemd's stop timeout, whatever hangs in a device.

systemd stops the unit with SIGTERM and kills it `TimeoutStopSec` (20 s) later. A part can
hang inside its device on the way out (a wedged sound card holds PortAudio's write, and the
speaker's close waits for that write), and then nothing after it closes, and even an empty
`asyncio.run` never returns: its executor waits for the thread that waits for the device. So
each part gets `PART_STOP_S` to close; one that does not is left behind, named in the log with
every thread's stack (the journal then shows where it hangs), and the rest still close. A
stop that left a part behind ends the process at once (`exit_now`) instead of waiting on it.
Whatever else holds a stop, `STOP_DEADLINE_S` after SIGTERM the stacks go to the journal and
the process ends itself, before systemd's kill would leave no word of where it hung.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# Each part's bound; the slowest clean close (the speaker's last buffer) takes well under one.
PART_STOP_S = 4.0
EXIT_NOT_CLEAN = 1
# Under the unit's TimeoutStopSec (20 s, tests/service/test_shutdown.py holds them together).
STOP_DEADLINE_S = 15.0


class PartsStopper:
    """Closes parts one at a time, each within `timeout_s`; remembers the ones that hung and
    the ones whose close raised."""

    def __init__(self, timeout_s: float = PART_STOP_S) -> None:
        self.timeout_s = timeout_s
        self.hung: list[str] = []
        self.failed: list[str] = []
        self._armed = False

    def arm_deadline(self, seconds: float = STOP_DEADLINE_S) -> None:
        """From now on the stop has `seconds`: then every thread's stack, and exit 1."""
        try:
            faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)
        except (AttributeError, OSError, ValueError):  # no real stderr (a test's capture)
            return
        self._armed = True

    def disarm_deadline(self) -> None:
        if self._armed:
            faulthandler.cancel_dump_traceback_later()
            self._armed = False

    async def close(self, name: str, close: Callable[[], Awaitable[object] | object]) -> None:
        """Close one part: an error is logged and the stop goes on to the next part."""
        try:
            result = close()
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, self.timeout_s)
        except TimeoutError:
            self.hung.append(name)
            log.error(
                "stop: the %s did not stop within %.0f s; leaving it behind (every thread's "
                "stack follows)",
                name,
                self.timeout_s,
            )
            dump_stacks()
        except Exception:
            self.failed.append(name)
            log.exception("stop: closing the %s failed; the stop goes on", name)


def dump_stacks() -> None:
    """Every thread's Python stack on stderr (the journal under systemd), read with the GIL
    held and the interpreter's thread list locked (`sys._current_frames`), so a thread starting
    or ending meanwhile cannot crash the dump."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    current = threading.get_ident()
    parts: list[str] = []
    for ident, frame in sys._current_frames().items():
        who = "Current thread" if ident == current else "Thread"
        parts.append(f"{who} {ident:#x} ({names.get(ident, 'native')}), most recent call last:\n")
        parts.extend(traceback.format_stack(frame))
        parts.append("\n")
    try:
        sys.stderr.write("".join(parts))
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no real stderr (a test's capture)
        log.warning("no stderr to write the threads' stacks to")


def stacks_on_request(signum: int = signal.SIGUSR1) -> None:
    """`systemctl kill -s USR1 warehouse-voice` writes every thread's stack to the journal: where
    a device that seems hung is, without stopping it.

    The stacks are written by Python code holding the GIL: by a thread of its own that waits
    for the signal (blocked in this thread, so in threads started after it), or, where the
    signal reaches a thread that does not block it (one in the daemon does not), by a handler
    in the main thread. (faulthandler's handler wrote them from inside the signal, walking
    other threads' frames while they ran, and under load crashed the daemon mid-dump.)"""
    signal.signal(signum, lambda *_: dump_stacks())
    signal.pthread_sigmask(signal.SIG_BLOCK, {signum})

    def wait() -> None:
        while True:
            signal.sigwait({signum})
            dump_stacks()

    threading.Thread(target=wait, name="stacks-on-request", daemon=True).start()


def exit_now(code: int) -> None:
    """End the process without waiting for threads stuck in a device (`os._exit`)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
