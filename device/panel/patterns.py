"""LED patterns: one colour and effect per panel state, their defaults, and how they play.

A pattern is a colour (red, green, blue, each 0-1) and an effect:

- ``solid``: the colour, steady.
- ``blink``: ``on`` seconds of the colour, then ``off`` seconds dark.
- ``pulse``: ``fade_in`` seconds up from dark to the colour, ``fade_out`` seconds back down.

Defaults (override any of them under ``[panel.patterns]`` in config.toml)::

    state                   colour                effect
    idle                    dim green  #001400    solid
    wake                    white      #ffffff    solid (shown for the wake flash)
    listening               blue       #0000ff    solid
    thinking                blue       #0000ff    pulse 0.5 s in / 0.5 s out
    speaking                cyan       #00b3ff    solid
    tool_running            purple     #9900ff    pulse 0.25 s in / 0.25 s out
    awaiting_confirmation   amber      #ff7300    blink 0.5 s on / 0.5 s off
    error                   red        #ff0000    blink 0.15 s on / 0.15 s off
    offline                 red        #ff0000    blink 0.1 s on / 1.9 s off
    muted                   red        #ff0000    solid

In TOML a pattern is a table: ``thinking = { color = "#0000ff", effect = "pulse",
fade_in = 0.5, fade_out = 0.5 }``. Colours are "#rrggbb", a name (see `NAMED_COLORS`) or a list
of three numbers 0-1. Keys left out keep the state's default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from device.panel.pins import PanelConfigError
from device.panel.state import PanelState

Color = tuple[float, float, float]

NAMED_COLORS: dict[str, Color] = {
    "off": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "amber": (1.0, 0.45, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "cyan": (0.0, 0.7, 1.0),
    "purple": (0.6, 0.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
}

# Fades are drawn at gpiozero's own pulse rate; blinks need only their on/off edges.
PULSE_FPS = 25
# Blink timings are quantised to this so odd on/off pairs do not need a frame per millisecond.
MIN_STEP_S = 0.02
_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


class Effect(StrEnum):
    SOLID = "solid"
    BLINK = "blink"
    PULSE = "pulse"


@dataclass(frozen=True)
class Pattern:
    color: Color
    effect: Effect = Effect.SOLID
    on: float = 0.5
    off: float = 0.5
    fade_in: float = 0.5
    fade_out: float = 0.5

    def __post_init__(self) -> None:
        if len(self.color) != 3 or not all(0.0 <= c <= 1.0 for c in self.color):
            raise PanelConfigError(f"colour {self.color!r} needs three values from 0 to 1")
        for name in ("on", "off", "fade_in", "fade_out"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value <= 60.0):
                raise PanelConfigError(f"{name}={value!r} must be seconds above 0 and up to 60")


DEFAULT_PATTERNS: Mapping[PanelState, Pattern] = {
    PanelState.IDLE: Pattern((0.0, 0.08, 0.0)),
    PanelState.WAKE: Pattern(NAMED_COLORS["white"]),
    PanelState.LISTENING: Pattern(NAMED_COLORS["blue"]),
    PanelState.THINKING: Pattern(NAMED_COLORS["blue"], Effect.PULSE, fade_in=0.5, fade_out=0.5),
    PanelState.SPEAKING: Pattern(NAMED_COLORS["cyan"]),
    PanelState.TOOL_RUNNING: Pattern(
        NAMED_COLORS["purple"], Effect.PULSE, fade_in=0.25, fade_out=0.25
    ),
    PanelState.AWAITING_CONFIRMATION: Pattern(NAMED_COLORS["amber"], Effect.BLINK, on=0.5, off=0.5),
    PanelState.ERROR: Pattern(NAMED_COLORS["red"], Effect.BLINK, on=0.15, off=0.15),
    PanelState.OFFLINE: Pattern(NAMED_COLORS["red"], Effect.BLINK, on=0.1, off=1.9),
    PanelState.MUTED: Pattern(NAMED_COLORS["red"]),
}


def parse_color(value: Any, key: str) -> Color:
    """Read "#rrggbb", a colour name, or [r, g, b] with values 0-1."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in NAMED_COLORS:
            return NAMED_COLORS[name]
        match = _HEX.match(value.strip())
        if match:
            raw = match.group(1)
            r, g, b = (int(raw[i : i + 2], 16) / 255 for i in (0, 2, 4))
            return (r, g, b)
    elif (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in value)
        and all(0 <= c <= 1 for c in value)
    ):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise PanelConfigError(
        f"{key}: {value!r} is not a colour; use '#rrggbb', one of "
        f"{', '.join(NAMED_COLORS)}, or [r, g, b] with values from 0 to 1"
    )


