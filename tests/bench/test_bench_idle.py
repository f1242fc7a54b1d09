"""`warehouse-voice bench`'s idle CPU phase for real: the daemon in its own process on a
real-time PulseAudio microphone, bare predict beside it, then the wake phrase."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from device.bench.cli import main
from device.bench.suite import PHASES

pytestmark = [
    pytest.mark.realtime,
    pytest.mark.skipif(
        shutil.which("pulseaudio") is None or shutil.which("pactl") is None,
        reason="needs apt packages pulseaudio pulseaudio-utils libasound2-plugins",
    ),
]


def test_the_idle_daemon_is_measured_against_bare_predict_then_hears_the_wake_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip = [arg for other in PHASES if other != "idle-cpu" for arg in ("--skip", other)]
    code = main(["--quick", "--json", "--workdir", str(tmp_path), *skip])
    data = json.loads(capsys.readouterr().out)

    assert code == 0, data["failed"]
    figure = data["figures"]["idle_cpu_ratio"]
    assert figure["n"] == 1
    assert figure["median"] > 0  # both processes used CPU over the same window
    # The idle daemon, batching its microphone, still heard the phrase that followed.
    assert "decided" in figure["note"], figure["note"]
