"""LoopInbox: calls from a thread run on the loop in order, one wake-up per batch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from device.loop_inbox import LoopInbox


async def test_calls_from_a_thread_run_in_order_and_a_failing_one_drops_none() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    inbox = LoopInbox(loop)
    ran: list[int] = []
    done = asyncio.Event()

    def fail() -> None:
        raise ValueError("broken callback")

    def post() -> None:
        for n in range(1_000):
            inbox.call(ran.append, n)
            if n == 500:
                inbox.call(fail)
        inbox.call(done.set)

    try:
        thread = threading.Thread(target=post)
        thread.start()
        async with asyncio.timeout(30):
            await done.wait()
        thread.join()
    finally:
        loop.set_exception_handler(None)
    assert ran == list(range(1_000))
    assert [type(c["exception"]) for c in reported] == [ValueError]
    assert "fail" in reported[0]["message"]


def test_a_closed_loop_refuses_every_call_not_just_the_first() -> None:
    loop = asyncio.new_event_loop()
    inbox = LoopInbox(loop)
    loop.close()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            inbox.call(print)
