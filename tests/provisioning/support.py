"""What the provisioning tests share: running ansible-playbook, reading its output, and the
release kit (source snapshot, wheels, wheelhouse) that conftest.py builds once per session."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.provisioning.sshd import BACKGROUND, SshTarget

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "provisioning"
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
needs_ansible = pytest.mark.skipif(
    not ANSIBLE_PLAYBOOK.exists(), reason="needs ansible-core: pip install ansible-core"
)
ANSIBLE_LINT = BIN / "ansible-lint"
BUILD_WHEEL = PROVISIONING / "roles/warehouse_voice/files/build-wheel.sh"
# The interpreter the role makes release venvs from (warehouse_voice_python): the wheelhouse
# holds wheels for it.
TARGET_PYTHON = "/usr/bin/python3"
# The installed release must import its own code, not a checkout on PYTHONPATH.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".build",
)  # fmt: skip


def inventory_host(target: SshTarget) -> dict[str, object]:
    return {
        "ansible_host": target.host,
        "ansible_port": target.port,
        "ansible_user": target.user,
        "ansible_ssh_private_key_file": str(target.key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


@dataclass(frozen=True)
class ReleaseKit:
    """Built once per session and shared by every play.

    `source` is a snapshot of the checkout (so edits to the working tree during the run cannot
    turn into a "changed" rerun); `wheel` is what the role's own build-wheel.sh makes of it;
    `wheelhouse` holds every dependency of that wheel for the target interpreter, plus the
    setuptools the wheel build needs, so pip resolves and downloads once per session, not once
    per release venv.
    """

    work: Path
    source: Path
    wheel: Path
    wheelhouse: Path

    def pip_args(self) -> str:
        # --no-compile: the role lets pip byte-compile on a device, where the service user
        # cannot write __pycache__ into the root-owned release; here it only costs CPU, and the
        # release's commands run as root first (config check) and compile what they import.
        return f"--no-index --find-links {self.wheelhouse} --no-compile"

    def build_args(self) -> list[str]:
        return ["--no-index", "--find-links", str(self.wheelhouse)]


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    recap: dict[str, int]


def recap(output: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{host}\s+:\s+(.*)$", output, flags=re.M)
    assert match is not None, output[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def task_lines(output: str, task: str) -> list[str]:
    """The result lines ansible printed under one task's banner."""
    match = re.search(
        rf"^TASK \[warehouse_voice : {re.escape(task)}\].*?$(.*?)(?=^TASK |^PLAY )",
        output,
        re.M | re.S,
    )
    assert match is not None, f"task {task!r} not in the output"
    return [line for line in match.group(1).splitlines() if line.strip()]


