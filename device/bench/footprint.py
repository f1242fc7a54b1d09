"""Memory: the idle daemon's resident set, and what the wake-word detector adds to it.

The daemon is started for real (`python -m device.cli run`) with WAV audio and mock GPIO, left
idle, and its VmRSS read from /proc while it waits for a worker. The wake-word detector's share
is measured in a separate process (RSS before and after loading openWakeWord and running a few
frames), because the daemon does not load it until the wake word is configured.

    python -m device.bench.footprint --wake-rss STATE_DIR   (internal: prints one JSON line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from device.config import REPO_CONFIG_DIR
from device.service.control import request

REQUEST_WAV = REPO_CONFIG_DIR / "demo" / "where-is-sku.wav"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line (not Linux?)")


def _daemon_config(workdir: Path) -> Path:
    (workdir / "api-key").write_text("bench-key-not-secret")
    (workdir / "inventory-token").write_text("bench-token-unused")
    text = f"""
[device]
id = "bench-idle"
state_dir = "{workdir / "state"}"
control_socket = "{workdir / "control.sock"}"
log_level = "warning"

[live]
# Never contacted: the daemon stays idle.
base_url = "https://127.0.0.1:9"
api_key_file = "{workdir / "api-key"}"
instructions = "{REPO_CONFIG_DIR / "instructions.md"}"

[audio]
input = "wav"
input_wav = "{REQUEST_WAV}"
input_wav_cue = "listening"
output = "wav"
output_wav = "{workdir / "reply.wav"}"

[gpio]
pin_factory = "mock"

[tools]
token_file = "{workdir / "inventory-token"}"

[metrics]
address = "127.0.0.1:0"
"""
    path = workdir / "config.toml"
    path.write_text(text)
    return path


def daemon_idle_rss(workdir: Path, *, settle_s: float = 3.0, samples: int = 5) -> dict[str, Any]:
    """Start the daemon, wait until it answers `status` as idle, let it settle, sample RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = _daemon_config(workdir)
    log = (workdir / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
    )
    try:
        wait_idle(process, workdir / "control.sock", workdir / "daemon.log")
        time.sleep(settle_s)
        values = []
        for _ in range(samples):
            values.append(rss_mb(process.pid))
            time.sleep(0.2)
        return {"rss_mb": max(values), "samples_mb": values, "pid": process.pid}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_idle(process: subprocess.Popen[bytes], socket: Path, log: Path) -> None:
    """Until the daemon answers `idle` on its control socket; names its exit if it dies."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise RuntimeError(f"the daemon exited with {process.returncode}: {tail}")
        if socket.exists():
            try:
                if request(socket, "status").get("state") == "idle":
                    return
            except (ConnectionError, OSError, ValueError):
                pass
        time.sleep(0.1)
    raise RuntimeError("the daemon did not reach idle within 60 s")


def wake_detector_rss(state_dir: Path) -> dict[str, Any]:
    """RSS before and after loading the wake detector, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-m", "device.bench.footprint", "--wake-rss", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode:
        raise RuntimeError(f"wake detector footprint failed: {result.stderr.strip()[-300:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


async def _load_and_run(state_dir: Path) -> dict[str, Any]:
    from device.wake.detector import FRAME_SAMPLES, WakeDetector
    from device.wake.models import load_models

    before = rss_mb(os.getpid())
    async with WakeDetector.from_model_set(load_models(state_dir)) as detector:
        for _ in range(25):  # two seconds of silence: buffers and ONNX arenas reach their size
            await detector.process(bytes(2 * FRAME_SAMPLES))
        after = rss_mb(os.getpid())
    return {"before_mb": before, "after_mb": after, "added_mb": after - before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.footprint", description=__doc__)
    parser.add_argument("--wake-rss", type=Path, metavar="STATE_DIR", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_load_and_run(args.wake_rss))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
