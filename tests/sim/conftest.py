"""Fixtures for the emulator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from device.sim.emulator import Emulator
from device.sim.scenario import Scenario


@pytest.fixture(scope="session")
def emulator_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every test so the CA and the espeak cache are made once per run."""
    return tmp_path_factory.mktemp("emulator")


@pytest.fixture
async def emulator_factory(
    emulator_workdir: Path,
) -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    started: list[Emulator] = []

    async def start(scenario: Scenario, **kwargs: Any) -> Emulator:
        emu = Emulator(scenario, workdir=emulator_workdir, **kwargs)
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()
