"""The daemon's wake listener, built from `[wake]` (and `[echo]`, which decides what it hears)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from device.audio.capture import Capture
from device.config import Settings
from device.events import ErrorRaised, EventBus
from device.wake.detector import WakeDetector, WakeHit, WakeModelSpec
from device.wake.download import FetchError
from device.wake.endpoint import EndFinder
from device.wake.frontend import DAEMON_FRONT_END, build_front_end
from device.wake.listener import WakeListener
from device.wake.models import FALLBACK_THRESHOLD, default_threshold, load_models

log = logging.getLogger(__name__)


def build_listener(
    settings: Settings,
    *,
    bus: EventBus,
    capture: Capture,
    on_wake: Callable[[WakeHit], None],
    on_end: Callable[[int], None],
    speaking: Callable[[], bool],
) -> WakeListener | None:
    """The daemon's listener from `[wake]`, or None when the wake word is off or cannot run
    (then an `ErrorRaised` says why, and the device works by button)."""
    wake = settings.wake
    if not wake.enabled:
        return None
    if settings.live.turn_detection == "manual":
        log.warning("wake word off: live.turn_detection = manual marks turns by button only")
        return None
    try:
        model_set = load_models(settings.device.state_dir)
        files = [model_set.get(name) for name in wake.models]
    except (FetchError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        log.error("wake word off: %s", message)
        bus.publish(ErrorRaised(where="wake", message=f"wake word off: {message}"))
        return None
    specs = []
    for file in files:
        own = wake.model(file.name)
        assert own.refractory_s is not None
        specs.append(
            WakeModelSpec(
                name=file.name,
                path=file.path,
                threshold=(
                    own.threshold
                    if own.threshold is not None
                    else default_threshold(file.name)
                    if wake.benchmark_thresholds
                    else FALLBACK_THRESHOLD
                ),
                refractory_s=own.refractory_s,
                end_latency_s=own.end_latency_s,
            )
        )
    framework = specs[0].framework
    melspec, embedding = model_set.feature_paths(framework)
    detector = WakeDetector(specs, melspec_path=melspec, embedding_path=embedding)
    finders: dict[str, EndFinder] = {}
    if wake.trim and framework == "onnx":
        finders = {
            spec.name: EndFinder(spec.path, melspec_path=melspec, embedding_path=embedding)
            for spec in specs
        }
    raw_audio = wake.ignore_while_speaking or settings.echo.mode == "off"
    front_end = (
        build_front_end(DAEMON_FRONT_END) if raw_audio and DAEMON_FRONT_END != "raw" else None
    )
    return WakeListener(
        detector,
        capture,
        bus=bus,
        on_wake=on_wake,
        on_end=on_end,
        speaking=speaking,
        ignore_while_speaking=wake.ignore_while_speaking,
        # Headsets (echo off) never hear the device: there the raw audio is always safe.
        raw_audio=raw_audio,
        front_end=front_end,
        # The room rings on after the speaker stops, as long as the echo gate allows for.
        speaking_tail_s=settings.echo.tail_ms / 1000,
        finders=finders,
    )
