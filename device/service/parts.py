"""Which parts of the assembled daemon the supervisor watches, and how.

- mic (required): capture reopens it by name by itself; its `CaptureLost`/`CaptureRestored`
  events are the report. A mic missing at boot is simply lost from the start.
- speaker (required): probed (a dead player, a write that hangs) and healed by reopening it by
  name. A speaker missing at boot is a fault being healed, not a reason to exit.
- capture (required): the appliance's capture loop, restarted if it dies.
- wake (required when the wake word is on): the listener, restarted if it dies.
- camera (optional): the snapshot loop, restarted if it dies; its availability events report.
- link (required): where conversations run (`device.appliance_link`); a session task that dies
  of a bug stops it, and its restart is the recovery.
- panel (optional: the device works voice-only without it): the LEDs and buttons, retried
  while a piece cannot open and restarted when the LEDs fail. Its own fault cannot light the
  LED it broke, so `status` is where it shows.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from device.audio.capture import CaptureLost, CaptureRestored
from device.audio.sink import AudioSink
from device.events import CameraAvailable, CameraUnavailable, Event, EventBus
from device.service.supervisor import Supervisor, speaker_probe

# How long a hung speaker write may last before the watchdog stops: longer than any one
# buffer can legitimately take, well inside systemd's WatchdogSec (30 s in the unit).
SPEAKER_STALL_S = 5.0
# Never less, however short the watchdog: a loaded machine may hold one buffer that long.
SPEAKER_STALL_MIN_S = 1.0


def speaker_stall_s(watchdog_period_s: float | None) -> float:
    """The stall limit for a watchdog pinged every `watchdog_period_s` (None: no watchdog).

    One ping period at most, so a hung write stops the pings well inside the watchdog's budget
    (two periods: systemd's WatchdogSec), even when WatchdogSec is short."""
    if watchdog_period_s is None:
        return SPEAKER_STALL_S
    return max(SPEAKER_STALL_MIN_S, min(SPEAKER_STALL_S, watchdog_period_s))


def supervise_parts(
    supervisor: Supervisor,
    bus: EventBus,
    *,
    speaker: AudioSink,
    capture: Callable[[], Awaitable[None]],
    wake: Callable[[], Awaitable[None]] | None,
    camera: Callable[[], Awaitable[None]] | None,
    budget_s: float,
    link: Callable[[], Awaitable[None]] | None = None,
    panel: Callable[[], Awaitable[None]] | None = None,
    speaker_stall_s: float = SPEAKER_STALL_S,
) -> Callable[[], None]:
    """Register the parts; returns the bus unsubscriber for their event reports."""
    # A missing mic or speaker is waited for however long it takes: a restart cannot bring it
    # back, so it never stops the watchdog. A hung speaker write does (see speaker_probe).
    supervisor.add("mic", budget_s=math.inf)
    supervisor.add(
        "speaker",
        budget_s=math.inf,
        probe=speaker_probe(speaker, stall_s=speaker_stall_s),
        heal=speaker.open,
    )
    supervisor.add("capture", budget_s=budget_s, run=capture)
    if wake is not None:
        supervisor.add("wake", budget_s=budget_s, run=wake)
    if camera is not None:
        supervisor.add("camera", required=False, run=camera)
    if link is not None:
        supervisor.add("link", budget_s=budget_s, run=link)
    if panel is not None:
        supervisor.add("panel", required=False, run=panel)

    def on_event(event: Event) -> None:
        if isinstance(event, CaptureLost):
            supervisor.report("mic", f"microphone {event.device!r} lost: {event.reason}")
        elif isinstance(event, CaptureRestored):
            supervisor.report("mic", None)
        elif isinstance(event, CameraUnavailable) and camera is not None:
            supervisor.report("camera", f"camera unavailable: {event.reason}")
        elif isinstance(event, CameraAvailable) and camera is not None:
            supervisor.report("camera", None)

    return bus.subscribe(on_event)
