"""custom_vocabulary from the site: read from the real inventory API over HTTP, bounded,
cached across sessions, refreshed when stale, and sent in the setup the emulator receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.config import settings_from_dict
from device.inventory.server import RunningInventory
from device.live.connect import (
    LiveConnector,
    build_connect_config,
    read_instructions,
    site_vocabulary,
)
from device.live.vocabulary import SiteVocabulary, build_terms, inventory_fetch
from device.sim.scenario import load_scenario

CONFIRM = ["confirm", "correct"]


async def test_the_site_vocabulary_reaches_the_setup(  # type: ignore[no-untyped-def]
    rig_factory, inventory: RunningInventory
) -> None:
    vocabulary = SiteVocabulary(
        inventory_fetch(
            inventory.base_url, inventory.token, zone="", confirm_words=CONFIRM, max_terms=400
        ),
        timeout_s=10.0,
    )

    def make(settings: Any, tools: Any) -> LiveConnector:
        return LiveConnector(
            settings,
            instructions=read_instructions(settings),
            declarations=tools.declarations(),
            api_key="test-key",
            vocabulary=vocabulary,
        )

    rig = await rig_factory(load_scenario("where-is-sku"), make_connector=make)
    await rig.start()
    rig.appliance.tap()
    await rig.emulator.wait_for(
        lambda r: bool(r.connections) and r.connections[0].setup is not None, timeout_s=30
    )
    await rig.finish()
    setup = rig.emulator.record.connections[0].setup
    terms = setup["input_audio_transcription"]["custom_vocabulary"]
    assert terms[:2] == CONFIRM
    assert {"104417", "A-12-03"} <= set(terms)
    assert len(terms) <= 400
    # A bin's spoken form and a product name, as the API has them.
    location = next(t for t in terms if t.startswith("A-"))
    assert any(t[0].isalpha() and " " in t for t in terms[2:]), terms
    assert location
    assert vocabulary.fetches == 1


async def test_cached_then_refreshed_when_stale() -> None:
    lists = [["one"], ["two"]]
    calls = 0

    async def fetch() -> list[str]:
        nonlocal calls
        calls += 1
        return lists[min(calls - 1, 1)]

    vocabulary = SiteVocabulary(fetch, refresh_s=3600)
    assert await vocabulary.terms() == ["one"]
    assert await vocabulary.terms() == ["one"] and calls == 1  # cached
    vocabulary._fetched_at -= 3600  # an hour later
    assert await vocabulary.terms() == ["one"]  # served at once, refreshed behind
    assert vocabulary._refreshing is not None
    await vocabulary._refreshing
    assert await vocabulary.terms() == ["two"] and calls == 2


async def test_a_failed_fetch_falls_back_to_the_confirm_words() -> None:
    async def fetch() -> list[str]:
        raise OSError("inventory down")

    assert await SiteVocabulary(fetch, fallback=CONFIRM).terms() == CONFIRM


def test_bounded_and_zoned() -> None:
    rows = [
        {
            "location": f"A-{i:02d}-01",
            "spoken_location": f"A {i} one",
            "zone": "DRY",
            "sku": f"1{i:05d}",
        }
        for i in range(100)
    ] + [{"location": "F-01-01", "spoken_location": "F one", "zone": "FRZ", "sku": "900001"}]
    terms = build_terms(rows, {}, zone="FRZ", confirm_words=CONFIRM, max_terms=10)
    assert terms == [*CONFIRM, "F-01-01", "F one", "900001"]
    assert len(build_terms(rows, {}, zone="", confirm_words=CONFIRM, max_terms=10)) == 10


def test_the_switch_turns_it_off(tmp_path: Path) -> None:
    off = settings_from_dict({"live": {"custom_vocabulary": False}})
    assert site_vocabulary(off, "token") is None
    config = build_connect_config(
        off, instructions="x", function_declarations=[], vocabulary=["104417"]
    )
    assert config.input_audio_transcription is not None
    assert not config.input_audio_transcription.custom_vocabulary
    on = settings_from_dict({})
    assert site_vocabulary(on, "token") is not None
    legacy = settings_from_dict({"live": {"model": "gemini-3.1-flash-live-preview"}})
    config = build_connect_config(
        legacy, instructions="x", function_declarations=[], vocabulary=["104417"]
    )
    assert config.input_audio_transcription is not None
    assert not config.input_audio_transcription.custom_vocabulary
