"""`warehouse-voice selftest`: is this device ready to work? One line per part, and why not.

Checks the microphone (and its level), the speaker, the camera, GPIO, the wake-word models,
the inventory API (reachable, token accepted) and the Gemini endpoint (reachable, key valid)
without opening a Live session: the key is checked with a free model lookup.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np

from device.config import ConfigError, Settings
from device.preflight import Resolved, preflight

GEMINI_URL = "https://generativelanguage.googleapis.com"
CHECKS = ("config", "mic", "speaker", "camera", "gpio", "wake", "inventory", "gemini")


@dataclass
class Result:
    check: str
    ok: bool
    detail: str


Check = Callable[[Settings, Resolved], Awaitable[str]]


class CheckFailed(Exception):
    """A check's failure, with the one line a person needs."""


async def check_mic(settings: Settings, _resolved: Resolved) -> str:
    audio = settings.audio
    if audio.input == "wav":
        path = settings.path(audio.input_wav) if audio.input_wav else None
        if path is None or not path.is_file():
            raise CheckFailed(f"mic: WAV input {path} is missing (audio.input_wav)")
        return f"WAV input {path}"
    from device.audio.errors import AudioError
    from device.audio.source import PyAudioSource

    source = PyAudioSource(audio.input_device, chunk_ms=audio.chunk_ms, max_queued_ms=60_000)
    pcm = bytearray()
    try:
        async with asyncio.timeout(5.0):
            async for chunk in source.chunks():
                pcm += chunk
                if len(pcm) >= 16000:  # half a second is enough for a level
                    break
    except (AudioError, OSError) as exc:
        raise CheckFailed(f"mic {audio.input_device!r} (audio.input_device): {exc}") from None
    except TimeoutError:
        raise CheckFailed(f"mic {audio.input_device!r}: no audio arrived in 5 s") from None
    finally:
        await source.close()
    samples = np.frombuffer(bytes(pcm), dtype=np.int16).astype(np.float64)
    rms = math.sqrt(float(np.mean(samples**2))) if samples.size else 0.0
    level = 20 * math.log10(max(rms, 1.0) / 32768)
    note = " (silent: is it muted or unplugged?)" if level < -85 else ""
    return f"{audio.input_device!r}: level {level:.0f} dBFS{note}"


async def check_speaker(settings: Settings, _resolved: Resolved) -> str:
    audio = settings.audio
    if audio.output == "wav":
        target = settings.path(audio.output_wav) if audio.output_wav else None
        if target is None or not target.parent.is_dir():
            raise CheckFailed(f"speaker: no folder for WAV output {target} (audio.output_wav)")
        return f"WAV output {target}"
    from device.audio.errors import AudioError
    from device.audio.sink import PyAudioSink

    # A short, quiet 880 Hz beep: audible to whoever runs the test, harmless to anyone else.
    t = np.arange(int(24000 * 0.15)) / 24000
    beep = (np.sin(2 * np.pi * 880 * t) * 3000).astype(np.int16).tobytes()
    sink = PyAudioSink(audio.output_device)
    try:
        async with asyncio.timeout(5.0):
            await sink.write(beep)
            await sink.drain()
    except (AudioError, OSError) as exc:
        raise CheckFailed(f"speaker {audio.output_device!r} (audio.output_device): {exc}") from None
    except TimeoutError:
        raise CheckFailed(f"speaker {audio.output_device!r}: playback stalled") from None
    finally:
        await sink.close()
    return f"{audio.output_device!r}: played a beep"


async def check_camera(settings: Settings, _resolved: Resolved) -> str:
    from device.vision.eye import camera_settings
    from device.vision.selftest import camera_selftest

    report = await camera_selftest(camera_settings(settings))
    if not report.ok:
        raise CheckFailed("; ".join(report.lines))
    return "; ".join(report.lines)


async def check_gpio(settings: Settings, _resolved: Resolved) -> str:
    from device.events import ErrorRaised, Event, EventBus
    from device.panel.board import Board

    bus = EventBus()
    errors: list[str] = []

    def note(event: Event) -> None:
        if isinstance(event, ErrorRaised):
            errors.append(event.message)

    bus.subscribe(note)
    board = Board(settings, bus=bus, handler=_NoHandler())
    board.open(asyncio.get_running_loop())
    board.close()
    if errors:
        raise CheckFailed(f"gpio: {errors[0]} (gpio, button and leds sections)")
    return f"pins open ({settings.gpio.pin_factory} factory, LEDs {settings.leds.kind})"


class _NoHandler:
    def talk_start(self) -> None: ...
    def talk_end(self) -> None: ...
    def tap(self) -> None: ...
    def long_press(self) -> None: ...
    def confirm(self) -> None: ...
    def interrupt(self) -> None: ...
    def set_muted(self, muted: bool) -> None: ...


