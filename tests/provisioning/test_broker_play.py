"""The playbook's token broker play against a real SSH target (see conftest.py), installed under
a scratch prefix with the service steps off, as in playbook_fixtures.py."""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.broker.devices import DeviceRegistry
from device.sim.tls import ensure_certificates
from tests.provisioning.playbook_fixtures import SshTarget, inventory_host
from tests.provisioning.support import (
    ANSIBLE_PLAYBOOK,
    REPO,
    ReleaseKit,
    Run,
    close_ssh_masters,
    run_playbook,
)

HOST = "testbroker"
GEMINI_KEY = "broker-gemini-key-" + secrets.token_hex(4)
DEVICE_TOKEN = "wvb_" + secrets.token_urlsafe(16)

pytestmark = [
    pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-core"),
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]


@dataclass(frozen=True)
class BrokerRuns:
    destdir: Path
    first: Run
    second: Run
    tls_cert: str


@pytest.fixture(scope="module")
def broker_runs(ssh_target: SshTarget, release_kit: ReleaseKit) -> Iterator[BrokerRuns]:
    work = release_kit.work / "broker"
    work.mkdir()
    destdir = work / "target"
    try:
        tls = ensure_certificates(work / "tls", ["broker.site.lan"])
        inventory = {"warehouse_voice_broker": {"hosts": {HOST: inventory_host(ssh_target)}}}
        (work / "inventory.json").write_text(json.dumps(inventory))
        extra = {
            "warehouse_voice_destdir": str(destdir),
            "warehouse_voice_manage_services": False,
            "warehouse_voice_apt_update_cache": False,
            # The session's wheel of the checkout: the role's other kind of package source (the
            # device plays build theirs from the source checkout).
            "warehouse_voice_package_src": str(release_kit.wheel),
            "warehouse_voice_pip_extra_args": release_kit.pip_args(),
            "warehouse_voice_gemini_api_key": GEMINI_KEY,
            "warehouse_voice_broker_tls_cert": tls.cert_file.read_text(),
            "warehouse_voice_broker_tls_key": tls.key_file.read_text(),
            "warehouse_voice_broker_device_tokens": {"dock-03": DEVICE_TOKEN},
        }
        (work / "extra.json").write_text(json.dumps(extra))
        playbooks = release_kit.source / "provisioning"
        args = ("-i", str(work / "inventory.json"), "-e", f"@{work / 'extra.json'}")
        first = run_playbook(playbooks, work, HOST, *args)
        second = run_playbook(playbooks, work, HOST, *args)
        yield BrokerRuns(destdir, first, second, tls.cert_file.read_text())
    finally:
        close_ssh_masters(work)


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
