"""The provisioning tests' session: their playbook runs start in the background as soon as
collection shows a test that needs them (session_plays.py), and the fixtures below wait for
the runs each test looks at."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TypeVar

import pytest

from tests.provisioning.broker_plays import BrokerRuns
from tests.provisioning.device_plays import Provisioned, Upgraded
from tests.provisioning.session_plays import SessionPlays
from tests.provisioning.sshd import SshTarget

T = TypeVar("T")
# The fixtures that need the session's SSH target, and the runs each needs.
RUNS_OF_FIXTURE = {
    "ssh_target": (),
    "provisioned": ("install",),
    "upgraded": ("upgrade",),
    "broker_runs": ("broker",),
}
_plays: SessionPlays | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _plays
    if session.config.option.collectonly or _plays is not None:
        return
    used = {f for item in session.items for f in getattr(item, "fixturenames", ())}
    needed = used & RUNS_OF_FIXTURE.keys()
    if needed:
        _plays = SessionPlays({run for fixture in needed for run in RUNS_OF_FIXTURE[fixture]})


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _plays
    if _plays is not None:
        _plays.close()
        _plays = None


def _started() -> SessionPlays:
    global _plays
    if _plays is None:  # not seen at collection: a fixture asked for by name (getfixturevalue)
        _plays = SessionPlays({"install", "upgrade", "broker"})
    if _plays.skip_reason is not None:
        pytest.skip(_plays.skip_reason)
    return _plays


def _wait(run: Future[T] | None, name: str) -> T:
    if run is None:
        pytest.fail(f"the session's {name} plays were not started: no collected test needs them")
    return run.result()


@pytest.fixture(scope="session")
def ssh_target() -> SshTarget:
    return _started().target.result()


@pytest.fixture(scope="session")
def provisioned() -> Provisioned:
    return _wait(_started().install, "install")


@pytest.fixture(scope="session")
def upgraded() -> Upgraded:
    return _wait(_started().upgrade, "upgrade")


@pytest.fixture(scope="session")
def broker_runs() -> BrokerRuns:
    return _wait(_started().broker, "broker")
