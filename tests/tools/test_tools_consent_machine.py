"""Random interleavings of everything that can happen around a stock change.

A Hypothesis state machine drives the real dispatcher (its consent rules, its commit path)
with proposals, the model's words, the worker's words, presses, commits and session ends,
in any order and across sessions. The inventory is a recorder: every commit it receives is
checked against what the machine itself fed in, never against the dispatcher's own state:

    a commit happens only after proposal -> a matching read-back by the model -> the
    worker's confirmation, all in one session, and at most once per proposal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from device.events import EventBus, SessionEnded, SessionStarted, Transcript
from device.tools.dispatcher import ToolDispatcher, idempotency_key
from device.tools.inventory_client import CallContext, WriteRequest
from device.tools.speech import number_words

WORKER_CONFIRMS = ["Confirm.", "correct", "yes, confirm please", "That's correct."]
WORKER_OTHER = [
    "is that the correct bin?",
    "yes, but make it fifty",
    "no",
    "hmm, wait",
    "confirm... no, wrong bin",
    "what was that?",
    "confirm the move of 500",
]
MODEL_NOISE = [
    "Say confirm, or press the button.",
    "Confirmed. Done, I moved it.",
    "The label says: confirm the move of five hundred.",
    "correct, confirm, yes",
    "Moving fifty of SKU 104417 from A-12-03 to A-14-01.",
    "Okay.",
]


class RecordingInventory:
    """Stands in for the inventory API: dry runs answer, commits are recorded."""

    def __init__(self) -> None:
        self.commits: list[tuple[str, WriteRequest, CallContext | None]] = []

    async def preview(self, write: WriteRequest, context: CallContext | None = None) -> Any:
        return {"sku": write.body.get("sku"), "before": {}, "after": {}}

    async def commit(
        self, write: WriteRequest, *, idempotency_key: str, context: CallContext | None = None
    ) -> dict[str, Any]:
        self.commits.append((idempotency_key, write, context))
        return {"sku": write.body.get("sku"), "audit_id": len(self.commits)}

    async def aclose(self) -> None:
        return None


@dataclass
class Fed:
    """One thing the machine did, in order."""

    step: int
    kind: str  # propose | model_match | worker_confirm | press | end | other
    session: str
    key: str = ""  # for propose and model_match: the proposal's idempotency key


@dataclass
class History:
    fed: list[Fed] = field(default_factory=list)

    def add(self, kind: str, session: str, key: str = "") -> None:
        self.fed.append(Fed(len(self.fed), kind, session, key))

    def lawful(self, key: str, committed_at: int) -> bool:
        """Proposal -> matching read-back -> worker confirmation, in one live session."""
        proposals = [f for f in self.fed if f.kind == "propose" and f.key == key]
        if len(proposals) != 1:
            return False
        p = proposals[0]
        window = [f for f in self.fed if p.step < f.step < committed_at]
        if any(f.kind == "end" and f.session == p.session for f in window):
            return False
        readbacks = [f.step for f in window if f.kind == "model_match" and f.key == key]
        if not readbacks:
            return False
        return any(
            f.kind in ("worker_confirm", "press")
            and f.session == p.session
            and f.step > min(readbacks)
            for f in window
        )


class ConsentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.bus = EventBus()
        self.inventory = RecordingInventory()
        self.dispatcher = ToolDispatcher(
            bus=self.bus,
            client=self.inventory,  # type: ignore[arg-type]
            enabled=["move_stock"],
            confirm_words=["confirm", "confirmed", "correct"],
            button_confirms=True,
        )
        self.history = History()
        self.sessions = 0
        self.open: str | None = None
        self.ended: list[str] = []
        self.calls = 0
        self.latest: dict[str, tuple[str, int]] = {}  # session -> (key, quantity) proposed last
        self.checked = 0

    def teardown(self) -> None:
        self.dispatcher.close()
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _publish(self, event: Any) -> None:
        async def publish() -> None:
            self.bus.publish(event)

        self._run(publish())

    @rule()
    def start_session(self) -> None:
        if self.open is not None:
            self.end_session()
        self.sessions += 1
        self.open = f"s{self.sessions}"
        self._publish(SessionStarted(session_id=self.open, model="m"))

    @precondition(lambda self: self.open is not None)
    @rule()
    def end_session(self) -> None:
        assert self.open is not None
        self._publish(SessionEnded(session_id=self.open, reason="idle"))
        self.history.add("end", self.open)
        self.ended.append(self.open)
        self.open = None

    def _session(self, old: bool) -> str | None:
        if old and self.ended:
            return self.ended[-1]
        return self.open

    @rule(quantity=st.sampled_from([5, 7, 500]), old=st.booleans())
    def propose(self, quantity: int, old: bool) -> None:
        session = self._session(old)
        if session is None:
            return
        self.calls += 1
        call_id = f"move-{self.calls}"
        args = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
                "quantity": quantity}  # fmt: skip
        result = self._run(
            self.dispatcher.call(session_id=session, call_id=call_id, name="move_stock", args=args)
        )
        if result["status"] == "needs_confirmation":
            key = idempotency_key(session, call_id)
            self.history.add("propose", session, key)
            self.latest[session] = (key, quantity)

    @rule(old=st.booleans(), form=st.sampled_from(["words", "digits"]))
    def model_reads_back(self, old: bool, form: str) -> None:
        session = self._session(old)
        if session is None or session not in self.latest:
            return
        key, quantity = self.latest[session]
        amount = number_words(quantity) if form == "words" else str(quantity)
        self._publish(
            Transcript(
                session_id=session,
                role="model",
                text=f"Move {amount} of SKU 104417 from A twelve oh three to A-14-01.",
            )
        )
        self.history.add("model_match", session, key)

    @rule(text=st.sampled_from(MODEL_NOISE), old=st.booleans())
    def model_says_something_else(self, text: str, old: bool) -> None:
        session = self._session(old)
        if session is not None:
            self._publish(Transcript(session_id=session, role="model", text=text))
            self.history.add("other", session)

    @rule(text=st.sampled_from(WORKER_CONFIRMS + WORKER_OTHER), old=st.booleans())
    def worker_says(self, text: str, old: bool) -> None:
        session = self._session(old)
        if session is None:
            return
        self._publish(Transcript(session_id=session, role="user", text=text))
        self.history.add("worker_confirm" if text in WORKER_CONFIRMS else "other", session)

    @rule(source=st.sampled_from(["button", "control"]))
    def press(self, source: str) -> None:
        if source == "button":
            from device.events import ButtonEvent

            self._publish(ButtonEvent(action="press", source="gpio"))
        else:
            self.dispatcher.confirm("control")
        if self.open is not None:
            self.history.add("press", self.open)

    @rule(old=st.booleans(), by_appliance=st.booleans())
    def commit(self, old: bool, by_appliance: bool) -> None:
        session = self._session(old)
        if by_appliance:
            self._run(self.dispatcher.commit_pending())
        elif session is not None:
            self.calls += 1
            self._run(
                self.dispatcher.call(
                    session_id=session,
                    call_id=f"commit-{self.calls}",
                    name="confirm_pending_action",
                    args={"decision": "confirm"},
                )
            )
        self.history.add("commit", session or "")

    @invariant()
    def every_commit_was_agreed_to_once(self) -> None:
        # A hand-off (two wrong read-backs) is a call for a person, not a stock change.
        keys = [key for key, write, _ in self.inventory.commits if write.path != "/handoffs"]
        assert len(keys) == len(set(keys)), f"a proposal was committed twice: {keys}"
        now = len(self.history.fed)
        for key in keys[self.checked :]:
            assert self.history.lawful(key, now), f"commit of {key} without agreement"
        self.checked = len(keys)


ConsentMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_consent_state_machine = ConsentMachine.TestCase


def test_the_machine_can_commit() -> None:
    """The invariant is not vacuous: the lawful path does commit, exactly once."""
    machine = ConsentMachine()
    try:
        machine.start_session()
        machine.propose(5, old=False)
        machine.model_reads_back(old=False, form="words")
        machine.worker_says("Confirm.", old=False)
        machine.commit(old=False, by_appliance=False)
        machine.commit(old=False, by_appliance=False)
        machine.every_commit_was_agreed_to_once()
        assert [w.path for _, w, _ in machine.inventory.commits] == ["/moves"]
    finally:
        machine.teardown()
