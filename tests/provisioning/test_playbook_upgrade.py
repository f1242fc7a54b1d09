"""The playbook's upgrades of a provisioned device: a release that does not get healthy is rolled
back and stops the rollout, a healthy one goes live (and moves the device to ephemeral tokens).
The plays run once per session, in the background, on a device of their own (device_plays.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from device.config import load_settings
from tests.provisioning.device_plays import BROKER_TOKEN, RELEASES, Upgraded
from tests.provisioning.support import (
    ANSIBLE_LINT,
    BIN,
    PROVISIONING,
    REPO,
    needs_ansible,
    task_lines,
)

pytestmark = [
    needs_ansible,
    pytest.mark.slow,
    # Three playbook runs, each installing a release into a fresh venv.
    pytest.mark.timeout(2400),
]


def test_an_unhealthy_release_is_rolled_back_and_stops_the_rollout(
    upgraded: Upgraded,
) -> None:
    assert upgraded.first.returncode == 0, upgraded.first.output[-4000:]
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
    upgraded: Upgraded,
) -> None:
    run = upgraded.good
    assert run.returncode == 0, run.output[-6000:]
    good, first = upgraded.releases["good"], upgraded.releases["first"]
    assert good.name.startswith("0.1.2-")
    assert good.parent == upgraded.destdir / RELEASES
    # The rollback had put the first release back: it is what this upgrade replaced.
    before = task_lines(run.output, "Remember the release and config to return to")
    assert before and before[0].startswith("ok:")
    assert first.exists()
    etc = upgraded.destdir / "etc/warehouse-voice"
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
    upgraded: Upgraded,
) -> None:
    assert upgraded.good.returncode == 0, upgraded.good.output[-6000:]
    credentials = upgraded.destdir / "etc/warehouse-voice/credentials"
    assert sorted(p.name for p in credentials.iterdir()) == ["broker-token", "inventory-token"]
    assert (credentials / "broker-token").read_text() == BROKER_TOKEN
    dropin = upgraded.destdir / "etc/systemd/system/warehouse-voice.service.d/ephemeral.conf"
    assert dropin.read_text() == (REPO / "systemd/warehouse-voice-ephemeral.conf").read_text()
    settings = load_settings(upgraded.destdir / "etc/warehouse-voice/config.toml")
    assert (settings.live.auth, settings.live.broker_url) == (
        "ephemeral",
        "https://broker.site.lan:8443",
    )
    assert BROKER_TOKEN not in upgraded.good.output
