"""Schemathesis against the served OpenAPI document: no 5xx, every answer as documented."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from device.inventory.app import openapi_document
from device.inventory.models import IDEMPOTENCY_KEY_PATTERN
from device.inventory.server import InventoryServer, RunningInventory

# Loaded at import so pytest can parametrize one test per operation; the test below checks
# that the server really serves this same document.
schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningInventory]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "inventory.db"
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
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        # The contract is one key per intended change; generated keys repeat across cases
        # with different bodies, which the server rightly refuses (422), so make each unique.
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    case.call_and_validate(
        base_url=root_of(served),
        headers={"Authorization": f"Bearer {served.token}"},
        timeout=10,
    )
