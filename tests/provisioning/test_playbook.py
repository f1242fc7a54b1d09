"""The Ansible playbook against a real SSH target, with the install under a scratch prefix.

The target is this machine, reached through an sshd the fixture starts on 127.0.0.1. No systemd
runs as PID 1 here, so the service tasks are switched off by their variable; everything else
(apt, user and groups, wheel build, venv, pip, config, credentials, units) runs for real, with
every file under `warehouse_voice_destdir`. pip installs the dependencies for real too: from
the local package cache and indexes this machine has, that takes seconds, and it is the path a
device takes, where --no-deps tricks would test something else.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from device.config import load_settings


class SshTarget(Protocol):
    """What the `ssh_target` fixture (conftest.py) provides."""

    host: str
    port: int
    user: str
    key: Path


REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "provisioning"
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
ANSIBLE_LINT = BIN / "ansible-lint"
HOST = "testpi"
GEMINI_KEY = "test-gemini-key-" + secrets.token_hex(4)
INVENTORY_TOKEN = "test-inventory-token-" + secrets.token_hex(4)

pytestmark = [
    pytest.mark.skipif(
        not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-core: pip install ansible-core"
    ),
    pytest.mark.slow,
]


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    recap: dict[str, int]


@dataclass(frozen=True)
class Provisioned:
    destdir: Path
    service_user: str
    check_on_fresh: Run
    left_by_check: list[str]
    first: Run
    second: Run
    check_after: Run


def _recap(output: str) -> dict[str, int]:
    match = re.search(rf"^{HOST}\s+:\s+(.*)$", output, flags=re.M)
    assert match is not None, output[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def provisioned(
    ssh_target: SshTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provisioned]:
    work = tmp_path_factory.mktemp("ansible")
    work.chmod(0o755)
    destdir = work / "target"
    service_user = f"wvsvc{secrets.token_hex(3)}"
    gpio_existed = _group_exists("gpio")
    inventory = {
        "warehouse_voice": {
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
                    "warehouse_voice_button_pin": "GPIO22",
                    "warehouse_voice_input_device": "USB PnP Sound Device",
                    "warehouse_voice_inventory_url": "http://10.0.0.5:8080/api/v1",
                    "warehouse_voice_config_extra": {"live": {"voice": "Puck"}},
                }
            }
        }
    }
    (work / "inventory.json").write_text(json.dumps(inventory))
    # A snapshot of the source, so that edits to the working tree while the test runs cannot
    # turn into a "changed" second run.
    source = work / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".state",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".build",
        ),
        copy_function=_copy_unless_vanished,
    )
    extra = {
        "warehouse_voice_destdir": str(destdir),
        "warehouse_voice_manage_services": False,
        # `models fetch` downloads, and is tested where it lives (tests/wake).
        "warehouse_voice_fetch_models": False,
        # Packages this machine already has, and no `apt-get update`: the apt module still
        # runs, but the test neither downloads nor races other apt users.
        "warehouse_voice_apt_packages": ["python3-venv", "pkg-config", "libsystemd-dev"],
        "warehouse_voice_apt_update_cache": False,
        "warehouse_voice_user": service_user,
        "warehouse_voice_package_src": str(source),
        "warehouse_voice_build_dir": str(work / "build"),
        "warehouse_voice_gemini_api_key": GEMINI_KEY,
        "warehouse_voice_inventory_token": INVENTORY_TOKEN,
    }
    (work / "extra.json").write_text(json.dumps(extra))
    control_dir = work / "cp"
    control_dir.mkdir()
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROVISIONING / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }

    def play(*flags: str) -> Run:
        started = time.monotonic()
        result = subprocess.run(
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(work / "inventory.json"),
                "-e",
                f"@{work / 'extra.json'}",
                *flags,
                str(PROVISIONING / "playbook.yml"),
            ],
            cwd=PROVISIONING,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        print(f"ansible-playbook {' '.join(flags)}: {time.monotonic() - started:.1f} s")
        return Run(result.returncode, output, _recap(output))

    try:
        check_on_fresh = play("--check", "--diff")
        left_by_check = sorted(str(p) for p in destdir.rglob("*")) if destdir.exists() else []
        first = play()
        second = play()
        check_after = play("--check", "--diff")
        yield Provisioned(
            destdir, service_user, check_on_fresh, left_by_check, first, second, check_after
        )
    finally:
        # ansible's persistent SSH master is the one process the runs leave behind; "-O exit"
        # asks it to quit (the host name is required by ssh's syntax and otherwise unused).
        for control in control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "target"],
                capture_output=True,
                timeout=30,
            )
        subprocess.run(["userdel", service_user], capture_output=True, timeout=60)
        subprocess.run(["groupdel", service_user], capture_output=True, timeout=60)
        if not gpio_existed:
            subprocess.run(["groupdel", "gpio"], capture_output=True, timeout=60)
        shutil.rmtree(destdir, ignore_errors=True)


def _copy_unless_vanished(src: str, dst: str) -> None:
    # Editors and other tools create and delete temporary files in the tree meanwhile.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(src, dst)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_check_mode_on_a_fresh_device_succeeds_and_changes_nothing(
    provisioned: Provisioned,
) -> None:
    run = provisioned.check_on_fresh
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap["failed"] == 0
    assert run.recap["changed"] > 0
    assert provisioned.left_by_check == []


def test_first_run_installs_the_package_into_a_venv(provisioned: Provisioned) -> None:
    run = provisioned.first
    assert run.returncode == 0, run.output[-4000:]
    venv = provisioned.destdir / "opt/warehouse-voice/venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    probe = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import device, importlib.metadata as m; "
            "print(m.version('warehouse-voice')); print(device.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert probe.returncode == 0, probe.stderr
    version, location = probe.stdout.split()
    assert version == "0.1.0"
    assert location.startswith(str(venv))
    help_text = subprocess.run(
        [str(venv / "bin/warehouse-voice"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "run the daemon" in help_text.stdout


def test_first_run_templates_a_config_the_app_accepts(provisioned: Provisioned) -> None:
    assert provisioned.first.returncode == 0, provisioned.first.output[-4000:]
    etc = provisioned.destdir / "etc/warehouse-voice"
    settings = load_settings(etc / "config.toml")
    assert settings.device.id == HOST
    assert settings.button.pin == "GPIO22"
    assert settings.audio.input_device == "USB PnP Sound Device"
    assert settings.tools.inventory_url == "http://10.0.0.5:8080/api/v1"
    assert settings.live.voice == "Puck"
    assert str(settings.device.state_dir) == "/var/lib/warehouse-voice"
    instructions = (etc / "instructions.md").read_text()
    assert instructions == (REPO / "config/instructions.md").read_text()
    assert settings.path(settings.live.instructions) == etc / "instructions.md"


def test_credentials_are_root_only_files_for_load_credential(provisioned: Provisioned) -> None:
    assert provisioned.first.returncode == 0, provisioned.first.output[-4000:]
    credentials = provisioned.destdir / "etc/warehouse-voice/credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    for name, value in (("gemini-api-key", GEMINI_KEY), ("inventory-token", INVENTORY_TOKEN)):
        path = credentials / name
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
        assert path.read_text() == value
    # Secrets never show up in the playbook's output.
    for run in (provisioned.first, provisioned.second, provisioned.check_on_fresh):
        assert GEMINI_KEY not in run.output
        assert INVENTORY_TOKEN not in run.output


def test_units_and_service_user_are_in_place(provisioned: Provisioned) -> None:
    assert provisioned.first.returncode == 0, provisioned.first.output[-4000:]
    units = provisioned.destdir / "etc/systemd/system"
    for unit in (REPO / "systemd").glob("*.service"):
        assert (units / unit.name).read_text() == unit.read_text()
    user = pwd.getpwnam(provisioned.service_user)
    assert user.pw_shell == "/usr/sbin/nologin"
    member_of = {g.gr_name for g in grp.getgrall() if provisioned.service_user in g.gr_mem}
    assert {"audio", "video", "gpio"} <= member_of
    state = (provisioned.destdir / "var/lib/warehouse-voice").stat()
    assert state.st_uid == user.pw_uid
    assert stat.S_IMODE(state.st_mode) == 0o750


def test_second_run_changes_nothing(provisioned: Provisioned) -> None:
    run = provisioned.second
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap["changed"] == 0, run.output[-6000:]
    assert run.recap["failed"] == 0


def test_check_mode_after_install_predicts_no_change(provisioned: Provisioned) -> None:
    run = provisioned.check_after
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap["changed"] == 0, run.output[-6000:]


def task_lines(output: str, task: str) -> list[str]:
    """The result lines ansible printed under one task's banner."""
    match = re.search(
        rf"^TASK \[warehouse_voice : {re.escape(task)}\].*?$(.*?)(?=^TASK |^PLAY )",
        output,
        re.M | re.S,
    )
    assert match is not None, f"task {task!r} not in the output"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize(
    "task",
    ["Enable and start the services", "Wait for the daemon to report ready", "Run the self-test"],
)
def test_service_tasks_are_skipped_by_the_variable(provisioned: Provisioned, task: str) -> None:
    lines = task_lines(provisioned.first.output, task)
    assert lines and all(line.startswith("skipping:") for line in lines), lines


def test_the_report_names_the_installed_version(provisioned: Provisioned) -> None:
    lines = task_lines(provisioned.first.output, "Report the installation")
    assert any(f"warehouse-voice 0.1.0 in {provisioned.destdir}" in line for line in lines)


def test_ansible_lint_passes() -> None:
    if not ANSIBLE_LINT.exists():
        pytest.skip("needs ansible-lint: pip install ansible-lint")
    result = subprocess.run(
        [str(ANSIBLE_LINT), "--offline"],
        cwd=PROVISIONING,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
