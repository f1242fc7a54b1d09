"""The daemon idling on the wake word: its CPU against bare openWakeWord, its memory, and how
fast it shows `listening` once the wake word is heard.

    python -m device.bench.idle_wake              # 60 s of idle audio
    python -m device.bench.idle_wake --seconds 20

`warehouse-voice bench` runs it as its `idle-cpu` phase.

The real daemon (`python -m device.cli run`) runs with the wake word on, its microphone
PyAudio on ALSA's default device, here a private PulseAudio whose source plays a WAV in real
time (the path a user's audio takes): floor noise with occasional warehouse talk (never the
wake word), then "hey jarvis" and a request. Beside it, in one run and over the same window of
the same audio, two other processes are measured: bare `predict` (openWakeWord's pipeline,
`device.wake.runtime`) fed the same WAV in 80 ms frames, paced like a microphone; and the
daemon's microphone source alone, reading the same PulseAudio source and throwing the audio
away (the capture floor, which bare predict does not pay). CPU is user plus system time from
/proc for each process, never wall time. The ratio is the daemon's whole cost of listening
(capture, fan-out, echo stage, detector thread, event loop, everything else it runs) over the
inference it cannot avoid. Then the wake phrase arrives, and the daemon's own metrics
(`wake_detect_ms`, `wake_to_listening_ms` in its event log) say how long the listening state
took. The Live endpoint is never reachable, so the session that follows fails; that is not
measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from device.bench.footprint import rss_mb, wait_idle
from device.bench.wake import _idle_audio, _print
from device.config import REPO_CONFIG_DIR
from device.sim.speech import noise, synthesize_parts
from device.wake.detector import FRAME_SAMPLES, SAMPLE_RATE
from device.wake.download import Downloader
from device.wake.models import ModelSet, fetch_models

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def thread_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread's name and user plus system CPU seconds (Linux)."""
    found: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def _by_thread(
    pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """CPU s per minute of each thread that used any, busiest first. Python threads all show as
    `python` (3.11 does not name OS threads): the event loop is the one whose id is the pid;
    `threaded-ml` is libpulse's own thread (ALSA's pulse plugin)."""
    used = []
    for tid, (name, cpu) in after.items():
        spent = cpu - before.get(tid, (name, 0.0))[1]
        if spent > 0:
            label = "event loop (main)" if tid == pid else f"{name} {tid}"
            used.append((round(60 * spent / wall, 3), label))
    return {label: per_min for per_min, label in sorted(used, reverse=True)}


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def _config(workdir: Path, state: Path, echo: str, wake: bool = True) -> Path:
    (workdir / "api-key").write_text("bench-key-not-secret")
    (workdir / "inventory-token").write_text("bench-token-unused")
    path = workdir / "config.toml"
    path.write_text(
        f"""
[device]
id = "bench-idle-wake"
state_dir = "{state}"
control_socket = "{workdir / "control.sock"}"
event_log = "{workdir / "events.jsonl"}"
log_level = "warning"
[live]
base_url = "https://127.0.0.1:9"
api_key_file = "{workdir / "api-key"}"
instructions = "{REPO_CONFIG_DIR / "instructions.md"}"
connect_timeout_s = 2.0
[audio]
# The path a user's audio takes: PyAudio on ALSA's default device, here a private PulseAudio.
input = "pyaudio"
output = "pyaudio"
[wake]
enabled = {"true" if wake else "false"}
[echo]
mode = "{echo}"
[gpio]
pin_factory = "mock"
[tools]
token_file = "{workdir / "inventory-token"}"
[metrics]
enabled = false
"""
    )
    return path


def _metrics(log: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    if not log.exists():
        return found
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "metric" and str(record.get("name", "")).startswith("wake"):
            found[str(record["name"])] = float(record["value"])
        if record.get("kind") == "wake_end":
            found["wake_end_refine_ms"] = float(record["took_ms"])
    return found


def bare_predict(wav: Path, ready: Path) -> None:
    """The baseline process: bare `predict` on `wav` in 80 ms frames, paced like a microphone
    from the moment `ready` appears (when the daemon's microphone starts playing the same file),
    until killed. Its CPU is read from /proc by the parent, like the daemon's."""
    from device.wake.models import load_models
    from device.wake.runtime import runtime_for

    model = runtime_for(load_models(Path(os.environ["WV_BENCH_STATE"])))
    with wave.open(str(wav), "rb") as source:
        audio = np.frombuffer(source.readframes(source.getnframes()), "<i2")
    audio = audio[: audio.size // FRAME_SAMPLES * FRAME_SAMPLES]
    while not ready.exists():
        time.sleep(0.05)
    began = time.monotonic()
    for index in range(audio.size // FRAME_SAMPLES):
        # Each frame is due when a microphone would have delivered it.
        time.sleep(max(0.0, began + (index + 1) * FRAME_SAMPLES / SAMPLE_RATE - time.monotonic()))
        model.predict(audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES])


def capture_only(seconds: float) -> None:
    """The capture floor: the daemon's microphone source (PyAudio with its buffers, handing
    over the idle daemon's batches, the same default device) read and thrown away, for
    `seconds`."""
    import asyncio

    from device.audio.source import PyAudioSource
    from device.wake.listener import IDLE_HANDOVER_MS

    async def run() -> None:
        async with PyAudioSource("default") as mic:
            mic.handover_ms = IDLE_HANDOVER_MS
            async with asyncio.timeout(seconds):
                async for _chunk in mic.chunks():
                    pass

    with contextlib.suppress(TimeoutError):
        asyncio.run(run())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(
    workdir: Path,
    model_set: ModelSet,
    seconds: float,
    echo: str,
    *,
    wake: bool = True,
    daemon_python: str = sys.executable,
) -> dict[str, Any]:
    """One run: the daemon (its microphone a private PulseAudio source playing the WAV) and the
    bare-predict process start on the same audio at the same moment; both are idle for
    `seconds` side by side, and their CPU is read over that same window. Then the wake phrase.
    `daemon_python` runs the daemon: a device's venv holds the runtime dependencies only."""
    from device.sim.pulse import PulseServer

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "events.jsonl").unlink(missing_ok=True)  # figures from this run only
    ready = workdir / "feeding"
    ready.unlink(missing_ok=True)
    warmup_s = 5.0
    idle = _idle_audio(warmup_s + seconds + 2.0)
    speech, _ = synthesize_parts(["hey jarvis", "where is SKU one zero four four one seven"])
    # A pause before the wake word: openWakeWord misses some phrases that follow talk closely.
    quiet = np.frombuffer(noise(4.0, level_dbfs=-55, seed=4), "<i2")
    mic = workdir / "mic.wav"
    _write_wav(mic, np.concatenate([idle, quiet, np.frombuffer(speech, "<i2"), quiet]))
    config = _config(workdir, model_set.directory.parent, echo, wake)
    log = (workdir / "daemon.log").open("wb")
    with PulseServer(workdir / "pulse") as pulse, pulse.as_default():
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "GEMINI_API_KEY")}
        env["WV_BENCH_STATE"] = str(model_set.directory.parent)
        process = subprocess.Popen(
            [daemon_python, "-m", "device.cli", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        bare = subprocess.Popen(
            [sys.executable, "-m", "device.bench.idle_wake", "--bare", str(mic), str(ready)],
            stdin=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        floor = subprocess.Popen(
            [sys.executable, "-m", "device.bench.idle_wake", "--capture-only", str(seconds + 60)],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        feeder: subprocess.Popen[bytes] | None = None
        try:
            wait_idle(process, workdir / "control.sock", workdir / "daemon.log")
            feeder = pulse.feed_mic(mic)
            ready.touch()
            time.sleep(warmup_s)  # both past their first frames and caches
            cpu0, base0, t0 = cpu_s(process.pid), cpu_s(bare.pid), time.monotonic()
            floor0, threads0 = cpu_s(floor.pid), thread_cpu_s(process.pid)
            time.sleep(seconds)
            cpu1, base1, t1 = cpu_s(process.pid), cpu_s(bare.pid), time.monotonic()
            floor1, threads1 = cpu_s(floor.pid), thread_cpu_s(process.pid)
            rss = rss_mb(process.pid)
            _stop(bare)
            # Then the wake phrase: wait for the daemon's own figures in its event log.
            deadline = time.monotonic() + seconds + 30
            figures: dict[str, float] = {}
            while wake and time.monotonic() < deadline and "wake_end_refine_ms" not in figures:
                time.sleep(0.5)
                figures = _metrics(workdir / "events.jsonl")
        finally:
            for child in (bare, floor, process, feeder):
                if child is not None:
                    _stop(child)
            log.close()
    wall = t1 - t0
    daemon, bare_s, floor_s = cpu1 - cpu0, base1 - base0, floor1 - floor0
    return {
        "echo_mode": echo,
        "wake_word": wake,
        "idle_seconds": round(wall, 2),
        "daemon_cpu_s": round(daemon, 3),
        "bare_predict_cpu_s": round(bare_s, 3),
        "ratio": round(daemon / bare_s, 3) if bare_s else None,
        "daemon_cpu_s_per_min": round(60 * daemon / wall, 3),
        "bare_predict_cpu_s_per_min": round(60 * bare_s / wall, 3),
        # PortAudio capture alone (this machine: PulseAudio through ALSA's pulse plugin), which
        # bare predict does not pay: what is left of the daemon's cost beyond both is its own.
        "capture_only_cpu_s_per_min": round(60 * floor_s / wall, 3),
        "ratio_to_capture_plus_predict": round(daemon / (bare_s + floor_s), 3)
        if bare_s + floor_s
        else None,
        "daemon_python": daemon_python,
        "daemon_rss_mb": round(rss, 1),
        # Where the daemon's CPU went, per thread (CPU s per minute): the detector's inference
        # thread is the one near bare predict's figure, PortAudio's callback thread and
        # libpulse's `threaded-ml` are the capture, the event loop is everything else.
        "daemon_threads_cpu_s_per_min": _by_thread(process.pid, threads0, threads1, wall),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **(
            {k: round(v, 2) for k, v in figures.items()} or {"wake": "not heard" if wake else "off"}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.idle_wake", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wv-bench-idle-wake"))
    parser.add_argument("--echo", default="half_duplex", choices=["half_duplex", "aec", "off"])
    parser.add_argument(
        "--baseline", action="store_true", help="also run the daemon with the wake word off"
    )
    parser.add_argument(
        "--daemon-python",
        default=sys.executable,
        help="the interpreter that runs the daemon, e.g. a venv with the runtime dependencies "
        "only (pip install '.[native]'), as a device has; default: this one",
    )
    parser.add_argument("--bare", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--capture-only", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        bare_predict(*args.bare)
        return 0
    if args.capture_only:
        capture_only(args.capture_only)
        return 0
    cache = Path.home() / ".cache" / "warehouse-voice-bench"
    model_set = fetch_models(
        args.workdir / "state", downloader=Downloader(wheel_cache=cache), notify=lambda line: None
    )
    t = time.perf_counter()
    result = measure(
        args.workdir / args.echo,
        model_set,
        args.seconds,
        args.echo,
        daemon_python=args.daemon_python,
    )
    _print("daemon idling on the wake word", result, time.perf_counter() - t)
    if args.baseline:
        t = time.perf_counter()
        base = measure(
            args.workdir / "nowake",
            model_set,
            args.seconds,
            args.echo,
            wake=False,
            daemon_python=args.daemon_python,
        )
        _print("the same daemon with the wake word off", base, time.perf_counter() - t)
        added = result["daemon_cpu_s"] - base["daemon_cpu_s"]
        print(
            f"  the wake word's share of the daemon: {added:.3f} CPU s, "
            f"{added / result['bare_predict_cpu_s']:.2f}x bare predict"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
