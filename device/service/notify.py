"""Tell systemd how the daemon is doing: readiness, status line, watchdog pings, shutdown.

Everything here is a no-op outside systemd (no `NOTIFY_SOCKET`) or without systemd-python, so
the same code path runs on a developer laptop, in the demo and under the unit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from device.events import Event, StateChanged, Subscriber

log = logging.getLogger(__name__)


class _NotifyFunction(Protocol):
    def __call__(self, status: str) -> bool: ...


def _load_sd_notify() -> _NotifyFunction | None:
    try:
        from systemd.daemon import notify
    except ImportError:
        return None
    function: _NotifyFunction = notify
    return function


class Notifier:
    """A thin, failure-proof wrapper around `sd_notify(3)`.

    The environment is read at every call rather than once, because systemd (and tests) decide
    it per process and `NOTIFY_SOCKET` may legitimately be set after construction.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ
        self._sd_notify: _NotifyFunction | None = None
        self._loaded = False

    @property
    def enabled(self) -> bool:
        """True when a notify socket is set and systemd-python is importable."""
        return bool(self._environ.get("NOTIFY_SOCKET")) and self._function() is not None

    def _function(self) -> _NotifyFunction | None:
        # Imported lazily so that importing this module never needs libsystemd.
        if not self._loaded:
            self._sd_notify = _load_sd_notify()
            self._loaded = True
            if self._sd_notify is None and self._environ.get("NOTIFY_SOCKET"):
                log.warning(
                    "NOTIFY_SOCKET is set but systemd-python is missing; systemd will not "
                    "hear READY/WATCHDOG. Install it with: pip install systemd-python"
                )
        return self._sd_notify

    def send(self, *assignments: str) -> bool:
        """Send raw `KEY=value` lines; returns whether systemd received them."""
        if not self._environ.get("NOTIFY_SOCKET"):
            return False
        function = self._function()
        if function is None:
            return False
        try:
            return bool(function("\n".join(assignments)))
        except OSError as exc:
            # A vanished socket must never take the appliance down with it.
            log.warning("sd_notify failed: %s", exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status:
            lines.append(_status_line(status))
        return self.send(*lines)

    def status(self, text: str) -> bool:
        return self.send(_status_line(text))

    def stopping(self, status: str | None = None) -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(_status_line(status))
        return self.send(*lines)

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time, e.g. while a large model loads on a slow SD card."""
        if seconds <= 0:
            raise ValueError(f"extend_timeout needs a positive number of seconds, got {seconds}")
        return self.send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of `WATCHDOG_USEC`), or None when no watchdog is armed."""
        raw = self._environ.get("WATCHDOG_USEC")
        if not raw:
            return None
        pid = self._environ.get("WATCHDOG_PID")
        # The watchdog belongs to one process; a child that inherited the variables must not ping.
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(raw)
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC=%r: it must be an integer of microseconds", raw)
            return None
        if usec <= 0:
            return None
        return usec / 2_000_000


def _status_line(text: str) -> str:
    # sd_notify is newline-delimited: a newline inside the text would start a bogus assignment.
    return "STATUS=" + " ".join(text.split())


async def watchdog_task(
    notifier: Notifier,
    interval: float | None = None,
    *,
    healthy: Callable[[], bool] | None = None,
) -> None:
    """Ping `WATCHDOG=1` from the event loop until cancelled.

    The pings are sent by this coroutine on the loop's own thread on purpose: if anything
    blocks the loop, the pings stop and systemd kills and restarts the daemon. A running loop
    is not enough, though: while `healthy()` is False (a required part is broken past its
    recovery budget, e.g. a speaker whose writes hang) no ping is sent either. Returns at once
    when no watchdog is armed.
    """
    period = interval if interval is not None else notifier.watchdog_interval()
    if period is None:
        return
    if period <= 0:
        raise ValueError(f"watchdog interval must be positive, got {period}")
    log.debug("watchdog armed: pinging every %.3f s", period)
    while True:
        if healthy is None or healthy():
            notifier.watchdog()
        await asyncio.sleep(period)


def describe_state(event: StateChanged) -> str:
    """The one-line `systemctl status` text for a state change."""
    text = event.state.value
    if event.reason:
        text += f" ({event.reason})"
    return text


def status_subscriber(
    notifier: Notifier, describe: Callable[[StateChanged], str] = describe_state
) -> Subscriber:
    """A bus subscriber that mirrors every `StateChanged` into the unit's `STATUS=` line."""

    def on_event(event: Event) -> None:
        if isinstance(event, StateChanged):
            notifier.status(describe(event))

    return on_event
