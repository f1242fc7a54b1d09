"""How big the setup's custom_vocabulary is for a site: the demo warehouse, served over HTTP by
the reference inventory API, read the way a session start reads it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from device.config import settings_from_dict
from device.inventory.server import serve_inventory
from device.live.connect import build_connect_config, site_vocabulary


async def setup_vocabulary() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="wv-vocab-") as tmp:
        async with serve_inventory(Path(tmp) / "inventory.db", seed="demo") as inv:
            settings = settings_from_dict({"tools": {"inventory_url": inv.base_url}})
            vocabulary = site_vocabulary(settings, inv.token)
            assert vocabulary is not None
            terms = await vocabulary.terms()
    config = build_connect_config(
        settings, instructions="", function_declarations=[], vocabulary=terms
    )
    sent = config.input_audio_transcription
    words = (sent.custom_vocabulary if sent is not None else None) or []
    return {
        "terms": len(words),
        "characters": sum(len(w) for w in words),
        "max_terms": settings.live.vocabulary_max_terms,
    }
