"""The reference inventory API over real HTTP: stock moves, counts, picks, errors, auth."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from device.inventory import operations
from device.inventory.seed import check_digits_for
from device.inventory.server import RunningInventory

MOVE = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01", "quantity": 5}


async def on_hand(api: httpx.AsyncClient, sku: str, location: str) -> int:
    rows = (await api.get("/stock", params={"sku": sku, "location": location})).json()["stock"]
    return int(rows[0]["quantity"]) if rows else 0


async def version_of(api: httpx.AsyncClient, sku: str, location: str) -> int:
    rows = (await api.get("/stock", params={"sku": sku, "location": location})).json()["stock"]
    return int(rows[0]["version"]) if rows else 0


async def audit(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    return list((await api.get("/audit", params=params)).json()["entries"])


async def test_demo_question_where_is_sku_104417(api: httpx.AsyncClient) -> None:
    response = await api.get("/items", params={"sku": "104417"})
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["total_quantity"] == 40
    [where] = item["locations"]
    assert (where["location"], where["quantity"]) == ("A-12-03", 40)
    assert where["spoken_location"] == "aisle A, bay twelve, level three"
    assert [c["sku"] for c in item["confusable_with"]] == ["104471"]


async def test_fifty_parallel_moves_out_of_a_bin_of_twenty_never_oversell(
    api: httpx.AsyncClient,
) -> None:
    count = {"sku": "104417", "location": "A-12-03", "counted_quantity": 20, "expected_version": 1}
    response = await api.post("/counts", json=count, headers={"Idempotency-Key": "count-20"})
    assert response.status_code == 201

    one = {**MOVE, "quantity": 1}
    responses = await asyncio.gather(
        *(api.post("/moves", json=one, headers={"Idempotency-Key": f"m{i}"}) for i in range(50))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 20 + [409] * 30
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"INSUFFICIENT_STOCK"}
    assert await on_hand(api, "104417", "A-12-03") == 0
    assert await on_hand(api, "104417", "A-14-01") == 20
    assert len(await audit(api, sku="104417", action="move")) == 20


async def test_same_key_and_body_replays_the_first_answer_and_moves_once(
    api: httpx.AsyncClient,
) -> None:
    first = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "k-1"})
    again = await api.post(
        "/moves", json=dict(reversed(MOVE.items())), headers={"Idempotency-Key": "k-1"}
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert (first.headers["Idempotent-Replayed"], again.headers["Idempotent-Replayed"]) == (
        "false",
        "true",
    )
    assert await on_hand(api, "104417", "A-12-03") == 35
    assert len(await audit(api, action="move")) == 1


async def test_a_write_that_crashes_halfway_changes_nothing_and_its_retry_runs_once(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_increment = operations._increment
    crashes = [RuntimeError("the disk went away after the decrement")]

    def increment_once_failing(*args: Any) -> None:
        if crashes:
            raise crashes.pop()
        real_increment(*args)

    monkeypatch.setattr(operations, "_increment", increment_once_failing)
    failed = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "crash"})
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert await on_hand(api, "104417", "A-12-03") == 40  # the decrement was rolled back

    retried = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "crash"})
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "false"  # nothing was kept for the key
    assert await on_hand(api, "104417", "A-12-03") == 35
    assert await on_hand(api, "104417", "A-14-01") == 5
    assert len(await audit(api, action="move")) == 1


async def test_same_key_with_another_body_is_refused_with_422(api: httpx.AsyncClient) -> None:
    await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "k-2"})
    response = await api.post(
        "/moves", json={**MOVE, "quantity": 6}, headers={"Idempotency-Key": "k-2"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await on_hand(api, "104417", "A-12-03") == 35


async def test_a_write_without_key_is_refused_with_400_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/moves", json=MOVE)
    assert response.status_code == 400
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert await on_hand(api, "104417", "A-12-03") == 40
    assert await audit(api) == []


async def test_a_key_still_in_progress_elsewhere_answers_409_and_changes_nothing(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    from device.inventory import idempotency
    from device.inventory.db import open_database

    fp = idempotency.fingerprint("POST", "/api/v1/moves", MOVE)
    # A second server process on the same database has claimed the key and not finished yet.
    other = open_database(inventory.db)
    try:
        other.write(lambda c: idempotency.claim(c, "demo-01", "busy", fp))
        busy = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "busy"})
        # That process died mid-request long ago: its lease ran out and the change never
        # committed, so the key may be taken over and the move runs exactly once.
        other.write(lambda c: idempotency.claim(c, "demo-01", "stale", fp, now=0.0, lease_s=1.0))
        stale = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "stale"})
    finally:
        other.close()

    assert busy.status_code == 409
    assert busy.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert busy.headers["Retry-After"] == "1"
    assert stale.status_code == 201
    assert await on_hand(api, "104417", "A-12-03") == 35


async def test_a_count_from_a_stale_version_is_refused_with_412(api: httpx.AsyncClient) -> None:
    seen = await version_of(api, "104417", "A-12-03")
    moved = await api.post("/moves", json=MOVE, headers={"Idempotency-Key": "meanwhile"})
    assert moved.status_code == 201

    count = {"sku": "104417", "location": "A-12-03", "counted_quantity": 38}
    stale = await api.post(
        "/counts", json={**count, "expected_version": seen}, headers={"Idempotency-Key": "c1"}
    )
    assert stale.status_code == 412
    assert stale.json()["code"] == "STALE_COUNT"
    assert await on_hand(api, "104417", "A-12-03") == 35

    fresh = await api.post(
        "/counts",
        json={**count, "expected_version": await version_of(api, "104417", "A-12-03")},
        headers={"Idempotency-Key": "c2"},
    )
    assert fresh.status_code == 201
    assert fresh.json()["delta"] == {"A-12-03": 3}
    assert await on_hand(api, "104417", "A-12-03") == 38


async def test_a_dry_run_returns_before_and_after_and_changes_nothing(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/moves", json=MOVE, params={"dry_run": "true"}, headers={"Idempotency-Key": "d"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["dry_run"] is True
    assert body["before"] == {"A-12-03": 40, "A-14-01": 0}
    assert body["after"] == {"A-12-03": 35, "A-14-01": 5}
    assert body["audit_id"] is None
    assert await on_hand(api, "104417", "A-12-03") == 40
    assert await audit(api) == []


async def test_the_audit_row_names_who_asked_and_what_changed(api: httpx.AsyncClient) -> None:
    headers = {
        "Idempotency-Key": "k-audit",
        "X-Operator": "op-7",
        "X-Session-Id": "s-1",
        "X-Call-Id": "c-9",
    }
    await api.post("/moves", json=MOVE, headers=headers)
    [entry] = await audit(api, location="A-12-03")
    assert entry["action"] == "move"
    assert (entry["device_id"], entry["operator"]) == ("demo-01", "op-7")
    assert (entry["session_id"], entry["call_id"], entry["idempotency_key"]) == (
        "s-1",
        "c-9",
        "k-audit",
    )
    assert entry["before"] == {"A-12-03": 40, "A-14-01": 0}
    assert entry["after"] == {"A-12-03": 35, "A-14-01": 5}
    assert entry["delta"] == {"A-12-03": -5, "A-14-01": 5}


def test_the_audit_log_cannot_be_rewritten(inventory: RunningInventory) -> None:
    from device.inventory.db import database_errors, open_database

    db = open_database(inventory.db)
    try:
        db.write(
            lambda c: c.execute(
                "INSERT INTO audit_log (at, action, device_id, before, after, delta) "
                "VALUES ('t', 'move', 'd', '{}', '{}', '{}')"
            )
        )
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
            try:
                db.write(lambda c, sql=statement: c.execute(sql))  # type: ignore[misc]
            except database_errors() as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement!r} was allowed")
        count = db.read(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0])
        assert count == 1
    finally:
        db.close()


async def test_tokens_are_stored_only_as_sha256(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    from device.inventory.db import is_postgres_url, open_database

    if not is_postgres_url(inventory.db):
        raw = b"".join(
            path.read_bytes()
            for path in inventory.db_path.parent.iterdir()
            if path.name.startswith(inventory.db_path.name) and not path.name.endswith("-token")
        )
        assert inventory.token.encode() not in raw
    db = open_database(inventory.db)
    try:
        rows = db.read(lambda c: c.execute("SELECT * FROM devices").fetchall())
    finally:
        db.close()
    assert inventory.token not in repr([tuple(row) for row in rows])
    [row] = rows
    assert row["token_sha256"] == hashlib.sha256(inventory.token.encode()).hexdigest()


async def test_a_wrong_or_missing_token_gets_401(inventory: RunningInventory) -> None:
    async with httpx.AsyncClient(base_url=inventory.base_url) as anon:
        missing = await anon.get("/items", params={"sku": "104417"})
        wrong = await anon.get(
            "/items", params={"sku": "104417"}, headers={"Authorization": "Bearer wvi_nope"}
        )
        moved = await anon.post(
            "/moves",
            json=MOVE,
            headers={"Authorization": "Bearer wvi_nope", "Idempotency-Key": "x"},
        )
    for response in (missing, wrong, moved):
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_minted_token_works_and_replaces_the_old_one(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    from device.inventory.tokens import mint_token

    new = mint_token(inventory.db, "demo-01")
    old = await api.get("/picks/next")
    async with httpx.AsyncClient(
        base_url=inventory.base_url, headers={"Authorization": f"Bearer {new}"}
    ) as fresh:
        now = await fresh.get("/picks/next")
    assert (old.status_code, now.status_code) == (401, 200)


async def test_short_pick_needs_the_bins_check_digits(
    api: httpx.AsyncClient, inventory: RunningInventory
) -> None:
    digits = check_digits_for(inventory.db, "A-12-03")
    wrong = "999" if digits != "999" else "998"
    refused = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 2, "check_digits": wrong},
        headers={"Idempotency-Key": "p1"},
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "CHECK_DIGIT_MISMATCH"
    assert "check_digits" not in (await api.get("/locations/A-12-03")).text

    short = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 2, "check_digits": digits},
        headers={"Idempotency-Key": "p2"},
    )
    assert short.status_code == 201
    assert (short.json()["short"], short.json()["task"]["status"]) == (True, "short")
    assert await on_hand(api, "104417", "A-12-03") == 38
    assert (await api.get("/picks/next")).json()["task"]["id"] == "P0002"

    again = await api.post(
        "/picks/P0001/confirm",
        json={"quantity": 2, "check_digits": digits},
        headers={"Idempotency-Key": "p3"},
    )
    assert again.json()["code"] == "PICK_NOT_OPEN"


async def test_moving_into_the_wrong_zone_or_out_of_qa_hold_is_refused(
    api: httpx.AsyncClient,
) -> None:
    freezer = await api.post(
        "/moves", json={**MOVE, "to_location": "H-01-01"}, headers={"Idempotency-Key": "z1"}
    )
    assert (freezer.status_code, freezer.json()["code"]) == (409, "ZONE_MISMATCH")

    damaged = await api.post(
        "/damage-reports",
        json={"sku": "104417", "location": "A-12-03", "quantity": 3, "damage": "crushed"},
        headers={"Idempotency-Key": "d1"},
    )
    assert damaged.status_code == 201
    hold = damaged.json()["hold_location"]
    assert await on_hand(api, "104417", hold) == 3
    assert await on_hand(api, "104417", "A-12-03") == 37

    release = await api.post(
        "/moves",
        json={**MOVE, "from_location": hold, "to_location": "A-12-03", "quantity": 3},
        headers={"Idempotency-Key": "z2"},
    )
    assert (release.status_code, release.json()["code"]) == (409, "LOCATION_ON_HOLD")


async def test_unknown_sku_suggests_the_ones_a_slip_away(api: httpx.AsyncClient) -> None:
    response = await api.get("/items/104471")
    assert response.status_code == 200
    missing = await api.get("/items/140417")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "104417" in missing.json()["suggestions"]


async def test_every_error_is_problem_json(api: httpx.AsyncClient) -> None:
    cases = [
        await api.get("/no-such-thing"),
        await api.delete("/moves"),
        await api.post("/moves", json={"sku": "12"}, headers={"Idempotency-Key": "v"}),
        await api.post("/moves", content=b"{not json", headers={"Idempotency-Key": "w"}),
    ]
    assert [r.status_code for r in cases] == [404, 405, 422, 422]
    for response in cases:
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "detail", "code"} <= body.keys()
        assert body["status"] == response.status_code
    assert {e["field"] for e in cases[2].json()["errors"]} >= {"body.sku", "body.quantity"}
