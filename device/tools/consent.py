"""The worker's consent to one stock change: every confirmation rule, in one object.

A `Consent` belongs to one Live session and holds at most one proposed write (`PendingAction`):
its session, its call id, the exact change, the read-back, and its stage:

    proposed -> read_back -> confirmed -> committed
         \\            \\-> declined | expired | cancelled (| failed, handed_off)

- proposed -> read_back: the model's own words (its output transcript) said the change's
  quantity and its SKU or bins, and no other number (`check_readback`), and the speaker
  played all of them: a reply the worker cut short, or one still playing, is no read-back
  (the service sends a reply faster than it plays, so its transcript runs ahead of what was
  heard). Words that disagree are a miss: they void an earlier read-back, and after
  `max_misses` the change is dropped and a person is called.
- read_back -> confirmed: the worker's short answer (`classify_answer`), or a press (button,
  control socket) *after* the read-back. A press before it is ignored and reported.
- confirmed -> committed: only `commit_ready()` hands the action out, once.

Nothing the model says can confirm: only `worker_said` and `press` do. The consent dies with
its session (`end`), and it never sees another session's words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from device.tools import spoken
from device.tools.inventory_client import WriteRequest

log = logging.getLogger(__name__)

# Any of these in the worker's answer makes it a "no" ("that's not correct", "no, confirm
# later"); the model must propose again.
NEGATIONS = frozenset(
    ("no", "not", "nope", "dont", "never", "cancel", "stop", "wait", "wrong", "incorrect", "hold",
     "nah", "negative")
)  # fmt: skip
# An answer that changes the request ("yes, but make it fifty") is a "no" to this one.
AMENDMENTS = frozenset(("but", "instead", "make", "change", "actually", "only", "except", "rather"))
QUESTION_WORDS = frozenset(
    ("is", "are", "was", "what", "which", "where", "why", "how", "who", "did", "do", "does",
     "can", "could", "should", "would", "will", "whats", "wheres", "isnt")
)  # fmt: skip
# Words a short "yes" may carry besides the confirm word itself.
FILLERS = frozenset(
    ("yes", "yeah", "yep", "yup", "ok", "okay", "please", "thats", "that", "its", "it", "is",
     "right", "sure", "go", "ahead", "uh", "um", "er", "thanks", "thank", "you", "alright",
     "all", "good", "fine", "so", "and", "then", "now", "i", "im", "the", "move", "count", "pick",
     "oh", "well")
)  # fmt: skip
MAX_ANSWER_WORDS = 8


class Stage(StrEnum):
    PROPOSED = "proposed"
    READ_BACK = "read_back"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    HANDED_OFF = "handed_off"
    REPLACED = "replaced"
    COMMITTED = "committed"


OPEN_STAGES = (Stage.PROPOSED, Stage.READ_BACK, Stage.CONFIRMED)


@dataclass(frozen=True)
class Change:
    """Exactly what a write will do, in the terms a worker hears."""

    tool: str
    quantity: int
    sku: str | None = None
    from_location: str | None = None
    to_location: str | None = None
    task_id: str | None = None

    @property
    def places(self) -> tuple[str, ...]:
        return tuple(p for p in (self.from_location, self.to_location) if p)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c for c in (self.sku, *self.places, self.task_id) if c)


@dataclass
class PendingAction:
    session_id: str
    call_id: str  # of the model's original write call; the idempotency key derives from it
    tool: str
    write: WriteRequest
    args: dict[str, object]
    readback: str  # the device's own read-back sentence, as the tool result gave it
    idempotency_key: str
    change: Change
    created: float = field(default_factory=time.monotonic)
    expires: float = 0.0
    stage: Stage = Stage.PROPOSED
    readback_heard: str = ""  # the model's words that read it back
    misses: int = 0
    confirmed_by: str | None = None
    heard: list[str] = field(default_factory=list)  # the worker's answer so far

    @property
    def confirmed(self) -> bool:
        return self.stage == Stage.CONFIRMED


class ReadBack(StrEnum):
    MATCH = "match"
    MISS = "miss"  # numbers or codes that do not agree with the change
    NEUTRAL = "neutral"  # no number or code at all ("Say confirm, or press the button.")


def _spans(toks: list[spoken.Token], codes: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    return {code: spoken.find_code(toks, code) for code in codes}


def check_readback(
    said: str, change: Change, device_readback: str = "", *, cut: bool = False
) -> ReadBack:
    """Did the model's words read back this change?

    They must say the quantity and the SKU or every bin, and no number the device's own
    read-back does not hold ("moving fifty" for a change of five is a miss). Words of a reply
    `cut` short were not all heard: they never read a change back, and are a miss only when
    they hold such a number before the point where the cut may have split one (a worker who
    talks over a read-back has not been read a wrong change).
    """
    toks = spoken.tokens(said)
    if cut:
        toks = spoken.before_cut(toks)
    found = _spans(toks, change.codes)
    spans = [s for ss in found.values() for s in ss]
    numbers = spoken.numbers_outside(toks, spans)
    if not numbers and not spans:
        return ReadBack.NEUTRAL
    own = spoken.tokens(device_readback)
    allowed = {change.quantity, *spoken.numbers_outside(own, [
        s for ss in _spans(own, change.codes).values() for s in ss
    ])}  # fmt: skip
    names_it = bool(change.sku and found[change.sku]) or (
        bool(change.places) and all(found[p] for p in change.places)
    )
    if not set(numbers) <= allowed:
        return ReadBack.MISS
    if cut:
        return ReadBack.NEUTRAL
    return ReadBack.MATCH if change.quantity in numbers and names_it else ReadBack.MISS


class Answer(StrEnum):
    CONFIRM = "confirm"
    DECLINE = "decline"
    UNCLEAR = "unclear"


def classify_answer(said: str, change: Change, confirm_phrases: Sequence[Sequence[str]]) -> Answer:
    """The worker's answer to a read-back. A confirmation is short: a confirm word, no
    negation, no question, no other number or place."""
    toks = spoken.tokens(said)
    spans = [s for ss in _spans(toks, change.codes).values() for s in ss]
    words = spoken.words_outside(toks, spans)
    numbers = spoken.numbers_outside(toks, spans)
    if set(words) & (NEGATIONS | AMENDMENTS) or any(n != change.quantity for n in numbers):
        return Answer.DECLINE
    if not words:
        return Answer.UNCLEAR
    if words[0] in QUESTION_WORDS or "?" in said or len(words) > MAX_ANSWER_WORDS:
        return Answer.UNCLEAR
    rest = list(words)
    matched = False
    for phrase in sorted(confirm_phrases, key=len, reverse=True):
        n = len(phrase)
        i = 0
        while i + n <= len(rest):
            if rest[i : i + n] == list(phrase):
                del rest[i : i + n]
                matched = True
            else:
                i += 1
    if matched and all(w in FILLERS for w in rest):
        return Answer.CONFIRM
    return Answer.UNCLEAR


def phrases(confirm_words: Sequence[str]) -> list[list[str]]:
    """Confirm words as word lists; refuses empty ones and ones that hold a negation."""
    out = [spoken.words_outside(spoken.tokens(w), []) for w in confirm_words]
    if not out or not all(out):
        raise ValueError(
            f"confirm_words must be non-empty words, e.g. ['confirm']; got {list(confirm_words)}"
        )
    clash = [w for w, p in zip(confirm_words, out, strict=True) if set(p) & NEGATIONS]
    if clash:
        raise ValueError(f"confirm_words {clash} contain a negation and could never confirm")
    return out


@dataclass(frozen=True)
class Rules:
    confirm_phrases: tuple[tuple[str, ...], ...]
    ttl_s: float = 120.0
    max_misses: int = 2

    @classmethod
    def from_words(cls, confirm_words: Sequence[str], **kw: float) -> Rules:
        return cls(tuple(tuple(p) for p in phrases(confirm_words)), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Note:
    """Something the consent did, for the bus: see `device.tools.confirmation`."""

    what: str  # requested | resolved | ignored | readback
    action: PendingAction
    outcome: str = ""
    source: str = ""
    detail: str = ""


class Consent:
    """One Live session's consent. `notify` receives every `Note` (for events and logs)."""

    def __init__(
        self,
        session_id: str,
        rules: Rules,
        notify: Callable[[Note], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = session_id
        self._rules = rules
        self._notify = notify
        self._clock = clock
        self._action: PendingAction | None = None
        self.last_closed: PendingAction | None = None
        self.ended = False

    @property
    def pending(self) -> PendingAction | None:
        action = self._action
        if action is not None and self._clock() > action.expires:
            self._close(Stage.EXPIRED, "ttl")
            return None
        return action

    def propose(self, action: PendingAction) -> None:
        if self.ended or action.session_id != self.session_id:
            raise ValueError(f"session {action.session_id} cannot propose in {self.session_id}")
        if self._action is not None:
            self._close(Stage.REPLACED, "model")
        action.created = self._clock()
        action.expires = action.created + self._rules.ttl_s
        self._action = action
        self._notify(Note("requested", action))

    def model_said(self, text: str, *, cut: bool = False) -> None:
        """The model's words, published once the worker heard them (`cut`: in part)."""
        action = self.pending
        if action is None:
            return
        verdict = check_readback(text, action.change, action.readback, cut=cut)
        action.heard.clear()  # the worker's answer starts after this
        if verdict == ReadBack.NEUTRAL:
            return
        if verdict == ReadBack.MATCH:
            action.readback_heard = text
            if action.stage == Stage.PROPOSED:
                action.stage = Stage.READ_BACK
            self._notify(Note("readback", action, "match", "model", text))
            return
        action.misses += 1
        self._notify(Note("readback", action, "miss", "model", text))
        if action.stage == Stage.CONFIRMED:
            self._notify(Note("resolved", action, "revoked", "model"))
        action.stage, action.confirmed_by, action.readback_heard = Stage.PROPOSED, None, ""
        if action.misses >= self._rules.max_misses:
            self._close(Stage.HANDED_OFF, "model")

    def worker_said(self, text: str) -> None:
        action = self.pending
        if action is None:
            return
        if action.stage == Stage.PROPOSED:
            answer = classify_answer(text, action.change, self._rules.confirm_phrases)
            if answer == Answer.CONFIRM:
                self._ignored(action, "voice", "said before a matching read-back")
            return
        action.heard.append(text)
        # Transcription comes in fragments that may or may not carry their own spaces.
        answers = {
            classify_answer(joined, action.change, self._rules.confirm_phrases)
            for joined in (" ".join(action.heard), "".join(action.heard))
        }
        if Answer.DECLINE in answers:
            self._close(Stage.DECLINED, "voice")
        elif Answer.CONFIRM in answers:
            self._confirm(action, "voice")
        elif action.stage == Stage.CONFIRMED and action.confirmed_by == "voice":
            # "Correct" and then more words: not a short answer after all.
            action.stage, action.confirmed_by = Stage.READ_BACK, None
            self._notify(Note("resolved", action, "revoked", "voice"))

    def press(self, source: str, at: float | None = None) -> bool:
        """A confirm by button, control socket or the appliance; counts only after the
        read-back. False (and a `confirmation_ignored` event) otherwise."""
        action = self.pending
        if action is None:
            return False
        if at is not None and at <= action.created:
            return False  # the press that started the request, not an answer to it
        if action.stage == Stage.PROPOSED:
            self._ignored(action, source, "before a matching read-back")
            return False
        self._confirm(action, source)
        return True

    def commit_ready(self) -> PendingAction | None:
        """The action, if the worker confirmed it and it may be committed now."""
        action = self.pending
        return action if action is not None and action.stage == Stage.CONFIRMED else None

    def finish(self, action: PendingAction, stage: Stage, source: str = "") -> None:
        """Close `action` (committed, failed, cancelled) if it is still this consent's."""
        if action is self._action:
            self._close(stage, source)
        else:
            action.stage = stage
            self._notify(Note("resolved", action, stage.value, source))

    def cancel(self, source: str, stage: Stage = Stage.CANCELLED) -> PendingAction | None:
        return self._close(stage, source) if self.pending is not None else None

    def end(self) -> None:
        """The session is over: nothing it proposed can be confirmed or committed any more."""
        self.ended = True
        if self._action is not None:
            self._close(Stage.EXPIRED, "session ended")

    def _confirm(self, action: PendingAction, source: str) -> None:
        if action.stage != Stage.CONFIRMED:
            action.stage, action.confirmed_by = Stage.CONFIRMED, source
            log.info("worker confirmed %s (%s) by %s", action.tool, action.call_id, source)
            self._notify(Note("resolved", action, "confirmed", source))

    def _ignored(self, action: PendingAction, source: str, why: str) -> None:
        log.info("confirm by %s ignored for %s (%s): %s", source, action.tool, action.call_id, why)
        self._notify(Note("ignored", action, "", source, why))

    def _close(self, stage: Stage, source: str) -> PendingAction | None:
        action, self._action = self._action, None
        if action is not None:
            action.stage = stage
            self.last_closed = action
            self._notify(Note("resolved", action, stage.value, source))
        return action
