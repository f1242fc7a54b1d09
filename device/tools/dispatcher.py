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
from device.tools import refusals, results
from device.tools.confirmation import Consents
from device.tools.consent import PendingAction, Stage
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
from device.tools.inventory_client import (
    CallContext,
    InventoryClient,
    InventoryError,
    handoff_request,
)
from device.tools.operator import TOOLS as SIGN_ON_TOOLS
from device.tools.operator import UNKNOWN as UNKNOWN_OPERATOR
from device.tools.operator import SignOn
from device.tools.validation import ArgumentProblem, ArgumentValidator
from device.tools.write_queue import queued_result

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
        sign_on: SignOn | None = None,
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
        self._sign_on = sign_on
        self._validators = {name: ArgumentValidator(name) for name in self._tools}
        self._handlers = WarehouseTools(client, PickMemory())
        # `require_spoken_readback` is kept for callers; a matching read-back is always due.
        del require_spoken_readback
        self._consents = Consents(
            bus,
            confirm_words,
            ttl_s=pending_ttl_s,
            button_confirms=button_confirms,
            on_handoff=self._hand_off_soon,
        )
        self._handoffs: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()
        self._recent: OrderedDict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = (
            OrderedDict()
        )

    # ---- what the appliance uses ---------------------------------------------------------

    def declarations(self) -> list[dict[str, Any]]:
        extra = self._sign_on.declarations() if self._sign_on is not None else []
        return [*declarations(self._enabled), *extra]

    @property
    def sign_on(self) -> SignOn | None:
        return self._sign_on

    def operator(self) -> str | None:
        """Who writes are sent as: the signed-on operator, "unknown", or None (refuse)."""
        if self._sign_on is not None:
            return self._sign_on.operator_for_writes()
        return self._operator or UNKNOWN_OPERATOR

    @property
    def pending(self) -> PendingAction | None:
        """The write of the open session waiting for the worker's confirmation, if any."""
        consent = self._consents.current
        return consent.pending if consent is not None else None

    @property
    def client(self) -> InventoryClient:
        return self._client

    def confirm(self, source: str = "control") -> bool:
        """The worker confirmed by other means (a dedicated button, the control socket).
        Counts only after a matching read-back; False otherwise."""
        return self._consents.confirm(source)

    def cancel(self, reason: str = "cancelled") -> bool:
        consent = self._consents.current
        return consent is not None and consent.cancel(reason) is not None

    async def commit_pending(self) -> dict[str, Any]:
        """Apply the pending write if the worker confirmed it; a result either way."""
        consent = self._consents.current
        if consent is None:
            return refusals.nothing_pending()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._commit(consent.session_id, "appliance")
        except TimeoutError:
            return self._timeout_result()
        except Exception as exc:
            return self._crash_result("commit_pending", exc)

    def close(self) -> None:
        self._consents.close()
        for task in self._handoffs:
            task.cancel()

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
            if self._sign_on is not None and name in SIGN_ON_TOOLS:
                async with asyncio.timeout(self._timeout_s):
                    return await self._sign_on.call(name, args)
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
        operator = self.operator()
        ctx = CallContext(session_id=session_id, call_id=call_id, operator=operator)
        if name in DIRECT_WRITE_TOOLS:
            # A call for help is never refused for want of a sign-on.
            ctx = CallContext(session_id, call_id, operator or UNKNOWN_OPERATOR)
            return await self._handlers.handoff_to_human(
                args, ctx, idempotency_key(session_id, call_id)
            )
        cancelling = name == CONFIRM_TOOL and args["decision"] == "cancel"
        if operator is None and (name in WRITE_TOOLS or name == CONFIRM_TOOL) and not cancelling:
            return refusals.sign_on_first()
        if name == CONFIRM_TOOL:
            if args["decision"] == "cancel":
                consent = self._consents.of(session_id)
                if consent is None:
                    return refusals.nothing_pending()
                closed = consent.last_closed
                if consent.cancel("model") is None and (
                    closed is None or closed.stage != Stage.DECLINED
                ):
                    return refusals.nothing_pending()
                return results.result("cancelled", "CANCELLED", "Cancelled. Nothing was changed.")
            return await self._commit(session_id, f"model call {call_id}")
        handler: Callable[[dict[str, Any], CallContext], Awaitable[Outcome]] = getattr(
            self._handlers, name
        )
        outcome = await handler(args, ctx)
        if not isinstance(outcome, Proposal):
            return outcome
        assert name in WRITE_TOOLS
        proposed = self._consents.propose(
            PendingAction(
                session_id=session_id,
                call_id=call_id,
                tool=name,
                write=outcome.write,
                args=dict(args),
                readback=outcome.readback,
                idempotency_key=idempotency_key(session_id, call_id),
                change=outcome.change,
            )
        )
        if not proposed:
            return results.error(
                "SESSION_ENDED",
                "This conversation has ended. Please start again.",
                detail="the session that made this call is over; nothing was proposed",
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

    async def _commit(self, session_id: str, asked_by: str) -> dict[str, Any]:
        async with self._commit_lock:
            consent = self._consents.of(session_id)
            if consent is None:
                return refusals.nothing_pending()
            pending = consent.pending
            if pending is None:
                last = consent.last_closed
                if last is not None and last.stage in (Stage.DECLINED, Stage.HANDED_OFF):
                    self._report(
                        f"refused to commit {last.tool} ({last.call_id}) asked by {asked_by}: "
                        f"the change was {last.stage.value.replace('_', ' ')}, not confirmed"
                    )
                return refusals.closed_result(last)
            action = consent.commit_ready()
            if action is None:
                self._report(
                    f"refused to commit {pending.tool} ({pending.call_id}) asked by {asked_by}: "
                    "the worker has not confirmed a matching read-back (not confirmed)"
                )
                return refusals.not_confirmed(pending)
            operator = self.operator()
            if operator is None:
                return refusals.sign_on_first()
            ctx = CallContext(action.session_id, action.call_id, operator)
            try:
                body = await self._client.commit(
                    action.write, idempotency_key=action.idempotency_key, context=ctx
                )
            except InventoryError as err:
                if not err.retryable:
                    consent.finish(action, Stage.FAILED, err.code)
                # A retryable failure keeps the confirmed action: calling again reuses its
                # idempotency key, so it cannot apply twice.
                return results.from_inventory_error(err, action.args)
            consent.finish(action, Stage.COMMITTED, action.confirmed_by or "")
            if body.get("queued"):  # saved on the device while the API is away
                return queued_result(action.tool, body)
            return results.ok(
                committed_sentence(action.tool, action.args, body), committed_data(body)
            )

    def _hand_off_soon(self, action: PendingAction) -> None:
        """The model got the read-back wrong twice: the change is dropped; call a person."""
        task = asyncio.get_running_loop().create_task(
            self._hand_off(action), name="readback-handoff"
        )
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    async def _hand_off(self, action: PendingAction) -> None:
        summary = (
            f"The read-back of a {action.tool.replace('_', ' ')} went wrong twice; "
            f"the change was dropped: {action.readback}"
        )[:300]
        ctx = CallContext(action.session_id, action.call_id, self.operator() or UNKNOWN_OPERATOR)
        try:
            await self._client.commit(
                handoff_request("other", summary),
                idempotency_key=idempotency_key(action.session_id, f"handoff:{action.call_id}"),
                context=ctx,
            )
        except InventoryError as err:
            self._report(f"could not call a person after two wrong read-backs: {err}")

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
