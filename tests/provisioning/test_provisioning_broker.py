"""The playbook's token broker play against a real SSH target (see conftest.py), installed under
a scratch prefix with the service steps off, as in device_plays.py. Its two runs
(broker_plays.py) go on in the background beside the rest of the session (session_plays.py)."""

from __future__ import annotations

import stat

import pytest

from device.broker.devices import DeviceRegistry
from tests.provisioning.broker_plays import DEVICE_TOKEN, GEMINI_KEY, BrokerRuns
from tests.provisioning.support import REPO, needs_ansible

pytestmark = [
    needs_ansible,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]


def test_the_broker_gets_its_secrets_as_root_only_credentials(broker_runs: BrokerRuns) -> None:
    assert broker_runs.first.returncode == 0, broker_runs.first.output[-5000:]
    credentials = broker_runs.destdir / "etc/warehouse-voice-broker/credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    expected = {"gemini-api-key": GEMINI_KEY, "tls-cert": broker_runs.tls_cert}
    for name, value in expected.items():
        info = (credentials / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
        assert (credentials / name).read_text() == value
    assert (credentials / "tls-key").is_file()
    assert GEMINI_KEY not in broker_runs.first.output
    assert DEVICE_TOKEN not in broker_runs.first.output


def test_the_broker_knows_the_devices_by_digest_only(broker_runs: BrokerRuns) -> None:
    assert broker_runs.first.returncode == 0, broker_runs.first.output[-5000:]
    devices = broker_runs.destdir / "var/lib/warehouse-voice-token-broker/devices.json"
    assert DEVICE_TOKEN not in devices.read_text()
    assert stat.S_IMODE(devices.stat().st_mode) == 0o600
    assert DeviceRegistry(devices).authenticate(DEVICE_TOKEN) == "dock-03"
    config = (broker_runs.destdir / "etc/warehouse-voice-broker/broker.toml").read_text()
    assert 'devices_file = "/var/lib/warehouse-voice-token-broker/devices.json"' in config
    unit = broker_runs.destdir / "etc/systemd/system/warehouse-voice-token-broker.service"
    assert unit.read_text() == (REPO / "systemd/warehouse-voice-token-broker.service").read_text()
    current = broker_runs.destdir / "opt/warehouse-voice/current"
    assert current.is_symlink() and (current / "bin/warehouse-voice").exists()


def test_a_second_broker_run_changes_nothing(broker_runs: BrokerRuns) -> None:
    second = broker_runs.second
    assert second.returncode == 0, second.output[-5000:]
    assert second.recap["changed"] == 0, second.output[-5000:]
