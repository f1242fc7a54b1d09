"""Function calls across connections: each id runs once and is answered once.

A call id is remembered for the whole conversation, not per connection, so a duplicated
`toolCall` frame or a call the server announces again after a resume never runs the tool a
second time. A server that announces a call again on a new connection, after its answer left
on an older one, has lost that answer: it gets the same answer once more.

Every call ends with an answer unless the server cancels it: a tool that does not return in
`timeout_s` is answered with a structured TOOL_TIMEOUT error. A cancelled call
(`toolCallCancellation`) stops its task, and if it proposed a stock change that still waits for
the worker's confirmation, that change is dropped so no later "confirm" can commit it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from google.genai import types

from device.events import ErrorRaised, EventBus, ToolCalled, ToolFinished
from device.tools import results

log = logging.getLogger(__name__)

LocalTool = Callable[[dict[str, Any]], dict[str, Any]]


class ToolRunner(Protocol):
    def declarations(self) -> list[dict[str, Any]]: ...

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]: ...


@runtime_checkable
class PendingWrites(Protocol):
    """A tool runner that holds writes until the worker confirms (the ToolDispatcher)."""

    @property
    def pending(self) -> Any: ...

    def cancel(self, reason: str = ...) -> bool: ...


@dataclass
class _Call:
    name: str
    generation: int
    task: asyncio.Task[None] | None = None
    answer: types.FunctionResponse | None = None
    sent_on: set[int] = field(default_factory=set)
    queued: bool = False
    cancelled: bool = False


class ToolCalls:
    def __init__(
        self,
        *,
        tools: ToolRunner,
        session_id: str,
        bus: EventBus,
        timeout_s: float,
        deliver: Callable[[types.FunctionResponse], None],
        local: Mapping[str, LocalTool],
        changed: Callable[[], None],
        schedule: Callable[[str], types.FunctionResponseScheduling | None] | None = None,
    ) -> None:
        self._tools = tools
        self._session_id = session_id
        self._bus = bus
        self._timeout_s = timeout_s
        self._deliver = deliver
        self._local = local
        self._changed = changed
        self._schedule = schedule or (lambda _name: None)
        self._calls: dict[str, _Call] = {}
        self._generation = 0

    @property
    def busy(self) -> bool:
        """A tool is still running."""
        return any(c.task is not None and not c.task.done() for c in self._calls.values())

    def runs(self, call_id: str) -> int:
        """How many times a call id was started (0 or 1)."""
        return int(call_id in self._calls)

    def on_call(self, call: types.FunctionCall, link: int) -> None:
        call_id, name = call.id or "", call.name or ""
        state = self._calls.get(call_id)
        if state is None:
            state = _Call(name=name, generation=self._generation)
            self._calls[call_id] = state
            args = dict(call.args or {})
            state.task = asyncio.create_task(
                self._run(call_id, name, args, state), name=f"tool-{name}"
            )
            self._changed()
            return
        if (
            state.answer is not None
            and not state.cancelled
            and not state.queued
            and link not in state.sent_on
        ):
            log.info("call %s announced again on connection %d: answering it again", call_id, link)
            self._queue(state)
            return
        log.warning("duplicate function call %s ignored", call_id)

    def sent(self, call_id: str, link: int) -> None:
        state = self._calls.get(call_id)
        if state is not None:
            state.sent_on.add(link)
            state.queued = False

    def requeued(self, call_id: str) -> None:
        state = self._calls.get(call_id)
        if state is not None:
            state.queued = True

    def cancel(self, call_ids: list[str]) -> None:
        for call_id in call_ids:
            state = self._calls.get(call_id)
            if state is not None:
                state.cancelled = True
                state.queued = False
                if state.task is not None and not state.task.done():
                    state.task.cancel()
                    log.info("call %s (%s) cancelled by the server", call_id, state.name)
            self._cancel_pending_write(call_id)
        self._changed()

    def new_generation(self) -> None:
        """The conversation starts over (a fresh session): old calls will never be answered."""
        self._generation += 1
        for state in self._calls.values():
            state.queued = False

    def stop(self) -> list[asyncio.Task[None]]:
        tasks = [c.task for c in self._calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        return tasks

    def _cancel_pending_write(self, call_id: str) -> None:
        # The dispatcher may sit behind a tool set that adds device-local tools.
        for tools in (self._tools, getattr(self._tools, "dispatcher", None)):
            if not isinstance(tools, PendingWrites):
                continue
            pending = tools.pending
            if (
                pending is not None
                and getattr(pending, "call_id", None) == call_id
                and getattr(pending, "session_id", None) == self._session_id
            ):
                tools.cancel("cancelled")
                log.info("the model cancelled call %s: its pending write is dropped", call_id)
            return

    async def _run(self, call_id: str, name: str, args: dict[str, Any], state: _Call) -> None:
        try:
            if name in self._local:
                result = self._run_local(call_id, name, args)
            else:
                result = await self._call_with_deadline(call_id, name, args)
        finally:
            self._changed()
        if state.cancelled or state.generation != self._generation:
            return
        state.answer = types.FunctionResponse(
            id=call_id, name=name, response=result, scheduling=self._schedule(name)
        )
        self._queue(state)

    async def _call_with_deadline(
        self, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._tools.call(
                    session_id=self._session_id, call_id=call_id, name=name, args=args
                )
        except TimeoutError:
            result = results.error(
                "TOOL_TIMEOUT",
                "That is taking too long. Please try again.",
                retryable=True,
                detail=f"{name} gave no result within {self._timeout_s:g} s",
            )
            message = f"tool {name} ({call_id}) timed out after {self._timeout_s:g} s"
            log.warning("%s", message)
            self._bus.publish(ErrorRaised(where="live.tools", message=message))
            self._finished(call_id, name, result, started)
            return result

    def _run_local(self, call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        self._bus.publish(
            ToolCalled(session_id=self._session_id, call_id=call_id, name=name, args=args)
        )
        result = self._local[name](args)
        self._finished(call_id, name, result, started)
        return result

    def _finished(self, call_id: str, name: str, result: dict[str, Any], started: float) -> None:
        self._bus.publish(
            ToolFinished(
                session_id=self._session_id,
                call_id=call_id,
                name=name,
                status=str(result.get("status", "")),
                result=result,
                latency_ms=(time.monotonic() - started) * 1000.0,
            )
        )

    def _queue(self, state: _Call) -> None:
        assert state.answer is not None
        state.queued = True
        self._deliver(state.answer)
