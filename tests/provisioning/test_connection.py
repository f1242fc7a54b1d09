"""How the playbook's ansible settings reach a device that is slow to answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.provisioning.sshd import SshTarget
from tests.provisioning.support import (
    BIN,
    PROVISIONING,
    close_ssh_masters,
    inventory_host,
    needs_ansible,
)

pytestmark = [needs_ansible, pytest.mark.slow, pytest.mark.timeout(600)]

SUDO_DELAY_S = 13  # over ansible's default allowance of 10 + 2 s to see sudo start


def test_a_device_slow_to_start_sudo_still_runs_its_task(ssh_target: SshTarget) -> None:
    # A busy Pi (the wake word running, pip installing a release) can take seconds before
    # sudo answers; with ansible's default a task then fails with "Timeout (12s) waiting for
    # privilege escalation prompt", at random. Here sudo always takes 13 s to start.
    work = Path(tempfile.mkdtemp(prefix="wv-slow-sudo-"))
    try:
        work.chmod(0o755)  # the SSH user runs the wrapper
        slow_sudo = work / "slow-sudo"
        slow_sudo.write_text(f'#!/bin/sh\nsleep {SUDO_DELAY_S}\nexec sudo "$@"\n')
        slow_sudo.chmod(0o755)
        host_vars = inventory_host(ssh_target) | {"ansible_become_exe": str(slow_sudo)}
        inventory = work / "inventory.json"
        inventory.write_text(json.dumps({"all": {"hosts": {"slowpi": host_vars}}}))
        result = subprocess.run(
            [str(BIN / "ansible"), "slowpi", "-i", str(inventory), "--become", "-a", "id -u"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(PROVISIONING / "ansible.cfg"),
                "ANSIBLE_HOME": str(work / "home"),
                "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
                # Its SSH master where `close_ssh_masters` finds it: one left running keeps the
                # SSH user busy, and the session's end could not remove that user.
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
                "ANSIBLE_NOCOLOR": "1",
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            },
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "CHANGED" in result.stdout and result.stdout.rstrip().endswith("0")
    finally:
        close_ssh_masters(work)
        shutil.rmtree(work, ignore_errors=True)
