"""The emulator refuses what the chosen model refuses, as the service does: a 1007 close whose
reason names the field. Through the real SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.genai import errors

from device.live.failures import classify
from device.sim.emulator import Emulator
from tests.sim.helpers import live_config, sdk_client, sku_scenario

Factory = Callable[..., Awaitable[Emulator]]


async def open_session(emu: Emulator, model: str, **config: Any) -> None:
    client = sdk_client(emu)
    async with client.aio.live.connect(model=model, config=live_config(**config)) as session:
        async for _ in session.receive():
            break


@pytest.mark.parametrize(
    ("model", "config", "field"),
    [
        ("gemini-3.8-live", {"thinking_config": {"thinking_level": "LOW"}}, "thinkingConfig"),
        ("gemini-3.8-live", {"proactivity": {"proactive_audio": False}}, "proactiveAudio"),
        ("gemini-3.8-live", {"enable_affective_dialog": True}, "enableAffectiveDialog"),
        ("gemini-3.1-flash-live-preview", {"enable_affective_dialog": True}, "Affective"),
        ("gemini-9-live", {"thinking_config": {"thinking_level": "LOW"}}, "thinkingConfig"),
    ],
)
async def test_a_refused_setting_closes_1007_naming_it(
    emulator_factory: Factory, model: str, config: dict[str, Any], field: str
) -> None:
    emu = await emulator_factory(sku_scenario())
    with pytest.raises(errors.APIError) as caught:
        await open_session(emu, model, **config)
    failure = classify(caught.value)
    assert failure.code == 1007 and failure.kind == "fatal"
    assert field.lower() in failure.reason.lower()
    assert emu.record.connections[0].close_code == 1007


@pytest.mark.parametrize(
    ("model", "config"),
    [
        ("gemini-3.8-live", {}),
        ("gemini-3.8-live", {"proactivity": {"proactive_audio": True}}),
        ("gemini-3.8-live-thinking", {"thinking_config": {"thinking_level": "HIGH"}}),
        ("gemini-3.1-flash-live-preview", {"thinking_config": {"thinking_level": "MINIMAL"}}),
        ("gemini-live-2.5-flash-native-audio", {"enable_affective_dialog": True}),
    ],
)
async def test_accepted_settings_open_the_session(
    emulator_factory: Factory, model: str, config: dict[str, Any]
) -> None:
    emu = await emulator_factory(sku_scenario())
    client = sdk_client(emu)
    async with client.aio.live.connect(model=model, config=live_config(**config)):
        pass
    assert emu.record.connections[0].close_code != 1007
