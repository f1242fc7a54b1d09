"""The playbook's first install of a device, its rerun and its check mode, against a real SSH
target (the plays run once per session, in the background: device_plays.py, session_plays.py)."""

from __future__ import annotations

import grp
import pwd
import stat
import subprocess

import pytest

from device.config import load_settings
from tests.provisioning.device_plays import (
    CURRENT,
    GEMINI_KEY,
    HOST,
    INVENTORY_TOKEN,
    RELEASES,
    Provisioned,
)
from tests.provisioning.support import CLEAN_ENV, REPO, needs_ansible, task_lines

pytestmark = [
    needs_ansible,
    pytest.mark.slow,
    # The first test waits for the session's plays (started with the session): four playbook
    # runs, one installing a release into a fresh venv; a loaded machine takes minutes for each.
    pytest.mark.timeout(2400),
]


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
