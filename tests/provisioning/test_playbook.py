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
import tempfile
import time
from collections.abc import Callable, Iterator
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
CURRENT = "opt/warehouse-voice/current"
RELEASES = "opt/warehouse-voice/releases"
GEMINI_KEY = "test-gemini-key-" + secrets.token_hex(4)
INVENTORY_TOKEN = "test-inventory-token-" + secrets.token_hex(4)
BROKER_TOKEN = "wvb_test-" + secrets.token_hex(8)
# The installed release must import its own code, not a checkout on PYTHONPATH.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

pytestmark = [
    pytest.mark.skipif(
        not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-core: pip install ansible-core"
    ),
    pytest.mark.slow,
    # Six playbook runs, three of them installing a release into a fresh venv; a loaded
    # machine takes minutes for each.
    pytest.mark.timeout(2400),
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
    play: Callable[..., Run]
    work: Path


@dataclass(frozen=True)
class Upgraded:
    """An upgrade to a release that does not get healthy, then one that does (ephemeral)."""

    bad: Run
    good: Run
    releases: dict[str, Path]  # "first", "bad", "good": the release directories
    after_bad: tuple[Path, str]  # where `current` pointed and the live voice, after rollback


def _recap(output: str) -> dict[str, int]:
    match = re.search(rf"^{HOST}\s+:\s+(.*)$", output, flags=re.M)
    assert match is not None, output[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def provisioned(
    ssh_target: SshTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provisioned]:
    # Not under pytest's tmp root, which is root-only (0700): the service user runs the
    # release's code for the health check.
    work = Path(tempfile.mkdtemp(prefix="wv-ansible-"))
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
                    "warehouse_voice_output_device": "USB PnP Sound Device",
                    "warehouse_voice_inventory_url": "http://10.0.0.5:8080/api/v1",
                    "warehouse_voice_config_extra": {"live": {"voice": "Puck"}},
                }
            }
        }
    }
    (work / "inventory.json").write_text(json.dumps(inventory))
    # A snapshot of the source and of the playbook, so that edits to the working tree while the
    # test runs cannot turn into a "changed" second run.
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
    playbooks = source / "provisioning"
    extra = {
        "warehouse_voice_destdir": str(destdir),
        "warehouse_voice_manage_services": False,
        # `models fetch` downloads, and is tested where it lives (tests/wake).
        "warehouse_voice_fetch_models": False,
        # Packages this machine already has, and no `apt-get update`: the apt module still
        # runs, but the test neither downloads nor races other apt users.
        # The release venv takes numpy, PyAudio and the systemd bindings from them, as on a Pi.
        "warehouse_voice_apt_packages": [
            "python3-venv",
            "python3-numpy",
            "python3-pyaudio",
            "python3-systemd",
        ],
        "warehouse_voice_apt_update_cache": False,
        "warehouse_voice_user": service_user,
        "warehouse_voice_package_src": str(source),
        "warehouse_voice_build_dir": str(work / "build"),
        "warehouse_voice_gemini_api_key": GEMINI_KEY,
        "warehouse_voice_inventory_token": INVENTORY_TOKEN,
        # No systemd here, so no daemon to ask: the health check stands in by loading the
        # live release's daemon code as the service user and answering as `ctl status` does.
        # The switch, the check and the rollback around it are the role's own.
        "warehouse_voice_health_check": True,
        "warehouse_voice_health_argv": [
            "{{ warehouse_voice_target_current }}/bin/python",
            "-c",
            "import json, device.daemon; print(json.dumps({'ok': True, 'state': 'idle'}))",
        ],
        "warehouse_voice_health_retries": 1,
        "warehouse_voice_health_delay": 0,
    }
    (work / "extra.json").write_text(json.dumps(extra))
    # The upgrades: a release whose daemon cannot start (its config check passes: the config
    # is fine, the code is not), then a healthy one; both with a changed config.
    bad_source = _release_source(source, work / "source-bad", "0.1.1", broken=True)
    good_source = _release_source(source, work / "source-good", "0.1.2", broken=False)
    for name, src in (("bad", bad_source), ("good", good_source)):
        upgrade = {
            "warehouse_voice_package_src": str(src),
            "warehouse_voice_config_extra": {"live": {"voice": "Charon"}},
        }
        if name == "good":
            # The healthy upgrade also moves the device to ephemeral tokens.
            upgrade |= {
                "warehouse_voice_auth": "ephemeral",
                "warehouse_voice_broker_url": "https://broker.site.lan:8443",
                "warehouse_voice_broker_token": BROKER_TOKEN,
            }
        (work / f"upgrade-{name}.json").write_text(json.dumps(upgrade))
    control_dir = work / "cp"
    control_dir.mkdir()
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(playbooks / "ansible.cfg"),
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
                str(playbooks / "playbook.yml"),
            ],
            cwd=playbooks,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
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
            destdir,
            service_user,
            check_on_fresh,
            left_by_check,
            first,
            second,
            check_after,
            play,
            work,
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
        shutil.rmtree(work, ignore_errors=True)


def _release_source(source: Path, target: Path, version: str, *, broken: bool) -> Path:
    shutil.copytree(source, target)
    pyproject = target / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1)
    )
    if broken:
        with (target / "device" / "daemon.py").open("a") as f:
            f.write(f"\nraise RuntimeError('release {version} is broken')\n")
    return target


