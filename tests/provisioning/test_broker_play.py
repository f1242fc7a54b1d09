"""The playbook's token broker play against a real SSH target (see conftest.py), installed under
a scratch prefix with the service steps off, as in test_playbook.py."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from device.broker.devices import DeviceRegistry
from device.sim.tls import ensure_certificates

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
HOST = "testbroker"
GEMINI_KEY = "broker-gemini-key-" + secrets.token_hex(4)
DEVICE_TOKEN = "wvb_" + secrets.token_urlsafe(16)

pytestmark = [
    pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-core"),
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]


class SshTarget(Protocol):
    host: str
    port: int
    user: str
    key: Path


@dataclass(frozen=True)
class BrokerRuns:
    destdir: Path
    first: str
    first_rc: int
    second: str
    tls_cert: str


def _changed(output: str) -> int:
    match = re.search(rf"^{HOST}\s+:.*changed=(\d+)", output, flags=re.M)
    assert match is not None, output[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def broker_runs(ssh_target: SshTarget) -> Iterator[BrokerRuns]:
    work = Path(tempfile.mkdtemp(prefix="wv-ansible-broker-"))
    work.chmod(0o755)
    destdir = work / "target"
    try:
        source = work / "source"
        shutil.copytree(
            REPO,
            source,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__",
                ".*_cache", ".build",
            ),
        )  # fmt: skip
        tls = ensure_certificates(work / "tls", ["broker.site.lan"])
        inventory = {
            "warehouse_voice_broker": {
                "hosts": {
                    HOST: {
                        "ansible_host": ssh_target.host,
                        "ansible_port": ssh_target.port,
                        "ansible_user": ssh_target.user,
                        "ansible_ssh_private_key_file": str(ssh_target.key),
                        "ansible_ssh_common_args": (
                            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                        ),
                        "ansible_python_interpreter": "/usr/bin/python3",
                    }
                }
            }
        }
        (work / "inventory.json").write_text(json.dumps(inventory))
        extra = {
            "warehouse_voice_destdir": str(destdir),
            "warehouse_voice_manage_services": False,
            "warehouse_voice_apt_update_cache": False,
            "warehouse_voice_package_src": str(source),
            "warehouse_voice_build_dir": str(work / "build"),
            "warehouse_voice_gemini_api_key": GEMINI_KEY,
            "warehouse_voice_broker_tls_cert": tls.cert_file.read_text(),
            "warehouse_voice_broker_tls_key": tls.key_file.read_text(),
            "warehouse_voice_broker_device_tokens": {"dock-03": DEVICE_TOKEN},
        }
        (work / "extra.json").write_text(json.dumps(extra))
        playbooks = source / "provisioning"
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(playbooks / "ansible.cfg"),
            "ANSIBLE_HOME": str(work / "home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        }
        (work / "cp").mkdir()

        def play() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    str(ANSIBLE_PLAYBOOK), "-i", str(work / "inventory.json"),
                    "-e", f"@{work / 'extra.json'}", str(playbooks / "playbook.yml"),
                ],
                cwd=playbooks, env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip

        first = play()
        second = play()
        yield BrokerRuns(
            destdir,
            first.stdout + first.stderr,
            first.returncode,
            second.stdout + second.stderr,
            tls.cert_file.read_text(),
        )
    finally:
        for control in (work / "cp").glob("*"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "target"],
                capture_output=True,
                timeout=30,
            )
        shutil.rmtree(work, ignore_errors=True)


def test_the_broker_gets_its_secrets_as_root_only_credentials(broker_runs: BrokerRuns) -> None:
    assert broker_runs.first_rc == 0, broker_runs.first[-5000:]
    credentials = broker_runs.destdir / "etc/warehouse-voice-broker/credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    expected = {"gemini-api-key": GEMINI_KEY, "tls-cert": broker_runs.tls_cert}
    for name, value in expected.items():
        info = (credentials / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
        assert (credentials / name).read_text() == value
    assert (credentials / "tls-key").is_file()
    assert GEMINI_KEY not in broker_runs.first and DEVICE_TOKEN not in broker_runs.first


def test_the_broker_knows_the_devices_by_digest_only(broker_runs: BrokerRuns) -> None:
    assert broker_runs.first_rc == 0, broker_runs.first[-5000:]
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
    assert _changed(broker_runs.second) == 0, broker_runs.second[-5000:]
