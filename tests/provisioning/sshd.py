"""The provisioning tests' SSH target: this machine, through an sshd of its own on 127.0.0.1,
with a throwaway user and sudo rule, as a device's admin account would be."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# The plays run in the background beside the rest of the suite (session_plays.py): at a lower
# priority, so they take the CPU the tests leave idle (most of them wait on real-time audio)
# rather than slow them. The sshd carries it to everything a play runs on the target.
BACKGROUND = ("nice", "-n", "10")


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not answer on port {port}")


def missing() -> str | None:
    """Why this machine cannot be the SSH target, if it cannot."""
    if os.geteuid() != 0:
        return "needs root: the test creates a user and a sudo rule for the SSH target"
    for tool in (SSHD, "ssh-keygen", "sudo", "useradd"):
        if shutil.which(tool) is None:
            return f"needs {tool}: apt-get install -y openssh-server sudo"
    return None


@contextlib.contextmanager
def ssh_target() -> Iterator[SshTarget]:
    """A throwaway SSH target on 127.0.0.1: its own sshd, host key, user and sudo rule."""
    # Not under pytest's tmp root: that is root-only (0700), and sshd reads the authorized
    # keys as the user logging in.
    work = Path(tempfile.mkdtemp(prefix="wv-sshd-"))
    work.chmod(0o755)
    user = f"wvprov{secrets.token_hex(3)}"
    sudoers = Path(f"/etc/sudoers.d/{user}")
    process: subprocess.Popen[bytes] | None = None
    try:
        # usermod -p '*': not a usable password, yet not a locked account, which sshd
        # would refuse even for key logins.
        _run("useradd", "--create-home", "--shell", "/bin/bash", user)
        _run("usermod", "-p", "*", user)
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)

        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key"))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_key"))
        authorized = work / "authorized_keys"
        shutil.copy(work / "client_key.pub", authorized)
        authorized.chmod(0o644)

        port = _free_port()
        config = work / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {work / 'host_key'}\n"
            f"PidFile {work / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"AllowUsers {user}\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\n"
        )
        # sshd insists on its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        process = subprocess.Popen(
            [*BACKGROUND, SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "sshd.log", "wb"),  # noqa: SIM115 - lives as long as sshd
        )
        try:
            _wait_for_banner(port, process, 30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {(work / 'sshd.log').read_text()[-2000:]}") from None
        yield SshTarget("127.0.0.1", port, user, work / "client_key")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", user], capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
