"""The panel assembled from settings: LEDs that follow the bus, and the talk button.

A board that cannot be opened (no GPIO chip, a pin in use) leaves the device voice-only,
rather than stopping it: a worker can still talk to a device whose LED is dark. In the daemon
the board is the supervised `panel` part (`Board.run`), retried and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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


class PanelUnavailable(Exception):
    """Part of the panel could not open, or its LEDs failed: the supervisor retries it."""


class Board:
    """The LEDs and buttons, closed again by `close()`.

    The tracker follows the bus from construction on, whether or not the LEDs are open, so that
    LEDs opened (or reopened) later show the device's state at once. `run()` is the `panel` part
    under the daemon's supervisor: it opens what is not open yet and raises while a piece cannot
    open or once the LEDs fail; what did open stays open (the talk button works while the LEDs
    are retried), and the LEDs that failed are closed so the restart opens them afresh.
    """

    def __init__(self, settings: Settings, *, bus: EventBus, handler: PanelHandler) -> None:
        self._settings = settings
        self._bus = bus
        self._handler = handler
        self.tracker = PanelStateTracker(
            wake_flash_s=settings.leds.wake_flash_s, warning_s=settings.leds.warning_s
        )
        self._untrack: Callable[[], None] | None = bus.subscribe(self.tracker.handle)
        self.leds: LedPanel | None = None
        self.buttons: PanelButtons | None = None
        self.factory: Any = None
        self._factory_ready = False
        self._leds_died: asyncio.Future[str] | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        """Open what is not open yet. A piece that cannot open leaves the device without it
        (voice-only at worst): each is published as an error, and the reasons returned."""
        problems = self._open_missing(loop)
        for message in problems:
            log.warning("panel: %s; continuing without", message)
            self._bus.publish(ErrorRaised(where="panel", message=message, fatal=False))
        return problems

    async def run(self) -> None:
        """The supervised part: returns only by raising why the panel does not work."""
        loop = asyncio.get_running_loop()
        problems = self._open_missing(loop)
        if problems:
            raise PanelUnavailable("; ".join(problems))
        died = self._leds_died = loop.create_future()
        try:
            reason = await died
        finally:
            self._leds_died = None
        if self.leds is not None:
            self.leds.close()
            self.leds = None
        raise PanelUnavailable(reason)

    def _open_missing(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        led_settings, button_settings = panel_settings(self._settings)
        if not self._factory_ready:
            try:
                self.factory = pin_factory(self._settings)
            except Exception as exc:
                return [_unavailable("GPIO", exc)]
            self._factory_ready = True
        problems: list[str] = []
        if led_settings.kind != "none" and self.leds is None:
            try:
                driver = GpioLeds(led_settings, pin_factory=self.factory)
                self.leds = LedPanel(
                    driver,
                    tracker=self.tracker,
                    patterns=led_settings.patterns,
                    tracked=True,
                    on_failure=self._led_failed,
                )
                self.leds.attach(self._bus)
            except Exception as exc:  # gpiozero raises many kinds when there is no usable GPIO
                problems.append(_unavailable("LEDs", exc, pwm=led_settings.pwm))
                self.leds = None
        if button_settings is not None and self.buttons is None:
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
                problems.append(_unavailable("button", exc))
                self.buttons = None
        return problems

    def _led_failed(self, exc: Exception) -> None:
        died = self._leds_died
        if died is not None and not died.done():
            died.set_result(f"LEDs failed: {_reason(exc)}")

    def close(self) -> None:
        if self._untrack is not None:
            self._untrack()
            self._untrack = None
        if self.buttons is not None:
            self.buttons.close()
            self.buttons = None
        if self.leds is not None:
            self.leds.close()
            self.leds = None


def _reason(exc: Exception) -> str:
    # gpiozero's exceptions often carry no message: the type is the reason.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unavailable(what: str, exc: Exception, *, pwm: bool = False) -> str:
    hint = ""
    if pwm and isinstance(exc, PinPWMUnsupported):
        hint = (
            "; these pins cannot dim: set leds.pwm = false, or for mock pins "
            "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin"
        )
    return f"{what} unavailable: {_reason(exc)}{hint}"
