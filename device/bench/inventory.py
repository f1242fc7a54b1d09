"""Load benchmark of the reference inventory API: mixed reads and writes from N clients.

Run: `.venv/bin/python -m device.bench.inventory --clients 16 --seconds 10`.

The server runs in its own process exactly as `warehouse-voice inventory serve` (its own
listening socket, so its own socket options), and this process drives it over real TCP
connections to loopback. The load generator speaks HTTP/1.1 over raw keep-alive
connections, so that on a small machine the figures measure the server rather than the
client library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from device.inventory.db import open_database
from device.inventory.seed import DEMO_EMPTY_LOCATION, seed_demo

T = TypeVar("T")

BACKENDS = ("sqlite", "postgresql")

# Share of each request kind in the mix (sums to 1).
MIX = {"find_item": 0.25, "get_stock": 0.2, "next_pick": 0.1, "get_item": 0.1,
       "dry_run_move": 0.1, "move": 0.25}  # fmt: skip


@dataclass
class Lane:
    """One client's private SKU, so its moves back and forth never run out of stock."""

    sku: str
    home: str
    away: str = DEMO_EMPTY_LOCATION
    out: bool = False


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


class Connection:
    """A minimal HTTP/1.1 keep-alive client: enough for fixed JSON requests."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port, self._token = host, port, token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def request(
        self, method: str, path: str, body: dict[str, object] | None = None, key: str = ""
    ) -> int:
        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Authorization: Bearer {self._token}\r\nContent-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if key:
            head += f"Idempotency-Key: {key}\r\n"
        self._writer.write(head.encode() + b"\r\n" + payload)
        status_line = await self._reader.readline()
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self._reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


def _pick_lanes(target: str, clients: int) -> list[Lane]:
    db = open_database(target)
    try:
        rows = db.read(
            lambda c: c.execute(
                "SELECT s.sku, s.location FROM stock s JOIN items i ON i.sku = s.sku "
                "JOIN locations l ON l.code = s.location "
                "WHERE i.zone = 'DRY' AND l.zone = 'DRY' AND s.quantity >= 2 "
                "AND s.location != ? ORDER BY s.location",
                (DEMO_EMPTY_LOCATION,),
            ).fetchall()
        )
    finally:
        db.close()
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(row["sku"], row["location"])
    lanes = [Lane(sku=sku, home=home) for sku, home in seen.items()]
    if len(lanes) < clients:
        raise ValueError(f"at most {len(lanes)} clients fit the demo warehouse; got {clients}")
    return lanes[:clients]


async def _client(
    conn: Connection, lane: Lane, deadline: float, tally: Tally, rng: random.Random, index: int
) -> None:
    kinds, weights = list(MIX), list(MIX.values())
    n = 0
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        src, dst = (lane.away, lane.home) if lane.out else (lane.home, lane.away)
        move = {"sku": lane.sku, "from_location": src, "to_location": dst, "quantity": 1}
        start = time.perf_counter()
        if kind == "find_item":
            status = await conn.request("GET", f"/api/v1/items?sku={lane.sku}")
        elif kind == "get_stock":
            status = await conn.request("GET", f"/api/v1/stock?location={lane.home}")
        elif kind == "next_pick":
            status = await conn.request("GET", "/api/v1/picks/next")
        elif kind == "get_item":
            status = await conn.request("GET", f"/api/v1/items/{lane.sku}")
        elif kind == "dry_run_move":
            n += 1
            status = await conn.request(
                "POST", "/api/v1/moves?dry_run=true", move, key=f"bench-dry-{index}-{n}"
            )
        else:
            n += 1
            status = await conn.request("POST", "/api/v1/moves", move, key=f"bench-{index}-{n}")
            lane.out = not lane.out
        tally.add(kind, time.perf_counter() - start)
        if status >= 400:
            tally.errors += 1


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _start_server(target: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`inventory serve` in its own process, listening on its own socket, as site IT runs it."""
    log = (workdir / "server.log").open("wb")  # its access lines stay out of the report
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.inventory.cli", "serve", "--db", target,
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    log.close()
    assert proc.stdout is not None
    for line in proc.stdout:
        if b"inventory API on " in line:
            # The rest of stdout is not read again; the server logs to stderr.
            return proc, int(line.rsplit(b":", 1)[1].split(b"/", 1)[0])
    proc.wait()
    tail = (workdir / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"inventory serve exited with {proc.returncode} before listening: {tail}")


