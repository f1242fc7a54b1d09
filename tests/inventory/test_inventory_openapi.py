"""Schemathesis against the served OpenAPI document, with every check it has: no 5xx, every
status, header, content type and body as documented, wrong data refused, right data taken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from device.inventory.app import openapi_document
from device.inventory.conformance_openapi import all_checks, prepare_case
from device.inventory.pgcluster import PostgresCluster
from device.inventory.server import InventoryServer, RunningInventory

BACKENDS = ["sqlite", "postgresql"]

# Loaded at import so pytest can parametrize one test per operation; the test below checks
# that the server really serves this same document.
schema = schemathesis.openapi.from_dict(openapi_document())
# Every registered check, listed explicitly so that none is left out by a default.
ALL_CHECKS = all_checks()


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningInventory]:
    """The seeded reference server, once on SQLite and once on PostgreSQL."""
    db: str | Path = tmp_path_factory.mktemp("schemathesis") / "inventory.db"
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        db = cluster.create_database()
    server = InventoryServer(db, seed="demo")
    running = server.start()
    try:
        yield running
    finally:
        server.stop()


def root_of(served: RunningInventory) -> str:
    return served.base_url.removesuffix("/api/v1")


def test_the_server_serves_the_document_under_test(served: RunningInventory) -> None:
    response = httpx.get(f"{root_of(served)}/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, served: RunningInventory
) -> None:
    auth = prepare_case(case, served.token)  # the same preparation as the kit's
    case.call_and_validate(
        base_url=root_of(served),
        headers=auth,
        checks=ALL_CHECKS,
        timeout=10,
    )


def test_every_check_schemathesis_has_is_run() -> None:
    names = {getattr(check, "__name__", "") for check in ALL_CHECKS}
    assert {"status_code_conformance", "negative_data_rejection", "ignored_auth"} <= names
    assert len(ALL_CHECKS) == len(CHECKS.get_all())
