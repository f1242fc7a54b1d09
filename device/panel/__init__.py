"""The panel: status LEDs and the talk button (gpiozero), driven by and reporting to the bus."""

from device.panel.buttons import (
    ButtonAction,
    ButtonRouter,
    ButtonSettings,
    PanelButtons,
    PanelHandler,
)
from device.panel.leds import GpioLeds, LedDriver, LedPanel, LedSettings
from device.panel.patterns import DEFAULT_PATTERNS, Effect, Pattern, parse_patterns
from device.panel.pins import PanelConfigError
from device.panel.state import ButtonContext, PanelState, PanelStateTracker

__all__ = [
    "DEFAULT_PATTERNS",
    "ButtonAction",
    "ButtonContext",
    "ButtonRouter",
    "ButtonSettings",
    "Effect",
    "GpioLeds",
    "LedDriver",
    "LedPanel",
    "LedSettings",
    "PanelButtons",
    "PanelConfigError",
    "PanelHandler",
    "PanelState",
    "PanelStateTracker",
    "Pattern",
    "parse_patterns",
]
