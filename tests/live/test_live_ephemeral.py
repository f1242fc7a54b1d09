"""Ephemeral-token mode end to end: token broker, then device, then the emulator's Constrained
endpoint. The long-lived API key lives in the broker's environment only."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from device.live.connect import live_connector, read_instructions
from device.sim.emulator import Emulator
from device.sim.scenario import Scenario, ToolCallSpec, TurnSpec
from device.sim.tls import client_ssl_context
from tests.live.conftest import TurnPacedMic

pytestmark = pytest.mark.slow

SITE_MODEL = "gemini-site-locked-model"
CONSTRAINED = (
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
)


def shift() -> Scenario:
    find = ToolCallSpec(id="call-1", name="find_item", args={"sku": "104417"})
    return Scenario(
        name="ephemeral",
        speed=4.0,
        goaway_time_left_s=60.0,
        turns=[
            # goAway mid-reply: the second turn runs on a resumed connection.
            TurnSpec(
                user_transcript="Where is SKU 104417?",
                tool_calls=[find],
                reply_text="Aisle twelve.",
                goaway_after_ms=300,
            ),
            TurnSpec(user_transcript="Thanks.", reply_text="Bye."),
        ],
    )


async def broker_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device.broker",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def files_holding(root: Path, secret: bytes, skip: str) -> list[tuple[Path, bool]]:
    """Every file under `root` (outside `skip` folders), and whether it contains `secret`."""
    return [
        (p, secret in p.read_bytes())
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parts
    ]


class Broker:
    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc, self.url = proc, url


@pytest.fixture
async def site(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """The emulator (holding the long-lived key) and a broker process that knows that key."""
    key = "AIza" + secrets.token_urlsafe(24)
    emu = Emulator(shift(), workdir=tmp_path_factory.getbasetemp() / "live-emulator", api_key=key)
    await emu.start()
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    (broker_dir / "broker.toml").write_text(
        f"""[broker]