async def _wait_ready(port: int, token: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(500):
        if proc.poll() is not None:
            raise RuntimeError(f"inventory server exited with {proc.returncode}")
        try:
            conn = Connection("127.0.0.1", port, token)
            await conn.open()
            status = await conn.request("GET", "/api/v1/health")
            await conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError("inventory server did not become ready")


async def _bench(clients: int, seconds: float, workdir: Path, target: str) -> dict[str, float]:
    db = open_database(target)
    try:
        token = seed_demo(db, token_file=workdir / "demo-token").token
    finally:
        db.close()
    lanes = _pick_lanes(target, clients)
    proc, port = _start_server(target, workdir)
    try:
        await _wait_ready(port, token, proc)
        conns = [Connection("127.0.0.1", port, token) for _ in range(clients)]
        await asyncio.gather(*(c.open() for c in conns))
        tally = Tally()
        server_cpu = _cpu_seconds(proc.pid)
        client_cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(
                _client(conn, lane, deadline, tally, random.Random(i), i)
                for i, (conn, lane) in enumerate(zip(conns, lanes, strict=True))
            )
        )
        elapsed = time.perf_counter() - start
        server_cpu = _cpu_seconds(proc.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        await asyncio.gather(*(c.close() for c in conns))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    every = sorted(x for values in tally.latencies.values() for x in values)
    writes = sorted(tally.latencies.get("move", []))
    reads = sorted(
        x for kind, values in tally.latencies.items() if kind not in ("move", "dry_run_move")
        for x in values
    )  # fmt: skip
    return {
        "clients": float(clients),
        "seconds": elapsed,
        "requests": float(len(every)),
        "errors": float(tally.errors),
        "requests_per_s": len(every) / elapsed,
        "p50_ms": _percentile(every, 0.50) * 1000,
        "p99_ms": _percentile(every, 0.99) * 1000,
        "read_p99_ms": _percentile(reads, 0.99) * 1000,
        "write_p50_ms": _percentile(writes, 0.50) * 1000,
        "write_p99_ms": _percentile(writes, 0.99) * 1000,
        # What a request costs, independent of what else the machine is doing.
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, len(every)),
        "client_cpu_ms_per_request": client_cpu * 1000 / max(1, len(every)),
    }


def run_inventory_bench(clients: int, seconds: float, backend: str = "sqlite") -> dict[str, float]:
    """Requests/s and latency percentiles (ms) of the real server under a mixed load, on a
    SQLite file or on a private PostgreSQL server started for the run."""
    if clients < 1 or seconds <= 0:
        raise ValueError(f"need clients >= 1 and seconds > 0, got {clients} and {seconds}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix="inventory-bench-") as tmp:
        if backend == "sqlite":
            return _run(_bench(clients, seconds, Path(tmp), str(Path(tmp) / "bench.db")))
        from device.inventory.pgcluster import PostgresCluster

        with PostgresCluster() as cluster:
            return _run(_bench(clients, seconds, Path(tmp), cluster.create_database()))


def _run(main: Coroutine[Any, Any, T]) -> T:
    """The load generator shares the machine with the server: uvloop (when installed) costs it
    less CPU per request than asyncio's own loop, leaving more to the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.bench.inventory", description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    args = parser.parse_args(argv)
    for backend in BACKENDS if args.backend == "both" else [args.backend]:
        result = run_inventory_bench(args.clients, args.seconds, backend)
        print(f"inventory API on {backend}, {args.clients} clients, {result['seconds']:.1f} s:")
        for name, value in result.items():
            print(f"  {name:>15}: {value:,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
