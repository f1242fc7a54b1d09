"""Can this panel tell every state apart? What each state looks like on the pins, and defaults
for panels that cannot show the RGB colours.

A state's look is what its pins do over one cycle: the frames the driver writes, projected onto
the LEDs that exist, with on/off panels reduced to lit or dark, runs of equal frames merged and
the cycle turned to a canonical start. Two states with the same look are the same to a worker,
so `config check` refuses such a panel and names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from device.panel.patterns import DEFAULT_PATTERNS, NAMED_COLORS, Color, Effect, Pattern, render
from device.panel.state import PanelState

CHANNELS = ("red", "green", "blue")

Look = tuple[tuple[tuple[float, ...], int], ...]

# For panels without full colour (discrete LEDs, or no PWM): every state gets its own rhythm,
# so even one on/off LED tells them apart; the colour is a bonus where that LED exists.
RHYTHMS: Mapping[PanelState, tuple[str, Effect, float, float]] = {
    PanelState.IDLE: ("green", Effect.BLINK, 0.05, 2.95),  # a heartbeat: on, and idle
    PanelState.WAKE: ("white", Effect.BLINK, 0.05, 0.05),  # a flicker for the wake flash
    PanelState.LISTENING: ("blue", Effect.SOLID, 0.5, 0.5),
    PanelState.THINKING: ("blue", Effect.BLINK, 0.5, 0.5),
    PanelState.SPEAKING: ("cyan", Effect.BLINK, 1.5, 0.25),  # mostly on
    PanelState.TOOL_RUNNING: ("purple", Effect.BLINK, 0.25, 0.25),
    PanelState.AWAITING_CONFIRMATION: ("amber", Effect.BLINK, 0.75, 0.75),
    PanelState.ERROR: ("red", Effect.BLINK, 0.1, 0.1),
    PanelState.OFFLINE: ("red", Effect.BLINK, 0.1, 1.9),
    PanelState.MUTED: ("red", Effect.BLINK, 0.25, 1.25),
}


def look(pattern: Pattern, channels: Sequence[str], pwm: bool) -> Look:
    frames, step = render(pattern, pwm=pwm)
    index = [CHANNELS.index(c) for c in channels]
    values = [tuple(round(frame[i], 2) for i in index) for frame in frames]
    ms = max(1, round(step * 1000))
    runs: list[tuple[tuple[float, ...], int]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + ms)
        else:
            runs.append((value, ms))
    if len(runs) > 1 and runs[0][0] == runs[-1][0]:
        first = runs.pop(0)
        runs[-1] = (first[0], runs[-1][1] + first[1])
    if len(runs) == 1:
        return ((runs[0][0], 0),)  # steady: how long a frame lasts does not matter
    rotations = [tuple(runs[i:] + runs[:i]) for i in range(len(runs))]
    return min(rotations)


def collisions(
    patterns: Mapping[PanelState, Pattern], channels: Sequence[str], pwm: bool
) -> list[list[PanelState]]:
    """Groups of states that look the same on these LEDs (empty when all are distinct)."""
    by_look: dict[Look, list[PanelState]] = {}
    for state in PanelState:
        by_look.setdefault(look(patterns[state], channels, pwm), []).append(state)
    return [states for states in by_look.values() if len(states) > 1]


def default_patterns(channels: Sequence[str], pwm: bool) -> dict[PanelState, Pattern]:
    """The RGB defaults where they are distinct on this panel, else one rhythm per state."""
    if not collisions(DEFAULT_PATTERNS, channels, pwm):
        return dict(DEFAULT_PATTERNS)
    return {state: _rhythm(state, channels) for state in PanelState}


def _rhythm(state: PanelState, channels: Sequence[str]) -> Pattern:
    name, effect, on, off = RHYTHMS[state]
    color: Color = NAMED_COLORS[name]
    if not any(color[CHANNELS.index(c)] > 0 for c in channels):
        color = NAMED_COLORS["white"]  # that colour's LED is missing: light what there is
    return Pattern(color, effect, on=on, off=off)


def describe(groups: list[list[PanelState]]) -> str:
    return "; ".join(" and ".join(s.value for s in group) for group in groups)
