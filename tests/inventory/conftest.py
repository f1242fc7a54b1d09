from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from device.inventory.server import RunningInventory, serve_inventory


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[RunningInventory]:
    """The real server on a free loopback port, over a freshly seeded demo warehouse."""
    async with serve_inventory(tmp_path / "inventory.db", seed="demo") as running:
        yield running


@pytest.fixture
async def api(inventory: RunningInventory) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=inventory.base_url,
        headers={"Authorization": f"Bearer {inventory.token}"},
        timeout=10.0,
    ) as client:
        yield client
