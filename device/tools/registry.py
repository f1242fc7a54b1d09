"""All the tools one session offers: the warehouse dispatcher plus local device tools.

Local tools (the camera's `scan_barcode` and `look`, and session tools such as `end_session`)
run on the device and never touch stock, so they need no confirmation; they get the same
guarantees as warehouse tools: a time limit, events on the bus, and a structured result even
when the handler fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from device.events import EventBus, ToolCalled, ToolFinished
from device.tools.dispatcher import ToolDispatcher, cancelled_event

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _error(speakable: str, code: str, *, retryable: bool) -> dict[str, Any]:
    return {
        "status": "error",
        "code": code,
        "speakable": speakable,
        "retryable": retryable,
        "valid_options": [],
    }


class ToolSet:
    def __init__(self, dispatcher: ToolDispatcher, *, bus: EventBus, timeout_s: float) -> None:
        self.dispatcher = dispatcher
        self._bus = bus
        self._timeout_s = timeout_s
        self._local: dict[str, tuple[dict[str, Any], Handler]] = {}

    def add(self, declarations: list[dict[str, Any]], handlers: Mapping[str, Handler]) -> None:
        for declaration in declarations:
            name = declaration["name"]
            if name in self._local or name in self._warehouse_names():
                raise ValueError(f"tool {name!r} is declared twice")
            self._local[name] = (declaration, handlers[name])

    def _warehouse_names(self) -> set[str]:
        return {d["name"] for d in self.dispatcher.declarations()}

    def declarations(self) -> list[dict[str, Any]]:
        return [*self.dispatcher.declarations(), *(d for d, _ in self._local.values())]

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        local = self._local.get(name)
        if local is None:
            return await self.dispatcher.call(
                session_id=session_id, call_id=call_id, name=name, args=args
            )
        self._bus.publish(ToolCalled(session_id=session_id, call_id=call_id, name=name, args=args))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await local[1](args)
        except TimeoutError:
            result = _error("That took too long. Try again.", "TIMEOUT", retryable=True)
        except asyncio.CancelledError:
            # The LEDs and the log must see the call end, or "tool running" sticks.
            self._bus.publish(cancelled_event(session_id, call_id, name, started))
            raise
        except Exception:
            log.exception("local tool %s failed", name)
            result = _error("Something went wrong on the device.", "INTERNAL", retryable=False)
        self._bus.publish(
            ToolFinished(
                session_id=session_id,
                call_id=call_id,
                name=name,
                status=str(result.get("status", "error")),
                result=result,
                latency_ms=(time.monotonic() - started) * 1000,
            )
        )
        return result

    def confirm(self, source: str) -> bool:
        return self.dispatcher.confirm(source)

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