listen = "127.0.0.1:0"
devices_file = "devices.json"
upstream_url = "{emu.rest_url}"
upstream_ca_file = "{emu.ca_file}"
model = "{SITE_MODEL}"
tls_cert_file = "{emu.ca_file.parent / "server.pem"}"
tls_key_file = "{emu.ca_file.parent / "server.key"}"
"""
    )
    device_token = await broker_cli(broker_dir, "add-device", "dock-03", "--config", "broker.toml")
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device.broker",
        "serve",
        "--config",
        "broker.toml",
        cwd=broker_dir,
        env={**env, "GEMINI_API_KEY": key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on" in line, line
        yield {
            "key": key,
            "emulator": emu,
            "device_token": device_token,
            "broker": Broker(proc, line.split()[-1]),
        }
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await emu.stop()


async def test_device_talks_through_broker_tokens_and_never_sees_the_key(  # type: ignore[no-untyped-def]
    rig_factory, site, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    key: str = site["key"]
    emu: Emulator = site["emulator"]
    device_dir = tmp_path / "device"
    device_dir.mkdir()
    (device_dir / "broker-token").write_text(site["device_token"] + "\n")
    made: list[Any] = []

    def make_connector(settings: Any, tools: Any) -> Any:
        connector = live_connector(
            settings,
            instructions=read_instructions(settings),
            declarations=tools.declarations(),
            api_key="",
        )
        made.append(connector)
        return connector

    rig = await rig_factory(
        shift(),
        emulator=emu,
        make_connector=make_connector,
        auth="ephemeral",
        broker_url=site["broker"].url,
        broker_ca_file=str(emu.ca_file),
        broker_token_file=str(device_dir / "broker-token"),
        # The second question comes once the first is answered and the device has resumed
        # on a second connection (an event, not 1 s of wall clock: a loaded machine may take
        # longer to leave, and the question would land on the first connection).
        mic=TurnPacedMic(
            lambda n: (
                len(emu.record.connections) > n
                and sum(t.generation_complete for t in emu.record.turns) >= n
            ),
            times=2,
            gap_s=8.0,
        ),
        # Wall clock from the first reply to the second question, across the goAway switch:
        # on a loaded machine 5 s passed and the session idled out before the question.
        idle_timeout_s=60.0,
    )
    await rig.start()
    rig.appliance.tap()
    await emu.wait_for(lambda r: len(r.finished_turns) >= 2, timeout_s=60, what="two turns")
    await rig.finish()

    first, second = emu.record.connections
    for conn in (first, second):
        # The Constrained endpoint, opened with an ephemeral token, never the key.
        assert conn.path == CONSTRAINED
        assert conn.token is not None and conn.token.startswith("auth_tokens/")
        assert conn.api_key == conn.token
        # The token's lock wins over the device's own choice of model.
        assert conn.setup is not None and conn.setup["model"].endswith("gemini-3.8-live")
        assert conn.effective_setup is not None
        assert conn.effective_setup["model"] == f"models/{SITE_MODEL}"
        assert conn.effective_setup["context_window_compression"] == {"sliding_window": {}}
    # One single-use token: the goAway resume reused it, which does not use it up.
    assert second.resumption_handle == first.handles_issued[-1]
    assert first.token == second.token
    (token,) = emu.tokens.tokens.values()
    assert (token.uses, token.used) == (1, 1)
    assert [t.scenario_turn for t in emu.record.turns] == [0, 1]
    assert rig.tools.calls == [("call-1", "find_item", {"sku": "104417"})]

    # The long-lived key is nowhere on the device side: not in its settings, its environment,
    # its logs (every logger, debug level), its event log, or any file it wrote.
    assert key not in made[0].settings.model_dump_json()
    assert not [name for name, value in os.environ.items() if key in value]
    assert key not in caplog.text
    device_files = files_holding(tmp_path, key.encode(), skip="broker")
    assert device_files and not [p for p, holds in device_files if holds]
    assert site["device_token"] not in caplog.text  # nor the device's own broker token
    # The broker logged the mint, without the key.
    site["broker"].proc.terminate()
    _, broker_log = await site["broker"].proc.communicate()
    assert b"minted a token for dock-03" in broker_log and key.encode() not in broker_log


async def test_constrained_endpoint_refuses_reused_and_expired_tokens(site) -> None:  # type: ignore[no-untyped-def]
    emu: Emulator = site["emulator"]
    ctx = client_ssl_context(emu.ca_file)

    async def mint() -> str:
        async with httpx.AsyncClient(verify=ctx) as http:
            answer = await http.post(
                site["broker"].url + "/v1/live-token",
                headers={"Authorization": f"Bearer {site['device_token']}"},
            )
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        assert isinstance(token, str)
        return token

    async def open_session(token: str) -> None:
        client = genai.Client(
            api_key=token,
            http_options=types.HttpOptions(
                base_url=emu.url, api_version="v1alpha", async_client_args={"ssl": ctx}
            ),
        )
        # The service answers the setup with setupComplete, or closes with the reason.
        async with client.aio.live.connect(
            model=SITE_MODEL, config=types.LiveConnectConfig(response_modalities=["AUDIO"])
        ):
            pass

    token = await mint()
    await open_session(token)
    with pytest.raises(errors.APIError) as reused:
        await open_session(token)
    assert reused.value.code == 1008 and "already used" in str(reused.value.details)

    fresh = await mint()
    emu.tokens.advance(2 * 3600)
    with pytest.raises(errors.APIError) as expired:
        await open_session(fresh)
    assert expired.value.code == 1008 and "expired" in str(expired.value.details)

    # A device token the broker does not know gets nothing.
    async with httpx.AsyncClient(verify=ctx) as http:
        refused = await http.post(
            site["broker"].url + "/v1/live-token", headers={"Authorization": "Bearer wvb_nope"}
        )
    assert refused.status_code == 401
