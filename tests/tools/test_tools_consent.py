"""The consent rules on their own: read-back checks, short answers, and the one-session life.

These drive `Consent` and `Consents` directly with transcripts and presses; the dispatcher
tests and the live tests drive the same object through real tool calls.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.events import (
    ButtonEvent,
    ConfirmationIgnored,
    ConfirmationResolved,
    Event,
    EventBus,
    SessionEnded,
    SessionStarted,
    Transcript,
)
from device.tools.confirmation import Consents
from device.tools.consent import (
    Answer,
    Change,
    PendingAction,
    ReadBack,
    Stage,
    check_readback,
    classify_answer,
    phrases,
)
from device.tools.inventory_client import move_request

MOVE = Change("move_stock", 5, "104417", "A-12-03", "A-14-01")
BIG = Change("move_stock", 500, "104417", "A-12-03", "A-14-01")
OWN = "Move five of SKU 104417 from A-12-03 to A-14-01."
CONFIRM = phrases(["confirm", "confirmed", "correct"])


@pytest.mark.parametrize(
    ("said", "change", "verdict"),
    [
        (OWN + " Say confirm, or press the button.", MOVE, ReadBack.MATCH),
        ("Moving five of one zero four four one seven.", MOVE, ReadBack.MATCH),
        ("Five from A twelve oh three to A fourteen oh one, right?", MOVE, ReadBack.MATCH),
        ("Five units from aisle A, bay twelve, level three to A-14-01.", MOVE, ReadBack.MATCH),
        ("Move five hundred of SKU 104417 from A twelve oh three.", BIG, ReadBack.MATCH),
        ("Moving 500 of 104417.", BIG, ReadBack.MATCH),
        ("Moving fifty of SKU 104417 from A-12-03 to A-14-01.", MOVE, ReadBack.MISS),
        ("Moving fifty of SKU 104417 from A-12-03 to A-14-01.", BIG, ReadBack.MISS),
        ("Move five hundred of SKU 104417.", MOVE, ReadBack.MISS),
        ("Moving five, I mean fifty, of 104417.", MOVE, ReadBack.MISS),
        ("Moving five to A-14-01.", MOVE, ReadBack.MISS),  # only one of the two bins
        ("Move five of SKU 104418 from A-12-03 to A-14-01.", MOVE, ReadBack.MISS),
        ("Say confirm, or press the button.", MOVE, ReadBack.NEUTRAL),
        ("Confirmed. Done.", MOVE, ReadBack.NEUTRAL),
    ],
)
def test_a_read_back_must_say_the_quantity_and_the_sku_or_bins(
    said: str, change: Change, verdict: ReadBack
) -> None:
    own = OWN if change is MOVE else OWN.replace("five", "five hundred")
    assert check_readback(said, change, own) == verdict


@pytest.mark.parametrize(
    ("said", "verdict"),
    [
        # The transcript runs ahead of the speaker: all of the words, but not all were heard.
        (OWN + " Say confirm, or press the button.", ReadBack.NEUTRAL),
        ("Move five of", ReadBack.NEUTRAL),
        # Cut inside a code or a number: what was said of it so far is no wrong number.
        ("Move five of SKU 104417 from A-12", ReadBack.NEUTRAL),
        ("Move five of SKU 104417 from aisle A, bay twelve", ReadBack.NEUTRAL),
        ("Move five of one zero four four", ReadBack.NEUTRAL),
        ("Moving fifty of", ReadBack.MISS),
        ("Moving fifty.", ReadBack.MISS),
        ("Move five of SKU 104418 from", ReadBack.MISS),
    ],
)
def test_a_read_back_cut_short_never_reads_back_and_misses_only_on_a_wrong_number(
    said: str, verdict: ReadBack
) -> None:
    assert check_readback(said, MOVE, OWN, cut=True) == verdict


@pytest.mark.parametrize("said", ["Move five", "Move five hun", "Moving five hundred of 1044"])
def test_a_quantity_cut_short_is_not_a_wrong_one(said: str) -> None:
    assert check_readback(said, BIG, OWN.replace("five", "five hundred"), cut=True) == (
        ReadBack.NEUTRAL
    )


def test_numbers_of_the_devices_own_read_back_are_allowed() -> None:
    count = Change("record_count", 5, "104417", "A-14-01")
    own = "Count of SKU 104417 at A-14-01: five. The system shows zero, so five more."
    assert check_readback("Count five of 104417 at A-14-01, zero before.", count, own) == (
        ReadBack.MATCH
    )
    pick = Change("confirm_pick", 2, "104417", "A-12-03", task_id="P0001")
    own = "Asked for five, you said two. That's a short pick of two from A-12-03."
    assert check_readback(own, pick, own) == ReadBack.MATCH
    assert check_readback("Asked for five, you said two.", pick, own) == ReadBack.MISS


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("Confirm.", Answer.CONFIRM),
        ("yes, confirm please", Answer.CONFIRM),
        ("That's correct.", Answer.CONFIRM),
        ("Confirm, five.", Answer.CONFIRM),
        ("is that the correct bin?", Answer.UNCLEAR),
        ("Is that correct", Answer.UNCLEAR),
        ("correct bin is on the left", Answer.UNCLEAR),
        ("yes", Answer.UNCLEAR),
        ("yes, but make it fifty", Answer.DECLINE),
        ("confirm fifty", Answer.DECLINE),
        ("confirm to A-15-02", Answer.DECLINE),
        ("that's not correct", Answer.DECLINE),
        ("no, confirm later", Answer.DECLINE),
        ("oh, confirm", Answer.CONFIRM),
    ],
)
def test_a_spoken_confirmation_is_a_short_answer(said: str, answer: Answer) -> None:
    assert classify_answer(said, MOVE, CONFIRM) == answer


def test_confirm_words_with_a_negation_are_refused() -> None:
    with pytest.raises(ValueError, match="negation"):
        phrases(["not now"])


def action(session: str, call: str = "c1", change: Change = MOVE) -> PendingAction:
    return PendingAction(
        session_id=session,
        call_id=call,
        tool=change.tool,
        write=move_request("104417", "A-12-03", "A-14-01", change.quantity),
        args={},
        readback=OWN,
        idempotency_key=f"k-{session}-{call}",
        change=change,
    )


def run(bus: EventBus) -> tuple[Consents, list[Event]]:
    seen: list[Event] = []
    bus.subscribe(seen.append)
    return Consents(bus, ["confirm", "correct"], button_confirms=True), seen


def said(bus: EventBus, session: str, role: str, text: str, *, cut: bool = False) -> None:
    bus.publish(Transcript(session_id=session, role=role, text=text, cut=cut))


def test_a_press_before_the_read_back_is_ignored_and_reported() -> None:
    bus = EventBus()
    consents, seen = run(bus)
    bus.publish(SessionStarted(session_id="s1", model="m"))
    consents.propose(action("s1"))
    bus.publish(ButtonEvent(action="press", source="gpio"))
    assert not consents.confirm("control")
    ignored = [(e.source, e.reason) for e in seen if isinstance(e, ConfirmationIgnored)]
    assert [s for s, _ in ignored] == ["button:gpio", "control"]
    said(bus, "s1", "model", OWN)
    consent = consents.of("s1")
    assert consent is not None and consent.commit_ready() is None  # the early press is gone
    assert consents.confirm("control")
    assert consent.commit_ready() is not None


def test_two_wrong_read_backs_hand_off_to_a_person() -> None:
    bus = EventBus()
    handed: list[PendingAction] = []
    consents = Consents(bus, ["confirm"], on_handoff=handed.append)
    consents.propose(action("s1"))
    said(bus, "s1", "model", "Moving fifty of 104417 from A-12-03 to A-14-01.")
    consent = consents.of("s1")
    assert consent is not None and consent.pending is not None
    assert consent.pending.misses == 1
    said(bus, "s1", "model", OWN)  # right this time
    said(bus, "s1", "user", "confirm")
    said(bus, "s1", "model", "Okay, moving fifty.")  # and wrong again: the confirm is void
    assert consent.pending is None and consent.commit_ready() is None
    assert [a.stage for a in handed] == [Stage.HANDED_OFF]


def test_read_backs_the_worker_cuts_short_are_neither_heard_nor_misses() -> None:
    bus = EventBus()
    handed: list[PendingAction] = []
    consents = Consents(bus, ["confirm"], on_handoff=handed.append)
    consents.propose(action("s1"))
    consent = consents.of("s1")
    assert consent is not None
    for _ in range(3):  # an impatient worker talks over the read-back, three times
        said(bus, "s1", "model", OWN, cut=True)
        said(bus, "s1", "user", "confirm")
    pending = consent.pending
    assert pending is not None and pending.misses == 0 and pending.stage == Stage.PROPOSED
    assert consent.commit_ready() is None and handed == []
    said(bus, "s1", "model", OWN)  # heard to its end
    said(bus, "s1", "model", "Move five of", cut=True)  # a repeat cut short takes nothing away
    said(bus, "s1", "user", "confirm")
    assert consent.commit_ready() is pending
    said(bus, "s1", "model", "Moving fifty of", cut=True)  # but a wrong number voids it
    assert consent.commit_ready() is None and pending.misses == 1


def test_a_consent_dies_with_its_session_and_ignores_other_sessions() -> None:
    bus = EventBus()
    consents, seen = run(bus)
    bus.publish(SessionStarted(session_id="s1", model="m"))
    consents.propose(action("s1"))
    said(bus, "s2", "model", OWN)  # another session's words
    said(bus, "s2", "user", "confirm")
    consent = consents.of("s1")
    assert consent is not None and consent.pending is not None
    assert consent.pending.stage == Stage.PROPOSED
    said(bus, "s1", "model", OWN)
    bus.publish(SessionEnded(session_id="s1", reason="idle"))
    bus.publish(SessionStarted(session_id="s2", model="m"))
    assert not consents.confirm("control")
    assert consents.of("s1") is None  # never again
    new = consents.of("s2")
    assert new is not None and new.pending is None and new.commit_ready() is None
    outcomes = [e.outcome for e in seen if isinstance(e, ConfirmationResolved)]
    assert outcomes == ["expired"]


MODEL_WORDS = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.sampled_from(
            [OWN, "Confirm.", "confirmed, done", "The worker said confirm.", "correct",
             "yes", "Committing now.", 'label: "confirm the move of 500"']
        ),
    ),
    max_size=8,
)  # fmt: skip


@given(words=MODEL_WORDS, presses_first=st.booleans())
def test_nothing_the_model_says_can_confirm(words: list[str], presses_first: bool) -> None:
    """The commit never depends on the model's words: without the worker, nothing commits."""
    bus = EventBus()
    consents = Consents(bus, ["confirm", "confirmed", "correct"])
    consents.propose(action("s1"))
    if presses_first:
        consents.confirm("button")  # before any read-back: ignored
    for text in words:
        said(bus, "s1", "model", text)
    consent = consents.of("s1")
    assert consent is not None and consent.commit_ready() is None
