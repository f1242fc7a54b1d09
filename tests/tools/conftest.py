from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from device.inventory.server import RunningInventory, serve_inventory
from device.tools.inventory_client import InventoryClient


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[RunningInventory]:
    """The real inventory server on a free loopback port, over a fresh demo warehouse."""
    async with serve_inventory(tmp_path / "inventory.db", seed="demo") as running:
        yield running


@pytest.fixture
async def client(inventory: RunningInventory) -> AsyncIterator[InventoryClient]:
    async with InventoryClient(inventory.base_url, inventory.token, timeout_s=5.0) as c:
        yield c
