"""The demo warehouse generator: realistic, deterministic, with the demo's anchors."""

from __future__ import annotations

import sqlite3
import stat
from collections import Counter
from pathlib import Path

import pytest

from device.inventory.db import Database
from device.inventory.seed import (
    SeedError,
    demo_token_path,
    is_valid_gtin13,
    seed_demo,
)

TABLES = ("items", "confusables", "locations", "stock", "pick_tasks")


def build(path: Path, number: int = 7) -> dict[str, list[tuple[object, ...]]]:
    db = Database(path)
    try:
        seed_demo(db, number=number)
    finally:
        db.close()
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def test_the_same_seed_number_builds_the_same_warehouse(tmp_path: Path) -> None:
    first = build(tmp_path / "a.db")
    assert build(tmp_path / "b.db") == first
    other = build(tmp_path / "c.db", number=8)
    assert other["locations"] != first["locations"]


def test_the_demo_warehouse_looks_like_a_warehouse(tmp_path: Path) -> None:
    data = build(tmp_path / "w.db")
    items, locations, stock, picks = (
        data["items"],
        data["locations"],
        data["stock"],
        data["pick_tasks"],
    )

    assert 280 <= len(items) <= 320
    assert all(is_valid_gtin13(str(row[1])) for row in items)
    assert len({row[1] for row in items}) == len(items)

    assert 580 <= len(locations) <= 620
    digits = [str(row[3]) for row in locations]
    assert len(set(digits)) == len(digits)
    assert all(len(d) == 3 and d.isdigit() for d in digits)
    zones = Counter(str(row[1]) for row in locations)
    assert set(zones) == {"DRY", "CHL", "FRZ", "BULK", "QA-HOLD"}

    stocked = {str(row[0]) for row in stock if int(str(row[2])) > 0}
    assert 0 < len(locations) - len(stocked) < len(locations) // 2  # some bins are empty
    assert len(data["confusables"]) >= 40

    assert len(picks) == 20 and all(row[6] == "open" for row in picks)
    on_hand = {(str(row[0]), str(row[1])): int(str(row[2])) for row in stock}
    for _id, _seq, sku, location, quantity, *_ in picks:
        assert 0 < int(str(quantity)) <= on_hand[(str(location), str(sku))]

    demo = [row for row in stock if row[1] == "104417"]
    assert [(row[0], row[2]) for row in demo] == [("A-12-03", 40)]
    assert not [row for row in stock if row[0] == "A-14-01"]
    assert ("104417", "104471", "similar_sku") in data["confusables"]


def test_the_demo_token_is_left_readable_only_by_its_owner(tmp_path: Path) -> None:
    db = Database(tmp_path / "inv.db")
    try:
        report = seed_demo(db)
        with pytest.raises(SeedError, match="already holds"):
            seed_demo(db)
    finally:
        db.close()
    token_file = demo_token_path(tmp_path / "inv.db")
    assert token_file.read_text().strip() == report.token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