def _newest_release(destdir: Path, *, exclude: Path) -> Path:
    others = [p for p in (destdir / RELEASES).iterdir() if p.resolve() != exclude]
    assert others, "the upgrade installed no release"
    return max(others, key=lambda p: p.stat().st_mtime)


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
    venv = provisioned.destdir / CURRENT
    assert venv.is_symlink()
    release = venv.resolve()
    assert release.parent == provisioned.destdir / RELEASES
    assert release.name.startswith("0.1.0-")
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
        env=CLEAN_ENV,
    )
    assert probe.returncode == 0, probe.stderr
    version, location = probe.stdout.split()
    assert version == "0.1.0"
    assert location.startswith(str(venv))
    # As on a Pi: pip kept the apt numpy (1.24 on bookworm) that picamera2 is built against,
    # and PyAudio and the systemd bindings come from apt, so nothing was compiled.
    probe = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import numpy, pyaudio, systemd.daemon, onnxruntime; print(numpy.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=CLEAN_ENV,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("/usr/lib/python3/dist-packages/"), probe.stdout
    help_text = subprocess.run(
        [str(venv / "bin/warehouse-voice"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=CLEAN_ENV,
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
    [
        "Reload systemd for changed units",
        "Restart the services on the new release",
        "Enable and start the services",
    ],
)
def test_service_tasks_are_skipped_by_the_variable(provisioned: Provisioned, task: str) -> None:
    lines = task_lines(provisioned.first.output, task)
    assert lines and all(line.startswith("skipping:") for line in lines), lines


def test_the_report_names_the_installed_version(provisioned: Provisioned) -> None:
    lines = task_lines(provisioned.first.output, "Report the installation")
    assert any(f"warehouse-voice 0.1.0 in {provisioned.destdir}" in line for line in lines)
    assert any("health: idle" in line for line in lines)


def test_the_live_config_was_checked_before_it_went_live(provisioned: Provisioned) -> None:
    lines = task_lines(
        provisioned.first.output, "Check the config with the release that will run it"
    )
    assert lines and lines[0].startswith("ok:"), lines
    order = [
        provisioned.first.output.index(f"TASK [warehouse_voice : {task}]")
        for task in (
            "Render the config for this release",
            "Check the config with the release that will run it",
            "Move the checked config into place",
            "Switch the current link to the release",
            "Ask the running daemon whether it is healthy",
        )
    ]
    assert order == sorted(order)


@pytest.fixture(scope="module")
def upgraded(provisioned: Provisioned) -> Upgraded:
    """Runs after every test of the first install (file order), which it changes."""
    destdir, work = provisioned.destdir, provisioned.work
    releases = {"first": (destdir / CURRENT).resolve()}
    bad = provisioned.play("-e", f"@{work / 'upgrade-bad.json'}")
    releases["bad"] = _newest_release(destdir, exclude=releases["first"])
    live_config = destdir / "etc/warehouse-voice/config.toml"
    after_bad = ((destdir / CURRENT).resolve(), load_settings(live_config).live.voice)
    good = provisioned.play("-e", f"@{work / 'upgrade-good.json'}")
    releases["good"] = (destdir / CURRENT).resolve()
    return Upgraded(bad, good, releases, after_bad)


def test_an_unhealthy_release_is_rolled_back_and_stops_the_rollout(
    upgraded: Upgraded,
) -> None:
    run = upgraded.bad
    assert run.returncode != 0, run.output[-4000:]
    assert run.recap["failed"] == 1
    first, bad = upgraded.releases["first"], upgraded.releases["bad"]
    assert bad.name.startswith("0.1.1-")
    assert "release 0.1.1 is broken" in run.output
    assert f"Rolled back to {first.name} and its config" in run.output
    assert "The rollout stops here" in run.output
    # The play ends at this device: nothing after the failure ran (serial 1, max_fail 0).
    assert (
        "TASK [warehouse_voice : Report the installation]"
        not in run.output.split("Stop the rollout at this device")[-1]
    )
    assert upgraded.after_bad == (first, "Puck")
    assert "Switch the current link back to the previous release" in run.output
    assert "Put the previous config back" in run.output


def test_after_a_rollback_a_healthy_upgrade_goes_live_and_keeps_the_previous_release(
    provisioned: Provisioned, upgraded: Upgraded
) -> None:
    run = upgraded.good
    assert run.returncode == 0, run.output[-6000:]
    good, first = upgraded.releases["good"], upgraded.releases["first"]
    assert good.name.startswith("0.1.2-")
    assert good.parent == provisioned.destdir / RELEASES
    # The rollback had put the first release back: it is what this upgrade replaced.
    before = task_lines(run.output, "Remember the release and config to return to")
    assert before and before[0].startswith("ok:")
    assert first.exists()
    etc = provisioned.destdir / "etc/warehouse-voice"
    assert load_settings(etc / "config.toml").live.voice == "Charon"
    assert not list(etc.glob("config.toml.*~"))  # the superseded config's backup is gone


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


def test_an_ephemeral_device_gets_a_broker_token_and_loses_the_gemini_key(
    provisioned: Provisioned, upgraded: Upgraded
) -> None:
    assert upgraded.good.returncode == 0, upgraded.good.output[-6000:]
    credentials = provisioned.destdir / "etc/warehouse-voice/credentials"
    assert sorted(p.name for p in credentials.iterdir()) == ["broker-token", "inventory-token"]
    assert (credentials / "broker-token").read_text() == BROKER_TOKEN
    dropin = provisioned.destdir / "etc/systemd/system/warehouse-voice.service.d/ephemeral.conf"
    assert dropin.read_text() == (REPO / "systemd/warehouse-voice-ephemeral.conf").read_text()
    settings = load_settings(provisioned.destdir / "etc/warehouse-voice/config.toml")
    assert (settings.live.auth, settings.live.broker_url) == (
        "ephemeral",
        "https://broker.site.lan:8443",
    )
    assert BROKER_TOKEN not in upgraded.good.output
