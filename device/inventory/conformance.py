"""`warehouse-voice inventory conformance URL --token T`: does a server keep the contract?

A site that bridges its own WMS to the devices runs this against a test instance of the
bridge (it writes: it moves and counts stock). Each check prints PASS or FAIL with what it saw:

- openapi: schemathesis against the server's own OpenAPI, every check it has;
- problem+json: errors are RFC 9457 documents with a machine `code`;
- concurrency: parallel moves out of one bin never sell more than the bin holds;
- idempotency: a repeated Idempotency-Key replays the first answer and moves once; the same
  key with another body is refused; a dry run changes nothing;
- stale counts: a count from a version that has moved on is refused with 412;
- strict types: "1", true and 1.0 where an integer is due are refused with 422.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROBLEM = "application/problem+json"
BIN_SIZE = 10  # units put in the test bin; 3x as many single-unit moves race for them


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


class CheckFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Bin:
    sku: str
    source: str
    target: str


def _key() -> str:
    return f"conformance-{uuid.uuid4().hex}"


class Kit:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _stock(self, sku: str, location: str) -> tuple[int, int]:
        rows = (await self.client.get("/stock", params={"sku": sku, "location": location})).json()
        if not rows["stock"]:
            return 0, 0
        return int(rows["stock"][0]["quantity"]), int(rows["stock"][0]["version"])

    async def find_bin(self) -> Bin:
        """A SKU stocked in one bin, and another bin of the same zone to move it to."""
        response = await self.client.get("/stock", params={"limit": 500})
        expect(response.status_code == 200, f"GET /stock answered {response.status_code}")
        rows = [r for r in response.json()["stock"] if r["zone"] != "QA-HOLD"]
        for row in rows:
            for other in rows:
                if other["zone"] == row["zone"] and other["location"] != row["location"]:
                    return Bin(row["sku"], row["location"], other["location"])
        raise CheckFailed("no two stocked bins in one zone to test with: load test data")

    async def fill(self, where: Bin, quantity: int) -> None:
        _, version = await self._stock(where.sku, where.source)
        body = {"sku": where.sku, "location": where.source, "counted_quantity": quantity,
                "expected_version": version}  # fmt: skip
        response = await self.client.post("/counts", json=body, headers={"Idempotency-Key": _key()})
        expect(response.status_code == 201, f"a count answered {response.status_code}")

    def _move(self, where: Bin, quantity: int = 1) -> dict[str, Any]:
        return {"sku": where.sku, "from_location": where.source, "to_location": where.target,
                "quantity": quantity}  # fmt: skip

    async def problem_json(self) -> str:
        cases = {
            "unknown path": await self.client.get("/no-such-resource"),
            "write without Idempotency-Key": await self.client.post("/moves", json={}),
            "unknown token": await self.client.get(
                "/stock", headers={"Authorization": "Bearer not-a-token"}
            ),
        }
        for what, response in cases.items():
            expect(response.status_code >= 400, f"{what}: answered {response.status_code}")
            media = response.headers.get("content-type", "").split(";")[0].strip()
            expect(media == PROBLEM, f"{what}: content type {media!r}, not {PROBLEM}")
            body = response.json()
            missing = {"type", "title", "status", "detail", "code"} - set(body)
            expect(not missing, f"{what}: problem without {', '.join(sorted(missing))}")
            expect(body["status"] == response.status_code, f"{what}: status field differs")
        return f"{len(cases)} errors were problem+json with a code"

    async def concurrency(self) -> str:
        where = await self.find_bin()
        await self.fill(where, BIN_SIZE)
        moves = await asyncio.gather(
            *(
                self.client.post(
                    "/moves", json=self._move(where), headers={"Idempotency-Key": _key()}
                )
                for _ in range(3 * BIN_SIZE)
            )
        )
        ok = sum(r.status_code == 201 for r in moves)
        refused = [r for r in moves if r.status_code == 409]
        left, _ = await self._stock(where.sku, where.source)
        expect(ok <= BIN_SIZE, f"oversold: {ok} moves of 1 succeeded out of a bin of {BIN_SIZE}")
        expect(ok == BIN_SIZE, f"only {ok} of {BIN_SIZE} possible moves succeeded")
        expect(left == 0, f"the bin holds {left} after {ok} moves of its {BIN_SIZE}")
        codes = {r.json().get("code") for r in refused}
        expect(
            len(refused) == 2 * BIN_SIZE and codes == {"INSUFFICIENT_STOCK"},
            f"the refused moves answered {sorted(r.status_code for r in moves if r not in refused)}"
            f" and codes {codes}, not 409 INSUFFICIENT_STOCK",
        )
        return f"{3 * BIN_SIZE} parallel moves, {ok} applied, bin of {BIN_SIZE} left at 0"

    async def idempotency(self) -> str:
        where = await self.find_bin()
        await self.fill(where, BIN_SIZE)
        key = _key()
        first = await self.client.post(
            "/moves", json=self._move(where), headers={"Idempotency-Key": key}
        )
        again = await self.client.post(
            "/moves", json=self._move(where), headers={"Idempotency-Key": key}
        )
        expect(first.status_code == 201, f"the first move answered {first.status_code}")
        expect(again.status_code == 201, f"the repeat answered {again.status_code}")
        expect(again.content == first.content, "the repeat's body differs from the first")
        left, _ = await self._stock(where.sku, where.source)
        expect(left == BIN_SIZE - 1, f"two sends of one key moved {BIN_SIZE - left} units")
        other = await self.client.post(
            "/moves", json=self._move(where, 2), headers={"Idempotency-Key": key}
        )
        expect(other.status_code == 422, f"the key with another body answered {other.status_code}")
        dry = await self.client.post(
            "/moves",
            json=self._move(where),
            params={"dry_run": "true"},
            headers={"Idempotency-Key": _key()},
        )
        expect(dry.status_code == 200, f"a dry run answered {dry.status_code}")
        after, _ = await self._stock(where.sku, where.source)
        expect(after == left, "a dry run changed the stock")
        return "repeat replayed and moved once; key reuse refused; dry run changed nothing"

    async def stale_counts(self) -> str:
        where = await self.find_bin()
        await self.fill(where, BIN_SIZE)
        _, seen = await self._stock(where.sku, where.source)
        moved = await self.client.post(
            "/moves", json=self._move(where), headers={"Idempotency-Key": _key()}
        )
        expect(moved.status_code == 201, f"a move answered {moved.status_code}")
        body = {"sku": where.sku, "location": where.source, "counted_quantity": 3,
                "expected_version": seen}  # fmt: skip
        stale = await self.client.post("/counts", json=body, headers={"Idempotency-Key": _key()})
        expect(stale.status_code == 412, f"a count from a stale version got {stale.status_code}")
        left, _ = await self._stock(where.sku, where.source)
        expect(left == BIN_SIZE - 1, "a refused stale count changed the stock")
        return "a count from a version that moved on was refused with 412"

    async def strict_types(self) -> str:
        where = await self.find_bin()
        for bad in ("1", True, 1.0):
            response = await self.client.post(
                "/moves",
                json={**self._move(where), "quantity": bad},
                headers={"Idempotency-Key": _key()},
            )
            expect(response.status_code == 422, f"quantity {bad!r} answered {response.status_code}")
        return 'quantity "1", true and 1.0 were refused with 422'


async def _run_http_checks(
    base_url: str, token: str, only: set[str] | None, verify: ssl.SSLContext | bool
) -> list[CheckResult]:
    results: list[CheckResult] = []
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
        verify=verify,
    ) as client:
        kit = Kit(client)
        checks: dict[str, Callable[[], Awaitable[str]]] = {
            "problem+json": kit.problem_json,
            "concurrency": kit.concurrency,
            "idempotency": kit.idempotency,
            "stale counts": kit.stale_counts,
            "strict types": kit.strict_types,
        }
        for name, check in checks.items():
            if only is not None and name not in only:
                continue
            try:
                results.append(CheckResult(name, True, await check()))
            except (CheckFailed, httpx.HTTPError, KeyError, ValueError) as exc:
                results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results


CHECK_NAMES = ("openapi", "problem+json", "concurrency", "idempotency", "stale counts",
               "strict types")  # fmt: skip


def run_conformance(
    base_url: str,
    token: str,
    *,
    examples: int = 10,
    only: set[str] | None = None,
    ca_file: Path | None = None,
) -> list[CheckResult]:
    """Every check against the server at `base_url` (the API root, e.g. .../api/v1).

    `ca_file` is the CA to trust for an https:// server with a site certificate.
    """
    from device.inventory.conformance_openapi import openapi_check

    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    results: list[CheckResult] = []
    if only is None or "openapi" in only:
        results.append(openapi_check(base_url, token, examples=examples, ca_file=ca_file))
    results += asyncio.run(_run_http_checks(base_url.rstrip("/"), token, only, verify))
    return results


def report(results: list[CheckResult]) -> str:
    lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.name}: {r.detail}" for r in results]
    failed = [r.name for r in results if not r.passed]
    lines.append(
        f"conformance: {len(results) - len(failed)} of {len(results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)
