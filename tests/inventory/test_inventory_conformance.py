"""The conformance kit passes the reference API on both databases and names the check that a
deliberately broken server fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device.inventory import operations
from device.inventory.cli import main
from device.inventory.conformance import run_conformance
from device.inventory.db import Conn
from device.inventory.server import InventoryServer, RunningInventory


@pytest.fixture
def reference(database: str) -> Iterator[RunningInventory]:
    server = InventoryServer(database, seed="demo")
    running = server.start()
    try:
        yield running
    finally:
        server.stop()


@pytest.mark.slow
def test_the_reference_api_passes_every_check(
    reference: RunningInventory, capsys: pytest.CaptureFixture[str]
) -> None:
    # One schemathesis example per operation and mode: this test is about the kit passing the
    # reference on both databases. The depth (25 examples per operation, positive and
    # negative, every check, the kit's own case preparation, both databases) is
    # test_inventory_openapi.py::test_every_operation_answers_as_documented.
    code = main(["conformance", reference.base_url, "--token", reference.token, "--examples", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("openapi", "problem+json", "concurrency", "idempotency", "stale counts",
                 "strict types"):  # fmt: skip
        assert f"PASS  {name}:" in out
    assert "6 of 6 checks passed" in out


def _oversell(conn: Conn, location: str, sku: str, quantity: int) -> None:
    """A broken decrement: it never refuses, and clamps at zero instead."""
    conn.execute(
        "UPDATE stock SET quantity = CASE WHEN quantity >= ? THEN quantity - ? ELSE 0 END, "
        "version = version + 1 WHERE location = ? AND sku = ?",
        (quantity, quantity, location, sku),
    )


def test_a_server_that_oversells_fails_the_concurrency_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(operations, "_decrement", _oversell)
    server = InventoryServer(tmp_path / "broken.db", seed="demo")
    running = server.start()
    try:
        checked = run_conformance(
            running.base_url, running.token, only={"concurrency", "idempotency"}
        )
        results = {r.name: r for r in checked}
        code = main(["conformance", running.base_url, "--token", running.token, "--examples", "1"])
    finally:
        server.stop()
    assert not results["concurrency"].passed
    assert "oversold" in results["concurrency"].detail
    assert results["idempotency"].passed
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  concurrency: " in out, out
    assert "failed: " in out and "concurrency" in out.splitlines()[-1]


@pytest.mark.slow
def test_the_kit_checks_an_https_server_with_the_sites_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device.sim.tls import ensure_certificates

    certs = ensure_certificates(tmp_path / "tls")
    server = InventoryServer(
        tmp_path / "inv.db", seed="demo", tls=(certs.cert_file, certs.key_file)
    )
    running = server.start()
    try:
        assert running.base_url.startswith("https://")
        untrusted = main(["conformance", running.base_url, "--token", running.token,
                          "--examples", "1"])  # fmt: skip
        assert untrusted == 1
        assert "FAIL  problem+json: ConnectError" in capsys.readouterr().out
        code = main(["conformance", running.base_url, "--token", running.token,
                     "--examples", "1", "--ca-file", str(certs.ca_file)])  # fmt: skip
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "6 of 6 checks passed" in out
