"""The demo shift runs to completion without a terminal, and leaves the inventory as scripted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_shift_runs_and_leaves_the_scripted_inventory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "NOTIFY_SOCKET")}
    proc = subprocess.run(
        [sys.executable, "-m", "device.cli", "demo", "--speed", "6", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "demo finished" in out
    assert "\033[" not in out  # no terminal: plain lines
    for seen in ("find_item", "get_stock", "move_stock", "record_count", "verify_location"):
        assert f"-> {seen}(" in out, seen
    assert "reply interrupted" in out and "[LED awaiting confirmation]" in out
    # The reply the worker stopped is shown as cut; the rest were heard to their end.
    assert out.count("(cut short: not all of it was heard)") == 1
    # The GoAway mid-shift: the same conversation carried on over a new connection.
    assert "open (resumed)" in out
    # The inventory itself, read straight from the database the demo used.
    db = sqlite3.connect(tmp_path / "inventory.db")
    stock = dict(db.execute("SELECT location, quantity FROM stock WHERE sku = '104417'").fetchall())
    audit = db.execute("SELECT action, call_id FROM audit_log ORDER BY id").fetchall()
    task = db.execute("SELECT status FROM pick_tasks WHERE id = 'P0001'").fetchone()[0]
    db.close()
    assert stock["A-12-03"] == 33  # 40, minus 5 moved, minus 2 picked
    assert stock["A-14-01"] == 5  # 5 moved in, then counted at 5
    assert task == "short"
    # Each confirmed change applied exactly once, keyed by the model's original call.
    assert audit == [("move", "move-1"), ("count", "count-1"), ("pick", "pick-1-short")]
