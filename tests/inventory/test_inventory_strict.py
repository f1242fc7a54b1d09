"""Issue 12's API items: strict types, documented statuses, the check-digit lockout, and who
wrote (operator from X-Operator, device from its token) in the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from device.inventory.seed import check_digits_for
from device.inventory.server import RunningInventory

# Every write, with a valid body, and the integer fields a client might send as another type.
WRITES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("/moves", {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
                "quantity": 3}, ["quantity"]),
    ("/counts", {"sku": "104417", "location": "A-12-03", "counted_quantity": 3,
                 "expected_version": 1}, ["counted_quantity", "expected_version"]),
    ("/damage-reports", {"sku": "104417", "location": "A-12-03", "quantity": 3,
                         "damage": "crushed"}, ["quantity"]),
    ("/picks/P0001/confirm", {"quantity": 3, "check_digits": "CHECK"}, ["quantity"]),
]  # fmt: skip
NOT_INTEGERS = ["3", True, 3.0, "1"]


async def snapshot(api: httpx.AsyncClient) -> tuple[Any, Any, Any]:
    stock = (await api.get("/stock", params={"sku": "104417"})).json()
    audit = (await api.get("/audit")).json()
    pick = (await api.get("/picks/P0001")).json()
    return stock, audit, pick


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
async def test_a_non_integer_where_an_integer_is_due_is_422_and_changes_nothing(
    api: httpx.AsyncClient, inventory: RunningInventory, bad: object
) -> None:
    digits = check_digits_for(inventory.db, "A-12-03")
    before = await snapshot(api)
    n = 0
    for path, body, fields in WRITES:
        body = {k: (digits if v == "CHECK" else v) for k, v in body.items()}
        for field in fields:
            for dry_run in (False, True):
                n += 1
                response = await api.post(
                    path,
                    json={**body, field: bad},
                    params={"dry_run": "true"} if dry_run else None,
                    headers={"Idempotency-Key": f"strict-{n}"},
                )
                assert response.status_code == 422, (path, field, bad, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                problem = response.json()
                assert problem["code"] == "VALIDATION_FAILED"
                assert f"body.{field}" in {e["field"] for e in problem["errors"]}
    assert await snapshot(api) == before


async def test_the_same_writes_with_integers_are_accepted(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    digits = check_digits_for(inventory.db, "A-12-03")
    for n, (path, body, _fields) in enumerate(WRITES):
        body = {k: (digits if v == "CHECK" else v) for k, v in body.items()}
        response = await api.post(
            path, json=body, params={"dry_run": "true"}, headers={"Idempotency-Key": f"ok-{n}"}
        )
        assert response.status_code == 200, (path, response.text)


async def test_a_verify_body_that_is_not_json_is_a_documented_problem(
    api: httpx.AsyncClient,
) -> None:
    from device.inventory.app import openapi_document

    response = await api.post(
        "/locations/A-12-03/verify",
        content=b"check_digits=123",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.headers["content-type"] == "application/problem+json"
    documented = openapi_document()["paths"]["/api/v1/locations/{code}/verify"]["post"]
    assert str(response.status_code) in documented["responses"]


async def test_a_body_that_cannot_be_parsed_gets_a_documented_status_on_every_post(
    api: httpx.AsyncClient,
) -> None:
    from device.inventory.app import openapi_document

    paths = openapi_document()["paths"]
    posts = [p for p, ops in paths.items() if "post" in ops]
    assert "/api/v1/locations/{code}/verify" in posts
    for path in posts:
        url = (
            path.removeprefix("/api/v1").replace("{code}", "A-12-03").replace("{task_id}", "P0001")
        )
        for body in (b"\xff", b"{not json", b"check_digits=123"):
            response = await api.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": "parse"},
            )
            assert response.headers["content-type"] == "application/problem+json"
            assert str(response.status_code) in paths[path]["post"]["responses"], (path, body)


def wrong_digits(right: str) -> str:
    return "999" if right != "999" else "998"


async def verify(api: httpx.AsyncClient, location: str, digits: str) -> httpx.Response:
    return await api.post(f"/locations/{location}/verify", json={"check_digits": digits})


async def test_check_digits_lock_a_device_out_of_a_location_after_three_misses(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    from device.inventory.tokens import mint_token

    right = check_digits_for(inventory.db, "A-12-03")
    wrong = wrong_digits(right)
    misses = [await verify(api, "A-12-03", wrong) for _ in range(3)]
    assert [r.status_code for r in misses] == [200, 200, 200]
    assert [r.json()["match"] for r in misses] == [False, False, False]
    assert [r.json()["attempts_left"] for r in misses] == [2, 1, 0]

    locked = await verify(api, "A-12-03", right)  # even the right digits, now
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"
    assert locked.json()["code"] == "CHECK_DIGIT_LOCKED"
    assert int(locked.headers["Retry-After"]) > 0
    pick = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 5, "check_digits": right},
        headers={"Idempotency-Key": "locked-pick"},
    )
    assert (pick.status_code, pick.json()["code"]) == (429, "CHECK_DIGIT_LOCKED")
    assert (await api.get("/picks/P0001")).json()["status"] == "open"

    # Another location, and another device at this one, are not locked.
    other = check_digits_for(inventory.db, "A-14-01")
    assert (await verify(api, "A-14-01", other)).json()["match"] is True
    token = mint_token(inventory.db, "dock-09")
    async with httpx.AsyncClient(
        base_url=inventory.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as second:
        assert (await verify(second, "A-12-03", right)).json()["match"] is True


async def test_wrong_digits_on_a_pick_count_towards_the_lockout_and_a_match_resets_it(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    right = check_digits_for(inventory.db, "A-12-03")
    wrong = wrong_digits(right)
    assert (await verify(api, "A-12-03", wrong)).json()["attempts_left"] == 2
    assert (await verify(api, "A-12-03", right)).json() == {
        "location": "A-12-03",
        "match": True,
        "attempts_left": 3,
    }
    for n in range(2):
        miss = await api.post(
            "/picks/P0001/confirm",
            json={"quantity": 5, "check_digits": wrong},
            headers={"Idempotency-Key": f"miss-{n}"},
        )
        assert miss.json()["code"] == "CHECK_DIGIT_MISMATCH"
    # A retry of the same request is a replay, not a new guess.
    replay = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 5, "check_digits": wrong},
        headers={"Idempotency-Key": "miss-1"},
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    dry = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 5, "check_digits": wrong},
        params={"dry_run": "true"},
        headers={"Idempotency-Key": "dry"},
    )
    assert dry.json()["code"] == "CHECK_DIGIT_MISMATCH"
    assert (await verify(api, "A-12-03", right)).status_code == 429


def test_a_lockout_ends_after_its_time(tmp_path: Any) -> None:
    from device.inventory import lockout
    from device.inventory.db import Database
    from device.inventory.problems import ProblemError

    db = Database(tmp_path / "inv.db")
    policy = lockout.LockoutPolicy(attempts=2, lockout_s=60.0)
    try:
        for _ in range(2):
            db.write(lambda c: lockout.record(c, "d1", "A-12-03", False, policy, now=100.0))
        with pytest.raises(ProblemError) as locked:
            db.write(lambda c: lockout.record(c, "d1", "A-12-03", True, policy, now=159.0))
        assert locked.value.code == "CHECK_DIGIT_LOCKED"
        assert locked.value.extra["retry_after_s"] == 1
        left = db.write(lambda c: lockout.record(c, "d1", "A-12-03", False, policy, now=160.0))
        assert left == 1  # a fresh set of attempts after the lockout
    finally:
        db.close()


async def test_the_audit_row_has_the_operator_header_and_the_token_device(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    from device.inventory.tokens import mint_token

    token = mint_token(inventory.db, "dock-07")
    async with httpx.AsyncClient(
        base_url=inventory.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as dock:
        moved = await dock.post(
            "/moves",
            json=WRITES[0][1],
            # A client cannot claim another device: the device comes from the token only.
            headers={"Idempotency-Key": "who", "X-Operator": "op-42", "X-Device-Id": "demo-01"},
        )
    assert moved.status_code == 201
    [entry] = (await api.get("/audit")).json()["entries"]
    assert (entry["device_id"], entry["operator"]) == ("dock-07", "op-42")
