"""The emulator refuses a setup the real model would refuse, as the service does: it closes
the websocket with 1007 and a reason naming the field (rules from `device.live.models`)."""

from __future__ import annotations

from typing import Any

from device.live.models import caps_for, refusal
from device.sim import wire

_FIELDS = {
    "thinking_level": "generationConfig.thinkingConfig",
    "proactive_audio": "proactivity.proactiveAudio",
    "affective_dialog": "generationConfig.enableAffectiveDialog",
}


def check_setup(setup: dict[str, Any]) -> None:
    """Raise wire.WireError (1007) for a setting the setup's model does not take."""
    caps = caps_for(str(setup.get("model") or ""))
    generation = setup.get("generation_config") or {}
    if not isinstance(generation, dict):
        return
    thinking = generation.get("thinking_config")
    level: str | None = None
    if isinstance(thinking, dict):
        # Any thinking config counts: 3.8 refuses the field itself, not only its level.
        level = str(thinking.get("thinking_level") or thinking.get("thinking_budget") or "set")
        level = level.lower()
    proactivity = setup.get("proactivity")
    proactive = proactivity.get("proactive_audio") if isinstance(proactivity, dict) else None
    affective = generation.get("enable_affective_dialog", setup.get("enable_affective_dialog"))
    refused = refusal(
        caps,
        thinking_level=level,
        proactive_audio=proactive if isinstance(proactive, bool) else None,
        affective_dialog=affective if isinstance(affective, bool) else None,
    )
    if refused is not None:
        key, why = refused
        raise wire.WireError(
            f"Invalid JSON payload received. {_FIELDS[key]}: {why}", wire.CLOSE_INVALID_FRAME
        )


def declared_behaviors(setup: dict[str, Any]) -> tuple[dict[str, str], str]:
    """Each declared tool's behavior, and the default for those that name none: NON_BLOCKING
    on a model with async calls (3.8), BLOCKING on the others (whatever they declare)."""
    caps = caps_for(str(setup.get("model") or ""))
    default = "NON_BLOCKING" if caps.async_tools else "BLOCKING"
    behaviors: dict[str, str] = {}
    for tool in setup.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        for declaration in tool.get("function_declarations") or []:
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                declared = declaration.get("behavior")
                behavior = str(declared) if caps.async_tools and declared else default
                behaviors[declaration["name"]] = behavior
    return behaviors, default
