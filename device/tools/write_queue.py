"""Confirmed writes that go on through an outage of the inventory API (Vocollect's ODR idea).

When a confirmed write cannot reach the API (refused, timed out, or a 5xx), it is saved in the
state directory (`device.tools.write_store`) with its Idempotency-Key, and the worker hears
that it is saved and will sync. A delivery task sends saved writes one at a time, oldest first,
with backoff while the API is away; a new write queues behind older ones even when the API is
up, so writes land in the order the worker made them. The key makes a repeated send (after a
lost answer, or a kill -9 between send and delete) a replay, never a second change.

The API may refuse a saved write when it finally arrives (the stock changed meanwhile: 409 or
422). Then nobody is standing there to hear it, so the device opens a hand-off ticket for a
person (`/handoffs`) and publishes a `WriteQueueChanged(change="rejected")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from device.events import ErrorRaised, EventBus, WriteQueueChanged
from device.tools import results
from device.tools.inventory_client import (
    CallContext,
    InventoryClient,
    InventoryError,
    InventoryUnavailable,
    WriteRequest,
    handoff_request,
)
from device.tools.write_store import SavedWrite, WriteStore

log = logging.getLogger(__name__)

Sender = Callable[[WriteRequest, str, CallContext], Awaitable[dict[str, Any]]]
# Writes that may wait: stock changes. A call for help must reach a person now or fail aloud.
NOT_QUEUED_PATHS = frozenset({"/handoffs"})
QUEUED_CODE = "QUEUED"
WHAT = {
    "move_stock": "move",
    "record_count": "count",
    "report_damage": "damage report",
    "confirm_pick": "pick",
}


def unreachable(err: InventoryError) -> bool:
    """The API did not take the write at all: worth saving and sending again later."""
    return isinstance(err, InventoryUnavailable) or err.status >= 500


def refused(err: InventoryError) -> bool:
    """The API looked at the write and said no; sending it again cannot help. A rejected
    token (401/403) is the device's problem, not the write's: keep it and keep trying."""
    return not err.retryable and 400 <= err.status < 500 and err.status not in (401, 403)


def queued_result(tool: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the worker hears for a write saved on the device."""
    what = WHAT.get(tool, "change")
    return results.result(
        "ok",
        QUEUED_CODE,
        f"Saved. The inventory system is offline, so this {what} is stored on the device "
        "and will sync when it's back.",
        detail="saved on the device with its idempotency key; it is applied exactly once when "
        "the inventory API answers again. Do not call again.",
        data={"queued": True, "queue_depth": body.get("queue_depth", 0)},
    )


