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
def test_security_exposure_is_at_most_1_5(unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=15", str(UNIT_DIR / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout[-500:]
    assert float(match.group(1)) <= 1.5


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
        "gemini-api-key:/etc/warehouse-voice-broker/credentials/gemini-api-key",
        "tls-cert:/etc/warehouse-voice-broker/credentials/tls-cert",
        "tls-key:/etc/warehouse-voice-broker/credentials/tls-key",
    ]
    assert values("warehouse-voice-token-broker.service", "DynamicUser") == ["yes"]
    assert values("warehouse-voice-token-broker.service", "StateDirectory") == [
        "warehouse-voice-token-broker"
    ]


def test_the_broker_example_keeps_its_devices_in_the_units_state_directory() -> None:
    from device.broker.settings import load_broker_settings

    example = UNIT_DIR.parent / "device" / "broker" / "broker.example.toml"
    settings = load_broker_settings(example)
    (state,) = values("warehouse-voice-token-broker.service", "StateDirectory")
    assert settings.devices_file.parent == Path("/var/lib", state)
    # TLS comes from the unit's credentials, so the example names no files of its own.
    assert settings.tls_cert_file is None and settings.tls_key_file is None


def test_time_sync_is_wanted_as_well_as_waited_for() -> None:
    for unit in UNITS:
        after = " ".join(values(unit, "After")).split()
        wants = " ".join(values(unit, "Wants")).split()
        for target in ("time-sync.target", "network-online.target"):
            if target in after:
                assert target in wants, f"{unit}: After={target} without Wants= does nothing"
    assert "time-sync.target" in " ".join(values("warehouse-voice.service", "After"))


def test_an_ephemeral_device_loads_the_broker_token_and_never_the_gemini_key(
    tmp_path: Path,
) -> None:
    dropin = (UNIT_DIR / "warehouse-voice-ephemeral.conf").read_text()
    lines = [ln for ln in dropin.splitlines() if ln.startswith("LoadCredential=")]
    assert lines[0] == "LoadCredential="  # drops the unit's gemini-api-key first
    names = {ln.split("=", 1)[1].split(":", 1)[0] for ln in lines[1:]}
    assert names == {"inventory-token", "broker-token"}
    # systemd accepts the unit with the drop-in applied.
    unit = (UNIT_DIR / "warehouse-voice.service").read_text()
    dropin_dir = tmp_path / "warehouse-voice.service.d"
    dropin_dir.mkdir()
    (dropin_dir / "ephemeral.conf").write_text(dropin)
    result = verify(unit, "warehouse-voice.service", tmp_path)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
