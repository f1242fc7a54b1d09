"""The device plays the playbook tests look at: run once per session, in the background
(session_plays.py), on two scratch devices: one installed, rerun and checked
(test_playbook_install.py), one installed and then upgraded (test_playbook_upgrade.py), so the
upgrades need not wait for the install tests to read the first device's files.

The target is this machine, reached through the session's sshd (sshd.py). No systemd runs
as PID 1 here, so the service tasks are switched off by their variable; everything else (apt,
user and groups, wheel build, venv, pip, config, credentials, units) runs for real, with every
file under `warehouse_voice_destdir`. pip installs the dependencies for real too, from the
session's wheelhouse (support.ReleaseKit): the path a device takes, where --no-deps tricks
would test something else.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from device.config import load_settings
from tests.provisioning.support import (
    ReleaseKit,
    Run,
    SshTarget,
    derive_wheel,
    inventory_host,
    scratch_play,
)

HOST = "testpi"
CURRENT = "opt/warehouse-voice/current"
RELEASES = "opt/warehouse-voice/releases"
GEMINI_KEY = "test-gemini-key-" + secrets.token_hex(4)
INVENTORY_TOKEN = "test-inventory-token-" + secrets.token_hex(4)
BROKER_TOKEN = "wvb_test-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Provisioned:
    destdir: Path
    service_user: str
    check_on_fresh: Run
    left_by_check: list[str]
    first: Run
    second: Run
    check_after: Run


@dataclass(frozen=True)
class Upgraded:
    """A device's first install, an upgrade to a release that does not get healthy, then one
    that does (ephemeral)."""

    destdir: Path
    first: Run
    bad: Run
    good: Run
    releases: dict[str, Path]  # "first", "bad", "good": the release directories
    after_bad: tuple[Path, str]  # where `current` pointed and the live voice, after rollback


@dataclass(frozen=True)
class Device:
    """A scratch device: its inventory, variables and upgrade files under `work`."""

    work: Path
    destdir: Path
    service_user: str
    play: Callable[..., Run]


def device(
    name: str, target: SshTarget, kit: ReleaseKit, env: Mapping[str, str], cleanup: ExitStack
) -> Device:
    work = kit.work / name
    work.mkdir()
    destdir = work / "target"
    service_user = f"wvsvc{secrets.token_hex(3)}"
    host = inventory_host(target) | {
        "warehouse_voice_button_pin": "GPIO22",
        "warehouse_voice_input_device": "USB PnP Sound Device",
        "warehouse_voice_output_device": "USB PnP Sound Device",
        "warehouse_voice_inventory_url": "http://10.0.0.5:8080/api/v1",
        "warehouse_voice_config_extra": {"live": {"voice": "Puck"}},
    }
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
        # The source checkout: the role builds the wheel on every run, and the second run
        # proves that an unchanged source gives a byte-identical wheel, so nothing changes.
        "warehouse_voice_package_src": str(kit.source),
        "warehouse_voice_build_dir": str(work / "build"),
        "warehouse_voice_wheel_build_args": kit.build_args(),
        "warehouse_voice_pip_extra_args": kit.pip_args(),
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
    inventory = {"warehouse_voice": {"hosts": {HOST: host}}}
    play = scratch_play(kit, work, HOST, inventory, extra, env, cleanup)

    def remove() -> None:
        subprocess.run(["userdel", service_user], capture_output=True, timeout=60)
        subprocess.run(["groupdel", service_user], capture_output=True, timeout=60)

    cleanup.callback(remove)
    return Device(work, destdir, service_user, play)


def install_runs(dev: Device, after: threading.Event) -> Provisioned:
    """Check mode on the fresh device; once `after` is set (see `upgrade_runs`), the first
    install; a rerun; check mode again."""
    check_on_fresh = dev.play("--check", "--diff")
    left = sorted(str(p) for p in dev.destdir.rglob("*")) if dev.destdir.exists() else []
    after.wait()
    first = dev.play()
    second = dev.play()
    check_after = dev.play("--check", "--diff")
    return Provisioned(
        dev.destdir, dev.service_user, check_on_fresh, left, first, second, check_after
    )


def upgrade_runs(dev: Device, kit: ReleaseKit, first_done: threading.Event) -> Upgraded:
    """A first install, then the upgrades, as built wheels (the role's other kind of package
    source): a release whose daemon cannot start (its config check passes: the config is
    fine, the code is not), then a healthy one that also moves the device to ephemeral
    tokens; both with a changed config. `first_done` is set after the first install: the
    install device's first run waits for it, since both create the service user's device
    access groups, and two runs creating one group would race."""
    try:
        first = dev.play()
    finally:
        first_done.set()
    assert first.returncode == 0, (
        f"the upgrade device's first install failed: {first.output[-4000:]}"
    )
    upgrades = {}
    for name, version in (("bad", "0.1.1"), ("good", "0.1.2")):
        wheel = derive_wheel(kit.wheel, dev.work / name, version, broken=name == "bad")
        upgrade: dict[str, object] = {
            "warehouse_voice_package_src": str(wheel),
            "warehouse_voice_config_extra": {"live": {"voice": "Charon"}},
        }
        if name == "good":
            upgrade |= {
                "warehouse_voice_auth": "ephemeral",
                "warehouse_voice_broker_url": "https://broker.site.lan:8443",
                "warehouse_voice_broker_token": BROKER_TOKEN,
            }
        upgrades[name] = dev.work / f"upgrade-{name}.json"
        upgrades[name].write_text(json.dumps(upgrade))
    releases = {"first": (dev.destdir / CURRENT).resolve()}
    bad = dev.play("-e", f"@{upgrades['bad']}")
    releases["bad"] = _newest_release(dev.destdir, exclude=releases["first"])
    live_config = dev.destdir / "etc/warehouse-voice/config.toml"
    after_bad = ((dev.destdir / CURRENT).resolve(), load_settings(live_config).live.voice)
    good = dev.play("-e", f"@{upgrades['good']}")
    releases["good"] = (dev.destdir / CURRENT).resolve()
    return Upgraded(dev.destdir, first, bad, good, releases, after_bad)


def _newest_release(destdir: Path, *, exclude: Path) -> Path:
    others = [p for p in (destdir / RELEASES).iterdir() if p.resolve() != exclude]
    assert others, "the upgrade installed no release"
    return max(others, key=lambda p: p.stat().st_mtime)
