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
