"""sd_notify messages as systemd would receive them on its notify socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from device.events import EventBus, State, StateChanged
from device.service.notify import Notifier, status_subscriber, watchdog_task

pytest.importorskip("systemd.daemon", reason="needs systemd-python: pip install systemd-python")

START = "TEST-BLOCK-START"
END = "TEST-BLOCK-END"
DEADLINE = 20.0  # generous liveness bound, not a timing assertion


class NotifySocket:
    """A stand-in for systemd's end: a datagram socket drained by its own thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        # Draining continuously matters: a unix datagram queue holds only a few messages,
        # after which senders would block.
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode())

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def mark(self, text: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(text.encode(), str(self.path))

    def wait_blocking(self, condition: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            messages = self.snapshot()
            if condition(messages):
                return messages
            time.sleep(0.01)
        raise AssertionError(f"condition not met; received {self.snapshot()!r}")

    async def wait_for(self, condition: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            messages = self.snapshot()
            if condition(messages):
                return messages
            await asyncio.sleep(0.01)
        raise AssertionError(f"condition not met; received {self.snapshot()!r}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def systemd_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    # A short private dir: pytest's tmp_path can exceed the 108-byte unix socket path limit.
    directory = Path(tempfile.mkdtemp(prefix="wv-notify-"))
    end = NotifySocket(directory / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(end.path))
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield end
    end.close()
    shutil.rmtree(directory)


def count(messages: list[str], text: str) -> int:
    return sum(1 for message in messages if message == text)


async def test_ready_status_watchdog_stopping_arrive_in_order(systemd_end: NotifySocket) -> None:
    notifier = Notifier()
    bus = EventBus()
    bus.subscribe(status_subscriber(notifier))

    assert notifier.ready()
    bus.publish(StateChanged(state=State.LISTENING, previous=State.IDLE, reason="wake word"))
    task = asyncio.create_task(watchdog_task(notifier))
    await systemd_end.wait_for(lambda m: count(m, "WATCHDOG=1") >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.stopping()
    messages = await systemd_end.wait_for(lambda m: "STOPPING=1" in m)

    pings = count(messages, "WATCHDOG=1")
    assert messages == [
        "READY=1",
        "STATUS=listening (wake word)",
        *["WATCHDOG=1"] * pings,
        "STOPPING=1",
    ]


async def test_blocked_loop_sends_no_watchdog_pings(systemd_end: NotifySocket) -> None:
    notifier = Notifier()
    task = asyncio.create_task(watchdog_task(notifier))
    await systemd_end.wait_for(lambda m: count(m, "WATCHDOG=1") >= 3)

    def block_the_loop() -> None:
        # Markers are sent from the loop thread around the block, so their place in the
        # socket's queue brackets exactly the pings sent while the loop was blocked.
        systemd_end.mark(START)
        time.sleep(1.0)
        systemd_end.mark(END)

    asyncio.get_running_loop().call_soon(block_the_loop)
    messages = await systemd_end.wait_for(
        lambda m: END in m and count(m[m.index(END) :], "WATCHDOG=1") >= 3
    )
    task.cancel()

    during = messages[messages.index(START) + 1 : messages.index(END)]
    assert during == [], "watchdog pinged while the event loop was blocked"
    assert count(messages[: messages.index(START)], "WATCHDOG=1") >= 3
    assert count(messages[messages.index(END) :], "WATCHDOG=1") >= 3


def test_pings_from_a_thread_would_be_seen_during_a_block(systemd_end: NotifySocket) -> None:
    """Control for the test above: the bracketing does catch pings sent during the block."""
    notifier = Notifier()
    stop = threading.Event()

    def thread_pinger() -> None:
        while not stop.wait(0.02):
            notifier.watchdog()

    pinger = threading.Thread(target=thread_pinger)
    pinger.start()
    try:
        systemd_end.mark(START)
        time.sleep(1.0)
        systemd_end.mark(END)
    finally:
        stop.set()
        pinger.join()
    messages = systemd_end.wait_blocking(lambda m: END in m)
    during = messages[messages.index(START) + 1 : messages.index(END)]
    assert count(during, "WATCHDOG=1") >= 1


async def test_watchdog_belongs_to_the_pid_systemd_named(
    systemd_end: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval() == pytest.approx(0.02)

    # A child process that inherited the variables must not keep a hung parent alive.
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    notifier = Notifier()
    assert notifier.watchdog_interval() is None
    await asyncio.wait_for(watchdog_task(notifier), DEADLINE)
    notifier.status("done")
    messages = await systemd_end.wait_for(lambda m: "STATUS=done" in m)
    assert messages == ["STATUS=done"]


async def test_without_notify_socket_everything_is_a_quiet_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("idle") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    await asyncio.wait_for(watchdog_task(notifier), DEADLINE)


async def test_status_text_cannot_inject_extra_assignments(systemd_end: NotifySocket) -> None:
    notifier = Notifier()
    notifier.status("error\nREADY=1")
    notifier.extend_timeout(2.5)
    messages = await systemd_end.wait_for(lambda m: len(m) >= 2)
    assert messages == ["STATUS=error READY=1", "EXTEND_TIMEOUT_USEC=2500000"]
    with pytest.raises(ValueError, match="positive"):
        notifier.extend_timeout(0)


def test_malformed_watchdog_usec_disarms_the_watchdog() -> None:
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0
