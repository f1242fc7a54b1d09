"""Which required parts of the appliance are broken right now, gathered from the bus.

The capture's own events (the microphone) and the supervisor's `PartHealth` (speaker, wake
listener, ...) both land here. An optional part (the camera) shows its own warning on the
panel, so it is left out: it never puts the appliance in the error state.
"""

from __future__ import annotations

from collections.abc import Callable

from device.audio.capture import CaptureLost, CaptureRestored
from device.events import Event
from device.service.supervisor import Health, PartHealth


class PartFaults:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.parts: dict[str, str] = {}  # part -> why it is broken

    def __call__(self, event: Event) -> None:
        if isinstance(event, CaptureLost):
            self.parts["mic"] = f"microphone lost: {event.reason}"
        elif isinstance(event, CaptureRestored):
            self.parts.pop("mic", None)
        elif isinstance(event, PartHealth):
            if event.health == Health.OK or not event.required:
                self.parts.pop(event.part, None)
            else:
                self.parts[event.part] = event.reason
        else:
            return
        self._on_change()

    def __len__(self) -> int:
        return len(self.parts)

    def reason(self) -> str:
        return "; ".join(f"{part}: {why}" for part, why in sorted(self.parts.items()))
