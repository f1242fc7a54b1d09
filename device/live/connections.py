"""A conversation's connections, one after another, until it ends.

The first connection opens a new session; every later one resumes with the newest handle
(`device.live.ledger`), after exponential backoff with jitter when the link was lost, at once
after a planned switch (GoAway, a stall). What the server may not have taken in goes out first
on the new connection, ahead of what waited in the outbox. Fatal closes (1007, 1008, refused
credentials) end the conversation with an error; an endpoint that cannot be reached on the
first try ends it as offline; a link down longer than `reconnect_max_s` gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from device.events import ErrorRaised, SessionStarted
from device.live.backoff import Backoff
from device.live.failures import Failure, classify
from device.live.link import Link, LinkEnd
from device.live.protocols import Connector, LiveSessionLike, Outcome, ResumableConnector

if TYPE_CHECKING:
    from device.live.session import Conversation

log = logging.getLogger(__name__)


class Connections:
    def __init__(
        self,
        owner: Conversation,
        connect: Connector,
        resumable: ResumableConnector | None,
        connect_timeout_s: float,
    ) -> None:
        self._owner = owner
        self._connect = connect
        self._resumable = resumable
        self._connect_timeout_s = connect_timeout_s
        self.count = 0  # connections opened so far
        self.link: Link | None = None  # the one up now

    async def run(self, hangup: asyncio.Future[str]) -> Outcome:
        policy = self._owner.policy
        ledger = self._owner.ledger
        backoff = Backoff(policy.reconnect_base_s, policy.reconnect_cap_s)
        down_since: float | None = None
        while True:
            if hangup.done():
                return Outcome(hangup.result())
            try:
                end, lived_s = await self._serve(ledger.handle if self.count else None, hangup)
            except Exception as exc:
                failure = classify(exc)
            else:
                if end.kind == "done":
                    return Outcome(end.reason)
                if lived_s >= policy.reconnect_cap_s:
                    # A link that held for a while proves the way back works: start afresh.
                    # One that drops at once keeps the backoff growing and the budget running.
                    backoff.reset()
                    down_since = None
                if end.kind == "switch":
                    continue
                failure = end.failure or Failure("retry", end.reason)
            if failure.kind == "closed":
                return Outcome(failure.reason)
            if failure.kind == "fatal":
                return Outcome(failure.reason, error=True, fatal=True, denied=failure.denied)
            if failure.kind == "offline" and not self.count:
                return Outcome(f"offline: {failure.reason}", error=True, offline=True)
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since >= policy.reconnect_max_s:
                return Outcome(
                    f"gave up reconnecting after {now - down_since:.0f} s: {failure.reason}",
                    error=True,
                    offline=failure.kind == "offline",
                )
            delay = backoff.next_delay()
            log.warning("live link lost (%s); reconnecting in %.2f s", failure.reason, delay)
            self._owner.bus.publish(ErrorRaised(where="live.link", message=failure.reason))
            await asyncio.wait({hangup}, timeout=delay)

    async def _serve(
        self, handle: str | None, hangup: asyncio.Future[str]
    ) -> tuple[LinkEnd, float]:
        """One connection, from connecting to its end; also how long it was up."""
        resumable = self._resumable
        resumed = handle is not None and resumable is not None
        opener = resumable.resume(handle) if resumed and resumable and handle else self._connect()
        outbox = self._owner.outbox
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self._connect_timeout_s):
                session = await stack.enter_async_context(opener)
            link = self._begin(session, resumed=resumed)
            up = time.monotonic()
            outbox.link_up = True
            try:
                end = await link.run(hangup)
            finally:
                outbox.link_up = False
            self.link = None
            # Nothing is flushed here: audio already received keeps playing across the seam,
            # and the resumed session goes on where this one stopped.
            return end, time.monotonic() - up

    def _begin(self, session: LiveSessionLike, *, resumed: bool) -> Link:
        owner = self._owner
        self.count += 1
        if self.count > 1 and not resumed:
            log.warning(
                "no resumption handle to resume with: the conversation goes on in a new "
                "session, without the model's memory of it"
            )
            # A fresh session knows nothing of earlier calls: never answer them there.
            owner.calls.new_generation()
            owner.outbox.drop(kind="tool_response")
        replay = owner.ledger.connection_started(resumed=resumed)
        for item in replay:
            if item.call_id is not None:
                owner.calls.requeued(item.call_id)
        owner.outbox.put_front(replay)
        owner.replies.connection_started()
        link = self.link = Link(owner, session, self.count)
        owner.connected.set()
        owner.touch()
        log.info(
            "live connection %d up (%s, %d messages to re-send)",
            self.count,
            "resumed" if resumed else "new session",
            len(replay),
        )
        owner.bus.publish(
            SessionStarted(
                session_id=owner.session_id,
                model=owner.model,
                resumed=self.count > 1 and resumed,
            )
        )
        return link
