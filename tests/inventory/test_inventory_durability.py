"""Guarantees that must hold on SQLite and on PostgreSQL alike: two servers on one database
never oversell, and a server killed with -9 mid-load loses no acknowledged write and applies
every retried one exactly once. A restart with `--seed demo` starts the database as it is."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from device.inventory.server import InventoryServer

MOVE = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01", "quantity": 1}


def serve(database: str, token_file: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.inventory.cli", "serve", "--db", database, "--port", "0",
         "--seed", "demo", "--token-file", str(token_file), "--idempotency-lease-s", "1",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "inventory API on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    raise AssertionError(f"serve exited with {proc.wait()}: {lines}")


async def stock(client: httpx.AsyncClient, location: str) -> int:
    rows = (await client.get("/stock", params={"sku": "104417", "location": location})).json()
    return int(rows["stock"][0]["quantity"]) if rows["stock"] else 0


async def settle(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Retry one write until it has an answer, as the device's outbox does."""
    for _ in range(200):
        try:
            response = await client.post("/moves", json=MOVE, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            await asyncio.sleep(0.05)
            continue
        if response.status_code != 409 or response.json()["code"] != "IDEMPOTENCY_IN_PROGRESS":
            return response
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError(f"{key} never settled")


@pytest.mark.slow
async def test_a_server_killed_mid_load_loses_nothing_and_applies_each_retry_once(
    database: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "demo-token"
    proc, url = serve(database, token_file)
    token = token_file.read_text().strip()
    keys = [f"crash-{i}" for i in range(30)]
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        ) as client:
            killed = asyncio.Event()

            async def one(key: str) -> None:
                try:
                    response = await client.post(
                        "/moves", json=MOVE, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    acknowledged.append(key)
                    if len(acknowledged) == 10:
                        proc.send_signal(signal.SIGKILL)  # mid-load, writes still in flight
                        killed.set()

            async def after_the_kill(key: str) -> None:
                # A fast server can answer every write before the kill lands (CI saw all 30
                # acknowledged); these are sent once it is dead, so some writes always go
                # unanswered and must be applied by their retry.
                await asyncio.wait_for(killed.wait(), timeout=60)
                await asyncio.to_thread(proc.wait)
                await one(key)

            await asyncio.gather(
                *(one(key) for key in keys[:25]), *(after_the_kill(key) for key in keys[25:])
            )
    finally:
        proc.kill()
        proc.wait()
    assert 10 <= len(acknowledged) < len(keys)

    proc, url = serve(database, token_file)  # same command: the data stays as it is
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        ) as client:
            answers = {key: await settle(client, key) for key in keys}
            audit = (await client.get("/audit", params={"action": "move"})).json()["entries"]
            left, moved = await stock(client, "A-12-03"), await stock(client, "A-14-01")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert {key: r.status_code for key, r in answers.items()} == dict.fromkeys(keys, 201)
    for key in acknowledged:  # acknowledged before the crash: kept, and replayed on retry
        assert answers[key].headers["Idempotent-Replayed"] == "true"
    assert sorted(e["idempotency_key"] for e in audit) == sorted(keys)  # each exactly once
    assert (left, moved) == (40 - len(keys), len(keys))


@pytest.mark.slow
async def test_two_servers_on_one_database_never_oversell(database: str) -> None:
    first = InventoryServer(database, seed="demo")
    running = first.start()
    second = InventoryServer(database, seed="demo")  # already seeded: starts as it is
    other = second.start()
    try:
        assert other.seed is None
        headers = {"Authorization": f"Bearer {running.token}"}
        async with (
            # Generous timeouts: on a loaded CI machine 50 writes through two servers queue.
            httpx.AsyncClient(base_url=running.base_url, headers=headers, timeout=60) as a,
            httpx.AsyncClient(base_url=other.base_url, headers=headers, timeout=60) as b,
        ):
            count = {"sku": "104417", "location": "A-12-03", "counted_quantity": 20,
                     "expected_version": 1}  # fmt: skip
            assert (
                await a.post("/counts", json=count, headers={"Idempotency-Key": "c"})
            ).is_success
            results: list[Any] = await asyncio.gather(
                *(
                    (a if i % 2 else b).post(
                        "/moves", json=MOVE, headers={"Idempotency-Key": f"m{i}"}
                    )
                    for i in range(50)
                )
            )
            statuses = sorted(r.status_code for r in results)
            assert statuses == [201] * 20 + [409] * 30
            assert await stock(a, "A-12-03") == 0 and await stock(b, "A-14-01") == 20
            # A count from a version the other server has moved on from is refused.
            stale = await b.post("/counts", json=count, headers={"Idempotency-Key": "c2"})
            assert (stale.status_code, stale.json()["code"]) == (412, "STALE_COUNT")
    finally:
        second.stop()
        first.stop()
