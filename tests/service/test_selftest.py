"""`warehouse-voice selftest` on this machine's virtual devices, and with the mic missing."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device.cli import main
from device.config import REPO_CONFIG_DIR
from device.inventory.server import RunningInventory, serve_inventory
from device.sim.alsa import virtual_alsa
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario
from device.wake.download import Downloader
from device.wake.models import fetch_models

CONFIG = """
[device]
state_dir = "{state}"
[live]
base_url = "{url}"
ca_file = "{ca}"
api_key_file = "{work}/key"
instructions = "{config_dir}/instructions.md"
[audio]
input_device = "{mic}"
output_device = "vspk"
[gpio]
pin_factory = "mock"
[tools]
inventory_url = "{inventory}"
token_file = "{work}/token"
"""

WHEEL_CACHE = Path(
    os.environ.get(
        "WAREHOUSE_VOICE_TEST_MODEL_CACHE", Path.home() / ".cache" / "warehouse-voice-test-models"
    )
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    state = tmp_path / "state"
    fetch_models(
        state, downloader=Downloader(release_url=None, wheel_cache=WHEEL_CACHE), notify=print
    )
    (tmp_path / "key").write_text("selftest-key")
    emulator = Emulator(
        load_scenario("where-is-sku"), workdir=tmp_path / "emu", api_key="selftest-key"
    )
    inventory: RunningInventory
    async with emulator, serve_inventory(tmp_path / "inv.db", seed="demo") as inventory:
        (tmp_path / "token").write_text(inventory.token)
        yield {
            "work": tmp_path,
            "state": state,
            "url": emulator.url,
            "ca": emulator.ca_file,
            "inventory": inventory.base_url,
            "config_dir": REPO_CONFIG_DIR,
        }


def write_config(world: dict[str, Any], mic: str) -> Path:
    path = Path(world["work"]) / "config.toml"
    path.write_text(CONFIG.format(mic=mic, **world))
    return path


async def selftest(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    import asyncio

    code = await asyncio.to_thread(main, ["selftest", "--json", "--config", str(config)])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
async def test_selftest_passes_with_the_virtual_devices(world, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with virtual_alsa(tmp_path / "alsa", b"\x10\x00" * 16000):
        code, report = await selftest(write_config(world, "vmic"), capsys)
    checks = {c["check"]: c for c in report["checks"]}
    assert code == 0, report
    assert report["ok"] is True
    assert set(checks) == {
        "config",
        "mic",
        "speaker",
        "camera",
        "gpio",
        "wake",
        "inventory",
        "gemini",
    }
    assert "level" in checks["mic"]["detail"]
    assert "hey_jarvis" in checks["wake"]["detail"]
    assert "key valid" in checks["gemini"]["detail"]


@pytest.mark.slow
async def test_selftest_names_a_missing_mic(world, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with virtual_alsa(tmp_path / "alsa"):
        code, report = await selftest(write_config(world, "USB Headset"), capsys)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert code == 1
    assert [c["check"] for c in failed] == ["mic"]
    assert "USB Headset" in failed[0]["detail"] and "audio.input_device" in failed[0]["detail"]


@pytest.mark.slow
async def test_selftest_catches_a_wrong_key_and_token(world, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "key").write_text("wrong-key")
    (tmp_path / "token").write_text("wrong-token")
    with virtual_alsa(tmp_path / "alsa"):
        code, report = await selftest(write_config(world, "vmic"), capsys)
    failed = {c["check"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert code == 1
    assert set(failed) == {"inventory", "gemini"}
    assert "token" in failed["inventory"] and "API key" in failed["gemini"]
