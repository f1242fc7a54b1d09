"""Patterns from config: overrides, mistakes explained, and the frames each effect plays."""

from __future__ import annotations

import pytest

from device.panel.patterns import DEFAULT_PATTERNS, Effect, Pattern, parse_patterns, render
from device.panel.pins import PanelConfigError, bcm_pin
from device.panel.state import PanelState


def test_every_state_has_a_default_and_each_is_distinguishable() -> None:
    assert set(DEFAULT_PATTERNS) == set(PanelState)
    looks = {
        (p.color, p.effect, p.on, p.off, p.fade_in, p.fade_out) for p in DEFAULT_PATTERNS.values()
    }
    assert len(looks) == len(PanelState)


def test_config_overrides_only_what_it_names() -> None:
    patterns = parse_patterns(
        {
            "thinking": {"color": "#ff8000", "effect": "blink", "on": 0.2, "off": 0.3},
            "idle": {"color": [0, 0, 0.1]},
        }
    )
    assert patterns[PanelState.THINKING] == Pattern(
        (1.0, 128 / 255, 0.0), Effect.BLINK, on=0.2, off=0.3, fade_in=0.5, fade_out=0.5
    )
    assert patterns[PanelState.IDLE] == Pattern((0.0, 0.0, 0.1))
    assert patterns[PanelState.ERROR] == DEFAULT_PATTERNS[PanelState.ERROR]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"thinkin": {"color": "blue"}},
            r"panel.patterns.thinkin: no such panel state; use one of idle",
        ),
        ({"idle": {"color": "#12345"}}, r"panel.patterns.idle.color: '#12345' is not a colour"),
        ({"idle": {"color": [0, 2, 0]}}, r"is not a colour.*\[r, g, b\] with values from 0 to 1"),
        (
            {"idle": {"effect": "strobe"}},
            r"'strobe' is not an effect; use one of solid, blink, pulse",
        ),
        ({"idle": {"blink": 1}}, r"unknown key\(s\) blink; known keys"),
        ({"error": {"on": 0}}, r"panel.patterns.error: on=0 must be seconds above 0"),
        ({"idle": "green"}, r"must be a table"),
    ],
)
def test_config_mistakes_name_the_key_and_the_fix(table: dict[str, object], message: str) -> None:
    with pytest.raises(PanelConfigError, match=message):
        parse_patterns(table)


def test_blink_frames_keep_the_on_off_ratio() -> None:
    frames, step = render(Pattern((1.0, 0.0, 0.0), Effect.BLINK, on=0.1, off=1.9))
    assert step == pytest.approx(0.1)
    assert frames == [(1.0, 0.0, 0.0)] + [(0.0, 0.0, 0.0)] * 19


def test_pulse_rises_to_the_colour_and_falls_back_to_dark() -> None:
    frames, step = render(Pattern((0.0, 0.0, 1.0), Effect.PULSE, fade_in=0.2, fade_out=0.2))
    blues = [f[2] for f in frames]
    peak = blues.index(1.0)
    assert blues[0] == 0.0
    assert blues[: peak + 1] == sorted(blues[: peak + 1])
    assert blues[peak:] == sorted(blues[peak:], reverse=True)
    assert len(frames) * step == pytest.approx(0.4)


def test_without_pwm_channels_are_fully_on_or_off() -> None:
    frames, _ = render(Pattern((0.6, 0.0, 1.0), Effect.PULSE, fade_in=0.2, fade_out=0.2), pwm=False)
    assert set(frames) == {(0.0, 0.0, 0.0), (1.0, 0.0, 1.0)}
    solid, step = render(Pattern((0.0, 0.08, 0.0)), pwm=False)
    assert solid == [(0.0, 1.0, 0.0)] and step == 0.0


@pytest.mark.parametrize(
    ("name", "canonical"), [("GPIO17", "GPIO17"), ("bcm4", "GPIO4"), (" GPIO05 ", "GPIO5")]
)
def test_bcm_names(name: str, canonical: str) -> None:
    assert bcm_pin(name, "button.pin") == canonical


@pytest.mark.parametrize("name", ["17", "GPIO28", "pin11", "BOARD11", ""])
def test_bad_pin_names_are_refused_with_an_example(name: str) -> None:
    with pytest.raises(
        PanelConfigError, match=r"button.pin: .* is not a BCM pin name; write it like 'GPIO17'"
    ):
        bcm_pin(name, "button.pin")
