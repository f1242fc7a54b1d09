"""The unit files: systemd's own verifier and security assessment, and their fit with the app."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from device.config import DEFAULT_CONFIG_PATH, DeviceSettings

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = sorted(p.name for p in UNIT_DIR.glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="needs systemd-analyze: apt-get install systemd"
)


def settings_of(unit: str) -> list[tuple[str, str]]:
    pairs = []
    for line in (UNIT_DIR / unit).read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def values(unit: str, key: str) -> list[str]:
    return [value for k, value in settings_of(unit) if k == key]


def verify(unit_text: str, name: str, root: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a copy whose ExecStart binary lives under `root`.

    verify insists that the ExecStart binary exists and is executable. Rather than install
    the package into /opt on the test machine, the copy points ExecStart at a stub at the same
    relative path under a temporary root; every other setting is verified exactly as written.
    """
    assert SYSTEMD_ANALYZE is not None
    for binary in re.findall(r"^ExecStart=(/\S+)", unit_text, flags=re.M):
        stub = root / binary.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    copy = root / name
    copy.write_text(re.sub(r"^ExecStart=/", f"ExecStart={root}/", unit_text, flags=re.M))
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )


def test_all_three_units_are_present() -> None:
    assert UNITS == [
        "warehouse-voice-inventory.service",
        "warehouse-voice-token-broker.service",
        "warehouse-voice.service",
    ]


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_verify_passes_without_warnings(unit: str, tmp_path: Path) -> None:
    result = verify((UNIT_DIR / unit).read_text(), unit, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_helper_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above has teeth: unknown keys only warn, and the warning is what we catch."""
    text = (UNIT_DIR / "warehouse-voice.service").read_text()
    result = verify(
        text.replace("WatchdogSec=", "WatchDogSec="), "warehouse-voice.service", tmp_path
    )
    assert "Unknown key 'WatchDogSec'" in result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_at_most_2(unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(UNIT_DIR / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout[-500:]
    assert float(match.group(1)) <= 2.0


def test_daemon_unit_matches_what_the_app_expects() -> None:
    unit = "warehouse-voice.service"
    assert values(unit, "Type") == ["notify"]
    assert values(unit, "WatchdogSec")
    assert values(unit, "RestartPreventExitStatus") == ["78"]
    assert values(unit, "Restart") == ["on-failure"]
    (exec_start,) = values(unit, "ExecStart")
    assert exec_start.split()[1:] == ["run", "--config", str(DEFAULT_CONFIG_PATH)]
    credentials = {value.split(":", 1)[0] for value in values(unit, "LoadCredential")}
    assert credentials == {"gemini-api-key", "inventory-token"}
    defaults = DeviceSettings.model_validate({})
    assert Path("/var/lib", *values(unit, "StateDirectory")) == defaults.state_dir
    assert Path("/run", *values(unit, "RuntimeDirectory")) == defaults.control_socket.parent
    assert set(values(unit, "SupplementaryGroups")[0].split()) == {"audio", "video", "gpio"}
    allowed = {value.split()[0] for value in values(unit, "DeviceAllow")}
    assert {"char-alsa", "char-gpiochip", "char-video4linux", "char-media"} <= allowed
    assert values(unit, "DevicePolicy") == ["closed"]


def test_helper_units_run_their_commands() -> None:
    (inventory,) = values("warehouse-voice-inventory.service", "ExecStart")
    assert inventory.split()[1:3] == ["inventory", "serve"]
    (broker,) = values("warehouse-voice-token-broker.service", "ExecStart")
    assert broker.split()[1] == "token-broker"
    assert values("warehouse-voice-token-broker.service", "LoadCredential") == [
        "gemini-api-key:/etc/warehouse-voice/credentials/gemini-api-key"
    ]
