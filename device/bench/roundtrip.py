"""Round trip and barge-in through the real daemon, on a private PulseAudio with a loopback.

The speaker is a PulseAudio null sink; `module-loopback` carries what it plays into the
microphone, about 12 ms later, as a speaker next to a mic would. The daemon (built by
`device.daemon.assemble`, PyAudio on both ends) holds a hands-free session with the click
emulator (`device.bench.click_server`, its own process). A short hum fed into the microphone
ends each user turn; the model answers in clicks; the emulator finds each click's echo in the
audio that comes back and times it from send to receive.

    device-added = click round trip - loopback latency

The loopback's own latency is what PulseAudio reports for it while it runs (its sink input's
buffer and sink latency plus its source output's), sampled during the bench.

Barge-in: some replies are cut by the emulator's `interrupted`; the figure runs from that
frame leaving the emulator to the speaker having dropped its audio (the daemon's metrics
collector reports the moment, see `device.service.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from device.bench.wakepath import wake_phrase, wake_trials
from device.config import REPO_CONFIG_DIR, Settings, settings_from_dict
from device.daemon import assemble
from device.events import (
    Event,
    EventBus,
    Interrupted,
    Metric,
    Speaking,
    State,
    StateChanged,
    WireSent,
)
from device.preflight import preflight
from device.sim.pulse import PulseServer
from device.wake.detector import WakeDetector
from device.wake.models import ModelSet

MIC_RATE = 16_000
# What PulseAudio calls the loopback's streams (module-loopback's media.name).
_LOOPBACK_IN = "Loopback to"
_LOOPBACK_OUT = "Loopback from"


class BenchError(RuntimeError):
    """The bench could not run; the message says what to install or check."""


def hum(seconds: float = 0.6, peak: float = 0.08) -> bytes:
    """A vowel-like hum, loud enough for voice detection, quiet enough never to pass for a
    click (peaks stay under half the click detector's level)."""
    t = np.arange(round(seconds * MIC_RATE)) / MIC_RATE
    signal = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    signal = signal * (0.75 + 0.25 * np.sin(2 * np.pi * 4 * t))
    signal = signal / np.max(np.abs(signal)) * peak
    return bytes(np.round(signal * 32767).astype("<i2").tobytes())


def _write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(MIC_RATE)
        wav.writeframes(pcm)
    return path


@dataclass
class _Seen:
    """Events of the daemon the bench needs, with their monotonic times."""

    speaking: list[tuple[float, bool]] = field(default_factory=list)
    interrupted: list[float] = field(default_factory=list)
    silenced: list[tuple[float, float]] = field(default_factory=list)  # (at, device-side s)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    capture_to_wire_ms: list[float] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def replies(self) -> int:
        return sum(1 for _, started in self.speaking if started)

    def __call__(self, event: Event) -> None:
        self.changed.set()
        if isinstance(event, Speaking):
            self.speaking.append((event.mono, event.started))
        elif isinstance(event, Interrupted):
            self.interrupted.append(event.mono)
        elif isinstance(event, StateChanged):
            self.states.append(event.state)
        elif isinstance(event, WireSent) and event.what == "audio":
            self.capture_to_wire_ms.append(event.waited_ms)
        elif isinstance(event, Metric):
            self.metrics.setdefault(event.name, []).append(event.value)
            if event.name == "barge_in_stop_seconds":
                self.silenced.append((event.mono, event.value))


def loopback_latency_ms(pulse: PulseServer) -> float:
    """The loopback's latency as PulseAudio accounts it right now, in ms."""
    total = 0.0
    found = 0
    for kind, name in (("sink-inputs", _LOOPBACK_OUT), ("source-outputs", _LOOPBACK_IN)):
        for block in pulse.pactl("list", kind).split("\n\n"):
            if name not in block:
                continue
            found += 1
            for usec in re.findall(r"(?:Buffer|Sink|Source) Latency: (\d+) usec", block):
                total += int(usec) / 1000
    if found != 2:
        raise BenchError(f"cannot find the PulseAudio loopback's streams (found {found} of 2)")
    return total


def bench_settings(workdir: Path, server: dict[str, str]) -> Settings:
    key_file = workdir / "api-key"
    key_file.write_text(server["api_key"])
    # The clicks call no tools, but the session offers them as a real one does.
    token_file = workdir / "inventory-token"
    token_file.write_text("bench-token-unused")
    return settings_from_dict(
        {
            "device": {
                "id": "bench",
                "state_dir": str(workdir / "state"),
                "control_socket": str(workdir / "control.sock"),
                "log_level": "warning",
            },
            "live": {
                "base_url": server["url"],
                "ca_file": server["ca_file"],
                "api_key_file": str(key_file),
                "idle_timeout_s": 60.0,
                "silence_ms": 300,
            },
            "audio": {"input": "pyaudio", "output": "pyaudio"},
            # The loopback feeds the device its own voice on purpose: the click must come back
            # through the mic, so the half-duplex gate that normally hides the echo is off.
            "echo": {"mode": "off"},
            "wake": {"enabled": False},
            "gpio": {"pin_factory": "mock"},
            "tools": {"token_file": str(token_file)},
            "metrics": {"enabled": False},
        },
        base_dir=REPO_CONFIG_DIR,
    )


class _ClickServer:
    """The emulator subprocess; stopped by its own pid only."""

    def __init__(self, workdir: Path, turns: int, barge_ins: int, reply_s: float) -> None:
        self._log: IO[bytes] = (workdir / "click_server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "device.bench.click_server", "--workdir", str(workdir),
             "--turns", str(turns), "--barge-ins", str(barge_ins), "--reply-s", str(reply_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )  # fmt: skip
        self.log_path = workdir / "click_server.log"

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(
                f"the click emulator exited with {self.process.returncode}: {' | '.join(tail)}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def address(self) -> dict[str, str]:
        return await asyncio.to_thread(self._line)

    async def finish(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return await asyncio.to_thread(self._line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def _wait_for(seen: _Seen, check: Callable[[], bool], what: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not check():
                seen.changed.clear()
                await seen.changed.wait()
    except TimeoutError:
        raise BenchError(f"round-trip bench: {what} did not happen in {timeout_s:g} s") from None


async def _converse(
    pulse: PulseServer, settings: Settings, seen: _Seen, speech: Path, turns: int, wake: _Wake
) -> list[float]:
    """Wake trials first, then one hands-free session of `turns` turns; returns loopback
    latency samples."""
    bus = EventBus()
    bus.subscribe(seen)
    loopback: list[float] = []
    async with assemble(settings, preflight(settings), bus) as appliance:
        runner = asyncio.create_task(appliance.run(), name="appliance")
        try:
            if wake.trials and wake.models is not None:
                async with WakeDetector.from_model_set(wake.models) as detector:
                    wake.results = await wake_trials(
                        appliance, bus, detector, wake.phrase, wake.trials
                    )
            opened = len(seen.states)
            appliance.tap()
            await _wait_for(
                seen, lambda: State.CONVERSING in seen.states[opened:], "a hands-free session", 30
            )
            for turn in range(turns):
                replies = seen.replies
                feeder = pulse.feed_mic(speech)
                await asyncio.to_thread(feeder.wait, 30)

                def replied(before: int = replies) -> bool:
                    return seen.replies > before and not seen.speaking[-1][1]

                await _wait_for(seen, replied, f"the reply to turn {turn + 1}", 60)
                loopback.append(await asyncio.to_thread(loopback_latency_ms, pulse))
                # Let the last click's echo come back before the next hum starts.
                await asyncio.sleep(0.3)
            appliance.hang_up("bench finished")
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
    return loopback


@dataclass
class _Wake:
    models: ModelSet | None = None
    phrase: bytes = b""
    trials: int = 0
    results: list[float] = field(default_factory=list)


async def measure(
    workdir: Path,
    *,
    turns: int,
    barge_ins: int,
    reply_s: float = 3.0,
    models: ModelSet | None = None,
    wake_trials: int = 0,
) -> dict[str, Any]:
    """Run the round-trip, barge-in and (with `models`) wake benches; raw samples in ms."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    speech = _write_wav(workdir / "hum.wav", hum())
    wake = _Wake(models, wake_phrase() if models and wake_trials else b"", wake_trials)
    if models is None:
        wake.trials = 0
    seen = _Seen()
    server = _ClickServer(workdir, turns, barge_ins, reply_s)
    try:
        settings = bench_settings(workdir, await server.address())
        with PulseServer(workdir / "pulse", loopback_ms=10) as pulse, pulse.as_default():
            loopback = await _converse(pulse, settings, seen, speech, turns + barge_ins, wake)
        far = await server.finish()
    finally:
        server.stop()
    loop_ms = float(np.median(loopback))
    # Each `interrupted` pairs with the first silence after it.
    barge = []
    for sent in far["interrupted_at"]:
        after = [at for at, _ in seen.silenced if at >= sent]
        if after:
            barge.append(1000 * (min(after) - sent))
    return {
        "round_trip_ms": far["round_trips_ms"],
        "device_added_ms": [rt - loop_ms for rt in far["round_trips_ms"]],
        "first_audio_device_added_ms": [rt - loop_ms for rt in far["first_click_ms"]],
        "loopback_ms": loopback,
        "missing_clicks": far["missing_clicks"],
        "cut_clicks": far["cut_clicks"],
        "barge_in_stop_ms": barge,
        "barge_in_device_ms": [1000 * s for _, s in seen.silenced],
        "wake_to_listening_ms": wake.results,
        "wire_to_speaker_ms": [1000 * v for v in seen.metrics.get("wire_to_speaker_seconds", [])],
        "capture_to_wire_ms": seen.capture_to_wire_ms,
        "turns": far["turns"],
    }
