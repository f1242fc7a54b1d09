"""Every supported panel shows every state in its own way, on the pins, or is refused."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from device.cli import main
from device.config import REPO_CONFIG_DIR, load_settings
from device.panel.board import panel_settings
from device.panel.distinct import CHANNELS, collisions, look
from device.panel.leds import GpioLeds, LedSettings
from device.panel.patterns import DEFAULT_PATTERNS, Pattern
from device.panel.state import PanelState

WaitUntil = Callable[[Callable[[], bool], str], Awaitable[None]]

PINS = {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
# Every supported panel: one RGB LED, three, two or one discrete LEDs; PWM or on/off.
PANELS = {
    f"{name}-{'pwm' if pwm else 'onoff'}": (kind, channels, pwm)
    for name, kind, channels in (
        ("rgb", "rgb", CHANNELS),
        ("three", "discrete", CHANNELS),
        ("red-green", "discrete", ("red", "green")),
        ("one-green", "discrete", ("green",)),
        ("one-red", "discrete", ("red",)),
    )
    for pwm in (True, False)
}


def toml(kind: str, channels: tuple[str, ...], pwm: bool, extra: str = "") -> str:
    pins = ", ".join(f'{c} = "{PINS[c]}"' for c in channels)
    return (
        f'[leds]\nkind = "{kind}"\npwm = {str(pwm).lower()}\npins = {{ {pins} }}\n'
        f'{extra}\n[live]\ninstructions = "{REPO_CONFIG_DIR / "instructions.md"}"\n'
    )


def settings_for(tmp_path: Path, kind: str, channels: tuple[str, ...], pwm: bool) -> LedSettings:
    path = tmp_path / "config.toml"
    path.write_text(toml(kind, channels, pwm))
    leds, _ = panel_settings(load_settings(path))
    return leds


def quick(patterns: Mapping[PanelState, Pattern]) -> dict[PanelState, Pattern]:
    """Twenty times faster: the same looks (every time scales alike), a shorter test."""
    return {
        s: dataclasses.replace(
            p, on=p.on / 20, off=p.off / 20, fade_in=p.fade_in / 20, fade_out=p.fade_out / 20
        )
        for s, p in patterns.items()
    }


@pytest.mark.parametrize("panel", list(PANELS))
def test_every_supported_panel_tells_every_state_apart(tmp_path: Path, panel: str) -> None:
    kind, channels, pwm = PANELS[panel]
    leds = settings_for(tmp_path, kind, channels, pwm)
    assert collisions(leds.patterns, channels, pwm) == []
    looks = {state: look(leds.patterns[state], channels, pwm) for state in PanelState}
    assert len(set(looks.values())) == len(PanelState)


@pytest.mark.parametrize("panel", list(PANELS))
async def test_the_pins_show_each_states_look(
    pin_factory: MockFactory, wait_until: WaitUntil, tmp_path: Path, panel: str
) -> None:
    kind, channels, pwm = PANELS[panel]
    settings = settings_for(tmp_path, kind, channels, pwm)
    patterns = quick(settings.patterns)
    leds = GpioLeds(dataclasses.replace(settings, patterns=patterns), pin_factory=pin_factory)
    pins = [pin_factory.pin(PINS[c]) for c in channels]

    def read() -> tuple[float, ...]:
        return tuple(round(float(p.state), 2) for p in pins)

    try:
        for state in PanelState:
            expected = {value for value, _ in look(patterns[state], channels, pwm)}
            leds.show(patterns[state])
            seen: set[tuple[float, ...]] = set()

            def saw_all(
                expected: set[tuple[float, ...]] = expected, seen: set[tuple[float, ...]] = seen
            ) -> bool:
                seen.add(read())
                return expected <= seen

            await wait_until(saw_all, f"{panel} {state}: {expected}")
            for _ in range(20):
                seen.add(read())
                await asyncio.sleep(0.002)
            # No LED the state never lights (a reading may catch the driver between two LEDs
            # of one frame, so it is checked LED by LED, not as a whole).
            brightest = [max(value[i] for value in expected) for i in range(len(pins))]
            for reading in seen:
                assert all(r <= b + 1e-6 for r, b in zip(reading, brightest, strict=True)), (
                    panel,
                    state,
                    reading,
                )
    finally:
        leds.close()


def test_the_rgb_defaults_stay_on_an_rgb_led(tmp_path: Path) -> None:
    assert settings_for(tmp_path, "rgb", CHANNELS, True).patterns == dict(DEFAULT_PATTERNS)


def test_config_check_refuses_a_panel_that_cannot_tell_states_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("WAREHOUSE_VOICE_INVENTORY_TOKEN", "t")
    path = tmp_path / "config.toml"
    same = '{ color = "green", effect = "solid" }'
    path.write_text(
        toml(
            "discrete",
            ("red", "green"),
            False,
            f"[leds.patterns]\nidle = {same}\nspeaking = {same}",
        )
    )
    assert main(["config", "check", "--no-devices", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert "leds.patterns" in err and "idle and speaking" in err, err
