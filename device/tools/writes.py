"""Writes to the inventory, only on the worker's word.

A write tool's call is previewed (a dry run) by its handler; `Writes.propose` turns the preview
into a pending action whose read-back the worker must hear and confirm (see
`device.tools.consent`), and `Writes.commit` applies it once they have, with an
Idempotency-Key derived from the session and the original function-call id, so a retry or a
reconnect never applies a change twice. Two wrong read-backs drop the change and call a person.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from device.events import EventBus
from device.tools import refusals, results
from device.tools.confirmation import Consents
from device.tools.consent import PendingAction, Stage
from device.tools.declarations import CONFIRM_TOOL
from device.tools.handlers import Proposal, committed_data, committed_sentence
from device.tools.inventory_client import (
    CallContext,
    InventoryClient,
    InventoryError,
    handoff_request,
)
from device.tools.operator import UNKNOWN as UNKNOWN_OPERATOR
from device.tools.write_queue import queued_result


def idempotency_key(session_id: str, call_id: str) -> str:
    """Stable per (session, original function call): the same call always gets the same key."""
    digest = hashlib.sha256(f"{session_id}\x1f{call_id}".encode()).hexdigest()
    return f"wv-{digest[:40]}"


class Writes:
    def __init__(
        self,
        *,
        bus: EventBus,
        client: InventoryClient,
        confirm_words: Sequence[str],
        pending_ttl_s: float,
        button_confirms: bool,
        operator: Callable[[], str | None],
        report: Callable[[str], None],
    ) -> None:
        """`operator()`: who writes are sent as (None: refuse). `report(message)`: a refusal
        or failure the operator must see."""
        self._client = client
        self._operator = operator
        self._report = report
        self.consents = Consents(
            bus,
            confirm_words,
            ttl_s=pending_ttl_s,
            button_confirms=button_confirms,
            on_handoff=self._hand_off_soon,
        )
        self._handoffs: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()

    def close(self) -> None:
        self.consents.close()
        for task in self._handoffs:
            task.cancel()

    def propose(
        self, session_id: str, call_id: str, tool: str, args: dict[str, Any], outcome: Proposal
    ) -> dict[str, Any]:
        """Hold a previewed write for the worker's confirmation; the result asks for it."""
        proposed = self.consents.propose(
            PendingAction(
                session_id=session_id,
                call_id=call_id,
                tool=tool,
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

    def cancel_for_model(self, session_id: str) -> dict[str, Any]:
        """The model called the confirm tool with "cancel"."""
        consent = self.consents.of(session_id)
        if consent is None:
            return refusals.nothing_pending()
        closed = consent.last_closed
        if consent.cancel("model") is None and (closed is None or closed.stage != Stage.DECLINED):
            return refusals.nothing_pending()
        return results.result("cancelled", "CANCELLED", "Cancelled. Nothing was changed.")

    async def commit(self, session_id: str, asked_by: str) -> dict[str, Any]:
        """Apply the session's pending write if the worker confirmed its read-back."""
        async with self._commit_lock:
            consent = self.consents.of(session_id)
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
            operator = self._operator()
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
        operator = self._operator() or UNKNOWN_OPERATOR
        ctx = CallContext(action.session_id, action.call_id, operator)
        try:
            await self._client.commit(
                handoff_request("other", summary),
                idempotency_key=idempotency_key(action.session_id, f"handoff:{action.call_id}"),
                context=ctx,
            )
        except InventoryError as err:
            self._report(f"could not call a person after two wrong read-backs: {err}")
