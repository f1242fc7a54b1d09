"""The appliance's states and every transition between them, on one screen.

Each row says from where to where, under which guard, and why. `StateMachine.go` is the only
way the appliance changes state: it checks the row, logs and publishes the change, and treats a
change the table does not allow as a bug: it is logged, published as an error and recorded in
`ILLEGAL` (the test suite fails any test that leaves an entry there); with `strict` it raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from device.events import ErrorRaised, EventBus, State, StateChanged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """What the guards may look at."""

    session_open: bool = False
    faults: int = 0  # parts (mic, speaker, ...) that are not working


Guard = Callable[[Facts], bool]


def always(_: Facts) -> bool:
    return True


def in_session(facts: Facts) -> bool:
    return facts.session_open


def no_session(facts: Facts) -> bool:
    return not facts.session_open


def faulty(facts: Facts) -> bool:
    return not facts.session_open and facts.faults > 0


def all_well(facts: Facts) -> bool:
    return not facts.session_open and facts.faults == 0


IDL, LIS, CON, CNV, CLO, ERR, OFF = (
    State.IDLE,
    State.LISTENING,
    State.CONNECTING,
    State.CONVERSING,
    State.CLOSING,
    State.ERROR,
    State.OFFLINE,
)

# fmt: off
TABLE: tuple[tuple[State, State, Guard, str], ...] = (
    # from to   guard       why
    (IDL, IDL, no_session, "the appliance started"),
    (IDL, LIS, in_session, "a press, a tap or the wake word opened a session"),
    (ERR, LIS, in_session, "a new session after an error (the worker is trying again)"),
    (OFF, LIS, in_session, "a new attempt while offline"),
    (LIS, CON, in_session, "the session connects"),
    (CON, CNV, in_session, "the link is up"),
    (CNV, CON, in_session, "the link dropped: resuming"),
    (LIS, CLO, no_session, "the session ended before it connected"),
    (CON, CLO, no_session, "the session ended while connecting"),
    (CNV, CLO, no_session, "the session ended"),
    (CLO, IDL, no_session, "a clean end"),
    (CLO, ERR, no_session, "a fatal error: it shows until the next session"),
    (CLO, OFF, no_session, "the Live endpoint is unreachable"),
    (OFF, IDL, all_well,   "the Live endpoint answers again"),
    (IDL, ERR, faulty,     "a part (mic, speaker, ...) stopped working"),
    (OFF, ERR, faulty,     "a part stopped working while offline"),
    (ERR, ERR, faulty,     "another part's fault, or a new reason"),
    (ERR, IDL, all_well,   "every part works again"),
)
# fmt: on

ALLOWED: dict[tuple[State, State], tuple[Guard, str]] = {
    (src, dst): (guard, why) for src, dst, guard, why in TABLE
}

# Illegal transitions seen in this process (tests check that it stays empty).
ILLEGAL: list[str] = []


class IllegalTransition(RuntimeError):
    pass


class StateMachine:
    def __init__(self, bus: EventBus, *, strict: bool = False) -> None:
        self.bus = bus
        self.strict = strict
        self.state = State.IDLE

    def allowed(self, to: State, facts: Facts) -> bool:
        row = ALLOWED.get((self.state, to))
        return row is not None and row[0](facts)

    def go(self, to: State, reason: str, facts: Facts) -> bool:
        """Move to `to` if the table allows it now; an illegal move is recorded as a bug."""
        row = ALLOWED.get((self.state, to))
        if row is None or not row[0](facts):
            why = "no such transition" if row is None else f"guard {row[0].__name__} refused"
            message = f"illegal transition {self.state.value} -> {to.value} ({reason}): {why}"
            ILLEGAL.append(message)
            log.error("bug: %s", message)
            self.bus.publish(ErrorRaised(where="state", message=message))
            if self.strict:
                raise IllegalTransition(message)
            return False
        previous, self.state = self.state, to
        log.info("state %s -> %s: %s", previous.value, to.value, reason)
        self.bus.publish(StateChanged(state=to, previous=previous, reason=reason))
        return True
