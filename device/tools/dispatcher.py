"""The tool dispatcher: the only door from a model's function call to the inventory.

`call()` never raises. Whatever happens (bad arguments, an unknown tool, a timeout, an HTTP
error, a bug) the session gets a structured result (see `device.tools.results`) it can speak.
Writes are never applied on the model's word: they are previewed (a dry run), read back, and
committed only after the worker's own confirmation (see `device.tools.confirmation`), with an
Idempotency-Key derived from the session and the original function-call id, so a retry or a
reconnect never applies a change twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from device.events import ErrorRaised, EventBus, ToolCalled, ToolFinished
from device.tools import results
from device.tools.confirmation import ConfirmationGate, PendingAction
from device.tools.declarations import (
    CONFIRM_TOOL,
    DIRECT_WRITE_TOOLS,
    WRITE_TOOLS,
    declarations,
    exposed_tools,
)
from device.tools.handlers import (
    Outcome,
    PickMemory,
    Proposal,
    WarehouseTools,
    committed_data,
    committed_sentence,
)
from device.tools.inventory_client import CallContext, InventoryClient, InventoryError
from device.tools.validation import ArgumentProblem, ArgumentValidator

log = logging.getLogger(__name__)

RECENT_CALLS = 256


def idempotency_key(session_id: str, call_id: str) -> str:
    """Stable per (session, original function call): the same call always gets the same key."""
    digest = hashlib.sha256(f"{session_id}\x1f{call_id}".encode()).hexdigest()
    return f"wv-{digest[:40]}"


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


class ToolDispatcher:
    def __init__(
        self,
        *,
        bus: EventBus,
        client: InventoryClient,
        enabled: Sequence[str],
        confirm_words: Sequence[str] = ("confirm", "yes confirm", "correct"),
        timeout_s: float = 5.0,
        pending_ttl_s: float = 120.0,
        require_spoken_readback: bool = True,
        button_confirms: bool = True,
        operator: str | None = None,
    ) -> None:
        """`button_confirms`: a bus ButtonEvent press confirms a pending write. Turn it off
        when the button is push-to-talk, and call `confirm()` for a dedicated gesture."""
        if timeout_s <= 0:
            raise ValueError(f"tool timeout_s must be positive, got {timeout_s}")
        self._tools = exposed_tools(enabled)  # raises ValueError naming unknown tools
        self._enabled = tuple(enabled)
        self._bus = bus
        self._client = client
        self._timeout_s = timeout_s
        self._operator = operator
        self._validators = {name: ArgumentValidator(name) for name in self._tools}
        self._handlers = WarehouseTools(client, PickMemory())
        self._gate = ConfirmationGate(
            bus,
            confirm_words,
            ttl_s=pending_ttl_s,
            require_spoken_readback=require_spoken_readback,
            button_confirms=button_confirms,
        )
        self._commit_lock = asyncio.Lock()
        self._recent: OrderedDict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = (
            OrderedDict()
        )

    # ---- what the appliance uses ---------------------------------------------------------

    def declarations(self) -> list[dict[str, Any]]:
        return declarations(self._enabled)

    @property
    def pending(self) -> PendingAction | None:
        """The write waiting for the worker's confirmation, if any."""
        return self._gate.pending

    @property
    def client(self) -> InventoryClient:
        return self._client

    def confirm(self, source: str = "control") -> bool:
        """The worker confirmed by other means (a dedicated button, the control socket)."""
        return self._gate.confirm(source)

    def cancel(self, reason: str = "cancelled") -> bool:
        return self._gate.resolve(reason) is not None

    async def commit_pending(self) -> dict[str, Any]:
        """Apply the pending write if the worker confirmed it; a result either way."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._commit("appliance")
        except TimeoutError:
            return self._timeout_result()
        except Exception as exc:
            return self._crash_result("commit_pending", exc)

    def close(self) -> None:
        self._gate.close()

    async def aclose(self) -> None:
        """Stop listening on the bus and close the inventory client's connections."""
        self.close()
        await self._client.aclose()

    # ---- what the Live session uses ------------------------------------------------------

    async def call(
        self, *, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Run one function call; returns the structured result. Never raises (but honours
        cancellation of the calling task)."""
        key = (str(session_id), str(call_id), str(name))
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
        safe_args = args if isinstance(args, dict) else {"_": repr(args)[:200]}
        self._bus.publish(
            ToolCalled(session_id=key[0], call_id=key[1], name=key[2], args=dict(safe_args))
        )
        try:
            result = await self._run(key[0], key[1], key[2], args)
        except asyncio.CancelledError:
            future.cancel()
            self._recent.pop(key, None)
            self._bus.publish(cancelled_event(key[0], key[1], key[2], start))
            raise
        future.set_result(result)
        self._bus.publish(
            ToolFinished(
                session_id=key[0],
                call_id=key[1],
                name=key[2],
                status=result["status"],
                result=result,
                latency_ms=(time.monotonic() - start) * 1000.0,
            )
        )
        return result

    def _remember(self, key: tuple[str, str, str], future: asyncio.Future[dict[str, Any]]) -> None:
        self._recent[key] = future
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)

    async def _run(self, session_id: str, call_id: str, name: str, args: Any) -> dict[str, Any]:
        try:
            if name not in self._tools:
                return results.error(
                    "UNKNOWN_TOOL",
                    "Sorry, I can't do that here.",
                    valid_options=self._tools,
                    detail=f"no tool named {name!r}; available: {', '.join(self._tools)}",
                )
            checked = self._validators[name].normalise(args)
            if isinstance(checked, ArgumentProblem):
                return results.invalid_argument(
                    checked.field, checked.detail, checked.valid_options
                )
            async with asyncio.timeout(self._timeout_s):
                return await self._dispatch(session_id, call_id, name, checked)
        except TimeoutError:
            return self._timeout_result()
        except InventoryError as err:
            if err.code == "UNAUTHORIZED":
                self._report(f"inventory rejected this device's token: {err.detail}")
            return results.from_inventory_error(err, args if isinstance(args, dict) else {})
        except Exception as exc:
            return self._crash_result(name, exc)

    async def _dispatch(
        self, session_id: str, call_id: str, name: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        ctx = CallContext(session_id=session_id, call_id=call_id, operator=self._operator)
        if name == CONFIRM_TOOL:
            if args["decision"] == "cancel":
                cancelled = self._gate.resolve("cancelled", "model")
                if cancelled is None:
                    return _nothing_pending()
                return results.result("cancelled", "CANCELLED", "Cancelled. Nothing was changed.")
            return await self._commit(f"model call {call_id}")
        if name in DIRECT_WRITE_TOOLS:
            return await self._handlers.handoff_to_human(
                args, ctx, idempotency_key(session_id, call_id)
            )
        handler: Callable[[dict[str, Any], CallContext], Awaitable[Outcome]] = getattr(
            self._handlers, name
        )
        outcome = await handler(args, ctx)
        if not isinstance(outcome, Proposal):
            return outcome
        assert name in WRITE_TOOLS
        self._gate.open(
            PendingAction(
                session_id=session_id,
                call_id=call_id,
                tool=name,
                write=outcome.write,
                args=dict(args),
                readback=outcome.readback,
                idempotency_key=idempotency_key(session_id, call_id),
            )
        )
        return results.result(
            "needs_confirmation",
            "NEEDS_CONFIRMATION",
            f"{outcome.readback} {results.CONFIRM_PROMPT}",
            valid_options=["confirm", "cancel"],
            detail=(
                "Nothing is changed yet. Speak `speakable` to the worker as it is, then wait "
                f"for their answer and call {CONFIRM_TOOL}."
            ),
            data=outcome.data,
        )

    async def _commit(self, asked_by: str) -> dict[str, Any]:
        async with self._commit_lock:
            pending = self._gate.pending
            if pending is None:
                return _nothing_pending()
            if not pending.confirmed:
                self._report(
                    f"refused to commit {pending.tool} ({pending.call_id}) asked by {asked_by}: "
                    "the worker has not confirmed the read-back"
                )
                return results.result(
                    "refused",
                    "NOT_CONFIRMED",
                    f"Not done yet. {pending.readback} {results.CONFIRM_PROMPT}",
                    valid_options=["confirm", "cancel"],
                    detail="the worker has not confirmed; wait for them to say confirm or "
                    "press the button, then call again",
                )
            ctx = CallContext(pending.session_id, pending.call_id, self._operator)
            try:
                body = await self._client.commit(
                    pending.write, idempotency_key=pending.idempotency_key, context=ctx
                )
            except InventoryError as err:
                if not err.retryable:
                    self._gate.resolve("failed", err.code, action=pending)
                # A retryable failure keeps the confirmed action: calling again reuses its
                # idempotency key, so it cannot apply twice.
                return results.from_inventory_error(err, pending.args)
            self._gate.resolve("committed", pending.confirmed_by or "", action=pending)
            return results.ok(
                committed_sentence(pending.tool, pending.args, body), committed_data(body)
            )

    def _report(self, message: str) -> None:
        log.warning("%s", message)
        self._bus.publish(ErrorRaised(where="tools.dispatcher", message=message))

    def _timeout_result(self) -> dict[str, Any]:
        return results.error(
            "TIMEOUT",
            "The inventory system is slow to answer. Please try again.",
            retryable=True,
            detail=f"no answer within {self._timeout_s:g} s",
        )

    def _crash_result(self, where: str, exc: Exception) -> dict[str, Any]:
        log.exception("tool %s failed", where, exc_info=exc)
        self._bus.publish(
            ErrorRaised(where=f"tools.{where}", message=f"{type(exc).__name__}: {exc}")
        )
        return results.error(
            "INTERNAL", "Something went wrong on the device. Please try again.", retryable=True
        )


def _nothing_pending() -> dict[str, Any]:
    return results.error(
        "NO_PENDING_ACTION",
        "There is nothing waiting for confirmation.",
        detail="propose the change again with its tool first",
    )
