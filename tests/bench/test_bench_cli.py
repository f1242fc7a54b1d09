"""`warehouse-voice bench` end to end, one cheap phase at a time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from device.bench.cli import main
from device.bench.suite import PHASES


def only(phase: str) -> list[str]:
    return [arg for other in PHASES if other != phase for arg in ("--skip", other)]


def test_a_snapshot_run_prints_json_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--quick", "--json", "--workdir", str(tmp_path), *only("snapshot")])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["failed"] == {}
    snapshot = data["figures"]["snapshot_cpu_ms"]
    assert snapshot["n"] == 10
    assert 0 < snapshot["median"] <= snapshot["tail"]
    assert list(data["figures"]) == ["snapshot_cpu_ms"]
    assert len(list((tmp_path / "stills").glob("*.jpg"))) == 3


def test_a_phase_that_cannot_run_is_named_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--quick", "--state-dir", str(tmp_path / "nothing"), *only("wake-cpu")])
    out = capsys.readouterr().out
    assert code == 1
    assert "not measured:" in out
    assert "wake-cpu: RuntimeError: wake models unavailable: no wake-word models in" in out


def test_an_unknown_phase_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--skip", "everything"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err


@pytest.mark.realtime
@pytest.mark.skipif(
    shutil.which("pulseaudio") is None or shutil.which("pactl") is None,
    reason="needs apt packages pulseaudio pulseaudio-utils libasound2-plugins",
)
def test_the_idle_daemon_is_measured_against_bare_predict_then_hears_the_wake_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The daemon in its own process on a real-time PulseAudio microphone, bare predict beside
    # it on the same audio, then the wake phrase.
    code = main(["--quick", "--json", "--workdir", str(tmp_path), *only("idle-cpu")])
    data = json.loads(capsys.readouterr().out)

    assert code == 0, data["failed"]
    figure = data["figures"]["idle_cpu_ratio"]
    assert figure["n"] == 1
    assert figure["median"] > 0  # both processes used CPU over the same window
    # The idle daemon, batching its microphone, still heard the phrase that followed.
    assert "decided" in figure["note"], figure["note"]
