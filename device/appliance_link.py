"""The link: where the appliance's conversations run, as one supervised part.

Each conversation runs as its own task, started here. Under the daemon's supervisor `run()` is
the `link` part: a session task that dies of an exception (a bug of ours, never a dropped
connection, which the conversation resumes by itself) stops the part. The supervisor then
names it in `status`, the appliance shows the error state while it lasts, and the restart
(after the supervisor's backoff) is the recovery: the next press gets a fresh session.
Without a supervisor (the test rigs) sessions run the same way and a bug is only reported.

Also here: waiting for the Live endpoint after a session ended offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from device.live.session import Conversation

log = logging.getLogger(__name__)


class SessionLink:
    def __init__(self) -> None:
        self._failed: asyncio.Future[BaseException] | None = None

    @property
    def supervised(self) -> bool:
        """True while `run()` runs: a session's bug is the part's fault, which it recovers from."""
        return self._failed is not None

    def start(
        self, session: Coroutine[Any, Any, None], on_done: Callable[[asyncio.Task[None]], None]
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(session, name="session")
        task.add_done_callback(on_done)
        task.add_done_callback(self._session_done)
        return task

    def _session_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        failed = self._failed
        if failed is not None and not failed.done():
            exc = task.exception()
            assert exc is not None
            failed.set_result(exc)

    async def run(self) -> None:
        """The supervised part: returns only by raising what killed a session task."""
        self._failed = asyncio.get_running_loop().create_future()
        try:
            exc = await self._failed
        finally:
            self._failed = None
        raise exc


async def await_network(conversation: Conversation, still_offline: Callable[[], bool]) -> bool:
    """Probe the Live endpoint with backoff while `still_offline()`; True once it answers.

    False when waiting stopped for another reason: the connector cannot probe (the next attempt
    will tell), or something else (a press) ended the offline state meanwhile."""
    delay, cap = conversation.policy.reconnect_base_s, conversation.policy.offline_probe_max_s
    while still_offline():
        reachable = await conversation.probe()
        if reachable is None:
            return False
        if reachable and still_offline():
            return True
        await asyncio.sleep(delay)
        delay = min(cap, delay * 2)
    return False
