"""`warehouse-voice inventory serve|token` as site IT runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from device.inventory.cli import main
from device.inventory.seed import demo_token_path


def test_token_prints_a_working_token_on_stdout_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device.inventory.db import Database
    from device.inventory.tokens import device_for_token

    db_path = tmp_path / "inv.db"
    assert main(["token", "dock-03", "--db", str(db_path)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("wvi_") and "dock-03" in err
    db = Database(db_path)
    try:
        assert device_for_token(db, token) == "dock-03"
    finally:
        db.close()


def test_a_bad_device_name_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "dock 03!", "--db", str(tmp_path / "inv.db")]) == 65
    assert "bad device id" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_seeds_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db_path = tmp_path / "inv.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.inventory.cli", "serve", "--seed", "demo",
         "--db", str(db_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seeded = proc.stdout.readline()
        listening = proc.stdout.readline()
        assert "seeded" in seeded and "demo-01" in seeded
        base_url = listening.strip().rsplit(" ", 1)[-1]
        token = demo_token_path(db_path).read_text().strip()
        response = httpx.get(
            f"{base_url}/items/104417", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.json()["total_quantity"] == 40
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM, which systemd counts as clean.
    assert code in (0, -signal.SIGTERM)
    assert proc.stderr is not None
    assert "Application shutdown complete" in proc.stderr.read()


def test_tokens_are_listed_and_revoked_by_device(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from device.inventory.db import open_database
    from device.inventory.tokens import device_for_token

    assert main(["token", "dock-03", "--db", database]) == 0
    assert main(["token", "dock-04", "--db", database]) == 0
    token = capsys.readouterr().out.split()[0]
    assert main(["tokens", "--db", database]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["dock-03", "dock-04"]
    assert all(line.split("\t")[2] == "active" for line in listed)

    assert main(["revoke", "dock-03", "--db", database]) == 0
    assert "revoked dock-03" in capsys.readouterr().err
    assert main(["revoke", "dock-03", "--db", database]) == 65
    assert "no active token for 'dock-03'" in capsys.readouterr().err
    assert main(["tokens", "--db", database]) == 0
    states = dict(line.split("\t")[::2] for line in capsys.readouterr().out.splitlines())
    assert states["dock-04"] == "active" and states["dock-03"].startswith("revoked ")
    db = open_database(database)
    try:
        assert device_for_token(db, token) is None  # dock-03's token no longer works
    finally:
        db.close()


@pytest.mark.slow
def test_serve_seed_demo_on_a_seeded_database_starts_it_as_it_is(tmp_path: Path) -> None:
    db_path = tmp_path / "inv.db"
    for run in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "device.inventory.cli", "serve", "--seed", "demo",
             "--db", str(db_path), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            listening = proc.stdout.readline()
            base_url = listening.strip().rsplit(" ", 1)[-1]
            token = demo_token_path(db_path).read_text().strip()
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "once"}
            if run == 0:
                assert "seeded" in first
                move = {"sku": "104417", "from_location": "A-12-03", "to_location": "A-14-01",
                        "quantity": 4}  # fmt: skip
                assert httpx.post(f"{base_url}/moves", json=move, headers=headers).is_success
            else:
                assert "already seeded; starting it as it is" in first
            item = httpx.get(f"{base_url}/items/104417", headers=headers).json()
            assert item["total_quantity"] == 40  # moved within the item, kept across restart
            assert [(e["location"], e["quantity"]) for e in item["locations"]] == [
                ("A-12-03", 36), ("A-14-01", 4)
            ]  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
