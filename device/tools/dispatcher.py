"""The tool dispatcher: the only door from a model's function call to the inventory.

`call()` never raises. Whatever happens (bad arguments, an unknown tool, a timeout, an HTTP
error, a bug) the session gets a structured result (see `device.tools.results`) it can speak.
A duplicated call id runs once (`device.tools.once`). Writes are never applied on the model's
word: they are previewed (a dry run), read back, and committed only after the worker's own
confirmation (`device.tools.writes`), with an Idempotency-Key derived from the session and the
original function-call id, so a retry or a reconnect never applies a change twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from device.events import ErrorRaised, EventBus
from device.tools import refusals, results
from device.tools.consent import PendingAction
from device.tools.declarations import (
    CONFIRM_TOOL,
    DIRECT_WRITE_TOOLS,
    WRITE_TOOLS,
    declarations,
    exposed_tools,
)
from device.tools.handlers import Outcome, PickMemory, Proposal, WarehouseTools
from device.tools.inventory_client import CallContext, InventoryClient, InventoryError
from device.tools.once import CallsOnce, cancelled_event
from device.tools.operator import TOOLS as SIGN_ON_TOOLS
from device.tools.operator import UNKNOWN as UNKNOWN_OPERATOR
from device.tools.operator import SignOn
from device.tools.validation import ArgumentProblem, ArgumentValidator
from device.tools.writes import Writes, idempotency_key

__all__ = ["ToolDispatcher", "cancelled_event", "idempotency_key"]

log = logging.getLogger(__name__)


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
        self._writes = Writes(
            bus=bus,
            client=client,
            confirm_words=confirm_words,
            pending_ttl_s=pending_ttl_s,
            button_confirms=button_confirms,
            operator=self.operator,
            report=self._report,
        )
        self._once = CallsOnce(bus)

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
        consent = self._writes.consents.current
        return consent.pending if consent is not None else None

    @property
    def client(self) -> InventoryClient:
        return self._client

    def confirm(self, source: str = "control") -> bool:
        """The worker confirmed by other means (a dedicated button, the control socket).
        Counts only after a matching read-back; False otherwise."""
        return self._writes.consents.confirm(source)

    def cancel(self, reason: str = "cancelled") -> bool:
        consent = self._writes.consents.current
        return consent is not None and consent.cancel(reason) is not None

    async def commit_pending(self) -> dict[str, Any]:
        """Apply the pending write if the worker confirmed it; a result either way."""
        consent = self._writes.consents.current
        if consent is None:
            return refusals.nothing_pending()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._writes.commit(consent.session_id, "appliance")
        except TimeoutError:
            return self._timeout_result()
        except Exception as exc:
            return self._crash_result("commit_pending", exc)

    def close(self) -> None:
        self._writes.close()

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
        safe_args = args if isinstance(args, dict) else {"_": repr(args)[:200]}
        return await self._once.run(key, safe_args, lambda: self._run(*key, args))

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
            if cancelling:
                return self._writes.cancel_for_model(session_id)
            return await self._writes.commit(session_id, f"model call {call_id}")
        handler: Callable[[dict[str, Any], CallContext], Awaitable[Outcome]] = getattr(
            self._handlers, name
        )
        outcome = await handler(args, ctx)
        if not isinstance(outcome, Proposal):
            return outcome
        assert name in WRITE_TOOLS
        return self._writes.propose(session_id, call_id, name, args, outcome)

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
