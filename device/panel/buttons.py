"""The talk button and the optional mute switch.

Gestures on the one button:

- **tap** (released before `hold_s`): start a session when idle, stop it when one is open;
- **hold** (held past `hold_s`): push-to-talk, talk starts at `hold_s` and ends on release;
- **long press** (held past `long_press_s`): cancel what is pending, or hang up. The talk in
  progress is abandoned, not sent.

Two situations change what a press means, because they are what a worker with full hands needs
most: while the device speaks, pressing interrupts it at once (and holding on keeps talking);
while a write waits for confirmation, a tap confirms it, and a long press cancels it instead.

`ButtonRouter` holds that decision and is pure; `PanelButtons` wires it to gpiozero. gpiozero
calls back on its own threads, so every edge crosses into the event loop first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from gpiozero import Button

from device.events import ButtonEvent, ButtonGesture, EventBus, MuteChanged, UserSpeech
from device.panel.pins import PanelConfigError, bcm_pin
from device.panel.state import ButtonContext

log = logging.getLogger(__name__)


class ButtonAction(StrEnum):
    TALK_START = "talk_start"
    TALK_END = "talk_end"
    TAP = "tap"
    LONG_PRESS = "long_press"
    CONFIRM = "confirm"
    INTERRUPT = "interrupt"


class PanelHandler(Protocol):
    """What the appliance offers the buttons. Every method is called on the event loop."""

    def talk_start(self) -> None: ...

    def talk_end(self) -> None: ...

    def tap(self) -> None: ...

    def long_press(self) -> None: ...

    def confirm(self) -> None: ...

    def interrupt(self) -> None: ...

    def set_muted(self, muted: bool) -> None: ...


@dataclass(frozen=True)
class ButtonSettings:
    pin: str | None = "GPIO17"
    bounce_s: float | None = 0.05
    hold_s: float = 0.4
    # 0 turns the long press off, for freezer sites whose push-to-talk turns run long.
    long_press_s: float = 4.0
    mute_pin: str | None = None

    def __post_init__(self) -> None:
        if self.pin is not None:
            bcm_pin(self.pin, "button.pin")
        if self.mute_pin is not None:
            bcm_pin(self.mute_pin, "button.mute_pin")
            if self.pin is not None and bcm_pin(self.pin, "") == bcm_pin(self.mute_pin, ""):
                raise PanelConfigError(
                    "button.mute_pin: the mute switch needs its own pin, not the talk button's"
                )
        if self.bounce_s is not None and not 0 <= self.bounce_s <= 1:
            raise PanelConfigError(f"button.bounce_s: {self.bounce_s} must be 0-1 seconds")
        if not 0 < self.hold_s <= 10:
            raise PanelConfigError(f"button.hold_s: {self.hold_s} must be above 0, up to 10 s")
        if self.long_press_s and self.long_press_s <= self.hold_s:
            raise PanelConfigError(
                f"button.long_press_s: {self.long_press_s} must be longer than hold_s "
                f"({self.hold_s}), or 0 to turn the long press off"
            )


class ButtonRouter:
    """Turns the edges of one button into actions, given what the device is doing at the press.

    The context is taken once, at the press, so a reply that starts mid-press does not turn a
    tap into something else.
    """

    def __init__(self) -> None:
        self._pressed = False
        self._ctx = ButtonContext()
        self._consumed = False
        self._talking = False
        self._long = False

    @property
    def pressed(self) -> bool:
        return self._pressed

    def press(self, ctx: ButtonContext) -> list[ButtonAction]:
        if self._pressed:
            return []
        self._pressed, self._ctx = True, ctx
        self._consumed = self._talking = self._long = False
        if ctx.speaking and not ctx.awaiting_confirmation:
            # Barge-in must be instant; waiting to tell a tap from a hold would add hold_s.
            self._consumed = True
            return [ButtonAction.INTERRUPT]
        return []

    def held(self) -> list[ButtonAction]:
        if not self._pressed or self._talking or self._long:
            return []
        self._talking = True
        return [ButtonAction.TALK_START]

    def long_held(self) -> list[ButtonAction]:
        if not self._pressed or self._long:
            return []
        self._long = True
        return [ButtonAction.LONG_PRESS]

    def release(self) -> list[ButtonAction]:
        if not self._pressed:
            return []
        self._pressed = False
        if self._long:
            return []
        if self._talking:
            return [ButtonAction.TALK_END]
        if self._consumed:
            return []
        if self._ctx.awaiting_confirmation:
            return [ButtonAction.CONFIRM]
        return [ButtonAction.TAP]


class PanelButtons:
    """gpiozero inputs → loop → router → handler, with every gesture published on the bus."""

    def __init__(
        self,
        settings: ButtonSettings,
        *,
        handler: PanelHandler,
        bus: EventBus,
        context: Callable[[], ButtonContext],
        loop: asyncio.AbstractEventLoop,
        pin_factory: Any = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._bus = bus
        self._context = context
        self._loop = loop
        self._router = ButtonRouter()
        self._long_timer: asyncio.TimerHandle | None = None
        self._button: Any = None
        self._mute: Any = None
        if settings.pin is not None:
            self._button = Button(
                bcm_pin(settings.pin, "button.pin"),
                pull_up=True,
                bounce_time=settings.bounce_s or None,
                hold_time=settings.hold_s,
                pin_factory=pin_factory,
            )
            self._button.when_pressed = lambda: self._cross(self._on_press)
            self._button.when_released = lambda: self._cross(self._on_release)
            self._button.when_held = lambda: self._cross(self._on_held)
        if settings.mute_pin is not None:
            # A latching switch to ground: closed (reads as pressed) means muted.
            self._mute = Button(
                bcm_pin(settings.mute_pin, "button.mute_pin"),
                pull_up=True,
                bounce_time=settings.bounce_s or None,
                # The switch has no hold gesture; a short hold_time only keeps close() from
                # waiting out gpiozero's hold thread (1 s by default) while the switch is on.
                hold_time=0.05,
                pin_factory=pin_factory,
            )
            self._mute.when_pressed = lambda: self._cross(lambda: self._on_mute(True))
            self._mute.when_released = lambda: self._cross(lambda: self._on_mute(False))
            if self._mute.is_pressed:
                self._loop.call_soon(self._on_mute, True)

    def _cross(self, callback: Callable[[], None]) -> None:
        # gpiozero calls from its own threads; the router and the handler live on the loop.
        self._loop.call_soon_threadsafe(callback)

    def _on_press(self) -> None:
        self._bus.publish(ButtonEvent(action="press", source="gpio"))
        self._run("press", self._router.press(self._context()))

    def _on_held(self) -> None:
        self._run("hold", self._router.held())
        if self._settings.long_press_s and self._router.pressed:
            delay = self._settings.long_press_s - self._settings.hold_s
            self._long_timer = self._loop.call_later(delay, self._on_long)

    def _on_long(self) -> None:
        self._long_timer = None
        self._run("long_press", self._router.long_held())

    def _on_release(self) -> None:
        if self._long_timer is not None:
            self._long_timer.cancel()
            self._long_timer = None
        self._bus.publish(ButtonEvent(action="release", source="gpio"))
        self._run("release", self._router.release())

    def _on_mute(self, muted: bool) -> None:
        self._bus.publish(MuteChanged(muted=muted, source="switch"))
        self._call(lambda: self._handler.set_muted(muted), "set_muted")

    def _run(self, gesture: str, actions: list[ButtonAction]) -> None:
        for action in actions:
            self._bus.publish(ButtonGesture(gesture=gesture, action=action.value))
            if action is ButtonAction.TALK_START:
                self._bus.publish(UserSpeech(active=True, source="button"))
            elif action is ButtonAction.TALK_END:
                self._bus.publish(UserSpeech(active=False, source="button"))
            self._call(getattr(self._handler, action.value), action.value)

    def _call(self, method: Callable[[], None], name: str) -> None:
        try:
            method()
        except Exception:
            # A failing handler must not kill gpiozero's callback path for the next press.
            log.exception("button handler %s failed", name)

    def close(self) -> None:
        """Release the pins. gpiozero may wait up to `hold_s` for its hold thread if the button
        is down at that moment, so call it at shutdown, not in the middle of a conversation."""
        if self._long_timer is not None:
            self._long_timer.cancel()
        for device in (self._button, self._mute):
            if device is not None:
                device.close()
