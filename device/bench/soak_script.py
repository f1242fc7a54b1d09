"""The soak's shift, written down before it runs: what the worker does at which simulated second,
and what the emulated model says and breaks.

Simulated time is the script's own clock: visit `v` starts at `v * visit_s` simulated seconds,
whatever the machine's load. A visit is one push-to-talk session of `TURNS_PER_VISIT` turns
(a question and a follow-up, or a move's read-back and its confirmation), a turn about every
`turn_s` simulated seconds. Faults are placed by visit number, so two runs of the same plan
inject the same faults at the same points of the conversation:

- GoAway on the first turn of the visit that starts each `goaway_every_s`;
- a dropped connection (close 1006 in the middle of a reply) in each simulated hour;
- a speaker error (its file removed, so the next write fails) in each simulated hour;
- a microphone unplugged for `unplug_s` and plugged back, in each simulated hour;
- a confirmed move (one unit, back and forth between two bins) every `write_every` visits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from device.sim.scenario import Scenario, parse_scenario

SKU = "104417"
BINS = ("A-12-03", "A-14-01")
TURNS_PER_VISIT = 2
HOUR_S = 3600.0
DEFAULT_REPLY_CHUNK_MS = 40  # the emulator's own default (device.sim.scenario)
_WORDS = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Move:
    """One confirmed move the worker makes: it must reach the inventory exactly once."""

    number: int
    source: str
    dest: str
    quantity: int = 1


@dataclass(frozen=True)
class Visit:
    """One push-to-talk session: its turns are scenario turns `first_turn` and the next."""

    number: int
    at_s: float  # simulated seconds since the shift started
    first_turn: int
    move: Move | None = None
    goaway: bool = False
    drop: bool = False
    speaker_error: bool = False  # the speaker's file is removed just before this visit
    unplug_before: bool = False  # the microphone is pulled out before this visit...
    replug_at_s: float | None = None  # ...and plugged back at this simulated second


@dataclass
class ShiftPlan:
    hours: float
    turn_s: float = 20.0
    goaway_every_s: float = 600.0
    unplug_s: float = 60.0
    write_every: int = 6  # visits
    visits: list[Visit] = field(default_factory=list)

    @property
    def visit_s(self) -> float:
        return self.turn_s * TURNS_PER_VISIT

    @property
    def moves(self) -> list[Move]:
        return [visit.move for visit in self.visits if visit.move is not None]

    @property
    def turns(self) -> int:
        return len(self.visits) * TURNS_PER_VISIT

    def visits_per_hour(self) -> int:
        return round(HOUR_S / self.visit_s)


def plan_shift(hours: float, *, turn_s: float = 20.0) -> ShiftPlan:
    """The visits of a shift of `hours` simulated hours."""
    plan = ShiftPlan(hours=hours, turn_s=turn_s)
    per_hour = plan.visits_per_hour()
    goaway_every = max(1, round(plan.goaway_every_s / plan.visit_s))
    unplug_visits = max(1, round(plan.unplug_s / plan.visit_s))
    total = round(hours * per_hour)
    moves = 0
    for number in range(total):
        in_hour = number % per_hour
        # Faults sit apart from each other and from the hour's edges, where samples are taken.
        drop = in_hour == per_hour // 3 + 1
        speaker_error = in_hour == per_hour // 2 + 1
        unplug = in_hour == (2 * per_hour) // 3 + 1
        move = None
        if number % plan.write_every == plan.write_every - 1 and not (drop or speaker_error):
            moves += 1
            there = moves % 2 == 1  # odd moves go out, even ones come back: stock never runs out
            source, dest = BINS if there else BINS[::-1]
            move = Move(moves, source, dest)
        at_s = number * plan.visit_s
        plan.visits.append(
            Visit(
                number=number,
                at_s=at_s,
                first_turn=number * TURNS_PER_VISIT,
                move=move,
                goaway=number % goaway_every == 0 and number > 0,
                drop=drop,
                speaker_error=speaker_error,
                unplug_before=unplug,
                replug_at_s=at_s + unplug_visits * plan.visit_s if unplug else None,
            )
        )
    return plan


def _turn(said: str, reply: str, extra: str = "") -> str:
    """One scenario turn; `extra` is its own keys first, then any tables (tool calls)."""
    return f'\n[[turns]]\nuser_transcript = "{said}"\nreply_text = "{reply}"\n{extra}'


def _move_turns(move: Move, chunk: str) -> str:
    args = (
        f'{{ sku = "{SKU}", from_location = "{move.source}", to_location = "{move.dest}", '
        f"quantity = {move.quantity} }}"
    )
    ask = _turn(
        f"Move one from {move.source} to {move.dest}.",
        # The read-back must say what the device will do, or a "confirm" does not count.
        f"Move {_WORDS[move.quantity]} of SKU {SKU} from {move.source} to {move.dest}. "
        "Say confirm, or press the button.",
        chunk
        + f'[[turns.tool_calls]]\nid = "move-{move.number}"\nname = "move_stock"\nargs = {args}\n',
    )
    confirm = _turn(
        "Confirm.",
        "Done.",
        chunk + f'[[turns.tool_calls]]\nid = "move-{move.number}-confirm"\n'
        'name = "confirm_pending_action"\nargs = { decision = "confirm" }\n',
    )
    return ask + confirm


def scenario_text(
    plan: ShiftPlan, speed: float, reply_chunk_ms: int = DEFAULT_REPLY_CHUNK_MS
) -> str:
    """The emulated model's side of the shift: every turn of every visit, in order. Each
    reply is sent in messages of `reply_chunk_ms` of audio."""
    chunk = f"audio_chunk_ms = {reply_chunk_ms}\n"
    parts = [
        'name = "soak"\nprogress = "shared"\n',
        f"speed = {float(speed)!r}\n",
        # The device acts on a GoAway between turns; its deadline is generous in simulated
        # time so that a loaded machine still reconnects before it.
        "goaway_time_left_s = 30.0\n",
    ]
    for visit in plan.visits:
        if visit.move is not None:
            parts.append(_move_turns(visit.move, chunk))
            continue
        first = chunk
        if visit.goaway:
            first += "goaway_after_ms = 0\n"
        if visit.drop:
            first += "close_code = 1006\nclose_after_ms = 300\n"
        parts.append(_turn("Where is SKU 104417?", "Aisle twelve, bay three.", first))
        parts.append(_turn("Thanks.", "You're welcome.", chunk))
    return "".join(parts)


def shift_scenario(
    plan: ShiftPlan, speed: float, base_dir: Path, *, reply_chunk_ms: int = DEFAULT_REPLY_CHUNK_MS
) -> Scenario:
    return parse_scenario(
        scenario_text(plan, speed, reply_chunk_ms), name="soak", base_dir=base_dir
    )
