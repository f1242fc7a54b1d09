"""`GET /operators/{id}`: the check behind a worker's sign-on, over real HTTP."""

from __future__ import annotations

import httpx

from device.inventory.app import openapi_document


async def test_a_known_operator_is_found(api: httpx.AsyncClient) -> None:
    response = await api.get("/operators/1001")
    assert response.status_code == 200
    assert response.json() == {"id": "1001", "name": "Dana Whitfield"}


async def test_an_unknown_operator_is_a_404_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/operators/9999")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "OPERATOR_NOT_FOUND"
    assert "9999" in response.json()["detail"]


async def test_a_malformed_id_is_a_422_and_no_token_a_401(api: httpx.AsyncClient) -> None:
    bad = await api.get("/operators/DROP")
    assert (bad.status_code, bad.json()["code"]) == (422, "VALIDATION_FAILED")
    anonymous = await api.get("/operators/1001", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_the_openapi_document_lists_every_status() -> None:
    op = openapi_document()["paths"]["/api/v1/operators/{operator_id}"]["get"]
    assert set(op["responses"]) == {"200", "401", "404", "422"}
    assert "application/problem+json" in op["responses"]["404"]["content"]
