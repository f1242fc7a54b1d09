"""What each Gemini Live model accepts, as data: the setup is built from it, `config check`
validates against it, and the emulator refuses what the real model refuses.

Facts from Google's model pages (DESIGN §3). A model name not in the table gets the newest
model's rules, with a warning: a new model is far likelier to follow 3.8 than 3.1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

ProactiveAudio = Literal["unsupported", "optional", "always"]


@dataclass(frozen=True)
class ModelCaps:
    name: str
    # thinking_level values the model takes; empty: never send thinking_config.
    thinking_levels: tuple[str, ...] = ()
    # Sent when live.thinking_level is unset (None: send no thinking config).
    default_thinking: str | None = None
    # FunctionDeclaration.behavior and FunctionResponse.scheduling (async tools).
    async_tools: bool = False
    # "always": on and not switchable (proactive_audio false is an error).
    proactive_audio: ProactiveAudio = "unsupported"
    affective_dialog: bool = False
    custom_vocabulary: bool = False
    media_resolution: bool = True
    legacy: bool = False


NEWEST = "gemini-3.8-live"

MODELS: dict[str, ModelCaps] = {
    caps.name: caps
    for caps in (
        ModelCaps(
            "gemini-3.8-live",
            async_tools=True,
            proactive_audio="always",
            custom_vocabulary=True,
        ),
        ModelCaps(
            "gemini-3.8-live-thinking",
            thinking_levels=("low", "medium", "high"),
            default_thinking="low",
            async_tools=True,
            proactive_audio="always",
            custom_vocabulary=True,
        ),
        ModelCaps(
            "gemini-3.1-flash-live-preview",
            thinking_levels=("minimal", "low", "medium", "high"),
            default_thinking="minimal",
            legacy=True,
        ),
        ModelCaps(
            "gemini-live-2.5-flash-native-audio",
            async_tools=True,
            proactive_audio="optional",
            affective_dialog=True,
            legacy=True,
        ),
    )
}


def known(model: str) -> bool:
    return _bare(model) in MODELS


def caps_for(model: str, *, warn: bool = False) -> ModelCaps:
    """The rules for `model` ("models/" prefix allowed); unknown names get the newest rules."""
    caps = MODELS.get(_bare(model))
    if caps is not None:
        return caps
    if warn:
        log.warning(
            "live.model %r is not in the model table; using %s's rules for its setup", model, NEWEST
        )
    return MODELS[NEWEST]


def refusal(
    caps: ModelCaps,
    *,
    thinking_level: str | None,
    proactive_audio: bool | None = None,
    affective_dialog: bool | None = None,
) -> tuple[str, str] | None:
    """(setting, why) for the first setting `caps` refuses, or None when all are accepted."""
    if thinking_level is not None and thinking_level not in caps.thinking_levels:
        if not caps.thinking_levels:
            return "thinking_level", f"{caps.name} takes no thinking level"
        return (
            "thinking_level",
            f"{caps.name} takes thinking_level {', '.join(caps.thinking_levels)}, "
            f"not {thinking_level!r}",
        )
    if proactive_audio is not None:
        if caps.proactive_audio == "unsupported":
            return "proactive_audio", f"{caps.name} has no proactive audio"
        if caps.proactive_audio == "always" and not proactive_audio:
            return "proactive_audio", f"{caps.name} always has proactive audio and refuses false"
    if affective_dialog is not None and not caps.affective_dialog:
        return "affective_dialog", f"{caps.name} has no affective dialog"
    return None


def _bare(model: str) -> str:
    return model.removeprefix("models/")
