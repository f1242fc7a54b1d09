"""A read with no check of its own counts when the inventory (the real API, over HTTP) knows
the SKU or bin; anything else, the API down included, stays unconfirmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vision_frames import save, scene

from device.events import EventBus
from device.inventory.server import serve_inventory
from device.tools.inventory_client import InventoryClient
from device.vision import tools as vision_tools
from device.vision.barcodes import CodeFormat, DecodedCode, ScanResult
from device.vision.camera import DirectorySource
from device.vision.lookup import inventory_lookup
from device.vision.snapshots import SnapshotStreamer
from device.vision.tools import VisionTools


def code(text: str) -> DecodedCode:
    return DecodedCode(text, CodeFormat.CODE128, 300, 200)


async def test_known_skus_and_bins_exist_and_nothing_else_does(tmp_path: Path) -> None:
    async with serve_inventory(tmp_path / "inv.db", seed="demo") as inventory:
        client = InventoryClient(inventory.base_url, inventory.token)
        exists = inventory_lookup(client)
        try:
            assert await exists(code("104417"))
            assert await exists(code("A-12-03"))
            assert not await exists(code("999999"))
            assert not await exists(code("Z-99-99"))
            assert not await exists(code("104417\\n"))
        finally:
            await client.aclose()
    down = InventoryClient(inventory.base_url, inventory.token)  # the server is gone now
    try:
        assert not await inventory_lookup(down)(code("104417"))
    finally:
        await down.aclose()


async def test_the_tool_accepts_an_unconfirmed_read_the_inventory_knows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One view read it and it has no check: only the look-up can make it count.
    async def one_view(image: Any, formats: Any) -> ScanResult:
        return ScanResult(width=1280, height=720, unconfirmed=[code("104417"), code("999999")])

    monkeypatch.setattr(vision_tools, "scan_async", one_view)
    save(scene(1), tmp_path / "cam")
    streamer = SnapshotStreamer(DirectorySource(tmp_path / "cam"), bus=EventBus())
    async with serve_inventory(tmp_path / "inv.db", seed="demo") as inventory:
        client = InventoryClient(inventory.base_url, inventory.token)
        try:
            known = VisionTools(streamer, exists=inventory_lookup(client))
            result = await known.scan_barcode({})
            assert [c["text"] for c in result["codes"]] == ["104417"]
            unchecked = await VisionTools(streamer).scan_barcode({})
            assert unchecked["status"] == "unreadable"
        finally:
            await client.aclose()
