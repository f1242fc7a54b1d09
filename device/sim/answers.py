"""Tool answers as the emulated service consumes them.

A turn that called tools `expect`s their ids and `wait`s until each was answered, the user
barged in, or the time ran out. Answers are checked (every answer needs an id), recorded, and
tracked for the whole session, across its connections, so an answer to a call the session has
already consumed is recorded as a `duplicate_tool_response` fault. With `lose_with` the first
answer is lost instead: the connection closes with that code before consuming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from device.sim import wire
from device.sim.record import ConnectionRecord, ToolResponseRecord
from device.sim.turns import ToolWait

Fault = Callable[[str, int | None, str], None]


class ToolAnswers:
    def __init__(self, record: ConnectionRecord, fault: Fault, lose: Callable[[int], None]):
        self._record = record
        self._fault = fault
        self._lose = lose
        self._event = asyncio.Event()
        self._waiting_for: set[str] = set()
        self._turn: int | None = None
        self._lose_with: int | None = None
        self.lost = False
        # Ids the session consumed answers for, across its connections (from the script).
        self.session_answered: set[str] = set()

    def expect(self, ids: set[str], turn: int, lose_with: int | None) -> None:
        self._waiting_for, self._turn, self._lose_with = set(ids), turn, lose_with

    async def wait(self, timeout_s: float, barge_in: asyncio.Event | None) -> ToolWait:
        """`barge_in` None: new input does not cancel the calls (NON_BLOCKING)."""
        if barge_in is None:
            barge_in = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):
                while self._waiting_for:
                    if self.lost:
                        return "closed"
                    if barge_in.is_set():
                        return "interrupted"
                    self._event.clear()
                    barge = asyncio.ensure_future(barge_in.wait())
                    answer = asyncio.ensure_future(self._event.wait())
                    try:
                        await asyncio.wait({barge, answer}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        barge.cancel()
                        answer.cancel()
            return "answered"
        except TimeoutError:
            return "timeout"
        finally:
            self._waiting_for, self._turn, self._lose_with = set(), None, None

    def receive(self, body: dict[str, Any]) -> None:
        responses = body.get("function_responses")
        if not isinstance(responses, list):
            raise wire.WireError("toolResponse.functionResponses must be a list")
        for i, item in enumerate(responses):
            if not isinstance(item, dict) or not item.get("id"):
                raise wire.WireError(
                    f"toolResponse.functionResponses[{i}].id is required; "
                    "copy it from the toolCall's functionCalls[].id"
                )
        if self._lose_with is not None and any(r["id"] in self._waiting_for for r in responses):
            code, self._lose_with = self._lose_with, None
            ids = ",".join(str(r["id"]) for r in responses)
            self._fault("close_on_tool_response", self._turn, f"code {code}, lost {ids}")
            self.lost = True
            self._lose(code)
            self._event.set()
            return
        for item in responses:
            self._consume(item)
        self._event.set()

    def _consume(self, item: dict[str, Any]) -> None:
        call_id = str(item["id"])
        if call_id in self.session_answered:
            self._fault("duplicate_tool_response", self._turn, call_id)
        expected = call_id in self._waiting_for
        if expected:
            self.session_answered.add(call_id)
        response = item.get("response")
        entry = ToolResponseRecord(
            id=call_id,
            name=str(item.get("name") or ""),
            response=response if isinstance(response, dict) else {"output": response},
            turn=self._turn,
            expected=expected,
            scheduling=str(item["scheduling"]) if item.get("scheduling") else None,
        )
        self._record.tool_responses.append(entry)
        if expected and self._turn is not None:
            self._record.turns[self._turn].tool_responses.append(entry)
            self._waiting_for.discard(call_id)
