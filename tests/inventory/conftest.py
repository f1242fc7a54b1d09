from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from device.inventory.pgcluster import PostgresCluster
from device.inventory.server import RunningInventory, serve_inventory

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL server for the session (apt `postgresql`, started here)."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "inventory.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


@pytest.fixture
async def inventory(database: str) -> AsyncIterator[RunningInventory]:
    """The real server on a free loopback port, over a freshly seeded demo warehouse."""
    async with serve_inventory(database, seed="demo") as running:
        yield running


@pytest.fixture
async def api(inventory: RunningInventory) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=inventory.base_url,
        headers={"Authorization": f"Bearer {inventory.token}"},
        timeout=10.0,
    ) as client:
        yield client
