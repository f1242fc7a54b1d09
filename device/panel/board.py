"""The panel assembled from settings: LEDs that follow the bus, and the talk button.

A board that cannot be opened (no GPIO chip, a pin in use) leaves the device voice-only with an
error event, rather than stopping it: a worker can still talk to a device whose LED is dark.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gpiozero.exc import PinPWMUnsupported

from device.config import ConfigError, Settings
from device.events import ErrorRaised, EventBus
from device.panel.buttons import ButtonSettings, PanelButtons, PanelHandler
from device.panel.distinct import CHANNELS, collisions, default_patterns, describe
from device.panel.leds import GpioLeds, LedPanel, LedSettings
from device.panel.patterns import DEFAULT_PATTERNS, parse_patterns
from device.panel.pins import PanelConfigError
from device.panel.state import PanelStateTracker

log = logging.getLogger(__name__)


# State changes a mock pin remembers. gpiozero's mock pins keep every change for tests to
# inspect, so a pulsing LED grows a demo or soak daemon by megabytes a day; a few seconds'
# worth of history is all anything reads.
MOCK_PIN_HISTORY = 1000


def pin_factory(settings: Settings) -> Any:
    if settings.gpio.pin_factory != "mock":
        return None  # gpiozero picks the board's own factory
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class BoundedMockPWMPin(MockPWMPin):  # type: ignore[misc]
        def _change_state(self, value: Any) -> bool:
            changed: bool = super()._change_state(value)
            if len(self.states) > 2 * MOCK_PIN_HISTORY:  # trimmed in batches: cheap
                del self.states[:-MOCK_PIN_HISTORY]
            return changed

    return MockFactory(pin_class=BoundedMockPWMPin)


def panel_settings(settings: Settings) -> tuple[LedSettings, ButtonSettings | None]:
    """Validate the [leds] and [button] sections; errors name the key, as config errors do."""
    leds, button = settings.leds, settings.button
    channels = [c for c in CHANNELS if c in leds.pins] if leds.kind != "none" else []
    try:
        base = default_patterns(channels, leds.pwm) if channels else DEFAULT_PATTERNS
        patterns = parse_patterns(leds.patterns, key="leds.patterns", base=base)
        groups = collisions(patterns, channels, leds.pwm) if channels else []
        if groups:
            raise PanelConfigError(
                f"leds.patterns: on these LEDs ({', '.join(channels)}, "
                f"{'PWM' if leds.pwm else 'on/off'}) states look the same: {describe(groups)}; "
                "give them different colours or rhythms under [leds.patterns]"
            )
        led_settings = LedSettings(
            kind=leds.kind,
            pins=dict(leds.pins),
            pwm=leds.pwm,
            active_high=leds.active_high,
            patterns=patterns,
            wake_flash_s=leds.wake_flash_s,
            warning_s=leds.warning_s,
        )
        button_settings = (
            ButtonSettings(
                pin=button.pin,
                bounce_s=button.bounce_s,
                hold_s=button.hold_s,
                long_press_s=button.long_press_s,
                mute_pin=button.mute_pin,
            )
            if button.enabled
            else None
        )
    except PanelConfigError as exc:
        key, _, problem = str(exc).removeprefix("panel.").partition(": ")
        raise ConfigError(key, problem, "see config/config.toml") from None
    return led_settings, button_settings


class Board:
    """`with Board(...)`: the LEDs and buttons, closed again on the way out."""

    def __init__(self, settings: Settings, *, bus: EventBus, handler: PanelHandler) -> None:
        self._settings = settings
        self._bus = bus
        self._handler = handler
        self.tracker: PanelStateTracker | None = None
        self.leds: LedPanel | None = None
        self.buttons: PanelButtons | None = None
        self.factory: Any = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        led_settings, button_settings = panel_settings(self._settings)
        self.tracker = PanelStateTracker(
            wake_flash_s=led_settings.wake_flash_s, warning_s=led_settings.warning_s
        )
        try:
            self.factory = pin_factory(self._settings)
        except Exception as exc:
            self._unavailable("GPIO", exc)
            return
        if led_settings.kind != "none":
            try:
                driver = GpioLeds(led_settings, pin_factory=self.factory)
                self.leds = LedPanel(driver, tracker=self.tracker, patterns=led_settings.patterns)
                self.leds.attach(self._bus)
            except Exception as exc:  # gpiozero raises many kinds when there is no usable GPIO
                self._unavailable("LEDs", exc, pwm=led_settings.pwm)
                self.leds = None
        if button_settings is not None:
            # The talk button works without the LEDs: a dark panel must not cost the worker it.
            try:
                self.buttons = PanelButtons(
                    button_settings,
                    handler=self._handler,
                    bus=self._bus,
                    context=self.tracker.context,
                    loop=loop,
                    pin_factory=self.factory,
                )
            except Exception as exc:
                self._unavailable("button", exc)
                self.buttons = None

    def _unavailable(self, what: str, exc: Exception, *, pwm: bool = False) -> None:
        # gpiozero's exceptions often carry no message: the type is the reason.
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        hint = ""
        if pwm and isinstance(exc, PinPWMUnsupported):
            hint = (
                "; these pins cannot dim: set leds.pwm = false, or for mock pins "
                "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin"
            )
        message = f"{what} unavailable: {reason}{hint}"
        log.warning("panel: %s; continuing without", message)
        self._bus.publish(ErrorRaised(where="panel", message=message, fatal=False))

    def close(self) -> None:
        if self.buttons is not None:
            self.buttons.close()
            self.buttons = None
        if self.leds is not None:
            self.leds.close()
            self.leds = None