class WriteQueue:
    def __init__(
        self,
        path: Path,
        *,
        bus: EventBus,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        if retry_min_s <= 0:
            raise ValueError(f"retry_min_s must be positive, got {retry_min_s}")
        self.path = path
        self._bus = bus
        self._last_error: str | None = None
        self._store = self._open(path)
        self._retry_min_s = retry_min_s
        self._retry_max_s = max(retry_min_s, retry_max_s)
        self._send: Sender | None = None
        self._depth, self._oldest = self._store.tally()
        self._delivered = 0
        self._rejected = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _open(self, path: Path) -> WriteStore:
        store: WriteStore | None = None
        try:
            store = WriteStore(path)
            store.tally()  # reads every row's page: a file damaged past its header fails here
            return store
        except sqlite3.DatabaseError as exc:
            if store is not None:
                store.close()
            # Keep the damaged file for a person to recover from; never crash-loop over it.
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = path.with_name(path.name + suffix)
                if src.exists():
                    src.replace(aside.with_name(aside.name + suffix))
            self._last_error = f"{path} was unreadable ({exc}); moved to {aside}"
            log.error("write queue: %s", self._last_error)
            return WriteStore(path)

    def attach(self, send: Sender) -> None:
        """How saved writes go out: the inventory client's own commit, without the queue."""
        self._send = send

    @property
    def depth(self) -> int:
        return self._depth

    async def start(self) -> None:
        """Deliver what an earlier run left, and whatever is saved from now on."""
        if self._last_error is not None:
            self._bus.publish(ErrorRaised(where="tools.write_queue", message=self._last_error))
        self._publish("loaded")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="write-queue")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._store.close()

    async def save(self, write: WriteRequest, key: str, context: CallContext) -> dict[str, Any]:
        """Save one confirmed write (on disk before this returns); the body a commit returns."""
        ctx = {"session_id": context.session_id, "call_id": context.call_id,
               "operator": context.operator}  # fmt: skip
        added = await asyncio.to_thread(self._store.add, key, write.path, write.body, ctx)
        await self._refresh()
        if added:
            log.warning("inventory unreachable: saved %s %s (%d waiting)", write.path, key,
                        self._depth)  # fmt: skip
            self._publish("queued", key=key, path=write.path)
        self._wake.set()
        return {"queued": True, "queue_depth": self._depth, "idempotency_key": key}

    def summary(self) -> dict[str, Any]:
        """What `warehouse-voice status` shows."""
        age = round(time.time() - self._oldest, 1) if self._oldest is not None else None
        return {
            "depth": self._depth,
            "oldest_age_s": age,
            "delivered": self._delivered,
            "rejected": self._rejected,
            "last_error": self._last_error,
        }

    # ---- delivery ------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._retry_min_s
        while True:
            self._wake.clear()
            head = await asyncio.to_thread(self._store.head)
            if head is None:
                await self._wake.wait()
                continue
            try:
                sent = await self._deliver(head)
            except Exception as exc:  # a bug must not stop the queue for good
                log.exception("write queue: delivering %s failed", head.idempotency_key)
                self._last_error = f"{type(exc).__name__}: {exc}"
                sent = False
            if sent:
                delay = self._retry_min_s
                continue
            # Full jitter: a fleet that lost the same server does not return in lock step.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._retry_max_s)

    async def _deliver(self, head: SavedWrite) -> bool:
        """True when `head` left the queue (applied, or handed to a person)."""
        if self._send is None:
            raise RuntimeError("write queue has no sender; attach() the inventory client")
        ctx = CallContext(**head.context)
        if head.refused_code is None:
            await asyncio.to_thread(self._store.attempted, head.seq)
            try:
                await self._send(WriteRequest(head.path, head.body), head.idempotency_key, ctx)
            except InventoryError as err:
                if not refused(err):
                    self._last_error = f"{err.code}: {err.detail}"
                    return False
                log.warning("inventory refused saved write %s: %s", head.idempotency_key, err)
                await asyncio.to_thread(self._store.refused, head.seq, err.code, err.detail)
                return await self._hand_off(head, err.code, err.detail, ctx)
            await asyncio.to_thread(self._store.remove, head.seq)
            self._delivered += 1
            self._last_error = None
            await self._refresh()
            self._publish("delivered", key=head.idempotency_key, path=head.path)
            return True
        return await self._hand_off(head, head.refused_code, head.refused_detail or "", ctx)

    async def _hand_off(self, head: SavedWrite, code: str, detail: str, ctx: CallContext) -> bool:
        assert self._send is not None
        body = head.body
        extra = {k: str(body[src]) for k, src in (("sku", "sku"), ("location", "location"),
                 ("location", "from_location")) if src in body}  # fmt: skip
        summary = (
            f"A write saved on device during an outage was refused on sync ({code}): "
            f"POST {head.path} {_short(body)}. {detail}"
        )[:300]
        ticket: int | None = None
        try:
            answer = await self._send(
                handoff_request("stock_discrepancy", summary, **extra),
                f"{head.idempotency_key}-handoff",
                ctx,
            )
            ticket = answer.get("id")
        except InventoryError as err:
            if not refused(err):
                self._last_error = f"hand-off for {head.idempotency_key}: {err.code}"
                return False  # the refusal is on disk; the ticket is tried again
            log.error("hand-off for refused write %s was refused too: %s",
                      head.idempotency_key, err)  # fmt: skip
        await asyncio.to_thread(self._store.remove, head.seq)
        self._rejected += 1
        self._last_error = f"refused on sync: {code} ({head.idempotency_key})"
        await self._refresh()
        self._publish(
            "rejected", key=head.idempotency_key, path=head.path, code=code, handoff_id=ticket
        )
        return True

    async def _refresh(self) -> None:
        self._depth, self._oldest = await asyncio.to_thread(self._store.tally)

    def _publish(self, change: str, *, key: str = "", path: str = "", code: str = "",
                 handoff_id: int | None = None) -> None:  # fmt: skip
        self._bus.publish(
            WriteQueueChanged(
                change=change,
                depth=self._depth,
                oldest_ts=self._oldest,
                idempotency_key=key,
                path=path,
                code=code,
                handoff_id=handoff_id,
            )
        )


def _short(body: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in body.items() if k != "check_digits")[:160]


class QueueingInventoryClient(InventoryClient):
    """The inventory client, with confirmed writes saved to a `WriteQueue` when the API is away.

    A move's dry run offline is answered from its own arguments, so the worker can still
    have it read back and confirm it; the API checks it for real when it is delivered.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        queue: WriteQueue,
        direct_timeout_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        """`direct_timeout_s`: how long a commit may try the API itself before the write is
        saved instead; keep it under the tool's time limit, so a hanging API still ends in a
        saved write rather than a timed-out tool call."""
        super().__init__(base_url, token, **kwargs)
        self.queue = queue
        self._direct_timeout_s = direct_timeout_s
        queue.attach(self._send_saved)

    async def _send_saved(
        self, write: WriteRequest, key: str, context: CallContext
    ) -> dict[str, Any]:
        return await super().commit(write, idempotency_key=key, context=context)

    async def preview(
        self, write: WriteRequest, context: CallContext | None = None
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._direct_timeout_s):
                return await super().preview(write, context)
        except TimeoutError:
            if write.path != "/moves":
                raise InventoryUnavailable(
                    f"POST {write.path} dry run: no answer in {self._direct_timeout_s:g} s"
                ) from None
        except InventoryError as err:
            if write.path != "/moves" or not unreachable(err):
                raise
        return {"dry_run": True, "offline": True, "sku": write.body.get("sku")}

    async def commit(
        self, write: WriteRequest, *, idempotency_key: str, context: CallContext | None = None
    ) -> dict[str, Any]:
        if write.path in NOT_QUEUED_PATHS:
            return await super().commit(write, idempotency_key=idempotency_key, context=context)
        context = context or CallContext()
        if self.queue.depth:
            return await self.queue.save(write, idempotency_key, context)
        try:
            async with asyncio.timeout(self._direct_timeout_s):
                return await super().commit(write, idempotency_key=idempotency_key, context=context)
        except TimeoutError:
            # It may have been applied: the saved copy's key makes the resend a replay.
            return await self.queue.save(write, idempotency_key, context)
        except InventoryError as err:
            if not unreachable(err):
                raise
            return await self.queue.save(write, idempotency_key, context)
