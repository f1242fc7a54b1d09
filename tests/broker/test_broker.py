"""The site token broker: device tokens, minting through the real SDK against the emulator,
and what devices get when something is wrong."""

from __future__ import annotations

import asyncio
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from device.broker.app import create_app
from device.broker.cli import main
from device.broker.devices import DeviceFileError, DeviceRegistry, digest
from device.broker.mint import TokenMinter
from device.broker.settings import BrokerSettings, load_broker_settings
from device.config import ConfigError
from device.live.failures import LiveUnavailable
from device.live.tokens import BrokerTokens
from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

KEY = "AIza-broker-test-key"


def test_registry_stores_digests_only_and_revokes(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    token = registry.add("dock-03")
    other = registry.add("dock-04")
    text = (tmp_path / "devices.json").read_text()
    assert token not in text and digest(token) in text
    assert stat.S_IMODE((tmp_path / "devices.json").stat().st_mode) == 0o600
    # A second process (the running broker) sees changes without a restart.
    running = DeviceRegistry(tmp_path / "devices.json")
    assert running.authenticate(token) == "dock-03"
    assert running.authenticate(other) == "dock-04"
    assert running.authenticate(token + "x") is None
    assert registry.revoke("dock-03") and not registry.revoke("dock-03")
    assert running.authenticate(token) is None
    # A new token replaces the old one.
    replaced = registry.add("dock-04")
    assert running.authenticate(other) is None and running.authenticate(replaced) == "dock-04"


def test_bad_device_ids_and_files_are_explained(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.json")
    with pytest.raises(ValueError, match="bad device id"):
        registry.add("../etc")
    (tmp_path / "devices.json").write_text("{not json")
    with pytest.raises(DeviceFileError, match="add-device"):
        registry.authenticate("anything")


def test_settings_name_the_wrong_key(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text('[broker]\nlisten = "127.0.0.1:0"\napi_key = "secret"\n')
    with pytest.raises(ConfigError) as caught:
        load_broker_settings(path)
    assert caught.value.key == "broker.api_key"
    path.write_text('[broker]\ntls_cert_file = "cert.pem"\n')
    with pytest.raises(ConfigError, match="tls_key_file"):
        load_broker_settings(path)


def test_the_shipped_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "device" / "broker" / "broker.example.toml"
    settings = load_broker_settings(example)
    assert settings.host_port == ("0.0.0.0", 8443)
    assert (settings.uses, settings.new_session_ttl_s, settings.token_ttl_s) == (1, 60, 1800)


def test_cli_manages_device_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('[broker]\ndevices_file = "devices.json"\n')
    assert main(["add-device", "dock-03", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("wvb_")
    assert DeviceRegistry(tmp_path / "devices.json").authenticate(token) == "dock-03"
    assert main(["list-devices", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("dock-03\t")
    assert main(["revoke-device", "dock-03", "--config", str(config)]) == 0
    assert main(["revoke-device", "dock-03", "--config", str(config)]) == 1
    assert "no device 'dock-03'" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 78


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Emulator]:
    workdir = tmp_path_factory.getbasetemp() / "broker-emulator"
    async with Emulator(load_scenario("where-is-sku"), workdir=workdir, api_key=KEY) as emu:
        yield emu


@pytest.fixture
async def broker(tmp_path: Path, emulator: Emulator) -> AsyncIterator[Any]:
    """Start brokers in-process on free ports (uvicorn), minting at the emulator."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(api_key: str = KEY) -> tuple[str, DeviceRegistry]:
        settings = BrokerSettings.model_validate(
            {
                "upstream_url": emulator.rest_url,
                "upstream_ca_file": str(emulator.ca_file),
                "model": "site-model",
                "voice": "Puck",
                "base_dir": tmp_path,
            }
        )
        registry = DeviceRegistry(tmp_path / f"devices-{len(servers)}.json")
        app = create_app(registry, TokenMinter(settings, api_key))
        sock = socket.create_server(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        servers.append((server, asyncio.create_task(server.serve(sockets=[sock]))))
        for _ in range(1000):  # uvicorn has no start-up event to await
            if server.started:
                break
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}", registry

    yield start
    for server, _ in servers:
        server.should_exit = True
    await asyncio.gather(*(task for _, task in servers))


async def test_minted_tokens_are_single_use_and_locked(broker: Any, emulator: Emulator) -> None:
    url, registry = await broker()
    device_token = registry.add("dock-03")
    token = await BrokerTokens(url, device_token).mint()
    assert token.name.startswith("auth_tokens/") and token.api_version == "v1alpha"
    assert token.model == "site-model"
    minted = emulator.tokens.tokens[token.name]
    assert minted.uses == 1
    assert minted.expire_time == token.expire_time
    assert minted.setup is not None
    assert minted.setup["model"] == "models/site-model"
    assert minted.setup["generation_config"]["response_modalities"] == ["AUDIO"]
    assert minted.setup["generation_config"]["speech_config"]["voice_config"] == {
        "prebuilt_voice_config": {"voice_name": "Puck"}
    }
    # Exactly the fields set are locked; the device still brings its tools.
    assert minted.field_mask is not None and "model" in minted.field_mask
    assert "tools" not in minted.field_mask


async def test_device_errors_say_what_to_do(broker: Any) -> None:
    url, _ = await broker()
    with pytest.raises(LiveUnavailable) as unknown:
        await BrokerTokens(url, "wvb_not-a-device").mint()
    assert unknown.value.kind == "fatal" and unknown.value.denied
    assert "refused this device (401)" in str(unknown.value)
    # The site's key is refused upstream: devices see a retryable 502 with the reason.
    bad_url, bad_registry = await broker(api_key="wrong")
    device_token = bad_registry.add("dock-05")
    with pytest.raises(LiveUnavailable) as upstream:
        await BrokerTokens(bad_url, device_token).mint()
    assert upstream.value.kind == "retry" and "502" in str(upstream.value)
    # No broker at all: offline.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(LiveUnavailable) as offline:
        await BrokerTokens(f"http://127.0.0.1:{port}", device_token).mint()
    assert offline.value.kind == "offline"