def parse_pattern(table: Mapping[str, Any], key: str, base: Pattern) -> Pattern:
    known = {f.name for f in fields(Pattern)}
    unknown = set(table) - known
    if unknown:
        raise PanelConfigError(
            f"{key}: unknown key(s) {', '.join(sorted(unknown))}; known keys: "
            f"{', '.join(sorted(known))}"
        )
    changes: dict[str, Any] = {}
    if "color" in table:
        changes["color"] = parse_color(table["color"], f"{key}.color")
    if "effect" in table:
        try:
            changes["effect"] = Effect(str(table["effect"]).lower())
        except ValueError:
            raise PanelConfigError(
                f"{key}.effect: {table['effect']!r} is not an effect; use one of "
                f"{', '.join(e.value for e in Effect)}"
            ) from None
    for name in ("on", "off", "fade_in", "fade_out"):
        if name in table:
            changes[name] = table[name]
    try:
        return replace(base, **changes)
    except PanelConfigError as exc:
        raise PanelConfigError(f"{key}: {exc}") from None


def parse_patterns(
    table: Mapping[str, Any],
    key: str = "panel.patterns",
    base: Mapping[PanelState, Pattern] = DEFAULT_PATTERNS,
) -> dict[PanelState, Pattern]:
    """The default patterns (`base`) with the config's overrides applied on top."""
    patterns = dict(base)
    for name, spec in table.items():
        try:
            state = PanelState(name)
        except ValueError:
            raise PanelConfigError(
                f"{key}.{name}: no such panel state; use one of "
                f"{', '.join(s.value for s in PanelState)}"
            ) from None
        if not isinstance(spec, Mapping):
            raise PanelConfigError(f"{key}.{name}: must be a table like {{ color = 'blue' }}")
        patterns[state] = parse_pattern(spec, f"{key}.{name}", patterns[state])
    return patterns


def render(pattern: Pattern, *, pwm: bool = True) -> tuple[list[Color], float]:
    """One cycle of the pattern as colour frames and the seconds each frame is held.

    A solid pattern is a single frame (held forever). Without PWM a channel is either fully on
    or off, so any lit component turns fully on and a pulse becomes an even blink.
    """
    if pattern.effect is Effect.SOLID:
        levels, step = [1.0], 0.0
    elif pattern.effect is Effect.BLINK:
        levels, step = _blink_levels(pattern.on, pattern.off)
    else:
        step = 1.0 / PULSE_FPS
        n_in = max(1, round(pattern.fade_in / step))
        n_out = max(1, round(pattern.fade_out / step))
        levels = [i / n_in for i in range(n_in)] + [1.0 - i / n_out for i in range(n_out)]
    return [_scale(pattern.color, level, pwm) for level in levels], step


def _blink_levels(on: float, off: float) -> tuple[list[float], float]:
    on_ms, off_ms = round(on * 1000), round(off * 1000)
    step_ms = max(math.gcd(on_ms, off_ms), round(MIN_STEP_S * 1000))
    n_on = max(1, round(on_ms / step_ms))
    n_off = max(1, round(off_ms / step_ms))
    return [1.0] * n_on + [0.0] * n_off, step_ms / 1000


def _scale(color: Color, level: float, pwm: bool) -> Color:
    if pwm:
        r, g, b = (round(c * level, 4) for c in color)
    else:
        r, g, b = (1.0 if c > 0 and level >= 0.5 else 0.0 for c in color)
    return (r, g, b)
