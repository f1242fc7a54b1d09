"""The shipped fault scenarios, played through the SDK the way the device must cope with them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from google.genai import errors

from device.sim.emulator import Emulator
from device.sim.scenario import load_scenario

from .helpers import (
    MODEL,
    Heard,
    live_config,
    receive_turn,
    record_message,
    sdk_client,
    send_audio,
    silence,
    utterance,
)

pytestmark = pytest.mark.slow

Factory = Callable[..., Awaitable[Emulator]]


async def test_goaway_then_resume_finishes_the_shift(emulator_factory: Factory) -> None:
    emu = await emulator_factory(load_scenario("goaway-resume").model_copy(update={"speed": 50}))
    client = sdk_client(emu)
    first = Heard()
    async with client.aio.live.connect(
        model=MODEL, config=live_config(session_resumption={})
    ) as session:
        await send_audio(session, utterance(0.6, 0.8))
        await receive_turn(session, first)
        # The mic keeps streaming; goAway comes once 3 s of audio have arrived.
        await send_audio(session, silence(1.8))
        async for message in session.receive():
            record_message(first, message)
            if first.go_away:
                break
    assert first.output_text == "Aisle twelve, bay three, level B, forty units."
    assert first.go_away == ["5s"]
    second = Heard()
    async with client.aio.live.connect(
        model=MODEL, config=live_config(session_resumption={"handle": first.handles[-1]})
    ) as session:
        await send_audio(session, utterance(0.6, 0.8))
        await receive_turn(session, second)
    assert second.input_text == "How many in A-14-01?"
    assert [c.id for c in second.tool_calls] == ["call-2"]
    assert emu.record.resumption_handles_presented == [first.handles[-1]]


async def test_internal_error_fires_once_then_the_retry_is_answered(
    emulator_factory: Factory,
) -> None:
    emu = await emulator_factory(
        load_scenario("sku-internal-error").model_copy(update={"speed": 50})
    )
    client = sdk_client(emu)
    with pytest.raises(errors.APIError) as caught:
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await send_audio(session, utterance())
            await receive_turn(session, Heard())
    assert caught.value.code == 1011
    retry = Heard()
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await send_audio(session, utterance())
        await receive_turn(session, retry)
    assert bytes(retry.audio) == emu.reply_audio(0)
    assert [f.kind for f in emu.record.faults] == ["close"]
    assert [len(pcm) for pcm in emu.record.reply_pcm] == [800 * 48, len(emu.reply_audio(0))]
