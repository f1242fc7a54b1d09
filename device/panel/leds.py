"""Drive the status LEDs from bus events.

Two kinds of hardware are supported: one RGB LED (gpiozero `RGBLED`, PWM) or up to three
discrete LEDs named after the colour channel they show (red, green, blue), so a two-LED
red/green panel shows amber as both lit. Every pattern is applied to all channels at once by
one gpiozero background thread (the device's `source`), so a new state can never leave a
channel of the previous one lit or blinking, and the event loop never waits on a blink.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gpiozero import RGBLED, LEDBoard

from device.events import Event, EventBus, PanelStateChanged
from device.panel.patterns import DEFAULT_PATTERNS, Color, Pattern, render
from device.panel.pins import PanelConfigError, bcm_pin
from device.panel.state import PanelState, PanelStateTracker

log = logging.getLogger(__name__)

CHANNELS = ("red", "green", "blue")


@dataclass(frozen=True)
class LedSettings:
    """`kind` "rgb" needs pins for red, green and blue; "discrete" any of them; "none" none."""

    kind: Literal["rgb", "discrete", "none"] = "rgb"
    pins: Mapping[str, str] = field(
        default_factory=lambda: {"red": "GPIO12", "green": "GPIO13", "blue": "GPIO19"}
    )
    pwm: bool = True
    # False for common-anode RGB LEDs and LEDs wired to 3V3 (the pin sinks current).
    active_high: bool = True
    patterns: Mapping[PanelState, Pattern] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    wake_flash_s: float = 0.4
    warning_s: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in ("rgb", "discrete", "none"):
            raise PanelConfigError(
                f"panel.leds.kind: {self.kind!r} is not supported; use 'rgb', 'discrete' or 'none'"
            )
        unknown = set(self.pins) - set(CHANNELS)
        if unknown:
            raise PanelConfigError(
                f"panel.leds.pins: unknown channel(s) {', '.join(sorted(unknown))}; "
                "name each LED by the colour it shows: red, green or blue"
            )
        if self.kind == "rgb" and set(self.pins) != set(CHANNELS):
            missing = ", ".join(c for c in CHANNELS if c not in self.pins)
            raise PanelConfigError(
                f"panel.leds.pins: an RGB LED needs a pin for {missing}; add it, "
                "or use kind = 'discrete' for fewer LEDs"
            )
        if self.kind == "discrete" and not self.pins:
            raise PanelConfigError(
                "panel.leds.pins: discrete LEDs need at least one of red, green, blue; "
                "add pins, or use kind = 'none'"
            )
        for channel, pin in self.pins.items():
            bcm_pin(pin, f"panel.leds.pins.{channel}")
        if len({bcm_pin(p, "panel.leds.pins") for p in self.pins.values()}) != len(self.pins):
            raise PanelConfigError("panel.leds.pins: two LEDs share a pin; give each its own")
        missing_states = [s.value for s in PanelState if s not in self.patterns]
        if missing_states:
            raise PanelConfigError(
                f"panel.patterns: no pattern for {', '.join(missing_states)}; "
                "start from DEFAULT_PATTERNS"
            )


class LedDriver(Protocol):
    def show(self, pattern: Pattern) -> None: ...

    def close(self) -> None: ...


class GpioLeds:
    """The LEDs themselves; `show` replaces whatever pattern was playing on every channel."""

    def __init__(self, settings: LedSettings, *, pin_factory: Any = None) -> None:
        self._pwm = settings.pwm
        if settings.kind == "rgb":
            pins = [bcm_pin(settings.pins[c], f"panel.leds.pins.{c}") for c in CHANNELS]
            self._channels = [0, 1, 2]
            self._device: Any = RGBLED(
                *pins,
                active_high=settings.active_high,
                pwm=settings.pwm,
                pin_factory=pin_factory,
            )
        elif settings.kind == "discrete":
            present = [c for c in CHANNELS if c in settings.pins]
            self._channels = [CHANNELS.index(c) for c in present]
            self._device = LEDBoard(
                *(bcm_pin(settings.pins[c], f"panel.leds.pins.{c}") for c in present),
                pwm=settings.pwm,
                active_high=settings.active_high,
                pin_factory=pin_factory,
            )
        else:
            raise PanelConfigError("panel.leds.kind is 'none': there are no LEDs to drive")

    def show(self, pattern: Pattern) -> None:
        frames, step = render(pattern, pwm=self._pwm)
        values = [self._project(frame) for frame in frames]
        # Stopping the old source thread first is what keeps a blink from outliving its state.
        self._device.source = None
        # The first frame goes on the pins here, not when the animation's thread first runs
        # (late on a busy machine): the old state's colour never outlives `show`.
        self._device.value = values[0]
        if len(values) > 1:
            self._device.source_delay = step
            self._device.source = itertools.cycle(values)

    def _project(self, color: Color) -> tuple[float, ...]:
        return tuple(color[i] for i in self._channels)

    def close(self) -> None:
        self._device.source = None
        self._device.close()


class LedPanel:
    """A bus subscriber: every event updates the tracker, and a new state gets its pattern."""

    def __init__(
        self,
        leds: LedDriver,
        *,
        tracker: PanelStateTracker,
        patterns: Mapping[PanelState, Pattern] = DEFAULT_PATTERNS,
        bus: EventBus | None = None,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle] | None = None,
        tracked: bool = False,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        """`tracked`: the tracker is fed from the bus by its owner (the board), which keeps it
        current while the LEDs are closed. `on_failure`: told when the LEDs fail to show."""
        self._leds = leds
        self._tracked = tracked
        self._on_failure = on_failure
        self._tracker = tracker
        self._patterns = patterns
        self._bus = bus
        self._call_later = call_later
        self._timer: asyncio.TimerHandle | None = None
        self._shown: PanelState | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def shown(self) -> PanelState | None:
        return self._shown

    def attach(self, bus: EventBus) -> None:
        """Subscribe to `bus` and show the current state at once."""
        self._bus = bus
        self._unsubscribe = bus.subscribe(self)
        self.refresh()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PanelStateChanged):
            return
        if not self._tracked:
            self._tracker.handle(event)
        self.refresh()

    def refresh(self) -> None:
        state = self._tracker.state()
        if state != self._shown:
            previous, self._shown = self._shown, state
            try:
                self._leds.show(self._patterns[state])
            except Exception as exc:
                # A dead LED must not take the appliance down with it; the log says why, and
                # the board's owner restarts the LEDs.
                log.exception("could not show the %s pattern on the LEDs", state.value)
                if self._on_failure is not None:
                    self._on_failure(exc)
            if self._bus is not None:
                self._bus.publish(
                    PanelStateChanged(state=state.value, previous=(previous or state).value)
                )
        self._schedule_overlay_end()

    def _schedule_overlay_end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        delay = self._tracker.next_change_in()
        if delay is None:
            return
        call_later = self._call_later or asyncio.get_running_loop().call_later
        # A hair past the deadline so the tracker's clock is certainly past it on wake-up.
        self._timer = call_later(delay + 0.001, self.refresh)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._timer is not None:
            self._timer.cancel()
        self._leds.close()
