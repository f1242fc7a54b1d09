"""The session's playbook runs, started in background threads as soon as collection shows a
test that needs them (conftest.py), so they go on beside the rest of the suite.

An ansible run mostly waits on SSH round trips and remote processes (a play here takes about a
minute of wall time for a quarter of that in CPU), and the session needs nine of them: run one
after another inside the first provisioning test's setup, they were the largest share of the
suite's time. Here they start with the session: the SSH target and the release kit first, then
the broker's runs, the install device's and the upgrade device's at once (those the collected
tests need).
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from tests.provisioning.broker_plays import BrokerRuns, broker_runs
from tests.provisioning.device_plays import (
    Provisioned,
    Upgraded,
    device,
    install_runs,
    upgrade_runs,
)
from tests.provisioning.sshd import SshTarget, missing, ssh_target
from tests.provisioning.support import ReleaseKit, build_kit

T = TypeVar("T")


class SessionPlays:
    """Futures of the session's runs; `close` waits for them (each play has its own timeout)
    and then removes what they made: the scratch devices' users, the SSH target, the kit."""

    def __init__(self, wanted: Collection[str]) -> None:
        """Starts the SSH target and the release kit, then the runs `wanted` names: any of
        "broker", "install", "upgrade"."""
        self.skip_reason = missing()
        if self.skip_reason is not None:
            wanted = ()  # the fixtures skip; nothing to build
        # What the plays' processes inherit, taken now: tests monkeypatch os.environ meanwhile.
        self._env = dict(os.environ)
        # Every thread registers its cleanups here (an append, safe across threads); the SSH
        # target's and the kit's come first, so they run last.
        self._cleanup = ExitStack()
        self._pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="provisioning-plays")
        self.target: Future[SshTarget] = self._pool.submit(self._make_target)
        self._kit: Future[ReleaseKit] | None = None
        if wanted:
            self._kit = self._pool.submit(self._make_kit)
        # The install device's first run waits for the upgrade device's (device_plays.py).
        upgrade_first_done = threading.Event()
        if "upgrade" not in wanted:
            upgrade_first_done.set()
        self.broker: Future[BrokerRuns] | None = None
        self.install: Future[Provisioned] | None = None
        self.upgrade: Future[Upgraded] | None = None
        if "broker" in wanted:
            self.broker = self._after_base(
                lambda target, kit: broker_runs(target, kit, self._env, self._cleanup)
            )
        if "install" in wanted:
            self.install = self._after_base(
                lambda target, kit: install_runs(
                    device("devices", target, kit, self._env, self._cleanup), upgrade_first_done
                )
            )
        if "upgrade" in wanted:
            self.upgrade = self._after_base(
                lambda target, kit: upgrade_runs(
                    device("upgrades", target, kit, self._env, self._cleanup),
                    kit,
                    upgrade_first_done,
                )
            )

    def _make_target(self) -> SshTarget:
        if self.skip_reason is not None:
            raise RuntimeError(self.skip_reason)
        if not _group_exists("gpio"):
            # The first install creates it (the service user's device access groups).
            self._cleanup.callback(_run_quietly, "groupdel", "gpio")
        return self._cleanup.enter_context(ssh_target())

    def _make_kit(self) -> ReleaseKit:
        # Not under pytest's tmp root, which is root-only (0700): the service user runs the
        # release's code for the health check.
        work = Path(tempfile.mkdtemp(prefix="wv-kit-"))
        work.chmod(0o755)
        self._cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        return build_kit(work)

    def _after_base(self, job: Callable[[SshTarget, ReleaseKit], T]) -> Future[T]:
        kit = self._kit
        assert kit is not None
        return self._pool.submit(lambda: job(self.target.result(), kit.result()))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._cleanup.close()


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _run_quietly(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, timeout=60)
