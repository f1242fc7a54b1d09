"""Each function call runs once: a duplicated call id (DESIGN §3) gets the first call's answer.

`CallsOnce.run` also publishes the call's `ToolCalled` and `ToolFinished` (or the cancelled
end, `cancelled_event`) on the bus, once per call that actually ran.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from device.events import EventBus, ToolCalled, ToolFinished

RECENT_CALLS = 256

CallKey = tuple[str, str, str]  # (session id, call id, tool name)


def cancelled_event(session_id: str, call_id: str, name: str, started: float) -> ToolFinished:
    """The end of a call that was cancelled (toolCallCancellation, a session closing)."""
    result = {"status": "cancelled", "speakable": "", "retryable": True, "valid_options": []}
    return ToolFinished(
        session_id=session_id,
        call_id=call_id,
        name=name,
        status="cancelled",
        result=result,
        latency_ms=(time.monotonic() - started) * 1000.0,
    )


class CallsOnce:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._recent: OrderedDict[CallKey, asyncio.Future[dict[str, Any]]] = OrderedDict()

    async def run(
        self,
        key: CallKey,
        args: dict[str, Any],
        runner: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """`runner()`'s result, or the result of the call with the same key that ran first."""
        earlier = self._recent.get(key)
        if earlier is not None and not earlier.cancelled():
            # A duplicated function-call id: answer it again, never run it twice.
            try:
                return await asyncio.shield(earlier)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not earlier.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The original call was cancelled before it finished: run this one afresh.
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._remember(key, future)
        start = time.monotonic()
        session_id, call_id, name = key
        self._bus.publish(
            ToolCalled(session_id=session_id, call_id=call_id, name=name, args=dict(args))
        )
        try:
            result = await runner()
        except asyncio.CancelledError:
            future.cancel()
            self._recent.pop(key, None)
            self._bus.publish(cancelled_event(session_id, call_id, name, start))
            raise
        future.set_result(result)
        self._bus.publish(
            ToolFinished(
                session_id=session_id,
                call_id=call_id,
                name=name,
                status=result["status"],
                result=result,
                latency_ms=(time.monotonic() - start) * 1000.0,
            )
        )
        return result

    def _remember(self, key: CallKey, future: asyncio.Future[dict[str, Any]]) -> None:
        self._recent[key] = future
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)