async def check_wake(settings: Settings, _resolved: Resolved) -> str:
    from device.wake.download import FetchError
    from device.wake.models import load_models

    try:
        models = await asyncio.to_thread(load_models, settings.device.state_dir)
    except (FetchError, OSError, ValueError) as exc:
        raise CheckFailed(f"wake models: {exc}") from None
    names = ", ".join(sorted(m.name for m in models.wakewords))
    return f"verified: {names}"


async def check_inventory(settings: Settings, resolved: Resolved) -> str:
    url = settings.tools.inventory_url.rstrip("/")
    headers = {"Authorization": f"Bearer {resolved.inventory_token or ''}"}
    try:
        async with httpx.AsyncClient(timeout=5.0, headers=headers) as client:
            response = await client.get(f"{url}/picks/next")
    except httpx.HTTPError as exc:
        raise CheckFailed(
            f"inventory API {url} unreachable: {exc!s} (tools.inventory_url)"
        ) from None
    if response.status_code in (401, 403):
        raise CheckFailed(f"inventory API {url} refused the device token (tools.token_file)")
    if response.status_code >= 500:
        raise CheckFailed(f"inventory API {url} answered {response.status_code}")
    return f"{url}: token accepted"


async def check_gemini(settings: Settings, resolved: Resolved) -> str:
    live = settings.live
    if live.auth == "ephemeral":
        return await _check_broker(settings)
    base = (live.base_url or GEMINI_URL).rstrip("/")
    url = f"{base}/{live.api_version}/models/{live.model}"
    verify: ssl.SSLContext | bool = True
    if live.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.path(live.ca_file)))
    try:
        async with httpx.AsyncClient(timeout=10.0, verify=verify) as client:
            response = await client.get(url, headers={"x-goog-api-key": resolved.api_key})
    except httpx.HTTPError as exc:
        raise CheckFailed(f"Gemini endpoint {base} unreachable: {exc!s}") from None
    if response.status_code in (400, 401, 403):
        raise CheckFailed(f"Gemini rejected the API key ({response.status_code}); check the key")
    if response.status_code == 404:
        raise CheckFailed(f"Gemini has no model {live.model!r} (live.model)")
    if response.status_code != 200:
        raise CheckFailed(f"Gemini endpoint answered {response.status_code}")
    return f"{base}: key valid, model {live.model} available"


async def _check_broker(settings: Settings) -> str:
    """In ephemeral mode the device holds no key: it must be able to get a token instead."""
    from device.config import read_secret
    from device.live.tokens import BrokerTokens

    live = settings.live
    try:
        token = read_secret(
            key="live.broker_token_file",
            env_var="WAREHOUSE_VOICE_BROKER_TOKEN",
            credential="broker-token",
            file=settings.path(live.broker_token_file) if live.broker_token_file else None,
        )
        ca_file = settings.path(live.broker_ca_file) if live.broker_ca_file else None
        minted = await BrokerTokens(live.broker_url, token or "", ca_file=ca_file).mint()
    except ConfigError as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:
        raise CheckFailed(f"token broker {live.broker_url}: {exc}") from None
    return f"token broker {live.broker_url} minted a token for {minted.model or live.model}"


_CHECKS: dict[str, Check] = {
    "mic": check_mic,
    "speaker": check_speaker,
    "camera": check_camera,
    "gpio": check_gpio,
    "wake": check_wake,
    "inventory": check_inventory,
    "gemini": check_gemini,
}


NO_SECRETS = frozenset({"camera", "gpio"})


async def run_selftest(settings: Settings, only: tuple[str, ...] = ()) -> list[Result]:
    results: list[Result] = []
    try:
        if only and set(only) <= NO_SECRETS:
            # The camera and the pins are tested on a fresh device, before any secret is set.
            resolved = Resolved(api_key="", inventory_token=None, instructions="")
        else:
            resolved = preflight(settings, check_devices=False)
    except ConfigError as exc:
        return [Result("config", False, str(exc))]
    results.append(Result("config", True, f"device {settings.device.id}"))
    for name, check in _CHECKS.items():
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            detail = await check(settings, resolved)
            ok = True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # a broken check is a failed check, never a crash
            detail, ok = f"{name}: {type(exc).__name__}: {exc}", False
        took = time.monotonic() - started
        results.append(Result(name, ok, f"{detail} [{took:.1f} s]"))
    return results


def render(results: list[Result], as_json: bool) -> str:
    if as_json:
        payload: dict[str, Any] = {
            "ok": all(r.ok for r in results),
            "checks": [asdict(r) for r in results],
        }
        return json.dumps(payload, indent=2)
    lines = [f"{'check':<10} {'result':<6} detail"]
    lines += [f"{r.check:<10} {'ok' if r.ok else 'FAIL':<6} {r.detail}" for r in results]
    return "\n".join(lines)