def ansible_env(
    playbooks: Path, work: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """ansible-playbook's environment: `base` (default: this process's) plus its settings."""
    base = os.environ if base is None else base
    control_dir = work / "cp"
    control_dir.mkdir(exist_ok=True)
    return {
        **base,
        "ANSIBLE_CONFIG": str(playbooks / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        # ansible's default ssh_args without -C: compressing a loopback link only costs CPU.
        # One master connection serves every task of every play of the session.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=900s",
        # ansible's processes poll each other every millisecond by default; its docs advise a
        # higher value where CPU matters more than screen responsiveness, as on a loaded CI box.
        "ANSIBLE_INTERNAL_POLL_INTERVAL": "0.01",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{BIN}:{base.get('PATH', '')}",
    }


def run_playbook(
    playbooks: Path, work: Path, host: str, *args: str, env: dict[str, str] | None = None
) -> Run:
    started = time.monotonic()
    result = subprocess.run(
        [*BACKGROUND, str(ANSIBLE_PLAYBOOK), *args, str(playbooks / "playbook.yml")],
        cwd=playbooks,
        env=env if env is not None else ansible_env(playbooks, work),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    print(f"ansible-playbook {' '.join(args)}: {time.monotonic() - started:.1f} s")
    return Run(result.returncode, output, recap(output, host))


def scratch_play(
    kit: ReleaseKit,
    work: Path,
    host: str,
    inventory: dict[str, object],
    extra: dict[str, object],
    env: Mapping[str, str],
    cleanup: contextlib.ExitStack,
) -> Callable[..., Run]:
    """The playbook against one scratch host: its inventory and variables are written under
    `work`; `play(*flags)` runs it with them. Its SSH master is closed with `cleanup`."""
    (work / "inventory.json").write_text(json.dumps(inventory))
    (work / "extra.json").write_text(json.dumps(extra))
    playbooks = kit.source / "provisioning"
    play_env = ansible_env(playbooks, work, env)
    cleanup.callback(close_ssh_masters, work)
    files = ("-i", str(work / "inventory.json"), "-e", f"@{work / 'extra.json'}")

    def play(*flags: str) -> Run:
        return run_playbook(playbooks, work, host, *files, *flags, env=play_env)

    return play


def close_ssh_masters(work: Path) -> None:
    # ansible's persistent SSH master is the one process the runs leave behind; "-O exit"
    # asks it to quit (the host name is required by ssh's syntax and otherwise unused).
    for control in (work / "cp").glob("*"):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "target"],
            capture_output=True,
            timeout=30,
        )


def snapshot(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=SNAPSHOT_IGNORE, copy_function=_copy_unless_vanished)
    return target


def _copy_unless_vanished(src: str, dst: str) -> None:
    # Editors and other tools create and delete temporary files in the tree meanwhile.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(src, dst)


def build_kit(work: Path) -> ReleaseKit:
    source = snapshot(REPO, work / "source")
    wheelhouse = work / "wheelhouse"
    # setuptools first: the wheel build below takes it from here, not from an index.
    _run(
        TARGET_PYTHON, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--dest", str(wheelhouse), "setuptools>=69",
    )  # fmt: skip
    built = _run(
        "sh", str(BUILD_WHEEL), str(BIN / "python"), str(source), str(work / "wheels"),
        "--no-index", "--find-links", str(wheelhouse),
    )  # fmt: skip
    wheel = Path(built.splitlines()[-1])
    _run(
        TARGET_PYTHON, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--dest", str(wheelhouse), str(wheel),
    )  # fmt: skip
    (wheelhouse / wheel.name).unlink(missing_ok=True)  # the release comes from the play
    return ReleaseKit(work, source, wheel, wheelhouse)


def _run(*argv: str) -> str:
    result = subprocess.run(
        [*BACKGROUND, *argv], capture_output=True, text=True, timeout=900, env=CLEAN_ENV
    )
    assert result.returncode == 0, f"{argv}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def derive_wheel(wheel: Path, out_dir: Path, version: str, *, broken: bool) -> Path:
    """The same wheel under another version, its daemon module failing on import if `broken`.

    What a rebuilt source with a bumped version (and a broken daemon.py) gives, without a
    second build: the name, the dist-info directory, METADATA and RECORD are rewritten.
    """
    name, old = wheel.name.split("-")[:2]
    old_info, new_info = f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name.replace(f"-{old}-", f"-{version}-", 1)
    records: list[str] = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            path = info.filename.replace(old_info, new_info, 1)
            if path == f"{new_info}RECORD":
                continue
            data = src.read(info)
            if path == f"{new_info}METADATA":
                data = data.replace(
                    f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode()
                )
            if broken and path == "device/daemon.py":
                data += f"\nraise RuntimeError('release {version} is broken')\n".encode()
            entry = zipfile.ZipInfo(path, info.date_time)
            entry.external_attr = info.external_attr
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{path},sha256={digest.decode()},{len(data)}")
        records.append(f"{new_info}RECORD,,")
        dst.writestr(f"{new_info}RECORD", "\n".join(records) + "\n")
    return target
